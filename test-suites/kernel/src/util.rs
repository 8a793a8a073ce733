//! Small helpers shared by the kernel tests.

use core::sync::atomic::{AtomicU32, Ordering};
use fqp_kernel::task::TaskId;

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

/// A counter shared with helpers.
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
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Records the order in which things happen (up to 16 events).
pub struct Trace {
    n: AtomicU32,
    ev: [AtomicU32; 16],
}

impl Trace {
    pub const fn new() -> Self {
        Trace { n: AtomicU32::new(0), ev: [const { AtomicU32::new(0) }; 16] }
    }
    pub fn reset(&self) {
        self.n.store(0, Ordering::SeqCst);
    }
    pub fn push(&self, e: u32) {
        let i = self.n.fetch_add(1, Ordering::SeqCst) as usize;
        if i < self.ev.len() {
            self.ev[i].store(e, Ordering::SeqCst);
        }
    }
    pub fn get(&self) -> heapless_vec::Events {
        let n = (self.n.load(Ordering::SeqCst) as usize).min(16);
        let mut v = heapless_vec::Events { len: n, ev: [0; 16] };
        for (i, e) in self.ev.iter().take(n).enumerate() {
            v.ev[i] = e.load(Ordering::SeqCst);
        }
        v
    }
}

pub mod heapless_vec {
    /// A snapshot of a [`super::Trace`], comparable with a slice.
    #[derive(Debug)]
    pub struct Events {
        pub len: usize,
        pub ev: [u32; 16],
    }
    impl PartialEq<&[u32]> for Events {
        fn eq(&self, other: &&[u32]) -> bool {
            &self.ev[..self.len] == *other
        }
    }
}
