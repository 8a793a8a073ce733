//! CMSDK APB UART driver (the console, UART0 of the MPS2 boards): polled transmit, interrupt
//! receive.

use core::ptr::{read_volatile, write_volatile};

/// One CMSDK UART.
pub struct Uart {
    base: usize,
}

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTCLEAR: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

impl Uart {
    /// # Safety
    /// `base` must be the address of a CMSDK UART that nothing else drives.
    pub const unsafe fn new(base: usize) -> Self {
        Uart { base }
    }

    fn reg(&self, off: usize) -> *mut u32 {
        (self.base + off) as *mut u32
    }

    /// Enables transmit and receive, with the receive interrupt, at `baud` from `clock_hz`.
    /// A byte that arrived before (the host may already be talking) is discarded: it would sit
    /// in the receive buffer without an interrupt and block reception for good.
    pub fn init(&self, clock_hz: u32, baud: u32) {
        // SAFETY: registers of the UART this driver owns (constructor contract).
        unsafe {
            write_volatile(self.reg(BAUDDIV), (clock_hz / baud).max(16));
            write_volatile(self.reg(CTRL), CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
        }
        self.on_rx_interrupt(|_| {});
    }

    /// Sends `bytes`, waiting for room in the transmit buffer.
    pub fn write(&self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as in `init`.
            unsafe {
                while read_volatile(self.reg(STATE)) & STATE_TX_FULL != 0 {}
                write_volatile(self.reg(DATA), b as u32);
            }
        }
    }

    /// Receive interrupt body: acknowledges, then hands every waiting byte to `sink`.
    ///
    /// Acknowledging first matters: a byte arriving after the last read raises the interrupt
    /// again. Acknowledging last would clear that byte's interrupt while it sits unread in
    /// the one-byte receive buffer, and reception would stop for good.
    pub fn on_rx_interrupt(&self, mut sink: impl FnMut(u8)) {
        // SAFETY: as in `init`.
        unsafe {
            write_volatile(self.reg(INTCLEAR), INT_RX);
            while read_volatile(self.reg(STATE)) & STATE_RX_FULL != 0 {
                sink(read_volatile(self.reg(DATA)) as u8);
            }
        }
    }
}
