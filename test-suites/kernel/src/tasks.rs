//! Tasks: creation, ending, deletion, suspension, priorities, names, handles, stacks,
//! statistics, scheduler lock and hooks.

use crate::util::{helper, let_lower_run, park, since, spin_ticks, Counter, HIGH, LOW, STACK};
use alloc::vec::Vec;
use fqp_kernel::config::MAX_TASKS;
use fqp_kernel::task::{self, Builder, SpawnError, TaskGone};
use fqp_kernel::{hooks, time, TaskState};
use fqp_testkit::{check, check_eq, check_range, group, TestResult, TEST_PRIORITY};

group!(pub TASKS, "tasks", [
    higher_priority_runs_at_once,
    lower_priority_runs_when_test_blocks,
    task_ends_when_entry_returns,
    delete_other_task_stops_it,
    suspend_and_resume,
    suspended_task_resumed_by_another,
    raising_priority_preempts,
    lowering_own_priority_yields,
    names_and_current,
    stale_handle_is_detected,
    spawn_errors,
    slots_run_out_and_come_back,
    stack_high_water_mark,
    run_time_statistics,
    abort_wait_ends_a_delay,
    scheduler_lock_defers_switches,
    idle_hook_runs,
    tick_hook_runs_every_tick,
]);

static FLAG: Counter = Counter::new();
static SPINS: Counter = Counter::new();

fn higher_priority_runs_at_once() -> TestResult {
    FLAG.set(0);
    helper("high", HIGH, || FLAG.set(1));
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn lower_priority_runs_when_test_blocks() -> TestResult {
    FLAG.set(0);
    helper("low", LOW, || FLAG.set(7));
    check_eq!(FLAG.get(), 0);
    let_lower_run();
    check_eq!(FLAG.get(), 7);
    Ok(())
}

fn task_ends_when_entry_returns() -> TestResult {
    let before = task::count();
    let heap_before = fqp_testkit::heap_stats().map(|h| h.free_bytes);
    FLAG.set(0);
    let id = helper("short", HIGH, || FLAG.set(3));
    check_eq!(FLAG.get(), 3);
    check_eq!(task::state(id), Err(TaskGone));
    check_eq!(task::count(), before);
    task::delay(2); // the idle task frees the stack
    let heap_after = fqp_testkit::heap_stats().map(|h| h.free_bytes);
    check_eq!(heap_after, heap_before);
    Ok(())
}

fn spinner() -> ! {
    loop {
        SPINS.inc();
    }
}

fn delete_other_task_stops_it() -> TestResult {
    SPINS.set(0);
    let id = helper("spin", LOW, || spinner());
    task::delay(3);
    check!(SPINS.get() > 0, "the helper never ran");
    task::delete(id)
        .map_err(|_| fqp_testkit::Failure::new(file!(), line!(), format_args!("delete failed")))?;
    let stopped = SPINS.get();
    task::delay(3);
    check_eq!(SPINS.get(), stopped);
    check_eq!(task::delete(id), Err(TaskGone));
    Ok(())
}

fn suspend_and_resume() -> TestResult {
    SPINS.set(0);
    let id = helper("spin", LOW, || spinner());
    task::delay(2);
    check_eq!(task::suspend(id), Ok(()));
    check_eq!(task::state(id), Ok(TaskState::Suspended));
    let frozen = SPINS.get();
    task::delay(3);
    check_eq!(SPINS.get(), frozen);
    check_eq!(task::resume(id), Ok(()));
    task::delay(3);
    check!(SPINS.get() > frozen, "resumed task did not run");
    Ok(())
}

fn suspended_task_resumed_by_another() -> TestResult {
    FLAG.set(0);
    let id = helper("self-suspend", HIGH, || {
        let _ = task::suspend(task::current());
        FLAG.set(9);
    });
    check_eq!(FLAG.get(), 0);
    check_eq!(task::state(id), Ok(TaskState::Suspended));
    check_eq!(task::resume(id), Ok(()));
    check_eq!(FLAG.get(), 9);
    Ok(())
}

fn raising_priority_preempts() -> TestResult {
    FLAG.set(0);
    let id = helper("raise", LOW, || FLAG.set(1));
    check_eq!(task::priority(id), Ok(LOW));
    check_eq!(FLAG.get(), 0);
    check_eq!(task::set_priority(id, HIGH), Ok(()));
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn lowering_own_priority_yields() -> TestResult {
    FLAG.set(0);
    helper("equal-later", LOW, || FLAG.set(1));
    let me = task::current();
    check_eq!(task::set_priority(me, LOW - 1), Ok(()));
    check_eq!(FLAG.get(), 1);
    check_eq!(task::priority(me), Ok(LOW - 1));
    check_eq!(task::base_priority(me), Ok(LOW - 1));
    Ok(())
}

fn names_and_current() -> TestResult {
    check_eq!(task::name(task::current()), Ok("runner"));
    FLAG.set(0);
    let id = helper("alpha", HIGH, || {
        if task::name(task::current()) == Ok("alpha") {
            FLAG.set(1);
        }
        park()
    });
    check_eq!(FLAG.get(), 1);
    check_eq!(task::name(id), Ok("alpha"));
    // (The timer service task exists only once a timer has been started: see group timer.)
    let mut seen = [false; 2];
    task::for_each(|t| {
        for (n, name) in ["idle", "runner"].iter().enumerate() {
            seen[n] |= t.name == *name;
        }
    });
    check_eq!(seen, [true, true]);
    Ok(())
}

fn stale_handle_is_detected() -> TestResult {
    let old = helper("gone", HIGH, || {});
    task::delay(2);
    let new = helper("new", LOW, || park());
    check!(new != old);
    check_eq!(task::suspend(old), Err(TaskGone));
    check_eq!(task::resume(old), Err(TaskGone));
    check_eq!(task::priority(old), Err(TaskGone));
    check_eq!(task::state(new), Ok(TaskState::Ready));
    Ok(())
}

fn noop(_: usize) {}

fn spawn_errors() -> TestResult {
    check_eq!(
        Builder::new("x")
            .priority(32)
            .stack_words(STACK)
            .spawn_fn(noop, 0),
        Err(SpawnError::BadPriority)
    );
    check_eq!(
        Builder::new("x").spawn_fn(noop, 0),
        Err(SpawnError::NoStack)
    );
    check_eq!(
        Builder::new("x").stack_words(16).spawn_fn(noop, 0),
        Err(SpawnError::StackTooSmall)
    );
    check_eq!(
        Builder::new("x").stack_words(100_000_000).spawn_fn(noop, 0),
        Err(SpawnError::OutOfMemory)
    );
    Ok(())
}

fn parked(_: usize) {
    park()
}

fn slots_run_out_and_come_back() -> TestResult {
    let existing = task::count();
    let mut made = Vec::new();
    let err = loop {
        match Builder::new("filler")
            .priority(LOW)
            .stack_words(128)
            .spawn_fn(parked, 0)
        {
            Ok(id) => made.push(id),
            Err(e) => break e,
        }
    };
    let n = made.len();
    for id in made {
        let _ = task::delete(id);
    }
    check_eq!(err, SpawnError::NoSlot);
    check_eq!(existing + n, MAX_TASKS);
    let again = Builder::new("again")
        .priority(LOW)
        .stack_words(128)
        .spawn_fn(noop, 0);
    check!(again.is_ok(), "a slot is free again after deletions");
    Ok(())
}

#[inline(never)]
fn use_stack(words: usize) -> u32 {
    let mut a = [0u32; 100];
    for (i, w) in a.iter_mut().enumerate().take(words) {
        // SAFETY: writing to a local array through a valid reference.
        unsafe { core::ptr::write_volatile(w, i as u32) };
    }
    a.iter().sum()
}

fn stack_high_water_mark() -> TestResult {
    let id = fqp_testkit::spawn("deep", HIGH, 256, || {
        core::hint::black_box(use_stack(100));
        park()
    })
    .map_err(|_| fqp_testkit::Failure::new(file!(), line!(), format_args!("spawn failed")))?;
    let hw = task::stack_high_water(id).unwrap_or(0);
    check_range!(hw, 16, 256 - 100);
    check!(task::stack_high_water(task::current()).unwrap_or(0) > 0);
    Ok(())
}

fn run_time_statistics() -> TestResult {
    let id = helper("busy", LOW, || {
        spin_ticks(10);
        park()
    });
    task::delay(20);
    let mut cycles = 0;
    task::for_each(|t| {
        if t.id == id {
            cycles = t.run_cycles;
        }
    });
    let per_tick = (fqp_kernel::cpu_hz() / fqp_kernel::config::TICK_HZ) as u64;
    check_range!(cycles, 9 * per_tick, 12 * per_tick);
    Ok(())
}

fn abort_wait_ends_a_delay() -> TestResult {
    FLAG.set(0);
    let id = helper("sleeper", HIGH, || {
        task::delay(100_000);
        FLAG.set(5);
        park()
    });
    check_eq!(task::state(id), Ok(TaskState::Blocked));
    check_eq!(task::abort_wait(id), Ok(true));
    check_eq!(FLAG.get(), 5);
    check_eq!(task::abort_wait(task::current()), Ok(false));
    Ok(())
}

fn scheduler_lock_defers_switches() -> TestResult {
    FLAG.set(0);
    let lock = task::lock_scheduler();
    helper("late", HIGH, || FLAG.set(1));
    let during = FLAG.get();
    drop(lock);
    check_eq!(during, 0);
    check_eq!(FLAG.get(), 1);
    Ok(())
}

fn idle_hook_runs() -> TestResult {
    SPINS.set(0);
    hooks::set_idle_hook(Some(|| {
        SPINS.inc();
    }));
    task::delay(5);
    hooks::set_idle_hook(None);
    check!(SPINS.get() >= 1, "idle hook never ran");
    Ok(())
}

fn tick_hook_runs_every_tick() -> TestResult {
    hooks::set_tick_hook(Some(|| {
        SPINS.inc();
    }));
    task::delay(1);
    SPINS.set(0);
    let t0 = time::now();
    task::delay(10);
    let n = SPINS.get();
    let dt = since(t0);
    hooks::set_tick_hook(None);
    check_range!(n, dt - 1, dt + 1);
    check_eq!(TEST_PRIORITY, task::priority(task::current()).unwrap_or(0));
    Ok(())
}
