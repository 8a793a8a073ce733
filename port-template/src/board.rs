//! The board support the qualification runner drives: console, test interrupts, heap
//! statistics, reset and exit (`fqp_port::Board`, the one trait a port implements). This file and `pl011.rs` are what a port mostly rewrites.

use crate::pl011::Pl011;
use cortex_m::peripheral::NVIC;
use fqp_kernel::heap::FirstFit;
use fqp_port::{Board, HeapStats};

/// PORT: the clock that drives SysTick (the core clock), in hertz.
pub const CPU_HZ: u32 = 12_000_000;
/// PORT: the console UART's interrupt line.
const UART0_IRQ: u16 = 5;
/// PORT: two interrupt lines no peripheral of yours drives, pended by software in the tests.
const TEST_IRQS: [u16; 2] = [46, 47];

// SAFETY: 0x4000_C000 is UART0 of the LM3S6965 and only this driver touches it.
pub static CONSOLE: Pl011 = unsafe { Pl011::new(0x4000_C000) };

#[global_allocator]
pub static HEAP: FirstFit = FirstFit::new();

pub struct Lm3s6965;

impl Board for Lm3s6965 {
    fn name(&self) -> &'static str {
        "lm3s6965"
    }

    fn write(&self, bytes: &[u8]) {
        CONSOLE.write(bytes);
    }

    fn test_irqs(&self) -> usize {
        TEST_IRQS.len()
    }

    fn pend_test_irq(&self, n: usize) {
        fqp_port_cortex_m::nvic::pend(TEST_IRQS[n]);
    }

    fn heap_stats(&self) -> Option<HeapStats> {
        Some(HEAP.stats())
    }

    fn reset(&self) -> ! {
        fqp_port_cortex_m::reset()
    }

    fn exit(&self, code: i32) -> ! {
        // Under an emulator semihosting ends the run; on a board this resets.
        fqp_port_cortex_m::exit(code)
    }

    #[cfg(feature = "net")]
    fn ethernet(&self) -> Option<&dyn fqp_port::Ethernet> {
        crate::ethernet::ETHERNET.device()
    }

    /// PORT: the keystore in the board's flash. Until then, a file on the host through
    /// semihosting (`fqp` names it), which works under an emulator or a debugger only.
    #[cfg(feature = "storage")]
    fn storage(&self) -> Option<&dyn fqp_port::Storage> {
        fqp_port_cortex_m::semihosting::HostFile::get().map(|f| f as &dyn fqp_port::Storage)
    }

    // PORT: a board with a TRNG overrides `entropy` (without one, the host provisions the
    // keystore's seed).
}

/// Sets the kernel-aware interrupts below the kernel's syscall ceiling and enables them.
pub fn enable_interrupts(nvic: &mut NVIC) {
    fqp_port_cortex_m::nvic::enable_kernel_aware(nvic, &[UART0_IRQ, TEST_IRQS[0], TEST_IRQS[1]]);
}

unsafe extern "C" fn uart0() {
    CONSOLE.on_rx_interrupt(fqp_testkit::console::rx_byte);
}

unsafe extern "C" fn test_irq0() {
    fqp_testkit::irq::dispatch(0);
}

unsafe extern "C" fn test_irq1() {
    fqp_testkit::irq::dispatch(1);
}

extern "C" {
    fn DefaultHandler();
}

/// PORT: your chip's interrupt vector table (here the LM3S6965's 64 lines).
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 64] = {
    let mut v: [unsafe extern "C" fn(); 64] = [DefaultHandler; 64];
    v[UART0_IRQ as usize] = uart0;
    v[TEST_IRQS[0] as usize] = test_irq0;
    v[TEST_IRQS[1] as usize] = test_irq1;
    v
};
