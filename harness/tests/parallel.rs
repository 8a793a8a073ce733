//! Parallel runs: a pool of QEMU devices, and CI partitions merged back. Both must give
//! exactly the results of one device running everything.

mod common;

use common::{qualify, repo, Outcome};

/// (id, status, error kind, listing index) of every test, in report order.
fn shape(o: &Outcome) -> Vec<(String, String, String, u64)> {
    o.results["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
                t["error_kind"].as_str().unwrap_or("").to_string(),
                t["index"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The run's live event log (`events.jsonl`) tells the run its results describe: the plan
/// before any result, each test's result once (with its status), every device done, the
/// end last, in time order.
fn assert_events_tell_the_run(o: &Outcome, devices: usize) {
    let text = std::fs::read_to_string(o.out.join("events.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap().to_string();
    let at: Vec<u64> = events
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "in time order");
    let tests = shape(o);
    let planned = events.iter().position(|e| kind(e) == "planned").unwrap();
    assert_eq!(events[planned]["tests"].as_u64(), Some(tests.len() as u64));
    assert_eq!(events[planned]["devices"].as_u64(), Some(devices as u64));
    let results: Vec<(String, String)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| kind(e) == "result")
        .map(|(k, e)| {
            assert!(k > planned, "a result before the plan");
            let t = &e["test"];
            (
                t["id"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut told = results.clone();
    told.sort();
    let mut reported: Vec<(String, String)> =
        tests.iter().map(|t| (t.0.clone(), t.1.clone())).collect();
    reported.sort();
    assert_eq!(told, reported, "each result told once, as reported");
    let done: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| kind(e) == "device_done")
        .map(|e| e["device"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        done.len(),
        devices,
        "every device said it was done: {done:?}"
    );
    assert!(events
        .iter()
        .filter(|e| kind(e) == "running")
        .all(|e| done.contains(e["device"].as_str().unwrap())));
    assert_eq!(kind(events.last().unwrap()), "finished");
}

#[test]
fn a_pool_of_devices_gives_the_single_device_results() {
    let port = repo().join("reference-port");
    let one = qualify(
        &port,
        "pool-1",
        &["--group", "queue", "--group", "mutex", "--group", "timer"],
    );
    let three = qualify(
        &port,
        "pool-3",
        &[
            "--group",
            "queue",
            "--group",
            "mutex",
            "--group",
            "timer",
            "--devices",
            "3",
        ],
    );
    assert_eq!(one.code, 0, "{}", one.explain());
    assert_eq!(three.code, 0, "{}", three.explain());
    assert_eq!(shape(&one), shape(&three));
    assert_events_tell_the_run(&one, 1);
    assert_events_tell_the_run(&three, 3);
    for k in 1..=3 {
        let log = std::fs::read_to_string(three.out.join(format!("serial-{k}.log"))).unwrap();
        assert!(log.contains("@FQP SUMMARY"), "device {k} ran and summed up");
    }
}

#[test]
fn a_pool_survives_crashing_tests() {
    let port = common::selftest_port();
    // A test that fails, and every way a test can end the device (not retried: every retry
    // of a crash is one more boot, and boots are what this test costs).
    let crashing = [
        "--retries",
        "0",
        "--test",
        "selftest/fails_check",
        "--test",
        "selftest/hard_fault",
        "--test",
        "selftest/panics",
        "--test",
        "selftest/resets",
        "--test",
        "selftest/passes",
    ];
    let one = qualify(&port, "selftest-pool-1", &crashing);
    let two = qualify(
        &port,
        "selftest-pool-2",
        &[&crashing[..], &["--devices", "2"]].concat(),
    );
    assert_eq!(one.code, 1, "{}", one.explain());
    assert_eq!(two.code, 1, "{}", two.explain());
    assert_eq!(shape(&one), shape(&two));
    assert!(
        two.results["problems"].as_array().unwrap().is_empty(),
        "{}",
        two.explain()
    );
}

#[test]
fn partitions_merge_into_the_unpartitioned_run() {
    let port = repo().join("reference-port");
    let parts: Vec<Outcome> = (1..=3)
        .map(|i| {
            qualify(
                &port,
                &format!("part-{i}"),
                &["--partition", &format!("{i}/3")],
            )
        })
        .collect();
    for p in &parts {
        assert_eq!(p.code, 0, "{}", p.explain());
        assert_eq!(p.results["partition"]["count"], 3);
    }
    let sizes: Vec<usize> = parts.iter().map(|p| shape(p).len()).collect();
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "balanced: {sizes:?}"
    );

    let out = repo().join("target/fqp-tests/part-merged");
    let mut cmd = common::fqp();
    cmd.arg("merge").arg("--out").arg(&out);
    for p in &parts {
        cmd.arg(p.out.join("results.json"));
    }
    let status = cmd.status().unwrap();
    assert_eq!(status.code(), Some(0));
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let merged = Outcome {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
        out: out.clone(),
        results: merged,
    };
    // The merge is the whole run: every test of the image once, in listing order (the pinned
    // cases make QUALIFIED below impossible with a test missing), each as its part had it.
    let listed: Vec<u64> = (0..sizes.iter().sum::<usize>() as u64).collect();
    let indexes: Vec<u64> = shape(&merged).iter().map(|t| t.3).collect();
    assert_eq!(indexes, listed);
    let mut from_parts: Vec<_> = parts.iter().flat_map(shape).collect();
    from_parts.sort_by_key(|t| t.3);
    assert_eq!(shape(&merged), from_parts);
    assert_eq!(merged.results["partition"], serde_json::Value::Null);
    merged.junit();
    // The merged results are signed, and their QUALIFIED statement checks out.
    let v = common::fqp()
        .arg("verify")
        .arg(out.join("results.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "{text}");
    assert!(text.contains("ok    verdict: passed, QUALIFIED"), "{text}");
}
