//! The end of a run: the output directory held, thresholds applied, the verdict concluded,
//! the reports written and signed, the summary.

use super::*;

/// The reports a run writes: removed when a run starts, so that reports in an output
/// directory are always those of its latest run (or of none, if it died unreported).
pub(super) const REPORTS: [&str; 8] = [
    "firmware.elf",
    "events.jsonl",
    "results.json",
    "results.json.sig",
    "junit.xml",
    "report.html",
    "summary.md",
    "profile.txt",
];

/// The reports could not be written where asked.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot create the output directory {}: {source}\n  fix: give --out a directory this \
         user can write",
        .out.display()
    )]
    CreateOut {
        out: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}\n  fix: check that the directory exists and this user may write it (--out)", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another fqp run ({holder}) is writing its reports to {}\n  fix: wait for it to end, or \
         give this run another --out",
        .out.display()
    )]
    Held { holder: String, out: PathBuf },
    #[error(
        "cannot remove the previous run's {name} in {}: {source}\n  fix: check that the directory exists and this user may write it (--out)",
        .out.display()
    )]
    Stale {
        name: &'static str,
        out: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot write {}: {source}\n  fix: free space there, or give --out a directory this \
         user can write",
        .path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A report could not be rendered (a harness bug).
    #[error(transparent)]
    Results(#[from] fqp_reports::ResultsError),
    #[error(transparent)]
    Junit(#[from] fqp_reports::JunitError),
}

/// An output directory held by this run: another run into it is refused while this lives.
pub struct OutLock {
    _file: std::fs::File,
}

/// Creates `out`, takes it for this run (refused while another run holds it) and removes the
/// reports of the previous run there.
pub fn claim_out(out: &Path) -> Result<OutLock, ReportError> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(out).map_err(|source| ReportError::CreateOut {
        out: out.to_path_buf(),
        source,
    })?;
    let path = out.join(".fqp.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| ReportError::Lock {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(ReportError::Held {
                holder: match holder.trim() {
                    "" => "process unknown".to_string(),
                    pid => format!("process {pid}"),
                },
                out: out.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(ReportError::Lock { path, source })
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    for name in REPORTS {
        match std::fs::remove_file(out.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ReportError::Stale {
                    name,
                    out: out.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(OutLock { _file: file })
}

/// Fails the tests that passed on the device but missed a threshold on one of their figures
/// (`min`/`max`/`min_relative` in test-suites/suites.toml; relative floors against the group's
/// control figure of this run).
pub(super) fn hold_to_thresholds(run: &mut Run) {
    let suites = Suites::builtin();
    for g in &mut run.groups {
        // The group's control figure, from this run, if its control test passed.
        let control = suites.control(&g.name).and_then(|c| {
            let id = format!("{}/{c}", g.name);
            let t = g
                .tests
                .iter()
                .find(|t| t.id == id && t.status == Status::Passed)?;
            t.metrics.iter().find(|m| m.name == c).map(|m| m.value)
        });
        for t in g.tests.iter_mut().filter(|t| t.status == Status::Passed) {
            if let Some(why) = suites.missed_threshold(&t.id, &t.metrics, control) {
                t.status = Status::Failed;
                t.message = Some(why);
            }
        }
    }
}

pub(super) fn finish(mut run: Run, out: &Path, t0: Instant, opts: &Options) -> Finished {
    run.duration_ms = t0.elapsed().as_millis() as u64;
    if let Some(signal) = fqp_process::signal() {
        run.interrupted = Some(signal.into());
    }
    conclude(&mut run);
    let report_error = publish(&mut run, out, opts.lab.as_deref()).err();
    Finished {
        run,
        out: out.to_path_buf(),
        report_error,
    }
}

/// Sets the verdict and the qualification statement from the tests.
pub fn conclude(run: &mut Run) {
    run.verdict = run.decide();
    run.findings = run.classify();
    run.qualification = Some(Suites::builtin().qualification(run));
}

/// Writes the reports and signs `results.json`. A run whose results cannot be signed is not
/// a complete run: that becomes an infrastructure error, in reports written unsigned. Err:
/// the reports could not be written (and the run cannot be relied on).
pub fn publish(run: &mut Run, out: &Path, lab: Option<&Path>) -> Result<(), ReportError> {
    write_reports(run, out)?;
    let results = out.join("results.json");
    if let Err(e) = crate::sign::sign_results(&results, &crate::sign::lab_dir(lab)) {
        run.problems
            .push(Problem::new(Stage::Signing, e.to_string()));
        conclude(run);
        let _ = std::fs::remove_file(fqp_reports::sign::signature_path(&results));
        write_reports(run, out)?;
    }
    Ok(())
}

/// Writes the reports of `run` to `out`, each whole or not at all (written aside, then moved
/// into place).
pub fn write_reports(run: &Run, out: &Path) -> Result<(), ReportError> {
    let write = |name: &str, bytes: &[u8]| {
        let part = out.join(format!("{name}.part"));
        std::fs::write(&part, bytes)
            .and_then(|()| std::fs::rename(&part, out.join(name)))
            .map_err(|source| {
                let _ = std::fs::remove_file(&part);
                ReportError::Write {
                    path: out.join(name),
                    source,
                }
            })
    };
    std::fs::create_dir_all(out).map_err(|source| ReportError::CreateOut {
        out: out.to_path_buf(),
        source,
    })?;
    write("results.json", fqp_reports::to_json(run)?.as_bytes())?;
    let mut junit = Vec::new();
    fqp_reports::write_junit(run, &mut junit)?;
    write("junit.xml", &junit)?;
    write("report.html", fqp_reports::render_html(run).as_bytes())?;
    let md = fqp_reports::render_markdown(run);
    write("summary.md", md.as_bytes())?;
    // On GitHub Actions, the summary also goes to the job's page.
    if let Some(page) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&page)
            .and_then(|mut f| f.write_all(md.as_bytes()));
        if let Err(e) = appended {
            tracing::warn!(
                "cannot append to GITHUB_STEP_SUMMARY ({}): {e}",
                page.to_string_lossy()
            );
        }
    }
    Ok(())
}

/// One-paragraph summary for the terminal.
pub fn summary(run: &Run, out: &Path) -> String {
    let s = run.summary();
    let mut text = format!(
        "{}: {} tests, {} passed, {} failed, {} errors, {} skipped{} in {:.1} s — verdict: {}\nreport: {}",
        run.port.name,
        s.total,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        if s.flaky > 0 {
            format!(", {} flaky", s.flaky)
        } else {
            String::new()
        },
        run.duration_ms as f64 / 1000.0,
        match run.verdict {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
            Verdict::InfrastructureError => "INFRASTRUCTURE ERROR",
            Verdict::Interrupted => "INTERRUPTED",
        },
        out.join("report.html").display()
    );
    for p in &run.problems {
        text.push_str(&format!(
            "\n{} problem ({}): {}",
            p.stage.category().as_str(),
            p.stage.as_str(),
            p.message
        ));
    }
    if let Some(q) = &run.qualification {
        let caps = q.capabilities.join(", ");
        if q.qualified {
            text.push_str(&format!("\nQUALIFIED for capabilities [{caps}]"));
        } else {
            text.push_str(&format!("\nNOT QUALIFIED for capabilities [{caps}]:"));
            for r in &q.reasons {
                text.push_str(&format!("\n  - {r}"));
            }
        }
    }
    text
}
