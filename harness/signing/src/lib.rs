//! Over-the-air update tooling on the host: firmware images signed for the boot loader and the
//! OTA agent ([`sign`]), and read back ([`inspect`]).
//!
//! Two signatures come out of one signing, both ECDSA P-256 over SHA-256 with the same key:
//! the image header's (`fqp-image`), which the boot loader checks against the public keys it
//! trusts before it runs the image, and the file's, over every byte of the signed image, which
//! the OTA job document carries (`sig-sha256-ecdsa`, DER in base64) and the device's agent
//! checks against the code-signing certificate the job names before it asks for the image to
//! be installed. The key stays behind the [`Signer`] interface: a key in a file
//! ([`KeyFileSigner`]) now, an HSM or a cloud signer the same way.

mod elf;
mod signer;

pub use elf::payload_from_elf;
pub use fqp_image::{Header, ImageError, TrustedKey, Version, HEADER_LEN};
pub use signer::{KeyFileSigner, Signer};

use base64::Engine as _;

/// What went wrong signing or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum OtaError {
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the signing key {path}: {problem} (fix: a P-256 private key in PKCS#8 PEM, as `fqp pki` and the lab directory's code-signing.key hold)")]
    Key {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("the certificate {path}: {problem} (fix: the signing key's certificate, PEM)")]
    Certificate {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("the signer failed: {0}")]
    Sign(String),
    #[error("the ELF file: {0} (fix: the firmware's ELF as the build wrote it, or a raw binary with --load-address)")]
    Elf(String),
    #[error("the image: {0}")]
    Image(String),
}

/// What an image says of itself, besides its payload.
#[derive(Clone, Debug)]
pub struct Meta {
    pub version: Version,
    pub security_counter: u32,
    pub board: String,
    pub load_address: u32,
}

/// An image signed, and the signature of its file.
#[derive(Clone, Debug)]
pub struct Signed {
    /// Header and payload: what the device downloads and the boot loader checks.
    pub image: Vec<u8>,
    /// ECDSA P-256 / SHA-256 over `image`, DER: the job document's `sig-sha256-ecdsa`.
    pub file_signature: Vec<u8>,
}

impl Signed {
    /// The file signature as a job document carries it.
    pub fn file_signature_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.file_signature)
    }
}

/// Signs `payload` as an image described by `meta`.
pub fn sign(payload: &[u8], meta: &Meta, signer: &dyn Signer) -> Result<Signed, OtaError> {
    let mut header = Header::new(
        meta.version,
        meta.security_counter,
        &meta.board,
        meta.load_address,
        payload,
    )
    .map_err(|e| match e {
        ImageError::BadBoardName => OtaError::Image(format!(
            "the board name {:?} must be 1 to {} bytes without NUL",
            meta.board,
            fqp_image::BOARD_LEN
        )),
        other => OtaError::Image(format!("payload of {} bytes: {other}", payload.len())),
    })?;
    header.signer = fqp_image::key_id(&signer.public_key());
    header.signature = signer.sign_raw(&header.signed_part())?;
    let mut image = header.to_bytes().to_vec();
    image.extend_from_slice(payload);
    let file_signature = signer.sign_der(&image)?;
    Ok(Signed {
        image,
        file_signature,
    })
}

/// An image read back: its header, and the checks that could be made.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub header: Header,
    /// The payload's hash is the header's.
    pub payload_intact: bool,
    /// The header's signature checked against the key given (`None`: no key given).
    pub signature: Option<Result<(), ImageError>>,
    /// The file signature given, checked against the key (`None`: none given).
    pub file_signature: Option<bool>,
}

/// Reads `image` back; with `key` (SEC1 public key) checks its signature, and `file_sig`
/// (DER) if given.
pub fn inspect(
    image: &[u8],
    key: Option<&TrustedKey>,
    file_sig: Option<&[u8]>,
) -> Result<Inspection, OtaError> {
    let header = Header::parse(image).map_err(|e| OtaError::Image(e.reason().into()))?;
    let payload = image.get(HEADER_LEN..).unwrap_or_default();
    let mut hash = fqp_image::PayloadHash::new();
    hash.update(&payload[..payload.len().min(header.payload_len as usize)]);
    let payload_intact =
        payload.len() == header.payload_len as usize && header.check_payload(hash).is_ok();
    let signature = key.map(|k| header.verify_signature(std::slice::from_ref(k)));
    let file_signature = match (key, file_sig) {
        (Some(k), Some(sig)) => Some(
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &k.sec1,
            )
            .verify(image, sig)
            .is_ok(),
        ),
        _ => None,
    };
    Ok(Inspection {
        header,
        payload_intact,
        signature,
        file_signature,
    })
}

/// The public key of a PEM certificate (P-256), as a boot loader trusts it.
pub fn certificate_key(pem: &str, path: &std::path::Path) -> Result<TrustedKey, OtaError> {
    let bad = |problem: String| OtaError::Certificate {
        path: path.to_path_buf(),
        problem,
    };
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&p.contents)
        .map_err(|e| bad(format!("not a certificate: {e}")))?;
    let raw = cert.public_key().subject_public_key.data.as_ref();
    let sec1: [u8; 65] = raw
        .try_into()
        .ok()
        .filter(|k: &[u8; 65]| k[0] == 4)
        .ok_or_else(|| bad("its key is not P-256".into()))?;
    Ok(TrustedKey::new(sec1))
}

#[cfg(test)]
mod tests;
