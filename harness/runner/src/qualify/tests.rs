use super::*;

#[test]
fn a_passed_test_under_its_threshold_fails() {
    let mut run = test_run();
    for (id, value) in [
        ("perf/basic_processing", 3000.0),
        ("perf/cooperative_scheduling", 1.0),
        ("perf/message_processing", 1e9),
    ] {
        let mut t = Test::new(id, Status::Passed);
        t.metrics.push(fqp_reports::Metric {
            name: id.trim_start_matches("perf/").into(),
            value,
            unit: "/s".into(),
        });
        run.push("perf", t);
    }
    hold_to_thresholds(&mut run);
    let tests = &run.groups[0].tests;
    assert_eq!(tests[0].status, Status::Passed);
    assert_eq!(tests[1].status, Status::Failed);
    assert!(
        tests[1]
            .message
            .as_deref()
            .unwrap()
            .contains("below the threshold"),
        "{:?}",
        tests[1].message
    );
    assert_eq!(tests[2].status, Status::Passed);
}

fn listed(ids: &[&str]) -> Vec<Listed> {
    ids.iter()
        .enumerate()
        .map(|(index, id)| Listed {
            id: id.to_string(),
            index,
            timeout_ms: 1,
        })
        .collect()
}

fn ids(l: &[Listed]) -> Vec<&str> {
    l.iter().map(|t| t.id.as_str()).collect()
}

#[test]
fn partitions_cover_the_selection_exactly_once() {
    let all = listed(&["a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "c/2"]);
    let mut seen = Vec::new();
    for index in 1..=3 {
        let o = Options {
            partition: Some(Partition { index, count: 3 }),
            ..Default::default()
        };
        let part = select(all.clone(), &o).unwrap();
        assert!(
            part.len() >= 2 && part.len() <= 3,
            "balanced: {:?}",
            ids(&part)
        );
        seen.extend(part.into_iter().map(|t| t.index));
    }
    seen.sort();
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
    // More parts than tests: some parts are empty, which is not an error.
    let o = Options {
        partition: Some(Partition { index: 9, count: 9 }),
        ..Default::default()
    };
    assert!(select(all, &o).unwrap().is_empty());
}

fn attempt(status: Status, msg: &str) -> Test {
    let mut t = Test::new("g/t", status);
    t.message = Some(msg.into());
    if status == Status::Failed {
        t.location = Some("src/g.rs:7".into());
    }
    if status == Status::Error {
        t.error_kind = Some(ErrorKind::Timeout);
    }
    t
}

#[test]
fn a_pass_after_failures_is_flaky_and_keeps_the_failures() {
    let t = combine(
        vec![
            attempt(Status::Failed, "off by one"),
            attempt(Status::Error, "no result"),
        ],
        attempt(Status::Passed, ""),
    );
    assert_eq!(t.status, Status::Flaky);
    assert_eq!(t.attempts(), 3);
    assert_eq!(
        t.message.as_deref(),
        Some("passed on attempt 3 after: failed: off by one (src/g.rs:7)")
    );
    assert_eq!(t.retried[1].describe(), "error [timeout]: no result");
    // Failing every time is a failure with the last attempt's message.
    let t = combine(
        vec![attempt(Status::Failed, "first")],
        attempt(Status::Failed, "second"),
    );
    assert_eq!((t.status, t.attempts()), (Status::Failed, 2));
    assert_eq!(t.message.as_deref(), Some("second"));
    // A single pass is a pass.
    let t = combine(vec![], attempt(Status::Passed, ""));
    assert_eq!((t.status, t.attempts()), (Status::Passed, 1));
}

#[test]
fn units_are_whole_groups_in_order() {
    let u = units(listed(&["a/1", "a/2", "b/1", "c/1", "c/2"]));
    let shapes: Vec<Vec<&str>> = u.iter().map(|g| ids(g)).collect();
    assert_eq!(
        shapes,
        [vec!["a/1", "a/2"], vec!["b/1"], vec!["c/1", "c/2"]]
    );
}

#[test]
fn selection_by_group_and_pattern() {
    let all = listed(&["queue/a", "queue/b", "sem/a", "mutex/inherit"]);
    let o = Options {
        groups: vec!["queue".into()],
        ..Default::default()
    };
    assert_eq!(select(all.clone(), &o).unwrap().len(), 2);
    let o = Options {
        tests: vec!["/a".into()],
        ..Default::default()
    };
    assert_eq!(select(all.clone(), &o).unwrap().len(), 2);
    let o = Options {
        groups: vec!["sem".into()],
        tests: vec!["inherit".into()],
        ..Default::default()
    };
    let e = select(all, &o).unwrap_err().to_string();
    assert!(e.contains("queue, sem, mutex"), "{e}");
}
