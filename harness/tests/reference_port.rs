//! The main job, as a test: qualify the reference port with every kernel suite, on QEMU,
//! through the `fqp` binary. Every on-device test must pass, and the reports must agree.

mod common;

use common::{qualify, repo};

#[test]
fn reference_port_qualifies() {
    let o = qualify(&repo().join("reference-port"), "reference", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    assert_eq!(o.results["verdict"], "passed");
    let tests: Vec<&serde_json::Value> = o.results["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .collect();
    assert!(!tests.is_empty());
    for t in &tests {
        assert_eq!(t["status"], "passed", "{t}");
    }
    let junit = o.junit();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(
        cases,
        tests.len(),
        "JUnit and results.json list the same tests"
    );
    let transcript = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert!(transcript.contains("@FQP READY proto=1 port=mps2-an385"));
    eprintln!("reference port: {} on-device tests passed", tests.len());
    println!("{}", o.stdout);
}
