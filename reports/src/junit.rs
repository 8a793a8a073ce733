//! JUnit XML: one `<testsuite>` per group, one `<testcase>` per test, classname
//! `<port>.<group>`. Failed checks are `<failure>`, device errors `<error>` (type = error
//! kind), skips `<skipped>`; console output goes to `<system-out>`.

use crate::model::{Run, Status};
use junit_report::{Duration, OffsetDateTime, ReportBuilder, TestCase, TestSuiteBuilder};
use std::io::Write;

fn duration_of(t: &crate::Test) -> Duration {
    match t.device_us {
        Some(us) => Duration::microseconds(us as i64),
        None => Duration::milliseconds(t.wall_ms as i64),
    }
}

/// Writes the JUnit rendering of `run` to `out`.
pub fn write_junit(run: &Run, out: impl Write) -> Result<(), String> {
    let started =
        OffsetDateTime::parse(&run.started, &time::format_description::well_known::Rfc3339)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut suites = Vec::new();
    for g in &run.groups {
        let mut suite = TestSuiteBuilder::new(&g.name);
        suite.set_timestamp(started);
        for t in &g.tests {
            let d = duration_of(t);
            let msg = t.message.as_deref().unwrap_or("");
            let mut case = match t.status {
                Status::Passed => TestCase::success(&t.name, d),
                Status::Failed => {
                    let at = t
                        .location
                        .as_deref()
                        .map(|l| format!(" (at {l})"))
                        .unwrap_or_default();
                    TestCase::failure(&t.name, d, "check", &format!("{msg}{at}"))
                }
                Status::Error => {
                    let kind = t.error_kind.map_or("error", |k| k.as_str());
                    TestCase::error(&t.name, d, kind, msg)
                }
                Status::Skipped => TestCase::skipped_with_cause(&t.name, "skip", msg),
                // JUnit has no flaky outcome: a pass, with the failures told in its output.
                Status::Flaky => TestCase::success(&t.name, d),
            };
            case.set_classname(&format!("{}.{}", run.port.name, g.name));
            let mut out_text = t.output.join("\n");
            if t.status == Status::Flaky {
                out_text = format!("FLAKY after {} attempts: {msg}\n{out_text}", t.attempts);
            }
            for (k, v) in &t.details {
                out_text.push_str(&format!("\n{k}={v}"));
            }
            if !out_text.is_empty() {
                case.set_system_out(&out_text);
            }
            suite.add_testcase(case);
        }
        suites.push(suite.build());
    }
    if !run.infrastructure_errors.is_empty() {
        // Make infrastructure problems visible to CI systems that only read JUnit.
        let mut suite = TestSuiteBuilder::new("fqp-infrastructure");
        for (n, e) in run.infrastructure_errors.iter().enumerate() {
            let mut case = TestCase::error(
                &format!("infrastructure-{}", n + 1),
                Duration::ZERO,
                "infrastructure",
                e,
            );
            case.set_classname(&format!("{}.fqp", run.port.name));
            suite.add_testcase(case);
        }
        suites.push(suite.build());
    }
    ReportBuilder::new()
        .add_testsuites(suites)
        .build()
        .write_xml(out)
        .map_err(|e| format!("writing JUnit XML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn sample() -> Run {
        let mut run = Run {
            schema: SCHEMA_VERSION,
            harness: "0.1.0".into(),
            port: Port {
                name: "demo".into(),
                board: "b".into(),
                vendor: None,
                description: None,
                capabilities: vec![],
                manifest: "port.toml".into(),
            },
            firmware: None,
            started: "2026-11-24T06:00:00Z".into(),
            duration_ms: 1234,
            verdict: Verdict::Failed,
            infrastructure_errors: vec![],
            partition: None,
            qualification: None,
            groups: vec![],
        };
        let mut pass = Test::new("queue/fifo", Status::Passed);
        pass.device_us = Some(1500);
        run.push("queue", pass);
        let mut fail = Test::new("queue/timeout", Status::Failed);
        fail.message = Some("left 1, right <2> & \"3\"".into());
        fail.location = Some("src/queue.rs:42".into());
        fail.output = vec!["log line".into()];
        run.push("queue", fail);
        let mut err = Test::new("sem/isr", Status::Error);
        err.error_kind = Some(ErrorKind::Fault);
        err.message = Some("HardFault at pc=0x00001234".into());
        err.details.insert("pc".into(), "0x00001234".into());
        run.push("sem", err);
        let mut flaky = Test::new("sem/flaky", Status::Flaky);
        flaky.attempts = 2;
        flaky.message = Some("failed once: timeout".into());
        run.push("sem", flaky);
        let mut skip = Test::new("sem/hw", Status::Skipped);
        skip.message = Some("no timer".into());
        run.push("sem", skip);
        run
    }

    #[test]
    fn counts_and_verdict() {
        let run = sample();
        let s = run.summary();
        assert_eq!(
            (s.total, s.passed, s.failed, s.errors, s.skipped, s.flaky),
            (5, 1, 1, 1, 1, 1)
        );
        assert_eq!(run.decide(), Verdict::Failed);
        assert_eq!(run.decide().exit_code(), 1);
    }

    #[test]
    fn junit_is_well_formed_and_complete() {
        let mut buf = Vec::new();
        write_junit(&sample(), &mut buf).unwrap();
        let xml = String::from_utf8(buf).unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("JUnit output parses as XML");
        let suites: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0].attribute("name"), Some("queue"));
        assert_eq!(suites[0].attribute("tests"), Some("2"));
        assert_eq!(suites[0].attribute("failures"), Some("1"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(
            failure.attribute("message"),
            Some("left 1, right <2> & \"3\" (at src/queue.rs:42)")
        );
        let error = doc.descendants().find(|n| n.has_tag_name("error")).unwrap();
        assert_eq!(error.attribute("type"), Some("fault"));
        let case = error.parent().unwrap();
        assert_eq!(case.attribute("classname"), Some("demo.sem"));
        assert!(doc.descendants().any(|n| n.has_tag_name("skipped")));
        let pass = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("fifo"))
            .unwrap();
        assert_eq!(pass.attribute("time"), Some("0.0015"));
        // A flaky test is a testcase without failure whose output says it was flaky.
        let flaky = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("flaky"))
            .unwrap();
        assert!(!flaky
            .children()
            .any(|n| n.has_tag_name("failure") || n.has_tag_name("error")));
        let out = flaky
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap();
        assert!(
            out.starts_with("FLAKY after 2 attempts: failed once"),
            "{out}"
        );
    }

    #[test]
    fn infrastructure_errors_appear_in_junit() {
        let mut run = sample();
        run.infrastructure_errors
            .push("device never answered SYNC".into());
        assert_eq!(run.decide(), Verdict::InfrastructureError);
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        let xml = String::from_utf8(buf).unwrap();
        assert!(xml.contains("device never answered SYNC"));
    }

    #[test]
    fn json_round_trip() {
        let dir = std::env::temp_dir().join(format!("fqp-reports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("results.json");
        crate::write_json(&sample(), &p).unwrap();
        assert_eq!(crate::read_json(&p).unwrap(), sample());
        let mut bad = serde_json::to_value(sample()).unwrap();
        bad["schema"] = 99.into();
        std::fs::write(&p, bad.to_string()).unwrap();
        assert!(crate::read_json(&p)
            .unwrap_err()
            .contains("schema version 99"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
