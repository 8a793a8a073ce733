//! What the user sees while a run goes on. On a terminal: a bar for the whole run and a line
//! per device (which group, which test), with each result printed above them as it ends.
//! Elsewhere (CI logs, pipes): one plain line per result, nothing that redraws. `--quiet`:
//! only the closing summary.

use fqp_reports::{Status, Test};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    /// Print results at all.
    enabled: bool,
    /// Live bars (only on a terminal).
    live: Option<(MultiProgress, ProgressBar)>,
}

impl Progress {
    /// `enabled` unless quiet; live bars when stdout is a terminal.
    pub fn new(enabled: bool, tests: usize) -> Self {
        let live = (enabled && std::io::stdout().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let total = multi.add(ProgressBar::new(tests as u64));
            total.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} tests  {elapsed}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (multi, total)
        });
        Progress { enabled, live }
    }

    /// A line for device `id`: what it is doing.
    pub fn device(&self, id: &str) -> DeviceLine {
        DeviceLine {
            bar: self.live.as_ref().map(|(multi, _)| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("  device {prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix(id.to_string());
                b
            }),
        }
    }

    /// Prints a finished test's result.
    pub fn result(&self, t: &Test) {
        if !self.enabled {
            return;
        }
        let line = result_line(t);
        match &self.live {
            Some((multi, total)) => {
                let _ = multi.println(line);
                total.inc(1);
                if matches!(t.status, Status::Failed | Status::Error | Status::Flaky) {
                    total.set_message("some tests did not pass");
                }
            }
            None => out_line(&line),
        }
    }

    /// Removes the bars (before the summary is printed).
    pub fn finish(&self) {
        if let Some((multi, total)) = &self.live {
            total.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

/// One device's status line.
pub struct DeviceLine {
    bar: Option<ProgressBar>,
}

impl DeviceLine {
    pub fn set(&self, what: String) {
        if let Some(b) = &self.bar {
            b.set_message(what);
        }
    }
}

impl Drop for DeviceLine {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `  PASS group/test (1.2 ms)`, with the reason for anything else.
pub fn result_line(t: &Test) -> String {
    let msg = t.message.as_deref().unwrap_or("");
    let (tag, extra) = match t.status {
        Status::Passed => ("PASS", String::new()),
        Status::Flaky => ("FLAKY", format!(": {msg}")),
        Status::Skipped => ("SKIP", format!(": {msg}")),
        Status::Failed => (
            "FAIL",
            format!(": {msg} ({})", t.location.as_deref().unwrap_or("?")),
        ),
        Status::Error => (
            "ERROR",
            format!(" [{}]: {msg}", t.error_kind.map_or("error", |k| k.as_str())),
        ),
    };
    let time = t.device_us.map_or(format!("{} ms wall", t.wall_ms), |us| {
        format!("{:.1} ms", us as f64 / 1000.0)
    });
    format!("{tag:>5} {} ({time}){extra}", t.id)
}

/// Writes one line to standard output (ignoring a closed pipe: `fqp … | head` is fine).
pub fn out_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}
