//! Keystore and TLS qualification tests. Signatures made on the device are checked by the host
//! (`ASK action=verify-signature`), certificates are imported from what the host provisions
//! (the lab's root CA), random numbers are tested statistically.
//!
//! Entropy: the board's TRNG (`Board::entropy`, `fqp-port`). Without one (the emulated
//! reference board has none), the keystore is seeded from the `entropy` setting the host
//! provisions after every boot, mixed with the cycle counter; the report says so through the
//! test's log. Persistence uses the board's storage (`Board::storage`).

#![no_std]

extern crate alloc;

mod tls;
pub use tls::{client_session, lab_identity, TLS};

/// The suite's groups, in the order the host lists them.
pub static GROUPS: &[&fqp_testkit::Group] = &[&KEYSTORE, &TLS];

use fqp_keystore::{DeviceError, Entropy, Error, Keystore};
use fqp_testkit::{check, check_eq, check_range, group, log, TestResult};

/// The host-provisioned seed, mixed with the cycle counter.
struct Provisioned([u8; 32]);

impl Entropy for Provisioned {
    fn fill(&self, buf: &mut [u8]) -> Result<(), DeviceError> {
        let mix = fqp_kernel::time::uptime_cycles().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0[i % 32] ^ mix[i % 8];
        }
        Ok(())
    }
}

/// A keystore seeded from the port's TRNG, or else from the host's entropy, keeping its
/// certificates in `arena`.
fn keystore(arena: &mut [u8]) -> Result<Keystore<'_>, fqp_testkit::Failure> {
    if let Some(trng) = fqp_testkit::board().entropy() {
        return Keystore::new(trng, arena).map_err(|e| fqp_testkit::fail!("TRNG: {:?}", e));
    }
    let Some(seed) = fqp_testkit::config::provisioned_seed() else {
        fqp_testkit::skip!(
            "no entropy: the board has no TRNG (Board::entropy) and the host provisioned no seed"
        )
    };
    let e = Provisioned(seed.map_err(|why| fqp_testkit::fail!("{}", why))?);
    log!("entropy from the host (the board has no TRNG)");
    Keystore::new(&e, arena).map_err(|e| fqp_testkit::fail!("seeding: {:?}", e))
}

/// Stacks of the tasks the keystore and TLS tests run in: P-256 arithmetic and the TLS
/// handshake need more than the test runner's own stack (which a port with little RAM keeps
/// small). Each about one and a half times what its tests were measured to use (the
/// `crypto_stack_used` metric: keystore up to 10.3 KiB, TLS up to 19.9 KiB), so that a board
/// with little RAM carries the keystore without the handshake's budget.
const KEYSTORE_STACK_WORDS: usize = 4 * 1024;
pub const TLS_STACK_WORDS: usize = 8 * 1024;
/// Longest a test body may take in the crypto task (below the groups' test timeouts).
const CRYPTO_WAIT_MS: u32 = 25_000;

/// Runs `body` in the crypto task, with a stack of `words` (for other suites' tests that
/// make keys or TLS sessions too: [`TLS_STACK_WORDS`]).
pub fn with_crypto_stack(words: usize, body: fn() -> TestResult) -> TestResult {
    fqp_testkit::with_stack("crypto", words, CRYPTO_WAIT_MS, body)
}

group!(pub KEYSTORE, "keystore", [
    generated_key_signs_what_the_host_verifies => 20_000,
    imported_certificate_reads_back_intact => 20_000,
    objects_are_addressed_by_label => 20_000,
    keys_persist_through_the_ports_storage => 20_000,
    random_numbers_pass_statistical_tests => 20_000,
]);

const MSG: &str = "fqp keystore qualification";

fn generated_key_signs_what_the_host_verifies() -> TestResult {
    with_crypto_stack(
        KEYSTORE_STACK_WORDS,
        generated_key_signs_what_the_host_verifies_body,
    )
}

fn generated_key_signs_what_the_host_verifies_body() -> TestResult {
    let mut ks = keystore(&mut [])?;
    let public = ks
        .generate_p256("device")
        .map_err(|e| fqp_testkit::fail!("generate: {:?}", e))?;
    let sig = host_verifies(&ks, "device", &public)?;
    let public = hex::encode(public);
    // The host's check discriminates: the same signature over another message is refused.
    let refused = fqp_testkit::ask(
        "verify-signature",
        &[
            ("public", &public),
            ("msg", "another message"),
            ("sig", &sig),
        ],
        5_000,
    );
    check!(
        refused.is_err(),
        "the host accepted a signature over another message"
    );
    Ok(())
}

fn imported_certificate_reads_back_intact() -> TestResult {
    with_crypto_stack(
        KEYSTORE_STACK_WORDS,
        imported_certificate_reads_back_intact_body,
    )
}

fn imported_certificate_reads_back_intact_body() -> TestResult {
    let Some(der) = fqp_testkit::config::get_str("root_ca") else {
        fqp_testkit::skip!("the host provisioned no root_ca")
    };
    let der = hex::decode(&der).map_err(|_| fqp_testkit::fail!("root_ca is not hex"))?;
    let want = fqp_testkit::config::get_str("root_ca_sha256").unwrap_or_default();
    let mut arena = alloc::vec![0u8; 4096];
    let mut ks = keystore(&mut arena)?;
    ks.import_certificate("root-ca", &der)
        .map_err(|e| fqp_testkit::fail!("import {} bytes: {:?}", der.len(), e))?;
    let back = ks
        .certificate("root-ca")
        .map_err(|e| fqp_testkit::fail!("read back: {:?}", e))?;
    check_eq!(hex::encode(fqp_keystore::sha256(back)), want);
    log!(
        "{} byte certificate provisioned in pieces and imported",
        der.len()
    );
    Ok(())
}

fn objects_are_addressed_by_label() -> TestResult {
    with_crypto_stack(KEYSTORE_STACK_WORDS, objects_are_addressed_by_label_body)
}

fn objects_are_addressed_by_label_body() -> TestResult {
    let mut ks = keystore(&mut [])?;
    let a = ks
        .generate_p256("a")
        .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    let b = ks
        .generate_p256("b")
        .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    check!(a != b, "two generated keys are the same");
    check_eq!(ks.generate_p256("a"), Err(Error::Exists));
    check_eq!(ks.public_key("a"), Ok(a));
    check_eq!(ks.sign("missing", b"x"), Err(Error::NotFound));
    // A key is not a certificate: nothing reads a key's bytes out.
    check_eq!(ks.certificate("a"), Err(Error::NotFound));
    ks.delete("a").map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    check_eq!(ks.public_key("a"), Err(Error::NotFound));
    Ok(())
}

fn keys_persist_through_the_ports_storage() -> TestResult {
    with_crypto_stack(
        KEYSTORE_STACK_WORDS,
        keys_persist_through_the_ports_storage_body,
    )
}

fn keys_persist_through_the_ports_storage_body() -> TestResult {
    let Some(storage) = fqp_testkit::board().storage() else {
        fqp_testkit::skip!("the board provides no storage (Board::storage is None)")
    };
    let Some(root) = fqp_testkit::config::get_str("root_ca") else {
        fqp_testkit::skip!("the host provisioned no root_ca")
    };
    let root = hex::decode(&root).map_err(|_| fqp_testkit::fail!("root_ca is not hex"))?;
    let mut image = alloc::vec![0u8; 4096];
    let public = {
        let mut arena = alloc::vec![0u8; 4096];
        let mut ks = keystore(&mut arena)?;
        let public = ks
            .generate_p256("persistent")
            .map_err(|e| fqp_testkit::fail!("generate: {:?}", e))?;
        ks.import_certificate("root-ca", &root)
            .map_err(|e| fqp_testkit::fail!("import: {:?}", e))?;
        ks.save(storage, &mut image)
            .map_err(|e| fqp_testkit::fail!("save: {:?}", e))?;
        public
    };
    // A keystore in fresh memory, as after a reset: only the storage carries objects over.
    let mut arena = alloc::vec![0u8; 4096];
    let mut ks = keystore(&mut arena)?;
    check_eq!(ks.public_key("persistent"), Err(Error::NotFound));
    ks.load(storage, &mut image)
        .map_err(|e| fqp_testkit::fail!("load: {:?}", e))?;
    check_eq!(ks.public_key("persistent"), Ok(public));
    check!(
        ks.certificate("root-ca") == Ok(&root[..]),
        "the certificate came back changed"
    );
    // The key itself came back, not just its public half: the host checks a new signature.
    host_verifies(&ks, "persistent", &public).map(drop)
}

/// Signs [`MSG`] with the key `label` and has the host verify it with `public`; the
/// signature (hex).
fn host_verifies(
    ks: &Keystore<'_>,
    label: &str,
    public: &[u8; 65],
) -> Result<alloc::string::String, fqp_testkit::Failure> {
    let sig = ks
        .sign(label, MSG.as_bytes())
        .map_err(|e| fqp_testkit::fail!("sign: {:?}", e))?;
    let (public, sig) = (hex::encode(public), hex::encode(sig));
    fqp_testkit::ask(
        "verify-signature",
        &[("public", &public), ("msg", MSG), ("sig", &sig)],
        5_000,
    )?;
    Ok(sig)
}

fn random_numbers_pass_statistical_tests() -> TestResult {
    with_crypto_stack(
        KEYSTORE_STACK_WORDS,
        random_numbers_pass_statistical_tests_body,
    )
}

fn random_numbers_pass_statistical_tests_body() -> TestResult {
    let mut ks = keystore(&mut [])?;
    let mut bytes = alloc::vec![0u8; 2500];
    ks.random(&mut bytes);
    let ones: u32 = bytes.iter().map(|b| b.count_ones()).sum();
    // FIPS 140-2 monobit and runs bounds on 20 000 bits.
    check_range!(ones, 9_725, 10_275);
    let mut runs = 1u32;
    let mut prev = bytes[0] & 1;
    for i in 1..20_000 {
        let bit = (bytes[i / 8] >> (i % 8)) & 1;
        if bit != prev {
            runs += 1;
        }
        prev = bit;
    }
    check_range!(runs, 9_500, 10_500);
    Ok(())
}
