//! Direct-to-task notifications.

use crate::util::{helper, park, since, Counter, HIGH};
use fqp_kernel::notify::{self, Action, NotifyError};
use fqp_kernel::queue::Queue;
use fqp_kernel::task::{self, TaskId};
use fqp_kernel::{time, TimedOut, Timeout};
use fqp_testkit::{check_eq, group, irq, TestResult};

group!(pub NOTIFY, "notify", [
    give_and_take_count,
    take_with_clear_empties,
    set_bits_wake_the_waiter,
    overwrite_rules,
    wait_times_out,
    indexes_are_independent,
    clear_state_and_bits,
    notify_from_interrupt,
]);

static GOT: Counter = Counter::new();

fn fresh(index: usize) {
    let me = task::current();
    let _ = notify::clear_state(me, index);
    let _ = notify::clear_bits(me, index, u32::MAX);
}

fn give_and_take_count() -> TestResult {
    fresh(0);
    let me = task::current();
    for _ in 0..3 {
        check_eq!(notify::give(me, 0), Ok(()));
    }
    for expect in [3, 2, 1] {
        check_eq!(notify::take(0, false, Timeout::NONE), expect);
    }
    check_eq!(notify::take(0, false, Timeout::NONE), 0);
    Ok(())
}

fn take_with_clear_empties() -> TestResult {
    fresh(0);
    let me = task::current();
    let _ = notify::give(me, 0);
    let _ = notify::give(me, 0);
    check_eq!(notify::take(0, true, Timeout::NONE), 2);
    check_eq!(notify::take(0, true, Timeout::NONE), 0);
    Ok(())
}

fn set_bits_wake_the_waiter() -> TestResult {
    GOT.set(0);
    let id = helper("waiter", HIGH, || {
        if let Ok(v) = notify::wait(1, 0, u32::MAX, Timeout::FOREVER) {
            GOT.set(v);
        }
        park()
    });
    check_eq!(GOT.get(), 0);
    check_eq!(notify::notify(id, 1, Action::SetBits(0b101)), Ok(0));
    check_eq!(GOT.get(), 0b101);
    Ok(())
}

fn overwrite_rules() -> TestResult {
    fresh(2);
    let me = task::current();
    check_eq!(notify::notify(me, 2, Action::NoOverwrite(1)), Ok(0));
    check_eq!(
        notify::notify(me, 2, Action::NoOverwrite(2)),
        Err(NotifyError::Pending)
    );
    check_eq!(notify::notify(me, 2, Action::Overwrite(3)), Ok(1));
    check_eq!(notify::wait(2, 0, 0, Timeout::NONE), Ok(3));
    check_eq!(notify::notify(me, 2, Action::NoOverwrite(4)), Ok(3));
    check_eq!(notify::wait(2, 0, u32::MAX, Timeout::NONE), Ok(4));
    Ok(())
}

fn wait_times_out() -> TestResult {
    fresh(1);
    task::delay(1);
    let t0 = time::now();
    check_eq!(notify::wait(1, 0, 0, Timeout::ticks(4)), Err(TimedOut));
    check_eq!(since(t0), 4);
    Ok(())
}

fn indexes_are_independent() -> TestResult {
    fresh(0);
    fresh(1);
    let me = task::current();
    let _ = notify::notify(me, 1, Action::SetBits(1));
    check_eq!(notify::wait(0, 0, 0, Timeout::NONE), Err(TimedOut));
    check_eq!(notify::wait(1, 0, 0, Timeout::NONE), Ok(1));
    Ok(())
}

fn clear_state_and_bits() -> TestResult {
    fresh(1);
    let me = task::current();
    let _ = notify::notify(me, 1, Action::SetBits(0b111));
    check_eq!(notify::clear_bits(me, 1, 0b010), Ok(0b111));
    check_eq!(notify::clear_state(me, 1), Ok(true));
    check_eq!(notify::wait(1, 0, 0, Timeout::NONE), Err(TimedOut));
    let _ = notify::notify(me, 1, Action::None);
    check_eq!(notify::wait(1, 0, 0, Timeout::NONE), Ok(0b101));
    Ok(())
}

static TARGET: Queue<TaskId, 1> = Queue::new();

fn notify_from_interrupt() -> TestResult {
    fresh(0);
    TARGET.overwrite(task::current());
    irq::set_handler(
        1,
        Some(|| {
            if let Ok(id) = TARGET.peek(Timeout::NONE) {
                let _ = notify::give(id, 0);
            }
        }),
    );
    irq::trigger(1);
    irq::trigger(1);
    check_eq!(notify::take(0, true, Timeout::NONE), 2);
    Ok(())
}
