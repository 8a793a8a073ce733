//! The facts of the board the image is built for: clock, addresses, interrupt lines. One crate
//! serves the MPS2 family: the AN385 (Cortex-M3) and AN386 (Cortex-M4F) by default, which
//! share a memory map, and the AN505 (Cortex-M33, the non-secure side) with feature
//! `mps2-an505`, whose peripherals are the same devices at other addresses and lines.

#[cfg(not(feature = "mps2-an505"))]
mod facts {
    /// Processor (and SysTick) clock.
    pub const CPU_HZ: u32 = 25_000_000;
    /// The console: CMSDK UART0.
    pub const UART0: usize = 0x4000_4000;
    /// The LAN9118 Ethernet controller.
    pub const ETH: usize = 0x4020_0000;
    /// UART0's receive interrupt line.
    pub const UART0_RX_IRQ: u16 = 0;
    /// The Ethernet controller's interrupt line.
    pub const ETH_IRQ: u16 = 13;
    /// Lines no device drives: the software-triggered test interrupts.
    pub const TEST_IRQS: [u16; 2] = [30, 31];
    /// External interrupt lines of the NVIC.
    pub const IRQ_LINES: usize = 32;
}

#[cfg(feature = "mps2-an505")]
mod facts {
    // The expansion's devices reach the NVIC at line 32 and up (the SSE's own take 0–31);
    // addresses are the non-secure aliases, which the secure boot stage opened
    // (`secure_boot.rs`).
    pub const CPU_HZ: u32 = 20_000_000;
    pub const UART0: usize = 0x4020_0000;
    pub const ETH: usize = 0x4200_0000;
    pub const UART0_RX_IRQ: u16 = 32;
    pub const ETH_IRQ: u16 = 48;
    pub const TEST_IRQS: [u16; 2] = [120, 121];
    pub const IRQ_LINES: usize = 124;
}

pub use facts::*;
