//! The certification report: one self-contained HTML file (inline style, no script, no
//! external resource) a vendor can archive or mail. It states the verdict first, then what the
//! verdict rests on: the qualification reasons, the environment (port, board, toolchain,
//! harness and firmware versions, image hash), a table per group, every failure with its
//! message, location, earlier attempts and the console output of the test, and the
//! performance figures the tests measured.

use crate::model::{Run, Status, Test};
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{font-size:1.5em;font-weight:700;padding:.5em .8em;border-radius:6px;color:#fff}
.good{background:#1a7f37}.bad{background:#cf222e}.infra{background:#9a6700}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#1a7f37}.failed,.error{color:#cf222e;font-weight:600}
.flaky{color:#9a6700;font-weight:600}.skipped{color:#666}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:13px}
code{font-size:13px}details{margin:.3em 0}
";

/// Renders the report.
pub fn render_html(run: &Run) -> String {
    let mut h = String::new();
    // `write!` into a String cannot fail.
    let _ = write_report(&mut h, run);
    h
}

fn write_report(h: &mut String, run: &Run) -> std::fmt::Result {
    let s = run.summary();
    let title = format!("Qualification report: {}", run.port.name);
    writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
    )?;
    writeln!(
        h,
        "<title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    )?;
    writeln!(h, "<h1>{}</h1>", esc(&title))?;
    writeln!(
        h,
        "<p>{} on {}{}</p>",
        esc(&run.port.name),
        esc(&run.port.board),
        run.port
            .vendor
            .as_deref()
            .map(|v| format!(" by {}", esc(v)))
            .unwrap_or_default()
    )?;
    let class = match (run.headline(), run.verdict) {
        (_, crate::Verdict::InfrastructureError | crate::Verdict::Interrupted) => "infra",
        ("QUALIFIED" | "PASSED", _) => "good",
        _ => "bad",
    };
    writeln!(
        h,
        "<p id=\"verdict\" class=\"verdict {class}\">{}</p>",
        run.headline()
    )?;
    writeln!(
        h,
        "<p id=\"counts\">{} tests: {} passed, {} failed, {} errors, {} skipped, {} flaky, in {:.1} s (run verdict: {}).</p>",
        s.total,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        s.flaky,
        run.duration_ms as f64 / 1000.0,
        run.verdict.as_str()
    )?;
    if let Some(q) = &run.qualification {
        let caps = esc(&q.capabilities.join(", "));
        if q.qualified {
            writeln!(
                h,
                "<p>Every required group passed for the capabilities the port declares: {caps}.</p>"
            )?;
        } else {
            writeln!(h, "<p>Not qualified for [{caps}] because:</p><ul>")?;
            for r in &q.reasons {
                writeln!(h, "<li>{}</li>", esc(r))?;
            }
            writeln!(h, "</ul>")?;
        }
    }
    findings(h, run)?;
    environment(h, run)?;
    groups(h, run)?;
    failures(h, run)?;
    metrics(h, run)?;
    writeln!(
        h,
        "<p><small>Rendered from results.json (schema {}) by fqp {}.</small></p></body></html>",
        run.schema,
        esc(&run.harness)
    )
}

/// What went wrong, by who is at fault, with where it diverged and what to do; then the
/// problems of the run in full.
fn findings(h: &mut String, run: &Run) -> std::fmt::Result {
    if run.findings.is_empty() {
        return Ok(());
    }
    writeln!(
        h,
        "<h2>Findings</h2><table id=\"findings\"><tr><th>kind</th><th>where</th><th>first divergence</th><th>what to do</th></tr>"
    )?;
    for f in &run.findings {
        writeln!(
            h,
            "<tr class=\"{0}\"><td>{0}</td><td>{1}</td><td><code>{2}</code></td><td>{3}</td></tr>",
            f.category.as_str(),
            esc(f.place()),
            esc(&f.first_divergence),
            esc(&f.hint)
        )?;
    }
    writeln!(h, "</table>")?;
    if !run.problems.is_empty() {
        writeln!(h, "<h2>Problems of the run</h2>")?;
        for p in &run.problems {
            writeln!(
                h,
                "<h3>{} ({})</h3><pre>{}</pre>",
                p.stage.as_str(),
                p.stage.category().as_str(),
                esc(&p.message)
            )?;
        }
    }
    Ok(())
}

fn environment(h: &mut String, run: &Run) -> std::fmt::Result {
    let mut rows: Vec<(&str, String)> = vec![
        ("Port", run.port.name.clone()),
        ("Board", run.port.board.clone()),
        ("Vendor", run.port.vendor.clone().unwrap_or_default()),
        (
            "Description",
            run.port.description.clone().unwrap_or_default(),
        ),
        ("Capabilities", run.port.capabilities.join(", ")),
        ("Manifest", run.port.manifest.clone()),
        ("Harness", format!("fqp {}", run.harness)),
        ("Started", run.started.clone()),
    ];
    if let Some(p) = run.partition {
        rows.push(("Partition", format!("{} of {}", p.index, p.count)));
    }
    if let Some(f) = &run.firmware {
        rows.push(("Toolchain", f.toolchain.clone()));
        rows.push(("Firmware", f.version.clone().unwrap_or_default()));
        rows.push(("Kernel", f.kernel.clone().unwrap_or_default()));
        rows.push(("Image", format!("{} ({} bytes)", f.image, f.size_bytes)));
        rows.push(("Image SHA-256", f.sha256.clone()));
        if let Some(k) = f.kernel_size {
            rows.push(("Kernel size", k.to_string()));
        }
        rows.push(("Kernel text by module (B)", f.kernel_modules_line()));
    }
    writeln!(h, "<h2>Environment</h2><table id=\"environment\">")?;
    for (k, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        writeln!(h, "<tr><th>{k}</th><td><code>{}</code></td></tr>", esc(v))?;
    }
    writeln!(h, "</table>")
}

fn time(t: &Test) -> String {
    match t.device_us {
        Some(us) => format!("{:.3} ms", us as f64 / 1000.0),
        None => format!("{} ms (host)", t.wall_ms),
    }
}

fn groups(h: &mut String, run: &Run) -> std::fmt::Result {
    writeln!(h, "<h2>Groups</h2>")?;
    for g in &run.groups {
        let bad = g
            .tests
            .iter()
            .filter(|t| !matches!(t.status, Status::Passed | Status::Skipped))
            .count();
        let open = if bad > 0 { " open=\"\"" } else { "" };
        writeln!(
            h,
            "<details{open} class=\"group\" id=\"group-{}\"><summary><b>{}</b>: {} tests, {} not passed</summary>",
            esc(&g.name),
            esc(&g.name),
            g.tests.len(),
            bad
        )?;
        writeln!(
            h,
            "<table><tr><th>Test</th><th>Result</th><th>Time</th><th>Attempts</th><th>Message</th></tr>"
        )?;
        for t in &g.tests {
            let st = t.status.as_str();
            writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=\"{st}\">{st}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&t.name),
                time(t),
                t.attempts(),
                esc(t.message.as_deref().unwrap_or(""))
            )?;
        }
        writeln!(h, "</table></details>")?;
    }
    Ok(())
}

fn failures(h: &mut String, run: &Run) -> std::fmt::Result {
    let bad: Vec<&Test> = run
        .groups
        .iter()
        .flat_map(|g| &g.tests)
        .filter(|t| matches!(t.status, Status::Failed | Status::Error | Status::Flaky))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    writeln!(h, "<h2>Failures</h2>")?;
    for t in bad {
        let st = t.status.as_str();
        writeln!(
            h,
            "<h3 id=\"test-{}\"><code>{}</code> <span class=\"{st}\">{st}</span></h3>",
            esc(&t.id),
            esc(&t.id)
        )?;
        let kind = t
            .error_kind
            .map(|k| format!(" [{}]", k.as_str()))
            .unwrap_or_default();
        writeln!(
            h,
            "<p>{}{}{}</p>",
            esc(t.message.as_deref().unwrap_or("")),
            esc(&kind),
            t.location
                .as_deref()
                .map(|l| format!(" at <code>{}</code>", esc(l)))
                .unwrap_or_default()
        )?;
        if !t.details.is_empty() {
            let d: Vec<String> = t.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                h,
                "<p>Device details: <code>{}</code></p>",
                esc(&d.join(" "))
            )?;
        }
        for (n, a) in t.retried.iter().enumerate() {
            writeln!(h, "<p>Attempt {}: {}</p>", n + 1, esc(&a.describe()))?;
            if !a.output.is_empty() {
                writeln!(h, "<pre>{}</pre>", esc(&a.output.join("\n")))?;
            }
        }
        if !t.output.is_empty() {
            writeln!(
                h,
                "<details open=\"\"><summary>Console output of the test</summary><pre>{}</pre></details>",
                esc(&t.output.join("\n"))
            )?;
        }
    }
    Ok(())
}

fn metrics(h: &mut String, run: &Run) -> std::fmt::Result {
    let rows: Vec<_> = run
        .groups
        .iter()
        .flat_map(|g| &g.tests)
        .flat_map(|t| t.metrics.iter().map(move |m| (t, m)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        h,
        "<h2>Performance</h2><table id=\"metrics\"><tr><th>Test</th><th>Figure</th><th>Value</th><th>Unit</th></tr>"
    )?;
    for (t, m) in rows {
        writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&t.id),
            esc(&m.name),
            m.value,
            esc(&m.unit)
        )?;
    }
    writeln!(h, "</table>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::run as sample;

    #[test]
    fn report_states_verdict_failures_environment_and_metrics() {
        let html = render_html(&sample());
        let xml = html.replace("<!DOCTYPE html>", "");
        let doc = roxmltree::Document::parse(&xml).expect("the report is well-formed markup");
        let by_id = |id: &str| {
            doc.descendants()
                .find(|n| n.attribute("id") == Some(id))
                .unwrap_or_else(|| panic!("no #{id}"))
        };
        assert_eq!(by_id("verdict").text(), Some("NOT QUALIFIED"));
        assert!(by_id("counts")
            .text()
            .unwrap()
            .starts_with("5 tests: 1 passed, 1 failed"));
        let env: String = by_id("environment")
            .descendants()
            .filter_map(|n| n.text())
            .collect();
        assert!(
            env.contains(&"ab".repeat(32)) && env.contains("rustc 1.96"),
            "{env}"
        );
        // The failure, its location, earlier attempt and console output; escaped.
        let fail: String = by_id("test-queue/timeout")
            .next_siblings()
            .skip(1) // the heading itself
            .take_while(|n| !n.has_tag_name("h3"))
            .flat_map(|n| n.descendants())
            .filter_map(|n| n.text())
            .collect();
        assert!(fail.contains("left 1, right <2> & \"3\""), "{fail}");
        assert!(fail.contains("src/queue.rs:42"));
        assert!(fail.contains("Attempt 1: failed: left 1, right 2"));
        assert!(fail.contains("log line <script>alert(1)</script>"));
        assert!(!html.contains("<script>"), "device output is never markup");
        assert!(html.contains("required group queue: queue/timeout failed"));
        let metrics: String = by_id("metrics")
            .descendants()
            .filter_map(|n| n.text())
            .collect();
        assert!(metrics.contains("msgs_per_s") && metrics.contains("125000"));
        // Self-contained: nothing is loaded from elsewhere.
        assert!(!html.contains("src=") && !html.contains("href="));
    }
}
