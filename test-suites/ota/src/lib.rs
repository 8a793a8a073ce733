//! Over-the-air update qualification on the device.
//!
//! Group `ota` (module `e2e`): updates end to end through the lab's cloud, with real resets
//! into the new image — accepted, refused with the reason, rolled back.
//!
//! Group `ota_pal`: the platform layer (`fqp_ota::Pal`) on the port's flash
//! (`Board::flash`), as the former OTA platform-layer suite tested it and more: files closed
//! with a valid signature, an invalid one, no block written, another signer's or a server's
//! certificate, a malformed signature; images the boot loader would refuse, refused at close
//! with the reason (another board, not newer); a single byte and many blocks out of order;
//! blocks outside the file or off the write unit; abort in every state; every image-state
//! transition, the invalid ones refused. Files are signed on the device by the public test
//! signer (`fqp_ota::test_signer`), checked against its certificate; nothing here is
//! activated into a reboot, and every test leaves the secondary slot aborted.

#![no_std]

extern crate alloc;

mod e2e;
mod pal;

pub use e2e::OTA;
pub use pal::OTA_PAL;

/// The suite's groups, in the order the host lists them.
pub static GROUPS: &[&fqp_testkit::Group] = &[&OTA_PAL, &OTA];
