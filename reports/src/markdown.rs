//! A short Markdown summary for CI job pages (GitHub's step summary, GitLab's merge request
//! notes): the verdict, the counts, what went wrong (at most [`MAX_LISTED`] tests) and which
//! image was tested. The HTML report has the rest.

use crate::model::Run;
use std::fmt::Write;

/// Failed tests listed before "and N more".
pub const MAX_LISTED: usize = 20;

/// Text for one table cell or list item: one line, no table breaks, no markup.
fn cell(s: &str) -> String {
    let one_line = s.replace(['\r', '\n'], " ");
    let mut out = String::with_capacity(one_line.len());
    for c in one_line.chars() {
        match c {
            '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the summary.
pub fn render_markdown(run: &Run) -> String {
    let mut m = String::new();
    // `write!` into a String cannot fail.
    let _ = write_summary(&mut m, run);
    m
}

fn write_summary(m: &mut String, run: &Run) -> std::fmt::Result {
    let s = run.summary();
    let mark = match run.headline() {
        "QUALIFIED" | "PASSED" => "✅",
        _ => "❌",
    };
    writeln!(
        m,
        "### {mark} {}: {}\n",
        cell(&run.port.name),
        run.headline()
    )?;
    writeln!(
        m,
        "| tests | passed | failed | errors | skipped | flaky | time |\n|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    writeln!(
        m,
        "| {} | {} | {} | {} | {} | {} | {:.1} s |\n",
        s.total,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        s.flaky,
        run.duration_ms as f64 / 1000.0
    )?;
    if let Some(q) = &run.qualification {
        let caps = cell(&q.capabilities.join(", "));
        if q.qualified {
            writeln!(m, "Qualified for capabilities: {caps}.\n")?;
        } else {
            writeln!(m, "Not qualified for capabilities [{caps}]:\n")?;
            for r in &q.reasons {
                writeln!(m, "- {}", cell(r))?;
            }
            writeln!(m)?;
        }
    }
    // What went wrong, by who is at fault (skips are not failures).
    if !run.findings.is_empty() {
        writeln!(
            m,
            "| kind | where | result | first divergence | what to do |\n|---|---|---|---|---|"
        )?;
        for f in run.findings.iter().take(MAX_LISTED) {
            let result = match &f.test {
                Some(t) => run
                    .groups
                    .iter()
                    .flat_map(|g| &g.tests)
                    .find(|x| &x.id == t)
                    .map_or("", |x| x.status.as_str()),
                None => "run",
            };
            writeln!(
                m,
                "| {} | {} | {result} | {} | {} |",
                f.category.as_str(),
                cell(f.place()),
                cell(&f.first_divergence),
                cell(&f.hint)
            )?;
        }
        if run.findings.len() > MAX_LISTED {
            writeln!(
                m,
                "\nand {} more (report.html has them all).",
                run.findings.len() - MAX_LISTED
            )?;
        }
        writeln!(m)?;
    }
    if let Some(f) = &run.firmware {
        writeln!(
            m,
            "Image sha256 {} ({} bytes), {}; fqp {}.",
            cell(&f.sha256),
            f.size_bytes,
            cell(&f.toolchain),
            cell(&run.harness)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::run as sample;

    #[test]
    fn summary_has_verdict_counts_and_failures() {
        let md = render_markdown(&sample());
        assert!(md.starts_with("### ❌ demo: NOT QUALIFIED\n"), "{md}");
        assert!(md.contains("| 5 | 1 | 1 | 1 | 1 | 1 | 1.2 s |"), "{md}");
        assert!(md.contains(
            "| product | queue/timeout | failed | left 1, right \\<2\\> & \"3\" (src/queue.rs:42) | a check failed on the device"
        ), "{md}");
        assert!(md.contains("| product | sem/flaky | flaky |"), "{md}");
        assert!(!md.contains("sem/hw"), "skips are not failures");
        assert!(md.contains(&format!("Image sha256 {}", "ab".repeat(32))));
    }

    #[test]
    fn long_lists_are_cut() {
        let mut run = sample();
        for n in 0..30 {
            let mut t = crate::Test::new(&format!("queue/x{n}"), crate::Status::Failed);
            t.message = Some("a | b\nc".into());
            run.push("queue", t);
        }
        run.findings = run.classify();
        let md = render_markdown(&run);
        assert!(
            md.contains("and 13 more (report.html has them all)."),
            "{md}"
        );
        assert!(
            md.contains("| product | queue/x0 | failed | a \\| b c |"),
            "{md}"
        );
    }
}
