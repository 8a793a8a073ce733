//! The main job, as a test: qualify the reference port, and the port template (a second board),
//! with every kernel suite, on QEMU, through the `fqp` binary. The reports must agree.

mod common;

use common::{qualify, repo, succeeds, Outcome};
use std::path::PathBuf;

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
    // results.json follows the published JSON Schema.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/results.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&o.results)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "results.json vs docs/results.schema.json: {errors:?}"
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
    // The keystore went to the emulated board's storage, a file the harness gave it.
    let stored = std::fs::read(o.out.join("storage.bin")).expect("storage.bin");
    assert!(
        stored.windows(10).any(|w| w == b"persistent"),
        "the keystore image holds the key's label"
    );
    assert_eq!(
        o.results["qualification"]["qualified"], true,
        "{}",
        o.results["qualification"]
    );
    assert!(o.stdout.contains(
        "QUALIFIED for capabilities [kernel, test-irq, heap, heap-regions, network, keystore, storage, cloud, ota]"
    ));
    // The board started its boot loader, which checked the signed image in its flash and
    // started it.
    let transcript = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert!(
        transcript.contains("fqp-boot: starting 0.1.0 (confirmed)"),
        "{transcript}"
    );
    assert!(o.out.join("boot-flash.bin").is_file() && o.out.join("firmware.fqpimg").is_file());
    // The certification report loads in a browser and leads with the verdict.
    let dom = o.rendered_report();
    assert!(
        dom.contains(r#"<p id="verdict" class="verdict good">QUALIFIED</p>"#),
        "{dom}"
    );
    assert!(dom.contains(&format!("{} tests: {} passed", tests.len(), tests.len())));
    let sha = o.results["firmware"]["sha256"].as_str().unwrap();
    assert!(dom.contains(sha), "the image hash is in the report");
    let md = std::fs::read_to_string(o.out.join("summary.md")).unwrap();
    assert!(md.starts_with("### ✅ mps2-an385: QUALIFIED"), "{md}");
}

/// A copy of `port`'s manifest in `target/fqp-tests/<name>` declaring other capabilities
/// (the line `from` becomes `to`), building the same crate; its directory.
fn port_declaring(port: &str, name: &str, from: &str, to: &str) -> PathBuf {
    let dir = repo().join("target/fqp-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo().join(port).join("port.toml")).unwrap();
    assert!(text.contains(from), "{port}/port.toml has no line {from}");
    // The crates (the firmware's, the boot loader's), wherever the copy is: each
    // `crate = "<relative>"` made absolute.
    let text: Vec<String> = text
        .replace(from, to)
        .lines()
        .map(|l| {
            match l
                .strip_prefix("crate = \"")
                .and_then(|r| r.strip_suffix('"'))
            {
                Some(rel) => {
                    let absolute = repo().join(port).join(rel).canonicalize().unwrap();
                    format!("crate = {absolute:?}")
                }
                None => l.to_string(),
            }
        })
        .collect();
    let text = text.join("\n");
    std::fs::write(dir.join("port.toml"), text).unwrap();
    dir
}

#[test]
fn a_missing_capability_skips_its_tests_and_qualifies_the_smaller_set() {
    let dir = port_declaring(
        "reference-port",
        "no-irq-port",
        "capabilities = [\"kernel\", \"test-irq\", \"heap\", \"heap-regions\", \"network\", \"keystore\", \"storage\", \"cloud\", \"ota\"]",
        "capabilities = [\"kernel\", \"heap\", \"heap-regions\", \"network\", \"keystore\", \"storage\", \"cloud\", \"ota\"]",
    );
    let o = qualify(&dir, "no-irq", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    let skipped: Vec<&serde_json::Value> = tests_of(&o)
        .into_iter()
        .filter(|t| t["status"] == "skipped")
        .collect();
    // The isr group (5) and the 10 interrupt-side tests of other groups (3 of them perf).
    assert_eq!(skipped.len(), 15, "{skipped:?}");
    for t in &skipped {
        assert!(
            t["message"]
                .as_str()
                .unwrap()
                .starts_with("needs capability test-irq"),
            "{t}"
        );
    }
    assert_eq!(
        o.results["qualification"]["qualified"], true,
        "{}",
        o.results["qualification"]
    );
    assert_eq!(
        o.results["qualification"]["capabilities"],
        serde_json::json!([
            "kernel",
            "heap",
            "heap-regions",
            "network",
            "keystore",
            "storage",
            "cloud",
            "ota"
        ])
    );
}

#[test]
fn port_template_qualifies_on_a_second_board() {
    let o = qualify(&repo().join("port-template"), "template", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    for t in tests_of(&o) {
        // Its heap is a single region, so it does not declare heap-regions: that one test is
        // skipped, with the reason.
        if t["id"] == "heap/every_region_is_used" {
            assert_eq!(t["status"], "skipped", "{t}");
            assert_eq!(
                t["message"],
                "needs capability heap-regions, which the port does not declare (`capabilities` in port.toml)"
            );
        } else {
            assert_eq!(t["status"], "passed", "{t}");
        }
    }
    check_reports_agree(&o, "lm3s6965");
}

#[test]
fn a_capability_whose_device_the_board_lacks_stops_the_run_at_sync_naming_it() {
    // The template's board has no Ethernet and no storage (its Board keeps the accessors'
    // default, None); this manifest declares both anyway.
    let dir = port_declaring(
        "port-template",
        "template-claims-devices-port",
        "capabilities = [\"kernel\", \"test-irq\", \"heap\"]",
        "capabilities = [\"kernel\", \"test-irq\", \"heap\", \"network\", \"storage\"]",
    );
    let o = qualify(&dir, "template-claims-devices", &[]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let problem = &o.results["problems"][0];
    assert_eq!(problem["stage"], "manifest", "{problem}");
    let msg = problem["message"].as_str().unwrap();
    for expected in [
        "capability \"network\" but board \"lm3s6965\" provides no ethernet device (Board::ethernet returned None",
        "capability \"storage\" but board \"lm3s6965\" provides no storage device (Board::storage returned None",
        "or leave the capability out of `capabilities` in port.toml",
    ] {
        assert!(msg.contains(expected), "{msg}");
    }
    assert!(
        o.results["groups"].as_array().is_none_or(Vec::is_empty),
        "nothing ran: {}",
        o.results["groups"]
    );
}

#[test]
fn an_image_the_boot_loader_refuses_stops_the_run_with_its_reason() {
    // A byte of the image altered in the board's flash after signing (the harness's own
    // fault): the boot loader refuses it, the run ends at once — no retries — naming the
    // boot loader's reason, as the product's (the port's) failure: exit 1.
    let o = common::qualify_with_env(
        &repo().join("reference-port"),
        "boot-refused",
        &["--group", "queue"],
        &[("FQP_BOOT_FAULT", "corrupt-image")],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let problem = &o.results["problems"][0];
    assert_eq!(problem["stage"], "port", "{problem}");
    let msg = problem["message"].as_str().unwrap();
    assert!(
        msg.contains("the board's boot loader did not start the image")
            && msg.contains("fqp-boot: cannot boot: no image to boot: payload hash mismatch"),
        "{msg}"
    );
    let transcript = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert_eq!(
        transcript.matches("--- fqp: boot").count(),
        1,
        "{transcript}"
    );
}

#[test]
fn list_shows_tests_with_their_requirements() {
    // Listing boots the image, leaving its logs in out/<port> under the working directory.
    let cwd = repo().join("target/fqp-tests/list");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = succeeds(
        common::fqp()
            .current_dir(&cwd)
            .args(["-q", "list", "--port"])
            .arg(repo().join("reference-port"))
            .args(["--group", "isr", "--group", "heap"]),
    );
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 10 + 1, "{text}");
    assert!(lines[0].starts_with("test") && lines[0].contains("requires"));
    let isr = lines
        .iter()
        .find(|l| l.starts_with("isr/handler_runs_in_interrupt_context"))
        .unwrap();
    assert!(
        isr.contains("kernel, heap, test-irq") && isr.contains("required") && isr.ends_with("runs"),
        "{isr}"
    );
    assert_eq!(
        *lines.last().unwrap(),
        "10 tests in 2 groups; 10 run on mps2-an385 (capabilities: kernel, test-irq, heap, heap-regions, network, keystore, storage, cloud, ota)"
    );
}

/// The FPU group's tests of a run.
fn fpu_tests(o: &Outcome) -> Vec<&serde_json::Value> {
    tests_of(o)
        .into_iter()
        .filter(|t| t["id"].as_str().unwrap().starts_with("fpu/"))
        .collect()
}

#[test]
fn the_m4f_board_qualifies_keeping_every_tasks_fp_registers() {
    let o = qualify(&repo().join("reference-port/m4f"), "m4f", &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    check_reports_agree(&o, "mps2-an386");
    let fpu = fpu_tests(&o);
    assert_eq!(fpu.len(), 3, "{fpu:?}");
    assert!(fpu.iter().all(|t| t["status"] == "passed"), "{fpu:?}");
    assert!(o.stdout.contains(
        "QUALIFIED for capabilities [kernel, test-irq, heap, heap-regions, network, keystore, storage, fpu]"
    ), "{}", o.stdout);
}

/// Qualifies the board whose manifest is in `dir` (under reference-port/), as `port`: every
/// test of the full suites passed but the cloud's and OTA's (the boards' manifests leave
/// `cloud` and `ota` to the AN385: the cloud and OTA libraries are the same Rust on every
/// core, and the boot loader is the AN385's), and the reports agree.
/// Returns the run.
fn qualifies_with_the_full_suites(dir: &str, port: &str) -> Outcome {
    let o = qualify(&repo().join("reference-port").join(dir), dir, &[]);
    assert_eq!(o.code, 0, "{}", o.explain());
    check_reports_agree(&o, port);
    let tests = tests_of(&o);
    assert!(tests.len() >= 148, "{}", tests.len());
    for t in &tests {
        let message = t["message"].as_str().unwrap_or("");
        let left_to_the_an385 = t["status"] == "skipped"
            && (message.starts_with("needs capability cloud")
                || message.starts_with("needs capability ota"));
        assert!(t["status"] == "passed" || left_to_the_an385, "{t}");
    }
    assert!(o.stdout.contains(
        "QUALIFIED for capabilities [kernel, test-irq, heap, heap-regions, network, keystore, storage]"
    ), "{}", o.stdout);
    o
}

#[test]
fn the_armv6m_image_qualifies_with_the_full_suites() {
    // Cortex-M0/M0+ code and the kernel's Armv6-M port, on the AN385 (the image's build
    // attributes are checked before it runs: Armv6-M, nothing bigger linked in).
    qualifies_with_the_full_suites("m0", "mps2-an385-armv6m");
}

#[test]
fn the_m33_board_qualifies_on_the_non_secure_side() {
    // Armv8-M Mainline on the AN505: the crate's secure boot stage hands the board over, the
    // kernel runs non-secure, and a task's stack limit (PSPLIM) stops an overflow at once.
    let o = qualifies_with_the_full_suites("m33", "mps2-an505");
    assert!(tests_of(&o)
        .iter()
        .any(|t| t["id"] == "stack_overflow/overflow_is_reported"));
}

#[test]
fn an_armv8m_kernel_without_its_stack_limit_fails_the_stack_overflow_group() {
    // The M33 board's image, but the kernel never sets PSPLIM: the overflow is still found
    // at the next switch, after the task wrote below its stack, which this core must not let
    // happen.
    let dir = port_declaring(
        "reference-port/m33",
        "m33-no-stack-limit",
        "features = [\"mps2-an505\"]",
        "features = [\"mps2-an505\", \"no-stack-limit\"]",
    );
    let o = qualify(
        &dir,
        "m33-no-stack-limit-run",
        &["--group", "stack_overflow"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let t = &tests_of(&o)[0];
    assert_eq!(t["id"], "stack_overflow/overflow_is_reported");
    assert_eq!(t["status"], "failed", "{t}");
}

#[test]
fn a_kernel_that_loses_fp_registers_fails_the_fpu_group() {
    // The same board and image, but the kernel switches tasks as a soft-float one does.
    let dir = port_declaring(
        "reference-port/m4f",
        "m4f-no-fp-context",
        "bench_features = [\"bench\"]",
        "features = [\"no-fp-context\"]",
    );
    let o = qualify(&dir, "m4f-no-fp-context-run", &["--group", "fpu"]);
    assert_eq!(o.code, 1, "{}", o.explain());
    let fpu = fpu_tests(&o);
    assert_eq!(fpu.len(), 3, "{fpu:?}");
    assert!(fpu.iter().all(|t| t["status"] != "passed"), "{fpu:?}");
}

#[test]
fn a_hard_float_port_without_the_fpu_capability_is_refused() {
    let dir = port_declaring(
        "reference-port/m4f",
        "m4f-undeclared",
        "\"storage\", \"fpu\"]",
        "\"storage\"]",
    );
    let o = qualify(&dir, "m4f-undeclared-run", &[]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let problems = o.results["problems"].to_string();
    assert!(
        problems.contains("hard-float") && problems.contains("capability \\\"fpu\\\""),
        "{problems}"
    );
    assert_eq!(
        o.results["problems"][0]["stage"], "manifest",
        "before anything is built"
    );
}
