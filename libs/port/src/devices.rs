//! The optional devices a board may provide.

/// A device operation that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The hardware reported a failure, or did not answer.
    Failed,
    /// The data does not fit: a buffer too small for what is stored, or more than the device
    /// holds.
    TooLong,
    /// An address outside the device, or not on the unit the operation works in (a flash's
    /// erase sector or write unit).
    BadAddress,
}

/// An Ethernet controller, carrying the TCP/IP stack (`fqp-net`).
///
/// # Implementing this
/// Frames are whole Ethernet frames without the FCS. `send` and `receive` never block: the
/// stack retries. From the controller's receive interrupt, call `fqp_net::on_interrupt()` so
/// that the network task wakes; enable that interrupt at a priority that may call the kernel.
pub trait Ethernet: Sync {
    /// The controller's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Queues one frame for sending; false when there is no room now.
    fn send(&self, frame: &[u8]) -> bool;
    /// Moves the next received frame into `buf`; its length, or `None` when there is none.
    fn receive(&self, buf: &mut [u8]) -> Option<usize>;
}

/// A source of true randomness (a TRNG), which seeds the keystore's generator.
///
/// # Implementing this
/// Fill the buffer from the hardware generator, checking its health flags; return
/// [`DeviceError::Failed`] rather than weak bytes. A board without a TRNG leaves
/// [`crate::Board::entropy`] as `None`: the host then provisions a seed (fine on an emulator,
/// and the report says where the entropy came from).
pub trait Entropy: Sync {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), DeviceError>;
}

/// Storage that keeps one image (the keystore's) across resets and power cuts.
///
/// # Implementing this
/// `store` replaces the image as a whole: a reset in the middle must leave the previous
/// image or the new one, never a mix (write elsewhere, then switch). `load` of a device that
/// never stored anything returns `Ok(0)`.
pub trait Storage: Sync {
    /// Reads the saved image into `buf`; its length (0 when nothing was saved).
    fn load(&self, buf: &mut [u8]) -> Result<usize, DeviceError>;
    /// Replaces the saved image with `data`.
    fn store(&self, data: &[u8]) -> Result<(), DeviceError>;
}

/// Flash for firmware images: the boot loader's slots and status area (`fqp-boot`), written by
/// the OTA agent. Addresses are offsets from the start of the area the port gives over.
///
/// # Implementing this
/// NOR flash semantics: `erase` sets whole sectors to 0xFF; `program` writes whole write units
/// into erased bytes (programming bytes that are not erased is the caller's error; flash that
/// can only clear bits may AND them). Both are synchronous: when they return, the bytes are
/// in the flash, so that a power cut after the call cannot undo them. A power cut *during*
/// one may leave it half done, which the boot loader is built to survive. Reject an offset or
/// length off the units with [`DeviceError::BadAddress`]. Guard the device from concurrent
/// use yourself (the agent and the boot loader are its only users, one at a time).
pub trait Flash: Sync {
    /// Bytes in the area.
    fn size(&self) -> u32;
    /// The erase unit (sector or page).
    fn erase_size(&self) -> u32;
    /// The program unit: a power of two, at most 256.
    fn write_size(&self) -> u32;
    /// Reads `buf.len()` bytes from `offset` (any alignment).
    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Erases `len` bytes from `offset`, both multiples of [`Flash::erase_size`].
    fn erase(&self, offset: u32, len: u32) -> Result<(), DeviceError>;
    /// Programs `data` at `offset`, both multiples of [`Flash::write_size`].
    fn program(&self, offset: u32, data: &[u8]) -> Result<(), DeviceError>;
}
