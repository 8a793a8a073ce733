//! Mutexes that own their data, with priority inheritance, and recursive mutexes.
//!
//! While a task holds a mutex that a higher-priority task waits for, the holder runs at the
//! waiter's priority, so a medium-priority task cannot starve the holder (priority inversion).
//! It returns to its own priority when it holds no mutex any more, or, if a waiter gives up
//! (times out), to the highest priority still waiting. Unlocking hands the mutex directly to
//! the highest-priority waiter. Inheritance is one level deep, as in FreeRTOS: a holder that
//! itself waits on another mutex does not pass the priority on.
//!
//! Mutexes belong to tasks: they cannot be used from interrupt handlers.

use crate::arch::{Active, Port};
use crate::list::{Idx, NIL};
use crate::rt::{self, switch_if};
use crate::sched::{Kernel, WaitList, Wake};
use crate::task::current_slot;
use crate::time::{block_on, Step, TimedOut, Timeout};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

struct RawMutex {
    holder: Idx,
    depth: u32,
    waiters: WaitList,
}

impl RawMutex {
    const fn new() -> Self {
        RawMutex {
            holder: NIL,
            depth: 0,
            waiters: WaitList::new(),
        }
    }
}

fn lock_raw(
    cell: &UnsafeCell<RawMutex>,
    recursive: bool,
    timeout: Timeout,
) -> Result<(), TimedOut> {
    assert!(
        !Active::in_isr(),
        "mutexes cannot be used from interrupt handlers"
    );
    let mut blocked = false;
    block_on(timeout, |k, expired| {
        // SAFETY: inside a kernel critical section.
        let m = unsafe { &mut *cell.get() };
        let me = current_slot(k);
        if m.holder == NIL {
            m.holder = me;
            m.depth = 1;
            k.tasks[me].mutexes_held += 1;
            return Step::Done(Ok(()));
        }
        if m.holder == me {
            if blocked && k.wake_reason() == Wake::Event {
                return Step::Done(Ok(())); // handed over by the unlocker
            }
            assert!(
                recursive,
                "task locked a (non-recursive) mutex it already holds"
            );
            m.depth += 1;
            return Step::Done(Ok(()));
        }
        if expired {
            if blocked {
                disinherit_after_timeout(k, m);
            }
            return Step::Done(Err(TimedOut));
        }
        let holder = m.holder;
        if k.tasks[holder].prio < k.tasks[me].prio {
            let p = k.tasks[me].prio;
            k.set_effective_priority(holder, p);
        }
        blocked = true;
        Step::Block(Some(&mut m.waiters))
    })
}

/// A waiter gave up: the holder keeps only the priority still justified by its waiters.
fn disinherit_after_timeout(k: &mut Kernel, m: &mut RawMutex) {
    let h = m.holder;
    if k.tasks[h].mutexes_held != 1 {
        return; // other mutexes may justify the raised priority; settle at unlock
    }
    let want = k
        .top_waiter_prio(&m.waiters)
        .unwrap_or(0)
        .max(k.tasks[h].base_prio);
    if want != k.tasks[h].prio {
        let due = k.set_effective_priority(m.holder, want);
        switch_if(k, due);
    }
}

fn unlock_raw(cell: &UnsafeCell<RawMutex>) {
    rt::with(|k| {
        // SAFETY: inside a kernel critical section.
        let m = unsafe { &mut *cell.get() };
        let me = current_slot(k);
        assert_eq!(
            m.holder, me,
            "mutex unlocked by a task that does not hold it"
        );
        m.depth -= 1;
        if m.depth > 0 {
            return;
        }
        let t = &mut k.tasks[me];
        t.mutexes_held -= 1;
        let mut due = false;
        if t.mutexes_held == 0 && t.prio != t.base_prio {
            let base = t.base_prio;
            due |= k.set_effective_priority(me, base);
        }
        match k.wake_first(&mut m.waiters) {
            Some((w, d)) => {
                due |= d;
                m.holder = w;
                m.depth = 1;
                k.tasks[w].mutexes_held += 1;
                if let Some(p) = k.top_waiter_prio(&m.waiters) {
                    if p > k.tasks[w].prio {
                        k.set_effective_priority(w, p);
                    }
                }
            }
            None => m.holder = NIL,
        }
        switch_if(k, due);
    });
}

/// A mutual-exclusion lock that owns the data it protects.
pub struct Mutex<T> {
    raw: UnsafeCell<RawMutex>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached through a guard, which exists in one task at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex around `data`; usable in a `static`.
    pub const fn new(data: T) -> Self {
        Mutex {
            raw: UnsafeCell::new(RawMutex::new()),
            data: UnsafeCell::new(data),
        }
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.lock_timeout(Timeout::FOREVER)
            .expect("an unbounded wait cannot time out")
    }

    /// Locks, waiting up to `timeout`.
    pub fn lock_timeout(&self, timeout: Timeout) -> Result<MutexGuard<'_, T>, TimedOut> {
        lock_raw(&self.raw, false, timeout)?;
        Ok(MutexGuard {
            m: self,
            _not_send: PhantomData,
        })
    }

    /// Locks if free.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TimedOut> {
        self.lock_timeout(Timeout::NONE)
    }

    /// True if some task holds the mutex.
    pub fn is_locked(&self) -> bool {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.raw.get()).holder != NIL })
    }
}

/// Access to a [`Mutex`]'s data; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    m: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this task holds the lock.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this task holds the lock, and the guard is borrowed mutably.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        unlock_raw(&self.m.raw);
    }
}

/// A mutex the holder may lock again; it is released when every lock is dropped. Because
/// several guards of one task coexist, they give shared access: put a `Cell` or `RefCell`
/// inside for mutation.
pub struct RecursiveMutex<T> {
    raw: UnsafeCell<RawMutex>,
    data: T,
}

// SAFETY: the data is only reached through guards held by one task at a time.
unsafe impl<T: Send> Sync for RecursiveMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for RecursiveMutex<T> {}

impl<T> RecursiveMutex<T> {
    /// An unlocked recursive mutex around `data`.
    pub const fn new(data: T) -> Self {
        RecursiveMutex {
            raw: UnsafeCell::new(RawMutex::new()),
            data,
        }
    }

    /// Locks (again), waiting up to `timeout`.
    pub fn lock_timeout(&self, timeout: Timeout) -> Result<RecursiveGuard<'_, T>, TimedOut> {
        lock_raw(&self.raw, true, timeout)?;
        Ok(RecursiveGuard {
            m: self,
            _not_send: PhantomData,
        })
    }

    /// Locks (again), waiting as long as it takes.
    pub fn lock(&self) -> RecursiveGuard<'_, T> {
        self.lock_timeout(Timeout::FOREVER)
            .expect("an unbounded wait cannot time out")
    }

    /// How many times the holder has locked it (0: free).
    pub fn depth(&self) -> u32 {
        // SAFETY: inside a kernel critical section.
        rt::with(|_| unsafe { (*self.raw.get()).depth })
    }
}

/// Shared access to a [`RecursiveMutex`]'s data; one lock level is released when dropped.
pub struct RecursiveGuard<'a, T> {
    m: &'a RecursiveMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for RecursiveGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.m.data
    }
}

impl<T> Drop for RecursiveGuard<'_, T> {
    fn drop(&mut self) {
        unlock_raw(&self.m.raw);
    }
}
