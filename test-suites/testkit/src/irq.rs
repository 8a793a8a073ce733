//! Software-triggered test interrupts: tests install a handler, pend the interrupt through the
//! board, and the port's vector calls [`dispatch`]. This drives the kernel's interrupt-side
//! API from a real exception, with a real interrupt frame and priority.

use core::sync::atomic::{AtomicUsize, Ordering};

const MAX: usize = 4;
static HANDLERS: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];
static COUNTS: [AtomicUsize; MAX] = [const { AtomicUsize::new(0) }; MAX];

/// Installs (or removes) the handler of test interrupt `n`.
pub fn set_handler(n: usize, f: Option<fn()>) {
    HANDLERS[n].store(f.map_or(0, |f| f as usize), Ordering::Release);
}

/// Pends test interrupt `n`; with interrupts enabled it runs before this returns.
pub fn trigger(n: usize) {
    crate::board::board().pend_test_irq(n);
}

/// How many times interrupt `n` has been taken.
pub fn count(n: usize) -> usize {
    COUNTS[n].load(Ordering::Acquire)
}

/// Called by the port's interrupt vector for test interrupt `n`.
pub fn dispatch(n: usize) {
    if n >= MAX {
        return;
    }
    // Only this interrupt's handler counts it, and it does not preempt itself: a load and a
    // store suffice (an atomic read-modify-write is a retry loop on this core).
    COUNTS[n].store(COUNTS[n].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    // The handler was stored by the task that then pended this interrupt, on this core.
    let f = HANDLERS[n].load(Ordering::Relaxed);
    if f != 0 {
        // SAFETY: the slot holds 0 or a `fn()` stored by `set_handler`.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
        f();
    }
}

/// Removes every handler (between tests).
pub(crate) fn clear() {
    for h in &HANDLERS {
        h.store(0, Ordering::Release);
    }
}
