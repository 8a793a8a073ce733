//! Interrupt lines of the NVIC, as the qualification image uses them: the test interrupts
//! and the devices' interrupts that call the kernel.

use cortex_m::peripheral::NVIC;

/// An external interrupt line (0–495).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq(u16);

impl Irq {
    pub const fn new(line: u16) -> Irq {
        assert!(line < 496, "Armv7-M has at most 496 external interrupts");
        Irq(line)
    }
}

// SAFETY: `Irq::new` only makes line numbers the architecture defines.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Gives `lines` a priority the kernel's critical sections mask (so their handlers may call
/// the kernel) and enables them. Call during start-up, before the scheduler runs.
pub fn enable_kernel_aware(nvic: &mut NVIC, lines: &[u16]) {
    for &line in lines {
        // SAFETY: at this priority every kernel critical section masks the handler; no
        // critical section is open during start-up, so unmasking breaks none.
        unsafe {
            nvic.set_priority(Irq::new(line), fqp_kernel::arch::TEST_IRQ_PRIORITY);
            NVIC::unmask(Irq::new(line));
        }
    }
}

/// Pends `line`; with interrupts enabled its handler runs before this returns.
pub fn pend(line: u16) {
    NVIC::pend(Irq::new(line));
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}
