//! Handing things from the port to the test suites: a port registers its devices (an Ethernet
//! controller, a TRNG, persistent storage) in `main`, before `fqp_testkit::run` starts the
//! scheduler — when no kernel object can be locked yet. A [`Handoff`] is written once there
//! and taken once, later, by the suite, which then keeps the value under its own lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FULL: u8 = 2;
const TAKEN: u8 = 3;

/// A value given once and taken once, without locks.
pub struct Handoff<T> {
    state: AtomicU8,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: `value` is written only by the one `put` that moved `state` from EMPTY to WRITING,
// and read only by the one `take` that moved it from FULL to TAKEN; FULL is stored with
// Release after the write and checked with Acquire before the read.
unsafe impl<T: Send> Sync for Handoff<T> {}

impl<T> Handoff<T> {
    pub const fn new() -> Self {
        Handoff {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(None),
        }
    }

    /// Gives the value; false (and the value dropped) if one was given before.
    pub fn put(&self, v: T) -> bool {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: this call alone moved the state to WRITING (see the Sync impl).
        unsafe { *self.value.get() = Some(v) };
        self.state.store(FULL, Ordering::Release);
        true
    }

    /// Takes the value, if one was given and not yet taken.
    pub fn take(&self) -> Option<T> {
        self.state
            .compare_exchange(FULL, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // SAFETY: this call alone moved the state from FULL to TAKEN (see the Sync impl).
        unsafe { (*self.value.get()).take() }
    }
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Self::new()
    }
}
