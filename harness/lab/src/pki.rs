//! The lab's PKI, made with `rcgen` (nothing to install, nothing from a cloud account): a
//! root CA, kept in the lab directory so that a broker set up once (mosquitto's `cafile`, a
//! cloud account's registered CA) keeps trusting the devices of every run; made for each run:
//! the broker's server certificate, valid for the names and address the
//! device uses; a client certificate per device; and the bad cases the TLS tests need — a
//! server certificate from a CA the device does not trust, an expired one, one for another
//! host name, a malformed one, and a client certificate from another CA.

use crate::LabError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, in PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
    /// The certificate in DER.
    pub der: Vec<u8>,
    /// The key in PKCS#8 DER.
    pub key_der: Vec<u8>,
}

/// Everything the TLS tests use.
pub struct Pki {
    pub root: Pair,
    /// The root CA certificate in DER (what a device imports).
    pub root_der: Vec<u8>,
    pub server: Pair,
    /// One per device id.
    pub devices: Vec<(String, Pair)>,
    pub untrusted_server: Pair,
    pub expired_server: Pair,
    pub wrong_name_server: Pair,
    pub malformed_server: Pair,
    pub foreign_client: Pair,
    /// The Greengrass core's own CA (certificate only: `key` is its key, kept for no one),
    /// and the core broker's certificate from it, for the broker's names.
    pub core_ca: Pair,
    pub core_server: Pair,
    /// The root and the untrusted CA, to issue certificates for keys made on devices.
    root_ca: Ca,
    rogue_ca: Ca,
}

/// A public key made elsewhere (on a device): P-256, SEC1 uncompressed.
struct DeviceKey(Vec<u8>);

impl rcgen::PublicKeyData for DeviceKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A CA: its certificate, and what signs with it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: Vec<u8>,
}

fn key() -> Result<KeyPair, LabError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| LabError::pki(format!("key: {e}")))
}

fn validity(p: &mut CertificateParams, from_days: i64, to_days: i64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now + Duration::days(from_days);
    p.not_after = now + Duration::days(to_days);
}

fn ca(name: &str) -> Result<Ca, LabError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(LabError::pki)?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "fqp qualification lab");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, -1, 365);
    let key = key()?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| LabError::pki(format!("CA {name}: {e}")))?;
    Ok(Ca {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        issuer: Issuer::new(p, key),
    })
}

/// A leaf certificate signed by `ca`.
fn leaf(
    ca: &Ca,
    cn: &str,
    names: &[&str],
    server: bool,
    days: (i64, i64),
) -> Result<Pair, LabError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(LabError::pki)?;
    p.distinguished_name.push(DnType::CommonName, cn);
    for n in names {
        p.subject_alt_names
            .push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*n).try_into()
                        .map_err(|e| LabError::pki(format!("{n}: {e}")))?,
                ),
            });
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    validity(&mut p, days.0, days.1);
    let key = key()?;
    let cert = p
        .signed_by(&key, &ca.issuer)
        .map_err(|e| LabError::pki(format!("certificate {cn}: {e}")))?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// The broker's host name in the lab.
pub const BROKER_NAME: &str = "broker.fqp.lab";

/// The lab's root CA kept in `dir` (`pki-root.crt`, `pki-root.key`): loaded, or made and
/// saved when there is none or it has expired.
fn lab_root(dir: &Path) -> Result<Ca, LabError> {
    // Runs started together must agree on one root.
    fqp_reports::files::with_lab_lock(dir, || lab_root_locked(dir))
}

fn lab_root_locked(dir: &Path) -> Result<Ca, LabError> {
    let (crt, key_path) = (dir.join("pki-root.crt"), dir.join("pki-root.key"));
    if let (Ok(pem), Ok(key_pem)) = (
        std::fs::read_to_string(&crt),
        std::fs::read_to_string(&key_path),
    ) {
        let bad = |problem: String| LabError::RootCa {
            dir: dir.to_path_buf(),
            problem,
        };
        let der = pem_der(&pem).map_err(|e| bad(e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(e.to_string()))?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad("the key is not the certificate's".into()));
        }
        let until = cert.validity().not_after.timestamp();
        if until > (OffsetDateTime::now_utc() + Duration::days(31)).unix_timestamp() {
            let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Ca { issuer, pem, der });
        }
        tracing::warn!(
            "the lab root CA in {} expires within a month: making a new one",
            dir.display()
        );
    }
    let root = ca("fqp lab root CA")?;
    fqp_reports::files::create_private_dir(dir).map_err(LabError::pki)?;
    // Written aside, then moved in: a reader never sees half a file. The key is this user's
    // alone.
    for (path, text) in [
        (&key_path, root.issuer.key().serialize_pem()),
        (&crt, root.pem.clone()),
    ] {
        fqp_reports::files::write_private(path, &text).map_err(LabError::pki)?;
    }
    Ok(root)
}

/// The lab's code-signing identity, kept in `dir` next to the root (`code-signing.key`,
/// `code-signing.crt`): what `fqp ota sign` signs firmware images with. The key is made once
/// and kept, so images signed with it stay trusted by the boot loaders that hold its public
/// key; the certificate (from the lab root, extended key usage code signing) is issued again
/// when it is missing, expires within a month, or is not the current root's.
pub fn code_signing(dir: &Path) -> Result<Pair, LabError> {
    fqp_reports::files::with_lab_lock(dir, || {
        let root = lab_root_locked(dir)?;
        let (crt, key_path) = (dir.join("code-signing.crt"), dir.join("code-signing.key"));
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| LabError::RootCa {
                dir: dir.to_path_buf(),
                problem: format!("code-signing.key: {e}"),
            })?,
            Err(_) => {
                let key = key()?;
                fqp_reports::files::write_private(&key_path, &key.serialize_pem())
                    .map_err(LabError::pki)?;
                key
            }
        };
        let kept = std::fs::read_to_string(&crt).ok().filter(|pem| {
            let Ok(der) = pem_der(pem) else { return false };
            let (Ok((_, cert)), Ok((_, root_cert))) = (
                x509_parser::parse_x509_certificate(&der),
                x509_parser::parse_x509_certificate(&root.der),
            ) else {
                return false;
            };
            let soon = (OffsetDateTime::now_utc() + Duration::days(31)).unix_timestamp();
            cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
                && cert.verify_signature(Some(root_cert.public_key())).is_ok()
                && cert.validity().not_after.timestamp() > soon
        });
        let cert = match kept {
            Some(pem) => pem,
            None => {
                let mut p = CertificateParams::new(Vec::<String>::new()).map_err(LabError::pki)?;
                p.distinguished_name
                    .push(DnType::CommonName, "fqp lab code signing");
                p.distinguished_name
                    .push(DnType::OrganizationName, "fqp qualification lab");
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
                validity(&mut p, -1, 365);
                let cert = p
                    .signed_by(&key, &root.issuer)
                    .map_err(|e| LabError::pki(format!("code-signing certificate: {e}")))?;
                fqp_reports::files::write_whole(&crt, &cert.pem()).map_err(LabError::pki)?;
                cert.pem()
            }
        };
        Ok(Pair {
            der: pem_der(&cert)?,
            cert,
            key: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    })
}

fn pem_der(pem: &str) -> Result<Vec<u8>, LabError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| LabError::pki(format!("not a PEM certificate: {e}")))?;
    Ok(p.contents)
}

impl Pki {
    /// Makes the lab PKI with the root CA kept in `root_dir` (a new one each time without);
    /// the broker's certificate names [`BROKER_NAME`] and `broker_ip` (the address the device
    /// reaches it at).
    pub fn make(
        broker_ip: &str,
        devices: &[String],
        root_dir: Option<&Path>,
    ) -> Result<Pki, LabError> {
        let root = match root_dir {
            Some(dir) => lab_root(dir)?,
            None => ca("fqp lab root CA")?,
        };
        let rogue = ca("untrusted CA")?;
        let names = [BROKER_NAME, broker_ip];
        let server = leaf(&root, BROKER_NAME, &names, true, (-1, 30))?;
        let devices = devices
            .iter()
            .map(|id| {
                Ok((
                    id.clone(),
                    leaf(&root, &format!("fqp device {id}"), &[], false, (-1, 30))?,
                ))
            })
            .collect::<Result<Vec<_>, LabError>>()?;
        let untrusted_server = leaf(&rogue, BROKER_NAME, &names, true, (-1, 30))?;
        let expired_server = leaf(&root, BROKER_NAME, &names, true, (-30, -1))?;
        let wrong_name_server = leaf(
            &root,
            "elsewhere.fqp.lab",
            &["elsewhere.fqp.lab"],
            true,
            (-1, 30),
        )?;
        // A certificate whose DER is cut short: PEM armour around broken bytes.
        let mut malformed = server.clone();
        let body: String = malformed
            .cert
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let cut = &body[..body.len() / 2];
        malformed.cert = format!("-----BEGIN CERTIFICATE-----\n{cut}\n-----END CERTIFICATE-----\n");
        malformed.der.truncate(malformed.der.len() / 2);
        let foreign_client = leaf(&rogue, "fqp device from elsewhere", &[], false, (-1, 30))?;
        let core = ca("fqp Greengrass core CA")?;
        let core_server = leaf(&core, BROKER_NAME, &names, true, (-1, 30))?;
        Ok(Pki {
            core_ca: Pair {
                cert: core.pem.clone(),
                key: core.issuer.key().serialize_pem(),
                der: core.der.clone(),
                key_der: core.issuer.key().serialize_der(),
            },
            core_server,
            root: Pair {
                cert: root.pem.clone(),
                key: root.issuer.key().serialize_pem(),
                der: root.der.clone(),
                key_der: root.issuer.key().serialize_der(),
            },
            root_der: root.der.clone(),
            server,
            devices,
            untrusted_server,
            expired_server,
            wrong_name_server,
            malformed_server: malformed,
            foreign_client,
            root_ca: root,
            rogue_ca: rogue,
        })
    }

    /// A client certificate (DER) for `public` (a P-256 key made on device `device`, SEC1),
    /// from the lab root — or, `foreign`, from the CA no broker of the lab trusts.
    pub fn issue_client(
        &self,
        device: &str,
        public: &[u8],
        foreign: bool,
    ) -> Result<Vec<u8>, LabError> {
        if public.len() != 65 || public[0] != 4 {
            return Err(LabError::Field {
                field: "public".into(),
                problem: format!(
                    "a device key must be P-256, 65 bytes SEC1 uncompressed; got {} bytes",
                    public.len()
                ),
            });
        }
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(LabError::pki)?;
        p.distinguished_name
            .push(DnType::CommonName, format!("fqp device {device}"));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p, -1, 30);
        let ca = if foreign {
            &self.rogue_ca
        } else {
            &self.root_ca
        };
        let cert = p
            .signed_by(&DeviceKey(public.to_vec()), &ca.issuer)
            .map_err(|e| {
                LabError::pki(format!("issuing a certificate for device {device}: {e}"))
            })?;
        Ok(cert.der().to_vec())
    }

    /// Every certificate and key pair of the run (the root CA's certificate, not its key).
    fn pairs(&self) -> Vec<(String, &Pair)> {
        let mut all: Vec<(String, &Pair)> = vec![
            ("broker".into(), &self.server),
            ("untrusted-broker".into(), &self.untrusted_server),
            ("expired-broker".into(), &self.expired_server),
            ("wrong-name-broker".into(), &self.wrong_name_server),
            ("malformed-broker".into(), &self.malformed_server),
            ("foreign-device".into(), &self.foreign_client),
        ];
        for (id, p) in &self.devices {
            all.push((format!("device-{id}"), p));
        }
        all
    }

    /// Writes the certificates (public material only: `root-ca.crt`, `<name>.crt`) under
    /// `dir`, for a run's output directory; returns the paths.
    pub fn write_certificates(&self, dir: &Path) -> Result<Vec<PathBuf>, LabError> {
        std::fs::create_dir_all(dir).map_err(LabError::file(dir))?;
        let mut written = Vec::new();
        let root = ("root-ca".to_string(), &self.root);
        for (name, p) in std::iter::once(root).chain(self.pairs()) {
            let path = dir.join(format!("{name}.crt"));
            std::fs::write(&path, &p.cert).map_err(LabError::file(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// Writes the certificates and, readable by this user only, the keys of the servers and
    /// devices (never the root CA's, which stays in the lab directory) under `dir`, itself
    /// made private; returns the paths.
    pub fn write_with_keys(&self, dir: &Path) -> Result<Vec<PathBuf>, LabError> {
        fqp_reports::files::create_private_dir(dir).map_err(LabError::pki)?;
        let mut written = self.write_certificates(dir)?;
        for (name, p) in self.pairs() {
            let path = dir.join(format!("{name}.key"));
            fqp_reports::files::write_private(&path, &p.key).map_err(LabError::pki)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// A directory of private files for one run, in the lab directory, removed with it.
pub struct PrivateRunDir(PathBuf);

impl PrivateRunDir {
    /// `<lab>/runs/<pid>`, new and private (what an earlier process of the same id left is
    /// removed first).
    pub fn new(lab: &Path) -> Result<PrivateRunDir, LabError> {
        let dir = lab.join("runs").join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        fqp_reports::files::create_private_dir(&dir).map_err(LabError::pki)?;
        Ok(PrivateRunDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateRunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    /// Whether `cert` was signed by `issuer`'s key.
    fn signed_by(cert: &str, issuer: &str) -> bool {
        let (c, i) = (der(cert), der(issuer));
        let c = X509Certificate::from_der(&c).unwrap().1;
        let i = X509Certificate::from_der(&i).unwrap().1;
        c.verify_signature(Some(i.public_key())).is_ok()
    }

    fn names(cert: &str) -> Vec<String> {
        let d = der(cert);
        let c = X509Certificate::from_der(&d).unwrap().1;
        c.subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn valid_now(cert: &str) -> bool {
        let d = der(cert);
        X509Certificate::from_der(&d)
            .unwrap()
            .1
            .validity()
            .is_valid()
    }

    #[test]
    fn the_code_signing_key_is_kept_and_its_certificate_comes_from_the_lab_root() {
        let dir = std::env::temp_dir().join(format!("fqp-lab-codesign-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = code_signing(&dir).unwrap();
        let b = code_signing(&dir).unwrap();
        assert_eq!(
            (&a.key_der, &a.der),
            (&b.key_der, &b.der),
            "kept, not made again"
        );
        let root = std::fs::read_to_string(dir.join("pki-root.crt")).unwrap();
        assert!(signed_by(&a.cert, &root));
        let d = der(&a.cert);
        let c = X509Certificate::from_der(&d).unwrap().1;
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.code_signing && !eku.server_auth && !eku.client_auth);
        // A certificate that is not the key's is issued again, for the same key.
        std::fs::write(dir.join("code-signing.crt"), a.cert.replace('A', "B")).unwrap();
        let c = code_signing(&dir).unwrap();
        assert_eq!(c.key_der, a.key_der);
        assert!(signed_by(&c.cert, &root));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lab_root_is_kept_in_the_lab_directory() {
        let dir = std::env::temp_dir().join(format!("fqp-lab-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Pki::make("10.0.2.2", &["1".into()], Some(&dir)).unwrap();
        let b = Pki::make("10.0.2.2", &["1".into()], Some(&dir)).unwrap();
        assert_eq!(
            a.root_der, b.root_der,
            "the second run uses the first's root"
        );
        // Certificates of the second run chain to the kept root.
        assert!(signed_by(&b.server.cert, &a.root.cert));
        // Its key is this user's alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("pki-root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A damaged root is refused with the way out, not silently replaced.
        std::fs::write(dir.join("pki-root.key"), "garbage").unwrap();
        let err = Pki::make("10.0.2.2", &[], Some(&dir))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("fix: delete pki-root.crt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lab_pki_has_each_good_and_bad_case() {
        let pki = Pki::make("10.0.2.2", &["1".into(), "2".into()], None).unwrap();
        // Good chain: broker and devices signed by the root, valid now, right names.
        assert!(signed_by(&pki.server.cert, &pki.root.cert));
        assert!(valid_now(&pki.server.cert));
        let n = names(&pki.server.cert);
        assert!(
            n.iter().any(|x| x.contains(BROKER_NAME))
                && n.iter().any(|x| x.contains("0a:00:02:02")),
            "{n:?}"
        );
        assert_eq!(pki.devices.len(), 2);
        assert!(pki
            .devices
            .iter()
            .all(|(_, d)| signed_by(&d.cert, &pki.root.cert)));
        // Bad cases fail for exactly their one reason.
        assert!(!signed_by(&pki.untrusted_server.cert, &pki.root.cert));
        assert!(valid_now(&pki.untrusted_server.cert));
        assert!(signed_by(&pki.expired_server.cert, &pki.root.cert));
        assert!(!valid_now(&pki.expired_server.cert));
        assert!(signed_by(&pki.wrong_name_server.cert, &pki.root.cert));
        assert!(!names(&pki.wrong_name_server.cert)
            .iter()
            .any(|x| x.contains(BROKER_NAME)));
        let broken = x509_parser::pem::parse_x509_pem(pki.malformed_server.cert.as_bytes());
        assert!(
            broken.map_or(true, |(_, p)| X509Certificate::from_der(&p.contents)
                .is_err())
        );
        assert!(!signed_by(&pki.foreign_client.cert, &pki.root.cert));
        // Certificates for keys made on a device, from either CA.
        let device_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let public = device_key.public_key_raw();
        let issued_by = |der: &[u8], issuer: &[u8]| {
            let c = X509Certificate::from_der(der).unwrap().1;
            let i = X509Certificate::from_der(issuer).unwrap().1;
            c.public_key().subject_public_key.data.as_ref() == public
                && c.validity().is_valid()
                && c.verify_signature(Some(i.public_key())).is_ok()
        };
        let lab = pki.issue_client("1", public, false).unwrap();
        assert!(issued_by(&lab, &pki.root_der));
        let foreign = pki.issue_client("1", public, true).unwrap();
        assert!(!issued_by(&foreign, &pki.root_der) && issued_by(&foreign, &pki.rogue_ca.der));
        assert!(pki.issue_client("1", &public[1..], false).is_err());
        // Files.
        let dir = std::env::temp_dir().join(format!("fqp-pki-{}", std::process::id()));
        let files = pki.write_with_keys(&dir).unwrap();
        assert_eq!(files.len(), 9 + 8);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in &files {
            if f.extension().is_some_and(|e| e == "key") {
                assert_eq!(mode(f), 0o600, "{}", f.display());
            }
        }
        assert!(
            !dir.join("root-ca.key").exists(),
            "the root CA's key stays in the lab"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // A run's output holds public material only.
        let public = pki.write_certificates(&dir).unwrap();
        assert_eq!(public.len(), 9);
        assert!(public
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "crt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
