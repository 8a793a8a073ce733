//! The CPU port boundary.
//!
//! Everything the kernel needs from a CPU architecture is the [`Port`] trait: how to mask the
//! interrupts that may call the kernel, how to ask for a context switch, how to lay out a new
//! task's stack, how to start the first task, and how to run the tick. One implementation is
//! active per build ([`Active`]), chosen by target, so calls are static and free. A new CPU
//! family is supported by adding a module here; a *board* (UART, clocks, interrupts of a
//! particular chip) is not a CPU port and lives in the vendor's port crate instead.

// One port per Cortex-M architecture (chosen by build.rs from the target's name): Armv6-M
// has neither compare-and-swap nor BASEPRI; Armv8-M Mainline is Armv7-M's port with the
// non-secure side's exception returns and a hardware stack limit.
#[cfg(any(fqp_cpu = "armv6m", fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
mod scb;

#[cfg(fqp_cpu = "armv6m")]
mod armv6m;
#[cfg(fqp_cpu = "armv6m")]
pub use armv6m::{ArmV6M as Active, TEST_IRQ_PRIORITY};

#[cfg(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
mod armv7m;
#[cfg(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
pub use armv7m::ArmV7M as Active;
#[cfg(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main"))]
pub use armv7m::{MAX_SYSCALL_PRIORITY, TEST_IRQ_PRIORITY};

#[cfg(fqp_cpu = "none")]
compile_error!(
    "fqp-kernel has no CPU port for this target. Supported: thumbv6m-none-eabi (Cortex-M0, \
     M0+), thumbv7m-none-eabi (Cortex-M3), thumbv7em-none-eabi and thumbv7em-none-eabihf \
     (Cortex-M4, M4F, M7), thumbv8m.main-none-eabi (Cortex-M33, M35P, M55 without MVE; the \
     non-secure side). A new CPU needs a port: port-template/PORTING.md, \"A new CPU \
     architecture\"."
);

#[cfg(fqp_cpu = "host")]
mod host;
#[cfg(fqp_cpu = "host")]
pub use host::Host as Active;

/// True when the CPU port stops a task the moment its stack overflows (Armv8-M's stack
/// limit register), before it writes below its stack: the task is reported and suspended
/// for good. Otherwise the overflow is found at the task's next switch (the stack pointer
/// below the floor, or the guard words below it damaged) and reported then.
pub const STACK_LIMIT_IN_HARDWARE: bool = cfg!(fqp_cpu = "armv8m_main");

/// Runs `f` with every interrupt that may call the kernel masked (FreeRTOS's
/// `taskENTER_CRITICAL`/`taskEXIT_CRITICAL`): atomic against all tasks and those interrupts.
/// Nests; callable from tasks and interrupt handlers. Keep `f` short, and do not call the
/// kernel from it. On Armv6-M, which has no atomic read-modify-write instructions, this is how
/// a counter shared with an interrupt is incremented.
#[inline(always)]
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
