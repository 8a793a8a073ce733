//! The AN385 interrupt vector table (external interrupts 0–31) and the NVIC set-up.
//!
//! Used lines: UART0 receive (IRQ 0), and IRQ 30–31, which no AN385 device drives, as the
//! software-triggered test interrupts of the qualification suites.

use cortex_m::peripheral::NVIC;

/// UART0 receive interrupt line.
pub const UART0_RX_IRQ: u16 = 0;
/// Test interrupt lines (pended by software only).
pub const TEST_IRQS: [u16; 2] = [30, 31];

#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Irq(u16);

// SAFETY: `Irq` values are valid AN385 interrupt numbers (below 32).
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// A vector table entry.
pub type Vector = unsafe extern "C" fn();

extern "C" {
    fn DefaultHandler();
}

unsafe extern "C" fn uart0_rx() {
    crate::console_uart().on_rx_interrupt(fqp_testkit::console::rx_byte);
}

unsafe extern "C" fn test_irq0() {
    fqp_testkit::irq::dispatch(0);
}

unsafe extern "C" fn test_irq1() {
    fqp_testkit::irq::dispatch(1);
}

/// External interrupt vectors, placed after the core exceptions by cortex-m-rt's link.x.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [Vector; 32] = {
    let mut v: [Vector; 32] = [DefaultHandler; 32];
    v[UART0_RX_IRQ as usize] = uart0_rx;
    v[TEST_IRQS[0] as usize] = test_irq0;
    v[TEST_IRQS[1] as usize] = test_irq1;
    v
};

/// Gives the kernel-aware interrupts a priority below the kernel's syscall ceiling and
/// enables them.
pub fn enable(nvic: &mut NVIC) {
    for irq in [UART0_RX_IRQ, TEST_IRQS[0], TEST_IRQS[1]] {
        // SAFETY: priorities at or below the syscall ceiling keep every kernel critical
        // section effective; unmasking these handlers breaks no critical section because
        // none is open during start-up.
        unsafe {
            nvic.set_priority(Irq(irq), fqp_kernel::arch::TEST_IRQ_PRIORITY);
            NVIC::unmask(Irq(irq));
        }
    }
}

/// Pends a line.
pub fn pend(irq: u16) {
    NVIC::pend(Irq(irq));
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}
