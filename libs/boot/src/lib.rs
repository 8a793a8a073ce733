//! The boot loader's logic: which image runs, and how a new one takes its place without a
//! power cut ever leaving the board without a valid image.
//!
//! The port's [`Flash`] is cut into four areas ([`Layout`]): a status area of two erase
//! sectors, a scratch sector, and two equal slots. The *primary* slot holds the image that
//! runs; the OTA agent writes a new one into the *secondary* slot and asks for it
//! ([`Status::request`]). At the next boot [`boot`] checks the new image (signature by a
//! trusted key, payload hash, board, newer version, security counter) and swaps the slots
//! sector by sector through the scratch sector, recording each step in the status area
//! before the next begins, so that a cut anywhere resumes where it stopped.
//!
//! A *trial* image (the default) gets one boot to confirm itself ([`Status::confirm`], after
//! its self test); booted again unconfirmed — it crashed, hung, could not reach the cloud or
//! rejected itself — it is swapped back out and the previous image returns. A *permanent*
//! install is confirmed at once. The primary image is checked on every boot as well: nothing
//! unverified runs, and a board whose only image is bad stops with the reason.
//!
//! The status area is a log of whole-state snapshots ([`status`]): each change appends one
//! record, the newest valid record is the state, and a full sector is compacted into the
//! other one, which takes over only once its copy is complete. The method is MCUboot's
//! (swap with scratch, progress in a trailer); this crate's tests cut the power at every
//! flash operation of an update and of a rollback, as MCUboot's simulator does.

#![no_std]

mod boot;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod status;
mod swap;

pub use boot::{boot, Booted, Event};
pub use fqp_image::{Header, ImageError, TrustedKey, Version};
pub use fqp_port::{DeviceError, Flash};
pub use status::{Install, Outcome, Refusal, State, Status, Trial};

use core::fmt;

/// A range of the flash: `len` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub offset: u32,
    pub len: u32,
}

/// Where the status area, the scratch sector and the two slots lie in the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The erase unit every area is made of.
    pub sector: u32,
    /// Two sectors: the status log's two halves.
    pub status: Area,
    /// One sector: where a sector of the secondary slot waits while the swap moves the
    /// primary's.
    pub scratch: Area,
    pub primary: Area,
    pub secondary: Area,
}

impl Layout {
    /// The whole flash: status (2 sectors), scratch (1), then two equal slots of what is
    /// left. `None` when the flash is too small for a slot of one sector, or its units do not
    /// suit the status records (see [`status::RECORD`]).
    pub fn whole(flash: &dyn Flash) -> Option<Layout> {
        Self::within(
            flash,
            Area {
                offset: 0,
                len: flash.size(),
            },
        )
    }

    /// As [`Layout::whole`], within `area` of the flash (sector-aligned).
    pub fn within(flash: &dyn Flash, area: Area) -> Option<Layout> {
        Self::of(flash.size(), flash.erase_size(), flash.write_size(), area)
    }

    /// The layout within `area` of a flash of `size` bytes, erase sector `sector` and write
    /// unit `write`: what [`Layout::within`] gives that flash (for a host preparing one).
    pub fn of(size: u32, sector: u32, write: u32, area: Area) -> Option<Layout> {
        if sector == 0
            || write == 0
            || !write.is_power_of_two()
            || write > status::RECORD_MAX as u32
            || !sector.is_multiple_of(write)
            || !area.offset.is_multiple_of(sector)
            || area.offset.checked_add(area.len)? > size
        {
            return None;
        }
        let sectors = area.len / sector;
        let slot = (sectors.checked_sub(3)? / 2) * sector;
        if slot == 0 || sector < 2 * status::record_len(write) as u32 {
            return None;
        }
        let at = |n: u32| area.offset + n * sector;
        Some(Layout {
            sector,
            status: Area {
                offset: at(0),
                len: 2 * sector,
            },
            scratch: Area {
                offset: at(2),
                len: sector,
            },
            primary: Area {
                offset: at(3),
                len: slot,
            },
            secondary: Area {
                offset: at(3) + slot,
                len: slot,
            },
        })
    }

    /// The largest image a slot holds (header included).
    pub fn slot_len(&self) -> u32 {
        self.primary.len
    }
}

/// Why the boot loader could not boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The flash failed (or the power went) in the middle: booting again resumes.
    Flash(DeviceError),
    /// No slot holds an image this board may run: the primary's reason.
    NoImage(Refusal),
}

impl From<DeviceError> for BootError {
    fn from(e: DeviceError) -> Self {
        BootError::Flash(e)
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Flash(e) => write!(f, "flash failed: {e:?}"),
            BootError::NoImage(r) => write!(f, "no image to boot: {}", r.reason()),
        }
    }
}

/// Bytes moved per flash read or program while copying and hashing (a stack buffer).
pub const CHUNK: usize = 512;

#[cfg(test)]
mod tests;
