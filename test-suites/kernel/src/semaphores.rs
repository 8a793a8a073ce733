//! Binary and counting semaphores.

use crate::util::{helper, since, Counter, Trace, HIGH};
use fqp_kernel::semaphore::{Full, Semaphore};
use fqp_kernel::{task, time, TimedOut, Timeout};
use fqp_testkit::{check_eq, group, irq, TestResult};

group!(pub SEMAPHORE, "semaphore", [
    binary_give_take,
    counting_limits,
    take_times_out,
    give_wakes_the_waiter_at_once,
    waiters_served_by_priority,
    give_from_interrupt_wakes_task,
]);

static SEM: Semaphore = Semaphore::binary();
static COUNT: Semaphore = Semaphore::counting(3, 0);
static FLAG: Counter = Counter::new();
static TRACE: Trace = Trace::new();

fn empty(s: &Semaphore) {
    while s.try_take().is_ok() {}
}

fn binary_give_take() -> TestResult {
    empty(&SEM);
    check_eq!(SEM.try_take(), Err(TimedOut));
    check_eq!(SEM.give(), Ok(()));
    check_eq!(SEM.give(), Err(Full));
    check_eq!(SEM.count(), 1);
    check_eq!(SEM.try_take(), Ok(()));
    check_eq!(SEM.count(), 0);
    Ok(())
}

fn counting_limits() -> TestResult {
    empty(&COUNT);
    for _ in 0..3 {
        check_eq!(COUNT.give(), Ok(()));
    }
    check_eq!(COUNT.give(), Err(Full));
    check_eq!(COUNT.count(), 3);
    for _ in 0..3 {
        check_eq!(COUNT.try_take(), Ok(()));
    }
    check_eq!(COUNT.try_take(), Err(TimedOut));
    Ok(())
}

fn take_times_out() -> TestResult {
    empty(&SEM);
    task::delay(1);
    let t0 = time::now();
    check_eq!(SEM.take(Timeout::ticks(7)), Err(TimedOut));
    check_eq!(since(t0), 7);
    Ok(())
}

fn give_wakes_the_waiter_at_once() -> TestResult {
    empty(&SEM);
    FLAG.set(0);
    helper("taker", HIGH, || {
        if SEM.take(Timeout::FOREVER).is_ok() {
            FLAG.set(1);
        }
    });
    check_eq!(FLAG.get(), 0);
    check_eq!(SEM.give(), Ok(()));
    check_eq!(FLAG.get(), 1);
    check_eq!(SEM.count(), 0);
    Ok(())
}

fn waiters_served_by_priority() -> TestResult {
    empty(&COUNT);
    TRACE.reset();
    for p in [HIGH, HIGH + 2, HIGH + 1] {
        helper("taker", p, move || {
            if COUNT.take(Timeout::FOREVER).is_ok() {
                TRACE.push(p as u32);
            }
        });
    }
    for _ in 0..3 {
        let _ = COUNT.give();
    }
    check_eq!(
        TRACE.events(),
        [HIGH as u32 + 2, HIGH as u32 + 1, HIGH as u32]
    );
    Ok(())
}

fn give_from_interrupt_wakes_task() -> TestResult {
    empty(&SEM);
    FLAG.set(0);
    irq::set_handler(
        0,
        Some(|| {
            let _ = SEM.give();
        }),
    );
    helper("isr-taker", HIGH, || {
        if SEM.take(Timeout::FOREVER).is_ok() {
            FLAG.set(1);
        }
    });
    let before = irq::count(0);
    irq::trigger(0);
    check_eq!(irq::count(0), before + 1);
    check_eq!(FLAG.get(), 1); // woken in the interrupt, ran as it returned
    Ok(())
}
