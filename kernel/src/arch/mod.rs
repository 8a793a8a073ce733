//! The CPU port boundary.
//!
//! Everything the kernel needs from a CPU architecture is the [`Port`] trait: how to mask the
//! interrupts that may call the kernel, how to ask for a context switch, how to lay out a new
//! task's stack, how to start the first task, and how to run the tick. One implementation is
//! active per build ([`Active`]), chosen by target, so calls are static and free. A new CPU
//! family is supported by adding a module here; a *board* (UART, clocks, interrupts of a
//! particular chip) is not a CPU port and lives in the vendor's port crate instead.

// Armv7-M and Armv7E-M have compare-and-swap; Armv6-M (Cortex-M0/M0+) has not, nor BASEPRI:
// it needs a CPU port of its own.
#[cfg(all(target_arch = "arm", target_os = "none", not(target_has_atomic = "32")))]
compile_error!(
    "fqp-kernel has no CPU port for this core (an Armv6-M target, Cortex-M0/M0+?). Supported: \
     thumbv7m-none-eabi (Cortex-M3), thumbv7em-none-eabi and thumbv7em-none-eabihf (Cortex-M4, \
     M4F, M7). A new core needs a CPU port: port-template/PORTING.md, \"A new CPU architecture\"."
);

#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
mod armv7m;
#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
pub use armv7m::ArmV7M as Active;
#[cfg(all(target_arch = "arm", target_os = "none", target_has_atomic = "32"))]
pub use armv7m::{MAX_SYSCALL_PRIORITY, TEST_IRQ_PRIORITY};

#[cfg(not(all(target_arch = "arm", target_os = "none")))]
mod host;
#[cfg(not(all(target_arch = "arm", target_os = "none")))]
pub use host::Host as Active;

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
