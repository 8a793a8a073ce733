//! Counting and binary semaphores.

use crate::queue::{Member, SetError, SetLink};
use crate::rt::{self, switch_if};
use crate::sched::WaitList;
use crate::time::{block_on, Step, TimedOut, Timeout};
use core::cell::UnsafeCell;

struct State {
    count: u32,
    max: u32,
    waiters: WaitList,
    set: Option<SetLink>,
}

impl State {
    /// Takes one count if there is one.
    #[inline(always)]
    fn take_one(&mut self) -> bool {
        let available = self.count > 0;
        if available {
            self.count -= 1;
        }
        available
    }
}

/// A give found someone to tell: wakes the highest-priority waiter, posts to the set. Out of
/// line, so that a give nobody waits for stays short.
#[inline(never)]
fn signal(k: &mut crate::sched::Kernel, s: &mut State) {
    if let Some((_, due)) = k.wake_first(&mut s.waiters) {
        switch_if(k, due);
    }
    if let Some(set) = s.set {
        set.post(k);
    }
}

/// A counting semaphore with a maximum count; [`Semaphore::binary`] has a maximum of 1.
pub struct Semaphore {
    s: UnsafeCell<State>,
}

// SAFETY: the state is only touched inside kernel critical sections (`rt::with`).
unsafe impl Sync for Semaphore {}
// SAFETY: as above; nothing in it is tied to a task.
unsafe impl Send for Semaphore {}

/// `give` found the count already at its maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

impl Semaphore {
    /// A counting semaphore holding `initial` of at most `max`.
    pub const fn counting(max: u32, initial: u32) -> Self {
        assert!(
            max > 0 && initial <= max,
            "semaphore initial count above its maximum"
        );
        Semaphore {
            s: UnsafeCell::new(State {
                count: initial,
                max,
                waiters: WaitList::new(),
                set: None,
            }),
        }
    }

    /// A binary semaphore, initially empty (taken).
    pub const fn binary() -> Self {
        Self::counting(1, 0)
    }

    /// Takes one count, waiting up to `timeout` for one to be given.
    #[inline]
    pub fn take(&self, timeout: Timeout) -> Result<(), TimedOut> {
        // The common case, a count there already, in one short critical section.
        // SAFETY: inside a kernel critical section.
        if rt::with(|_| unsafe { &mut *self.s.get() }.take_one()) {
            return Ok(());
        }
        self.take_waiting(timeout)
    }

    #[inline(never)]
    fn take_waiting(&self, timeout: Timeout) -> Result<(), TimedOut> {
        block_on(timeout, |_, expired| {
            // SAFETY: inside a kernel critical section (block_on's attempt).
            let s = unsafe { &mut *self.s.get() };
            if s.take_one() {
                Step::Done(Ok(()))
            } else if expired {
                Step::Done(Err(TimedOut))
            } else {
                Step::Block(Some(&mut s.waiters))
            }
        })
    }

    /// Takes one count if available. Callable from interrupt handlers.
    pub fn try_take(&self) -> Result<(), TimedOut> {
        self.take(Timeout::NONE)
    }

    /// Gives one count, waking the highest-priority waiter. Callable from interrupt handlers.
    pub fn give(&self) -> Result<(), Full> {
        rt::with(|k| {
            // SAFETY: inside a kernel critical section.
            let s = unsafe { &mut *self.s.get() };
            if s.count >= s.max {
                return Err(Full);
            }
            s.count += 1;
            if !s.waiters.is_empty() || s.set.is_some() {
                signal(k, s);
            }
            Ok(())
        })
    }

    /// The most counts it can hold.
    pub fn max(&self) -> u32 {
        // SAFETY: `max` never changes after construction.
        unsafe { (*self.s.get()).max }
    }

    /// This semaphore's identity in a [`crate::queue_set::QueueSet`].
    pub fn member(&self) -> Member {
        Member::of(self.s.get())
    }

    /// Called by `QueueSet::add_semaphore` inside a kernel critical section.
    pub(crate) fn join_set(&self, l: SetLink) -> Result<(), SetError> {
        // SAFETY: inside a kernel critical section (caller's duty).
        let s = unsafe { &mut *self.s.get() };
        l.attach(&mut s.set, s.count == 0)
    }

    /// The current count.
    pub fn count(&self) -> u32 {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.s.get()).count })
    }
}
