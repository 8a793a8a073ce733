//! # fqp-testkit: the on-device half of qualification
//!
//! A port's firmware links the test groups it was asked to carry and calls [`run`] with its
//! [`Board`]. The runner task then waits for the harness on the console: it answers `SYNC`,
//! lists the tests, runs the one the host names, and reports through the line protocol of
//! `fqp-protocol`. The host decides what runs and enforces every timeout, so a test that hangs
//! or crashes the device costs that test, not the run.
//!
//! Tests are plain functions returning [`TestResult`]; the [`check!`] family returns early
//! with a [`Failure`] that carries `file:line` and a message. A test may spawn helper tasks
//! with [`spawn`]; any still alive when the test ends are deleted, so the next test starts
//! clean.

#![no_std]

extern crate alloc;

pub mod board;
pub mod config;
pub mod console;
#[cfg(feature = "cortex-m")]
mod faults;
pub mod irq;
mod runner;
mod running;

pub use board::{board, set_board, try_board, Board};
pub use runner::run;

use core::fmt::{self, Write};
use fqp_kernel::task::{self, SpawnError, TaskId};

/// One test.
pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Longest the test may take on a reference-speed device, in milliseconds; the host scales
    /// it by the port's timeout factor.
    pub timeout_ms: u32,
}

/// A named group of tests (one kernel primitive, one library, …).
pub struct Group {
    pub name: &'static str,
    pub tests: &'static [Test],
}

/// Declares a [`Group`]: `group!(QUEUE, "queue", [send_receive, fifo_order, ...]);` with a
/// default 5 s timeout, or `name => ms` per test.
#[macro_export]
macro_rules! group {
    ($vis:vis $ident:ident, $name:literal, [$($test:ident $(=> $ms:expr)?),* $(,)?]) => {
        $vis static $ident: $crate::Group = $crate::Group {
            name: $name,
            tests: &[$($crate::Test {
                name: stringify!($test),
                run: $test,
                timeout_ms: $crate::group!(@ms $($ms)?),
            }),*],
        };
    };
    (@ms) => { 5000 };
    (@ms $ms:expr) => { $ms };
}

/// How a test ended other than by passing. Boxed, so that a test's `Result` stays one word
/// on the path where it passes.
#[derive(Debug)]
pub struct Failure(alloc::boxed::Box<FailureInfo>);

/// What a [`Failure`] says.
#[derive(Debug)]
pub struct FailureInfo {
    pub skip: bool,
    pub file: &'static str,
    pub line: u32,
    pub msg: heapless::String<200>,
}

impl Failure {
    pub fn new(file: &'static str, line: u32, args: fmt::Arguments<'_>) -> Self {
        let mut msg = heapless::String::new();
        let _ = msg.write_fmt(args); // a longer message is cut at the buffer's end
        Failure(alloc::boxed::Box::new(FailureInfo {
            skip: false,
            file,
            line,
            msg,
        }))
    }

    pub fn skipped(file: &'static str, line: u32, args: fmt::Arguments<'_>) -> Self {
        let mut f = Self::new(file, line, args);
        f.0.skip = true;
        f
    }
}

impl core::ops::Deref for Failure {
    type Target = FailureInfo;
    fn deref(&self) -> &FailureInfo {
        &self.0
    }
}

/// What every test returns.
pub type TestResult = Result<(), Failure>;

/// Fails the test unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err($crate::Failure::new(file!(), line!(), format_args!("check failed: {}", stringify!($cond))));
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Failure::new(file!(), line!(), format_args!($($arg)+)));
        }
    };
}

/// Fails the test unless `left == right`, showing both.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (l, r) => {
                if !(*l == *r) {
                    return Err($crate::Failure::new(
                        file!(),
                        line!(),
                        format_args!(
                            "{} == {} failed: left {:?}, right {:?}",
                            stringify!($left),
                            stringify!($right),
                            l,
                            r
                        ),
                    ));
                }
            }
        }
    };
}

/// Fails the test unless `value` is within `lo..=hi`.
#[macro_export]
macro_rules! check_range {
    ($value:expr, $lo:expr, $hi:expr $(,)?) => {
        match (&$value, &$lo, &$hi) {
            (v, lo, hi) => {
                if !(*lo <= *v && *v <= *hi) {
                    return Err($crate::Failure::new(
                        file!(),
                        line!(),
                        format_args!(
                            "{} = {:?} outside {:?}..={:?}",
                            stringify!($value),
                            v,
                            lo,
                            hi
                        ),
                    ));
                }
            }
        }
    };
}

/// A [`Failure`] at this place, for `?` and `map_err` (`Err(fail!("…"))`).
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => { $crate::Failure::new(file!(), line!(), format_args!($($arg)+)) };
}

/// Ends the test as skipped, with a reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)+) => {
        return Err($crate::Failure::skipped(file!(), line!(), format_args!($($arg)+)))
    };
}

/// Writes a `LOG` line for the running test.
#[macro_export]
macro_rules! log {
    ($($arg:tt)+) => { $crate::console::log(format_args!($($arg)+)) };
}

/// Asks the host to act (`restart-broker`, `verify-signature`, …) with `fields`, and waits
/// for it to be done.
pub fn ask(action: &str, fields: &[(&str, &str)], timeout_ms: u32) -> Result<(), Failure> {
    console::ask(action, fields, timeout_ms).map_err(|why| {
        Failure::new(
            file!(),
            line!(),
            format_args!("the host did not {action}: {why}"),
        )
    })
}

/// How many times the running test rebooted the device so far ([`reboot_and_resume`]): 0 on
/// its first run.
pub fn resumed() -> u32 {
    runner::resumed()
}

/// Resets the board and runs the running test again once the host has synced with it:
/// for a test that must see the device start again (an update installed by the boot loader,
/// state that must survive a reset). The test tells its runs apart by [`resumed`] and by
/// what it kept across the reset (its flash, its storage); the host allows a few reboots per
/// test, within the test's timeout.
pub fn reboot_and_resume() -> ! {
    console::reboot();
    board().reset()
}

/// Reports a measured figure for the running test (`METRIC` line).
pub fn metric(name: &str, value: impl fmt::Display, unit: &str) {
    console::metric(name, value, unit);
}

/// Spawns a helper task for the running test (heap stack of `words` words). Helpers still
/// alive when the test ends are deleted by the runner.
pub fn spawn(
    name: &'static str,
    prio: u8,
    words: usize,
    f: impl FnOnce() + Send + 'static,
) -> Result<TaskId, SpawnError> {
    let id = task::Builder::new(name)
        .priority(prio)
        .stack_words(words)
        .spawn(f)?;
    running::track_helper(id);
    Ok(id)
}

static BIG_DONE: fqp_kernel::semaphore::Semaphore = fqp_kernel::semaphore::Semaphore::binary();
static BIG_RESULT: fqp_kernel::mutex::Mutex<Option<TestResult>> =
    fqp_kernel::mutex::Mutex::new(None);

/// Runs `body` in a helper task named `name` with a stack of `words` words (for a test whose
/// work — cryptography, a protocol's buffers — needs more than the test runner's own stack,
/// which a port with little RAM keeps small), waiting up to `wait_ms`; returns its result.
/// What the body used of the stack is reported as the metric `<name>_stack_used` (bytes): the
/// figure a port sizes its own task by.
pub fn with_stack(
    name: &'static str,
    words: usize,
    wait_ms: u32,
    body: fn() -> TestResult,
) -> TestResult {
    let _ = BIG_DONE.try_take();
    spawn(name, TEST_PRIORITY - 1, words, move || {
        let r = body();
        if let Ok(free) = task::stack_high_water(task::current()) {
            let mut metric_name = [0u8; 48];
            let n = name.len().min(37);
            metric_name[..n].copy_from_slice(&name.as_bytes()[..n]);
            metric_name[n..n + 11].copy_from_slice(b"_stack_used");
            if let Ok(m) = core::str::from_utf8(&metric_name[..n + 11]) {
                metric(m, (words - free) * 4, "B");
            }
        }
        *BIG_RESULT.lock() = Some(r);
        let _ = BIG_DONE.give();
    })
    .map_err(|e| fail!("cannot start the {} task: {:?}", name, e))?;
    check!(
        BIG_DONE.take(fqp_kernel::Timeout::ms(wait_ms)).is_ok(),
        "the {} task did not finish within {} ms",
        name,
        wait_ms
    );
    BIG_RESULT
        .lock()
        .take()
        .unwrap_or_else(|| Err(fail!("the {} task left no result", name)))
}

/// Heap statistics of the port, if it has a heap.
pub fn heap_stats() -> Option<fqp_kernel::heap::HeapStats> {
    board().heap_stats()
}

/// Priority the tests run at: helpers can be placed above or below it.
pub const TEST_PRIORITY: u8 = 10;
