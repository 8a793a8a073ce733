//! # fqp-keystore: keys that never leave, PKCS#11 in spirit
//!
//! Objects are addressed by label: EC P-256 key pairs generated inside the keystore (only
//! the public half and signatures come out; there is no call that returns a private key) and
//! certificates imported in DER, kept in an arena the port gives (so the keystore itself is
//! small enough for a task's stack, and certificate space is the port's choice). Random numbers come from a ChaCha20 DRBG seeded with the
//! port's [`Entropy`]. A port with storage persists the objects through [`Storage`]; without,
//! they live until reset.
//!
//! [`Keystore::signer`] lends a key as a `signature::SignerMut`, which is how a TLS client
//! signs its handshake with a key it cannot read.

#![no_std]

#[cfg(test)]
extern crate std;

pub use fqp_port::{DeviceError, Entropy, Storage};
use heapless::{String, Vec};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Key pairs held at once.
pub const MAX_KEYS: usize = 8;
/// Certificates held at once.
pub const MAX_CERTS: usize = 8;
/// Longest label.
pub const MAX_LABEL: usize = 32;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No object has this label (or not of the kind asked for).
    NotFound,
    /// An object already has this label.
    Exists,
    /// Every slot, or the certificate arena, is used.
    Full,
    /// A label or a stored image is too long.
    TooLong,
    /// The entropy source failed, or stored data is damaged.
    Failed,
}

impl From<DeviceError> for Error {
    fn from(e: DeviceError) -> Error {
        match e {
            DeviceError::Failed | DeviceError::BadAddress => Error::Failed,
            DeviceError::TooLong => Error::TooLong,
        }
    }
}

/// A certificate: its label and where it lies in the arena.
struct Cert {
    label: String<MAX_LABEL>,
    start: usize,
    len: usize,
}

/// The keystore; certificates live in the arena it borrows.
pub struct Keystore<'a> {
    keys: Vec<(String<MAX_LABEL>, SigningKey), MAX_KEYS>,
    certs: Vec<Cert, MAX_CERTS>,
    arena: &'a mut [u8],
    used: usize,
    rng: ChaCha20Rng,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn label(s: &str) -> Result<String<MAX_LABEL>, Error> {
    String::try_from(s).map_err(|_| Error::TooLong)
}

impl<'a> Keystore<'a> {
    /// An empty keystore whose DRBG is seeded from `entropy`, keeping certificates in `arena`.
    pub fn new(entropy: &(impl Entropy + ?Sized), arena: &'a mut [u8]) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed)?;
        Ok(Keystore {
            keys: Vec::new(),
            certs: Vec::new(),
            arena,
            used: 0,
            rng: ChaCha20Rng::from_seed(seed),
        })
    }

    fn taken(&self, l: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == l) || self.certs.iter().any(|c| c.label == l)
    }

    /// Random bytes from the DRBG.
    pub fn random(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
    }

    /// Generates a P-256 key pair under `l`; returns its public key (SEC1, uncompressed, 65
    /// bytes).
    pub fn generate_p256(&mut self, l: &str) -> Result<[u8; 65], Error> {
        let name = label(l)?;
        if self.taken(l) {
            return Err(Error::Exists);
        }
        if self.keys.is_full() {
            return Err(Error::Full);
        }
        let key = SigningKey::random(&mut self.rng);
        let public = encode_public(&key);
        self.keys.push((name, key)).map_err(|_| Error::Full)?;
        Ok(public)
    }

    fn key(&self, l: &str) -> Result<&SigningKey, Error> {
        self.keys
            .iter()
            .find(|(k, _)| k == l)
            .map(|(_, key)| key)
            .ok_or(Error::NotFound)
    }

    /// The public key of key pair `l` (SEC1, uncompressed).
    pub fn public_key(&self, l: &str) -> Result<[u8; 65], Error> {
        self.key(l).map(encode_public)
    }

    /// Signs the SHA-256 digest `digest` with key `l`: ECDSA, `r || s` (64 bytes).
    pub fn sign_digest(&self, l: &str, digest: &[u8; 32]) -> Result<[u8; 64], Error> {
        let sig: Signature = self
            .key(l)?
            .sign_prehash(digest)
            .map_err(|_| Error::Failed)?;
        Ok(sig.to_bytes().into())
    }

    /// Hashes `msg` with SHA-256 and signs it with key `l`.
    pub fn sign(&self, l: &str, msg: &[u8]) -> Result<[u8; 64], Error> {
        self.sign_digest(l, &sha256(msg))
    }

    /// Lends key `l` as a signer (for a TLS client's certificate verify).
    pub fn signer(&self, l: &str) -> Result<KeySigner<'_>, Error> {
        self.key(l).map(KeySigner)
    }

    /// Stores certificate `der` under `l`.
    pub fn import_certificate(&mut self, l: &str, der: &[u8]) -> Result<(), Error> {
        let name = label(l)?;
        if self.taken(l) {
            return Err(Error::Exists);
        }
        let end = self.used + der.len();
        if end > self.arena.len() || self.certs.is_full() {
            return Err(Error::Full);
        }
        self.arena[self.used..end].copy_from_slice(der);
        self.certs
            .push(Cert {
                label: name,
                start: self.used,
                len: der.len(),
            })
            .map_err(|_| Error::Full)?;
        self.used = end;
        Ok(())
    }

    /// The certificate under `l` (DER).
    pub fn certificate(&self, l: &str) -> Result<&[u8], Error> {
        let c = self
            .certs
            .iter()
            .find(|c| c.label == l)
            .ok_or(Error::NotFound)?;
        Ok(&self.arena[c.start..c.start + c.len])
    }

    /// Removes object `l` (a certificate's space is given back).
    pub fn delete(&mut self, l: &str) -> Result<(), Error> {
        if let Some(i) = self.keys.iter().position(|(k, _)| k == l) {
            self.keys.swap_remove(i);
            return Ok(());
        }
        let i = self
            .certs
            .iter()
            .position(|c| c.label == l)
            .ok_or(Error::NotFound)?;
        let gone = self.certs.remove(i);
        let end = gone.start + gone.len;
        self.arena.copy_within(end..self.used, gone.start);
        self.used -= gone.len;
        for c in self.certs.iter_mut().filter(|c| c.start > gone.start) {
            c.start -= gone.len;
        }
        Ok(())
    }

    /// The labels held, keys first.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.certs.iter().map(|c| c.label.as_str()))
    }

    /// Saves every object to `storage`: a count byte, then per object a kind byte, the label
    /// and the data, each length-prefixed.
    pub fn save(&self, storage: &(impl Storage + ?Sized), buf: &mut [u8]) -> Result<(), Error> {
        let mut w = Writer { buf, n: 0 };
        w.put(&[(self.keys.len() + self.certs.len()) as u8])?;
        for (l, k) in &self.keys {
            w.put(&[1])?;
            w.field(l.as_bytes())?;
            w.field(&k.to_bytes())?;
        }
        for c in &self.certs {
            w.put(&[2])?;
            w.field(c.label.as_bytes())?;
            w.field(&self.arena[c.start..c.start + c.len])?;
        }
        let n = w.n;
        Ok(storage.store(&w.buf[..n])?)
    }

    /// Loads the objects saved in `storage` (replacing those held). A damaged image is
    /// refused and leaves the keystore empty.
    pub fn load(&mut self, storage: &(impl Storage + ?Sized), buf: &mut [u8]) -> Result<(), Error> {
        self.keys.clear();
        self.certs.clear();
        self.used = 0;
        let n = storage.load(buf)?;
        if n == 0 {
            return Ok(());
        }
        let r = self.parse(&buf[..n]);
        if r.is_err() {
            self.keys.clear();
            self.certs.clear();
            self.used = 0;
        }
        r
    }

    fn parse(&mut self, image: &[u8]) -> Result<(), Error> {
        let mut r = Reader { buf: image, at: 0 };
        let count = r.take(1)?[0];
        for _ in 0..count {
            let kind = r.take(1)?[0];
            let l = core::str::from_utf8(r.field()?).map_err(|_| Error::Failed)?;
            let data = r.field()?;
            match kind {
                1 => {
                    let key = SigningKey::from_slice(data).map_err(|_| Error::Failed)?;
                    if self.taken(l) {
                        return Err(Error::Failed);
                    }
                    self.keys.push((label(l)?, key)).map_err(|_| Error::Full)?;
                }
                2 => self.import_certificate(l, data)?,
                _ => return Err(Error::Failed),
            }
        }
        Ok(())
    }
}

fn encode_public(k: &SigningKey) -> [u8; 65] {
    let point = k.verifying_key().to_encoded_point(false);
    let mut out = [0u8; 65];
    out.copy_from_slice(point.as_bytes());
    out
}

struct Writer<'a> {
    buf: &'a mut [u8],
    n: usize,
}

impl Writer<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.n + b.len();
        self.buf
            .get_mut(self.n..end)
            .ok_or(Error::TooLong)?
            .copy_from_slice(b);
        self.n = end;
        Ok(())
    }

    fn field(&mut self, b: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(b.len()).map_err(|_| Error::TooLong)?;
        self.put(&len.to_le_bytes())?;
        self.put(b)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let s = self.buf.get(self.at..self.at + n).ok_or(Error::Failed)?;
        self.at += n;
        Ok(s)
    }

    fn field(&mut self) -> Result<&'a [u8], Error> {
        let len = self.take(2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        self.take(len)
    }
}

/// A key lent for signing: it signs, and that is all it does.
pub struct KeySigner<'a>(&'a SigningKey);

impl signature::Signer<Signature> for KeySigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        self.0.sign_prehash(&sha256(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::VerifyingKey;

    use core::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Mutex;

    /// Test entropy: a counter (deterministic, distinct per seed value).
    struct Counter(AtomicU8);
    fn counter(start: u8) -> Counter {
        Counter(AtomicU8::new(start))
    }
    impl Entropy for Counter {
        fn fill(&self, buf: &mut [u8]) -> Result<(), DeviceError> {
            for b in buf {
                *b = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            }
            Ok(())
        }
    }

    struct Ram(Mutex<std::vec::Vec<u8>>);
    impl Storage for Ram {
        fn load(&self, buf: &mut [u8]) -> Result<usize, DeviceError> {
            let saved = self.0.lock().unwrap();
            buf[..saved.len()].copy_from_slice(&saved);
            Ok(saved.len())
        }
        fn store(&self, data: &[u8]) -> Result<(), DeviceError> {
            *self.0.lock().unwrap() = data.to_vec();
            Ok(())
        }
    }

    fn verify(public: &[u8; 65], msg: &[u8], sig: &[u8; 64]) -> bool {
        let vk = VerifyingKey::from_sec1_bytes(public).unwrap();
        let sig = Signature::from_slice(sig).unwrap();
        vk.verify_prehash(&sha256(msg), &sig).is_ok()
    }

    #[test]
    fn generated_keys_sign_what_their_public_key_verifies() {
        let mut arena = [0u8; 64];
        let mut ks = Keystore::new(&counter(0), &mut arena).unwrap();
        let public = ks.generate_p256("device").unwrap();
        assert_eq!(public[0], 0x04, "uncompressed SEC1");
        assert_eq!(ks.public_key("device").unwrap(), public);
        let sig = ks.sign("device", b"challenge").unwrap();
        assert!(verify(&public, b"challenge", &sig));
        assert!(!verify(&public, b"other message", &sig));
        // Through the signer a TLS client would use.
        let s: Signature = signature::Signer::sign(&ks.signer("device").unwrap(), b"handshake");
        assert!(VerifyingKey::from_sec1_bytes(&public)
            .unwrap()
            .verify_prehash(&sha256(b"handshake"), &s)
            .is_ok());
    }

    #[test]
    fn labels_are_checked() {
        let mut arena = [0u8; 16];
        let mut ks = Keystore::new(&counter(7), &mut arena).unwrap();
        ks.generate_p256("a").unwrap();
        assert_eq!(ks.generate_p256("a"), Err(Error::Exists));
        assert_eq!(ks.sign("missing", b"x"), Err(Error::NotFound));
        assert_eq!(
            ks.generate_p256(&"x".repeat(MAX_LABEL + 1)),
            Err(Error::TooLong)
        );
        ks.import_certificate("cert", b"\x30\x03\x02\x01\x01")
            .unwrap();
        assert_eq!(
            ks.sign("cert", b"x"),
            Err(Error::NotFound),
            "a certificate does not sign"
        );
        assert_eq!(ks.certificate("a"), Err(Error::NotFound));
        assert_eq!(
            ks.import_certificate("big", &[0u8; 12]),
            Err(Error::Full),
            "the arena is 16 bytes"
        );
        ks.import_certificate("small", b"\x30\x01\x00").unwrap();
        // Deleting a certificate gives its space back and keeps the others intact.
        ks.delete("cert").unwrap();
        assert_eq!(ks.certificate("small").unwrap(), b"\x30\x01\x00");
        ks.import_certificate("big", &[7u8; 12]).unwrap();
        assert_eq!(ks.certificate("big").unwrap(), &[7u8; 12]);
        for i in 1..MAX_KEYS {
            ks.generate_p256(&std::format!("k{i}")).unwrap();
        }
        assert_eq!(ks.generate_p256("one-too-many"), Err(Error::Full));
        ks.delete("a").unwrap();
        assert!(ks.generate_p256("one-too-many").is_ok());
    }

    #[test]
    fn objects_survive_a_save_and_load() {
        let mut arena = [0u8; 64];
        let mut ks = Keystore::new(&counter(1), &mut arena).unwrap();
        let public = ks.generate_p256("device").unwrap();
        ks.import_certificate("root", b"\x30\x03\x02\x01\x05")
            .unwrap();
        let storage = Ram(Mutex::new(std::vec::Vec::new()));
        let mut buf = [0u8; 4096];
        ks.save(&storage, &mut buf).unwrap();
        let mut arena2 = [0u8; 64];
        let mut after_reset = Keystore::new(&counter(99), &mut arena2).unwrap();
        after_reset.load(&storage, &mut buf).unwrap();
        assert_eq!(after_reset.public_key("device").unwrap(), public);
        assert!(verify(
            &public,
            b"m",
            &after_reset.sign("device", b"m").unwrap()
        ));
        assert_eq!(
            after_reset.certificate("root").unwrap(),
            b"\x30\x03\x02\x01\x05"
        );
        // Damaged storage is refused, not half-loaded into garbage keys.
        {
            let mut saved = storage.0.lock().unwrap();
            let n = saved.len();
            saved.truncate(n - 3);
        }
        assert_eq!(after_reset.load(&storage, &mut buf), Err(Error::Failed));
        assert_eq!(after_reset.labels().count(), 0, "nothing half-loaded");
    }

    #[test]
    fn random_bytes_pass_the_monobit_and_runs_tests() {
        // FIPS 140-2 style checks on 20 000 bits.
        let mut ks = Keystore::new(&counter(3), &mut []).unwrap();
        let mut bytes = [0u8; 2500];
        ks.random(&mut bytes);
        let ones: u32 = bytes.iter().map(|b| b.count_ones()).sum();
        assert!((9_725..=10_275).contains(&ones), "monobit: {ones} ones");
        let bits: std::vec::Vec<bool> = bytes
            .iter()
            .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
            .collect();
        let runs = 1 + bits.windows(2).filter(|w| w[0] != w[1]).count();
        assert!((9_500..=10_500).contains(&runs), "runs: {runs}");
        // Different seeds give different streams.
        let mut other = Keystore::new(&counter(4), &mut []).unwrap();
        let mut b2 = [0u8; 32];
        other.random(&mut b2);
        assert_ne!(&bytes[..32], &b2);
    }
}
