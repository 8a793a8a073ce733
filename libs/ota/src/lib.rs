//! Over-the-air updates on the device.
//!
//! [`agent`] takes an update job, fetches its file over the cloud's MQTT stream, has it
//! checked and installed, and reports the job's end after the new image's self test.
//! [`pal`] is the platform layer: what an OTA agent asks of the board to receive a file into
//! the boot loader's secondary slot, check it, and hand it to the boot loader — the eight
//! functions of the AWS OTA library's platform layer, over `fqp-boot` and the port's
//! [`fqp_port::Flash`].

#![no_std]

pub mod agent;
pub mod pal;
#[cfg(any(test, feature = "test-signer"))]
pub mod test_signer;

pub use agent::{Agent, AgentError, Config, Fetched, Step, BLOCK_OVERHEAD};
pub use pal::{ImageState, Pal, PalError, PlatformState};

#[cfg(test)]
mod tests;
