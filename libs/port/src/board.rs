//! The board: what every port implements.

use crate::{Entropy, Ethernet, Flash, Storage};
use fqp_kernel::heap::HeapStats;

/// An optional device a board may provide, as the harness names it (`devices=` in the
/// device's `READY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Ethernet,
    Entropy,
    Storage,
    Flash,
}

impl Device {
    /// Every optional device, in the order `READY` lists them.
    pub const ALL: [Device; 4] = [
        Device::Ethernet,
        Device::Entropy,
        Device::Storage,
        Device::Flash,
    ];

    /// The name on the wire and in the harness's messages.
    pub fn name(self) -> &'static str {
        match self {
            Device::Ethernet => "ethernet",
            Device::Entropy => "entropy",
            Device::Storage => "storage",
            Device::Flash => "flash",
        }
    }
}

/// The board a port runs on.
///
/// # Implementing this
/// - `write` is polled and must work from any context, a fault handler included, before
///   and without the kernel: write to the UART's data register, waiting for room. The
///   console's receive side is an interrupt: the port's UART handler passes each byte to
///   `fqp_testkit::console::rx_byte` (`fqp-testkit`, the test runner).
/// - The test interrupts are two (or more) interrupt lines nothing else drives, enabled at a
///   priority that may call the kernel; their handlers call `fqp_testkit::irq::dispatch(n)`.
///   On Cortex-M, `fqp-port-cortex-m` pends and enables them, and resets and exits.
/// - `heap_stats`: `Some` when the image has a heap (the kernel's `FirstFit` gives them).
/// - The device accessors return `None` unless overridden; override the ones the board has,
///   returning a `static` that was initialised before the test runner started. A device whose
///   initialisation failed is `None` too, so that the harness can say so.
pub trait Board: Sync {
    /// Short board name, reported to the host (`port=` in `HELLO`/`READY`).
    fn name(&self) -> &'static str;

    /// Writes bytes to the console, returning when they are all handed to the hardware.
    fn write(&self, bytes: &[u8]);

    /// Number of software-triggerable test interrupts (at least 2 for the interrupt groups).
    fn test_irqs(&self) -> usize;

    /// Pends test interrupt `n` (below [`Board::test_irqs`]); with interrupts enabled its
    /// handler has run when this returns.
    fn pend_test_irq(&self, n: usize);

    /// Statistics of the heap, if the image has one (the heap group needs them).
    fn heap_stats(&self) -> Option<HeapStats>;

    /// Resets the whole board.
    fn reset(&self) -> !;

    /// Ends the run with `code` where the board can (an emulator exits); otherwise resets.
    fn exit(&self, code: i32) -> !;

    /// The Ethernet controller, for the TCP/IP stack.
    fn ethernet(&self) -> Option<&dyn Ethernet> {
        None
    }

    /// A true random number generator.
    fn entropy(&self) -> Option<&dyn Entropy> {
        None
    }

    /// Storage that keeps the keystore across resets.
    fn storage(&self) -> Option<&dyn Storage> {
        None
    }

    /// Flash for firmware images (the boot loader's slots).
    fn flash(&self) -> Option<&dyn Flash> {
        None
    }

    /// Whether the board provides `device` (what its accessor returns).
    fn has(&self, device: Device) -> bool {
        match device {
            Device::Ethernet => self.ethernet().is_some(),
            Device::Entropy => self.entropy().is_some(),
            Device::Storage => self.storage().is_some(),
            Device::Flash => self.flash().is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceError;

    struct Rng;
    impl Entropy for Rng {
        fn fill(&self, buf: &mut [u8]) -> Result<(), DeviceError> {
            buf.fill(7);
            Ok(())
        }
    }
    static RNG: Rng = Rng;

    /// A board with only a TRNG.
    struct Small;
    impl Board for Small {
        fn name(&self) -> &'static str {
            "small"
        }
        fn write(&self, _: &[u8]) {}
        fn test_irqs(&self) -> usize {
            0
        }
        fn pend_test_irq(&self, _: usize) {}
        fn heap_stats(&self) -> Option<HeapStats> {
            None
        }
        fn reset(&self) -> ! {
            panic!("reset")
        }
        fn exit(&self, code: i32) -> ! {
            panic!("exit {code}")
        }
        fn entropy(&self) -> Option<&dyn Entropy> {
            Some(&RNG)
        }
    }

    #[test]
    fn a_board_has_exactly_the_devices_it_overrides() {
        let have: [bool; 4] = Device::ALL.map(|d| Small.has(d));
        assert_eq!(have, [false, true, false, false]);
        let mut buf = [0u8; 4];
        Small.entropy().unwrap().fill(&mut buf).unwrap();
        assert_eq!(buf, [7; 4]);
        assert_eq!(
            Device::ALL.map(Device::name),
            ["ethernet", "entropy", "storage", "flash"]
        );
    }
}
