//! Mutexes (priority inheritance, hand-over, timeouts) and recursive mutexes.

use crate::util::{helper, let_lower_run, park, since, Counter, Trace, HIGH, LOW};
use alloc::boxed::Box;
use core::cell::Cell;
use fqp_kernel::event_group::{EventGroup, WaitFor};
use fqp_kernel::mutex::{Mutex, RecursiveMutex};
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::{task, time, Timeout};
use fqp_testkit::{check, check_eq, group, TestResult};

group!(pub MUTEX, "mutex", [
    guard_gives_exclusive_access,
    try_lock_fails_while_held,
    holder_inherits_the_waiters_priority,
    inheritance_ends_when_the_waiter_gives_up,
    unlock_hands_over_to_the_highest_waiter,
]);

group!(pub RECURSIVE_MUTEX, "recursive_mutex", [
    nested_locks_release_on_the_last_drop,
    guards_share_the_data,
]);

static M: Mutex<u32> = Mutex::new(0);
static RELEASE: Semaphore = Semaphore::binary();
static LOCKED: EventGroup = EventGroup::new();
static TRACE: Trace = Trace::new();
static FLAG: Counter = Counter::new();

fn guard_gives_exclusive_access() -> TestResult {
    static SHARED: Mutex<(u32, u32)> = Mutex::new((0, 0));
    *SHARED.lock() = (0, 0);
    for _ in 0..2 {
        helper("inc", LOW, || {
            for _ in 0..200 {
                let mut g = SHARED.lock();
                let a = g.0;
                task::yield_now(); // the other task runs while we hold the lock
                g.0 = a + 1;
                g.1 += 1;
            }
        });
    }
    task::delay(50);
    let g = SHARED.lock();
    check_eq!(*g, (400, 400));
    Ok(())
}

fn try_lock_fails_while_held() -> TestResult {
    let m: &'static Mutex<u8> = Box::leak(Box::new(Mutex::new(0)));
    helper("holder", HIGH, move || {
        let _g = m.lock();
        park()
    });
    check!(m.is_locked());
    check!(m.try_lock().is_err());
    task::delay(1);
    let t0 = time::now();
    check!(m.lock_timeout(Timeout::ticks(3)).is_err());
    // Never early. One tick late at most: an emulator whose idle time follows real time
    // (QEMU's icount sleep) may deliver two ticks at once on a loaded host.
    let waited = since(t0);
    check!(
        (3..=4).contains(&waited),
        "waited {} ticks for a 3-tick timeout",
        waited
    );
    Ok(())
}

fn reset() {
    while RELEASE.try_take().is_ok() {}
    LOCKED.clear(u32::MAX);
    TRACE.reset();
}

/// A low-priority task that takes M and holds it until RELEASE is given.
fn spawn_low_holder() -> fqp_kernel::task::TaskId {
    helper("low", LOW, || {
        let mut g = M.lock();
        *g += 1;
        LOCKED.set(1);
        let _ = RELEASE.take(Timeout::FOREVER);
        TRACE.push(1);
        drop(g);
        TRACE.push(2);
        park()
    })
}

fn holder_inherits_the_waiters_priority() -> TestResult {
    reset();
    let low = spawn_low_holder();
    check!(
        LOCKED.wait(WaitFor::any(1), Timeout::ticks(100)).is_ok(),
        "low never took the mutex"
    );
    check_eq!(task::priority(low), Ok(LOW));
    helper("high", HIGH + 1, || {
        let g = M.lock();
        TRACE.push(3);
        drop(g);
        park()
    });
    // "high" is blocked on M: "low" now runs at its priority.
    check_eq!(task::priority(low), Ok(HIGH + 1));
    check_eq!(task::base_priority(low), Ok(LOW));
    let _ = RELEASE.give();
    // "low" ran above us, released M (dropping back to LOW), "high" got M at once.
    check_eq!(task::priority(low), Ok(LOW));
    check_eq!(TRACE.events(), [1, 3]);
    let_lower_run();
    check_eq!(TRACE.events(), [1, 3, 2]);
    Ok(())
}

fn inheritance_ends_when_the_waiter_gives_up() -> TestResult {
    reset();
    FLAG.set(0);
    let low = spawn_low_holder();
    check!(
        LOCKED.wait(WaitFor::any(1), Timeout::ticks(100)).is_ok(),
        "low never took the mutex"
    );
    helper("impatient", HIGH + 1, || {
        if M.lock_timeout(Timeout::ticks(5)).is_err() {
            FLAG.set(1);
        }
        park()
    });
    check_eq!(task::priority(low), Ok(HIGH + 1));
    task::delay(10);
    check_eq!(FLAG.get(), 1);
    check_eq!(task::priority(low), Ok(LOW));
    check!(M.is_locked());
    let _ = RELEASE.give();
    let_lower_run();
    check!(!M.is_locked());
    Ok(())
}

fn unlock_hands_over_to_the_highest_waiter() -> TestResult {
    TRACE.reset();
    let g = M.lock();
    // Each waiter preempts the holder (whose priority rises to it) and queues; every one
    // queues ahead of the earlier ones.
    for p in [HIGH, HIGH + 1, HIGH + 2] {
        helper("waiter", p, move || {
            let g = M.lock();
            TRACE.push(p as u32);
            drop(g);
        });
        check_eq!(task::priority(task::current()), Ok(p));
    }
    check_eq!(TRACE.events(), []);
    drop(g);
    check_eq!(
        task::priority(task::current()),
        Ok(fqp_testkit::TEST_PRIORITY)
    );
    check_eq!(
        TRACE.events(),
        [HIGH as u32 + 2, HIGH as u32 + 1, HIGH as u32]
    );
    Ok(())
}

static RM: RecursiveMutex<Cell<u32>> = RecursiveMutex::new(Cell::new(0));

fn nested_locks_release_on_the_last_drop() -> TestResult {
    FLAG.set(0);
    let g1 = RM.lock();
    let g2 = RM.lock();
    let g3 = RM.lock();
    check_eq!(RM.depth(), 3);
    helper("other", HIGH, || {
        let _g = RM.lock();
        FLAG.set(1);
    });
    drop(g3);
    drop(g2);
    check_eq!((FLAG.get(), RM.depth()), (0, 1));
    drop(g1);
    check_eq!(FLAG.get(), 1);
    check_eq!(RM.depth(), 0);
    Ok(())
}

fn guards_share_the_data() -> TestResult {
    let outer = RM.lock();
    outer.set(10);
    {
        let inner = RM.lock();
        inner.set(inner.get() + 5);
    }
    check_eq!(outer.get(), 15);
    Ok(())
}
