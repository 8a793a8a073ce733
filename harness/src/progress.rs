//! What the user sees while a run goes on, drawn from the run's events. On a terminal: a bar
//! for the whole run and a line per device (starting, which test, which attempt), with each
//! result printed above them as it ends. Elsewhere (CI logs, pipes): one plain line per
//! result, nothing that redraws. `--quiet`: not shown at all (only the closing summary).

use fqp_reports::{Status, Test};
use fqp_runner::events::{Event, Observer, Observers};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// The progress display.
pub struct Progress {
    /// Live bars (only on a terminal).
    live: Option<Live>,
}

struct Live {
    multi: MultiProgress,
    bars: Mutex<Bars>,
}

#[derive(Default)]
struct Bars {
    /// The whole run (from the plan on).
    total: Option<ProgressBar>,
    devices: HashMap<String, ProgressBar>,
}

impl Progress {
    /// Live bars when standard output is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let live = std::io::stdout().is_terminal().then(|| Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: Mutex::default(),
        });
        Progress { live }
    }
}

impl Live {
    fn bars(&self) -> std::sync::MutexGuard<'_, Bars> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn device(&self, id: &str, what: String) {
        let mut bars = self.bars();
        let bar = bars.devices.entry(id.to_string()).or_insert_with(|| {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("  device {prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(id.to_string());
            b
        });
        bar.set_message(what);
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event<'_>) {
        let Some(live) = &self.live else {
            if let Event::Result { test, .. } = event {
                out_line(&result_line(test));
            }
            return;
        };
        match *event {
            Event::Planned { tests, .. } => {
                let total = live.multi.insert(0, ProgressBar::new(tests as u64));
                total.set_style(
                    ProgressStyle::with_template("{bar:40} {pos}/{len} tests  {elapsed}  {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                live.bars().total = Some(total);
            }
            Event::Starting { device, boot } => {
                live.device(device, format!("starting (boot {boot})"))
            }
            Event::Running {
                device,
                test,
                attempt,
            } => live.device(
                device,
                match attempt {
                    1 => test.to_string(),
                    k => format!("{test} (attempt {k})"),
                },
            ),
            Event::Result { test, .. } => {
                let _ = live.multi.println(result_line(test));
                if let Some(total) = &live.bars().total {
                    total.inc(1);
                    if matches!(test.status, Status::Failed | Status::Error | Status::Flaky) {
                        total.set_message("some tests did not pass");
                    }
                }
            }
            Event::Problem { .. } => {}
            Event::DeviceDone { device } => {
                if let Some(b) = live.bars().devices.remove(device) {
                    b.finish_and_clear();
                }
            }
            Event::Finished => {
                let mut bars = live.bars();
                for (_, b) in bars.devices.drain() {
                    b.finish_and_clear();
                }
                if let Some(total) = bars.total.take() {
                    total.finish_and_clear();
                }
                let _ = live.multi.clear();
            }
        }
    }
}

/// Who watches a run from the command line: the progress display, unless `quiet`.
pub fn observers(quiet: bool) -> Observers {
    let none = Observers::default();
    if quiet {
        none
    } else {
        none.with(std::sync::Arc::new(Progress::new()))
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
