//! Scheduling: highest priority first, round robin by yield and by time slice among equals,
//! no preemption by equals.

use crate::util::{helper, let_lower_run, Counter, Trace, HIGH, LOW};
use fqp_kernel::event_group::{EventGroup, WaitFor};
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::task;
use fqp_kernel::Timeout;
use fqp_testkit::{check, check_eq, group, TestResult, TEST_PRIORITY};

group!(pub SCHEDULING, "scheduling", [
    round_robin_by_yield,
    time_slicing_shares_the_cpu,
    equal_priority_does_not_preempt,
    highest_priority_first,
    preempted_task_keeps_its_turn,
]);

static TRACE: Trace = Trace::new();
static GO: EventGroup = EventGroup::new();
static A: Counter = Counter::new();
static B: Counter = Counter::new();
static SEM: Semaphore = Semaphore::binary();

fn round_robin_by_yield() -> TestResult {
    TRACE.reset();
    GO.clear(u32::MAX);
    for n in [1u32, 2] {
        helper("rr", HIGH, move || {
            let _ = GO.wait(WaitFor::any(1), Timeout::FOREVER);
            for _ in 0..3 {
                TRACE.push(n);
                task::yield_now();
            }
        });
    }
    // Start right after a tick: a tick inside the exchange would (rightly) end a task's time
    // slice early and give the other two turns in a row.
    task::delay(1);
    GO.set(1);
    check_eq!(TRACE.events(), [1, 2, 1, 2, 1, 2]);
    Ok(())
}

fn time_slicing_shares_the_cpu() -> TestResult {
    if !fqp_kernel::config::TIME_SLICING {
        fqp_testkit::skip!("built with FQP_TIME_SLICING=0");
    }
    A.set(0);
    B.set(0);
    helper("slice-a", LOW, || loop {
        A.inc();
    });
    helper("slice-b", LOW, || loop {
        B.inc();
    });
    task::delay(20);
    let (a, b) = (A.get(), B.get());
    check!(
        a > 0 && b > 0,
        "both equal-priority spinners must run: {} and {}",
        a,
        b
    );
    check!(
        a < 3 * b && b < 3 * a,
        "slices are about fair: {} vs {}",
        a,
        b
    );
    Ok(())
}

fn equal_priority_does_not_preempt() -> TestResult {
    A.set(0);
    task::delay(1); // no tick (time slice) between the spawn and the check
    helper("equal", TEST_PRIORITY, || A.set(1));
    check_eq!(A.get(), 0);
    task::yield_now();
    check_eq!(A.get(), 1);
    Ok(())
}

fn highest_priority_first() -> TestResult {
    TRACE.reset();
    let lock = task::lock_scheduler();
    for p in [12u8, 31, 2, 20] {
        helper("prio", p, move || TRACE.push(p as u32));
    }
    drop(lock);
    check_eq!(TRACE.events(), [31, 20, 12]);
    let_lower_run();
    check_eq!(TRACE.events(), [31, 20, 12, 2]);
    Ok(())
}

fn preempted_task_keeps_its_turn() -> TestResult {
    // "first" is preempted by the test, woken from an interrupt that "first" itself raises
    // (not by a tick, which would also rotate the time slice). When the test blocks again,
    // "first" must continue before its equal "second" gets a turn.
    TRACE.reset();
    while SEM.try_take().is_ok() {}
    fqp_testkit::irq::set_handler(
        0,
        Some(|| {
            let _ = SEM.give();
        }),
    );
    task::delay(1); // start right after a tick: no tick falls in what follows
    helper("first", LOW, || {
        TRACE.push(1);
        fqp_testkit::irq::trigger(0);
        TRACE.push(1);
    });
    helper("second", LOW, || TRACE.push(2));
    check!(
        SEM.take(Timeout::ticks(5)).is_ok(),
        "the interrupt did not wake the test"
    );
    TRACE.push(9);
    task::delay(2);
    check_eq!(TRACE.events(), [1, 9, 1, 2]);
    Ok(())
}
