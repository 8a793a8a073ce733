//! JUnit XML, in the dialect CI systems read (the Jenkins/Surefire schema `junit-10.xsd`, which
//! our tests validate against): one `<testsuite>` per group, one `<testcase>` per test,
//! classname `<port>.<group>`. Failed checks are `<failure>`, device errors `<error>` (type =
//! error kind), skips `<skipped>`; the earlier runs of a retried test are
//! `<flakyFailure>`/`<flakyError>` when it then passed (a flaky test) and
//! `<rerunFailure>`/`<rerunError>` when it never did. Console output and device details go to
//! `<system-out>`; the run's environment (port, image hash, toolchain, verdict) and each
//! test's metrics are `<properties>` of the suite (the schema allows none on a test case).
//!
//! Written with `quick-xml` rather than a JUnit crate: the crates we tried emit attributes the
//! schema rejects (`disabled`; times with more than millisecond digits).

use crate::model::{Attempt, Group, Problem, Run, Status, Test};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use std::borrow::Cow;
use std::io::Write;

type W<T> = Writer<T>;
type Res = std::io::Result<()>;

/// Seconds with millisecond resolution, as the schema's time type allows.
fn secs(device_us: Option<u64>, wall_ms: u64) -> String {
    let us = device_us.unwrap_or(wall_ms.saturating_mul(1000));
    format!("{:.3}", us as f64 / 1e6)
}

/// Text without the characters XML 1.0 cannot carry (a device may print any byte).
fn clean(s: &str) -> Cow<'_, str> {
    let ok = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
    };
    if s.chars().all(ok) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if ok(c) { c } else { '\u{fffd}' })
                .collect(),
        )
    }
}

/// The message of a failure, with where the check was.
fn message(msg: Option<&str>, location: Option<&str>) -> String {
    let msg = msg.unwrap_or("");
    match location {
        Some(l) => format!("{msg} (at {l})"),
        None => msg.to_string(),
    }
}

fn text_element<T: Write>(w: &mut W<T>, name: &str, text: &str) -> Res {
    w.create_element(name)
        .write_text_content(BytesText::new(&clean(text)))?;
    Ok(())
}

/// `<name message=… type=…>` with optional text.
fn outcome<T: Write>(w: &mut W<T>, name: &str, msg: &str, ty: &str, text: &str) -> Res {
    let e = w
        .create_element(name)
        .with_attributes([("message", &*clean(msg)), ("type", ty)]);
    if text.is_empty() {
        e.write_empty()?;
    } else {
        e.write_text_content(BytesText::new(&clean(text)))?;
    }
    Ok(())
}

fn rerun<T: Write>(w: &mut W<T>, a: &Attempt, flaky: bool) -> Res {
    let name = match (flaky, a.status) {
        (true, Status::Failed) => "flakyFailure",
        (true, _) => "flakyError",
        (false, Status::Failed) => "rerunFailure",
        (false, _) => "rerunError",
    };
    let msg = message(a.message.as_deref(), a.location.as_deref());
    let ty = a.error_kind.map_or("check", |k| k.as_str());
    let e = w
        .create_element(name)
        .with_attributes([("message", &*clean(&msg)), ("type", ty)]);
    if a.output.is_empty() {
        e.write_empty()?;
    } else {
        e.write_inner_content(|w| text_element(w, "system-out", &a.output.join("\n")))?;
    }
    Ok(())
}

fn case<T: Write>(w: &mut W<T>, run: &Run, group: &str, t: &Test) -> Res {
    let classname = format!("{}.{group}", run.port.name);
    let time = secs(t.device_us, t.wall_ms);
    w.create_element("testcase")
        .with_attributes([
            ("name", &*clean(&t.name)),
            ("classname", &*clean(&classname)),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            let msg = t.message.as_deref().unwrap_or("");
            match t.status {
                Status::Passed | Status::Flaky => {}
                Status::Failed => outcome(
                    w,
                    "failure",
                    &message(t.message.as_deref(), t.location.as_deref()),
                    "check",
                    "",
                )?,
                Status::Error => outcome(
                    w,
                    "error",
                    msg,
                    t.error_kind.map_or("error", |k| k.as_str()),
                    "",
                )?,
                Status::Skipped => outcome(w, "skipped", msg, "skip", "")?,
            }
            for a in &t.retried {
                rerun(w, a, t.status == Status::Flaky)?;
            }
            let mut out = Vec::new();
            if t.status == Status::Flaky {
                out.push(format!("FLAKY: {msg}"));
            }
            if let Some(f) = t.finding() {
                out.push(format!(
                    "fqp: {} failure; first divergence: {}; what to do: {}",
                    f.category.as_str(),
                    f.first_divergence,
                    f.hint
                ));
            }
            out.extend(t.output.iter().cloned());
            out.extend(t.details.iter().map(|(k, v)| format!("{k}={v}")));
            if !out.is_empty() {
                text_element(w, "system-out", &out.join("\n"))?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The run's environment (when `env`), and the metrics of `g`'s tests.
fn properties(run: &Run, g: Option<&Group>, env: bool) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if env {
        p.extend(environment(run));
    }
    for t in g.map_or(&[][..], |g| &g.tests) {
        for m in &t.metrics {
            let value = format!("{} {}", m.value, m.unit);
            p.push((
                format!("metric.{}.{}", t.name, m.name),
                value.trim_end().into(),
            ));
        }
    }
    p
}

fn environment(run: &Run) -> Vec<(String, String)> {
    let mut p = vec![
        ("fqp.harness".into(), run.harness.clone()),
        ("fqp.port".into(), run.port.name.clone()),
        ("fqp.board".into(), run.port.board.clone()),
        ("fqp.capabilities".into(), run.port.capabilities.join(",")),
        ("fqp.started".into(), run.started.clone()),
        ("fqp.verdict".into(), run.verdict.as_str().into()),
    ];
    if let Some(f) = &run.firmware {
        p.push(("fqp.image.sha256".into(), f.sha256.clone()));
        p.push(("fqp.toolchain".into(), f.toolchain.clone()));
        if let Some(v) = &f.version {
            p.push(("fqp.firmware".into(), v.clone()));
        }
        if let Some(k) = f.kernel_size {
            p.push(("fqp.kernel.text".into(), k.text.to_string()));
            p.push(("fqp.kernel.data".into(), k.data.to_string()));
            p.push(("fqp.kernel.bss".into(), k.bss.to_string()));
        }
        for m in &f.kernel_text_by_module {
            p.push((format!("fqp.kernel.text.{}", m.module), m.bytes.to_string()));
        }
    }
    if let Some(q) = &run.qualification {
        p.push(("fqp.qualified".into(), q.qualified.to_string()));
    }
    p
}

fn suite<T: Write>(
    w: &mut W<T>,
    run: &Run,
    name: &str,
    g: Option<&Group>,
    env: bool,
    extra: &[&Problem],
) -> Res {
    let tests = g.map_or(&[][..], |g| &g.tests);
    let count = |s: Status| tests.iter().filter(|t| t.status == s).count();
    // Device figures are data, not trusted: a wild one must not break the report.
    let total_us = tests.iter().fold(0u64, |acc, t| {
        acc.saturating_add(t.device_us.unwrap_or(t.wall_ms.saturating_mul(1000)))
    });
    let attrs = [
        ("name", name.to_string()),
        ("tests", (tests.len() + extra.len()).to_string()),
        ("failures", count(Status::Failed).to_string()),
        ("errors", (count(Status::Error) + extra.len()).to_string()),
        ("skipped", count(Status::Skipped).to_string()),
        ("time", secs(Some(total_us), 0)),
        ("timestamp", run.started.clone()),
    ];
    w.create_element("testsuite")
        .with_attributes(attrs.iter().map(|(k, v)| (*k, v.as_str())))
        .write_inner_content(|w| {
            w.create_element("properties").write_inner_content(|w| {
                for (k, v) in properties(run, g, env) {
                    w.create_element("property")
                        .with_attributes([("name", &*clean(&k)), ("value", &*clean(&v))])
                        .write_empty()?;
                }
                Ok(())
            })?;
            for t in tests {
                case(w, run, name, t)?;
            }
            // Problems outside the tests, as errors CI systems that only read JUnit see: the
            // error's type is the category (infrastructure, configuration), the case's name
            // the stage.
            for (n, p) in extra.iter().enumerate() {
                w.create_element("testcase")
                    .with_attributes([
                        ("name", format!("{}-{}", p.stage.as_str(), n + 1).as_str()),
                        ("classname", &format!("{}.fqp", run.port.name)),
                        ("time", "0.000"),
                    ])
                    .write_inner_content(|w| {
                        outcome(w, "error", &p.message, p.stage.category().as_str(), "")
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The JUnit XML could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing JUnit XML: {0}")]
pub struct JunitError(#[source] std::io::Error);

/// Writes the JUnit rendering of `run` to `out`.
pub fn write_junit(run: &Run, out: impl Write) -> Result<(), JunitError> {
    let mut w = Writer::new_with_indent(out, b' ', 2);
    let s = run.summary();
    let errors = s.errors + run.problems.len();
    let attrs = [
        (
            "name",
            clean(&format!("fqp {}", run.port.name)).into_owned(),
        ),
        ("tests", (s.total + run.problems.len()).to_string()),
        ("failures", s.failed.to_string()),
        ("errors", errors.to_string()),
        ("time", secs(None, run.duration_ms)),
    ];
    let written: Res = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("testsuites")
            .with_attributes(attrs.iter().map(|(k, v)| (*k, v.as_str())))
            .write_inner_content(|w| {
                for (n, g) in run.groups.iter().enumerate() {
                    suite(w, run, &g.name, Some(g), n == 0, &[])?;
                }
                if !run.problems.is_empty() || run.groups.is_empty() {
                    let extra: Vec<&Problem> = run.problems.iter().collect();
                    suite(
                        w,
                        run,
                        "fqp-infrastructure",
                        None,
                        run.groups.is_empty(),
                        &extra,
                    )?;
                }
                Ok(())
            })?;
        w.get_mut().write_all(b"\n")
    })();
    written.map_err(JunitError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::sample::run as sample;

    #[test]
    fn counts_and_verdict() {
        let run = sample();
        let s = run.summary();
        assert_eq!(
            (s.total, s.passed, s.failed, s.errors, s.skipped, s.flaky),
            (5, 1, 1, 1, 1, 1)
        );
        assert_eq!(run.decide(), Verdict::Failed);
        assert_eq!(run.exit_code(), crate::EXIT_PRODUCT);
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
        // JUnit times are in seconds with millisecond resolution (results.json keeps µs).
        assert_eq!(pass.attribute("time"), Some("0.002"));
        let prop = |case: roxmltree::Node, name: &str| {
            case.descendants()
                .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
                .and_then(|n| n.attribute("value").map(str::to_string))
        };
        // Metrics are suite properties (the schema has none on test cases); details go to
        // the test's output.
        assert_eq!(
            prop(suites[0], "metric.fifo.msgs_per_s").as_deref(),
            Some("125000 1/s")
        );
        let out = |case: roxmltree::Node| {
            case.children()
                .find(|n| n.has_tag_name("system-out"))
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_string()
        };
        assert!(out(case).contains("pc=0x00001234"));
        // The run's environment is on the first suite.
        assert_eq!(prop(suites[0], "fqp.image.sha256"), Some("ab".repeat(32)));
        assert_eq!(prop(suites[0], "fqp.qualified").as_deref(), Some("false"));
        let case_named = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .unwrap()
        };
        // A flaky test passed (no failure, no error) with its failed runs as flakyError.
        let flaky = case_named("flaky");
        assert!(!flaky
            .children()
            .any(|n| n.has_tag_name("failure") || n.has_tag_name("error")));
        let run1 = flaky
            .children()
            .find(|n| n.has_tag_name("flakyError"))
            .unwrap();
        assert_eq!(run1.attribute("type"), Some("timeout"));
        assert_eq!(run1.attribute("message"), Some("no result within 1.5 s"));
        assert!(out(flaky).starts_with("FLAKY: passed on attempt 2"));
        // A test that failed on every run has its earlier runs as rerunFailure.
        let failed = case_named("timeout");
        assert!(failed.children().any(|n| n.has_tag_name("failure")));
        assert!(failed.children().any(|n| n.has_tag_name("rerunFailure")));
        // Output is escaped, never markup.
        assert!(out(failed).contains("<script>alert(1)</script>"));
    }

    #[test]
    fn junit_reads_back_with_nextests_parser() {
        // An independent reader (cargo-nextest's quick-junit) sees the same outcomes.
        let mut buf = Vec::new();
        write_junit(&sample(), &mut buf).unwrap();
        let report = quick_junit::Report::deserialize(&buf[..]).expect("quick-junit reads it");
        assert_eq!((report.tests, report.failures, report.errors), (5, 1, 1));
        let cases: Vec<_> = report
            .test_suites
            .iter()
            .flat_map(|s| &s.test_cases)
            .collect();
        let flaky = cases.iter().find(|c| c.name.as_str() == "flaky").unwrap();
        match &flaky.status {
            quick_junit::TestCaseStatus::Success { flaky_runs } => {
                assert_eq!(flaky_runs.len(), 1)
            }
            other => panic!("flaky read back as {other:?}"),
        }
    }

    #[test]
    fn control_characters_from_the_device_do_not_break_the_xml() {
        let mut run = sample();
        run.groups[0].tests[0].output = vec!["\u{0}\u{1b}[31mnoise\u{ffff}".into()];
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        let xml = String::from_utf8(buf).unwrap();
        roxmltree::Document::parse(&xml).expect("still well-formed");
        assert!(xml.contains("\u{fffd}[31mnoise\u{fffd}"));
    }

    /// Validates with xmllint against junit-10.xsd (fetched by `scripts/setup.sh --test`).
    fn validate(xml: &[u8], name: &str) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let xsd = root.join("target/junit-xsd/junit-10.xsd");
        assert!(
            xsd.exists(),
            "{} is missing: run scripts/setup.sh --test",
            xsd.display()
        );
        let file = std::env::temp_dir().join(format!("fqp-{name}-{}.xml", std::process::id()));
        std::fs::write(&file, xml).unwrap();
        let out = std::process::Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&xsd)
            .arg(&file)
            .output()
            .expect("xmllint runs (scripts/setup.sh --test installs libxml2-utils)");
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "junit-10.xsd rejects our JUnit:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn junit_follows_the_common_schema() {
        // Every element kind: pass with properties, failure with reruns, error, flaky, skip,
        // and the infrastructure suite.
        let mut run = sample();
        run.problems
            .push(Problem::new(Stage::Flash, "flash failed"));
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        validate(&buf, "sample");
        // A run that never got to any test.
        run.groups.clear();
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        validate(&buf, "empty");
        // A passing run without retries or metrics.
        let mut run = sample();
        run.problems.clear();
        run.groups.truncate(1);
        run.groups[0].tests.truncate(1);
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        validate(&buf, "pass");
    }

    #[test]
    fn infrastructure_errors_appear_in_junit() {
        let mut run = sample();
        run.problems
            .push(Problem::new(Stage::Boot, "device never answered SYNC"));
        run.problems
            .push(Problem::new(Stage::Manifest, "port.toml: bad key"));
        assert_eq!(run.decide(), Verdict::InfrastructureError);
        let mut buf = Vec::new();
        write_junit(&run, &mut buf).unwrap();
        let xml = String::from_utf8(buf).unwrap();
        assert!(xml.contains("<testcase name=\"boot-1\""), "{xml}");
        assert!(
            xml.contains("message=\"device never answered SYNC\" type=\"infrastructure\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"port.toml: bad key\" type=\"configuration\""),
            "{xml}"
        );
        // Each failing test says what kind of failure it is, and what to do.
        assert!(
            xml.contains("fqp: product failure; first divergence:"),
            "{xml}"
        );
    }

    #[test]
    fn json_round_trip() {
        let dir = std::env::temp_dir().join(format!("fqp-reports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("results.json");
        std::fs::write(&p, crate::to_json(&sample()).unwrap()).unwrap();
        assert_eq!(crate::read_json(&p).unwrap(), sample());
        let mut bad = serde_json::to_value(sample()).unwrap();
        bad["schema"] = 99.into();
        std::fs::write(&p, bad.to_string()).unwrap();
        assert!(crate::read_json(&p)
            .unwrap_err()
            .to_string()
            .contains("schema version 99"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
