//! Group `ota_pal`: the platform layer on the port's flash.

use fqp_boot::status::Refusal;
use fqp_image::{ImageError, Version, HEADER_LEN};
use fqp_ota::test_signer::{self, TestFile, CERT, OTHER_CERT, SERVER_CERT};
use fqp_ota::{ImageState, Pal, PalError, PlatformState};
use fqp_testkit::{check, check_eq, fail, group, log, TestResult};
use fqp_tls::CertError;

group!(pub OTA_PAL, "ota_pal", [
    close_with_a_valid_signature_is_accepted => 30_000,
    close_with_an_invalid_signature_is_refused => 30_000,
    close_with_no_block_written_is_refused => 30_000,
    close_with_another_signers_certificate_is_refused => 30_000,
    close_with_a_bad_signer_certificate_is_refused => 30_000,
    close_with_a_malformed_or_missing_signature_is_refused => 30_000,
    images_the_boot_loader_would_refuse_are_refused_at_close => 30_000,
    a_single_byte_image_and_many_blocks_out_of_order => 30_000,
    blocks_outside_the_file_or_off_the_write_unit_are_refused => 30_000,
    file_sizes_a_slot_cannot_hold_are_refused => 30_000,
    abort_works_in_every_state => 30_000,
    activate_needs_a_checked_file => 30_000,
    accept_and_test_need_an_image_on_trial => 30_000,
    rejected_and_aborted_drop_the_file => 30_000,
    the_image_state_follows_the_file => 30_000,
    the_running_image_is_the_boot_loaders => 30_000,
    a_file_goes_on_after_a_reset_from_the_sectors_kept => 30_000,
]);

/// Stack of the task the tests run in: P-256 signing and verifying (as the keystore's).
const STACK_WORDS: usize = 4 * 1024;
const WAIT_MS: u32 = 25_000;

/// Runs `body` in a task with room for the signatures.
fn run(body: fn() -> TestResult) -> TestResult {
    fqp_testkit::with_stack("ota", STACK_WORDS, WAIT_MS, body)
}

/// The platform layer of the board's flash.
pub(crate) fn pal() -> Result<Pal<'static>, fqp_testkit::Failure> {
    let board = fqp_testkit::board();
    let flash = board
        .flash()
        .ok_or_else(|| fail!("the board has no flash for images (Board::flash)"))?;
    Pal::new(flash, board.name()).map_err(|e| fail!("the flash: {:?}", e))
}

/// A version newer than `v`.
pub(crate) fn newer(v: Version) -> Version {
    match v.patch.checked_add(1) {
        Some(p) => Version::new(v.major, v.minor, p),
        None => Version::new(v.major, v.minor.wrapping_add(1), 0),
    }
}

/// The payload byte at `i` (a pattern that differs by `seed`).
fn byte(seed: u32) -> impl Fn(u32) -> u8 {
    move |i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(97)) >> 3) as u8
}

/// A file the test signer signed: newer than the running image, for this board, with a
/// payload of `len` bytes.
fn file(p: &Pal<'_>, len: u32, seed: u32) -> Result<TestFile, fqp_testkit::Failure> {
    let running = p
        .running()
        .map_err(|e| fail!("the running image: {:?}", e))?;
    let board = fqp_testkit::board().name();
    test_signer::sign(newer(running.version), 0, board, len, byte(seed))
        .map_err(|e| fail!("signing: {:?}", e))
}

/// Writes `f`'s bytes (header, then the payload made by `payload`) in blocks of `block`.
fn write_all(
    p: &mut Pal<'_>,
    f: &TestFile,
    payload: impl Fn(u32) -> u8,
    block: usize,
) -> TestResult {
    write_range(p, f, payload, block, 0..f.len)
}

/// Writes the bytes `range` of `f` (as [`write_all`]) in blocks of `block`.
fn write_range(
    p: &mut Pal<'_>,
    f: &TestFile,
    payload: impl Fn(u32) -> u8,
    block: usize,
    range: core::ops::Range<u32>,
) -> TestResult {
    let mut buf = [0u8; 1024];
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(block as u32) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let pos = at as usize + i;
            *b = if pos < HEADER_LEN {
                f.header[pos]
            } else {
                payload((pos - HEADER_LEN) as u32)
            };
        }
        let wrote = p
            .write_block(at, &buf[..n])
            .map_err(|e| fail!("write {} bytes at {}: {:?}", n, at, e))?;
        check_eq!(wrote, n);
        at += n as u32;
    }
    Ok(())
}

/// Receives the signed file `f` whole (blocks of 1 KiB).
fn receive(p: &mut Pal<'_>, f: &TestFile, seed: u32) -> TestResult {
    p.create_file(f.len)
        .map_err(|e| fail!("create {} bytes: {:?}", f.len, e))?;
    write_all(p, f, byte(seed), 1024)
}

/// Leaves the secondary slot as the tests found it.
fn clean(p: &mut Pal<'_>) -> TestResult {
    p.abort().map_err(|e| fail!("abort: {:?}", e))
}

fn close_with_a_valid_signature_is_accepted() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 6000, 1)?;
        receive(&mut p, &f, 1)?;
        let h = p
            .close_file(f.signature(), CERT)
            .map_err(|e| fail!("close: {:?}", e))?;
        check_eq!(h.payload_len, 6000);
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        log!("{} byte file received, signature and image checked", f.len);
        clean(&mut p)
    })
}

fn close_with_an_invalid_signature_is_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 3000, 2)?;
        // The signature of another file (another payload).
        let other = file(&p, 3000, 3)?;
        receive(&mut p, &f, 2)?;
        check_eq!(
            p.close_file(other.signature(), CERT),
            Err(PalError::SignatureRefused)
        );
        // One byte of the file changed after signing: refused the same way.
        p.create_file(f.len).map_err(|e| fail!("create: {:?}", e))?;
        write_all(&mut p, &f, |i| byte(2)(i) ^ u8::from(i == 1000), 1024)?;
        check_eq!(
            p.close_file(f.signature(), CERT),
            Err(PalError::SignatureRefused)
        );
        check_eq!(p.image_state(), Ok(PlatformState::Invalid));
        clean(&mut p)
    })
}

fn close_with_no_block_written_is_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 2000, 4)?;
        p.create_file(f.len).map_err(|e| fail!("create: {:?}", e))?;
        check_eq!(
            p.close_file(f.signature(), CERT),
            Err(PalError::SignatureRefused)
        );
        clean(&mut p)
    })
}

fn close_with_another_signers_certificate_is_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 2000, 5)?;
        receive(&mut p, &f, 5)?;
        check_eq!(
            p.close_file(f.signature(), OTHER_CERT),
            Err(PalError::SignatureRefused)
        );
        clean(&mut p)
    })
}

fn close_with_a_bad_signer_certificate_is_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 2000, 6)?;
        let cases: [(&[u8], CertError); 3] = [
            (SERVER_CERT, CertError::WrongUsage),
            (&CERT[..CERT.len() / 2], CertError::Malformed),
            (&[], CertError::Malformed),
        ];
        for (cert, why) in cases {
            receive(&mut p, &f, 6)?;
            check_eq!(
                p.close_file(f.signature(), cert),
                Err(PalError::SignerCertificate(why))
            );
        }
        clean(&mut p)
    })
}

fn close_with_a_malformed_or_missing_signature_is_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 2000, 7)?;
        for sig in [&f.signature()[..10], &[][..]] {
            receive(&mut p, &f, 7)?;
            check_eq!(p.close_file(sig, CERT), Err(PalError::SignatureMalformed));
        }
        clean(&mut p)
    })
}

fn images_the_boot_loader_would_refuse_are_refused_at_close() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let running = p.running().map_err(|e| fail!("running: {:?}", e))?;
        let board = fqp_testkit::board().name();
        let older = Version::new(0, 0, 0);
        let cases = [
            (
                newer(running.version),
                "another-board",
                Refusal::Image(ImageError::OtherBoard),
            ),
            (running.version, board, Refusal::Downgrade),
            (older, board, Refusal::Downgrade),
        ];
        for (version, for_board, why) in cases {
            let f = test_signer::sign(version, 0, for_board, 1500, byte(8))
                .map_err(|e| fail!("signing: {:?}", e))?;
            receive(&mut p, &f, 8)?;
            check_eq!(p.close_file(f.signature(), CERT), Err(PalError::Image(why)));
            log!("version {} for {}: {}", version, for_board, why.reason());
        }
        clean(&mut p)
    })
}

fn a_single_byte_image_and_many_blocks_out_of_order() -> TestResult {
    run(|| {
        let mut p = pal()?;
        // A payload of one byte, written one byte at a time where the write unit allows.
        let f = file(&p, 1, 9)?;
        receive(&mut p, &f, 9)?;
        check!(p.close_file(f.signature(), CERT).is_ok(), "one-byte image");
        // 64 KiB in blocks of 256 bytes, the last first.
        let f = file(&p, 64 * 1024, 10)?;
        p.create_file(f.len).map_err(|e| fail!("create: {:?}", e))?;
        let blocks = f.len.div_ceil(256);
        let mut buf = [0u8; 256];
        for b in (0..blocks).rev() {
            let at = b * 256;
            let n = (f.len - at).min(256) as usize;
            for (i, x) in buf[..n].iter_mut().enumerate() {
                let pos = at as usize + i;
                *x = if pos < HEADER_LEN {
                    f.header[pos]
                } else {
                    byte(10)((pos - HEADER_LEN) as u32)
                };
            }
            p.write_block(at, &buf[..n])
                .map_err(|e| fail!("block {}: {:?}", b, e))?;
        }
        check!(
            p.close_file(f.signature(), CERT).is_ok(),
            "{} blocks written last first",
            blocks
        );
        log!(
            "a 257-byte file, then {} blocks of 256 bytes in reverse",
            blocks
        );
        clean(&mut p)
    })
}

fn blocks_outside_the_file_or_off_the_write_unit_are_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        check_eq!(p.write_block(0, &[1, 2, 3]), Err(PalError::NoFile));
        p.create_file(1000).map_err(|e| fail!("create: {:?}", e))?;
        check!(matches!(
            p.write_block(999, &[1, 2]),
            Err(PalError::BlockOutside { .. }) | Err(PalError::Misaligned { .. })
        ));
        check!(matches!(
            p.write_block(1024, &[1]),
            Err(PalError::BlockOutside { .. })
        ));
        let unit = fqp_testkit::board().flash().map_or(1, |f| f.write_size());
        if unit > 1 {
            check!(matches!(
                p.write_block(1, &[1]),
                Err(PalError::Misaligned { .. })
            ));
        }
        clean(&mut p)
    })
}

fn file_sizes_a_slot_cannot_hold_are_refused() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let slot = p.max_file();
        check!(matches!(p.create_file(0), Err(PalError::FileSize { .. })));
        check!(matches!(
            p.create_file(slot + 1),
            Err(PalError::FileSize { .. })
        ));
        log!("a slot holds {} bytes", slot);
        clean(&mut p)
    })
}

fn abort_works_in_every_state() -> TestResult {
    run(|| {
        let mut p = pal()?;
        // Nothing open, twice.
        check_eq!(p.abort(), Ok(()));
        check_eq!(p.abort(), Ok(()));
        // Created; written; closed; closed and refused; activated.
        let f = file(&p, 1200, 11)?;
        p.create_file(f.len).map_err(|e| fail!("create: {:?}", e))?;
        check_eq!(p.abort(), Ok(()));
        receive(&mut p, &f, 11)?;
        check_eq!(p.abort(), Ok(()));
        check_eq!(
            p.close_file(f.signature(), CERT).map(|_| ()),
            Err(PalError::NoFile)
        );
        receive(&mut p, &f, 11)?;
        check!(p.close_file(f.signature(), CERT).is_ok());
        check_eq!(p.abort(), Ok(()));
        check_eq!(p.activate(), Err(PalError::NotClosed));
        receive(&mut p, &f, 11)?;
        check!(p.close_file(&[], CERT).is_err());
        check_eq!(p.abort(), Ok(()));
        receive(&mut p, &f, 11)?;
        check!(p.close_file(f.signature(), CERT).is_ok());
        check_eq!(p.activate(), Ok(()));
        check_eq!(p.requested(), Ok(true));
        check_eq!(p.abort(), Ok(()));
        // The request is withdrawn with the file: the next boot installs nothing.
        check_eq!(p.requested(), Ok(false));
        check_eq!(p.write_block(0, &[0; 8]), Err(PalError::NoFile));
        Ok(())
    })
}

fn activate_needs_a_checked_file() -> TestResult {
    run(|| {
        let mut p = pal()?;
        check_eq!(p.activate(), Err(PalError::NotClosed));
        let f = file(&p, 1500, 12)?;
        receive(&mut p, &f, 12)?;
        check_eq!(p.activate(), Err(PalError::NotClosed));
        check!(p.close_file(&f.signature()[..5], CERT).is_err());
        check_eq!(p.activate(), Err(PalError::NotClosed));
        receive(&mut p, &f, 12)?;
        check!(p.close_file(f.signature(), CERT).is_ok());
        check_eq!(p.requested(), Ok(false));
        check_eq!(p.activate(), Ok(()));
        check_eq!(p.requested(), Ok(true));
        clean(&mut p)
    })
}

fn accept_and_test_need_an_image_on_trial() -> TestResult {
    run(|| {
        let mut p = pal()?;
        // The running image is confirmed (no update is on trial in this group).
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        check_eq!(
            p.set_image_state(ImageState::Accepted),
            Err(PalError::NotOnTrial)
        );
        check_eq!(
            p.set_image_state(ImageState::Testing),
            Err(PalError::NotOnTrial)
        );
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        clean(&mut p)
    })
}

fn rejected_and_aborted_drop_the_file() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 1500, 13)?;
        for state in [ImageState::Rejected, ImageState::Aborted] {
            receive(&mut p, &f, 13)?;
            check_eq!(p.set_image_state(state), Ok(()));
            check_eq!(p.write_block(0, &[0; 8]), Err(PalError::NoFile));
            check_eq!(
                p.close_file(f.signature(), CERT).map(|_| ()),
                Err(PalError::NoFile)
            );
            check_eq!(p.image_state(), Ok(PlatformState::Valid));
        }
        Ok(())
    })
}

fn the_image_state_follows_the_file() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let f = file(&p, 1500, 14)?;
        receive(&mut p, &f, 14)?;
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        check!(p.close_file(f.signature(), OTHER_CERT).is_err());
        check_eq!(p.image_state(), Ok(PlatformState::Invalid));
        // A new file clears it.
        receive(&mut p, &f, 14)?;
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        check!(p.close_file(f.signature(), OTHER_CERT).is_err());
        clean(&mut p)?;
        check_eq!(p.image_state(), Ok(PlatformState::Valid));
        Ok(())
    })
}

fn the_running_image_is_the_boot_loaders() -> TestResult {
    run(|| {
        let p = pal()?;
        let h = p
            .running()
            .map_err(|e| fail!("the primary slot: {:?}", e))?;
        check_eq!(h.board_name(), Ok(fqp_testkit::board().name()));
        check!(h.payload_len > 1024, "a payload of {} bytes", h.payload_len);
        log!(
            "running {} ({} bytes at {:#x}), signed by the lab",
            h.version,
            h.payload_len,
            h.load_address
        );
        Ok(())
    })
}

/// A file received in part, the board reset (the platform layer made anew, knowing nothing):
/// reopened with the sectors kept (`resume_file`), its header checks again, the part past
/// them is erased — bytes written there before the reset, here garbage, do not survive — and
/// the rest written completes a file that passes its checks. A point off a sector boundary
/// or past the file is refused.
fn a_file_goes_on_after_a_reset_from_the_sectors_kept() -> TestResult {
    run(|| {
        let mut p = pal()?;
        let sector = p.sector();
        let f = file(&p, 3 * sector, 12)?;
        p.create_file(f.len).map_err(|e| fail!("create: {:?}", e))?;
        write_range(&mut p, &f, byte(12), 1024, 0..2 * sector)?;
        // Into the third sector, bytes that are not the file's.
        write_range(&mut p, &f, byte(99), 1024, 2 * sector..2 * sector + 1024)?;
        // The reset: a platform layer made anew over the same flash.
        let mut p = pal()?;
        check_eq!(p.receiving(), None);
        check!(matches!(
            p.resume_file(f.len, sector + 8),
            Err(PalError::Misaligned { .. })
        ));
        check!(p.resume_file(f.len, 4 * sector).is_err(), "past the file");
        p.resume_file(f.len, 2 * sector)
            .map_err(|e| fail!("resume: {:?}", e))?;
        check_eq!(p.receiving(), Some(f.len));
        p.check_early(CERT)
            .map_err(|e| fail!("the kept header: {:?}", e))?;
        write_range(&mut p, &f, byte(12), 1024, 2 * sector..f.len)?;
        let h = p
            .close_file(f.signature(), CERT)
            .map_err(|e| fail!("close after the resume: {:?}", e))?;
        check_eq!(h.payload_len, f.len - HEADER_LEN as u32);
        log!("2 of 3 sectors kept through a reset, the third written again");
        clean(&mut p)
    })
}
