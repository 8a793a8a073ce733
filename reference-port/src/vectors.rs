//! The interrupt vector table (the board's external interrupts) and which lines are enabled:
//! UART0 receive, Ethernet, and two lines no device drives, the software-triggered test
//! interrupts of the qualification suites (`board.rs` says which).

use cortex_m::peripheral::NVIC;

use crate::board::IRQ_LINES;
pub use crate::board::{ETH_IRQ, TEST_IRQS, UART0_RX_IRQ};

/// A vector table entry.
pub type Vector = unsafe extern "C" fn();

extern "C" {
    fn DefaultHandler();
}

unsafe extern "C" fn uart0_rx() {
    crate::UART0.on_rx_interrupt(fqp_testkit::console::rx_byte);
}

unsafe extern "C" fn eth() {
    crate::ETH.acknowledge();
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
pub static __INTERRUPTS: [Vector; IRQ_LINES] = {
    let mut v: [Vector; IRQ_LINES] = [DefaultHandler; IRQ_LINES];
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
