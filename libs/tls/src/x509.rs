//! Checking a server's certificate chain: just what a TLS client needs of X.509, from DER.
//!
//! Why our own: qualification asserts *why* a server was refused (an untrusted issuer, an
//! expired certificate, another host's certificate, bytes that are not a certificate), so every
//! refusal has its own [`CertError`]. The subset: ECDSA P-256 with SHA-256 signatures (what the
//! lab PKI and the usual IoT brokers issue), validity times, subject alternative names (DNS,
//! with a leftmost wildcard label, and IPv4) with the common name as fallback, basic
//! constraints on issuers, extended key usage on the server's certificate, and refusal of any
//! critical extension not understood.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};

/// Why a certificate chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// The bytes are not a well-formed certificate (or the root given is not one).
    Malformed,
    /// No certificate of the chain was issued by the trusted root.
    UnknownIssuer,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A certificate's validity ended before now.
    Expired,
    /// A certificate's validity starts after now.
    NotYetValid,
    /// The server's certificate is for other names than the one connected to.
    NameMismatch,
    /// An issuer in the chain is not a CA (basic constraints).
    NotCa,
    /// The server's certificate is not for server authentication (extended key usage).
    WrongUsage,
    /// A key or signature algorithm other than ECDSA P-256 / SHA-256, or an unknown critical
    /// extension.
    Unsupported,
    /// The server sent no certificate, or more than this client follows.
    BadChain,
}

/// One DER element: its tag, its contents and all of its bytes.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    raw: &'a [u8],
}

/// Reads DER elements one after another.
struct Der<'a>(&'a [u8]);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const ANY_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn next(&mut self) -> Result<Tlv<'a>, CertError> {
        let b = self.0;
        let (&tag, rest) = b.split_first().ok_or(CertError::Malformed)?;
        if tag & 0x1f == 0x1f {
            return Err(CertError::Malformed); // high tag numbers: not in a certificate
        }
        let (&first, mut rest) = rest.split_first().ok_or(CertError::Malformed)?;
        let len = match first {
            0..=0x7f => first as usize,
            0x81..=0x83 => {
                let n = (first & 0x7f) as usize;
                if rest.len() < n || rest[0] == 0 {
                    return Err(CertError::Malformed);
                }
                let len = rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
                rest = &rest[n..];
                if len < 0x80 {
                    return Err(CertError::Malformed); // not the shortest form: not DER
                }
                len
            }
            _ => return Err(CertError::Malformed), // indefinite or absurd lengths
        };
        if rest.len() < len {
            return Err(CertError::Malformed);
        }
        let header = b.len() - rest.len();
        self.0 = &rest[len..];
        Ok(Tlv {
            tag,
            value: &rest[..len],
            raw: &b[..header + len],
        })
    }

    fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, CertError> {
        let t = self.next()?;
        if t.tag == tag {
            Ok(t)
        } else {
            Err(CertError::Malformed)
        }
    }

    /// The next element if it has `tag`, else nothing (and nothing read).
    fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, CertError> {
        match self.0.first() {
            Some(&t) if t == tag => self.next().map(Some),
            _ => Ok(None),
        }
    }
}

/// What the checks use of one certificate.
pub(crate) struct Cert<'a> {
    tbs: &'a [u8],
    signature_alg: &'a [u8],
    signature: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    not_before: u64,
    not_after: u64,
    /// SEC1 public key, when the key is P-256.
    public_key: Option<&'a [u8]>,
    /// The contents of the extensions SEQUENCE (empty when there are none).
    extensions: &'a [u8],
}

fn time(t: Tlv<'_>) -> Result<u64, CertError> {
    let digits = |s: &[u8]| -> Result<u64, CertError> {
        s.iter().try_fold(0u64, |a, &c| {
            if c.is_ascii_digit() {
                Ok(a * 10 + (c - b'0') as u64)
            } else {
                Err(CertError::Malformed)
            }
        })
    };
    let v = t.value;
    let (year, rest) = match (t.tag, v.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&v[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &v[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&v[..4])?, &v[4..]),
        _ => return Err(CertError::Malformed),
    };
    if rest[10] != b'Z' {
        return Err(CertError::Malformed);
    }
    let [month, day, hour, min, sec] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
    let (month, day, hour, min, sec) = (month?, day?, hour?, min?, sec?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(CertError::Malformed);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; years from 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

impl<'a> Cert<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Result<Cert<'a>, CertError> {
        let mut top = Der(der);
        let cert = top.expect(SEQUENCE)?;
        if !top.is_empty() {
            return Err(CertError::Malformed);
        }
        let mut c = Der(cert.value);
        let tbs = c.expect(SEQUENCE)?;
        let alg = c.expect(SEQUENCE)?;
        let signature = c.expect(BIT_STRING)?.value;
        if !c.is_empty() {
            return Err(CertError::Malformed);
        }
        let signature_alg = Der(alg.value).expect(OID)?.value;
        let signature = match signature.split_first() {
            Some((0, bits)) => bits,
            _ => return Err(CertError::Malformed),
        };

        let mut t = Der(tbs.value);
        t.optional(0xa0)?; // version
        t.expect(0x02)?; // serial number
        t.expect(SEQUENCE)?; // signature algorithm (again)
        let issuer = t.expect(SEQUENCE)?.raw;
        let mut validity = Der(t.expect(SEQUENCE)?.value);
        let not_before = time(validity.next()?)?;
        let not_after = time(validity.next()?)?;
        let subject = t.expect(SEQUENCE)?.raw;
        let mut spki = Der(t.expect(SEQUENCE)?.value);
        let mut key_alg = Der(spki.expect(SEQUENCE)?.value);
        let key_oid = key_alg.expect(OID)?.value;
        let curve = key_alg.optional(OID)?.map(|c| c.value);
        let key = spki.expect(BIT_STRING)?.value;
        let public_key = match (key_oid == EC_PUBLIC_KEY, curve, key.split_first()) {
            (true, Some(PRIME256V1), Some((0, k))) => Some(k),
            _ => None,
        };
        t.optional(0x81)?; // issuer unique id
        t.optional(0x82)?; // subject unique id
        let extensions = match t.optional(0xa3)? {
            Some(e) => Der(e.value).expect(SEQUENCE)?.value,
            None => &[],
        };
        if !t.is_empty() {
            return Err(CertError::Malformed);
        }
        let parsed = Cert {
            tbs: tbs.raw,
            signature_alg,
            signature,
            issuer,
            subject,
            not_before,
            not_after,
            public_key,
            extensions,
        };
        // Walk the extensions once now, so a damaged one is caught as malformed.
        parsed.each_extension(|_, _, _| Ok(()))?;
        Ok(parsed)
    }

    /// Calls `f(oid, critical, value)` for every extension.
    fn each_extension(
        &self,
        mut f: impl FnMut(&'a [u8], bool, &'a [u8]) -> Result<(), CertError>,
    ) -> Result<(), CertError> {
        let mut exts = Der(self.extensions);
        while !exts.is_empty() {
            let mut e = Der(exts.expect(SEQUENCE)?.value);
            let oid = e.expect(OID)?.value;
            let critical = match e.optional(BOOLEAN)? {
                Some(b) => b.value == [0xff],
                None => false,
            };
            let value = e.expect(OCTET_STRING)?.value;
            f(oid, critical, value)?;
        }
        Ok(())
    }

    fn extension(&self, want: &[u8]) -> Result<Option<&'a [u8]>, CertError> {
        let mut found = None;
        self.each_extension(|oid, _, v| {
            if oid == want {
                found = Some(v);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Refuses critical extensions this client does not understand.
    fn check_critical(&self) -> Result<(), CertError> {
        self.each_extension(|oid, critical, _| {
            let known = [
                SUBJECT_ALT_NAME,
                BASIC_CONSTRAINTS,
                KEY_USAGE,
                EXT_KEY_USAGE,
                SUBJECT_KEY_ID,
                AUTHORITY_KEY_ID,
            ]
            .contains(&oid);
            if critical && !known {
                Err(CertError::Unsupported)
            } else {
                Ok(())
            }
        })
    }

    fn is_ca(&self) -> Result<bool, CertError> {
        let Some(bc) = self.extension(BASIC_CONSTRAINTS)? else {
            return Ok(false);
        };
        let mut seq = Der(Der(bc).expect(SEQUENCE)?.value);
        Ok(seq.optional(BOOLEAN)?.is_some_and(|b| b.value == [0xff]))
    }

    /// Whether `issuer` signed this certificate.
    fn signed_by(&self, issuer: &Cert<'_>) -> Result<(), CertError> {
        if self.signature_alg != ECDSA_WITH_SHA256 {
            return Err(CertError::Unsupported);
        }
        let key = issuer.public_key.ok_or(CertError::Unsupported)?;
        let key = VerifyingKey::from_sec1_bytes(key).map_err(|_| CertError::Malformed)?;
        let sig = Signature::from_der(self.signature).map_err(|_| CertError::Malformed)?;
        key.verify(self.tbs, &sig)
            .map_err(|_| CertError::BadSignature)
    }

    fn valid_at(&self, now: u64) -> Result<(), CertError> {
        if now < self.not_before {
            Err(CertError::NotYetValid)
        } else if now > self.not_after {
            Err(CertError::Expired)
        } else {
            Ok(())
        }
    }

    /// Whether the certificate names `host` (a DNS name or an IPv4 address).
    fn names(&self, host: &str) -> Result<bool, CertError> {
        let ip = parse_ipv4(host);
        if let Some(san) = self.extension(SUBJECT_ALT_NAME)? {
            let mut names = Der(Der(san).expect(SEQUENCE)?.value);
            while !names.is_empty() {
                let n = names.next()?;
                let hit = match n.tag {
                    0x82 => ip.is_none() && dns_matches(n.value, host.as_bytes()),
                    0x87 => ip.is_some_and(|a| n.value == a),
                    _ => false,
                };
                if hit {
                    return Ok(true);
                }
            }
            // With alternative names present, the common name does not count (RFC 6125).
            return Ok(false);
        }
        if ip.is_some() {
            return Ok(false);
        }
        let mut rdns = Der(Der(self.subject).expect(SEQUENCE)?.value);
        while !rdns.is_empty() {
            let mut set = Der(rdns.expect(SET)?.value);
            while !set.is_empty() {
                let mut atv = Der(set.expect(SEQUENCE)?.value);
                if atv.expect(OID)?.value == COMMON_NAME
                    && dns_matches(atv.next()?.value, host.as_bytes())
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Whether the certificate may be used for `purpose` (an extended key usage; none listed
    /// means any).
    fn allows(&self, purpose: &[u8]) -> Result<bool, CertError> {
        let Some(eku) = self.extension(EXT_KEY_USAGE)? else {
            return Ok(true);
        };
        let mut purposes = Der(Der(eku).expect(SEQUENCE)?.value);
        while !purposes.is_empty() {
            let p = purposes.expect(OID)?.value;
            if p == purpose || p == ANY_EXT_KEY_USAGE {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

pub(crate) fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A certificate's DNS name against a host name: case-insensitive, with `*` allowed as the
/// whole leftmost label (matching exactly one label, never in a name of fewer than 3 labels).
fn dns_matches(pattern: &[u8], host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if let Some(suffix) = pattern.strip_prefix(b"*.") {
        let labels = suffix.split(|&c| c == b'.').count();
        if labels < 2 || suffix.contains(&b'*') {
            return false;
        }
        return match host.iter().position(|&c| c == b'.') {
            Some(dot) if dot > 0 => host[dot + 1..].eq_ignore_ascii_case(suffix),
            _ => false,
        };
    }
    !pattern.contains(&b'*') && pattern.eq_ignore_ascii_case(host)
}

/// Most certificates a server may send (its own and the issuers up to the root).
pub const MAX_CHAIN: usize = 4;

/// Checks a server's chain (`chain[0]` the server's certificate, each next one its issuer)
/// against `root`, for `host` at `now` (Unix seconds; `None`: the device has no clock and
/// validity times are not checked). Returns the server's P-256 public key (SEC1), which signs
/// the rest of the handshake.
pub fn verify_server(
    chain: &[&[u8]],
    root: &[u8],
    host: &str,
    now: Option<u64>,
) -> Result<[u8; 65], CertError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(CertError::BadChain);
    }
    let root = Cert::parse(root)?;
    let mut certs: heapless::Vec<Cert<'_>, MAX_CHAIN> = heapless::Vec::new();
    for der in chain {
        let _ = certs.push(Cert::parse(der)?);
    }
    // Up the chain until a certificate the root issued.
    let mut i = 0;
    loop {
        let c = &certs[i];
        c.check_critical()?;
        if c.issuer == root.subject {
            c.signed_by(&root)?;
            break;
        }
        let Some(issuer) = certs.get(i + 1) else {
            return Err(CertError::UnknownIssuer);
        };
        if c.issuer != issuer.subject {
            return Err(CertError::UnknownIssuer);
        }
        if !issuer.is_ca()? {
            return Err(CertError::NotCa);
        }
        c.signed_by(issuer)?;
        i += 1;
    }
    if let Some(now) = now {
        for c in &certs[..=i] {
            c.valid_at(now)?;
        }
        root.valid_at(now)?;
    }
    let leaf = &certs[0];
    if !leaf.names(host)? {
        return Err(CertError::NameMismatch);
    }
    if !leaf.allows(SERVER_AUTH)? {
        return Err(CertError::WrongUsage);
    }
    let key = leaf.public_key.ok_or(CertError::Unsupported)?;
    key.try_into().map_err(|_| CertError::Unsupported)
}

/// The P-256 public key (SEC1) of a code-signing certificate — the one an OTA job names, that
/// the device holds — to check a downloaded file's signature with. The certificate is the
/// device's trust in its signer (it was provisioned), so no chain is followed; it must be
/// well formed, for code signing (extended key usage, if it lists any), with no unknown
/// critical extension, and with a P-256 key.
pub fn code_signing_key(der: &[u8]) -> Result<[u8; 65], CertError> {
    let cert = Cert::parse(der)?;
    cert.check_critical()?;
    if !cert.allows(CODE_SIGNING)? {
        return Err(CertError::WrongUsage);
    }
    let key = cert.public_key.ok_or(CertError::Unsupported)?;
    key.try_into().map_err(|_| CertError::Unsupported)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    use std::vec::Vec;

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn days(d: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::days(d)
    }

    fn ca(name: &str, issuer: Option<&Ca>, is_ca: bool) -> Ca {
        let mut p = CertificateParams::new(Vec::<std::string::String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        if is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p.not_before = days(-1);
        p.not_after = days(365);
        let key = KeyPair::generate().unwrap();
        let der = match issuer {
            Some(i) => p
                .signed_by(&key, &Issuer::from_params(&i.params, &i.key))
                .unwrap(),
            None => p.self_signed(&key).unwrap(),
        }
        .der()
        .to_vec();
        Ca {
            params: p,
            key,
            der,
        }
    }

    fn server(issuer: &Ca, cn: &str, sans: &[&str], from: i64, to: i64) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<std::string::String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        for n in sans {
            p.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            });
        }
        p.extended_key_usages = std::vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_before = days(from);
        p.not_after = days(to);
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
            .unwrap()
            .der()
            .to_vec()
    }

    const HOST: &str = "broker.fqp.lab";

    #[test]
    fn a_code_signing_certificate_gives_its_key_and_others_are_refused() {
        let root = ca("root", None, true);
        let signer = |usage: Option<ExtendedKeyUsagePurpose>| {
            let mut p = CertificateParams::new(Vec::<std::string::String>::new()).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, "code signing");
            p.extended_key_usages = usage.into_iter().collect();
            let key = KeyPair::generate().unwrap();
            let der = p
                .signed_by(&key, &Issuer::from_params(&root.params, &root.key))
                .unwrap()
                .der()
                .to_vec();
            (der, key.public_key_raw().to_vec())
        };
        let (der, public) = signer(Some(ExtendedKeyUsagePurpose::CodeSigning));
        assert_eq!(
            code_signing_key(&der).unwrap().as_slice(),
            public.as_slice()
        );
        // No extended key usage: any use, code signing among them.
        let (der, public) = signer(None);
        assert_eq!(
            code_signing_key(&der).unwrap().as_slice(),
            public.as_slice()
        );
        // A server's certificate is not a signer's.
        let (der, _) = signer(Some(ExtendedKeyUsagePurpose::ServerAuth));
        assert_eq!(code_signing_key(&der), Err(CertError::WrongUsage));
        assert_eq!(code_signing_key(&der[..40]), Err(CertError::Malformed));
    }

    #[test]
    fn a_good_chain_passes_and_yields_the_server_key() {
        let root = ca("root", None, true);
        let leaf = server(&root, HOST, &[HOST, "10.0.2.2"], -1, 30);
        let key = verify_server(&[&leaf], &root.der, HOST, Some(now())).unwrap();
        assert_eq!(key[0], 4);
        verify_server(&[&leaf], &root.der, "10.0.2.2", Some(now())).unwrap();
        verify_server(&[&leaf], &root.der, "BROKER.fqp.lab.", Some(now())).unwrap();
        // The root sent along by the server changes nothing.
        verify_server(&[&leaf, &root.der], &root.der, HOST, Some(now())).unwrap();
    }

    #[test]
    fn each_bad_chain_is_refused_for_its_own_reason() {
        let root = ca("root", None, true);
        let rogue = ca("rogue", None, true);
        let t = Some(now());
        let untrusted = server(&rogue, HOST, &[HOST], -1, 30);
        assert_eq!(
            verify_server(&[&untrusted], &root.der, HOST, t),
            Err(CertError::UnknownIssuer)
        );
        let expired = server(&root, HOST, &[HOST], -30, -1);
        assert_eq!(
            verify_server(&[&expired], &root.der, HOST, t),
            Err(CertError::Expired)
        );
        // Without a clock, validity is not checked.
        assert!(verify_server(&[&expired], &root.der, HOST, None).is_ok());
        let future = server(&root, HOST, &[HOST], 2, 30);
        assert_eq!(
            verify_server(&[&future], &root.der, HOST, t),
            Err(CertError::NotYetValid)
        );
        let elsewhere = server(&root, "elsewhere.fqp.lab", &["elsewhere.fqp.lab"], -1, 30);
        assert_eq!(
            verify_server(&[&elsewhere], &root.der, HOST, t),
            Err(CertError::NameMismatch)
        );
        let good = server(&root, HOST, &[HOST], -1, 30);
        assert_eq!(
            verify_server(&[&good[..good.len() / 2]], &root.der, HOST, t),
            Err(CertError::Malformed)
        );
        let mut forged = good.clone();
        let n = forged.len();
        forged[n - 40] ^= 1; // inside the signature's r or s
        assert!(matches!(
            verify_server(&[&forged], &root.der, HOST, t),
            Err(CertError::BadSignature | CertError::Malformed)
        ));
        assert_eq!(
            verify_server(&[], &root.der, HOST, t),
            Err(CertError::BadChain)
        );
    }

    #[test]
    fn intermediates_must_be_cas_and_lead_to_the_root() {
        let root = ca("root", None, true);
        let mid = ca("intermediate", Some(&root), true);
        let leaf = server(&mid, HOST, &[HOST], -1, 30);
        verify_server(&[&leaf, &mid.der], &root.der, HOST, Some(now())).unwrap();
        // The intermediate missing: the root did not issue the server's certificate.
        assert_eq!(
            verify_server(&[&leaf], &root.der, HOST, Some(now())),
            Err(CertError::UnknownIssuer)
        );
        let not_ca = ca("intermediate", Some(&root), false);
        let leaf = server(&not_ca, HOST, &[HOST], -1, 30);
        assert_eq!(
            verify_server(&[&leaf, &not_ca.der], &root.der, HOST, Some(now())),
            Err(CertError::NotCa)
        );
    }

    #[test]
    fn names_follow_rfc_6125() {
        assert!(dns_matches(b"*.fqp.lab", b"broker.fqp.lab"));
        assert!(!dns_matches(b"*.fqp.lab", b"a.broker.fqp.lab"));
        assert!(!dns_matches(b"*.lab", b"fqp.lab"));
        assert!(!dns_matches(b"b*.fqp.lab", b"broker.fqp.lab"));
        assert!(!dns_matches(b"*.fqp.lab", b".fqp.lab"));
        assert!(dns_matches(b"Broker.FQP.lab", b"broker.fqp.LAB"));
        assert_eq!(parse_ipv4("10.0.2.2"), Some([10, 0, 2, 2]));
        assert_eq!(parse_ipv4("10.0.2"), None);
        assert_eq!(parse_ipv4("10.0.2.256"), None);
        // Common name only when there are no alternative names.
        let root = ca("root", None, true);
        let cn_only = server(&root, HOST, &[], -1, 30);
        verify_server(&[&cn_only], &root.der, HOST, Some(now())).unwrap();
        let with_san = server(&root, HOST, &["other.fqp.lab"], -1, 30);
        assert_eq!(
            verify_server(&[&with_san], &root.der, HOST, Some(now())),
            Err(CertError::NameMismatch)
        );
    }

    #[test]
    fn times_are_read_as_utc() {
        let t = |tag, s: &str| {
            time(Tlv {
                tag,
                value: s.as_bytes(),
                raw: &[],
            })
        };
        assert_eq!(t(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(t(UTC_TIME, "261124103609Z"), Ok(1_795_516_569));
        assert_eq!(t(GENERALIZED_TIME, "20500101000000Z"), Ok(2_524_608_000));
        assert_eq!(t(UTC_TIME, "261324103609Z"), Err(CertError::Malformed));
        assert_eq!(t(UTC_TIME, "2611241036Z"), Err(CertError::Malformed));
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever certificates a server presents, parsing and checking them never panics,
        /// and nothing damaged is accepted for the host.
        #[test]
        fn fuzz_certificates(input in fqp_fuzzing::inputs(corpus().0.clone(), 600)) {
            let (_, root) = corpus();
            let _ = Cert::parse(&input);
            let verdict = verify_server(&[&input], root, "broker.fqp.lab", Some(now()));
            if verdict.is_ok() {
                // Only an intact certificate the root issued can pass.
                proptest::prop_assert!(corpus().0.iter().any(|s| s == &input));
            }
        }
    }

    /// Certificates of a lab: a server's (good), and others, with the root that issued them.
    fn corpus() -> &'static (Vec<Vec<u8>>, &'static [u8]) {
        static CORPUS: std::sync::OnceLock<(Vec<Vec<u8>>, &'static [u8])> =
            std::sync::OnceLock::new();
        CORPUS.get_or_init(|| {
            let root = ca("fuzz root", None, true);
            let mut leaves = Vec::new();
            for names in [&["broker.fqp.lab"][..], &["*.fqp.lab", "10.0.2.2"][..]] {
                let mut p = CertificateParams::new(
                    names
                        .iter()
                        .map(|n| std::string::String::from(*n))
                        .collect::<Vec<_>>(),
                )
                .unwrap();
                p.distinguished_name.push(DnType::CommonName, "fuzz server");
                p.extended_key_usages = std::vec![ExtendedKeyUsagePurpose::ServerAuth];
                p.not_before = days(-1);
                p.not_after = days(365);
                let key = KeyPair::generate().unwrap();
                let issuer = Issuer::from_params(&root.params, &root.key);
                leaves.push(p.signed_by(&key, &issuer).unwrap().der().to_vec());
            }
            leaves.push(root.der.clone());
            let root_der: &'static [u8] = std::boxed::Box::leak(root.der.into_boxed_slice());
            (leaves, root_der)
        })
    }
}
