//! Event groups.

use crate::util::{helper, park, since, Counter, Trace, HIGH};
use fqp_kernel::event_group::{EventGroup, WaitFor};
use fqp_kernel::{task, time, Timeout};
use fqp_testkit::{check, check_eq, group, irq, TestResult};

group!(pub EVENT_GROUP, "event_group", [
    wait_any_returns_at_once_when_set,
    wait_all_blocks_until_every_bit,
    clear_on_exit_clears_only_the_waited_bits,
    timeout_returns_the_bits_seen,
    one_set_wakes_every_satisfied_waiter,
    sync_is_a_rendezvous,
    set_from_interrupt_wakes_task,
]);

static EG: EventGroup = EventGroup::new();
static GOT: Counter = Counter::new();
static TRACE: Trace = Trace::new();

fn fresh() {
    EG.clear(u32::MAX);
    GOT.set(0);
    TRACE.reset();
}

fn wait_any_returns_at_once_when_set() -> TestResult {
    fresh();
    EG.set(0b1010);
    check_eq!(EG.wait(WaitFor::any(0b0011), Timeout::NONE), Ok(0b1010));
    check_eq!(EG.wait(WaitFor::any(0b0101), Timeout::NONE), Err(0b1010));
    check_eq!(EG.get(), 0b1010);
    Ok(())
}

fn wait_all_blocks_until_every_bit() -> TestResult {
    fresh();
    helper("all", HIGH, || {
        if let Ok(bits) = EG.wait(WaitFor::all(0b11), Timeout::FOREVER) {
            GOT.set(bits);
        }
        park()
    });
    EG.set(0b01);
    check_eq!(GOT.get(), 0);
    EG.set(0b10);
    check_eq!(GOT.get(), 0b11);
    Ok(())
}

fn clear_on_exit_clears_only_the_waited_bits() -> TestResult {
    fresh();
    helper("clear", HIGH, || {
        if let Ok(bits) = EG.wait(WaitFor::any(0b100).and_clear(), Timeout::FOREVER) {
            GOT.set(bits);
        }
        park()
    });
    let after = EG.set(0b110);
    check_eq!(GOT.get(), 0b110);
    check_eq!(after, 0b010);
    check_eq!(EG.get(), 0b010);
    Ok(())
}

fn timeout_returns_the_bits_seen() -> TestResult {
    fresh();
    EG.set(0b01);
    task::delay(1);
    let t0 = time::now();
    check_eq!(EG.wait(WaitFor::all(0b11), Timeout::ticks(3)), Err(0b01));
    check_eq!(since(t0), 3);
    Ok(())
}

fn one_set_wakes_every_satisfied_waiter() -> TestResult {
    fresh();
    // The waiters have equal priority: a tick while they run would rotate them (time
    // slicing). Start just after a tick, so the test ends well before the next one.
    task::delay(1);
    for n in 1..=3u32 {
        helper("waiter", HIGH, move || {
            if EG.wait(WaitFor::any(1), Timeout::FOREVER).is_ok() {
                TRACE.push(n);
            }
            park()
        });
    }
    helper("other-bit", HIGH, || {
        if EG.wait(WaitFor::any(2), Timeout::FOREVER).is_ok() {
            TRACE.push(9);
        }
        park()
    });
    EG.set(1);
    check_eq!(TRACE.events(), [1, 2, 3]);
    Ok(())
}

fn sync_is_a_rendezvous() -> TestResult {
    fresh();
    // The parties have equal priority: start just after a tick so that time slicing cannot
    // rotate them while they record their order.
    task::delay(1);
    for (n, bit) in [(1u32, 0b001u32), (2, 0b010)] {
        helper("party", HIGH, move || {
            if EG.sync(bit, 0b111, Timeout::FOREVER).is_ok() {
                TRACE.push(n);
            }
            park()
        });
    }
    check_eq!(TRACE.events(), []);
    let r = EG.sync(0b100, 0b111, Timeout::ticks(100));
    check!(
        matches!(r, Ok(b) if b & 0b111 == 0b111),
        "sync returned {:?}",
        r
    );
    check_eq!(TRACE.events(), [1, 2]);
    check_eq!(EG.get() & 0b111, 0);
    Ok(())
}

fn set_from_interrupt_wakes_task() -> TestResult {
    fresh();
    irq::set_handler(
        0,
        Some(|| {
            EG.set(0b1000);
        }),
    );
    helper("isr-wait", HIGH, || {
        if let Ok(bits) = EG.wait(WaitFor::any(0b1000), Timeout::FOREVER) {
            GOT.set(bits);
        }
        park()
    });
    irq::trigger(0);
    check_eq!(GOT.get(), 0b1000);
    Ok(())
}
