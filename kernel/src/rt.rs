//! The kernel instance and its entry points from the port.
//!
//! There is one [`Kernel`] per system. Every access goes through [`with`], which holds a kernel
//! critical section for the duration of the closure; closures never nest (no kernel code calls
//! `with` from inside `with`), which is what makes the `&mut` unique. The port calls
//! [`fqp_switch_context`] from its context-switch handler and [`tick_from_isr`] from its tick
//! interrupt.

use crate::arch::{Active, Port};
use crate::config::{RUN_TIME_STATS, STACK_CHECK, TICK_HZ};
use crate::hooks;
use crate::list::Idx;
use crate::sched::{Kernel, TaskId};
use crate::stack;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

#[repr(transparent)]
pub(crate) struct Global(UnsafeCell<Kernel>);

// SAFETY: the kernel is only reached through `with`, which serialises access with a critical
// section that masks every context that can call the kernel.
unsafe impl Sync for Global {}

/// The kernel. Its address is the kernel state's: a port's hand-written switch path reads
/// it at the offsets of `sched::layout`.
pub(crate) static KERNEL: Global = Global(UnsafeCell::new(Kernel::new()));

/// CPU clock in hertz, set by [`set_clock`].
static CPU_HZ: AtomicU32 = AtomicU32::new(0);
/// Tick timer cycles per tick, set by [`set_clock`] (kept, not divided out at every switch).
static CYCLES_PER_TICK: AtomicU32 = AtomicU32::new(0);

/// Runs `f` on the kernel inside a critical section.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    crate::arch::critical(|| {
        // SAFETY: the critical section excludes every other context that could reach KERNEL,
        // and `with` is never re-entered from within `f` (kernel-wide rule, see module docs).
        f(unsafe { &mut *KERNEL.0.get() })
    })
}

/// Asks the port for a context switch, unless the scheduler is locked (then it happens when
/// the lock is released). One copy: every call site pays a call.
#[inline(never)]
pub(crate) fn request_switch(k: &mut Kernel) {
    request_switch_inline(k)
}

/// [`request_switch`] inlined, for the hot paths (a task resuming or suspending another).
#[inline(always)]
pub(crate) fn request_switch_inline(k: &mut Kernel) {
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

/// Records the clock the tick runs from (by `startup::start`, before the first task).
pub(crate) fn set_clock(cpu_hz: u32) {
    CPU_HZ.store(cpu_hz, Ordering::Relaxed);
    CYCLES_PER_TICK.store(cpu_hz / TICK_HZ, Ordering::Relaxed);
}

/// The tick interrupt's body; the port's tick handler calls it.
pub fn tick_from_isr() {
    with(|k| {
        let due = k.tick();
        switch_if(k, due);
    });
    hooks::run_tick();
}

/// The kernel, for the port's switch entries.
///
/// # Safety
/// Only from a context-switch entry, which runs with the kernel's interrupts masked and not
/// from inside [`with`], so the reference is the only live one.
#[inline(always)]
unsafe fn switching() -> &'static mut Kernel {
    // SAFETY: the caller's contract.
    unsafe { &mut *KERNEL.0.get() }
}

/// The outgoing half of every switch, fast part: saves the running task's stack pointer and
/// returns true when nothing more is due (its stack is intact and no run-time statistics are
/// kept), so that the common switch makes no call.
#[inline(always)]
fn switch_out(k: &mut Kernel, cur: Idx, sp: *mut u32) -> bool {
    let t = &mut k.tasks[cur];
    t.sp = sp;
    !RUN_TIME_STATS && (!STACK_CHECK || stack::intact(t.stack_floor, sp))
}

/// The rest of the outgoing half: reports a damaged stack, accounts CPU time.
#[inline(never)]
fn switch_out_more(k: &mut Kernel, cur: Idx) {
    if STACK_CHECK && !stack::intact(k.tasks[cur].stack_floor, k.tasks[cur].sp) {
        hooks::stack_overflow(TaskId::of(k, cur), k.tasks[cur].name);
    }
    if RUN_TIME_STATS {
        account(k, cur);
    }
}

/// Charges task `cur` with the cycles since the last switch.
#[inline(always)]
fn account(k: &mut Kernel, cur: Idx) {
    // A tick pending behind the mask can make the clock look one tick late: never let the
    // stamp go backwards.
    let now = uptime_cycles_locked(k);
    if now > k.last_switch_cycles {
        k.run_cycles[cur] += now - k.last_switch_cycles;
        k.last_switch_cycles = now;
    }
}

/// Run-time statistics for a port's hand-written switch path, which is switching away from
/// task `slot` (with the kernel's interrupts masked).
#[cfg(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
#[no_mangle]
pub extern "C" fn fqp_account_switch(slot: u32) {
    // SAFETY: as for `fqp_switch_context`.
    let k = unsafe { switching() };
    account(k, slot as Idx);
}

/// Called by the port's context-switch handler with interrupts masked up to the syscall
/// ceiling: saves the outgoing stack pointer, checks its stack, accounts its CPU time, and
/// returns the stack pointer of the task to run.
#[cfg_attr(all(target_arch = "arm", target_os = "none"), no_mangle)]
pub extern "C" fn fqp_switch_context(sp: *mut u32) -> *mut u32 {
    // SAFETY: the port calls this from its switch handler with the kernel's interrupts
    // masked and not from inside `with`.
    let k = unsafe { switching() };
    let cur = k.current;
    if !switch_out(k, cur, sp) {
        switch_out_more(k, cur);
    }
    let next = k.select();
    k.tasks[next].sp
}

/// The port's synchronous yield entry, called from a task through the port's trap with the
/// kernel's interrupts masked: the running task goes behind the other ready tasks of its
/// priority and the first of them runs (no switch when it is alone, or while the scheduler
/// is locked: then the switch is deferred to the unlock). Takes and returns stack pointers as
/// [`fqp_switch_context`] does.
#[cfg_attr(all(target_arch = "arm", target_os = "none"), no_mangle)]
pub extern "C" fn fqp_yield_context(sp: *mut u32) -> *mut u32 {
    // SAFETY: as for `fqp_switch_context`.
    let k = unsafe { switching() };
    if k.lock_depth > 0 {
        return yield_locked(k, sp);
    }
    let cur = k.current;
    let next = k.rotate_running();
    if next == cur {
        return sp;
    }
    // The next task of the running one's priority runs: nothing is above it (a task made
    // ready above it by an interrupt just now pends PendSV, which runs next and selects).
    if !switch_out(k, cur, sp) {
        return switch_to_after_more(k, cur, next);
    }
    k.current = next;
    k.tasks[next].sp
}

/// The end of a switch to `next` that has more to do on the way out of `cur` (kept out of
/// line so that the fast path calls nothing).
#[inline(never)]
fn switch_to_after_more(k: &mut Kernel, cur: Idx, next: Idx) -> *mut u32 {
    switch_out_more(k, cur);
    k.current = next;
    k.tasks[next].sp
}

/// Reports a damaged stack found by a port's hand-written switch path, which has switched
/// away from task `slot` (with the kernel's interrupts masked) and continues the switch after.
#[cfg(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
#[no_mangle]
pub extern "C" fn fqp_stack_overflowed(slot: u32) {
    // SAFETY: as for `fqp_switch_context`.
    let k = unsafe { switching() };
    let i = slot as Idx;
    hooks::stack_overflow(TaskId::of(k, i), k.tasks[i].name);
}

/// Called by a port whose hardware stops a task at its stack's limit (Armv8-M's PSPLIM),
/// from the fault handler, when the running task's stack hit it: the task is reported (the
/// stack-overflow hook) and suspended for good — the fault left no usable register frame, so
/// it cannot go on — a scheduler lock it held is released, and another task is switched to.
#[cfg(fqp_cpu = "armv8m_main")]
#[no_mangle]
pub extern "C" fn fqp_stack_limit_hit() {
    with(|k| {
        let cur = k.current;
        hooks::stack_overflow(TaskId::of(k, cur), k.tasks[cur].name);
        k.lock_depth = 0;
        k.switch_deferred = false;
        k.suspend(cur);
        Active::request_switch();
    })
}

/// The lowest address the running task's stack may reach (for a port that gives its stack
/// limit to the hardware when it starts the first task).
#[cfg(fqp_cpu = "armv8m_main")]
pub(crate) fn current_stack_floor() -> usize {
    with(|k| k.tasks[k.current].stack_floor as usize)
}

/// A yield while the scheduler is locked: the order changes now, the switch at the unlock.
#[cold]
#[inline(never)]
fn yield_locked(k: &mut Kernel, sp: *mut u32) -> *mut u32 {
    if k.yield_current() {
        k.switch_deferred = true;
    }
    sp
}

/// Cycles since the scheduler started, from the tick count and the tick timer.
#[inline]
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
