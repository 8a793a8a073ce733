//! Software timers.

use crate::util::{Counter, Trace};
use fqp_kernel::task;
use fqp_kernel::timer::Timer;
use fqp_testkit::{check, check_eq, group, irq, TestResult};

group!(pub TIMER, "timer", [
    one_shot_fires_once,
    auto_reload_keeps_its_rhythm,
    stop_prevents_expiry,
    reset_restarts_the_period,
    change_period_takes_effect,
    timers_fire_in_expiry_order,
    start_from_interrupt,
    the_service_task_exists_once_a_timer_runs,
]);

static FIRED: Counter = Counter::new();
static TRACE: Trace = Trace::new();

fn count(_: &'static Timer) {
    FIRED.inc();
}

fn record(t: &'static Timer) {
    TRACE.push(t.id() as u32);
}

static ONE: Timer = Timer::new("one", 5, false, count);
static PERIODIC: Timer = Timer::new("periodic", 4, true, count);
static T10: Timer = Timer::new("ten", 10, false, count);
static T7: Timer = Timer::new("seven", 7, false, record);
static T3: Timer = Timer::new("three", 3, false, record);
static T5: Timer = Timer::new("five", 5, false, record);

fn one_shot_fires_once() -> TestResult {
    FIRED.set(0);
    ONE.start();
    check!(ONE.is_active());
    task::delay(20);
    check_eq!(FIRED.get(), 1);
    check!(!ONE.is_active());
    Ok(())
}

fn auto_reload_keeps_its_rhythm() -> TestResult {
    FIRED.set(0);
    task::delay(1);
    PERIODIC.start();
    task::delay(41);
    let n = FIRED.get();
    PERIODIC.stop();
    check_eq!(n, 10);
    task::delay(10);
    check_eq!(FIRED.get(), 10);
    check_eq!(PERIODIC.period(), 4);
    Ok(())
}

fn stop_prevents_expiry() -> TestResult {
    FIRED.set(0);
    ONE.start();
    task::delay(2);
    ONE.stop();
    check!(!ONE.is_active());
    task::delay(10);
    check_eq!(FIRED.get(), 0);
    Ok(())
}

fn reset_restarts_the_period() -> TestResult {
    FIRED.set(0);
    task::delay(1);
    T10.start();
    task::delay(6);
    T10.reset(); // now due 10 ticks from here
    task::delay(6);
    check_eq!(FIRED.get(), 0);
    task::delay(6);
    check_eq!(FIRED.get(), 1);
    Ok(())
}

fn change_period_takes_effect() -> TestResult {
    FIRED.set(0);
    task::delay(1);
    T10.start();
    T10.change_period(3);
    check_eq!(T10.period(), 3);
    task::delay(4);
    check_eq!(FIRED.get(), 1);
    T10.change_period(10);
    T10.stop();
    Ok(())
}

fn timers_fire_in_expiry_order() -> TestResult {
    TRACE.reset();
    for (t, id) in [(&T7, 7), (&T3, 3), (&T5, 5)] {
        t.set_id(id);
        t.start();
    }
    task::delay(10);
    check_eq!(TRACE.events(), [3, 5, 7]);
    Ok(())
}

fn start_from_interrupt() -> TestResult {
    FIRED.set(0);
    irq::set_handler(0, Some(|| ONE.start()));
    irq::trigger(0);
    check!(ONE.is_active());
    task::delay(10);
    check_eq!(FIRED.get(), 1);
    Ok(())
}

/// The service task is created with the first timer started, at `FQP_TIMER_PRIORITY`, once.
fn the_service_task_exists_once_a_timer_runs() -> TestResult {
    ONE.start();
    ONE.start();
    let mut services = 0;
    let mut priority = None;
    task::for_each(|t| {
        if t.name == "timers" {
            services += 1;
            priority = Some(t.priority);
        }
    });
    ONE.stop();
    check_eq!(services, 1);
    check_eq!(priority, Some(fqp_kernel::config::TIMER_PRIORITY));
    Ok(())
}
