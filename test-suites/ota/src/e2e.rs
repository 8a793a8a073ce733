//! Group `ota`: updates end to end, as the former OTA end-to-end campaigns ran them. The host's
//! cloud offers an update of the run's own image, signed again as the test asks
//! (`cloud-ota-offer`: another version, board or signer, unsigned, altered after signing, a
//! single byte); the device's agent (`fqp_ota::Agent`) takes the job over its own cloud
//! connection, fetches the stream into the boot loader's slot, checks it and asks for it;
//! the board resets (`fqp_testkit::reboot_and_resume`), the boot loader installs the image on
//! trial, and the test, resumed in the new image, has the agent run its self test and report.
//! Each test checks the job's end on the cloud's side (`cloud-ota-update`: status, reason,
//! the version the device reports) and which image the board runs.
//!
//! The update's payload is the running firmware, so the new image runs these same tests:
//! only the version in the header differs. Refused updates leave the board on its image,
//! with nothing asked of the boot loader.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use fqp_boot::status::{Outcome, Refusal};
use fqp_image::{ImageError, Version};
use fqp_mqtt::{Client, Mailbox, Message};
use fqp_net::TcpStream;
use fqp_ota::{Agent, AgentError, Config, PalError, PlatformState, Step};
use fqp_suite_cloud::{ask_cloud, setting, Identity};
use fqp_testkit::{check, check_eq, fail, group, log, Failure, TestResult};

group!(pub OTA, "ota", [
    a_newer_version_is_accepted => 120_000,
    an_unsigned_image_is_refused => 60_000,
    an_untrusted_signer_is_refused => 60_000,
    the_same_version_is_refused => 60_000,
    an_older_version_is_refused => 60_000,
    an_image_for_another_board_is_refused => 60_000,
    an_image_corrupted_after_signing_is_refused => 60_000,
    three_updates_back_to_back => 240_000,
    rollback_when_the_new_image_cannot_connect => 120_000,
    a_failed_self_test_rolls_back => 120_000,
    a_one_byte_image_is_rolled_back => 120_000,
    cancel_then_update => 120_000,
    a_lost_connection_resumes_the_download => 60_000,
    a_reset_in_the_download_resumes_it => 120_000,
    a_group_deployment_reaches_every_device_of_the_pool => 180_000,
    the_smallest_blocks_carry_an_image_whole => 60_000,
    the_largest_blocks_carry_an_image_whole => 60_000,
    fetch_rate_by_block_size_and_blocks_in_flight => 90_000,
]);

/// The name the device holds the signer's certificate under (the jobs' `certfile`).
const CERTIFICATE: &str = "code-signing";
/// The task the tests run in: P-256 verification, the MQTT client, a mailbox of blocks.
const STACK_WORDS: usize = 12 * 1024;
/// How long a step of a test may take (below the groups' timeouts).
const STEP_MS: u32 = 110_000;
/// Blocks of the reference agent's size, four asked for at a time.
const BLOCK: u32 = 4096;
const SLOTS: usize = 6;
/// A mailbox slot holds a block, its topic and the CBOR around it.
const SLOT_BYTES: usize = BLOCK as usize + 512;

/// Runs `body` in a task with room for the agent.
fn run(body: fn() -> TestResult) -> TestResult {
    fqp_testkit::with_stack("ota", STACK_WORDS, STEP_MS, body)
}

/// Runs `body` in a task with room for a mailbox of the largest blocks.
fn run_big(body: fn() -> TestResult) -> TestResult {
    fqp_testkit::with_stack("ota_big", 2 * STACK_WORDS, STEP_MS, body)
}

/// The agent's configuration for these tests.
fn config() -> Config {
    Config {
        block_size: BLOCK,
        blocks_per_request: 4,
        request_timeout_ms: 5_000,
        ..Config::default()
    }
}

/// The image the board runs, as its boot loader started it.
fn running() -> Result<Version, Failure> {
    let p = crate::pal::pal()?;
    Ok(p.running()
        .map_err(|e| fail!("the running image: {:?}", e))?
        .version)
}

/// The version just newer than the running image's, as `cloud-ota-offer` takes it.
fn next_version() -> Result<String, Failure> {
    Ok(format!("{}", crate::pal::newer(running()?)))
}

/// A version older than `v` (none below 0.0.0).
fn older(v: Version) -> Option<Version> {
    if v.patch > 0 {
        Some(Version::new(v.major, v.minor, v.patch - 1))
    } else if v.minor > 0 {
        Some(Version::new(v.major, v.minor - 1, u16::MAX))
    } else if v.major > 0 {
        Some(Version::new(v.major - 1, u8::MAX, u16::MAX))
    } else {
        None
    }
}

/// The update the host's cloud holds for this device.
struct Held {
    version: String,
    status: String,
    reason: String,
    updated_by: String,
    /// The agent's last doings, as it told the job when the update failed.
    log: String,
}

/// Asks the host's cloud for an update of the running firmware, as `fields` say; its job.
fn offer(fields: &[(&str, &str)]) -> Result<String, Failure> {
    let me = Identity::provisioned()?;
    let mut all: Vec<(&str, &str)> = vec![("thing", &me.thing)];
    all.extend_from_slice(fields);
    ask_cloud("cloud-ota-offer", &all)?;
    setting("job")
}

/// Job `job` of this device as the cloud holds it.
fn held(job: &str) -> Result<Held, Failure> {
    let me = Identity::provisioned()?;
    ask_cloud("cloud-ota-update", &[("thing", &me.thing), ("job", job)])?;
    Ok(Held {
        version: setting("ota_version")?,
        status: setting("ota_status")?,
        reason: setting("ota_reason")?,
        updated_by: setting("ota_updated_by")?,
        log: setting("ota_log")?,
    })
}

/// The version as the agent reports it (`updatedBy`).
fn reported(v: Version) -> String {
    format!("0x{:08x}", v.to_u32())
}

/// What the agent's work came to, or why it could not go on.
type Agentic<R> = Result<R, fqp_ota::AgentError>;

/// An MQTT client whose messages go to a mailbox.
type Mqtt<'b> = Client<'b, TcpStream, &'b mut dyn FnMut(&Message<'_>)>;

/// The signer's certificate the device holds (`code_signing_cert`, DER).
fn certificate() -> Result<Vec<u8>, Failure> {
    hex::decode(setting("code_signing_cert")?)
        .map_err(|_| fail!("the host's code_signing_cert is not hex"))
}

/// Connects to the cloud as this device, with a mailbox of `N` messages of `B` bytes and a
/// receive buffer for the largest, and runs `f` with the client.
fn connected<const N: usize, const B: usize, R>(
    f: impl FnOnce(&mut Mqtt<'_>, &Mailbox<N, B>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let me = Identity::provisioned()?;
    let mailbox = Mailbox::<N, B>::new();
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; B + 512]);
    let mut offer = |m: &Message<'_>| {
        mailbox.offer(m);
    };
    let mut c = Client::new(
        &mut tx,
        &mut rx,
        fqp_suite_cloud::ms,
        &mut offer as &mut dyn FnMut(&Message<'_>),
    );
    fqp_suite_cloud::connect(&mut c, &me)?;
    let r = f(&mut c, &mailbox);
    let _ = c.disconnect();
    r
}

/// Connects this device's agent (fetching as `config` says) to the cloud and runs `f` with
/// it: the agent, the client, its mailbox and the signer's certificate the device holds.
fn with_agent_as<const N: usize, const B: usize, R>(
    config: Config,
    f: impl FnOnce(&mut Agent<'_, '_>, &mut Mqtt<'_>, &Mailbox<N, B>, &[(&str, &[u8])]) -> Agentic<R>,
) -> Result<R, Failure> {
    let me = Identity::provisioned()?;
    let cert = certificate()?;
    let mut pal = crate::pal::pal()?;
    let mut agent = Agent::new(&me.thing, &mut pal, config);
    connected(|c, mailbox| {
        f(&mut agent, c, mailbox, &[(CERTIFICATE, &cert)]).map_err(|e| fail!("the agent: {:?}", e))
    })
}

/// [`with_agent_as`] with the tests' own configuration.
fn with_agent<R>(
    f: impl FnOnce(
        &mut Agent<'_, '_>,
        &mut Mqtt<'_>,
        &Mailbox<SLOTS, SLOT_BYTES>,
        &[(&str, &[u8])],
    ) -> Agentic<R>,
) -> Result<R, Failure> {
    with_agent_as(config(), f)
}

/// The agent takes the next job and carries it as far as it goes before a reset.
fn take_update() -> Result<Step, Failure> {
    with_agent(|a, c, m, certs| a.update(c, m, certs))
}

/// After a boot: the agent's self test (`passes`) and report.
fn after_boot(passes: bool) -> Result<Option<Step>, Failure> {
    with_agent(|a, c, m, _| a.after_boot(c, m, || passes))
}

/// Cancels what earlier tests may have left queued for this device.
fn clear_jobs() -> TestResult {
    let me = Identity::provisioned()?;
    ask_cloud("cloud-jobs-clear", &[("thing", &me.thing)])
}

/// Confirms a trial image an interrupted test left unconfirmed (the device restarted in the
/// middle of it, and the test runs again): the boot loader takes no update until then.
fn settle() -> TestResult {
    let mut p = crate::pal::pal()?;
    if p.image_state() == Ok(PlatformState::PendingCommit) {
        p.set_image_state(fqp_ota::ImageState::Accepted)
            .map_err(|e| fail!("confirming the image left on trial: {:?}", e))?;
        log!("confirmed the image an interrupted test left on trial");
    }
    Ok(())
}

/// Offers an update as `fields` say and takes it: activated, its job waiting for the
/// self test; then resets into it (never returns on success).
fn update_and_reset(fields: &[(&str, &str)]) -> TestResult {
    clear_jobs()?;
    settle()?;
    let t0 = fqp_kernel::time::uptime_us();
    let job = offer(fields)?;
    let (step, fetched) = with_agent(|a, c, m, certs| {
        let step = a.update(c, m, certs)?;
        Ok((step, a.fetched()))
    })?;
    // From the job's creation to the image checked and waiting for the boot loader, in
    // device time; and the fetch alone (4 KiB blocks, 4 asked for at a time).
    let us = fqp_kernel::time::uptime_us().saturating_sub(t0).max(1);
    if fqp_testkit::resumed() == 0 {
        // A test reports a figure once (its later rounds fetch the same way).
        fqp_testkit::metric("update_ready_ms", us / 1000, "ms");
        fqp_testkit::metric(
            "fetch_kib_per_s",
            fetched.bytes * 1000 / 1024 / fetched.ms.max(1),
            "KiB/s",
        );
    }
    check!(
        matches!(step, Step::Activated { job: ref j } if j.as_str() == job),
        "the agent took {} to {:?}",
        job,
        step
    );
    let h = held(&job)?;
    check_eq!(h.status.as_str(), "IN_PROGRESS");
    log!("{} ({}) activated: resetting into it", job, h.version);
    fqp_testkit::reboot_and_resume()
}

/// Resumed after the reset into an update the agent accepted: the job succeeded, the board
/// runs the offered version, confirmed.
fn accepted_after_reset() -> Result<Version, Failure> {
    let step = after_boot(true)?;
    if fqp_testkit::resumed() == 1 {
        // From the new image's start to its job SUCCEEDED, device time (with the rest of
        // the update's figures: update_ready_ms, boot_ms — the job's creation to accepted).
        fqp_testkit::metric("accepted_ms", fqp_kernel::time::uptime_us() / 1000, "ms");
    }
    let Some(Step::Accepted { job }) = step else {
        return Err(fail!("after the reset the agent came to {:?}", step));
    };
    let h = held(&job)?;
    let now = running()?;
    check_eq!(h.status.as_str(), "SUCCEEDED");
    check_eq!(h.version, format!("{}", now));
    check_eq!(h.updated_by, reported(now));
    let p = crate::pal::pal()?;
    check_eq!(p.last_update(), Ok(Outcome::Installed));
    check_eq!(p.image_state(), Ok(PlatformState::Valid));
    log!("{} installed and confirmed: running {}", job, now);
    Ok(now)
}

/// Offers an update as `fields` say; the agent must refuse it with `reason`, the job fail
/// with it, and the board stay on its image with nothing asked of its boot loader.
fn refused(fields: &[(&str, &str)], reason: &str) -> TestResult {
    clear_jobs()?;
    settle()?;
    let before = running()?;
    let job = offer(fields)?;
    let step = take_update()?;
    check!(
        matches!(step, Step::Failed { job: ref j, reason: r } if j.as_str() == job && r == reason),
        "expected {} to fail with {:?}, the agent came to {:?}",
        job,
        reason,
        step
    );
    let h = held(&job)?;
    check_eq!(h.status.as_str(), "FAILED");
    check_eq!(h.reason.as_str(), reason);
    // What the device did around it, for whoever debugs the failure from the cloud.
    check!(
        h.log.starts_with("took ") && h.log.ends_with(reason),
        "the device's log in the job: {:?}",
        h.log
    );
    check_eq!(running()?, before);
    let p = crate::pal::pal()?;
    check_eq!(p.requested(), Ok(false));
    log!("{} refused: {}", job, reason);
    Ok(())
}

fn a_newer_version_is_accepted() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => update_and_reset(&[("version", &next_version()?)]),
        _ => accepted_after_reset().map(|_| ()),
    })
}

fn an_unsigned_image_is_refused() -> TestResult {
    run(|| {
        refused(
            &[("version", &next_version()?), ("signer", "none")],
            "unsigned: the job gives no file signature",
        )
    })
}

fn an_untrusted_signer_is_refused() -> TestResult {
    run(|| {
        refused(
            &[("version", &next_version()?), ("signer", "untrusted")],
            PalError::Image(Refusal::Image(ImageError::UnknownSigner)).reason(),
        )
    })
}

fn the_same_version_is_refused() -> TestResult {
    run(|| {
        let v = running()?;
        refused(
            &[("version", &format!("{}", v))],
            PalError::Image(Refusal::Downgrade).reason(),
        )
    })
}

fn an_older_version_is_refused() -> TestResult {
    run(|| {
        let Some(v) = older(running()?) else {
            fqp_testkit::skip!("the running image is 0.0.0: nothing is older")
        };
        refused(
            &[("version", &format!("{}", v))],
            PalError::Image(Refusal::Downgrade).reason(),
        )
    })
}

fn an_image_for_another_board_is_refused() -> TestResult {
    run(|| {
        refused(
            &[("version", &next_version()?), ("board", "not-this-board")],
            PalError::Image(Refusal::Image(ImageError::OtherBoard)).reason(),
        )
    })
}

fn an_image_corrupted_after_signing_is_refused() -> TestResult {
    run(|| {
        // The check of the file's signature at close sees the change; 64 KiB of the image
        // make the file (the whole image would only take longer to fetch).
        refused(
            &[
                ("version", &next_version()?),
                ("corrupt", "1"),
                ("payload", &format!("{}", FETCH_PAYLOAD)),
            ],
            PalError::SignatureRefused.reason(),
        )
    })
}

/// Three updates, each accepted before the next is offered.
fn three_updates_back_to_back() -> TestResult {
    run(|| {
        let round = fqp_testkit::resumed();
        if round > 0 {
            accepted_after_reset()?;
        }
        if round == 3 {
            return Ok(());
        }
        update_and_reset(&[("version", &next_version()?)])
    })
}

/// The new image never reaches the cloud to confirm itself (it stays silent across a reset,
/// as a watchdog would reset an image that hung connecting): the boot loader restores the
/// previous image, and the agent there fails the job with the reason.
fn rollback_when_the_new_image_cannot_connect() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => update_and_reset(&[("version", &next_version()?)]),
        1 => {
            let p = crate::pal::pal()?;
            check_eq!(p.image_state(), Ok(PlatformState::PendingCommit));
            log!("on trial, not confirming: resetting");
            fqp_testkit::reboot_and_resume()
        }
        _ => back_on_the_previous_image("not confirmed: rolled back"),
    })
}

/// After a rollback: the agent fails the job with `reason`, the board runs the version
/// before the update's.
fn back_on_the_previous_image(reason: &str) -> TestResult {
    let p = crate::pal::pal()?;
    check_eq!(p.image_state(), Ok(PlatformState::Valid));
    let step = after_boot(true)?;
    let Some(Step::Failed { job, reason: r }) = step else {
        return Err(fail!("after the rollback the agent came to {:?}", step));
    };
    check_eq!(r, reason);
    let h = held(&job)?;
    check_eq!(h.status.as_str(), "FAILED");
    check_eq!(h.reason.as_str(), reason);
    let now = running()?;
    check!(
        format!("{}", now) != h.version,
        "still on {} after the rollback",
        now
    );
    check_eq!(h.updated_by, reported(now));
    log!("{} rolled back: running {} again", job, now);
    Ok(())
}

/// The new image's self test fails: the agent rejects it and fails the job; the next boot
/// restores the previous image.
fn a_failed_self_test_rolls_back() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => update_and_reset(&[("version", &next_version()?)]),
        1 => {
            let step = after_boot(false)?;
            check!(
                matches!(
                    step,
                    Some(Step::Failed {
                        reason: "self test failed",
                        ..
                    })
                ),
                "{:?}",
                step
            );
            let p = crate::pal::pal()?;
            check_eq!(p.image_state(), Ok(PlatformState::Invalid));
            fqp_testkit::reboot_and_resume()
        }
        _ => {
            let p = crate::pal::pal()?;
            check_eq!(p.last_update(), Ok(Outcome::RolledBack { rejected: true }));
            check_eq!(p.image_state(), Ok(PlatformState::Valid));
            // The job ended at the self test: nothing is left for the agent.
            check_eq!(after_boot(true)?, None);
            Ok(())
        }
    })
}

/// A signed image of a single byte passes every check of its file, and cannot start: the
/// boot loader rejects it on trial and restores the previous image.
fn a_one_byte_image_is_rolled_back() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => update_and_reset(&[("version", &next_version()?), ("payload", "1")]),
        _ => back_on_the_previous_image("rejected on trial: rolled back"),
    })
}

/// An update canceled before the device takes it is never fetched; the next one is.
fn cancel_then_update() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => {
            clear_jobs()?;
            let v = next_version()?;
            let canceled = offer(&[("version", &v)])?;
            ask_cloud("cloud-job-cancel", &[("job", &canceled)])?;
            check_eq!(held(&canceled)?.status.as_str(), "CANCELED");
            check_eq!(take_update()?, Step::NoJob);
            update_and_reset(&[("version", &v)])
        }
        _ => accepted_after_reset().map(|_| ()),
    })
}

/// What the fetch tests offer: the image's first 64 KiB, signed as an image of its own. It
/// passes every check of its file; it is withdrawn before any reset, never started.
const FETCH_PAYLOAD: u32 = 64 * 1024;

/// Withdraws a checked file before the reset (its request dropped, its job canceled).
fn withdraw() -> TestResult {
    let mut p = crate::pal::pal()?;
    p.abort().map_err(|e| fail!("abort: {:?}", e))?;
    check_eq!(p.requested(), Ok(false));
    clear_jobs()
}

/// Offers a [`FETCH_PAYLOAD`] update and has the agent fetch it as `config` says (mailbox
/// of `N` messages of `B` bytes): every block in, the file checked and activated; then
/// withdrawn. The rate, in KiB a second of device time from the job's creation, is reported
/// as `figure`.
fn fetch_whole<const N: usize, const B: usize>(config: Config, figure: &str) -> TestResult {
    clear_jobs()?;
    settle()?;
    let t0 = fqp_kernel::time::uptime_us();
    let job = offer(&[
        ("version", &next_version()?),
        ("payload", &format!("{}", FETCH_PAYLOAD)),
    ])?;
    let (step, fetched) = with_agent_as::<N, B, _>(config, |a, c, m, certs| {
        let step = a.update(c, m, certs)?;
        Ok((step, a.fetched()))
    })?;
    let us = fqp_kernel::time::uptime_us().saturating_sub(t0).max(1);
    check!(
        matches!(step, Step::Activated { job: ref j } if j.as_str() == job),
        "{} in blocks of {}: the agent came to {:?}",
        job,
        config.block_size,
        step
    );
    check_eq!(fetched.blocks, fetched.of);
    let bytes = u64::from(FETCH_PAYLOAD) + fqp_image::HEADER_LEN as u64;
    check_eq!(fetched.bytes, bytes);
    // The fetch alone: from its first request to its last block written.
    fqp_testkit::metric(figure, bytes * 1000 / 1024 / fetched.ms.max(1), "KiB/s");
    log!(
        "{} blocks of {} bytes, {} asked for at a time: fetched in {} ms, checked and \
         activated {} ms after the job was created",
        fetched.of,
        config.block_size,
        config.blocks_per_request,
        fetched.ms,
        us / 1000
    );
    withdraw()
}

/// The stream's smallest blocks (256 bytes), 16 asked for at a time.
fn the_smallest_blocks_carry_an_image_whole() -> TestResult {
    run(|| {
        let c = Config {
            block_size: 256,
            blocks_per_request: 16,
            ..config()
        };
        fetch_whole::<4, 768>(c, "kib_per_s_256b_x16")
    })
}

/// The largest blocks this board's agent takes (16 KiB: its MQTT buffers hold one), one at
/// a time.
fn the_largest_blocks_carry_an_image_whole() -> TestResult {
    run_big(|| {
        let c = Config {
            block_size: 16 * 1024,
            blocks_per_request: 1,
            ..config()
        };
        fetch_whole::<2, { 16 * 1024 + 512 }>(c, "kib_per_s_16k_x1")
    })
}

/// The fetch's rate by block size and blocks asked for at a time (figures only: each must
/// carry its file whole).
fn fetch_rate_by_block_size_and_blocks_in_flight() -> TestResult {
    run(|| {
        for (block, at_once, figure) in [
            (1024, 1, "kib_per_s_1k_x1"),
            (1024, 8, "kib_per_s_1k_x8"),
            (4096, 1, "kib_per_s_4k_x1"),
            (4096, 4, "kib_per_s_4k_x4"),
        ] {
            let c = Config {
                block_size: block,
                blocks_per_request: at_once,
                ..config()
            };
            fetch_whole::<SLOTS, SLOT_BYTES>(c, figure)?;
        }
        Ok(())
    })
}

/// The download of [`a_reset_in_the_download_resumes_it`]: the tests' own, with progress
/// (and what is written) recorded in the job every two blocks.
fn recording() -> Config {
    Config {
        progress_every: 2,
        ..config()
    }
}

/// The cloud cuts the download after 10 blocks and the board resets (its memory gone): the
/// agent takes the job again after the boot and goes on from the blocks it recorded in the
/// job as written, fetching only the rest; the file passes its checks.
fn a_reset_in_the_download_resumes_it() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => cut_then_reset(),
        _ => go_on_after_reset(),
    })
}

/// The first half of [`a_reset_in_the_download_resumes_it`]: the download cut, the reset.
#[inline(never)] // each half's mailbox in a frame of its own, not both in the test's
fn cut_then_reset() -> TestResult {
    clear_jobs()?;
    settle()?;
    offer(&[
        ("version", &next_version()?),
        ("payload", &format!("{}", FETCH_PAYLOAD)),
    ])?;
    let me = Identity::provisioned()?;
    ask_cloud("cloud-cut", &[("thing", &me.thing), ("blocks", "10")])?;
    let (first, fetched) = with_agent_as::<SLOTS, SLOT_BYTES, _>(recording(), |a, c, m, certs| {
        Ok((a.update(c, m, certs), a.fetched()))
    })?;
    check!(
        matches!(first, Err(AgentError::Mqtt(_))),
        "the cut connection came to {:?}",
        first
    );
    check!(
        fetched.blocks >= 10 && fetched.blocks < fetched.of,
        "{} of {} blocks before the cut",
        fetched.blocks,
        fetched.of
    );
    log!(
        "{} of {} blocks before the cut: resetting",
        fetched.blocks,
        fetched.of
    );
    fqp_testkit::reboot_and_resume()
}

/// The second half: after the boot, the download goes on.
#[inline(never)]
fn go_on_after_reset() -> TestResult {
    let (step, fetched) = with_agent_as::<SLOTS, SLOT_BYTES, _>(recording(), |a, c, m, certs| {
        Ok((a.update(c, m, certs)?, a.fetched()))
    })?;
    let Step::Activated { job } = step else {
        return Err(fail!("after the reset the agent came to {:?}", step));
    };
    // Recorded every two blocks, four in flight: at least the first six were kept.
    let kept = fetched.of - fetched.blocks;
    check!(
        kept >= 6 && fetched.bytes == u64::from(FETCH_PAYLOAD) + 256 - u64::from(kept) * 4096,
        "after the reset {} of {} blocks fetched ({} bytes)",
        fetched.blocks,
        fetched.of,
        fetched.bytes
    );
    check_eq!(held(&job)?.status.as_str(), "IN_PROGRESS");
    log!(
        "{} blocks kept through the reset, the other {} fetched after it",
        kept,
        fetched.blocks
    );
    withdraw()
}

/// The run's deployment to its pool (`cloud-ota-pool`: made by the first device to ask, at
/// `version`, found by the others): its job, the devices of the pool, how many of them have
/// taken it (their executions SUCCEEDED).
fn pool_deployment(version: Version) -> Result<(String, u32, u32), Failure> {
    ask_cloud("cloud-ota-pool", &[("version", &format!("{}", version))])?;
    let count = |key: &str| -> Result<u32, Failure> {
        let text = setting(key)?;
        text.parse()
            .map_err(|_| fail!("the host's {} is not a count: {:?}", key, text))
    };
    Ok((setting("job")?, count("pool")?, count("succeeded")?))
}

/// Every device of the run takes part at once (suites.toml `pool`): one deployment for the
/// thing group of the run's devices, which each device's agent takes, installs across a reset
/// and accepts; each device then waits until the deployment has succeeded on every one.
fn a_group_deployment_reaches_every_device_of_the_pool() -> TestResult {
    run(|| match fqp_testkit::resumed() {
        0 => take_the_pools_update(),
        _ => until_the_whole_pool_has_it(),
    })
}

/// The first half of [`a_group_deployment_reaches_every_device_of_the_pool`].
#[inline(never)] // each half's mailbox in a frame of its own
fn take_the_pools_update() -> TestResult {
    settle()?;
    let now = running()?;
    // Newer than what any device of the pool runs after the group's other updates.
    let minor = now
        .minor
        .checked_add(1)
        .ok_or_else(|| fail!("no version above {} for the pool", now))?;
    let (job, pool, _) = pool_deployment(Version::new(now.major, minor, 0))?;
    let step = take_update()?;
    check!(
        matches!(step, Step::Activated { job: ref j } if j.as_str() == job),
        "the pool's deployment {} came to {:?}",
        job,
        step
    );
    log!(
        "{} (to the {} devices of the pool) activated: resetting into it",
        job,
        pool
    );
    fqp_testkit::reboot_and_resume()
}

/// The second half: accepted here, then every device of the pool.
#[inline(never)]
fn until_the_whole_pool_has_it() -> TestResult {
    let now = accepted_after_reset()?;
    let mut waited_ms = 0;
    loop {
        let (job, pool, succeeded) = pool_deployment(now)?;
        if succeeded == pool {
            log!(
                "{} succeeded on all {} devices of the pool (waited {} ms for the others)",
                job,
                pool,
                waited_ms
            );
            fqp_testkit::metric("pool_devices", pool, "");
            return Ok(());
        }
        check!(
            waited_ms < 120_000,
            "{} succeeded on {} of the pool's {} devices after 120 s",
            job,
            succeeded,
            pool
        );
        fqp_kernel::task::delay(fqp_kernel::time::ms_to_ticks(500));
        waited_ms += 500;
    }
}

/// The cloud drops the connection in the middle of a download: on the next connection the
/// agent takes the same job again and fetches only the blocks still missing; the file is
/// whole and passes its checks.
fn a_lost_connection_resumes_the_download() -> TestResult {
    run(|| {
        clear_jobs()?;
        settle()?;
        let job = offer(&[
            ("version", &next_version()?),
            ("payload", &format!("{}", FETCH_PAYLOAD)),
        ])?;
        let me = Identity::provisioned()?;
        ask_cloud("cloud-cut", &[("thing", &me.thing), ("blocks", "6")])?;
        let cert = certificate()?;
        let certs = [(CERTIFICATE, &cert[..])];
        let mut pal = crate::pal::pal()?;
        let mut agent = Agent::new(&me.thing, &mut pal, config());
        let first = connected::<SLOTS, SLOT_BYTES, _>(|c, m| Ok(agent.update(c, m, &certs)))?;
        check!(
            matches!(first, Err(AgentError::Mqtt(_))),
            "the cut connection came to {:?}",
            first
        );
        let (before, blocks) = (agent.fetched().blocks, agent.fetched().of);
        check!(
            before >= 6 && before < blocks,
            "{} of {} blocks before the cut",
            before,
            blocks
        );
        let step = connected::<SLOTS, SLOT_BYTES, _>(|c, m| {
            agent
                .update(c, m, &certs)
                .map_err(|e| fail!("the agent, reconnected: {:?}", e))
        })?;
        check!(
            matches!(step, Step::Activated { job: ref j } if j.as_str() == job),
            "after the reconnection the agent came to {:?}",
            step
        );
        let (after, all) = (agent.fetched().blocks, agent.fetched().of);
        check_eq!(all, blocks);
        check_eq!(before + after, blocks);
        log!(
            "{} blocks before the cut, the other {} after it",
            before,
            after
        );
        drop(agent);
        withdraw()
    })
}
