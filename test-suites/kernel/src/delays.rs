//! Delays: relative, periodic (delay-until), yields, and millisecond timeouts.

use crate::util::{helper, since, spin_ticks, Counter};
use fqp_kernel::queue::Queue;
use fqp_kernel::{task, time, Timeout};
use fqp_testkit::{check, check_eq, group, log, TestResult, TEST_PRIORITY};

group!(pub DELAYS, "delay", [
    delay_blocks_for_ticks,
    delay_until_keeps_the_period,
    delay_until_late_does_not_block,
    delay_zero_yields,
    millisecond_timeouts_become_ticks,
    uptime_never_goes_back => 10_000,
]);

static FLAG: Counter = Counter::new();

fn delay_blocks_for_ticks() -> TestResult {
    task::delay(1);
    let t0 = time::now();
    task::delay(20);
    check_eq!(since(t0), 20);
    Ok(())
}

fn delay_until_keeps_the_period() -> TestResult {
    task::delay(1);
    let t0 = time::now();
    let mut last = t0;
    for i in 1..=5u32 {
        spin_ticks(i); // work of varying length must not shift the rhythm
        check!(
            task::delay_until(&mut last, 10),
            "round {} should have blocked",
            i
        );
        check_eq!(time::now().wrapping_sub(t0), 10 * i);
    }
    Ok(())
}

fn delay_until_late_does_not_block() -> TestResult {
    let mut last = time::now();
    spin_ticks(5);
    let before = time::now();
    check!(
        !task::delay_until(&mut last, 2),
        "a missed deadline returns false"
    );
    check_eq!(time::now(), before);
    Ok(())
}

/// The helper shares the test's priority, so a tick that fell while it ran would time-slice
/// back to the test before it set the flag (about once in thousands of runs): the test starts
/// on a fresh tick, leaving the whole tick to the helper.
fn delay_zero_yields() -> TestResult {
    FLAG.set(0);
    task::delay(1);
    helper("equal", TEST_PRIORITY, || FLAG.set(1));
    task::delay(0);
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn millisecond_timeouts_become_ticks() -> TestResult {
    static Q: Queue<u8, 1> = Queue::new();
    check_eq!(
        Timeout::ms(10).as_ticks(),
        Some(10 * fqp_kernel::config::TICK_HZ / 1000)
    );
    task::delay(1);
    let t0 = time::now();
    check!(Q.receive(Timeout::ms(10)).is_err());
    check_eq!(since(t0), Timeout::ms(10).as_ticks().unwrap_or(0));
    Ok(())
}

/// Microsecond uptime is the tick count plus the tick timer's progress: read just as the
/// timer wraps, before the tick interrupt is taken, it must not step back by a tick.
fn uptime_never_goes_back() -> TestResult {
    let t0 = time::now();
    let mut last = time::uptime_us();
    let mut reads = 0u32;
    while time::now().wrapping_sub(t0) < 300 {
        let now = time::uptime_us();
        check!(
            now >= last,
            "uptime went back from {} to {} us after {} reads",
            last,
            now,
            reads
        );
        last = now;
        reads += 1;
    }
    log!("{} reads over 300 ticks", reads);
    Ok(())
}
