//! Start-up: the idle task, the tick's clock, and the first task. Above the kernel instance
//! (`rt`) and the task API, which know nothing of it; this is the one place that creates the
//! task the scheduler falls back to.

use crate::arch::{Active, Port};
use crate::config::{IDLE_STACK_WORDS, TICK_HZ};
use crate::{hooks, rt, task};

/// Starts the scheduler: creates the idle task, starts the tick, runs the highest-priority
/// task (the timer service task is created with the first timer). Tasks created before this
/// call start here. Never returns.
///
/// `cpu_hz` is the frequency of the clock that drives the tick timer.
pub fn start(cpu_hz: u32) -> ! {
    static IDLE_STACK: task::StaticStack<IDLE_STACK_WORDS> = task::StaticStack::new();
    rt::set_clock(cpu_hz);
    task::Builder::new("idle")
        .priority(0)
        .static_stack(IDLE_STACK.take().expect("kernel started twice"))
        .spawn_raw(idle_entry, (0, 0))
        .expect("no task slot left for the idle task");
    let sp = rt::with(|k| {
        k.started = true;
        let i = k.select();
        k.last_switch_cycles = 0;
        k.tasks[i].sp
    });
    // SAFETY: called once; `sp` was produced by the port's init_stack for this task.
    unsafe { Active::start_first_task(sp, cpu_hz, TICK_HZ) }
}

extern "C" fn idle_entry(_: usize, _: usize) -> ! {
    loop {
        task::reap_zombies();
        hooks::run_idle();
        if task::idle_should_yield() {
            task::yield_now();
        } else {
            Active::wait_for_interrupt();
        }
    }
}
