//! Over-the-air updates on the device.
//!
//! [`pal`] is the platform layer: what an OTA agent asks of the board to receive a file into
//! the boot loader's secondary slot, check it, and hand it to the boot loader — the eight
//! functions of the AWS OTA library's platform layer, over `fqp-boot` and the port's
//! [`fqp_port::Flash`].

#![no_std]

pub mod pal;
#[cfg(any(test, feature = "test-signer"))]
pub mod test_signer;

pub use pal::{ImageState, Pal, PalError, PlatformState};

#[cfg(test)]
mod tests;
