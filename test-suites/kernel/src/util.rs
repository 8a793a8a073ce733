//! Small helpers shared by the kernel tests.

use core::sync::atomic::{AtomicU32, Ordering};
use fqp_kernel::task::{self, TaskId};
use fqp_kernel::time;

/// Above the test: runs as soon as it is ready.
pub const HIGH: u8 = fqp_testkit::TEST_PRIORITY + 1;
/// Below the test: runs only while the test blocks.
pub const LOW: u8 = fqp_testkit::TEST_PRIORITY - 1;
/// Stack for helpers, in words.
pub const STACK: usize = 512;

/// Spawns a helper for the running test.
pub fn helper(name: &'static str, prio: u8, f: impl FnOnce() + Send + 'static) -> TaskId {
    fqp_testkit::spawn(name, prio, STACK, f).expect("helper task")
}

/// A helper that blocks forever (until the runner deletes it).
pub fn park() -> ! {
    loop {
        fqp_kernel::notify::take(0, true, fqp_kernel::Timeout::FOREVER);
    }
}

/// Busy-waits (without blocking) until `ticks` ticks have passed.
pub fn spin_ticks(ticks: u32) {
    let t0 = time::now();
    while time::now().wrapping_sub(t0) < ticks {
        core::hint::spin_loop();
    }
}

/// Ticks since `t0`.
pub fn since(t0: u32) -> u32 {
    time::now().wrapping_sub(t0)
}

/// A counter shared with helpers and interrupt handlers.
pub struct Counter(AtomicU32);

impl Counter {
    pub const fn new() -> Self {
        Counter(AtomicU32::new(0))
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, v: u32) {
        self.0.store(v, Ordering::SeqCst)
    }
    pub fn inc(&self) -> u32 {
        // A critical section, not `fetch_add`: Armv6-M has no atomic add.
        fqp_kernel::critical(|| {
            let v = self.0.load(Ordering::SeqCst) + 1;
            self.0.store(v, Ordering::SeqCst);
            v
        })
    }
    /// The counter itself, for code that reads it without Rust (assembly).
    #[cfg_attr(not(target_abi = "eabihf"), allow(dead_code))]
    pub fn atomic(&self) -> &AtomicU32 {
        &self.0
    }
}

/// Records the order in which things happen (up to 16 events).
pub struct Trace {
    n: AtomicU32,
    ev: [AtomicU32; 16],
}

impl Trace {
    pub const fn new() -> Self {
        Trace {
            n: AtomicU32::new(0),
            ev: [const { AtomicU32::new(0) }; 16],
        }
    }
    pub fn reset(&self) {
        self.n.store(0, Ordering::SeqCst);
    }
    pub fn push(&self, e: u32) {
        let i = fqp_kernel::critical(|| {
            let i = self.n.load(Ordering::SeqCst);
            self.n.store(i + 1, Ordering::SeqCst);
            i as usize
        });
        if i < self.ev.len() {
            self.ev[i].store(e, Ordering::SeqCst);
        }
    }
    /// The events so far.
    pub fn events(&self) -> Events {
        let n = (self.n.load(Ordering::SeqCst) as usize).min(16);
        let mut v = Events {
            len: n,
            ev: [0; 16],
        };
        for (i, e) in self.ev.iter().take(n).enumerate() {
            v.ev[i] = e.load(Ordering::SeqCst);
        }
        v
    }
}

/// A snapshot of a [`Trace`], comparable with an array.
pub struct Events {
    len: usize,
    ev: [u32; 16],
}

impl core::fmt::Debug for Events {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.ev[..self.len].fmt(f)
    }
}

impl<const N: usize> PartialEq<[u32; N]> for Events {
    fn eq(&self, other: &[u32; N]) -> bool {
        self.ev[..self.len] == other[..]
    }
}

/// Blocks the test for at least one whole tick period, so that ready tasks below it run
/// (until they block) whatever the tick phase. (`delay(1)` only waits for the *next* tick,
/// which may be a few microseconds away: a helper that just became ready might not get to
/// its first instruction before the test preempts it again.)
pub fn let_lower_run() {
    task::delay(2);
}
