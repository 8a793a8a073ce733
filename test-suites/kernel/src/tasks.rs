//! Tasks: creation, priorities, deletion, suspension, delays.

use crate::util::{helper, Counter, HIGH, LOW};
use fqp_kernel::task::{self, TaskGone};
use fqp_testkit::{check, check_eq, group, TestResult};

group!(pub TASKS, "tasks", [
    higher_priority_runs_at_once,
    lower_priority_runs_when_test_blocks,
    delay_blocks_for_ticks,
]);

static FLAG: Counter = Counter::new();

fn higher_priority_runs_at_once() -> TestResult {
    FLAG.set(0);
    helper("high", HIGH, || {
        FLAG.set(1);
    });
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn lower_priority_runs_when_test_blocks() -> TestResult {
    FLAG.set(0);
    let id = helper("low", LOW, || FLAG.set(7));
    check_eq!(FLAG.get(), 0);
    task::delay(1);
    check_eq!(FLAG.get(), 7);
    task::delay(1);
    check_eq!(task::state(id), Err(TaskGone));
    Ok(())
}

fn delay_blocks_for_ticks() -> TestResult {
    let t0 = fqp_kernel::time::now();
    task::delay(20);
    let dt = fqp_kernel::time::now().wrapping_sub(t0);
    check!(dt == 20, "delay(20) took {} ticks", dt);
    Ok(())
}
