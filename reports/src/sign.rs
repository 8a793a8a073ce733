//! Signed results: a lab's key signs the exact bytes of `results.json`, so a report handed to
//! a certification body cannot be edited unnoticed.
//!
//! The signature goes beside the file, in `<file>.sig` (JSON: algorithm, SHA-256 of the signed
//! bytes, DER signature in hex, the signer's certificate in PEM). ECDSA P-256 with SHA-256.
//! The lab key and its certificate live in a *lab directory* (`lab-key.pem`, PKCS#8, and
//! `lab-cert.pem`); a lab supplies its own (a certificate its CA issued) or, on first use, a
//! self-signed pair is made with `rcgen`. Verification checks the bytes against the
//! signature with the certificate's key and that the signer is trusted: the trusted
//! certificate itself, or a certificate for signing results (`extendedKeyUsage` codeSigning,
//! `keyUsage` digitalSignature, not a CA) issued by it, a CA; and within its validity.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The signature file's `format`.
pub const SIGNATURE_FORMAT: &str = "fqp-signature-1";
const ALGORITHM: &str = "ecdsa-p256-sha256";
const KEY_FILE: &str = "lab-key.pem";
const CERT_FILE: &str = "lab-cert.pem";

/// The contents of a `.sig` file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    pub format: String,
    pub algorithm: String,
    /// SHA-256 of the signed file, hex: tells "changed" apart from "signed by someone else".
    pub sha256: String,
    /// DER-encoded ECDSA signature, hex.
    pub signature: String,
    /// The signer's certificate, PEM.
    pub certificate: String,
}

/// Who signed a file, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The certificate's subject, as text.
    pub subject: String,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
}

/// A lab's signing key and certificate.
pub struct LabKey {
    key: KeyPair,
    cert_pem: String,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// A certificate (`what` it is) that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what} is not a PEM certificate: {why}")]
    NotPem { what: &'static str, why: String },
    #[error("{what} holds a {label} where a CERTIFICATE belongs")]
    NotCertificate { what: &'static str, label: String },
    #[error("{what} is not a valid X.509 certificate: {why}")]
    NotX509 { what: &'static str, why: String },
}

/// The lab's signing key could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("lab directory {}: {problem}", .dir.display())]
    Damaged {
        dir: PathBuf,
        problem: Box<KeyError>,
    },
    #[error(
        "lab directory {} has only one of {KEY_FILE} and {CERT_FILE}: supply both, or remove it \
         to have a new self-signed pair made",
        .0.display()
    )]
    HalfPair(PathBuf),
    #[error("cannot make a key: {0}")]
    MakeKey(#[source] rcgen::Error),
    #[error("cannot make a certificate: {0}")]
    MakeCertificate(#[source] rcgen::Error),
    #[error("{KEY_FILE} is not a PKCS#8 PEM private key: {0}")]
    NotKey(#[source] rcgen::Error),
    #[error("{KEY_FILE} is not an ECDSA P-256 key: results are signed with ECDSA P-256")]
    NotP256,
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("{CERT_FILE} is not the certificate of {KEY_FILE}")]
    NotItsCertificate,
    #[error("cannot sign: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signature: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A signed file does not verify, or its signer is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("unknown signature format {format:?}/{algorithm:?} (this fqp checks {SIGNATURE_FORMAT}/{ALGORITHM})")]
    Format { format: String, algorithm: String },
    #[error("the file was changed after it was signed (sha256 now {now}, signed {signed})")]
    Changed { now: String, signed: String },
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("the signature is not hex")]
    NotHex,
    #[error(
        "the signature does not match the file and the certificate: the file or the signature \
         was altered"
    )]
    Mismatch,
    #[error(
        "signed by {} (certificate sha256 {}), which is neither the trusted certificate nor \
         issued by it",
        .0.subject,
        .0.fingerprint
    )]
    Untrusted(Signer),
    #[error(
        "signed by {} (certificate sha256 {}), issued by the trusted CA but {why}",
        .signer.subject,
        .signer.fingerprint
    )]
    NotASigner { signer: Signer, why: NotForResults },
    #[error("the signer's certificate is outside its validity ({not_before} to {not_after})")]
    Expired {
        not_before: String,
        not_after: String,
    },
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: {source} (the results are not signed: fqp writes the signature beside results.json)",
        .path.display()
    )]
    Unsigned {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a signature file: {source}", .path.display())]
    NotSignature {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Why a certificate the trusted CA issued may not sign results.
#[derive(Debug, thiserror::Error)]
pub enum NotForResults {
    #[error("the trusted certificate is not a CA (basicConstraints), so it issues no signers")]
    TrustedNotCa,
    #[error("the trusted CA's keyUsage does not allow it to sign certificates")]
    CaCannotSign,
    #[error("the signer's certificate is a CA's, not a results signer's")]
    SignerIsCa,
    #[error("the signer's certificate lacks keyUsage digitalSignature")]
    NoDigitalSignature,
    #[error(
        "the signer's certificate is not for signing results (extendedKeyUsage codeSigning): a \
         TLS or device certificate of the same CA is not trusted to sign"
    )]
    NotCodeSigning,
}

/// The DER of the first certificate in `pem`.
fn cert_der(pem: &str, what: &'static str) -> Result<Vec<u8>, CertError> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertError::NotPem {
            what,
            why: e.to_string(),
        })?;
    if p.label != "CERTIFICATE" {
        return Err(CertError::NotCertificate {
            what,
            label: p.label,
        });
    }
    Ok(p.contents)
}

fn parse_cert<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, CertError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| CertError::NotX509 {
            what,
            why: e.to_string(),
        })
}

/// Checks `signature` over `bytes` with the public key of certificate `cert`.
fn check(cert: &X509Certificate<'_>, bytes: &[u8], signature: &[u8]) -> bool {
    let point = &cert.public_key().subject_public_key.data;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(bytes, signature)
        .is_ok()
}

impl LabKey {
    /// Loads the lab's key and certificate from `dir`; when neither exists, makes a
    /// self-signed pair for `name` there. Returns whether it was made.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<(LabKey, bool), KeyError> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        if key_path.exists() && cert_path.exists() {
            // Both are only ever there whole (each is written aside and moved in).
            return Self::load_or_create_locked(dir, name);
        }
        // Runs started together must not make two pairs, nor read one half made: one makes
        // it under the lab's lock, the others then load it.
        crate::files::with_lab_lock(dir, || Self::load_or_create_locked(dir, name))
    }

    fn load_or_create_locked(dir: &Path, name: &str) -> Result<(LabKey, bool), KeyError> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        match (key_path.exists(), cert_path.exists()) {
            (false, false) => {
                let lab = Self::create(name)?;
                crate::files::create_private_dir(dir)?;
                crate::files::write_private(&key_path, &lab.key.serialize_pem())?;
                crate::files::write_whole(&cert_path, &lab.cert_pem)?;
                Ok((lab, true))
            }
            (true, true) => {
                let read = |p: &Path| {
                    std::fs::read_to_string(p).map_err(|source| KeyError::Io {
                        path: p.to_path_buf(),
                        source,
                    })
                };
                Self::from_pem(&read(&key_path)?, &read(&cert_path)?)
                    .map(|lab| (lab, false))
                    .map_err(|e| KeyError::Damaged {
                        dir: dir.to_path_buf(),
                        problem: Box::new(e),
                    })
            }
            (true, false) | (false, true) => Err(KeyError::HalfPair(dir.to_path_buf())),
        }
    }

    /// A new key and a self-signed certificate for it, valid for ten years.
    pub fn create(name: &str) -> Result<LabKey, KeyError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(KeyError::MakeKey)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(KeyError::MakeCertificate)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, "fqp results signing");
        params.distinguished_name = dn;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params
            .self_signed(&key)
            .map_err(KeyError::MakeCertificate)?;
        Ok(LabKey {
            key,
            cert_pem: cert.pem(),
        })
    }

    /// A lab's own key (PKCS#8 PEM, ECDSA P-256) and certificate (PEM).
    pub fn from_pem(key_pem: &str, cert_pem: &str) -> Result<LabKey, KeyError> {
        let key = KeyPair::from_pem(key_pem).map_err(KeyError::NotKey)?;
        if !key.is_compatible(&PKCS_ECDSA_P256_SHA256) {
            return Err(KeyError::NotP256);
        }
        let lab = LabKey {
            key,
            cert_pem: cert_pem.to_string(),
        };
        // The certificate must carry this key's public half.
        let probe = b"fqp lab key check";
        let der = cert_der(cert_pem, CERT_FILE)?;
        let cert = parse_cert(&der, CERT_FILE)?;
        let sig = lab.key.sign(probe).map_err(KeyError::Sign)?;
        if !check(&cert, probe, &sig) {
            return Err(KeyError::NotItsCertificate);
        }
        Ok(lab)
    }

    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> Result<Signature, KeyError> {
        let sig = self.key.sign(bytes).map_err(KeyError::Sign)?;
        Ok(Signature {
            format: SIGNATURE_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            sha256: sha256(bytes),
            signature: hex::encode(&sig),
            certificate: self.cert_pem.clone(),
        })
    }

    /// Signs the file at `path`, writing `<path>.sig`; returns the signature's path.
    pub fn sign_file(&self, path: &Path) -> Result<PathBuf, KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        let bytes = std::fs::read(path).map_err(io(path))?;
        let sig = self.sign(&bytes)?;
        let out = signature_path(path);
        let text = serde_json::to_string_pretty(&sig).map_err(KeyError::Encode)?;
        std::fs::write(&out, text + "\n").map_err(io(&out))?;
        Ok(out)
    }
}

/// Where the signature of `path` goes: `<path>.sig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Verifies `bytes` against `sig`, and that the signer is trusted: `trusted` itself (a
/// certificate in PEM), or a results signer it issued.
pub fn verify(bytes: &[u8], sig: &Signature, trusted: &str) -> Result<Signer, VerifyError> {
    if sig.format != SIGNATURE_FORMAT || sig.algorithm != ALGORITHM {
        return Err(VerifyError::Format {
            format: sig.format.clone(),
            algorithm: sig.algorithm.clone(),
        });
    }
    let digest = sha256(bytes);
    if digest != sig.sha256 {
        return Err(VerifyError::Changed {
            now: digest,
            signed: sig.sha256.clone(),
        });
    }
    let der = cert_der(&sig.certificate, "the signature's certificate")?;
    let cert = parse_cert(&der, "the signature's certificate")?;
    let raw = hex::decode(&sig.signature).map_err(|_| VerifyError::NotHex)?;
    if !check(&cert, bytes, &raw) {
        return Err(VerifyError::Mismatch);
    }
    let signer = Signer {
        subject: cert.subject().to_string(),
        fingerprint: sha256(&der),
    };
    let tder = cert_der(trusted, "the trusted certificate")?;
    let tcert = parse_cert(&tder, "the trusted certificate")?;
    let itself = tder == der;
    let issued = !itself
        && cert.issuer() == tcert.subject()
        && cert.verify_signature(Some(tcert.public_key())).is_ok();
    if !itself && !issued {
        return Err(VerifyError::Untrusted(signer));
    }
    if issued {
        if let Err(why) = issued_for_results(&cert, &tcert) {
            return Err(VerifyError::NotASigner { signer, why });
        }
    }
    if !cert.validity().is_valid() {
        return Err(VerifyError::Expired {
            not_before: cert.validity().not_before.to_string(),
            not_after: cert.validity().not_after.to_string(),
        });
    }
    Ok(signer)
}

/// Whether `cert`, issued by `ca`, may sign results: `ca` is a CA, and `cert` is not one and is
/// for signing (keyUsage digitalSignature, extendedKeyUsage codeSigning). A CA that issues
/// TLS certificates too does not make every one of them a results signer.
fn issued_for_results(
    cert: &X509Certificate<'_>,
    ca: &X509Certificate<'_>,
) -> Result<(), NotForResults> {
    let is_ca = |c: &X509Certificate<'_>| {
        c.basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca)
    };
    if !is_ca(ca) {
        return Err(NotForResults::TrustedNotCa);
    }
    if ca
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|k| !k.value.key_cert_sign())
    {
        return Err(NotForResults::CaCannotSign);
    }
    if is_ca(cert) {
        return Err(NotForResults::SignerIsCa);
    }
    if !cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|k| k.value.digital_signature())
    {
        return Err(NotForResults::NoDigitalSignature);
    }
    if !cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.code_signing)
    {
        return Err(NotForResults::NotCodeSigning);
    }
    Ok(())
}

/// Verifies the file at `path` against `<path>.sig`.
pub fn verify_file(path: &Path, trusted: &str) -> Result<Signer, VerifyError> {
    let bytes = std::fs::read(path).map_err(|source| VerifyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sig_path = signature_path(path);
    let text = std::fs::read_to_string(&sig_path).map_err(|source| VerifyError::Unsigned {
        path: sig_path.clone(),
        source,
    })?;
    let sig: Signature =
        serde_json::from_str(&text).map_err(|source| VerifyError::NotSignature {
            path: sig_path.clone(),
            source,
        })?;
    verify(&bytes, &sig, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_verify_and_any_change_is_caught() {
        let lab = LabKey::create("Test Lab").unwrap();
        let data = br#"{"verdict":"passed"}"#;
        let sig = lab.sign(data).unwrap();
        // Trusted as itself.
        let who = verify(data, &sig, lab.certificate_pem()).unwrap();
        assert!(who.subject.contains("Test Lab"), "{}", who.subject);
        // The data changed.
        let e = verify(br#"{"verdict":"failed"}"#, &sig, lab.certificate_pem())
            .unwrap_err()
            .to_string();
        assert!(e.contains("changed after it was signed"), "{e}");
        // The data and its digest changed (a forger who updated the sha256 field).
        let mut forged = sig.clone();
        forged.sha256 = sha256(br#"{"verdict":"failed"}"#);
        let e = verify(br#"{"verdict":"failed"}"#, &forged, lab.certificate_pem())
            .unwrap_err()
            .to_string();
        assert!(e.contains("signature does not match"), "{e}");
        // Re-signed by another key: valid signature, but not by the trusted lab.
        let other = LabKey::create("Someone Else").unwrap();
        let resigned = other.sign(data).unwrap();
        assert!(verify(data, &resigned, other.certificate_pem()).is_ok());
        let e = verify(data, &resigned, lab.certificate_pem())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Someone Else") && e.contains("neither the trusted"),
            "{e}"
        );
    }

    #[test]
    fn a_key_certified_by_the_labs_ca_is_trusted() {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "Lab CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
        let signer = |name: &str, usage: bool, ca: bool| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
            leaf.distinguished_name.push(DnType::CommonName, name);
            leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            // For signing results, or (without `usage`) a TLS client certificate of that CA.
            leaf.extended_key_usages = vec![if usage {
                rcgen::ExtendedKeyUsagePurpose::CodeSigning
            } else {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            }];
            if ca {
                leaf.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            }
            let cert = leaf.signed_by(&key, &issuer).unwrap();
            LabKey::from_pem(&key.serialize_pem(), &cert.pem()).unwrap()
        };
        let lab = signer("Bench 3", true, false);
        let sig = lab.sign(b"data").unwrap();
        let who = verify(b"data", &sig, &ca_cert.pem()).unwrap();
        assert!(who.subject.contains("Bench 3"));
        // Any other certificate of that CA is not a results signer.
        let tls = signer("device 7", false, false).sign(b"data").unwrap();
        let e = verify(b"data", &tls, &ca_cert.pem())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not for signing results"), "{e}");
        let sub_ca = signer("sub CA", true, true).sign(b"data").unwrap();
        let e = verify(b"data", &sub_ca, &ca_cert.pem())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a CA's"), "{e}");
        // A trusted certificate that is no CA issues no signers.
        let plain_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut plain_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        plain_params
            .distinguished_name
            .push(DnType::CommonName, "Plain");
        let plain_cert = plain_params.self_signed(&plain_key).unwrap();
        let plain_issuer = rcgen::Issuer::from_params(&plain_params, &plain_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "Under plain");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let under = LabKey::from_pem(
            &key.serialize_pem(),
            &leaf.signed_by(&key, &plain_issuer).unwrap().pem(),
        )
        .unwrap();
        let e = verify(b"data", &under.sign(b"data").unwrap(), &plain_cert.pem())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CA"), "{e}");
    }

    #[test]
    fn runs_started_together_share_one_new_lab_key() {
        let dir = std::env::temp_dir().join(format!("fqp-lab-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let certs: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| LabKey::load_or_create(&dir, "Lab").map(|(k, _)| k.cert_pem)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(certs.iter().all(|c| c == &certs[0]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lab_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("fqp-lab-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        LabKey::load_or_create(&dir, "Lab").unwrap();
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(""), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lab_directory_is_made_once_and_checked() {
        let dir = std::env::temp_dir().join(format!("fqp-lab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, made) = LabKey::load_or_create(&dir, "Lab").unwrap();
        assert!(made);
        let (b, made) = LabKey::load_or_create(&dir, "Lab").unwrap();
        assert!(!made);
        assert_eq!(a.certificate_pem(), b.certificate_pem());
        // A certificate of another key is refused.
        let other = LabKey::create("Other").unwrap();
        std::fs::write(dir.join(CERT_FILE), other.certificate_pem()).unwrap();
        let e = LabKey::load_or_create(&dir, "Lab")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is not the certificate of lab-key.pem"), "{e}");
        std::fs::remove_file(dir.join(CERT_FILE)).unwrap();
        let e = LabKey::load_or_create(&dir, "Lab")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("only one of"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
