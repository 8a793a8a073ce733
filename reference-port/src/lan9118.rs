//! SMSC LAN9118 Ethernet controller driver (the AN385's Ethernet at 0x4020_0000, IRQ 13;
//! QEMU: `-nic user,model=lan9118`), in 32-bit mode. Frames go through the controller's
//! FIFOs by programmed I/O: a transmit command pair then the frame's words; a receive
//! status word then the frame's words (with the FCS, which is dropped).

use core::ptr::{read_volatile, write_volatile};

const RX_DATA: usize = 0x00;
const TX_DATA: usize = 0x20;
const RX_STATUS: usize = 0x40;
const TX_STATUS: usize = 0x48;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const BYTE_TEST: usize = 0x64;
const RX_CFG: usize = 0x6C;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_DP_CTRL: usize = 0x78;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;

const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
/// Interrupt output enabled, active high, push-pull (what the NVIC line expects).
const IRQ_ENABLE_HIGH: u32 = (1 << 8) | (1 << 4) | 1;
/// Receive status FIFO level reached: a frame is waiting.
const INT_RSFL: u32 = 1 << 3;
const TX_ON: u32 = 1 << 1;
const HW_SRST: u32 = 1;
const RX_FFWD: u32 = 1 << 31;
const TX_FIRST: u32 = 1 << 13;
const TX_LAST: u32 = 1 << 12;
/// Receive status: error summary.
const RX_ERROR: u32 = 1 << 15;

pub struct Lan9118 {
    base: usize,
}

impl Lan9118 {
    /// # Safety
    /// `base` must be the address of a LAN9118 that nothing else drives.
    pub const unsafe fn new(base: usize) -> Self {
        Lan9118 { base }
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: a register of the controller this driver owns (constructor contract).
        unsafe { read_volatile((self.base + off) as *const u32) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { write_volatile((self.base + off) as *mut u32, v) }
    }

    fn mac_csr(&self, cmd: u32) {
        self.write(MAC_CSR_CMD, CSR_BUSY | cmd);
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
    }

    fn mac_read(&self, reg: u32) -> u32 {
        self.mac_csr(CSR_READ | reg);
        self.read(MAC_CSR_DATA)
    }

    fn mac_write(&self, reg: u32, v: u32) {
        self.write(MAC_CSR_DATA, v);
        self.mac_csr(reg);
    }

    /// Resets the controller and enables transmit, receive and the receive interrupt.
    /// False when no LAN9118 answers at the address.
    pub fn init(&self) -> bool {
        if self.read(BYTE_TEST) != 0x8765_4321 {
            return false;
        }
        self.write(HW_CFG, HW_SRST);
        while self.read(HW_CFG) & HW_SRST != 0 {}
        // Exact address match and broadcast (DHCP); not promiscuous.
        self.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
        self.write(TX_CFG, TX_ON);
        self.write(RX_CFG, 0);
        self.write(IRQ_CFG, IRQ_ENABLE_HIGH);
        self.write(INT_STS, u32::MAX);
        self.write(INT_EN, INT_RSFL);
        true
    }

    /// Interrupt body: acknowledges the controller's interrupt (frames stay in the FIFO for
    /// the network task).
    pub fn acknowledge(&self) {
        self.write(INT_STS, self.read(INT_STS));
    }
}

impl fqp_port::Ethernet for Lan9118 {
    fn mac(&self) -> [u8; 6] {
        let lo = self.mac_read(MAC_ADDRL).to_le_bytes();
        let hi = self.mac_read(MAC_ADDRH).to_le_bytes();
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]
    }

    fn send(&self, frame: &[u8]) -> bool {
        // Transmit statuses are not used: drain them so their FIFO never fills.
        while (self.read(TX_FIFO_INF) >> 16) & 0xFF != 0 {
            let _ = self.read(TX_STATUS);
        }
        let free = (self.read(TX_FIFO_INF) & 0xFFFF) as usize;
        if free < frame.len() + 8 + 4 {
            return false;
        }
        let len = frame.len() as u32;
        self.write(TX_DATA, TX_FIRST | TX_LAST | len);
        self.write(TX_DATA, len);
        for chunk in frame.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write(TX_DATA, u32::from_le_bytes(w));
        }
        true
    }

    fn receive(&self, buf: &mut [u8]) -> Option<usize> {
        if (self.read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
            return None;
        }
        let status = self.read(RX_STATUS);
        let len = ((status >> 16) & 0x3FFF) as usize;
        let frame = len.saturating_sub(4);
        if status & RX_ERROR != 0 || frame > buf.len() || frame < 14 {
            // Skip it (fast-forward when it is long, else read it out).
            if len >= 16 {
                self.write(RX_DP_CTRL, RX_FFWD);
            } else {
                for _ in 0..len.div_ceil(4) {
                    let _ = self.read(RX_DATA);
                }
            }
            return None;
        }
        for i in 0..len.div_ceil(4) {
            let w = self.read(RX_DATA).to_le_bytes();
            for (k, b) in w.iter().enumerate() {
                if let Some(slot) = buf.get_mut(i * 4 + k).filter(|_| i * 4 + k < frame) {
                    *slot = *b;
                }
            }
        }
        Some(frame)
    }
}
