//! The signed firmware image: what `fqp ota sign` writes, the OTA agent downloads and the boot
//! loader checks before it runs anything.
//!
//! An image is a 256-byte header followed by the payload (the firmware's bytes as they lie in
//! the board's memory from `load_address` on). The header says what the payload is — version,
//! security counter, board, length, SHA-256 — and who vouches for it: the SHA-256 of the
//! signer's public key and an ECDSA P-256 signature over the header's first 124 bytes, which
//! hold the payload's hash, so the one signature covers both. The boot loader keeps the public
//! keys it trusts (as MCUboot does: no certificate parsing before the first instruction of an
//! image); the OTA agent also checks the file against the code-signing certificate the job
//! names.
//!
//! Layout (little-endian):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `FQPI` |
//! | 4 | 2 | header length (256) |
//! | 6 | 2 | format (1) |
//! | 8 | 4 | version: major (bits 31–24), minor (23–16), patch (15–0) |
//! | 12 | 4 | security counter |
//! | 16 | 4 | payload length |
//! | 20 | 4 | load address |
//! | 24 | 4 | reserved, zero |
//! | 28 | 32 | board name, UTF-8, NUL-padded |
//! | 60 | 32 | SHA-256 of the payload |
//! | 92 | 32 | SHA-256 of the signer's public key (SEC1, uncompressed) |
//! | 124 | 64 | signature: r ‖ s over SHA-256(bytes 0..124) |
//! | 188 | 68 | reserved, zero |
//!
//! No heap: the header is parsed from a slice and the payload hashed as it streams by
//! ([`PayloadHash`]), so that a boot loader can check an image straight from flash.

#![no_std]

use core::fmt;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The header's length: the payload starts here.
pub const HEADER_LEN: usize = 256;
/// The bytes the signature covers: everything before it.
pub const SIGNED_LEN: usize = 124;
/// The header's first bytes.
pub const MAGIC: [u8; 4] = *b"FQPI";
/// The format this crate reads and writes.
pub const FORMAT: u16 = 1;
/// The longest board name.
pub const BOARD_LEN: usize = 32;

const OFF_VERSION: usize = 8;
const OFF_COUNTER: usize = 12;
const OFF_LEN: usize = 16;
const OFF_LOAD: usize = 20;
const OFF_BOARD: usize = 28;
const OFF_HASH: usize = 60;
const OFF_SIGNER: usize = 92;

/// An image's version: major.minor.patch, ordered as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u16,
}

impl Version {
    pub const fn new(major: u8, minor: u8, patch: u16) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// As the header stores it (and as the job's `updatedBy` shows it, in hex).
    pub const fn to_u32(self) -> u32 {
        (self.major as u32) << 24 | (self.minor as u32) << 16 | self.patch as u32
    }

    pub const fn from_u32(v: u32) -> Self {
        Version::new((v >> 24) as u8, (v >> 16) as u8, v as u16)
    }

    /// `major.minor.patch`; `None` for anything else or a number out of range.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than its header, or than the header says.
    Truncated,
    /// Not an image: the magic is wrong (erased flash reads as this too).
    NotAnImage,
    /// A header length or format this build does not know, or reserved bytes set.
    UnknownFormat,
    /// The board name is not UTF-8 or not NUL-padded.
    BadBoardName,
    /// Signed by a key the verifier does not trust (or not signed).
    UnknownSigner,
    /// The signature does not verify with the signer's key: the header was altered, or the
    /// signature is not from that key.
    BadSignature,
    /// The payload's hash is not the one the signed header holds: altered after signing.
    Corrupted,
    /// Built for another board.
    OtherBoard,
}

impl ImageError {
    /// A short reason, as a job's status details or a log line carry it.
    pub fn reason(self) -> &'static str {
        match self {
            ImageError::Truncated => "image truncated",
            ImageError::NotAnImage => "not an image",
            ImageError::UnknownFormat => "unknown image format",
            ImageError::BadBoardName => "bad board name",
            ImageError::UnknownSigner => "untrusted signer",
            ImageError::BadSignature => "signature refused",
            ImageError::Corrupted => "payload hash mismatch",
            ImageError::OtherBoard => "wrong board",
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A public key images may be signed with (SEC1 uncompressed: `04 ‖ x ‖ y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub sec1: [u8; 65],
}

impl TrustedKey {
    pub const fn new(sec1: [u8; 65]) -> Self {
        TrustedKey { sec1 }
    }

    /// What the header names the signer by: the SHA-256 of the key.
    pub fn id(&self) -> [u8; 32] {
        key_id(&self.sec1)
    }
}

/// The SHA-256 of a public key, as a header's signer field holds it.
pub fn key_id(sec1: &[u8]) -> [u8; 32] {
    Sha256::digest(sec1).into()
}

/// An image's header, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub security_counter: u32,
    pub payload_len: u32,
    pub load_address: u32,
    pub board: [u8; BOARD_LEN],
    pub payload_sha256: [u8; 32],
    pub signer: [u8; 32],
    pub signature: [u8; 64],
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// A header for `board` (at most [`BOARD_LEN`] bytes), unsigned: the signer fields zero.
    pub fn new(
        version: Version,
        security_counter: u32,
        board: &str,
        load_address: u32,
        payload: &[u8],
    ) -> Result<Self, ImageError> {
        let payload_len = u32::try_from(payload.len()).map_err(|_| ImageError::Truncated)?;
        Self::for_payload(
            version,
            security_counter,
            board,
            load_address,
            payload_len,
            Sha256::digest(payload).into(),
        )
    }

    /// As [`Header::new`], for a payload of `payload_len` bytes whose SHA-256 is
    /// `payload_sha256` (hashed as it streamed by, never held whole).
    pub fn for_payload(
        version: Version,
        security_counter: u32,
        board: &str,
        load_address: u32,
        payload_len: u32,
        payload_sha256: [u8; 32],
    ) -> Result<Self, ImageError> {
        if board.is_empty() || board.len() > BOARD_LEN || board.contains('\0') {
            return Err(ImageError::BadBoardName);
        }
        let mut name = [0u8; BOARD_LEN];
        name[..board.len()].copy_from_slice(board.as_bytes());
        Ok(Header {
            version,
            security_counter,
            payload_len,
            load_address,
            board: name,
            payload_sha256,
            signer: [0; 32],
            signature: [0; 64],
        })
    }

    /// Parses the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let b = bytes.get(..HEADER_LEN).ok_or(ImageError::Truncated)?;
        if b[..4] != MAGIC {
            return Err(ImageError::NotAnImage);
        }
        let header_len = u16::from_le_bytes([b[4], b[5]]) as usize;
        let format = u16::from_le_bytes([b[6], b[7]]);
        let reserved = u32_at(b, 24) != 0 || b[SIGNED_LEN + 64..].iter().any(|&x| x != 0);
        if header_len != HEADER_LEN || format != FORMAT || reserved {
            return Err(ImageError::UnknownFormat);
        }
        let mut board = [0u8; BOARD_LEN];
        board.copy_from_slice(&b[OFF_BOARD..OFF_BOARD + BOARD_LEN]);
        let header = Header {
            version: Version::from_u32(u32_at(b, OFF_VERSION)),
            security_counter: u32_at(b, OFF_COUNTER),
            payload_len: u32_at(b, OFF_LEN),
            load_address: u32_at(b, OFF_LOAD),
            board,
            payload_sha256: b[OFF_HASH..OFF_HASH + 32].try_into().unwrap_or([0; 32]),
            signer: b[OFF_SIGNER..OFF_SIGNER + 32].try_into().unwrap_or([0; 32]),
            signature: b[SIGNED_LEN..SIGNED_LEN + 64].try_into().unwrap_or([0; 64]),
        };
        header.board_name()?;
        Ok(header)
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..SIGNED_LEN].copy_from_slice(&self.signed_part());
        b[SIGNED_LEN..SIGNED_LEN + 64].copy_from_slice(&self.signature);
        b
    }

    /// The bytes the signature covers (the signer's id included).
    pub fn signed_part(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[6..8].copy_from_slice(&FORMAT.to_le_bytes());
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&self.version.to_u32().to_le_bytes());
        b[OFF_COUNTER..OFF_COUNTER + 4].copy_from_slice(&self.security_counter.to_le_bytes());
        b[OFF_LEN..OFF_LEN + 4].copy_from_slice(&self.payload_len.to_le_bytes());
        b[OFF_LOAD..OFF_LOAD + 4].copy_from_slice(&self.load_address.to_le_bytes());
        b[OFF_BOARD..OFF_BOARD + BOARD_LEN].copy_from_slice(&self.board);
        b[OFF_HASH..OFF_HASH + 32].copy_from_slice(&self.payload_sha256);
        b[OFF_SIGNER..OFF_SIGNER + 32].copy_from_slice(&self.signer);
        b
    }

    /// The board name.
    pub fn board_name(&self) -> Result<&str, ImageError> {
        let end = self.board.iter().position(|&c| c == 0).unwrap_or(BOARD_LEN);
        if end == 0 || self.board[end..].iter().any(|&c| c != 0) {
            return Err(ImageError::BadBoardName);
        }
        core::str::from_utf8(&self.board[..end]).map_err(|_| ImageError::BadBoardName)
    }

    /// The whole image's length: header and payload.
    pub fn image_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    /// Checks the signature with the trusted key the header names: the header as it was
    /// signed. The payload is checked against the header with [`Header::check_payload`].
    pub fn verify_signature(&self, keys: &[TrustedKey]) -> Result<(), ImageError> {
        let key = keys
            .iter()
            .find(|k| k.id() == self.signer)
            .ok_or(ImageError::UnknownSigner)?;
        let verifying =
            VerifyingKey::from_sec1_bytes(&key.sec1).map_err(|_| ImageError::UnknownSigner)?;
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| ImageError::BadSignature)?;
        verifying
            .verify(&self.signed_part(), &signature)
            .map_err(|_| ImageError::BadSignature)
    }

    /// Whether the payload hashed into `hash` (all of it: [`PayloadHash::len`] is checked)
    /// is the one the header describes.
    pub fn check_payload(&self, hash: PayloadHash) -> Result<(), ImageError> {
        if hash.len != u64::from(self.payload_len) {
            return Err(ImageError::Truncated);
        }
        if <[u8; 32]>::from(hash.hasher.finalize()) != self.payload_sha256 {
            return Err(ImageError::Corrupted);
        }
        Ok(())
    }

    /// Refuses an image built for a board other than `board`.
    pub fn check_board(&self, board: &str) -> Result<(), ImageError> {
        if self.board_name()? == board {
            Ok(())
        } else {
            Err(ImageError::OtherBoard)
        }
    }
}

/// The payload's SHA-256, fed as it streams by.
#[derive(Clone, Debug, Default)]
pub struct PayloadHash {
    hasher: Sha256,
    len: u64,
}

impl PayloadHash {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Checks a whole image held in memory: signature by a trusted key, payload, board. The
/// header, when it is all right.
pub fn verify(image: &[u8], keys: &[TrustedKey], board: &str) -> Result<Header, ImageError> {
    let header = Header::parse(image)?;
    header.verify_signature(keys)?;
    let payload = image
        .get(HEADER_LEN..header.image_len())
        .ok_or(ImageError::Truncated)?;
    let mut hash = PayloadHash::new();
    hash.update(payload);
    header.check_payload(hash)?;
    header.check_board(board)?;
    Ok(header)
}

#[cfg(test)]
mod tests;
