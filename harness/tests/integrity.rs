//! A verdict that cannot be had without the work: exit statuses a CI gate can rely on, merges
//! that take only one authentic whole, explicit trust, private keys kept private, and runs
//! that end in a valid report whatever stops them (a signal, an emulator killed from
//! outside, a harness panic, a second run into the same directory, a full disk).
//!
//! Each runs the self-test firmware on QEMU through the real `fqp` binary.

mod common;

use common::{fqp, lab, qualify, repo, selftest_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fresh(name: &str) -> PathBuf {
    let out = repo().join("target/fqp-tests").join(name);
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// Runs `fqp <args>`; (exit status, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let o = fqp().args(args).output().expect("fqp runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn results(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn exit_statuses_follow_the_table() {
    // A selection whose tests passed: 0, and it says it is a selection.
    let o = qualify(
        &selftest_port(),
        "exit-pass",
        &["--test", "selftest/passes"],
    );
    assert_eq!(o.code, 0, "{}", o.explain());
    assert_eq!(o.results["selection"]["tests"][0], "selftest/passes");
    assert_eq!(o.results["suites"]["version"], 10);
    assert!(
        o.stdout.contains("only a selection of the tests ran"),
        "{}",
        o.explain()
    );
    // A flaky test is a product failure.
    let o = qualify(
        &selftest_port(),
        "exit-flaky",
        &["--test", "selftest/flaky"],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    assert_eq!(o.results["verdict"], "failed");
    // A capability that does not exist is a configuration error, named with the fix.
    let o = qualify(&selftest_port(), "exit-typo", &["--capability", "netwrok"]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let e = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(
        e.contains("--capability netwrok: no such capability") && e.contains("network"),
        "{e}"
    );
    let out = fresh("exit-full-disk");
    std::fs::create_dir_all(&out).unwrap();
    // Reports that cannot be written (a full disk) are an error, not a success.
    std::os::unix::fs::symlink("/dev/full", out.join("junit.xml.part")).unwrap();
    let (code, stdout, stderr) = run(&[
        "qualify",
        "--port",
        selftest_port().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--test",
        "selftest/passes",
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot write")
            && stderr.contains("junit.xml")
            && stderr.contains("No space left"),
        "{stderr}"
    );
}

#[test]
fn a_build_that_outlives_its_deadline_is_stopped() {
    let dir = fresh("build-deadline-port");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(selftest_port().join("port.toml")).unwrap();
    let text = text
        .replace(
            "crate = \"../../../../reference-port\"",
            &format!("crate = {:?}", repo().join("reference-port")),
        )
        .replace("[timeouts]\n", "[timeouts]\nbuild_ms = 1\n");
    assert!(text.contains("build_ms = 1") && text.contains(repo().to_str().unwrap()));
    std::fs::write(dir.join("port.toml"), text).unwrap();
    let o = qualify(&dir, "build-deadline", &["--test", "selftest/passes"]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let p = &o.results["problems"][0];
    assert_eq!(p["stage"], "build", "{p}");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("did not finish within 1 ms and was stopped"),
        "{p}"
    );
}

#[test]
fn an_output_directory_takes_one_run_at_a_time() {
    let out = fresh("locked");
    std::fs::create_dir_all(&out).unwrap();
    // The previous run's reports, looking current.
    std::fs::write(out.join("report.html"), "<p>QUALIFIED</p>").unwrap();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out.join(".fqp.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let port = selftest_port();
    let args = [
        "qualify",
        "--port",
        port.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--test",
        "selftest/passes",
    ];
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another fqp run") && stderr.contains("--out"),
        "{stderr}"
    );
    drop(lock);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        !html.contains("<p>QUALIFIED</p>"),
        "the stale report was replaced"
    );
}

/// Starts `fqp qualify` on the self-test port's hanging test and waits until the device runs
/// it; returns the process and its output directory.
fn start_hanging(name: &str, retries: &str) -> (std::process::Child, PathBuf) {
    let out = fresh(name);
    std::fs::create_dir_all(&out).unwrap();
    // A previous run's results, which must not survive looking current.
    std::fs::write(out.join("results.json"), "{\"verdict\": \"passed\"}").unwrap();
    let child = fqp()
        .args(["qualify", "--port"])
        .arg(selftest_port())
        .arg("--out")
        .arg(&out)
        .args(["--test", "selftest/hangs", "--retries", retries])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        let log = std::fs::read_to_string(out.join("serial.log")).unwrap_or_default();
        if log.contains("START id=selftest/hangs") {
            break;
        }
        assert!(Instant::now() < end, "the device never started the test");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, out)
}

/// QEMU processes whose command line names `out`.
fn emulators_of(out: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("qemu-system") && cmd.contains(out.to_str().unwrap()) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_output(child: std::process::Child) -> (i32, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn an_interrupted_run_stops_its_devices_and_says_so() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let (child, out) = start_hanging(&format!("interrupted-{signal}"), "5");
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (status, text) = wait_output(child);
        assert_eq!(status, code, "{text}");
        let r = results(&out);
        assert_eq!(r["verdict"], "interrupted", "{text}");
        assert_eq!(r["interrupted"], format!("SIG{signal}"));
        let t = &r["groups"][0]["tests"][0];
        assert_eq!(t["status"], "skipped", "{t}");
        assert!(
            t["message"].as_str().unwrap().contains("interrupted"),
            "{t}"
        );
        assert_eq!(r["qualification"]["qualified"], false);
        assert!(emulators_of(&out).is_empty(), "QEMU outlived the run");
        assert!(
            out.join("results.json.sig").exists(),
            "the report is signed"
        );
    }
}

#[test]
fn an_emulator_killed_from_outside_is_the_labs_failure() {
    let (child, out) = start_hanging("killed-from-outside", "0");
    let pids = emulators_of(&out);
    assert_eq!(pids.len(), 1, "{pids:?}");
    Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    let (status, text) = wait_output(child);
    assert_eq!(status, 2, "{text}");
    let r = results(&out);
    let errors = r["problems"].to_string();
    assert!(
        errors.contains("killed by signal 9 from outside fqp during selftest/hangs"),
        "{errors}"
    );
}

#[test]
fn a_harness_panic_is_reported_not_lost() {
    let out = fresh("worker-panic");
    let o = fqp()
        .env("FQP_TEST_PANIC_IN_WORKER", "1")
        .args(["qualify", "--port"])
        .arg(selftest_port())
        .arg("--out")
        .arg(&out)
        .args(["--test", "selftest/passes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let r = results(&out);
    assert_eq!(r["verdict"], "infrastructure_error");
    let e = r["problems"][0]["message"].as_str().unwrap();
    assert!(
        e.contains("internal error: the worker of device 1 panicked"),
        "{e}"
    );
    let t = &r["groups"][0]["tests"][0];
    assert_eq!(
        (&t["id"], &t["status"]),
        (&"selftest/passes".into(), &"error".into())
    );
}

#[test]
fn merge_takes_only_one_authentic_whole() {
    let part = |i: u32| {
        let o = qualify(
            &selftest_port(),
            &format!("merge-part{i}"),
            &[
                "--test",
                "selftest/passes",
                "--test",
                "selftest/skips",
                "--partition",
                &format!("{i}/2"),
            ],
        );
        assert_eq!(o.code, 0, "{}", o.explain());
        o.out.join("results.json")
    };
    let (a, b) = (part(1), part(2));
    let out = fresh("merged");
    let merge = |parts: &[&Path], extra: &[&str]| {
        let mut args = vec!["merge"];
        args.extend(parts.iter().map(|p| p.to_str().unwrap()));
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        run(&args)
    };
    // One part of two.
    let (code, _, e) = merge(&[&a], &[]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("parts missing: 2/2"), "{e}");
    // The same part twice.
    let (code, _, e) = merge(&[&a, &a], &[]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("given twice"), "{e}");
    // An edited part: its signature no longer holds.
    let edited = a.with_file_name("edited.json");
    let text = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&edited, text.replacen("\"passed\"", "\"failed\"", 1)).unwrap();
    std::fs::copy(
        a.with_extension("json.sig"),
        edited.with_extension("json.sig"),
    )
    .unwrap();
    let (code, _, e) = merge(&[&edited, &b], &[]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("changed after it was signed"), "{e}");
    // An unsigned part.
    let unsigned = a.with_file_name("unsigned.json");
    std::fs::copy(&a, &unsigned).unwrap();
    let (code, _, e) = merge(&[&unsigned, &b], &[]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("not signed"), "{e}");
    // A part signed by someone this lab does not trust.
    let stranger = a.with_file_name("stranger.json");
    std::fs::copy(&a, &stranger).unwrap();
    fqp_reports::sign::LabKey::create("A stranger")
        .unwrap()
        .sign_file(&stranger)
        .unwrap();
    let (code, _, e) = merge(&[&stranger, &b], &[]);
    assert_eq!(code, 2, "{e}");
    assert!(
        e.contains("A stranger") && e.contains("neither the trusted"),
        "{e}"
    );
    // The whole, authentic: merged, judged again, signed, and it verifies.
    let (code, stdout, e) = merge(&[&b, &a], &[]);
    assert_eq!(code, 0, "{stdout}\n{e}");
    let r = results(&out);
    assert_eq!(r["partition"], serde_json::Value::Null);
    assert_eq!(r["selection"]["tests"].as_array().unwrap().len(), 2);
    assert_eq!(r["qualification"]["qualified"], false);
    let (code, v, _) = run(&["verify", out.join("results.json").to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn verify_trusts_only_what_is_configured() {
    let o = qualify(&selftest_port(), "trust", &["--test", "selftest/passes"]);
    let results = o.out.join("results.json");
    let path = results.to_str().unwrap();
    // By default, the lab's own certificate (the tests' lab, FQP_LAB) is the one trusted.
    let (code, v, _) = run(&["verify", path]);
    assert_eq!(code, 0, "{v}");
    assert!(v.contains("trusted as this lab's certificate"), "{v}");
    assert!(v.contains("ok    suites: version 10"), "{v}");
    // Signed by a throwaway key: a valid signature by nobody trusted.
    let forged = o.out.join("forged.json");
    std::fs::copy(&results, &forged).unwrap();
    fqp_reports::sign::LabKey::create("Throwaway")
        .unwrap()
        .sign_file(&forged)
        .unwrap();
    let (code, v, _) = run(&["verify", forged.to_str().unwrap()]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v.contains("FAIL  signature: signed by") && v.contains("Throwaway"),
        "{v}"
    );
    // A machine without a lab certificate trusts no one until told.
    let empty = fresh("trust-empty-lab");
    let (code, v, _) = run(&["verify", path, "--lab", empty.to_str().unwrap()]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v.contains("no trusted signer") && v.contains("--trust"),
        "{v}"
    );
    let cert = lab().join("lab-cert.pem");
    let (code, v, _) = run(&[
        "verify",
        path,
        "--lab",
        empty.to_str().unwrap(),
        "--trust",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn private_keys_stay_in_the_lab() {
    let o = qualify(&selftest_port(), "keys", &["--test", "selftest/passes"]);
    assert_eq!(o.code, 0, "{}", o.explain());
    let mut stack = vec![o.out.clone()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let text = std::fs::read(&p).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
                "{} holds a private key",
                p.display()
            );
        }
    }
    assert!(o.out.join("pki/root-ca.crt").exists() && files > 10);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(lab().join("pki-root.key")), 0o600);
    assert_eq!(mode(lab().join("lab-key.pem")), 0o600);
    // The run's own keys lived in the lab directory while it ran, and are gone: what is left
    // there belongs to runs still going (other tests).
    let left: Vec<PathBuf> = std::fs::read_dir(lab().join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for dir in left {
        let pid = dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            Path::new("/proc").join(&pid).exists(),
            "{} outlived its run",
            dir.display()
        );
    }
}
