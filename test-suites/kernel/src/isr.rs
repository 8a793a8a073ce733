//! The kernel from real interrupt handlers: waking tasks, preemption on return, and calls that
//! must not block.

use crate::util::{helper, let_lower_run, park, Counter, HIGH, LOW};
use fqp_kernel::arch::{Active, Port};
use fqp_kernel::queue::Queue;
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::{time, Timeout};
use fqp_testkit::{check_eq, group, irq, TestResult};

group!(pub ISR, "isr", [
    handler_runs_in_interrupt_context,
    blocking_call_in_a_handler_returns_at_once,
    woken_higher_task_runs_before_trigger_returns,
    woken_lower_task_waits_for_the_test,
    queue_between_interrupt_and_task,
]);

static FLAG: Counter = Counter::new();
static SEM: Semaphore = Semaphore::binary();
static Q: Queue<u32, 8> = Queue::new();

fn handler_runs_in_interrupt_context() -> TestResult {
    FLAG.set(0);
    irq::set_handler(0, Some(|| FLAG.set(if Active::in_isr() { 1 } else { 2 })));
    check_eq!(Active::in_isr(), false);
    irq::trigger(0);
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn blocking_call_in_a_handler_returns_at_once() -> TestResult {
    while Q.try_receive().is_ok() {}
    FLAG.set(0);
    irq::set_handler(
        0,
        Some(|| {
            let t0 = time::now();
            let r = Q.receive(Timeout::FOREVER);
            FLAG.set(if r.is_err() && time::now() == t0 {
                1
            } else {
                2
            });
        }),
    );
    irq::trigger(0);
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn woken_higher_task_runs_before_trigger_returns() -> TestResult {
    while SEM.try_take().is_ok() {}
    FLAG.set(0);
    irq::set_handler(
        1,
        Some(|| {
            let _ = SEM.give();
        }),
    );
    helper("high", HIGH, || {
        if SEM.take(Timeout::FOREVER).is_ok() {
            FLAG.set(1);
        }
        park()
    });
    irq::trigger(1);
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn woken_lower_task_waits_for_the_test() -> TestResult {
    while SEM.try_take().is_ok() {}
    FLAG.set(0);
    irq::set_handler(
        1,
        Some(|| {
            let _ = SEM.give();
        }),
    );
    helper("low", LOW, || {
        if SEM.take(Timeout::FOREVER).is_ok() {
            FLAG.set(1);
        }
        park()
    });
    let_lower_run(); // until it blocks
    irq::trigger(1);
    check_eq!(FLAG.get(), 0);
    let_lower_run();
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn queue_between_interrupt_and_task() -> TestResult {
    while Q.try_receive().is_ok() {}
    FLAG.set(0);
    irq::set_handler(
        0,
        Some(|| {
            let n = FLAG.inc();
            let _ = Q.try_send(n * 10);
        }),
    );
    for _ in 0..5 {
        irq::trigger(0);
    }
    for n in 1..=5u32 {
        check_eq!(Q.try_receive(), Ok(n * 10));
    }
    check_eq!(Q.try_receive().is_err(), true);
    Ok(())
}
