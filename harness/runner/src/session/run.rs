//! One test's run: `RUN`, then the device's lines until the test ends. Each line is read by
//! what it is (plain output, a figure, a failed check, the end, a fault, a panic, a reset, a
//! request to the lab), and the test's result grows with it.

use super::{
    command, Outcome, RebootStep, Session, MAX_AGAIN, MAX_METRICS, MAX_OUTPUT_BYTES,
    MAX_OUTPUT_LINES,
};
use crate::serial::{Link, Recv};
use fqp_protocol::{Frame, Kind};
use fqp_reports::{ErrorKind, Metric, Status, Test};
use std::time::{Duration, Instant};

/// Whether the test goes on after a line, has ended (and whether its device must restart), or
/// reboots the device to go on after it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Goes,
    Ended { restart: bool },
    Reboots,
}

/// How many times one test may reboot its device.
const MAX_REBOOTS: u32 = 4;

/// A test's result as its lines arrive.
struct TestRun<'a> {
    id: &'a str,
    test: Test,
    /// The test rebooted the device at least once.
    rebooted: bool,
    /// `AGAIN`s asked for damaged lines.
    agains: usize,
    /// Lines of output not kept (past the limits).
    dropped: usize,
    /// The device reported a failed check (`FAIL`).
    failed_check: bool,
    /// Device time of the test's earlier boots (each `REBOOT`'s `us`) and of the boot
    /// loader's between them (its `boot` figure), µs.
    before_us: u64,
}

impl<'a> TestRun<'a> {
    fn new(id: &'a str) -> Self {
        TestRun {
            id,
            test: Test::new(id, Status::Error),
            rebooted: false,
            agains: 0,
            dropped: 0,
            failed_check: false,
            before_us: 0,
        }
    }

    /// Ends the test as an error of `kind`.
    fn error(&mut self, kind: ErrorKind, msg: String, restart: bool) -> Step {
        self.test.status = Status::Error;
        self.test.error_kind = Some(kind);
        self.test.message = Some(msg);
        Step::Ended { restart }
    }

    /// A line of the test's console output, bounded: past the limits, lines are counted, not
    /// kept.
    fn keep(&mut self, line: String) {
        let t = &mut self.test;
        let bytes: usize = t.output.iter().map(String::len).sum();
        if self.dropped > 0
            || t.output.len() >= MAX_OUTPUT_LINES
            || bytes + line.len() > MAX_OUTPUT_BYTES
        {
            self.dropped += 1;
        } else {
            t.output.push(line);
        }
    }

    /// `file:line` of a frame.
    fn location(f: &Frame<'_>) -> String {
        format!(
            "{}:{}",
            f.get("file").unwrap_or_default(),
            f.num("line").unwrap_or(0)
        )
    }

    fn metric(&mut self, f: &Frame<'_>) -> Step {
        match figure(f, &self.test.metrics) {
            Ok(m) => {
                self.test.metrics.push(m);
                Step::Goes
            }
            Err(why) => self.error(
                ErrorKind::Protocol,
                format!("the device reported {why}"),
                true,
            ),
        }
    }

    fn failed(&mut self, f: &Frame<'_>) -> Step {
        self.failed_check = true;
        self.test.message = f.get("msg");
        self.test.location = Some(Self::location(f));
        Step::Goes
    }

    fn end(&mut self, f: &Frame<'_>) -> Step {
        let t = &mut self.test;
        // A test that rebooted the device ran on each boot: its time is theirs together.
        t.device_us = f.num("us").map(|us| us + self.before_us);
        match f.raw("status") {
            Some("pass") if self.failed_check => {
                return self.error(
                    ErrorKind::Protocol,
                    "the device reported a failed check (FAIL), then that the test passed".into(),
                    true,
                )
            }
            Some("pass") => t.status = Status::Passed,
            Some("skip") => {
                t.status = Status::Skipped;
                t.message = f.get("reason");
            }
            Some("fail") => {
                t.status = Status::Failed;
                if t.message.is_none() {
                    t.message = Some("check failed (its FAIL line was lost on the console)".into());
                }
            }
            other => {
                return self.error(
                    ErrorKind::Protocol,
                    format!("unknown test status {other:?}"),
                    true,
                )
            }
        }
        Step::Ended { restart: false }
    }

    fn fault(&mut self, f: &Frame<'_>) -> Step {
        for (k, v) in f.fields() {
            self.test.details.insert(k.to_string(), v.to_string());
        }
        self.error(ErrorKind::Fault, super::fault_summary(f), true)
    }

    fn panicked(&mut self, f: &Frame<'_>) -> Step {
        self.test.location = Some(Self::location(f));
        let msg = format!("panic: {}", f.get("msg").unwrap_or_default());
        self.error(ErrorKind::Panic, msg, true)
    }

    /// The result, with a note of the output not kept.
    fn finish(mut self, started: Instant, restart: bool) -> Outcome {
        if self.dropped > 0 {
            self.test.output.push(format!(
                "[fqp: {} more lines of output not kept here (at most {MAX_OUTPUT_LINES} lines, {} KiB per test); the serial transcript has them]",
                self.dropped,
                MAX_OUTPUT_BYTES / 1024
            ));
        }
        self.test.wall_ms = started.elapsed().as_millis() as u64;
        Outcome {
            test: self.test,
            restart,
            rebooted: self.rebooted,
        }
    }
}

/// Why a reported figure is not taken: the end of "the device reported …".
#[derive(Debug, PartialEq, thiserror::Error)]
pub(super) enum BadFigure {
    #[error("a figure without a name")]
    Unnamed,
    #[error("figure {name} = {text:?}, not a number")]
    NotANumber { name: String, text: String },
    #[error("figure {name} = {text}, not a finite number")]
    NotFinite { name: String, text: String },
    #[error("figure {0} reported twice")]
    Twice(String),
    #[error("more than {MAX_METRICS} figures")]
    TooMany,
}

/// The figure a `METRIC` line reports, if the reports can hold it and the thresholds judge
/// it: named, a finite number, reported once, one of at most [`MAX_METRICS`] (`have`).
pub(super) fn figure(f: &Frame<'_>, have: &[Metric]) -> Result<Metric, BadFigure> {
    let name = f.get("name").unwrap_or_default();
    let text = f.get("value").unwrap_or_default();
    if name.is_empty() {
        return Err(BadFigure::Unnamed);
    }
    let Ok(value) = text.parse::<f64>() else {
        return Err(BadFigure::NotANumber { name, text });
    };
    if !value.is_finite() {
        return Err(BadFigure::NotFinite { name, text });
    }
    if have.iter().any(|m| m.name == name) {
        return Err(BadFigure::Twice(name));
    }
    if have.len() == MAX_METRICS {
        return Err(BadFigure::TooMany);
    }
    Ok(Metric {
        name,
        value,
        unit: f.get("unit").unwrap_or_default(),
    })
}

/// The figure of a boot loader's line that ends with a time in device time: its swap's
/// (`fqp-boot: installed the new image (swap 2345 ms)`, `fqp-boot: rolled back: … (swap 80
/// ms)`): `swap_ms` for an update installed, `revert_ms` for one rolled back; its own, from
/// its start to the image's (`fqp-boot: starting 1.0.1 (trial), … (boot 1650 ms)`): `boot_ms`.
pub(super) fn loader_figure(line: &str) -> Option<(&'static str, f64)> {
    let said = line.strip_prefix("fqp-boot: ")?.strip_suffix(" ms)")?;
    let (what, kind, ms) = match said.rsplit_once(" (swap ") {
        Some((what, ms)) => (what, "swap", ms),
        None => {
            let (what, ms) = said.rsplit_once(" (boot ")?;
            (what, "boot", ms)
        }
    };
    let ms: f64 = ms.parse().ok().filter(|v: &f64| v.is_finite())?;
    match kind {
        "swap" if what.starts_with("installed") => Some(("swap_ms", ms)),
        "swap" if what.starts_with("rolled back") => Some(("revert_ms", ms)),
        "boot" if what.starts_with("starting ") => Some(("boot_ms", ms)),
        _ => None,
    }
}

impl<L: Link> Session<L> {
    /// Runs test `id`, allowing it `timeout`.
    pub fn run(&mut self, id: &str, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let mut run = TestRun::new(id);
        let restart = self.drive(&mut run, started + timeout, timeout);
        run.finish(started, restart)
    }

    /// Starts the test and reads its lines until it ends; whether the device must restart.
    fn drive(&mut self, run: &mut TestRun<'_>, deadline: Instant, timeout: Duration) -> bool {
        if let Err(e) = self.send(&command(Kind::Run, &[("id", run.id)])) {
            run.error(ErrorKind::DeviceLost, e.to_string(), true);
            return true;
        }
        let mut reboots = 0;
        loop {
            let step = match self.link.recv(deadline) {
                Recv::Line(line) => self.line(run, line),
                Recv::Timeout => run.error(
                    ErrorKind::Timeout,
                    format!(
                        "no result within {:.1} s (test hung or device stalled)",
                        timeout.as_secs_f64()
                    ),
                    true,
                ),
                Recv::Closed => run.error(
                    ErrorKind::DeviceLost,
                    "the console closed during the test (device gone or emulator exited)".into(),
                    true,
                ),
            };
            match step {
                Step::Ended { restart } => return restart,
                Step::Goes => {}
                Step::Reboots => {
                    reboots += 1;
                    let step = self.rebooted(run, reboots, deadline);
                    if let Step::Ended { restart } = step {
                        return restart;
                    }
                }
            }
        }
    }

    /// The test rebooted the device (`REBOOT`): follows it — syncs again, provisions the
    /// settings again — and runs the test again, `resumed` the `reboots`-th time.
    fn rebooted(&mut self, run: &mut TestRun<'_>, reboots: u32, deadline: Instant) -> Step {
        if reboots > MAX_REBOOTS {
            return run.error(
                ErrorKind::Protocol,
                format!("the test rebooted the device more than {MAX_REBOOTS} times"),
                true,
            );
        }
        run.rebooted = true;
        self.tell_reboot(RebootStep::Asked);
        if let Err(e) = self.follow_reboot(deadline) {
            return run.error(
                ErrorKind::Reset,
                format!("the device did not come back after the reboot the test asked for: {e}"),
                true,
            );
        }
        self.tell_reboot(RebootStep::Synced);
        // The boot loader's time for the swap it made on the way is the test's figure (the
        // first one, if the test updates the device more than once).
        for line in std::mem::take(&mut self.loader) {
            if let Some((name, ms)) = loader_figure(&line) {
                if name == "boot_ms" {
                    run.before_us += (ms * 1000.0) as u64;
                }
                if !run.test.metrics.iter().any(|m| m.name == name) {
                    run.test.metrics.push(Metric {
                        name: name.into(),
                        value: ms,
                        unit: "ms".into(),
                    });
                }
            }
        }
        run.keep(format!(
            "[fqp: the test rebooted the device ({reboots}); synced again, the test goes on]"
        ));
        let resumed = reboots.to_string();
        match self.send(&command(
            Kind::Run,
            &[("id", run.id), ("resumed", &resumed)],
        )) {
            Ok(()) => Step::Goes,
            Err(e) => run.error(ErrorKind::DeviceLost, e.to_string(), true),
        }
    }

    fn tell_reboot(&mut self, step: RebootStep) {
        if let Some(hook) = self.on_reboot.as_mut() {
            hook(step);
        }
    }

    /// A line from the device during the test: its output, a protocol line, or a damaged one
    /// (asked for again).
    fn line(&mut self, run: &mut TestRun<'_>, line: String) -> Step {
        match fqp_protocol::parse(&line) {
            Ok(Some(f)) => self.frame(run, &f),
            Ok(None) => {
                self.remember(&line);
                if !line.trim().is_empty() {
                    run.keep(line);
                }
                Step::Goes
            }
            Err(e) => {
                self.corrupt_lines += 1;
                run.keep(format!("[fqp: damaged protocol line ignored ({e})] {line}"));
                if run.agains < MAX_AGAIN {
                    run.agains += 1;
                    let _ = self.send(&command(Kind::Again, &[]));
                }
                Step::Goes
            }
        }
    }

    /// What a protocol line means for the test.
    fn frame(&mut self, run: &mut TestRun<'_>, f: &Frame<'_>) -> Step {
        let ours = f.get("id").as_deref() == Some(run.id);
        match f.kind {
            Kind::Log => {
                run.keep(f.get("msg").unwrap_or_default());
                Step::Goes
            }
            Kind::Metric if ours => run.metric(f),
            Kind::Fail if ours => run.failed(f),
            Kind::End if ours => run.end(f),
            Kind::Reboot if ours => {
                run.before_us += f.num("us").unwrap_or(0);
                Step::Reboots
            }
            Kind::Fault => run.fault(f),
            Kind::Panic => run.panicked(f),
            Kind::Hello | Kind::Bye => run.error(
                ErrorKind::Reset,
                "the device reset during the test".into(),
                true,
            ),
            Kind::Err => run.error(
                ErrorKind::Protocol,
                format!("device: {}", f.get("msg").unwrap_or_default()),
                false,
            ),
            Kind::Ask if ours => {
                self.answer(run, f);
                Step::Goes
            }
            _ => Step::Goes, // START, stale ENDs of earlier tests, READY repeats
        }
    }

    /// Carries out what the test asks of the lab (`ASK`), provisions the answer, and tells
    /// the device how it went (`DONE`).
    fn answer(&mut self, run: &mut TestRun<'_>, f: &Frame<'_>) {
        let action = f.get("action").unwrap_or_default();
        let fields: Vec<(String, String)> = f
            .fields()
            .filter(|(k, _)| !matches!(*k, "id" | "action"))
            .map(|(k, _)| (k.to_string(), f.get(k).unwrap_or_default()))
            .collect();
        let refused = match &self.actions {
            Some(act) => match act(&action, &fields) {
                Ok(answer) => answer
                    .iter()
                    .try_for_each(|(k, v)| self.set(k, v.as_bytes(), Duration::from_secs(2)))
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            },
            None => Some("this lab takes no requests".to_string()),
        };
        run.test.output.push(format!(
            "[fqp: {action}: {}]",
            refused.as_deref().unwrap_or("done")
        ));
        let (ok, msg) = match &refused {
            None => ("1", ""),
            Some(why) => ("0", why.as_str()),
        };
        let _ = self.send(&command(
            Kind::Done,
            &[("action", &action), ("ok", ok), ("msg", msg)],
        ));
    }
}
