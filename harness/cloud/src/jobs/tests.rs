//! Jobs against the contract: a device's walk through its executions, and the operator's
//! side (targets, continuous jobs, cancel, timeouts).

use super::*;

use crate::store::Scratch;

/// A cloud with three things, `meter` in group `floor` under `fleet`.
fn cloud(name: &str) -> Scratch {
    let store = Scratch::new(name);
    let r = Registry::new(&store);
    for t in ["lamp", "meter", "late"] {
        r.put_thing(t, None).unwrap();
    }
    r.create_group("fleet", None).unwrap();
    r.create_group("floor", Some("fleet")).unwrap();
    r.add_to_group("floor", "meter").unwrap();
    store
}

fn job<'a>(id: &'a str, things: Vec<&'a str>, groups: Vec<&'a str>) -> NewJob<'a> {
    NewJob {
        id,
        document: json!({"operation": id}),
        things,
        groups,
        ..NewJob::default()
    }
}

fn ask(jobs: &Jobs, thing: &str, request: &str, body: &str, now: u64) -> Vec<Message> {
    jobs.handle(thing, request, body.as_bytes(), now).unwrap()
}

#[test]
fn a_device_starts_works_and_finishes_its_executions_in_order() {
    let cloud = cloud("walk");
    let jobs = Jobs::new(&cloud);
    let notes = jobs
        .create(&job("first", vec!["lamp"], vec![]), 10)
        .unwrap();
    assert_eq!(notes[0].topic, "$aws/things/lamp/jobs/notify");
    assert_eq!(notes[0].payload["jobs"]["QUEUED"][0]["jobId"], "first");
    assert_eq!(notes[1].topic, "$aws/things/lamp/jobs/notify-next");
    assert_eq!(
        notes[1].payload["execution"]["jobDocument"],
        json!({"operation": "first"})
    );
    jobs.create(&job("second", vec!["lamp"], vec![]), 11)
        .unwrap();
    let out = ask(&jobs, "lamp", "get", r#"{"clientToken":"c"}"#, 12);
    assert_eq!(out[0].topic, "$aws/things/lamp/jobs/get/accepted");
    assert_eq!(out[0].payload["queuedJobs"].as_array().unwrap().len(), 2);
    assert_eq!(out[0].payload["clientToken"], "c");
    // start-next takes the oldest; asked again, it gives the same one.
    let out = ask(
        &jobs,
        "lamp",
        "start-next",
        r#"{"statusDetails":{"step":"download"}}"#,
        13,
    );
    let e = &out[0].payload["execution"];
    assert_eq!(
        (e["jobId"].as_str(), e["status"].as_str()),
        (Some("first"), Some("IN_PROGRESS"))
    );
    assert_eq!(e["versionNumber"], 2);
    assert_eq!(e["statusDetails"], json!({"step": "download"}));
    assert_eq!(out[2].topic, "$aws/things/lamp/jobs/notify-next");
    let again = ask(&jobs, "lamp", "start-next", "", 14);
    assert_eq!(again.len(), 1, "nothing changed, nobody notified");
    assert_eq!(again[0].payload["execution"]["jobId"], "first");
    // Updates: the version must match, and a terminal state is final.
    let out = ask(
        &jobs,
        "lamp",
        "first/update",
        r#"{"status":"SUCCEEDED","expectedVersion":1}"#,
        15,
    );
    assert_eq!(out[0].topic, "$aws/things/lamp/jobs/first/update/rejected");
    assert_eq!(out[0].payload["code"], "VersionMismatch");
    assert_eq!(out[0].payload["executionState"]["versionNumber"], 2);
    let out = ask(
        &jobs,
        "lamp",
        "first/update",
        r#"{"status":"SUCCEEDED","expectedVersion":2}"#,
        16,
    );
    assert_eq!(out[0].payload["executionState"]["status"], "SUCCEEDED");
    assert_eq!(out[0].payload["executionState"]["versionNumber"], 3);
    assert_eq!(
        out[2].payload["execution"]["jobId"], "second",
        "the next one is announced"
    );
    let out = ask(
        &jobs,
        "lamp",
        "first/update",
        r#"{"status":"IN_PROGRESS"}"#,
        17,
    );
    assert_eq!(out[0].payload["code"], "InvalidStateTransition");
    assert_eq!(out[0].payload["executionState"]["status"], "SUCCEEDED");
    let out = ask(&jobs, "lamp", "first/get", "", 17);
    assert_eq!(out[0].payload["code"], "TerminalStateReached");
    let out = ask(&jobs, "lamp", "$next/get", "", 18);
    assert_eq!(out[0].payload["execution"]["jobId"], "second");
    let out = ask(&jobs, "lamp", "second/get", "", 18);
    assert_eq!(out[0].payload["execution"]["status"], "QUEUED");
}

#[test]
fn bad_requests_are_refused_with_the_contracts_codes() {
    let cloud = cloud("bad");
    let jobs = Jobs::new(&cloud);
    jobs.create(&job("j", vec!["lamp"], vec![]), 1).unwrap();
    for (request, body, code) in [
        ("get", "{oops", "InvalidJson"),
        ("j/update", r#"{"status":"CANCELED"}"#, "InvalidRequest"),
        ("j/update", r#"{}"#, "InvalidRequest"),
        (
            "nope/update",
            r#"{"status":"SUCCEEDED"}"#,
            "ResourceNotFound",
        ),
        ("nope/get", "", "ResourceNotFound"),
        ("j/frobnicate", "", "InvalidTopic"),
    ] {
        let out = ask(&jobs, "lamp", request, body, 2);
        assert_eq!(out.len(), 1, "{request}");
        assert_eq!(
            out[0].topic,
            format!("$aws/things/lamp/jobs/{request}/rejected")
        );
        assert_eq!(out[0].payload["code"], code, "{request} {body}");
    }
    // Nothing queued: start-next and $next/get answer without an execution.
    let out = ask(&jobs, "meter", "start-next", "", 3);
    assert_eq!(out[0].payload.get("execution"), None);
    assert!(matches!(
        jobs.create(&job("j", vec!["lamp"], vec![]), 4),
        Err(JobsError::Exists(_))
    ));
    assert!(matches!(
        jobs.create(&job("k", vec![], vec![]), 4),
        Err(JobsError::NoTarget(_))
    ));
    assert!(matches!(
        jobs.create(&job("k", vec!["ghost"], vec![]), 4),
        Err(JobsError::Registry(_))
    ));
}

#[test]
fn groups_are_reached_now_and_continuous_jobs_later() {
    let cloud = cloud("groups");
    let jobs = Jobs::new(&cloud);
    let notes = jobs.create(&job("once", vec![], vec!["fleet"]), 1).unwrap();
    assert_eq!(
        notes[0].topic, "$aws/things/meter/jobs/notify",
        "through the nested group"
    );
    let mut continuous = job("always", vec![], vec!["fleet"]);
    continuous.continuous = true;
    jobs.create(&continuous, 2).unwrap();
    let notes = jobs.join_group("floor", "late", 3).unwrap();
    let queued: Vec<&str> = notes[0].payload["jobs"]["QUEUED"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(
        queued,
        ["always"],
        "only the continuous job reaches a thing that joins later"
    );
}

#[test]
fn cancel_and_timeout_end_pending_executions() {
    let cloud = cloud("end");
    let jobs = Jobs::new(&cloud);
    let mut timed = job("timed", vec!["lamp"], vec![]);
    timed.in_progress_timeout_s = Some(60);
    jobs.create(&timed, 0).unwrap();
    jobs.create(&job("doomed", vec!["meter"], vec![]), 0)
        .unwrap();
    ask(&jobs, "lamp", "start-next", "", 10);
    assert!(jobs.expire(69).unwrap().is_empty(), "not yet");
    let notes = jobs.expire(70).unwrap();
    assert_eq!(notes[0].topic, "$aws/things/lamp/jobs/notify");
    let out = ask(&jobs, "lamp", "timed/get", "", 71);
    assert_eq!(out[0].payload["code"], "TerminalStateReached");
    assert_eq!(out[0].payload["executionState"]["status"], "TIMED_OUT");
    jobs.cancel("doomed", 80).unwrap();
    let e = jobs.execution("meter", "doomed").unwrap().unwrap();
    assert_eq!(e["status"], "CANCELED");
    let out = ask(
        &jobs,
        "meter",
        "doomed/update",
        r#"{"status":"IN_PROGRESS"}"#,
        82,
    );
    assert_eq!(out[0].payload["code"], "InvalidStateTransition");
    assert!(matches!(jobs.cancel("ghost", 83), Err(JobsError::NoJob(_))));
}

#[test]
fn a_fleet_job_reaches_every_thing_and_a_continuous_one_those_added_later() {
    let s = Scratch::new("jobs-fleet");
    let r = Registry::new(&s);
    for t in ["lamp", "meter"] {
        r.put_thing(t, None).unwrap();
    }
    let jobs = Jobs::new(&s);
    let fleet = |id, continuous| NewJob {
        id,
        document: json!({"op": "update"}),
        fleet: true,
        continuous,
        ..Default::default()
    };
    jobs.create(&fleet("once", false), 1).unwrap();
    jobs.create(&fleet("always", true), 1).unwrap();
    assert!(jobs.execution("lamp", "once").unwrap().is_some());
    assert!(jobs.execution("meter", "always").unwrap().is_some());
    r.put_thing("valve", None).unwrap();
    let notes = jobs.thing_added("valve", 2).unwrap();
    assert!(notes
        .iter()
        .any(|m| m.topic == "$aws/things/valve/jobs/notify-next"));
    assert!(jobs.execution("valve", "always").unwrap().is_some());
    assert!(
        jobs.execution("valve", "once").unwrap().is_none(),
        "not continuous"
    );
    let listed = jobs.all().unwrap();
    assert_eq!(listed.iter().filter(|j| j["fleet"] == true).count(), 2);
}
