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
    for k in 1..=3 {
        let log = std::fs::read_to_string(three.out.join(format!("serial-{k}.log"))).unwrap();
        assert!(log.contains("@FQP SUMMARY"), "device {k} ran and summed up");
    }
}

#[test]
fn a_pool_survives_crashing_tests() {
    let port = common::selftest_port();
    let one = qualify(&port, "selftest-pool-1", &[]);
    let two = qualify(&port, "selftest-pool-2", &["--devices", "2"]);
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
    let whole = qualify(&port, "part-whole", &[]);
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
    assert_eq!(sizes.iter().sum::<usize>(), shape(&whole).len());
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
    assert_eq!(shape(&merged), shape(&whole));
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

#[test]
fn merge_refuses_a_result_twice() {
    let port = repo().join("reference-port");
    let a = qualify(
        &port,
        "merge-dup",
        &["--group", "delay", "--partition", "1/2"],
    );
    let o = common::fqp()
        .args(["merge", "--out"])
        .arg(repo().join("target/fqp-tests/merge-dup-out"))
        .arg(a.out.join("results.json"))
        .arg(a.out.join("results.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("part 1/2 is given twice"), "{e}");
}
