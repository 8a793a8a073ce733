//! The kernel instance and its entry points from the port.
//!
//! There is one [`Kernel`] per system. Every access goes through [`with`], which holds a kernel
//! critical section for the duration of the closure; closures never nest (no kernel code calls
//! `with` from inside `with`), which is what makes the `&mut` unique. The port calls
//! [`fqp_switch_context`] from its context-switch handler and [`tick_from_isr`] from its tick
//! interrupt.

use crate::arch::{Active, Port};
use crate::config::{IDLE_STACK_WORDS, TICK_HZ};
use crate::hooks;
use crate::sched::Kernel;
#[cfg(feature = "stack-check")]
use crate::sched::State;
use crate::task;
#[cfg(feature = "stack-check")]
use crate::task::TaskId;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

struct Global(UnsafeCell<Kernel>);

// SAFETY: the kernel is only reached through `with`, which serialises access with a critical
// section that masks every context that can call the kernel.
unsafe impl Sync for Global {}

static KERNEL: Global = Global(UnsafeCell::new(Kernel::new()));

/// CPU clock in hertz, set by [`start`].
static CPU_HZ: AtomicU32 = AtomicU32::new(0);
/// Tick timer cycles per tick, set by [`start`] (kept, not divided out at every switch).
static CYCLES_PER_TICK: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on the kernel inside a critical section.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    let mask = Active::enter_critical();
    // SAFETY: the critical section excludes every other context that could reach KERNEL, and
    // `with` is never re-entered from within `f` (kernel-wide rule, see module docs).
    let r = f(unsafe { &mut *KERNEL.0.get() });
    // SAFETY: `mask` is the one this critical section saved.
    unsafe { Active::exit_critical(mask) };
    r
}

/// Asks the port for a context switch, unless the scheduler is locked (then it happens when
/// the lock is released).
pub(crate) fn request_switch(k: &mut Kernel) {
    if k.lock_depth > 0 {
        k.switch_deferred = true;
    } else if k.started {
        Active::request_switch();
    }
}

/// Calls `request_switch` if `due`.
pub(crate) fn switch_if(k: &mut Kernel, due: bool) {
    if due {
        request_switch(k);
    }
}

/// Starts the scheduler: creates the idle task, starts the tick, runs the highest-priority
/// task. Tasks created before this call start here. Never returns.
///
/// `cpu_hz` is the frequency of the clock that drives the tick timer.
pub fn start(cpu_hz: u32) -> ! {
    static IDLE_STACK: task::StaticStack<IDLE_STACK_WORDS> = task::StaticStack::new();
    CPU_HZ.store(cpu_hz, Ordering::Relaxed);
    CYCLES_PER_TICK.store(cpu_hz / TICK_HZ, Ordering::Relaxed);
    task::Builder::new("idle")
        .priority(0)
        .static_stack(IDLE_STACK.take().expect("kernel started twice"))
        .spawn_raw(idle_entry, (0, 0))
        .expect("no task slot left for the idle task");
    crate::timer::start_service();
    let sp = with(|k| {
        k.started = true;
        let i = k.select();
        k.last_switch_cycles = 0;
        k.tasks[i as usize].sp
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

/// The tick interrupt's body; the port's tick handler calls it.
pub fn tick_from_isr() {
    with(|k| {
        let due = k.tick();
        switch_if(k, due);
    });
    hooks::run_tick();
}

/// Called by the port's context-switch handler with interrupts masked up to the syscall
/// ceiling: saves the outgoing stack pointer, checks its stack, accounts its CPU time, and
/// returns the stack pointer of the task to run.
#[cfg_attr(all(target_arch = "arm", target_os = "none"), no_mangle)]
pub extern "C" fn fqp_switch_context(sp: *mut u32) -> *mut u32 {
    // SAFETY: the port calls this from its switch handler with the kernel's interrupts
    // masked and not from inside `with`, so this is the only live access.
    let k = unsafe { &mut *KERNEL.0.get() };
    let cur = k.current as usize;
    k.tasks[cur].sp = sp;
    #[cfg(feature = "stack-check")]
    if k.tasks[cur].state != State::Zombie && !task::stack_intact(&k.tasks[cur], sp) {
        hooks::stack_overflow(TaskId::of(k, cur as u8), k.tasks[cur].name);
    }
    #[cfg(feature = "run-time-stats")]
    {
        // A tick pending behind the mask can make the clock look one tick late: never let
        // the stamp go backwards.
        let now = uptime_cycles_locked(k);
        if now > k.last_switch_cycles {
            k.tasks[cur].run_cycles += now - k.last_switch_cycles;
            k.last_switch_cycles = now;
        }
    }
    let next = k.select();
    k.tasks[next as usize].sp
}

/// Cycles since the scheduler started, from the tick count and the tick timer.
pub(crate) fn uptime_cycles_locked(k: &Kernel) -> u64 {
    let per_tick = CYCLES_PER_TICK.load(Ordering::Relaxed) as u64;
    k.tick as u64 * per_tick + Active::cycles_into_tick() as u64
}

/// The CPU clock given to [`start`].
pub fn cpu_hz() -> u32 {
    CPU_HZ.load(Ordering::Relaxed)
}

/// True once [`start`] has run.
pub fn is_running() -> bool {
    with(|k| k.started)
}
