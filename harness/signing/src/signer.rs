//! Who signs: an interface, so that a key in an HSM or a cloud signing service can take the
//! place of the file.

use crate::{certificate_key, OtaError};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use std::path::Path;

/// Signs with one P-256 key: ECDSA over the SHA-256 of the message.
pub trait Signer {
    /// The key's public half, SEC1 uncompressed (`04 ‖ x ‖ y`).
    fn public_key(&self) -> [u8; 65];
    /// The signature as `r ‖ s` (the image header's form).
    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], OtaError>;
    /// The signature in DER (the job document's form).
    fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, OtaError>;
}

/// A key in a PKCS#8 PEM file, checked against its certificate when one is given. Its
/// signatures are deterministic (RFC 6979): the same image signed again is the same file.
pub struct KeyFileSigner {
    key: SigningKey,
}

impl KeyFileSigner {
    /// The key of `key` (PEM, PKCS#8, P-256); with `cert`, refused unless it is the
    /// certificate's key.
    pub fn open(key: &Path, cert: Option<&Path>) -> Result<Self, OtaError> {
        let text = std::fs::read_to_string(key).map_err(|source| OtaError::File {
            path: key.to_path_buf(),
            source,
        })?;
        let bad = |problem: String| OtaError::Key {
            path: key.to_path_buf(),
            problem,
        };
        let body: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err(bad("no \"BEGIN PRIVATE KEY\" block".into()));
        }
        use base64::Engine as _;
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let signer = Self::from_pkcs8_der(&pkcs8).map_err(|e| match e {
            OtaError::Key { problem, .. } => bad(problem),
            other => other,
        })?;
        if let Some(cert) = cert {
            let pem = std::fs::read_to_string(cert).map_err(|source| OtaError::File {
                path: cert.to_path_buf(),
                source,
            })?;
            if certificate_key(&pem, cert)?.sec1 != signer.public_key() {
                return Err(OtaError::Certificate {
                    path: cert.to_path_buf(),
                    problem: format!("it is not the certificate of {}", key.display()),
                });
            }
        }
        Ok(signer)
    }

    /// The key in PKCS#8 DER (as the lab's PKI holds its pairs).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, OtaError> {
        let key = SigningKey::from_pkcs8_der(der).map_err(|e| OtaError::Key {
            path: "(PKCS#8 DER)".into(),
            problem: format!("not a P-256 key: {e}"),
        })?;
        Ok(KeyFileSigner { key })
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, OtaError> {
        self.key
            .try_sign(message)
            .map_err(|e| OtaError::Sign(e.to_string()))
    }
}

impl Signer for KeyFileSigner {
    fn public_key(&self) -> [u8; 65] {
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut k = [0u8; 65];
        k.copy_from_slice(point.as_bytes());
        k
    }

    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], OtaError> {
        Ok(self.sign(message)?.to_bytes().into())
    }

    fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, OtaError> {
        Ok(self.sign(message)?.to_der().as_bytes().to_vec())
    }
}
