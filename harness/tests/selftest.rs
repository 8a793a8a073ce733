//! The harness reports every way a device can fail: each test runs the self-test firmware on
//! QEMU through the real `fqp` binary and checks the exit code, the result model and JUnit.

mod common;

use common::{qualify, repo, selftest_port};
use std::time::Instant;

#[test]
fn failing_check_is_reported_with_message_and_location() {
    let o = qualify(
        &selftest_port(),
        "fails-check",
        &["--test", "selftest/fails_check"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let t = o.test("selftest/fails_check");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["message"], "expected the answer to be 42, got 41");
    assert!(
        t["location"]
            .as_str()
            .unwrap()
            .starts_with("src/selftest.rs:"),
        "{t}"
    );
    let t = o.test("selftest/fails_check_eq");
    assert_eq!(t["message"], "2 + 2 == 5 failed: left 4, right 5");
    let junit = o.junit();
    assert!(junit.contains("<failure") && junit.contains("expected the answer to be 42, got 41"));
    assert!(
        o.stdout.contains("FAIL selftest/fails_check"),
        "{}",
        o.explain()
    );
}

#[test]
fn hard_fault_is_reported_with_pc_and_the_run_goes_on() {
    let o = qualify(
        &selftest_port(),
        "hard-fault",
        &["--test", "selftest/hard_fault", "--test", "selftest/passes"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let t = o.test("selftest/hard_fault");
    assert_eq!(t["status"], "error");
    assert_eq!(t["error_kind"], "fault");
    let msg = t["message"].as_str().unwrap();
    assert!(msg.starts_with("HardFault at pc=0x"), "{msg}");
    let pc = hex_detail(t, "pc");
    assert!(
        pc > 0 && pc < 0x0030_0000,
        "pc {pc:#x} is in the code region"
    );
    // `udf` is an undefined instruction: UsageFault UNDEFINSTR, escalated (FORCED) to HardFault.
    let cfsr = hex_detail(t, "cfsr");
    let hfsr = hex_detail(t, "hfsr");
    assert_ne!(cfsr & (1 << 16), 0, "UNDEFINSTR set in CFSR {cfsr:#x}");
    assert_ne!(hfsr & (1 << 30), 0, "FORCED set in HFSR {hfsr:#x}");
    assert_decoded_to_the_faulting_line(&o, t, msg);
    // The device was restarted and the next test ran on it.
    assert_eq!(o.test("selftest/passes")["status"], "passed");
    assert!(o.junit().contains("type=\"fault\""));
    // The report shows the failure with its fault registers, rendered by a browser.
    let dom = o.rendered_report();
    assert!(
        dom.contains(r#"class="verdict bad">NOT QUALIFIED</p>"#),
        "{dom}"
    );
    assert!(dom.contains(r#"id="test-selftest/hard_fault""#), "{dom}");
    assert!(dom.contains("HardFault at pc=0x"), "{dom}");
}

/// A hexadecimal field of a test's details.
fn hex_detail(t: &serde_json::Value, key: &str) -> u32 {
    let text = t["details"][key].as_str().unwrap();
    u32::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// The fault's pc is decoded from the image to the function and the very line that faulted
/// (in the test and its message), and the finding is a crash at that line.
fn assert_decoded_to_the_faulting_line(o: &common::Outcome, t: &serde_json::Value, msg: &str) {
    let src = std::fs::read_to_string(repo().join("reference-port/src/selftest.rs")).unwrap();
    let line = src.lines().position(|l| l.contains("udf #7")).unwrap() + 1;
    let at = format!("reference-port/src/selftest.rs:{line}");
    assert_eq!(t["details"]["source"], at.as_str(), "{t}");
    assert_eq!(t["location"], at.as_str(), "{t}");
    assert!(
        t["details"]["function"]
            .as_str()
            .unwrap()
            .ends_with("selftest::hard_fault"),
        "{t}"
    );
    assert!(
        msg.contains(&format!(
            "in {} at {at}",
            t["details"]["function"].as_str().unwrap()
        )),
        "{msg}"
    );
    // It is classified as a crash, with that line and what to look for.
    let finding = o.results["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["test"] == "selftest/hard_fault")
        .unwrap();
    assert_eq!(finding["category"], "crash", "{finding}");
    assert!(
        finding["first_divergence"]
            .as_str()
            .unwrap()
            .ends_with(&format!("({at})")),
        "{finding}"
    );
    assert!(
        finding["hint"]
            .as_str()
            .unwrap()
            .contains("selftest::hard_fault"),
        "{finding}"
    );
}

#[test]
fn panic_and_reset_are_errors_and_the_run_goes_on() {
    let o = qualify(
        &selftest_port(),
        "panic-reset",
        &[
            "--test",
            "selftest/panics",
            "--test",
            "selftest/resets",
            "--test",
            "selftest/noisy_pass",
            "--test",
            "selftest/skips",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let p = o.test("selftest/panics");
    assert_eq!(p["error_kind"], "panic");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("index out of bounds"),
        "{p}"
    );
    assert_eq!(o.test("selftest/resets")["error_kind"], "reset");
    // Noise, including a fake END line with a wrong checksum, does not fool the harness.
    let n = o.test("selftest/noisy_pass");
    assert_eq!(n["status"], "passed", "{n}");
    let s = o.test("selftest/skips");
    assert_eq!(s["status"], "skipped");
    assert_eq!(s["message"], "no such peripheral on this board");
}

#[test]
fn a_test_that_fails_then_passes_is_flaky_not_passed() {
    let o = qualify(
        &selftest_port(),
        "flaky",
        &[
            "--test",
            "selftest/flaky",
            "--test",
            "selftest/fails_check_eq",
        ],
    );
    let t = o.test("selftest/flaky");
    assert_eq!(t["status"], "flaky", "{t}");
    assert_eq!(t["retried"].as_array().map(Vec::len), Some(1));
    let msg = t["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "passed on attempt 2 after: failed: fails on run 1 after boot (src/selftest.rs:"
        ),
        "{msg}"
    );
    // A test that fails every time is retried, then reported as failed.
    let f = o.test("selftest/fails_check_eq");
    assert_eq!(f["status"], "failed");
    assert_eq!(
        f["retried"][0]["message"],
        "2 + 2 == 5 failed: left 4, right 5"
    );
    assert!(o.stdout.contains("FLAKY selftest/flaky"), "{}", o.explain());
    assert!(o.stdout.contains("1 flaky"), "{}", o.explain());
    let junit = o.junit();
    assert!(junit.contains("<flakyFailure"), "{junit}");
    assert!(junit.contains("<rerunFailure"), "{junit}");
    // Without retries, the same test simply fails.
    let o = qualify(
        &selftest_port(),
        "flaky-no-retry",
        &["--test", "selftest/flaky", "--retries", "0"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    assert_eq!(o.test("selftest/flaky")["status"], "failed");
}

#[test]
fn hung_test_times_out_and_the_harness_does_not_hang() {
    let t0 = Instant::now();
    let o = qualify(
        &selftest_port(),
        "hang",
        &["--test", "selftest/hangs", "--test", "selftest/passes"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let t = o.test("selftest/hangs");
    assert_eq!(t["error_kind"], "timeout");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .contains("no result within 1.5 s"),
        "{t}"
    );
    assert_eq!(o.test("selftest/passes")["status"], "passed");
    // 0.5 s test timeout + 1 s grace, plus build check and two boots: far below a minute.
    assert!(t0.elapsed().as_secs() < 60);
}

#[test]
fn device_that_never_syncs_is_an_infrastructure_error_with_a_report() {
    let o = qualify(&repo().join("harness/tests/ports/mute"), "mute", &[]);
    assert_eq!(o.code, 2, "{}", o.explain());
    assert_eq!(o.results["verdict"], "infrastructure_error");
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(err.contains("did not answer SYNC within 2.0 s"), "{err}");
    assert_eq!(o.results["problems"][0]["stage"], "boot");
    assert_eq!(o.results["findings"][0]["category"], "infrastructure");
    assert!(
        err.contains("no protocol here"),
        "the last console output is shown: {err}"
    );
    assert!(o.junit().contains("did not answer SYNC"));
    assert!(o.stdout.contains("INFRASTRUCTURE ERROR"));
    // The boot was retried once (the default) on a fresh emulator before giving up.
    assert!(err.contains("failed to start 2 times in a row"), "{err}");
    let serial = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert!(serial.contains("boot 2"), "{serial}");
}

#[test]
fn broken_manifest_is_an_infrastructure_error_naming_the_key() {
    let dir = repo().join("target/fqp-tests/broken-manifest-port");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(selftest_port().join("port.toml")).unwrap();
    std::fs::write(
        dir.join("port.toml"),
        text.replace("method = \"qemu\"", "method = \"jtag\""),
    )
    .unwrap();
    let o = qualify(&dir, "broken-manifest", &[]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(
        err.contains("flash.method") && err.contains("fix: use \"qemu\""),
        "{err}"
    );
    assert_eq!(o.results["problems"][0]["stage"], "manifest");
    let finding = &o.results["findings"][0];
    assert_eq!(finding["category"], "configuration", "{finding}");
    assert!(
        finding["hint"]
            .as_str()
            .unwrap()
            .starts_with("use \"qemu\""),
        "{finding}"
    );
}

#[test]
fn missing_qemu_says_how_to_install_it() {
    let dir = repo().join("target/fqp-tests/no-qemu-port");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(selftest_port().join("port.toml")).unwrap();
    let text = text
        .replace(
            "crate = \"../../../../reference-port\"",
            &format!("crate = {:?}", repo().join("reference-port")),
        )
        .replace(
            "machine = \"mps2-an385\"",
            "machine = \"mps2-an385\"\nbinary = \"qemu-system-arm-not-installed\"",
        );
    std::fs::write(dir.join("port.toml"), text).unwrap();
    let o = qualify(&dir, "no-qemu", &[]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(
        err.contains("qemu-system-arm-not-installed not found"),
        "{err}"
    );
    assert!(err.contains("apt-get install qemu-system-arm"), "{err}");
    assert!(
        o.results["firmware"]["sha256"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "the build still ran and is recorded"
    );
}

#[test]
fn unknown_selection_lists_the_groups() {
    let o = qualify(&selftest_port(), "no-match", &["--group", "nope"]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(err.contains("the device has groups: selftest"), "{err}");
    assert_eq!(o.results["findings"][0]["category"], "configuration");
}

#[test]
fn a_fault_in_the_ports_start_up_is_the_ports_crash_named_by_function() {
    let port = repo().join("harness/tests/ports/fault-at-start");
    let o = qualify(&port, "fault-at-start", &[]);
    // The product's failure, not the lab's: exit 1, verdict failed, once (not retried).
    assert_eq!(o.code, 1, "{}", o.explain());
    assert_eq!(o.results["verdict"], "failed");
    let p = &o.results["problems"][0];
    assert_eq!(p["stage"], "port", "{p}");
    let msg = p["message"].as_str().unwrap();
    let src = std::fs::read_to_string(repo().join("reference-port/src/selftest.rs")).unwrap();
    let line = src.lines().position(|l| l.contains("udf #9")).unwrap() + 1;
    assert!(
        msg.contains("faulted while starting")
            && msg.contains("in fqp_port_mps2_an385::selftest::boot")
            && msg.contains(&format!("reference-port/src/selftest.rs:{line}")),
        "{msg}"
    );
    assert!(!msg.contains("times in a row"), "not retried: {msg}");
    assert_eq!(o.results["findings"][0]["category"], "crash");
}

/// The run failed (exit 1) with one problem, of stage `port` (the port's, told once): its
/// message.
fn the_one_port_problem(o: &common::Outcome) -> &str {
    assert_eq!(o.code, 1, "{}", o.explain());
    let problems = o.results["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "told once: {problems:?}");
    assert_eq!(problems[0]["stage"], "port");
    problems[0]["message"].as_str().unwrap()
}

#[test]
fn test_interrupts_that_never_fire_are_named_once_and_their_tests_blocked() {
    let port = repo().join("harness/tests/ports/irq-off");
    let o = qualify(&port, "irq-off", &["--group", "isr", "--group", "queue"]);
    let msg = the_one_port_problem(&o);
    assert!(
        msg.contains("test interrupt 0") && msg.contains("Board::pend_test_irq(0)"),
        "{msg}"
    );
    for g in o.results["groups"].as_array().unwrap() {
        for t in g["tests"].as_array().unwrap() {
            if g["name"] == "isr" {
                assert_eq!(t["status"], "skipped", "{t}");
                assert!(t["message"].as_str().unwrap().starts_with("blocked"), "{t}");
            } else {
                assert_eq!(t["status"], "passed", "the rest runs: {t}");
            }
        }
    }
}

#[test]
fn without_an_instruction_clock_a_slow_tick_is_found_against_the_hosts_clock() {
    // The same port in real time (no icount), as a real board runs: the device's durations
    // are checked against the host's after the tests.
    let port = repo().join("harness/tests/ports/tick-10x-realtime");
    let o = qualify(&port, "tick-10x-realtime", &["--group", "delay"]);
    let msg = the_one_port_problem(&o);
    assert!(
        msg.contains("times slower than the host's: its tests took") && msg.contains("CPU_HZ"),
        "{msg}"
    );
}

#[test]
fn a_tick_ten_times_too_slow_is_named_with_the_clock_constant() {
    let port = repo().join("harness/tests/ports/tick-10x");
    let o = qualify(&port, "tick-10x", &["--group", "queue"]);
    // The timed tests may still pass; the tick's rate is what is named, once.
    let msg = the_one_port_problem(&o);
    assert!(
        msg.contains("runs at about 100 Hz")
            && msg.contains("tick_hz = 1000")
            && msg.contains("CPU_HZ"),
        "{msg}"
    );
}

#[test]
fn a_test_that_reboots_the_device_is_followed_across_the_resets() {
    // The test resets the board twice (REBOOT) and passes on its third run: the harness syncs
    // again after each reset, provisions the settings again, and runs the test on.
    let o = qualify(
        &selftest_port(),
        "reboots",
        &[
            "--test",
            "selftest/reboots_and_goes_on",
            "--test",
            "selftest/passes",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.explain());
    let t = o.test("selftest/reboots_and_goes_on");
    assert_eq!(t["status"], "passed", "{t}");
    let output: Vec<&str> = t["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for expected in [
        "run 1 of this test",
        "[fqp: the test rebooted the device (1); synced again, the test goes on]",
        "run 2 of this test",
        "[fqp: the test rebooted the device (2); synced again, the test goes on]",
        "run 3 of this test",
    ] {
        assert!(output.contains(&expected), "{expected:?} in {output:?}");
    }
    // One boot by the harness; the device started three times (and the next test ran on it).
    let transcript = std::fs::read_to_string(o.out.join("serial.log")).unwrap();
    assert_eq!(
        transcript.matches("--- fqp: boot").count(),
        1,
        "{transcript}"
    );
    assert_eq!(transcript.matches("@FQP HELLO").count(), 3, "{transcript}");
    assert_eq!(o.test("selftest/passes")["status"], "passed");
}
