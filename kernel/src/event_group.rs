//! Event groups: 32 event bits that tasks wait on, for any or all of a set, optionally
//! clearing them on the way out; and a rendezvous (`sync`) for several tasks.
//!
//! Setting bits examines every waiter (as in FreeRTOS), so its time grows with the number of
//! waiters; it runs in a kernel critical section and may be called from interrupt handlers.

use crate::config::MAX_TASKS;
use crate::list::Idx;
use crate::rt::{self, switch_if};
use crate::sched::{Kernel, WaitList, Wake};
use crate::task::current_slot;
use crate::time::{block_on, Step, Timeout};
use core::cell::UnsafeCell;

const OPT_ALL: u8 = 1;
const OPT_CLEAR: u8 = 2;

/// What a waiter wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitFor {
    /// The bits waited for.
    pub bits: u32,
    /// Wait for all of them (else any).
    pub all: bool,
    /// Clear them when the wait is satisfied.
    pub clear: bool,
}

impl WaitFor {
    pub const fn any(bits: u32) -> Self {
        WaitFor {
            bits,
            all: false,
            clear: false,
        }
    }
    pub const fn all(bits: u32) -> Self {
        WaitFor {
            bits,
            all: true,
            clear: false,
        }
    }
    /// Also clear the bits on success.
    pub const fn and_clear(mut self) -> Self {
        self.clear = true;
        self
    }
    fn opts(self) -> u8 {
        (self.all as u8 * OPT_ALL) | (self.clear as u8 * OPT_CLEAR)
    }
}

fn satisfied(bits: u32, want: u32, opts: u8) -> bool {
    if opts & OPT_ALL != 0 {
        bits & want == want
    } else {
        bits & want != 0
    }
}

struct State {
    bits: u32,
    waiters: WaitList,
}

/// A group of 32 event bits.
pub struct EventGroup {
    s: UnsafeCell<State>,
}

// SAFETY: the state is only touched inside kernel critical sections.
unsafe impl Sync for EventGroup {}
// SAFETY: as above.
unsafe impl Send for EventGroup {}

impl Default for EventGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl EventGroup {
    /// All bits clear; usable in a `static`.
    pub const fn new() -> Self {
        EventGroup {
            s: UnsafeCell::new(State {
                bits: 0,
                waiters: WaitList::new(),
            }),
        }
    }

    /// The bits now.
    pub fn get(&self) -> u32 {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.s.get()).bits })
    }

    /// Clears `bits`; returns the bits before.
    pub fn clear(&self, bits: u32) -> u32 {
        rt::with(|_| {
            // SAFETY: inside a kernel critical section.
            let s = unsafe { &mut *self.s.get() };
            let old = s.bits;
            s.bits &= !bits;
            old
        })
    }

    /// Sets `bits` and wakes every waiter now satisfied; returns the bits after waiters that
    /// asked for it cleared theirs. Callable from interrupt handlers.
    pub fn set(&self, bits: u32) -> u32 {
        rt::with(|k| {
            // SAFETY: inside a kernel critical section.
            let s = unsafe { &mut *self.s.get() };
            s.bits |= bits;
            Self::release(k, s)
        })
    }

    fn release(k: &mut Kernel, s: &mut State) -> u32 {
        let mut ready = [0 as Idx; MAX_TASKS];
        let mut n = 0;
        for i in k.waiters(&s.waiters) {
            let t = &k.tasks[i];
            if satisfied(s.bits, t.wait_arg, t.wait_opts) {
                ready[n] = i;
                n += 1;
            }
        }
        let mut clear = 0;
        let mut due = false;
        for &i in &ready[..n] {
            let t = &mut k.tasks[i];
            t.wait_result = s.bits;
            if t.wait_opts & OPT_CLEAR != 0 {
                clear |= t.wait_arg;
            }
            due |= k.wake_waiter(&mut s.waiters, i);
        }
        s.bits &= !clear;
        switch_if(k, due);
        s.bits
    }

    /// Waits until `w` is satisfied. Returns `Ok(bits)` with the bits as they were when it was
    /// satisfied (before any clearing), or `Err(bits)` with the bits at the timeout.
    pub fn wait(&self, w: WaitFor, timeout: Timeout) -> Result<u32, u32> {
        self.wait_inner(0, w, timeout)
    }

    /// Sets `set` and waits for all of `w.bits` (which are then cleared): a rendezvous of the
    /// tasks that each own one bit of `w.bits`. Returns as [`EventGroup::wait`].
    pub fn sync(&self, set: u32, wait_all: u32, timeout: Timeout) -> Result<u32, u32> {
        self.wait_inner(set, WaitFor::all(wait_all).and_clear(), timeout)
    }

    fn wait_inner(&self, set: u32, w: WaitFor, timeout: Timeout) -> Result<u32, u32> {
        let mut first = true;
        let mut blocked = false;
        block_on(timeout, |k, expired| {
            // SAFETY: inside a kernel critical section.
            let s = unsafe { &mut *self.s.get() };
            if blocked && k.wake_reason() == Wake::Event {
                return Step::Done(Ok(k.tasks[current_slot(k)].wait_result));
            }
            if first && set != 0 {
                s.bits |= set;
                let seen = s.bits;
                // Our bits may complete other tasks' waits (the other parties of a sync).
                Self::release(k, s);
                if satisfied(seen, w.bits, w.opts()) {
                    s.bits &= !w.bits;
                    return Step::Done(Ok(seen));
                }
            }
            first = false;
            if satisfied(s.bits, w.bits, w.opts()) {
                let seen = s.bits;
                if w.clear {
                    s.bits &= !w.bits;
                }
                return Step::Done(Ok(seen));
            }
            if expired {
                return Step::Done(Err(s.bits));
            }
            let slot = current_slot(k);
            let t = &mut k.tasks[slot];
            t.wait_arg = w.bits;
            t.wait_opts = w.opts();
            blocked = true;
            Step::Block(Some(&mut s.waiters))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_and_all() {
        assert!(satisfied(0b0110, 0b0010, 0));
        assert!(!satisfied(0b0100, 0b0011, 0));
        assert!(satisfied(0b0111, 0b0011, OPT_ALL));
        assert!(!satisfied(0b0101, 0b0011, OPT_ALL));
    }

    #[test]
    fn set_and_clear_without_waiters() {
        let g = EventGroup::new();
        assert_eq!(g.set(0b101), 0b101);
        assert_eq!(g.clear(0b001), 0b101);
        assert_eq!(g.get(), 0b100);
        // Already satisfied: no blocking, so this runs on the host too.
        assert_eq!(
            g.wait(WaitFor::all(0b100).and_clear(), Timeout::NONE),
            Ok(0b100)
        );
        assert_eq!(g.get(), 0);
        assert_eq!(g.wait(WaitFor::any(0b1), Timeout::NONE), Err(0));
    }
}
