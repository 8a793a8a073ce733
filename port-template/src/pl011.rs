//! Arm PL011 UART driver (UART0 of the LM3S6965 at 0x4000_C000): polled transmit, interrupt
//! receive with the FIFOs off, so every received byte raises the interrupt.
//!
//! PORT: replace with your console UART's driver. What the port needs from it: a blocking
//! `write` that works in any context (faults included), and a receive interrupt that hands each
//! byte to `fqp_testkit::console::rx_byte`.

use core::ptr::{read_volatile, write_volatile};

pub struct Pl011 {
    base: usize,
}

const DR: usize = 0x000;
const FR: usize = 0x018;
const IBRD: usize = 0x024;
const FBRD: usize = 0x028;
const LCRH: usize = 0x02C;
const CTL: usize = 0x030;
const IM: usize = 0x038;
const ICR: usize = 0x044;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const LCRH_WLEN8: u32 = 0b11 << 5;
const CTL_UARTEN: u32 = 1 << 0;
const CTL_TXE: u32 = 1 << 8;
const CTL_RXE: u32 = 1 << 9;
const INT_RX: u32 = 1 << 4;

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011 that nothing else drives.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn reg(&self, off: usize) -> *mut u32 {
        (self.base + off) as *mut u32
    }

    /// 8N1 at `baud` from `clock_hz`, FIFOs off, receive interrupt on. Bytes that arrived
    /// before this (the host may already be talking) are discarded: one left in the receiver
    /// with its interrupt cleared would block reception for good.
    pub fn init(&self, clock_hz: u32, baud: u32) {
        // Baud divisor in 1/64ths: IBRD.FBRD = clock / (16 × baud).
        let div64 = (clock_hz as u64 * 4 / baud as u64) as u32;
        // SAFETY: registers of the UART this driver owns (constructor contract).
        unsafe {
            write_volatile(self.reg(CTL), 0);
            write_volatile(self.reg(IBRD), div64 >> 6);
            write_volatile(self.reg(FBRD), div64 & 63);
            write_volatile(self.reg(LCRH), LCRH_WLEN8);
            write_volatile(self.reg(ICR), 0x7FF);
            write_volatile(self.reg(IM), INT_RX);
            write_volatile(self.reg(CTL), CTL_UARTEN | CTL_TXE | CTL_RXE);
        }
        self.on_rx_interrupt(|_| {});
    }

    pub fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as in `init`.
            unsafe {
                while read_volatile(self.reg(FR)) & FR_TXFF != 0 {}
                write_volatile(self.reg(DR), b as u32);
            }
        }
    }

    /// Receive interrupt body. Reading the data register clears the interrupt once the
    /// receiver is empty, so draining it is the acknowledgement.
    pub fn on_rx_interrupt(&self, mut sink: impl FnMut(u8)) {
        // SAFETY: as in `init`.
        unsafe {
            while read_volatile(self.reg(FR)) & FR_RXFE == 0 {
                sink(read_volatile(self.reg(DR)) as u8);
            }
        }
    }
}
