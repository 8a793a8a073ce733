//! One device's work loop: take a group from the shared queue, run its tests one by one
//! (restarting the device when a test leaves it in an unknown state, retrying failed tests,
//! running a test again when the emulator was killed from outside), until the queue is empty
//! or the device cannot be brought back. What it holds when it stops goes back to the queue.
//! Then, with the other devices, it runs the tests they all run at once ([`Together`]).

use super::together::Together;
use super::*;
use crate::events::{Event, Observers};

/// Times an emulator may be killed from outside before a device is given up.
pub(super) const MAX_OUTSIDE_KILLS: u32 = 3;

/// What one device did: its results and the problems outside the tests.
#[derive(Default)]
pub(super) struct Work {
    /// The device's id.
    pub(super) device: String,
    pub(super) tests: Vec<(String, Test)>,
    pub(super) errors: Vec<Problem>,
}

/// The shared queue of units (consecutive tests of one group).
pub(super) type Queue = Mutex<VecDeque<Vec<Listed>>>;

/// One result from the attempts at a test: the `last` attempt's, with the `earlier` ones
/// kept, except that a pass after failures is `Flaky`.
pub(super) fn combine(earlier: Vec<Test>, mut last: Test) -> Test {
    last.retried = earlier.into_iter().map(Attempt::of).collect();
    if last.status == Status::Passed {
        if let Some(first) = last.retried.first() {
            last.status = Status::Flaky;
            last.message = Some(format!(
                "passed on attempt {} after: {}",
                last.attempts(),
                first.describe()
            ));
        }
    }
    last
}

/// The result of a test the interruption stopped or kept from running.
pub(super) fn interrupted_test(l: &Listed, signal: &str) -> Test {
    unrun(
        l,
        Status::Skipped,
        format!("not run to its end: the run was interrupted ({signal})"),
    )
}

/// Names the function and source line a fault's program counter is at (from the image's
/// debug information), in the test's details, location and message.
pub(super) fn decode_fault(t: &mut Test, elf: &Path) {
    if t.error_kind != Some(ErrorKind::Fault) {
        return;
    }
    let Some(pc) = t
        .details
        .get("pc")
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    else {
        return;
    };
    let Some(at) = firmware::locate(elf, pc) else {
        return;
    };
    if let Some(m) = t.message.as_mut() {
        m.push_str(&format!(", {}", at.place()));
    }
    if let Some(f) = at.function {
        t.details.insert("function".into(), f);
    }
    if let Some(s) = at.source {
        t.details.insert("source".into(), s.clone());
        t.location.get_or_insert(s);
    }
}

/// A device at work.
struct Worker<'w, 'a> {
    ctx: &'w mut Ctx<'a>,
    device: Option<Device>,
    queue: &'w Queue,
    opts: &'w Options,
    events: &'w Observers,
    done: Work,
    /// Outcomes on the current boot (passed, failed, skipped), to check against the
    /// device's own count at the end.
    this_boot: [u64; 3],
    outside_kills: u32,
}

/// One device's loop (`booted`: the device already started, for the first one).
pub(super) fn work(
    ctx: &mut Ctx<'_>,
    booted: Option<Device>,
    queue: &Queue,
    together: &Together,
    opts: &Options,
    events: &Observers,
) -> Work {
    let mut seat = together.seat();
    let mut w = Worker {
        ctx,
        device: booted,
        queue,
        opts,
        events,
        done: Work::default(),
        this_boot: [0; 3],
        outside_kills: 0,
    };
    // The guard lives only inside the closure: the queue is not held while tests run.
    let mut going = true;
    while let Some(unit) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
        if !w.unit(&unit) {
            going = false;
            break;
        }
    }
    if going && !together.tests.is_empty() {
        seat.meet();
        serial::mark(
            &w.ctx.transcript,
            "every device of the run is here: the tests they run at once",
        );
        w.unit(&together.tests);
    }
    drop(seat);
    w.finish()
}

impl Worker<'_, '_> {
    fn id(&self) -> &str {
        &self.ctx.spec.id
    }

    fn problem(&mut self, stage: Stage, message: String) {
        let p = Problem::new(stage, message);
        self.events.tell(&Event::Problem {
            device: Some(&self.ctx.spec.id),
            problem: &p,
        });
        self.done.errors.push(p);
    }

    /// Gives `rest` back to the queue: another device may run it.
    fn give_back(&self, rest: &[Listed]) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_front(rest.to_vec());
        }
    }

    /// Runs a group's tests; whether the device can go on.
    fn unit(&mut self, unit: &[Listed]) -> bool {
        for n in 0..unit.len() {
            // Fault injection for the harness's own tests (debug builds only): a worker that
            // panics must not lose the run.
            #[cfg(debug_assertions)]
            if std::env::var_os("FQP_TEST_PANIC_IN_WORKER").is_some() {
                panic!("FQP_TEST_PANIC_IN_WORKER is set");
            }
            if let Some(signal) = fqp_process::signal() {
                // Report the rest of this group; the queue's are reported by the caller.
                for l in &unit[n..] {
                    self.record(interrupted_test(l, signal));
                }
                return false;
            }
            match self.test(unit, n) {
                Some(t) => self.record(t),
                None => return false,
            }
        }
        true
    }

    fn record(&mut self, t: Test) {
        self.events.tell(&Event::Result {
            device: Some(&self.ctx.spec.id),
            test: &t,
        });
        self.done.tests.push((group_of(&t.id).to_string(), t));
    }

    /// Runs test `n` of `unit`, as many times as its retries allow; its result, or `None`
    /// when the device stopped working (the test, and what was left of its group, are then
    /// with the queue or the results already).
    fn test(&mut self, unit: &[Listed], n: usize) -> Option<Test> {
        let test = &unit[n];
        let t = &self.ctx.m.timeouts;
        let timeout =
            Duration::from_millis((test.timeout_ms as f64 * t.factor) as u64 + t.grace_ms);
        let mut attempts: Vec<Test> = Vec::new();
        loop {
            if self.device.is_none() && !self.start() {
                // Keep what this test did so far; give the rest of the group back.
                let rest = if attempts.is_empty() { n } else { n + 1 };
                if let Some(last) = attempts.pop() {
                    self.record(combine(attempts, last));
                }
                self.give_back(&unit[rest..]);
                return None;
            }
            let d = self.device.as_mut()?;
            self.events.tell(&Event::Running {
                device: &self.ctx.spec.id,
                test: &test.id,
                attempt: attempts.len() as u32 + 1,
            });
            if let (Some(PowerCut::After(after)), Some(q)) = (self.ctx.power_cut, d.qemu.as_ref()) {
                self.ctx.power_cut = None;
                let transcript = self.ctx.transcript.clone();
                q.cut_power_after(after, move || {
                    let ms = after.as_millis();
                    serial::mark(&transcript, &format!("power cut {ms} ms into the test"));
                });
            }
            let mut outcome = d.session.run(&test.id, timeout);
            outcome.test.index = Some(test.index);
            decode_fault(&mut outcome.test, &self.ctx.image.elf);
            if let Some(signal) = fqp_process::signal() {
                // The interruption ended the test (its device was killed), not the port.
                if outcome.test.status != Status::Passed {
                    outcome.test = interrupted_test(test, signal);
                }
                self.device = None;
                return Some(combine(attempts, outcome.test));
            }
            if let Some(sig) = self.killed_from_outside(&outcome) {
                if !self.outside_kill(sig, &test.id) {
                    self.give_back(&unit[n..]);
                    return None;
                }
                continue;
            }
            self.count(&outcome);
            let again = matches!(outcome.test.status, Status::Failed | Status::Error)
                && attempts.len() < self.opts.retries as usize;
            if !again {
                return Some(combine(attempts, outcome.test));
            }
            attempts.push(outcome.test);
            serial::mark(
                &self.ctx.transcript,
                &format!("retrying {} (attempt {})", test.id, attempts.len() + 1),
            );
        }
    }

    /// Starts the device; whether it came up (if not, the problem is recorded).
    fn start(&mut self) -> bool {
        self.events.tell(&Event::Starting {
            device: &self.ctx.spec.id,
            boot: self.ctx.boots + 1,
        });
        match self.ctx.boot_retrying(self.opts.retries) {
            Ok(d) => {
                self.this_boot = [0; 3];
                self.device = Some(d);
                true
            }
            Err(e) => {
                if fqp_process::signal().is_none() {
                    let log = self.ctx.serial_log.display().to_string();
                    self.problem(
                        e.boot_stage(),
                        format!("the device could not be (re)started ({log}): {e}"),
                    );
                }
                false
            }
        }
    }

    /// The signal that killed the emulator, when a test ended because something outside
    /// fqp killed it.
    fn killed_from_outside(&mut self, outcome: &crate::session::Outcome) -> Option<i32> {
        match (
            outcome.restart,
            self.device.as_mut().and_then(|d| d.qemu.as_mut()),
        ) {
            (true, Some(q)) => q.killed_from_outside(),
            _ => None,
        }
    }

    /// The emulator was killed by `sig` from outside during `test`: not the port's doing.
    /// The test runs again on a fresh boot, as if it had not started, and the lab's failure
    /// is recorded. Whether the device may go on.
    fn outside_kill(&mut self, sig: i32, test: &str) -> bool {
        self.problem(Stage::Emulator, format!(
            "the emulator was killed by signal {sig} from outside fqp during {test} (an operator, the OOM killer, or QEMU itself crashing): the infrastructure failed, not the port; the test was run again on a fresh boot"
        ));
        serial::mark(
            &self.ctx.transcript,
            &format!("emulator killed by signal {sig} from outside"),
        );
        self.device = None;
        self.outside_kills += 1;
        if self.outside_kills > MAX_OUTSIDE_KILLS {
            let msg = format!(
                "the emulator was killed from outside {} times: giving up on device {}",
                self.outside_kills,
                self.id()
            );
            self.problem(Stage::Emulator, msg);
            return false;
        }
        true
    }

    /// Counts an attempt's outcome on this boot, and lets the device go when the test left
    /// it in an unknown state.
    fn count(&mut self, outcome: &crate::session::Outcome) {
        // A test that rebooted the device ended on a new boot, whose count starts with it.
        if outcome.rebooted {
            self.this_boot = [0; 3];
        }
        match outcome.test.status {
            Status::Passed => self.this_boot[0] += 1,
            Status::Failed => self.this_boot[1] += 1,
            Status::Skipped => self.this_boot[2] += 1,
            Status::Error | Status::Flaky => {}
        }
        if outcome.restart {
            let why = format!(
                "{} ended the device ({:?}); restarting",
                outcome.test.id, outcome.test.error_kind
            );
            serial::mark(&self.ctx.transcript, &why);
            self.device = None; // dropping kills QEMU
        }
    }

    /// Checks the device's own count of this boot's outcomes against the harness's, and
    /// closes it.
    fn finish(mut self) -> Work {
        if let Some(mut d) = self.device.take() {
            let log = self.ctx.serial_log.display().to_string();
            let this_boot = self.this_boot;
            match d.session.summary(Duration::from_secs(2)) {
                Some(counts) if counts != this_boot => self.problem(Stage::Console, format!(
                    "the device counted {counts:?} tests passed/failed/skipped on its last boot, the harness \
                     {this_boot:?}: protocol lines were lost; see {log}"
                )),
                Some(_) => {}
                None => self.problem(
                    Stage::Console,
                    format!("the device did not answer SUMMARY at the end of the run; see {log}"),
                ),
            }
            if d.session.corrupt_lines > 0 {
                tracing::warn!(
                    corrupt = d.session.corrupt_lines,
                    log,
                    "damaged protocol lines were detected and ignored"
                );
            }
            d.close();
        }
        self.events.tell(&Event::DeviceDone {
            device: &self.ctx.spec.id,
        });
        self.done.device = self.ctx.spec.id.clone();
        self.done
    }
}
