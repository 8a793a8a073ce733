//! Stopping a run cleanly on SIGINT, SIGTERM or SIGHUP.
//!
//! A CI job cancelled, a developer's Ctrl-C, a closed terminal: the run must not leave
//! emulators, brokers or builds running, and must leave a report that says it was
//! interrupted (never the previous run's reports looking current). On the first signal this
//! module records which it was and kills every child process the run registered (the devices'
//! sessions then end at once, the run loop stops taking tests, and the reports are written
//! with the verdict `interrupted`); a second signal ends the process at once with the same
//! exit status.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

/// The signal that interrupted the run, once one has.
static SIGNAL: OnceLock<&'static str> = OnceLock::new();
/// Processes to kill when interrupted: a process id, or a process group's id negated.
static CHILDREN: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// Starts listening for the signals. Call once, early in `main`.
pub fn install() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGINT/SIGTERM ({e}): an interrupted run will leave no report"
            );
            return;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let name = match sig {
                SIGTERM => "SIGTERM",
                SIGHUP => "SIGHUP",
                _ => "SIGINT",
            };
            let first = SIGNAL.set(name).is_ok();
            kill_children();
            if first {
                eprintln!("fqp: {name}: stopping the devices and writing the reports (again to quit at once)");
            } else {
                std::process::exit(i32::from(fqp_reports::interrupted_exit_code(name)));
            }
        }
    });
}

/// The signal that interrupted the run, if one has.
pub fn signal() -> Option<&'static str> {
    SIGNAL.get().copied()
}

/// Kills every registered process.
fn kill_children() {
    let pids: Vec<i64> = CHILDREN
        .lock()
        .map(|c| c.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        kill(pid);
    }
}

/// Kills what `guard` registered, if it is still registered; whether it was.
pub fn kill_registered(guard: i64) -> bool {
    let registered = CHILDREN.lock().is_ok_and(|c| c.contains(&guard));
    if registered {
        kill(guard);
    }
    registered
}

/// Kills process `target`, or process group `-target`.
fn kill(target: i64) {
    let Ok(target) = libc::pid_t::try_from(target) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `target` is a child
    // of this process (or the group it leads) that has not been reaped (it is unregistered
    // before its `wait`), so the number cannot name another process.
    unsafe {
        libc::kill(target, libc::SIGKILL);
    }
}

/// A child process killed when the run is interrupted, for as long as the guard lives. Drop
/// the guard before reaping the process.
pub struct Registered(i64);

impl Registered {
    /// The process `pid`.
    pub fn new(pid: u32) -> Registered {
        Self::register(i64::from(pid))
    }

    /// The process group led by `pid` (a child started with `process_group(0)`): the child and
    /// every process it started.
    pub fn group(pid: u32) -> Registered {
        Self::register(-i64::from(pid))
    }

    fn register(target: i64) -> Registered {
        if let Ok(mut c) = CHILDREN.lock() {
            c.insert(target);
        }
        // Interrupted before it was registered: it must not outlive the run either.
        if signal().is_some() {
            kill_children();
        }
        Registered(target)
    }

    /// What `kill_registered` takes.
    pub fn target(&self) -> i64 {
        self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut c) = CHILDREN.lock() {
            c.remove(&self.0);
        }
    }
}

/// A child process that is killed when the run is interrupted, and when dropped.
pub struct Guarded {
    child: std::process::Child,
    guard: Option<Registered>,
}

impl Guarded {
    pub fn new(child: std::process::Child) -> Guarded {
        let guard = Some(Registered::new(child.id()));
        Guarded { child, guard }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What [`kill_registered`] takes to kill it from another thread, while it is not
    /// reaped (`None` once it is).
    pub fn target(&self) -> Option<i64> {
        self.guard.as_ref().map(Registered::target)
    }

    /// The exit status, if it has ended (reaped then).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            self.guard.take();
        }
        status
    }

    /// Kills it and reaps it; its exit status.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        let _ = self.child.kill();
        self.guard.take();
        self.child.wait().ok()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill();
        }
    }
}
