//! The CPU port boundary.
//!
//! Everything the kernel needs from a CPU architecture is the [`Port`] trait: how to mask the
//! interrupts that may call the kernel, how to ask for a context switch, how to lay out a new
//! task's stack, how to start the first task, and how to run the tick. One implementation is
//! active per build ([`Active`]), chosen by target, so calls are static and free. A new CPU
//! family is supported by adding a module here; a *board* (UART, clocks, interrupts of a
//! particular chip) is not a CPU port and lives in the vendor's port crate instead.

// One port per Cortex-M architecture: Armv6-M has neither compare-and-swap nor BASEPRI.
#[cfg(all(target_arch = "arm", target_os = "none"))]
mod scb;

#[cfg(all(target_arch = "arm", target_os = "none", not(target_has_atomic = "32")))]
mod armv6m;
#[cfg(all(target_arch = "arm", target_os = "none", not(target_has_atomic = "32")))]
pub use armv6m::{ArmV6M as Active, TEST_IRQ_PRIORITY};

#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
mod armv7m;
#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
pub use armv7m::ArmV7M as Active;
#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
pub use armv7m::{MAX_SYSCALL_PRIORITY, TEST_IRQ_PRIORITY};

// Any other bare-metal target has no CPU port.
#[cfg(all(target_os = "none", not(target_arch = "arm")))]
compile_error!(
    "fqp-kernel has no CPU port for this target. Supported: thumbv6m-none-eabi (Cortex-M0, \
     M0+), thumbv7m-none-eabi (Cortex-M3), thumbv7em-none-eabi and thumbv7em-none-eabihf \
     (Cortex-M4, M4F, M7). A new CPU needs a port: port-template/PORTING.md, \"A new CPU \
     architecture\"."
);

#[cfg(not(target_os = "none"))]
mod host;
#[cfg(not(target_os = "none"))]
pub use host::Host as Active;

/// Runs `f` with every interrupt that may call the kernel masked (FreeRTOS's
/// `taskENTER_CRITICAL`/`taskEXIT_CRITICAL`): atomic against all tasks and those interrupts.
/// Nests; callable from tasks and interrupt handlers. Keep `f` short, and do not call the
/// kernel from it. On Armv6-M, which has no atomic read-modify-write instructions, this is how
/// a counter shared with an interrupt is incremented.
pub fn critical<R>(f: impl FnOnce() -> R) -> R {
    let mask = Active::enter_critical();
    let r = f();
    // SAFETY: the mask of the critical section entered above, the innermost one still open.
    unsafe { Active::exit_critical(mask) };
    r
}

/// Sets `flag` and returns what it held, atomically against every task and every interrupt
/// that may call the kernel: a swap where the core has one, a critical section where it has
/// not (Armv6-M).
pub(crate) fn test_and_set(flag: &core::sync::atomic::AtomicBool) -> bool {
    use core::sync::atomic::Ordering;
    #[cfg(target_has_atomic = "8")]
    {
        flag.swap(true, Ordering::AcqRel)
    }
    #[cfg(not(target_has_atomic = "8"))]
    {
        critical(|| {
            let was = flag.load(Ordering::Acquire);
            flag.store(true, Ordering::Release);
            was
        })
    }
}

/// A task's entry as the port sees it: called once with the two arguments given at creation.
pub type RawEntry = extern "C" fn(usize, usize) -> !;

/// What a CPU port provides to the kernel.
pub trait Port {
    /// The interrupt mask that [`Port::enter_critical`] replaced, restored on exit.
    type Mask: Copy;

    /// Masks every interrupt that may call the kernel (on Cortex-M: raises BASEPRI to the
    /// maximum syscall priority) and returns the previous mask. Nests: the inner exit restores
    /// the inner entry's state. Callable from tasks and from interrupt handlers.
    fn enter_critical() -> Self::Mask;

    /// Restores the mask returned by the matching [`Port::enter_critical`].
    ///
    /// # Safety
    /// `mask` must come from the innermost critical section still open on this context.
    unsafe fn exit_critical(mask: Self::Mask);

    /// Asks for a context switch as soon as no critical section and no interrupt is active.
    fn request_switch();

    /// If the caller is a task (not an interrupt handler, not start-up code), yields at once
    /// through the port's synchronous switch entry, which calls [`crate::fqp_yield_context`]
    /// with the kernel's interrupts masked, and returns true. Otherwise returns false: the
    /// kernel then yields through [`Port::request_switch`].
    fn yield_task() -> bool;

    /// True when running in an interrupt (exception) handler.
    fn in_isr() -> bool;

    /// Writes the initial register frame of a task at the top of `stack` so that the first
    /// switch to it calls `entry(args.0, args.1)`, and returns the task's initial stack
    /// pointer.
    ///
    /// # Safety
    /// `stack` must be exclusively owned by the new task for its whole life.
    unsafe fn init_stack(stack: &mut [u32], entry: RawEntry, args: (usize, usize)) -> *mut u32;

    /// Starts the tick interrupt and switches to the first task, whose stack pointer is `sp`.
    /// The kernel's state must be ready to take ticks and context switches.
    ///
    /// # Safety
    /// Called once, from the start-up context, with `sp` from [`Port::init_stack`].
    unsafe fn start_first_task(sp: *mut u32, cpu_hz: u32, tick_hz: u32) -> !;

    /// CPU cycles elapsed since the start of the current tick period.
    fn cycles_into_tick() -> u32;

    /// Sleeps until an interrupt (used by the idle task).
    fn wait_for_interrupt();
}
