//! Who signs: an interface, so that a key in an HSM or a cloud signing service can take the
//! place of the file.

use crate::{certificate_key, OtaError};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
};
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

/// A key in a PKCS#8 PEM file, checked against its certificate when one is given.
pub struct KeyFileSigner {
    raw: EcdsaKeyPair,
    der: EcdsaKeyPair,
    rng: SystemRandom,
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
        let rng = SystemRandom::new();
        let pair = |alg| {
            EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng)
                .map_err(|e| bad(format!("not a P-256 key: {e}")))
        };
        let signer = KeyFileSigner {
            raw: pair(&ECDSA_P256_SHA256_FIXED_SIGNING)?,
            der: pair(&ECDSA_P256_SHA256_ASN1_SIGNING)?,
            rng,
        };
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
}

impl Signer for KeyFileSigner {
    fn public_key(&self) -> [u8; 65] {
        let mut k = [0u8; 65];
        k.copy_from_slice(self.raw.public_key().as_ref());
        k
    }

    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], OtaError> {
        let sig = self
            .raw
            .sign(&self.rng, message)
            .map_err(|e| OtaError::Sign(e.to_string()))?;
        sig.as_ref()
            .try_into()
            .map_err(|_| OtaError::Sign("a P-256 signature of another length".into()))
    }

    fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, OtaError> {
        self.der
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| OtaError::Sign(e.to_string()))
    }
}
