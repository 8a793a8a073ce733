//! The optional devices a board may provide.

/// A device operation that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The hardware reported a failure, or did not answer.
    Failed,
    /// The data does not fit: a buffer too small for what is stored, or more than the device
    /// holds.
    TooLong,
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
