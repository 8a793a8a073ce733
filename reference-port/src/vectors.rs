//! The AN385 interrupt vector table (external interrupts 0–31) and which lines are enabled.
//!
//! Used lines: UART0 receive (IRQ 0), Ethernet (IRQ 13), and IRQ 30–31, which no AN385 device drives, as the
//! software-triggered test interrupts of the qualification suites.

use cortex_m::peripheral::NVIC;

/// UART0 receive interrupt line.
pub const UART0_RX_IRQ: u16 = 0;
/// Ethernet (LAN9118) interrupt line.
pub const ETH_IRQ: u16 = 13;
/// Test interrupt lines (pended by software only).
pub const TEST_IRQS: [u16; 2] = [30, 31];

/// A vector table entry.
pub type Vector = unsafe extern "C" fn();

extern "C" {
    fn DefaultHandler();
}

unsafe extern "C" fn uart0_rx() {
    crate::console_uart().on_rx_interrupt(fqp_testkit::console::rx_byte);
}

unsafe extern "C" fn eth() {
    crate::ethernet().acknowledge();
    fqp_net::on_interrupt();
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
    v[ETH_IRQ as usize] = eth;
    v[TEST_IRQS[0] as usize] = test_irq0;
    v[TEST_IRQS[1] as usize] = test_irq1;
    v
};

/// Gives the kernel-aware interrupts a priority below the kernel's syscall ceiling and
/// enables them.
pub fn enable(nvic: &mut NVIC) {
    fqp_port_cortex_m::nvic::enable_kernel_aware(
        nvic,
        &[UART0_RX_IRQ, ETH_IRQ, TEST_IRQS[0], TEST_IRQS[1]],
    );
}
