//! The boot loader on a simulated flash that can lose power at any operation: every refusal,
//! the trial and its rollback, and MCUboot's simulator method — count the erase and program
//! operations of a clean update (and of a rollback), then run it again cut at each one of
//! them, and at random pairs, whole or torn, checking every boot runs a valid image and the
//! board converges.

extern crate std;

use crate::sim::{Cut, Sim};
use crate::status::{Install, Outcome, Refusal, State, Status, Trial};
use crate::*;
use fqp_image::{ImageError, HEADER_LEN};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

const SECTOR: u32 = 1024;
const WRITE: u32 = 8;
/// Status 2, scratch 1, slots of 8 sectors.
const SECTORS: u32 = 19;
const BOARD: &str = "sim-board";

fn signing(seed: u8) -> (SigningKey, TrustedKey) {
    let key = SigningKey::from_bytes(&[seed; 32].into()).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    (key, TrustedKey::new(point.as_bytes().try_into().unwrap()))
}

fn trusted() -> [TrustedKey; 1] {
    [signing(1).1]
}

/// An image signed by key `seed`, of `len` payload bytes that differ by version.
fn image(version: Version, counter: u32, len: usize, board: &str, seed: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u32 * 31 + version.to_u32() * 7) as u8)
        .collect();
    let (key, trusted) = signing(seed);
    let mut h = Header::new(version, counter, board, 0x1_0000, &payload).unwrap();
    h.signer = trusted.id();
    let sig: Signature = key.sign(&h.signed_part());
    h.signature = sig.to_bytes().into();
    let mut out = h.to_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

const V1: Version = Version::new(1, 0, 0);
const V2: Version = Version::new(2, 0, 0);

fn old_image() -> Vec<u8> {
    image(V1, 1, 3 * SECTOR as usize + 100, BOARD, 1)
}

fn new_image() -> Vec<u8> {
    image(V2, 2, 5 * SECTOR as usize + 200, BOARD, 1)
}

fn layout(sim: &Sim) -> Layout {
    Layout::whole(sim).unwrap()
}

/// Writes `image` into `slot` as the OTA agent (or the factory) does: erase, then program
/// in write-size pieces of up to 256 bytes.
fn write_slot(sim: &Sim, slot: Area, image: &[u8]) -> Result<(), DeviceError> {
    sim.erase(slot.offset, slot.len)?;
    let mut padded = image.to_vec();
    padded.resize(image.len().next_multiple_of(WRITE as usize), 0xff);
    for (i, chunk) in padded.chunks(256).enumerate() {
        sim.program(slot.offset + (i * 256) as u32, chunk)?;
    }
    Ok(())
}

/// A board that runs `old_image()`, factory-installed.
fn factory() -> Sim {
    aged(0)
}

/// As [`factory`], with `records` snapshots already in the status log: a board with a past,
/// whose log fills up (and is compacted) in the middle of the next update.
fn aged(records: u32) -> Sim {
    let sim = Sim::new(SECTORS, SECTOR, WRITE);
    let l = layout(&sim);
    write_slot(&sim, l.primary, &old_image()).unwrap();
    let mut s = Status::read(&sim, &l).unwrap();
    for _ in 0..records {
        s.save(State::FRESH).unwrap();
    }
    sim
}

/// Records that leave the first half of the status log a few short of full.
const NEARLY_FULL: u32 = SECTOR / status::RECORD as u32 - 6;

/// Downloads `image` into the secondary slot and asks for it.
fn offer(sim: &Sim, image: &[u8], install: Install) -> Result<bool, DeviceError> {
    let l = layout(sim);
    write_slot(sim, l.secondary, image)?;
    Status::read(sim, &l)?.request(install)
}

fn boot_sim(sim: &Sim) -> Result<Booted, BootError> {
    boot(sim, &layout(sim), &trusted(), BOARD)
}

fn confirm(sim: &Sim, b: &Booted) -> Result<(), DeviceError> {
    Status::read(sim, &layout(sim))?.confirm(b.header.security_counter)
}

/// Whatever boots is a whole, validly signed image for this board: checked here from the
/// flash's bytes, apart from the boot loader's own check.
fn assert_valid(sim: &Sim, b: &Booted) {
    let bytes = sim.bytes(b.slot.offset, b.slot.len);
    let h = fqp_image::verify(&bytes, &trusted(), BOARD).expect("a booted image verifies");
    assert_eq!(h, b.header);
}

#[test]
fn a_trial_update_installs_boots_once_and_stays_when_confirmed() {
    let sim = factory();
    let b = boot_sim(&sim).unwrap();
    assert_eq!(
        (b.header.version, b.event, b.trial),
        (V1, Event::Unchanged, false)
    );
    assert!(offer(&sim, &new_image(), Install::Test).unwrap());
    let b = boot_sim(&sim).unwrap();
    assert_eq!(
        (b.header.version, b.event, b.trial),
        (V2, Event::Installed, true)
    );
    assert_valid(&sim, &b);
    assert_eq!(b.state.trial, Trial::Booted);
    confirm(&sim, &b).unwrap();
    let b = boot_sim(&sim).unwrap();
    assert_eq!(
        (b.header.version, b.event, b.trial),
        (V2, Event::Unchanged, false)
    );
    assert_eq!(
        b.state.counter, 2,
        "the confirmed image's counter is the floor"
    );
    // The old image is in the secondary slot, whole.
    let l = layout(&sim);
    let old = old_image();
    assert_eq!(
        &sim.bytes(l.secondary.offset, l.secondary.len)[..old.len()],
        &old[..]
    );
}

#[test]
fn an_unconfirmed_trial_is_rolled_back_and_a_rejected_one_says_so() {
    for reject in [false, true] {
        let sim = factory();
        offer(&sim, &new_image(), Install::Test).unwrap();
        let b = boot_sim(&sim).unwrap();
        assert_eq!(b.header.version, V2);
        if reject {
            assert!(Status::read(&sim, &layout(&sim)).unwrap().reject().unwrap());
        }
        // The next boot: the trial never confirmed.
        let b = boot_sim(&sim).unwrap();
        assert_eq!(b.header.version, V1);
        assert_eq!(b.event, Event::RolledBack { rejected: reject });
        assert_eq!(b.state.last, Outcome::RolledBack { rejected: reject });
        assert!(!b.trial && b.state.confirmed);
        assert_valid(&sim, &b);
        // And it stays back.
        assert_eq!(boot_sim(&sim).unwrap().event, Event::Unchanged);
    }
}

#[test]
fn a_permanent_install_is_confirmed_at_once_and_raises_the_floor() {
    let sim = factory();
    offer(&sim, &new_image(), Install::Permanent).unwrap();
    let b = boot_sim(&sim).unwrap();
    assert_eq!((b.header.version, b.trial), (V2, false));
    assert_eq!(b.state.counter, 2);
    // Not reverted on the next boot, though never confirmed by the image.
    assert_eq!(boot_sim(&sim).unwrap().header.version, V2);
    // A newer version with an older security counter is refused.
    let v3 = image(Version::new(3, 0, 0), 1, 100, BOARD, 1);
    offer(&sim, &v3, Install::Test).unwrap();
    let b = boot_sim(&sim).unwrap();
    assert_eq!(b.event, Event::Refused(Refusal::Counter));
    assert_eq!(b.header.version, V2);
}

#[test]
fn every_bad_image_is_refused_with_its_reason_and_the_old_one_runs_on() {
    let mut corrupted = new_image();
    *corrupted.last_mut().unwrap() ^= 0x10;
    let mut unsigned = new_image();
    unsigned[92..188].fill(0);
    let cases = [
        (
            image(V2, 2, 500, BOARD, 9),
            Refusal::Image(ImageError::UnknownSigner),
        ),
        (unsigned, Refusal::Image(ImageError::UnknownSigner)),
        (corrupted, Refusal::Image(ImageError::Corrupted)),
        (
            image(V2, 2, 500, "other-board", 1),
            Refusal::Image(ImageError::OtherBoard),
        ),
        (image(V1, 2, 500, BOARD, 1), Refusal::Downgrade),
        (
            image(Version::new(0, 9, 0), 2, 500, BOARD, 1),
            Refusal::Downgrade,
        ),
        (vec![0xff; 300], Refusal::Image(ImageError::NotAnImage)),
        (
            image(V2, 2, (8 * SECTOR) as usize, BOARD, 1),
            Refusal::TooBig,
        ),
    ];
    for (bad, reason) in cases {
        let sim = factory();
        // Too big for the slot: written cut to the slot, as an agent would have refused it.
        let l = layout(&sim);
        let bad = &bad[..bad.len().min(l.slot_len() as usize)];
        offer(&sim, bad, Install::Test).unwrap();
        let b = boot_sim(&sim).unwrap();
        assert_eq!(b.event, Event::Refused(reason), "{reason:?}");
        assert_eq!((b.header.version, b.trial), (V1, false));
        assert_eq!(b.state.last, Outcome::Refused(reason));
        assert_eq!(b.state.pending, None);
        assert_eq!(boot_sim(&sim).unwrap().event, Event::Unchanged);
    }
}

#[test]
fn nothing_unverified_boots() {
    // An empty board.
    let sim = Sim::new(SECTORS, SECTOR, WRITE);
    assert_eq!(
        boot_sim(&sim).unwrap_err(),
        BootError::NoImage(Refusal::Image(ImageError::NotAnImage))
    );
    // A primary altered in place.
    let sim = factory();
    let l = layout(&sim);
    sim.flip(l.primary.offset + HEADER_LEN as u32 + 5, 1);
    assert_eq!(
        boot_sim(&sim).unwrap_err(),
        BootError::NoImage(Refusal::Image(ImageError::Corrupted))
    );
    // A trial image damaged after its swap: the previous image returns.
    let sim = factory();
    offer(&sim, &new_image(), Install::Test).unwrap();
    boot_sim(&sim).unwrap();
    sim.flip(l.primary.offset + 2000, 1);
    let b = boot_sim(&sim).unwrap();
    assert_eq!(
        (b.header.version, b.event),
        (V1, Event::RolledBack { rejected: false })
    );
}

#[test]
fn requests_wait_for_a_confirmed_image() {
    let sim = factory();
    offer(&sim, &new_image(), Install::Test).unwrap();
    boot_sim(&sim).unwrap();
    // On trial: no update of the update before it confirms.
    let mut s = Status::read(&sim, &layout(&sim)).unwrap();
    assert!(!s.request(Install::Test).unwrap());
    // A withdrawn request is not acted on.
    let sim = factory();
    offer(&sim, &new_image(), Install::Test).unwrap();
    Status::read(&sim, &layout(&sim))
        .unwrap()
        .withdraw()
        .unwrap();
    assert_eq!(boot_sim(&sim).unwrap().event, Event::Unchanged);
}

#[test]
fn the_status_log_compacts_and_keeps_the_newest_state() {
    let sim = Sim::new(SECTORS, SECTOR, WRITE);
    let l = layout(&sim);
    let per_sector = (SECTOR / status::RECORD as u32) as usize;
    for n in 0..3 * per_sector as u32 {
        let mut s = Status::read(&sim, &l).unwrap();
        s.save(State {
            counter: n,
            ..State::FRESH
        })
        .unwrap();
        assert_eq!(Status::read(&sim, &l).unwrap().state().counter, n);
    }
}

#[test]
fn the_layout_fits_the_flash_or_is_refused() {
    let sim = Sim::new(SECTORS, SECTOR, WRITE);
    let l = layout(&sim);
    assert_eq!(
        l.status,
        Area {
            offset: 0,
            len: 2 * SECTOR
        }
    );
    assert_eq!(
        l.scratch,
        Area {
            offset: 2 * SECTOR,
            len: SECTOR
        }
    );
    assert_eq!(l.primary.len, 8 * SECTOR);
    assert_eq!(l.secondary.offset, l.primary.offset + 8 * SECTOR);
    assert!(l.secondary.offset + l.secondary.len <= SECTORS * SECTOR);
    // Three sectors leave no slot.
    assert_eq!(
        Layout::within(
            &sim,
            Area {
                offset: 0,
                len: 4 * SECTOR
            }
        ),
        None
    );
    assert_eq!(
        Layout::within(
            &sim,
            Area {
                offset: 1,
                len: 10 * SECTOR
            }
        ),
        None
    );
    assert_eq!(
        Layout::within(
            &sim,
            Area {
                offset: 0,
                len: 20 * SECTOR
            }
        ),
        None
    );
}

/// What the board does from power-on, no more cuts: boot; a trial image confirms itself
/// when `confirms`; an old image whose update never took (cut during the download, or rolled
/// back by a cut before the confirmation) is offered the update again when `retry`. The
/// version it settles on, after checking every boot.
fn settle(sim: &Sim, confirms: bool, retry: bool) -> (Version, State) {
    sim.power_on();
    let mut offered_again = 0;
    for _ in 0..12 {
        let b = match boot_sim(sim) {
            Ok(b) => b,
            Err(e) => panic!("bricked: {e}"),
        };
        assert_valid(sim, &b);
        if b.trial {
            if confirms {
                confirm(sim, &b).unwrap();
            }
            continue;
        }
        if b.header.version == V1 && retry && b.state.pending.is_none() {
            offered_again += 1;
            assert!(offered_again < 3, "the update never takes");
            offer(sim, &new_image(), Install::Test).unwrap();
            continue;
        }
        if b.state.pending.is_none() {
            return (b.header.version, b.state);
        }
    }
    panic!("no settled state in 12 boots");
}

/// The clean update's operations, from the download on: download and request, the swap,
/// the trial boot and its confirmation, the boot after it.
fn clean_update(sim: &Sim) -> Result<(), BootError> {
    offer(sim, &new_image(), Install::Test)?;
    let b = boot_sim(sim)?;
    confirm(sim, &b)?;
    boot_sim(sim)?;
    Ok(())
}

/// The rollback's: download and request, the swap, a trial boot that never confirms, the
/// revert.
fn rollback(sim: &Sim) -> Result<(), BootError> {
    offer(sim, &new_image(), Install::Test)?;
    boot_sim(sim)?;
    boot_sim(sim)?;
    Ok(())
}

fn count(scenario: fn(&Sim) -> Result<(), BootError>, age: u32) -> usize {
    let sim = aged(age);
    let before = sim.ops();
    scenario(&sim).unwrap();
    sim.ops() - before
}

#[test]
fn a_power_cut_at_every_flash_operation_of_an_update_never_bricks() {
    let mut cuts = 0;
    for (how, age) in [(Cut::Before, 0), (Cut::Torn, 0), (Cut::Before, NEARLY_FULL)] {
        let total = count(clean_update, age);
        assert!(total > 50, "{total} operations");
        for at in 0..total {
            let sim = aged(age);
            sim.cut_at(at, how);
            assert!(clean_update(&sim).is_err(), "the cut at {at} happened");
            let (version, state) = settle(&sim, true, true);
            assert_eq!(version, V2, "cut {how:?} at {at} of {total}: {state:?}");
            assert!(state.confirmed);
            cuts += 1;
        }
    }
    assert!(cuts > 150, "{cuts} cuts");
}

#[test]
fn a_power_cut_at_every_flash_operation_of_a_rollback_never_bricks() {
    for (how, age) in [(Cut::Before, 0), (Cut::Torn, 0), (Cut::Torn, NEARLY_FULL)] {
        let total = count(rollback, age);
        for at in 0..total {
            let sim = aged(age);
            sim.cut_at(at, how);
            assert!(rollback(&sim).is_err());
            // The new image never confirms: whatever happened, the board ends on the old one.
            let (version, state) = settle(&sim, false, false);
            assert_eq!(version, V1, "cut {how:?} at {at} of {total}: {state:?}");
            assert!(state.confirmed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Two cuts: one in the update, one in the recovery from it.
    #[test]
    fn two_power_cuts_at_random_points_never_brick(
        first in 0usize..1000,
        second in 0usize..200,
        torn: bool,
    ) {
        let how = if torn { Cut::Torn } else { Cut::Before };
        let sim = aged(NEARLY_FULL);
        let total = count(clean_update, NEARLY_FULL);
        sim.cut_at(first % total, how);
        let _ = clean_update(&sim);
        sim.power_on();
        sim.cut_at(second, how);
        // The recovery, cut: the boot loader and the image's confirmation, once each.
        if let Ok(b) = boot_sim(&sim) {
            if b.trial {
                let _ = confirm(&sim, &b);
            }
        }
        let (version, state) = settle(&sim, true, true);
        prop_assert_eq!(version, V2, "{:?}", state);
    }
}
