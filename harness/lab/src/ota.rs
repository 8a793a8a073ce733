//! The updates the `ota` group's tests ask for (`cloud-ota-offer`): the run's own signed
//! image, signed again as the test says — at another version, for another board, by a signer
//! the device does not trust, not at all, altered after signing, cut to a few bytes — and
//! offered to a thing or group through the cloud's OTA service, as an operator would.
//!
//! The payload stays the run's firmware, so an update the device accepts boots into the same
//! tests, which carry on where they left off (`fqp_testkit::reboot_and_resume`). The device
//! holds the lab's code-signing certificate under the name the jobs give
//! ([`CERTIFICATE_NAME`]), provisioned as `code_signing_cert` (DER in hex).

use crate::{field, LabError, Ota, Pki};
use fqp_signing::{Header, KeyFileSigner, Meta, Signer, Version, HEADER_LEN};
use std::sync::atomic::{AtomicU32, Ordering};

/// The name the device holds the lab's code-signing certificate under, as the jobs name it.
pub(crate) const CERTIFICATE_NAME: &str = "code-signing";

/// An update made for a test: the signed file and its file signature (empty: unsigned).
pub(crate) struct Update {
    pub(crate) image: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) id: String,
}

/// What the lab signs updates from.
pub(crate) struct Offers {
    header: Header,
    payload: Vec<u8>,
    signer: KeyFileSigner,
    /// A key of the lab's rogue CA: signatures the device cannot check with the certificate
    /// it holds, and a signer its boot loader does not trust.
    untrusted: KeyFileSigner,
    made: AtomicU32,
}

fn bad(field: &str, problem: impl Into<String>) -> LabError {
    LabError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Offers {
    /// Reads the run's image; adds the certificate the device checks files with.
    pub(crate) fn new(
        ota: Ota<'_>,
        pki: &Pki,
        settings: &mut Vec<(String, String)>,
    ) -> Result<Offers, LabError> {
        let image = std::fs::read(ota.image).map_err(LabError::file(ota.image))?;
        let not_image = |why: String| LabError::Option {
            problem: format!("{}: {why}", ota.image.display()),
            fix: "build the port again (fqp signs the image its boot loader starts)".into(),
        };
        let header = Header::parse(&image).map_err(|e| not_image(e.reason().into()))?;
        if header.image_len() != image.len() {
            return Err(not_image(format!(
                "{} bytes where its header says {}",
                image.len(),
                header.image_len()
            )));
        }
        let key = |der: &[u8]| {
            KeyFileSigner::from_pkcs8_der(der).map_err(|e| LabError::Option {
                problem: format!("the lab's signing key: {e}"),
                fix: "remove the lab directory's code-signing.key and .crt: fqp makes them again"
                    .into(),
            })
        };
        settings.push(("code_signing_cert".into(), hex::encode(&ota.signer.der)));
        Ok(Offers {
            payload: image[HEADER_LEN..].to_vec(),
            header,
            signer: key(&ota.signer.key_der)?,
            untrusted: key(&pki.untrusted_server.key_der)?,
            made: AtomicU32::new(0),
        })
    }

    /// The update `fields` ask for: `version` (`x.y.z`; the run image's if absent), `board`
    /// and `counter` (likewise), `signer` (`lab`, the default; `untrusted`; `none`),
    /// `corrupt=1` (a payload byte altered after signing), `payload` (its first N bytes only).
    pub(crate) fn make(&self, fields: &[(String, String)]) -> Result<Update, LabError> {
        let optional = |k: &str| field(fields, k).ok();
        let version = match optional("version") {
            Some(v) => {
                Version::parse(v).ok_or_else(|| bad("version", "write major.minor.patch"))?
            }
            None => self.header.version,
        };
        let counter = match optional("counter") {
            Some(c) => c.parse().map_err(|_| bad("counter", "a whole number"))?,
            None => self.header.security_counter,
        };
        let board = optional("board")
            .map(str::to_string)
            .or_else(|| self.header.board_name().ok().map(str::to_string))
            .unwrap_or_default();
        let payload = match optional("payload") {
            Some(n) => {
                let n: usize = n.parse().map_err(|_| bad("payload", "a byte count"))?;
                &self.payload[..n.clamp(1, self.payload.len())]
            }
            None => &self.payload[..],
        };
        let meta = Meta {
            version,
            security_counter: counter,
            board,
            load_address: self.header.load_address,
        };
        let (signer, signed): (&dyn Signer, bool) = match optional("signer").unwrap_or("lab") {
            "lab" => (&self.signer, true),
            "untrusted" => (&self.untrusted, true),
            "none" => (&self.signer, false),
            other => {
                return Err(bad(
                    "signer",
                    format!("{other:?}: write lab, untrusted or none"),
                ))
            }
        };
        let mut s = fqp_signing::sign(payload, &meta, signer)
            .map_err(|e| LabError::Refuted(format!("signing the update: {e}")))?;
        if !signed {
            s.file_signature.clear();
        }
        if optional("corrupt") == Some("1") {
            if let Some(last) = s.image.last_mut() {
                *last ^= 0x01;
            }
        }
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Update {
            image: s.image,
            signature: s.file_signature,
            id: format!("lab-{n}"),
        })
    }
}
