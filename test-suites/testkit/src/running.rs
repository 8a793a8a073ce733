//! The test running now and the helper tasks it spawned: written by the runner, read by the
//! console (which tags log lines with the test) and by `spawn`.

use fqp_kernel::arch::{Active, Port};
use fqp_kernel::mutex::Mutex;
use fqp_kernel::task::TaskId;

/// Group and name of the running test.
static CURRENT: Mutex<Option<(&'static str, &'static str)>> = Mutex::new(None);
/// When (device uptime, µs) the running test started.
static STARTED_US: Mutex<u64> = Mutex::new(0);
/// Helpers spawned by the running test.
static HELPERS: Mutex<heapless::Vec<TaskId, 16>> = Mutex::new(heapless::Vec::new());

/// The running test, as seen from a task (none from interrupts or before the scheduler).
pub(crate) fn current() -> Option<(&'static str, &'static str)> {
    if !fqp_kernel::is_running() || Active::in_isr() {
        return None;
    }
    *CURRENT.lock()
}

/// Marks the test `(group, name)` running, or none.
pub(crate) fn set_current(test: Option<(&'static str, &'static str)>) {
    *STARTED_US.lock() = fqp_kernel::time::uptime_us();
    *CURRENT.lock() = test;
}

/// How long (device time, µs) the running test has run on this boot.
pub(crate) fn elapsed_us() -> u64 {
    fqp_kernel::time::uptime_us().saturating_sub(*STARTED_US.lock())
}

/// Remembers a helper task of the running test, to delete it when the test ends.
pub(crate) fn track_helper(id: TaskId) {
    let mut h = HELPERS.lock();
    assert!(
        h.push(id).is_ok(),
        "a test may spawn at most 16 helper tasks"
    );
}

/// The helpers spawned since the last call (the test that ended).
pub(crate) fn take_helpers() -> heapless::Vec<TaskId, 16> {
    core::mem::take(&mut *HELPERS.lock())
}
