//! Application hooks: idle, tick, stack overflow and allocation failure.
//!
//! Hooks are plain functions registered at run time (FreeRTOS links them by name instead).
//! The idle hook runs in the idle task and must not block; the tick hook runs in the tick
//! interrupt; the stack-overflow hook runs in the context-switch handler with the kernel's
//! interrupts masked, so it may only record and report (the default stops the system).

use crate::sched::TaskId;
use core::sync::atomic::{AtomicUsize, Ordering};

static IDLE: AtomicUsize = AtomicUsize::new(0);
static TICK: AtomicUsize = AtomicUsize::new(0);
static STACK_OVERFLOW: AtomicUsize = AtomicUsize::new(0);
static ALLOC_FAILED: AtomicUsize = AtomicUsize::new(0);

/// Called by the context switch when a task's stack guard is damaged.
pub type StackOverflowHook = fn(TaskId, &'static str);

fn set(slot: &AtomicUsize, f: Option<usize>) {
    slot.store(f.unwrap_or(0), Ordering::Release);
}

fn get(slot: &AtomicUsize) -> usize {
    slot.load(Ordering::Acquire)
}

/// Sets (or clears) the idle hook.
pub fn set_idle_hook(f: Option<fn()>) {
    set(&IDLE, f.map(|f| f as usize));
}

/// Sets (or clears) the tick hook.
pub fn set_tick_hook(f: Option<fn()>) {
    set(&TICK, f.map(|f| f as usize));
}

/// Sets (or clears) the stack-overflow hook. Without one, an overflow panics.
pub fn set_stack_overflow_hook(f: Option<StackOverflowHook>) {
    set(&STACK_OVERFLOW, f.map(|f| f as usize));
}

/// Sets (or clears) the hook called when a kernel allocation fails.
pub fn set_alloc_failed_hook(f: Option<fn(usize)>) {
    set(&ALLOC_FAILED, f.map(|f| f as usize));
}

fn call0(slot: &AtomicUsize) {
    let f = get(slot);
    if f != 0 {
        // SAFETY: the slot holds 0 or a `fn()` stored by the matching setter.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
        f();
    }
}

pub(crate) fn run_idle() {
    call0(&IDLE);
}

pub(crate) fn run_tick() {
    call0(&TICK);
}

pub(crate) fn stack_overflow(task: TaskId, name: &'static str) {
    let f = get(&STACK_OVERFLOW);
    if f == 0 {
        panic!("stack overflow in task {name}");
    }
    // SAFETY: the slot holds a `StackOverflowHook` stored by its setter.
    let f: StackOverflowHook = unsafe { core::mem::transmute::<usize, StackOverflowHook>(f) };
    f(task, name);
}

/// Reports a failed allocation of `size` bytes to the hook, if any.
pub fn alloc_failed(size: usize) {
    let f = get(&ALLOC_FAILED);
    if f != 0 {
        // SAFETY: the slot holds a `fn(usize)` stored by its setter.
        let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(size);
    }
}
