//! The platform layer with the boot loader on a simulated flash: a file received, checked,
//! activated, installed on trial and accepted or rejected — and what is refused on the way.

extern crate std;

use crate::test_signer::{self, TestFile, CERT, OTHER_CERT};
use crate::{ImageState, Pal, PalError, PlatformState};
use fqp_boot::sim::Sim;
use fqp_boot::status::{Outcome, Refusal};
use fqp_boot::{boot, Event, Layout, TrustedKey, Version};
use fqp_image::{ImageError, HEADER_LEN};
use p256::ecdsa::SigningKey;
use std::vec::Vec;

const BOARD: &str = "sim-board";

fn payload(seed: u32) -> impl Fn(u32) -> u8 {
    move |i| (i ^ seed).wrapping_mul(7) as u8
}

fn bytes(f: &TestFile, seed: u32) -> Vec<u8> {
    let mut out = f.header.to_vec();
    out.extend((0..f.len - HEADER_LEN as u32).map(payload(seed)));
    out
}

fn trusted() -> [TrustedKey; 1] {
    let key = SigningKey::from_bytes(&test_signer::KEY.into()).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    [TrustedKey::new(point.as_bytes().try_into().unwrap())]
}

/// A board running version 1.0.0 (signed by the test signer), in a flash of 4 KiB sectors.
fn board() -> Sim {
    let sim = Sim::new(40, 4096, 8);
    let l = Layout::whole(&sim).unwrap();
    let v1 = test_signer::sign(Version::new(1, 0, 0), 1, BOARD, 5000, payload(1)).unwrap();
    let mut image = bytes(&v1, 1);
    image.resize(image.len().next_multiple_of(8), 0xff);
    fqp_port::Flash::program(&sim, l.primary.offset, &image).unwrap();
    sim
}

fn receive(p: &mut Pal<'_>, f: &TestFile, seed: u32) {
    p.create_file(f.len).unwrap();
    for (i, block) in bytes(f, seed).chunks(1024).enumerate() {
        assert_eq!(p.write_block((i * 1024) as u32, block), Ok(block.len()));
    }
}

fn boot_sim(sim: &Sim) -> fqp_boot::Booted {
    boot(sim, &Layout::whole(sim).unwrap(), &trusted(), BOARD).unwrap()
}

#[test]
fn a_received_file_is_installed_on_trial_and_kept_once_accepted() {
    let sim = board();
    let v2 = test_signer::sign(Version::new(2, 0, 0), 2, BOARD, 9000, payload(2)).unwrap();
    let mut p = Pal::new(&sim, BOARD).unwrap();
    receive(&mut p, &v2, 2);
    let h = p.close_file(v2.signature(), CERT).unwrap();
    assert_eq!(h.version, Version::new(2, 0, 0));
    p.activate().unwrap();
    // The reset: the boot loader installs it, on trial.
    let b = boot_sim(&sim);
    assert_eq!(
        (b.header.version, b.event, b.trial),
        (Version::new(2, 0, 0), Event::Installed, true)
    );
    let mut p = Pal::new(&sim, BOARD).unwrap();
    assert_eq!(p.image_state(), Ok(PlatformState::PendingCommit));
    assert_eq!(p.set_image_state(ImageState::Testing), Ok(()));
    assert_eq!(p.set_image_state(ImageState::Accepted), Ok(()));
    assert_eq!(p.image_state(), Ok(PlatformState::Valid));
    assert_eq!(boot_sim(&sim).event, Event::Unchanged);
    // Its security counter is now the floor: a newer image below it is refused at close.
    let v3 = test_signer::sign(Version::new(3, 0, 0), 1, BOARD, 100, payload(3)).unwrap();
    let mut p = Pal::new(&sim, BOARD).unwrap();
    receive(&mut p, &v3, 3);
    assert_eq!(
        p.close_file(v3.signature(), CERT),
        Err(PalError::Image(Refusal::Counter))
    );
}

#[test]
fn a_rejected_trial_is_rolled_back_and_says_so() {
    let sim = board();
    let v2 = test_signer::sign(Version::new(2, 0, 0), 1, BOARD, 7000, payload(2)).unwrap();
    let mut p = Pal::new(&sim, BOARD).unwrap();
    receive(&mut p, &v2, 2);
    p.close_file(v2.signature(), CERT).unwrap();
    p.activate().unwrap();
    boot_sim(&sim);
    let mut p = Pal::new(&sim, BOARD).unwrap();
    assert_eq!(p.set_image_state(ImageState::Rejected), Ok(()));
    assert_eq!(p.image_state(), Ok(PlatformState::Invalid));
    assert_eq!(
        p.set_image_state(ImageState::Accepted),
        Err(PalError::NotOnTrial)
    );
    let b = boot_sim(&sim);
    assert_eq!(b.header.version, Version::new(1, 0, 0));
    assert_eq!(b.event, Event::RolledBack { rejected: true });
    let p = Pal::new(&sim, BOARD).unwrap();
    assert_eq!(p.last_update(), Ok(Outcome::RolledBack { rejected: true }));
    assert_eq!(p.image_state(), Ok(PlatformState::Valid));
}

#[test]
fn what_the_boot_loader_would_refuse_is_refused_at_close() {
    let sim = board();
    let mut p = Pal::new(&sim, BOARD).unwrap();
    let cases = [
        (
            Version::new(1, 0, 0),
            BOARD,
            PalError::Image(Refusal::Downgrade),
        ),
        (
            Version::new(2, 0, 0),
            "other",
            PalError::Image(Refusal::Image(ImageError::OtherBoard)),
        ),
    ];
    for (v, board, why) in cases {
        let f = test_signer::sign(v, 1, board, 300, payload(4)).unwrap();
        receive(&mut p, &f, 4);
        assert_eq!(p.close_file(f.signature(), CERT).map(|_| ()), Err(why));
        assert_eq!(p.activate(), Err(PalError::NotClosed));
    }
    let f = test_signer::sign(Version::new(2, 0, 0), 1, BOARD, 300, payload(4)).unwrap();
    receive(&mut p, &f, 4);
    assert_eq!(
        p.close_file(f.signature(), OTHER_CERT).map(|_| ()),
        Err(PalError::SignatureRefused)
    );
    assert_eq!(p.image_state(), Ok(PlatformState::Invalid));
    p.abort().unwrap();
    assert_eq!(p.image_state(), Ok(PlatformState::Valid));
    // Nothing was asked of the boot loader.
    assert_eq!(boot_sim(&sim).event, Event::Unchanged);
}
