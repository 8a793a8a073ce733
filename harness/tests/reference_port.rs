//! The main job, as a test: qualify the reference port, and the port template (a second board),
//! with every kernel suite, on QEMU, through the `fqp` binary. The reports must agree.

mod common;

use common::{qualify, repo, Outcome};

fn tests_of(o: &Outcome) -> Vec<&serde_json::Value> {
    o.results["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .collect()
}

fn check_reports_agree(o: &Outcome, port: &str) {
    let junit = o.junit();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(
        cases,
        tests_of(o).len(),
        "JUnit and results.json list the same tests"
    );
    let transcript = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert!(transcript.contains(&format!("@FQP READY proto=1 port={port}")));
    assert!(transcript.contains("@FQP SUMMARY passed="));
}

#[test]
fn reference_port_qualifies() {
    let o = qualify(&repo().join("reference-port"), "reference", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    assert_eq!(o.results["verdict"], "passed");
    let tests = tests_of(&o);
    assert!(tests.len() >= 60, "{} tests", tests.len());
    for t in &tests {
        assert_eq!(t["status"], "passed", "{t}");
    }
    check_reports_agree(&o, "mps2-an385");
}

#[test]
fn port_template_qualifies_on_a_second_board() {
    let o = qualify(&repo().join("port-template"), "template", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    for t in tests_of(&o) {
        // Its heap is a single region: that one test is skipped, with the reason.
        if t["id"] == "heap/every_region_is_used" {
            assert_eq!(t["status"], "skipped", "{t}");
            assert_eq!(t["message"], "the port's heap has a single region");
        } else {
            assert_eq!(t["status"], "passed", "{t}");
        }
    }
    check_reports_agree(&o, "lm3s6965");
}
