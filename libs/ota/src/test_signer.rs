//! A code signer for tests (feature `test-signer`): a fixed P-256 key and its self-signed
//! certificate (extended key usage code signing, valid for a century), a certificate of
//! another signer, and a server's certificate — what the platform layer's tests sign files
//! with and check them against, on the host and on the device. Never for a product: the key
//! is public.

/// The test signer's private key (the scalar, big-endian).
pub const KEY: [u8; 32] = [
    0xb2, 0xe5, 0xcc, 0x81, 0x7b, 0x51, 0x27, 0xf3, 0x24, 0x99, 0xac, 0x88, 0x13, 0x07, 0xfd, 0x3c,
    0x8c, 0x53, 0x1b, 0x85, 0x43, 0x67, 0xfb, 0x17, 0x83, 0xdf, 0x10, 0x98, 0x37, 0xe8, 0xd2, 0xfa,
];

/// The test signer's certificate (DER).
pub const CERT: &[u8] = include_bytes!("../testdata/signer.der");

/// Another signer's certificate (code signing, another key).
pub const OTHER_CERT: &[u8] = include_bytes!("../testdata/other.der");

/// A server's certificate (extended key usage server authentication only).
pub const SERVER_CERT: &[u8] = include_bytes!("../testdata/server.der");

use fqp_image::{Header, ImageError, Version, HEADER_LEN};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// A file signed by the test signer: its header (the payload follows it, made by the same
/// function of the index), and the file's signature.
#[derive(Clone, Debug)]
pub struct TestFile {
    pub header: [u8; HEADER_LEN],
    pub len: u32,
    /// DER, `signature_len` bytes of it.
    pub signature: [u8; 72],
    pub signature_len: usize,
}

impl TestFile {
    /// The file's signature, DER.
    pub fn signature(&self) -> &[u8] {
        &self.signature[..self.signature_len]
    }
}

/// Signs a file whose payload of `payload_len` bytes is `payload(i)` for each index: the
/// image header (for `board`, `version`, `counter`) and the file signature over header and
/// payload — as `fqp ota sign` would, with the test key. The payload is made twice and never
/// held, so a device can sign files larger than its RAM.
pub fn sign(
    version: Version,
    counter: u32,
    board: &str,
    payload_len: u32,
    payload: impl Fn(u32) -> u8,
) -> Result<TestFile, ImageError> {
    let key = SigningKey::from_bytes(&KEY.into()).map_err(|_| ImageError::UnknownSigner)?;
    let mut chunk = [0u8; 256];
    let mut hash_payload = |hasher: &mut Sha256| {
        let mut at = 0;
        while at < payload_len {
            let n = (payload_len - at).min(chunk.len() as u32);
            for (i, b) in chunk[..n as usize].iter_mut().enumerate() {
                *b = payload(at + i as u32);
            }
            hasher.update(&chunk[..n as usize]);
            at += n;
        }
    };
    let mut payload_hash = Sha256::new();
    hash_payload(&mut payload_hash);
    let mut h = Header::for_payload(
        version,
        counter,
        board,
        0,
        payload_len,
        payload_hash.finalize().into(),
    )?;
    let point = key.verifying_key().to_encoded_point(false);
    h.signer = fqp_image::key_id(point.as_bytes());
    let sig: Signature = key.sign(&h.signed_part());
    h.signature = sig.to_bytes().into();
    let header = h.to_bytes();
    let mut file_hash = Sha256::new();
    file_hash.update(header);
    hash_payload(&mut file_hash);
    let sig: Signature = key
        .sign_prehash(&file_hash.finalize())
        .map_err(|_| ImageError::BadSignature)?;
    let der = sig.to_der();
    let mut signature = [0u8; 72];
    signature[..der.len()].copy_from_slice(der.as_bytes());
    Ok(TestFile {
        header,
        len: HEADER_LEN as u32 + payload_len,
        signature,
        signature_len: der.len(),
    })
}
