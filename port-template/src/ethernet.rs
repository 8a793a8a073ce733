//! PORT: the board's Ethernet controller, for fqp-net (TCP/IP) and the network, MQTT and TLS
//! groups. Start it in `init` (reset, the MAC address, transmit and receive on, the receive
//! interrupt enabled, its vector in `board.rs` calling `fqp_net::on_interrupt`), move frames
//! in `send` and `receive`. Until `init` has started a controller, the board offers no
//! Ethernet device, and `fqp` stops the run at start-up naming `Board::ethernet`: this file
//! is the outline of the driver, not a driver. `reference-port/src/lan9118.rs` is a complete
//! one (the SMSC LAN9118 of the MPS2 boards).

use core::sync::atomic::{AtomicBool, Ordering};
use fqp_port::Ethernet;

/// The board's Ethernet controller.
pub static ETHERNET: Controller = Controller {
    up: AtomicBool::new(false),
};

pub struct Controller {
    up: AtomicBool,
}

impl Controller {
    /// Starts the controller (in `main`, before the test runner); the device is offered from
    /// then on.
    pub fn init(&self) {
        // PORT: reset the controller and wait for it, program `self.mac()`, turn transmit,
        // receive and the receive interrupt on; then say it started.
        let started = false;
        self.up.store(started, Ordering::Release);
    }

    /// The device, once started.
    pub fn device(&'static self) -> Option<&'static dyn Ethernet> {
        self.up
            .load(Ordering::Acquire)
            .then_some(self as &dyn Ethernet)
    }
}

impl Ethernet for Controller {
    fn mac(&self) -> [u8; 6] {
        // PORT: the board's MAC address (its OTP or EEPROM); this one is locally administered.
        [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]
    }

    fn send(&self, _frame: &[u8]) -> bool {
        // PORT: copy the frame into the transmit buffer and start it; false while busy.
        false
    }

    fn receive(&self, _buf: &mut [u8]) -> Option<usize> {
        // PORT: copy the oldest received frame into `buf` and give its length; None if none.
        None
    }
}
