//! The platform layer: receiving an update into the boot loader's secondary slot and handing
//! it over.
//!
//! The AWS OTA library's platform layer has eight functions; here they are [`Pal`]'s methods
//! (create file, write block, close file, abort, activate, set and get the image state) and
//! the board's own reset. Closing a file checks it three ways before the board may install
//! it: the file's signature (ECDSA P-256 over SHA-256, from the job document) with the
//! code-signing certificate the device holds; the image header the boot loader will read
//! (signed by that same key, payload intact, for this board); and that it is newer than the
//! running image and not below the board's security counter — so that a refused update is
//! refused with its reason while the job is still listening, not by the boot loader after a
//! reset. The boot loader checks again (with the keys burned into it) before anything runs.

use fqp_boot::status::{Outcome, Refusal, Status, Trial};
use fqp_boot::{Flash, Header, Install, Layout};
use fqp_image::{ImageError, PayloadHash, HEADER_LEN};
use fqp_port::DeviceError;
use fqp_tls::CertError;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// What the agent sets of an image (`OtaImageState_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    /// The running image is on trial (its self test).
    Testing,
    /// The running trial image passed its self test: keep it.
    Accepted,
    /// The update failed: a running trial image is reverted at the next boot; a file being
    /// received is dropped.
    Rejected,
    /// The update was stopped: the file being received is dropped.
    Aborted,
}

/// What the board says of its image (`OtaPalImageState_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformState {
    /// Running a confirmed image, nothing received that failed.
    Valid,
    /// Running a new image on trial: accept or reject it.
    PendingCommit,
    /// The received file failed its checks, or the running trial image rejected itself.
    Invalid,
}

/// Why the platform layer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PalError {
    /// The flash is too small for the boot loader's two slots.
    NoLayout,
    Flash(DeviceError),
    /// No file is being received (write or close before create, or after abort).
    NoFile,
    /// A file of no bytes, or more than a slot holds.
    FileSize {
        size: u32,
        slot: u32,
    },
    /// A block reaching past the file's size.
    BlockOutside {
        offset: u32,
        len: u32,
        size: u32,
    },
    /// A block not on the flash's write unit.
    Misaligned {
        offset: u32,
        unit: u32,
    },
    /// The signer's certificate is not one (or not for code signing, or not P-256).
    SignerCertificate(CertError),
    /// The signature is not a DER ECDSA signature.
    SignatureMalformed,
    /// The file's signature does not verify with the signer's key: altered, or from another
    /// signer.
    SignatureRefused,
    /// The image inside is not one the boot loader would install.
    Image(Refusal),
    /// Activate before a file was closed and checked.
    NotClosed,
    /// Accept or test with no image on trial.
    NotOnTrial,
    /// The boot loader takes no new image until the running one is confirmed.
    Busy,
}

impl PalError {
    /// A short reason, as job status details carry it.
    pub fn reason(self) -> &'static str {
        match self {
            PalError::NoLayout => "flash too small for two slots",
            PalError::Flash(_) => "flash failed",
            PalError::NoFile => "no file open",
            PalError::FileSize { .. } => "file size out of range",
            PalError::BlockOutside { .. } => "block outside the file",
            PalError::Misaligned { .. } => "block not on the write unit",
            PalError::SignerCertificate(_) => "bad signer certificate",
            PalError::SignatureMalformed => "malformed signature",
            PalError::SignatureRefused => "signature refused",
            PalError::Image(r) => r.reason(),
            PalError::NotClosed => "no checked file to activate",
            PalError::NotOnTrial => "no image on trial",
            PalError::Busy => "running image not yet confirmed",
        }
    }
}

/// The refusal of an image for `e`.
fn refuse(e: ImageError) -> PalError {
    PalError::Image(Refusal::Image(e))
}

impl From<DeviceError> for PalError {
    fn from(e: DeviceError) -> Self {
        PalError::Flash(e)
    }
}

/// The file being received.
#[derive(Clone, Copy, Debug)]
struct File {
    size: u32,
    /// Closed and checked: ready to activate.
    checked: bool,
    /// Closing found it bad.
    failed: bool,
}

/// The platform layer over the boot loader's flash.
pub struct Pal<'f> {
    flash: &'f dyn Flash,
    layout: Layout,
    board: &'f str,
    file: Option<File>,
}

impl core::fmt::Debug for Pal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pal")
            .field("layout", &self.layout)
            .field("file", &self.file)
            .finish()
    }
}

const CHUNK: usize = 512;

impl<'f> Pal<'f> {
    /// The platform layer of `flash` (the whole of it: the boot loader's layout), for images
    /// built for `board`.
    pub fn new(flash: &'f dyn Flash, board: &'f str) -> Result<Self, PalError> {
        Ok(Pal {
            flash,
            layout: Layout::whole(flash).ok_or(PalError::NoLayout)?,
            board,
            file: None,
        })
    }

    /// The largest file a slot holds.
    pub fn max_file(&self) -> u32 {
        self.layout.slot_len()
    }

    fn status(&self) -> Result<Status<'f>, PalError> {
        Ok(Status::read(self.flash, &self.layout)?)
    }

    /// The running image's header.
    pub fn running(&self) -> Result<Header, PalError> {
        let mut buf = [0u8; HEADER_LEN];
        self.flash.read(self.layout.primary.offset, &mut buf)?;
        Header::parse(&buf).map_err(|e| PalError::Image(Refusal::Image(e)))
    }

    /// Whether the boot loader is asked to install the file at the next boot.
    pub fn requested(&self) -> Result<bool, PalError> {
        Ok(self.status()?.state().pending.is_some())
    }

    /// How the last update the boot loader was given ended.
    pub fn last_update(&self) -> Result<Outcome, PalError> {
        Ok(self.status()?.state().last)
    }

    /// Starts receiving a file of `size` bytes: the secondary slot erased as far as it needs,
    /// an earlier file (and any request made with it) dropped.
    pub fn create_file(&mut self, size: u32) -> Result<(), PalError> {
        let slot = self.layout.slot_len();
        if size == 0 || size > slot {
            return Err(PalError::FileSize { size, slot });
        }
        self.file = None;
        self.status()?.withdraw()?;
        let sectors = size.div_ceil(self.layout.sector) * self.layout.sector;
        self.flash.erase(self.layout.secondary.offset, sectors)?;
        self.file = Some(File {
            size,
            checked: false,
            failed: false,
        });
        Ok(())
    }

    /// Goes on receiving a file of `size` bytes whose first `kept` bytes an earlier boot
    /// wrote whole (the agent's record of them in the job: [`crate::Agent`]): the slot past
    /// them erased, so that no byte is programmed twice; `kept` must fall on a sector
    /// boundary. The caller checks what is kept ([`Pal::check_early`]) before relying on it.
    pub fn resume_file(&mut self, size: u32, kept: u32) -> Result<(), PalError> {
        let slot = self.layout.slot_len();
        if size == 0 || size > slot {
            return Err(PalError::FileSize { size, slot });
        }
        if kept > size {
            return Err(PalError::BlockOutside {
                offset: kept,
                len: 0,
                size,
            });
        }
        if !kept.is_multiple_of(self.layout.sector) {
            return Err(PalError::Misaligned {
                offset: kept,
                unit: self.layout.sector,
            });
        }
        self.file = None;
        self.status()?.withdraw()?;
        let end = size.div_ceil(self.layout.sector) * self.layout.sector;
        if end > kept {
            self.flash
                .erase(self.layout.secondary.offset + kept, end - kept)?;
        }
        self.file = Some(File {
            size,
            checked: false,
            failed: false,
        });
        Ok(())
    }

    /// The flash's erase unit: what a resumed file's kept part is a whole number of.
    pub fn sector(&self) -> u32 {
        self.layout.sector
    }

    /// Writes `data` at `offset` of the file (blocks in any order; each offset on the flash's
    /// write unit, as block sizes are); the bytes written.
    pub fn write_block(&mut self, offset: u32, data: &[u8]) -> Result<usize, PalError> {
        let file = self.file.filter(|f| !f.checked).ok_or(PalError::NoFile)?;
        let len = u32::try_from(data.len()).map_err(|_| PalError::BlockOutside {
            offset,
            len: u32::MAX,
            size: file.size,
        })?;
        if offset.checked_add(len).is_none_or(|end| end > file.size) {
            return Err(PalError::BlockOutside {
                offset,
                len,
                size: file.size,
            });
        }
        let unit = self.flash.write_size();
        if !offset.is_multiple_of(unit) {
            return Err(PalError::Misaligned { offset, unit });
        }
        let at = self.layout.secondary.offset + offset;
        let whole = data.len() - data.len() % unit as usize;
        if whole > 0 {
            self.flash.program(at, &data[..whole])?;
        }
        if whole < data.len() {
            // The file's last bytes: the unit padded as erased flash reads.
            let mut tail = [0xffu8; 256];
            let rest = &data[whole..];
            tail[..rest.len()].copy_from_slice(rest);
            self.flash
                .program(at + whole as u32, &tail[..unit as usize])?;
        }
        Ok(data.len())
    }

    /// The size of the file being received, while it is open for blocks (created, not yet
    /// closed, aborted or refused).
    pub fn receiving(&self) -> Option<u32> {
        self.file
            .filter(|f| !f.checked && !f.failed)
            .map(|f| f.size)
    }

    /// Closes the file: checks its signature (`signature`, DER) with the key of
    /// `signer_certificate` (DER), then the image inside as the boot loader will. The image's
    /// header when it may be activated; a file that fails stays refused (state
    /// [`PlatformState::Invalid`]) until it is aborted or another is created.
    pub fn close_file(
        &mut self,
        signature: &[u8],
        signer_certificate: &[u8],
    ) -> Result<Header, PalError> {
        let file = self.file.filter(|f| !f.checked).ok_or(PalError::NoFile)?;
        let checked = self.check(file.size, signature, signer_certificate);
        self.file = Some(File {
            checked: checked.is_ok(),
            failed: checked.is_err(),
            ..file
        });
        checked
    }

    fn check(&self, size: u32, signature: &[u8], cert: &[u8]) -> Result<Header, PalError> {
        let key = fqp_tls::code_signing_key(cert).map_err(PalError::SignerCertificate)?;
        let verifying = VerifyingKey::from_sec1_bytes(&key)
            .map_err(|_| PalError::SignerCertificate(CertError::Unsupported))?;
        let signature = Signature::from_der(signature).map_err(|_| PalError::SignatureMalformed)?;
        // One pass over the file: its hash, and the payload's.
        let mut file_hash = Sha256::new();
        let mut payload = PayloadHash::new();
        let mut header = [0u8; HEADER_LEN];
        let mut buf = [0u8; CHUNK];
        let base = self.layout.secondary.offset;
        let mut at = 0;
        while at < size {
            let n = (size - at).min(CHUNK as u32) as usize;
            self.flash.read(base + at, &mut buf[..n])?;
            file_hash.update(&buf[..n]);
            // The part of this chunk that is header, and the part that is payload.
            let skip = HEADER_LEN.saturating_sub(at as usize).min(n);
            if skip > 0 {
                header[at as usize..at as usize + skip].copy_from_slice(&buf[..skip]);
            }
            payload.update(&buf[skip..n]);
            at += n as u32;
        }
        verifying
            .verify_prehash(&file_hash.finalize(), &signature)
            .map_err(|_| PalError::SignatureRefused)?;
        let h = self.check_header(&header, &key)?;
        if h.image_len() != size as usize {
            return Err(refuse(ImageError::Truncated));
        }
        h.check_payload(payload).map_err(refuse)?;
        Ok(h)
    }

    /// Checks the header of the file being received as soon as its first block is written,
    /// with the key of `signer_certificate` (DER): an image the boot loader would refuse
    /// for what its header says (another signer, board or version, a security counter too
    /// low) is refused before the rest is fetched. Close checks everything again.
    pub fn check_early(&self, signer_certificate: &[u8]) -> Result<Header, PalError> {
        self.file.ok_or(PalError::NoFile)?;
        let key =
            fqp_tls::code_signing_key(signer_certificate).map_err(PalError::SignerCertificate)?;
        let mut header = [0u8; HEADER_LEN];
        self.flash.read(self.layout.secondary.offset, &mut header)?;
        self.check_header(&header, &key)
    }

    /// The checks of an image's header the boot loader makes, with the signer's `key`.
    fn check_header(&self, header: &[u8; HEADER_LEN], key: &[u8; 65]) -> Result<Header, PalError> {
        let h = Header::parse(header).map_err(refuse)?;
        if h.signer != fqp_image::key_id(key) {
            return Err(refuse(ImageError::UnknownSigner));
        }
        h.verify_signature(&[fqp_image::TrustedKey::new(*key)])
            .map_err(refuse)?;
        h.check_board(self.board).map_err(refuse)?;
        if self.running().is_ok_and(|r| h.version <= r.version) {
            return Err(PalError::Image(Refusal::Downgrade));
        }
        if h.security_counter < self.status()?.state().counter {
            return Err(PalError::Image(Refusal::Counter));
        }
        Ok(h)
    }

    /// Drops the file being received (whatever its state; nothing to drop is no error): it
    /// cannot be installed any more.
    pub fn abort(&mut self) -> Result<(), PalError> {
        self.file = None;
        self.status()?.withdraw()?;
        // The header gone, the boot loader sees no image there.
        self.flash
            .erase(self.layout.secondary.offset, self.layout.sector)?;
        Ok(())
    }

    /// Asks the boot loader to install the checked file at the next reset, on trial (the
    /// agent then resets the board).
    pub fn activate(&mut self) -> Result<(), PalError> {
        if !self.file.is_some_and(|f| f.checked) {
            return Err(PalError::NotClosed);
        }
        if !self.status()?.request(Install::Test)? {
            return Err(PalError::Busy);
        }
        Ok(())
    }

    /// Sets the image state (see [`ImageState`]).
    pub fn set_image_state(&mut self, state: ImageState) -> Result<(), PalError> {
        let mut status = self.status()?;
        let s = status.state();
        let on_trial = s.trial == Trial::Booted && !s.confirmed;
        match state {
            ImageState::Testing if on_trial && !s.rejected => Ok(()),
            ImageState::Accepted if on_trial && !s.rejected => {
                let counter = self.running()?.security_counter;
                Ok(status.confirm(counter)?)
            }
            ImageState::Testing | ImageState::Accepted => Err(PalError::NotOnTrial),
            ImageState::Rejected if on_trial => {
                status.reject()?;
                Ok(())
            }
            ImageState::Rejected | ImageState::Aborted => self.abort(),
        }
    }

    /// The image state (see [`PlatformState`]).
    pub fn image_state(&self) -> Result<PlatformState, PalError> {
        let s = self.status()?.state();
        Ok(if s.rejected || self.file.is_some_and(|f| f.failed) {
            PlatformState::Invalid
        } else if s.trial == Trial::Booted && !s.confirmed {
            PlatformState::PendingCommit
        } else {
            PlatformState::Valid
        })
    }
}
