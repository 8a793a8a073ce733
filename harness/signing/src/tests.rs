//! Signing with a key file and reading back, against the device's own check (`fqp-image`).

use super::*;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::PathBuf;

/// A key file, removed with it.
struct KeyFile(PathBuf);

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for KeyFile {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

/// A fresh P-256 key in a PEM file.
fn key_file(name: &str) -> KeyFile {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let path = std::env::temp_dir().join(format!("fqp-ota-{name}-{}.key", std::process::id()));
    std::fs::write(
        &path,
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    KeyFile(path)
}

fn meta() -> Meta {
    Meta {
        version: Version::new(1, 4, 2),
        security_counter: 7,
        board: "mps2-an385".into(),
        load_address: 0x1_0000,
    }
}

#[test]
fn an_image_signed_on_the_host_verifies_as_the_device_checks_it() {
    let key = key_file("sign");
    let signer = KeyFileSigner::open(&key, None).unwrap();
    let trusted = TrustedKey::new(signer.public_key());
    let signed = sign(b"the firmware", &meta(), &signer).unwrap();
    let header = fqp_image::verify(&signed.image, &[trusted], "mps2-an385").unwrap();
    assert_eq!(header.version, Version::new(1, 4, 2));
    assert_eq!(header.security_counter, 7);
    let seen = inspect(&signed.image, Some(&trusted), Some(&signed.file_signature)).unwrap();
    assert!(seen.payload_intact);
    assert_eq!(seen.signature, Some(Ok(())));
    assert_eq!(seen.file_signature, Some(true));
    // Another key: neither signature holds.
    let other = KeyFileSigner::open(&key_file("other"), None).unwrap();
    let stranger = TrustedKey::new(other.public_key());
    let seen = inspect(&signed.image, Some(&stranger), Some(&signed.file_signature)).unwrap();
    assert_eq!(seen.signature, Some(Err(ImageError::UnknownSigner)));
    assert_eq!(seen.file_signature, Some(false));
    // Signed again: the same file (RFC 6979), as a reproducible build needs.
    let again = sign(b"the firmware", &meta(), &signer).unwrap();
    assert_eq!(
        (&again.image, &again.file_signature),
        (&signed.image, &signed.file_signature)
    );
    // A byte changed after signing: the payload is no longer the header's.
    let mut altered = signed.image.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert!(
        !inspect(&altered, Some(&trusted), None)
            .unwrap()
            .payload_intact
    );
    assert!(!signed.file_signature_base64().is_empty());
}

#[test]
fn bad_keys_and_names_say_what_to_fix() {
    let path =
        KeyFile(std::env::temp_dir().join(format!("fqp-ota-bad-{}.key", std::process::id())));
    std::fs::write(&*path, "not a key").unwrap();
    let e = KeyFileSigner::open(&path, None).err().unwrap().to_string();
    assert!(e.contains("BEGIN PRIVATE KEY") && e.contains("fix:"), "{e}");
    let e = KeyFileSigner::open(&path.with_extension("missing"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("missing"), "{e}");
    let signer = KeyFileSigner::open(&key_file("name"), None).unwrap();
    let long = Meta {
        board: "x".repeat(40),
        ..meta()
    };
    let e = sign(b"", &long, &signer).unwrap_err().to_string();
    assert!(e.contains("1 to 32 bytes"), "{e}");
}

#[test]
fn an_elf_gives_its_loadable_bytes_from_the_lowest_address() {
    // A 32-bit little-endian ELF with two PT_LOAD segments 0x10 apart and one without file
    // bytes (.bss), written by hand.
    let mut elf = vec![0u8; 0x100];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 1; // 32-bit
    elf[5] = 1; // little-endian
    elf[6] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // executable
    elf[18..20].copy_from_slice(&40u16.to_le_bytes()); // Arm
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[28..32].copy_from_slice(&0x34u32.to_le_bytes()); // program headers
    elf[40..42].copy_from_slice(&0x34u16.to_le_bytes());
    elf[42..44].copy_from_slice(&32u16.to_le_bytes());
    elf[44..46].copy_from_slice(&3u16.to_le_bytes());
    let ph = |i: usize, off: u32, addr: u32, filesz: u32, elf: &mut Vec<u8>| {
        let at = 0x34 + i * 32;
        let fields = [1, off, addr, addr, filesz, filesz.max(4), 5, 4];
        for (k, v) in fields.iter().enumerate() {
            elf[at + k * 4..at + k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
    };
    ph(0, 0xd0, 0x1_0010, 4, &mut elf);
    ph(1, 0xc0, 0x1_0000, 8, &mut elf);
    ph(2, 0, 0x2000_0000, 0, &mut elf);
    elf[0xc0..0xc8].copy_from_slice(b"ABCDEFGH");
    elf[0xd0..0xd4].copy_from_slice(b"WXYZ");
    let (load, bytes) = payload_from_elf(&elf).unwrap();
    assert_eq!(load, 0x1_0000);
    assert_eq!(bytes, b"ABCDEFGH\0\0\0\0\0\0\0\0WXYZ");
    // Not an ELF.
    let e = payload_from_elf(b"plain bytes").unwrap_err().to_string();
    assert!(e.contains("fix:"), "{e}");
}
