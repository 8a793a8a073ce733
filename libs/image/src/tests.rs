//! The format's round trip and every refusal, with keys made here (the host signer is
//! `fqp-ota`'s; the same signature either way: ECDSA P-256 over SHA-256).

extern crate std;

use super::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::SigningKey;
use proptest::prelude::*;
use std::string::ToString;
use std::vec::Vec;

fn key(seed: u8) -> (SigningKey, TrustedKey) {
    let signing = SigningKey::from_bytes(&[seed; 32].into()).unwrap();
    let point = signing.verifying_key().to_encoded_point(false);
    let sec1: [u8; 65] = point.as_bytes().try_into().unwrap();
    (signing, TrustedKey::new(sec1))
}

fn signed(payload: &[u8], version: Version, board: &str, seed: u8) -> Vec<u8> {
    let (signing, trusted) = key(seed);
    let mut header = Header::new(version, 3, board, 0x1_0000, payload).unwrap();
    header.signer = trusted.id();
    let sig: Signature = signing.sign(&header.signed_part());
    header.signature = sig.to_bytes().into();
    let mut image = header.to_bytes().to_vec();
    image.extend_from_slice(payload);
    image
}

const V1: Version = Version::new(1, 2, 3);

#[test]
fn a_signed_image_verifies_and_reads_back() {
    let image = signed(b"firmware", V1, "mps2-an385", 1);
    let header = verify(&image, &[key(2).1, key(1).1], "mps2-an385").unwrap();
    assert_eq!(header.version, V1);
    assert_eq!(header.security_counter, 3);
    assert_eq!(header.load_address, 0x1_0000);
    assert_eq!(header.payload_len, 8);
    assert_eq!(header.board_name(), Ok("mps2-an385"));
    assert_eq!(Header::parse(&header.to_bytes()), Ok(header));
}

#[test]
fn every_alteration_is_refused_with_its_reason() {
    let image = signed(b"firmware", V1, "mps2-an385", 1);
    let keys = [key(1).1];
    let check = |img: &[u8]| verify(img, &keys, "mps2-an385").unwrap_err();
    // Untrusted signer: the key is not among the trusted ones.
    assert_eq!(
        verify(&image, &[key(2).1], "mps2-an385").unwrap_err(),
        ImageError::UnknownSigner
    );
    // The payload altered after signing.
    let mut corrupt = image.clone();
    *corrupt.last_mut().unwrap() ^= 1;
    assert_eq!(check(&corrupt), ImageError::Corrupted);
    // The version raised after signing.
    let mut raised = image.clone();
    raised[OFF_VERSION + 3] = 9;
    assert_eq!(check(&raised), ImageError::BadSignature);
    // The signature itself altered.
    let mut sig = image.clone();
    sig[SIGNED_LEN + 10] ^= 0x40;
    assert_eq!(check(&sig), ImageError::BadSignature);
    // Unsigned (signer and signature zero).
    let mut unsigned = image.clone();
    unsigned[OFF_SIGNER..SIGNED_LEN + 64].fill(0);
    assert_eq!(check(&unsigned), ImageError::UnknownSigner);
    // Cut short.
    assert_eq!(check(&image[..image.len() - 1]), ImageError::Truncated);
    assert_eq!(check(&image[..100]), ImageError::Truncated);
    // Erased flash, another format, reserved bytes set.
    assert_eq!(check(&[0xff; 300]), ImageError::NotAnImage);
    let mut format = image.clone();
    format[6] = 2;
    assert_eq!(check(&format), ImageError::UnknownFormat);
    let mut reserved = image.clone();
    reserved[200] = 1;
    assert_eq!(check(&reserved), ImageError::UnknownFormat);
    // Another board.
    assert_eq!(
        verify(&image, &keys, "mps2-an386").unwrap_err(),
        ImageError::OtherBoard
    );
}

#[test]
fn a_one_byte_and_an_empty_payload_are_images() {
    for payload in [&b"x"[..], &b""[..]] {
        let image = signed(payload, V1, "b", 4);
        assert_eq!(image.len(), HEADER_LEN + payload.len());
        verify(&image, &[key(4).1], "b").unwrap();
    }
}

#[test]
fn board_names_are_checked_when_made_and_read() {
    let long = "x".repeat(BOARD_LEN + 1);
    assert_eq!(
        Header::new(V1, 0, &long, 0, b"").unwrap_err(),
        ImageError::BadBoardName
    );
    assert_eq!(
        Header::new(V1, 0, "", 0, b"").unwrap_err(),
        ImageError::BadBoardName
    );
    let full = "y".repeat(BOARD_LEN);
    let h = Header::new(V1, 0, &full, 0, b"").unwrap();
    assert_eq!(
        Header::parse(&h.to_bytes()).unwrap().board_name(),
        Ok(&*full)
    );
    // A NUL inside the name is not padding.
    let mut bytes = h.to_bytes();
    bytes[OFF_BOARD + 3] = 0;
    assert_eq!(Header::parse(&bytes), Err(ImageError::BadBoardName));
}

#[test]
fn versions_order_as_numbers_and_print_as_they_parse() {
    assert!(Version::new(1, 10, 0) > Version::new(1, 9, 65535));
    assert!(Version::new(2, 0, 0) > Version::new(1, 255, 65535));
    assert_eq!(Version::parse("1.2.300"), Some(Version::new(1, 2, 300)));
    assert_eq!(Version::new(1, 2, 300).to_string(), "1.2.300");
    for bad in ["1.2", "1.2.3.4", "256.0.0", "a.b.c", "", "1..2"] {
        assert_eq!(Version::parse(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn versions_survive_the_header(major: u8, minor: u8, patch: u16) {
        let v = Version::new(major, minor, patch);
        prop_assert_eq!(Version::from_u32(v.to_u32()), v);
        prop_assert_eq!(Version::parse(&v.to_string()), Some(v));
    }

    /// Whatever the bytes, parsing answers (never panics), and a header it accepts writes
    /// back to the same bytes.
    #[test]
    fn any_bytes_parse_or_are_refused(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..300),
        preamble: bool,
        zeroed: bool,
    ) {
        // Half the cases start like a header, so that parsing gets past the magic.
        if preamble && bytes.len() >= HEADER_LEN {
            bytes[..8].copy_from_slice(&[b'F', b'Q', b'P', b'I', 0, 1, 1, 0]);
            if zeroed {
                bytes[24..28].fill(0);
                bytes[SIGNED_LEN + 64..HEADER_LEN].fill(0);
            }
        }
        if let Ok(h) = Header::parse(&bytes) {
            prop_assert_eq!(&h.to_bytes()[..], &bytes[..HEADER_LEN]);
        }
    }
}
