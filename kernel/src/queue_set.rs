//! Queue sets: one task blocks on several queues and semaphores at once. Above both (a set
//! is itself a queue of its members' keys, and takes queues and semaphores as members); they
//! know a set only as the [`SetLink`] they post their key to.

use crate::queue::{Member, Queue, SetError, SetLink};
use crate::rt;
use crate::semaphore::Semaphore;
use crate::time::{TimedOut, Timeout};
use core::cell::UnsafeCell;

/// Blocks on several queues and semaphores at once: [`QueueSet::select`] returns a member that
/// has an item (queue) or a count (semaphore), which the caller then takes without waiting.
///
/// Each member announces every item it receives, so `N` must be at least the sum of the
/// members' capacities. Tasks should take from members only after `select` named them.
pub struct QueueSet<const N: usize> {
    keys: Queue<usize, N>,
    committed: UnsafeCell<usize>,
}

// SAFETY: `committed` is touched only inside kernel critical sections; `keys` is a queue.
unsafe impl<const N: usize> Sync for QueueSet<N> {}

impl<const N: usize> Default for QueueSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> QueueSet<N> {
    pub const fn new() -> Self {
        QueueSet {
            keys: Queue::new(),
            committed: UnsafeCell::new(0),
        }
    }

    fn join(
        &'static self,
        key: usize,
        cap: usize,
        link: impl FnOnce(SetLink) -> Result<(), SetError>,
    ) -> Result<Member, SetError> {
        rt::with(|_| {
            // SAFETY: inside a kernel critical section.
            let committed = unsafe { &mut *self.committed.get() };
            if *committed + cap > N {
                return Err(SetError::SetTooSmall);
            }
            link(self.keys.set_link(key))?;
            *committed += cap;
            Ok(Member(key))
        })
    }

    /// Adds an (empty) queue to the set.
    pub fn add_queue<T, const M: usize>(
        &'static self,
        q: &'static Queue<T, M>,
    ) -> Result<Member, SetError> {
        self.join(q.member().0, M, |l| q.join_set(l))
    }

    /// Adds a semaphore (with count 0) to the set.
    pub fn add_semaphore(&'static self, s: &'static Semaphore) -> Result<Member, SetError> {
        self.join(s.member().0, s.max() as usize, |l| s.join_set(l))
    }

    /// Waits up to `timeout` for a member to have something; returns which.
    pub fn select(&self, timeout: Timeout) -> Result<Member, TimedOut> {
        self.keys.receive(timeout).map(Member)
    }

    /// The member that has something now, if any. Callable from interrupt handlers.
    pub fn try_select(&self) -> Result<Member, TimedOut> {
        self.select(Timeout::NONE)
    }
}
