//! # fqp-port-cortex-m: the Cortex-M half of a board
//!
//! What every Cortex-M port's `fqp_port::Board` would otherwise repeat, kept once:
//! resetting the core, ending an emulated run, the test interrupt lines on the NVIC, and
//! semihosting (the command line, storage and flash in host files), the free RAM a heap gets,
//! and the boot loader's hand-over to a RAM-loaded image (`boot`). A port keeps only the facts of its board (which lines, which UART).
//! Fault and panic reporting is the test kit's (`fqp-testkit`, feature `cortex-m`).

#![no_std]

pub mod boot;
pub mod nvic;
pub mod ram;
pub mod semihosting;

/// Resets the core and its peripherals (the System Control Block's request).
pub fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

/// Ends an emulated run through semihosting with `code`; on hardware (no debugger to take
/// the call) it resets the board instead.
pub fn exit(code: i32) -> ! {
    use cortex_m_semihosting::debug;
    debug::exit(if code == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    reset()
}
