//! Signed results: every qualification signs results.json with the lab key, and `fqp verify`
//! accepts an untouched file and catches each kind of tampering.

mod common;

use common::{fqp, lab, qualify};
use std::path::Path;

fn verify(results: &Path, args: &[&str]) -> (i32, String) {
    let o = fqp()
        .arg("verify")
        .arg(results)
        .args(args)
        .output()
        .expect("fqp runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
    )
}

#[test]
fn results_are_signed_and_tampering_is_caught() {
    let o = qualify(
        &common::selftest_port(),
        "signed",
        &[
            "--test",
            "selftest/passes",
            "--test",
            "selftest/fails_check_eq",
            "--retries",
            "0",
        ],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let results = o.out.join("results.json");
    let cert = lab().join("lab-cert.pem");
    let cert = cert.to_str().unwrap();

    // Untouched: every check passes, and the signer is the trusted lab.
    let (code, out) = verify(&results, &["--trust", cert]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    signature: signed by") && out.contains("trusted"),
        "{out}"
    );
    assert!(out.contains("ok    image:"), "{out}");
    assert!(
        out.contains("ok    verdict: failed, NOT QUALIFIED"),
        "{out}"
    );

    assert_forgeries_are_caught(&o.out, cert);
    assert_other_signers_and_images_are_caught(&o.out, cert);
}

/// A result file changed after it was signed fails its signature, and its verdict no longer
/// follows from its tests; re-signed with the lab's key, the verdict still gives it away.
fn assert_forgeries_are_caught(dir: &Path, cert: &str) {
    let results = dir.join("results.json");
    // A failed test turned into a pass: the signature no longer matches.
    let text = std::fs::read_to_string(&results).unwrap();
    let forged = text.replacen("\"status\": \"failed\"", "\"status\": \"passed\"", 1);
    assert_ne!(forged, text);
    let copy = dir.join("forged.json");
    std::fs::write(&copy, &forged).unwrap();
    std::fs::copy(dir.join("results.json.sig"), dir.join("forged.json.sig")).unwrap();
    let (code, out) = verify(&copy, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  signature: the file was changed after it was signed"),
        "{out}"
    );
    // …and its verdict no longer follows from its tests either.
    assert!(
        out.contains("FAIL  verdict: the file says failed, its tests say passed"),
        "{out}"
    );

    // Re-signed with the lab's own key (a harness bug, or someone with the key): the
    // signature holds, the recomputed verdict does not.
    let (key, _) = fqp_reports::sign::LabKey::load_or_create(&lab(), "unused").unwrap();
    key.sign_file(&copy).unwrap();
    let (code, out) = verify(&copy, &["--trust", cert]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok    signature"), "{out}");
    assert!(out.contains("FAIL  verdict"), "{out}");
}

/// A signer other than the lab, an image other than the one qualified, and no signature at
/// all are each refused.
fn assert_other_signers_and_images_are_caught(dir: &Path, cert: &str) {
    let results = dir.join("results.json");
    let (key, _) = fqp_reports::sign::LabKey::load_or_create(&lab(), "unused").unwrap();
    // Signed by someone else: rejected when the lab certificate is required.
    let other = fqp_reports::sign::LabKey::create("Not The Lab").unwrap();
    other.sign_file(&results).unwrap();
    let (code, out) = verify(&results, &["--trust", cert]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Not The Lab") && out.contains("neither the trusted certificate"),
        "{out}"
    );
    key.sign_file(&results).unwrap();

    // Another image than the one qualified.
    let other_image = dir.join("other.elf");
    std::fs::write(&other_image, b"not the image").unwrap();
    let (code, out) = verify(&results, &["--image", other_image.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  image:") && out.contains("the results are about"),
        "{out}"
    );

    // No signature at all.
    std::fs::remove_file(dir.join("results.json.sig")).unwrap();
    let (code, out) = verify(&results, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the results are not signed"), "{out}");
}
