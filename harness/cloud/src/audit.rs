//! Device Defender's *audit*: checks over the registry's configuration, each finding naming
//! the check, what it found and what to do — a certificate attached to several things, a
//! certificate that expires soon, a certificate from a revoked CA still attached, a policy
//! that reaches beyond a thing's own topics.
//!
//! Certificates and CAs are registered with what the audit needs of them (their SHA-256,
//! subject, issuer and expiry: [`CertificateInfo`]); policies are the grants the endpoint
//! honours on top of the contract's rule (`registry::Policy`).

use crate::registry::RegistryError;
use crate::service::Cloud;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A certificate's SHA-256 (hex), subject, issuer and end of validity, as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_after: u64,
    /// A CA's certificate: revoked means no certificate it issued may be in use.
    #[serde(default)]
    pub ca: bool,
    #[serde(default)]
    pub revoked: bool,
}

impl CertificateInfo {
    /// Reads a PEM certificate.
    pub fn from_pem(pem: &str) -> Result<CertificateInfo, String> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&p.contents)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        Ok(CertificateInfo {
            sha256: crate::registry::fingerprint(&p.contents),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert.validity().not_after.timestamp().max(0) as u64,
            ca: cert.is_ca(),
            revoked: false,
        })
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check, as AWS IoT Device Defender names it.
    pub check: &'static str,
    pub resource: String,
    pub reason: String,
    pub fix: &'static str,
}

/// A certificate expiring within this many days is reported.
pub const EXPIRING_DAYS: u64 = 30;

/// Runs every check at `now` (Unix seconds).
pub fn run(cloud: &Cloud, now: u64) -> Result<Vec<Finding>, RegistryError> {
    let registry = cloud.registry();
    let things = registry.things()?;
    let certs: BTreeMap<String, CertificateInfo> = registry
        .certificates()?
        .into_iter()
        .map(|c| (c.sha256.clone(), c))
        .collect();
    let mut by_cert: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &things {
        if let Some(c) = &t.certificate {
            by_cert.entry(c).or_default().push(&t.name);
        }
    }
    let mut out = Vec::new();
    for (sha, holders) in &by_cert {
        if holders.len() > 1 {
            out.push(Finding {
                check: "DEVICE_CERTIFICATE_SHARED_CHECK",
                resource: format!("certificate {sha}"),
                reason: format!(
                    "attached to {} things: {}",
                    holders.len(),
                    holders.join(", ")
                ),
                fix: "give each thing a certificate of its own",
            });
        }
        let Some(info) = certs.get(*sha) else {
            continue;
        };
        if info.not_after < now + EXPIRING_DAYS * 86_400 {
            let days = info.not_after.saturating_sub(now) / 86_400;
            out.push(Finding {
                check: "DEVICE_CERTIFICATE_EXPIRING_CHECK",
                resource: format!("certificate {sha} ({})", info.subject),
                reason: format!("expires in {days} days (of {})", holders.join(", ")),
                fix: "issue the things a new certificate before it expires",
            });
        }
        let revoked = certs
            .values()
            .find(|ca| ca.ca && ca.revoked && ca.subject == info.issuer);
        if let Some(ca) = revoked {
            out.push(Finding {
                check: "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK",
                resource: format!("certificate {sha} ({})", info.subject),
                reason: format!(
                    "issued by the revoked CA {}, still attached to {}",
                    ca.subject,
                    holders.join(", ")
                ),
                fix: "detach the certificate and give the things one from a CA in use",
            });
        }
    }
    for p in registry.policies()? {
        if let Some(why) = p.too_permissive() {
            out.push(Finding {
                check: "IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
                resource: format!("policy {}", p.name),
                reason: why,
                fix: "grant only the thing's own topics: $aws/things/${iot:Connection.Thing.ThingName}/…",
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Policy, Statement};

    fn cert(
        sha: &str,
        subject: &str,
        issuer: &str,
        not_after: u64,
        ca: bool,
        revoked: bool,
    ) -> CertificateInfo {
        CertificateInfo {
            sha256: sha.into(),
            subject: subject.into(),
            issuer: issuer.into(),
            not_after,
            ca,
            revoked,
        }
    }

    #[test]
    fn each_check_finds_what_it_is_for_and_nothing_else() {
        let path = std::env::temp_dir().join(format!("fqp-audit-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Cloud::open(&path).unwrap();
        let r = cloud.registry();
        let now = 1_000_000_000;
        let year = 365 * 86_400;
        r.put_certificate(&cert(
            "ca-old",
            "CN=old CA",
            "CN=old CA",
            now + year,
            true,
            true,
        ))
        .unwrap();
        r.put_certificate(&cert(
            "ca-new",
            "CN=new CA",
            "CN=new CA",
            now + year,
            true,
            false,
        ))
        .unwrap();
        r.put_certificate(&cert(
            "c-good",
            "CN=lamp",
            "CN=new CA",
            now + year,
            false,
            false,
        ))
        .unwrap();
        r.put_certificate(&cert(
            "c-soon",
            "CN=meter",
            "CN=new CA",
            now + 5 * 86_400,
            false,
            false,
        ))
        .unwrap();
        r.put_certificate(&cert(
            "c-old",
            "CN=valve",
            "CN=old CA",
            now + year,
            false,
            false,
        ))
        .unwrap();
        for (t, c) in [
            ("lamp", "c-good"),
            ("meter", "c-soon"),
            ("valve", "c-old"),
            ("pump", "c-good"),
        ] {
            r.put_thing(t, Some(c)).unwrap();
        }
        r.put_policy(&Policy {
            name: "own-topics".into(),
            statements: vec![Statement {
                actions: vec!["publish".into()],
                resources: vec![format!(
                    "$aws/things/{}/telemetry",
                    crate::registry::THING_VARIABLE
                )],
            }],
            things: vec!["lamp".into()],
        })
        .unwrap();
        r.put_policy(&Policy {
            name: "everything".into(),
            statements: vec![Statement {
                actions: vec!["subscribe".into()],
                resources: vec!["$aws/things/+/shadow/#".into()],
            }],
            things: vec![],
        })
        .unwrap();
        let found = run(&cloud, now).unwrap();
        let checks: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.check, f.resource.as_str()))
            .collect();
        assert_eq!(
            checks,
            [
                ("DEVICE_CERTIFICATE_SHARED_CHECK", "certificate c-good"),
                (
                    "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK",
                    "certificate c-old (CN=valve)"
                ),
                (
                    "DEVICE_CERTIFICATE_EXPIRING_CHECK",
                    "certificate c-soon (CN=meter)"
                ),
                ("IOT_POLICY_OVERLY_PERMISSIVE_CHECK", "policy everything"),
            ]
        );
        assert!(found[0].reason.contains("lamp, pump"), "{:?}", found[0]);
        assert!(
            found[2].reason.contains("expires in 5 days"),
            "{:?}",
            found[2]
        );
        drop(cloud);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_pem_certificate_is_read_for_the_audit() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["lamp".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "lamp");
        let c = p.self_signed(&key).unwrap();
        let info = CertificateInfo::from_pem(&c.pem()).unwrap();
        assert_eq!(info.subject, "CN=lamp");
        assert_eq!(info.sha256.len(), 64);
        assert!(!info.ca);
        assert!(CertificateInfo::from_pem("nonsense").is_err());
    }
}
