//! The OTA agent: takes the next job, fetches its file over the cloud's MQTT stream into the
//! platform layer, has it checked, asks the boot loader for it — and after the reset runs the
//! new image's self test and reports the job's end, or the reason it ended otherwise.
//!
//! The job's document is the contract's `afr_ota` (stream name, file size and id, the
//! signer's certificate name, the file's signature). Blocks are asked for several at a time
//! (a bitmap of the missing ones from the first missing on), each request sent again when
//! its blocks stop coming; progress goes to the job every so many blocks. The status details
//! the agent writes: `self_test` (`ready` once the image waits for its reboot, `accepted` or
//! `rejected` after it), `updatedBy` (the image's version, `0x` and eight hex digits),
//! `progress` (`received/total` blocks), `written` (with each progress report: `K blocks of
//! <block size>`, the first K blocks written whole and ending on a sector boundary), `retries`
//! (requests for blocks sent again, and downloads gone on with after a lost connection or a
//! reset, in this boot), `reason` (why it failed) and with it `log` (the agent's last doings:
//! what the device did around the failure, for whoever debugs it from the cloud).
//!
//! A download goes on where it stopped: after a lost connection from the blocks the agent
//! holds in memory, after a reset (or a power cut) from the `written` the job keeps — the
//! agent's own record, taken again with the job, the kept part of the slot checked again
//! before it is trusted and the rest erased, so no byte is programmed twice.

use crate::pal::{ImageState, Pal, PalError, PlatformState};
use core::fmt::Write as _;
use fqp_boot::status::Outcome;
use fqp_jobs::{doc, Jobs, Request, Status};
use fqp_mqtt::{Client, Mailbox, Message, QoS};
use fqp_transport::Transport;
use heapless::String;
use serde::{Deserialize, Serialize};

/// How the agent fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Bytes per block (the stream's bounds: 256 to 128 Ki; the MQTT receive buffer and the
    /// mailbox's slots must hold a block and its topic).
    pub block_size: u32,
    /// Blocks asked for at once (1 to 64).
    pub blocks_per_request: u32,
    /// How long a request's blocks may take before it is sent again.
    pub request_timeout_ms: u32,
    /// Requests sent again without a block arriving before the download is given up.
    pub retries: u32,
    /// Blocks between progress reports to the job.
    pub progress_every: u32,
    /// How long the job's answers may take.
    pub answer_timeout_ms: u32,
}

impl Default for Config {
    /// The reference agent's: 4 KiB blocks, one at a time, 10 s per request, progress every
    /// 64 blocks.
    fn default() -> Self {
        Config {
            block_size: 4096,
            blocks_per_request: 1,
            request_timeout_ms: 10_000,
            retries: 5,
            progress_every: 64,
            answer_timeout_ms: 10_000,
        }
    }
}

/// What a call of the agent came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No job is pending.
    NoJob,
    /// The file is checked and the boot loader asked for it: reset the board.
    Activated { job: String<64> },
    /// The running image passed its self test; its job succeeded.
    Accepted { job: String<64> },
    /// The update failed; its job says why (`reason`). After a rejected self test, reset the
    /// board: the boot loader restores the previous image.
    Failed {
        job: String<64>,
        reason: &'static str,
    },
}

/// Why the agent could not go on (the job is left as it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentError {
    /// A jobs request failed (MQTT, a refusal, no answer).
    Jobs(fqp_jobs::Error),
    Mqtt(fqp_mqtt::Error),
    /// The job's document is not one the agent reads.
    Document,
    Pal(PalError),
    /// The mailbox's slots (`slot` bytes) cannot hold a block of `block` bytes with its topic
    /// and framing ([`BLOCK_OVERHEAD`]): every block would be dropped. A configuration error
    /// of the device's, found before a job is taken.
    Buffers {
        block: u32,
        slot: usize,
    },
}

/// What a block's message carries besides the block: its topic (the agent's topics are at
/// most 160 bytes) and the CBOR around it.
pub const BLOCK_OVERHEAD: usize = 160 + 64;

impl From<fqp_jobs::Error> for AgentError {
    fn from(e: fqp_jobs::Error) -> Self {
        AgentError::Jobs(e)
    }
}

impl From<fqp_mqtt::Error> for AgentError {
    fn from(e: fqp_mqtt::Error) -> Self {
        AgentError::Mqtt(e)
    }
}

impl From<PalError> for AgentError {
    fn from(e: PalError) -> Self {
        AgentError::Pal(e)
    }
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(rename = "afr_ota", borrow)]
    ota: Afr<'a>,
}

#[derive(Deserialize)]
struct Afr<'a> {
    #[serde(borrow)]
    streamname: &'a str,
    #[serde(borrow)]
    files: heapless::Vec<FileEntry<'a>, 1>,
}

#[derive(Deserialize)]
struct FileEntry<'a> {
    filesize: u32,
    fileid: u32,
    #[serde(borrow)]
    certfile: &'a str,
    #[serde(rename = "sig-sha256-ecdsa", borrow, default)]
    signature: Option<&'a str>,
}

/// The status details the agent writes and reads.
#[derive(Serialize, Deserialize, Default, Debug)]
struct Details<'a> {
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    self_test: Option<&'a str>,
    #[serde(
        rename = "updatedBy",
        skip_serializing_if = "Option::is_none",
        borrow,
        default
    )]
    updated_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    progress: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    written: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    retries: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    log: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", borrow, default)]
    reason: Option<&'a str>,
}

/// The most blocks a file may have: a bitmap of 8 KiB bits (2 MiB in 256-byte blocks, 32 MiB
/// in 4 KiB ones).
const MAX_BLOCKS: usize = 8192;

/// A download under way: kept across a lost connection, so that the job's next call picks
/// it up where it stopped.
struct Progress {
    job: String<64>,
    /// File id and size, and the block size it is fetched in.
    file: (u32, u32),
    block: u32,
    /// The blocks written, a bit each.
    have: [u8; MAX_BLOCKS / 8],
    received: usize,
    /// The bytes of the blocks written.
    bytes: u64,
}

/// The agent of one thing, over the board's platform layer.
pub struct Agent<'p, 'f> {
    thing: &'p str,
    pal: &'p mut Pal<'f>,
    config: Config,
    token: u32,
    progress: Option<Progress>,
    /// What the latest call fetched.
    fetched: Fetched,
    /// Requests sent again and downloads gone on with, for the job at hand.
    retries: u32,
    trail: Trail,
}

/// Room for the agent's last doings (the status details' `log`).
const TRAIL: usize = 224;

/// The agent's last doings, oldest first, `; ` between them: the oldest go to make room.
#[derive(Default)]
struct Trail(String<TRAIL>);

impl Trail {
    fn note(&mut self, event: core::fmt::Arguments<'_>) {
        let mut e: String<96> = String::new();
        let _ = e.write_fmt(event);
        while !self.0.is_empty() && self.0.len() + 2 + e.len() > TRAIL {
            let cut = self.0.find("; ").map_or(self.0.len(), |i| i + 2);
            let mut rest: String<TRAIL> = String::new();
            let _ = rest.push_str(&self.0[cut..]);
            self.0 = rest;
        }
        if !self.0.is_empty() {
            let _ = self.0.push_str("; ");
        }
        let _ = self.0.push_str(&e);
    }
}

/// What a call of [`Agent::update`] fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Blocks fetched by this call (fewer than the file's when it went on with a download a
    /// lost connection had stopped).
    pub blocks: u32,
    /// The file's blocks.
    pub of: u32,
    /// Bytes fetched by this call.
    pub bytes: u64,
    /// How long the fetch took, in milliseconds of the MQTT client's clock (from the first
    /// request to the last block written).
    pub ms: u64,
}

impl core::fmt::Debug for Agent<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Agent")
            .field("thing", &self.thing)
            .field("config", &self.config)
            .finish()
    }
}

/// The job's id as kept (job ids are at most 64 characters in the contract; a longer one
/// is cut at a character boundary).
fn job_name(id: &str) -> String<64> {
    let mut s = String::new();
    for c in id.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    s
}

impl<'p, 'f> Agent<'p, 'f> {
    pub fn new(thing: &'p str, pal: &'p mut Pal<'f>, config: Config) -> Self {
        Agent {
            thing,
            pal,
            config,
            token: 0,
            progress: None,
            fetched: Fetched::default(),
            retries: 0,
            trail: Trail::default(),
        }
    }

    /// The status details' `retries`.
    fn retries_text(&self) -> String<12> {
        let mut s = String::new();
        let _ = write!(s, "{}", self.retries);
        s
    }

    /// What the latest [`Agent::update`] fetched, and how long it took.
    pub fn fetched(&self) -> Fetched {
        self.fetched
    }

    fn token(&mut self) -> String<16> {
        self.token += 1;
        let mut s = String::new();
        let _ = write!(s, "ota-{}", self.token);
        s
    }

    /// Sends `status` with `details` for `job` and waits for the cloud to take it.
    fn report<T: Transport, H: FnMut(&Message<'_>), const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        job: &str,
        status: Status,
        details: &Details<'_>,
    ) -> Result<(), AgentError> {
        let token = self.token();
        let mut body = [0u8; 640];
        let n = doc::update(&mut body, status, None, Some(details), &token)?;
        let jobs = Jobs::new(self.thing);
        jobs.request(
            mqtt,
            mailbox,
            Request::Update(job),
            &body[..n],
            self.config.answer_timeout_ms,
            |_| (),
        )?;
        Ok(())
    }

    /// After a boot: a running image on trial runs `self_test` and is accepted (its job
    /// succeeds) or rejected (its job fails: reset, and the boot loader restores the previous
    /// image); a job that left its image waiting for the boot loader and finds it rolled back
    /// or refused fails with the boot loader's reason. `None` when no update is under way.
    pub fn after_boot<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        self_test: impl FnOnce() -> bool,
    ) -> Result<Option<Step>, AgentError>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let jobs = Jobs::new(self.thing);
        jobs.subscribe(mqtt)?;
        let token = self.token();
        let mut body = [0u8; 64];
        let n = doc::request(&mut body, &token)?;
        // The execution the update left in progress, with its status details.
        let found = jobs.request(
            mqtt,
            mailbox,
            Request::DescribeNext,
            &body[..n],
            self.config.answer_timeout_ms,
            |payload| {
                let e = doc::execution::<fqp_jobs::Ignored, Details<'_>>(payload).ok()??;
                let ready = e.details.as_ref()?.self_test == Some("ready");
                (e.status == Status::InProgress && ready).then(|| job_name(e.job_id))
            },
        )?;
        let Some(job) = found else {
            return Ok(None);
        };
        let running = self.pal.running()?;
        let mut version: String<16> = String::new();
        let _ = write!(version, "0x{:08x}", running.version.to_u32());
        if self.pal.image_state()? == PlatformState::PendingCommit {
            let (state, status, word, reason) = if self_test() {
                (ImageState::Accepted, Status::Succeeded, "accepted", None)
            } else {
                (
                    ImageState::Rejected,
                    Status::Failed,
                    "rejected",
                    Some("self test failed"),
                )
            };
            self.pal.set_image_state(state)?;
            let details = Details {
                self_test: Some(word),
                updated_by: Some(&version),
                reason,
                ..Details::default()
            };
            self.report(mqtt, mailbox, &job, status, &details)?;
            return Ok(Some(match reason {
                None => Step::Accepted { job },
                Some(reason) => Step::Failed { job, reason },
            }));
        }
        // Not on trial: the boot loader did not keep the new image.
        let reason = match self.pal.last_update()? {
            Outcome::RolledBack { rejected: true } => "rejected on trial: rolled back",
            Outcome::RolledBack { rejected: false } => "not confirmed: rolled back",
            Outcome::Refused(r) => r.reason(),
            Outcome::Installed | Outcome::None => "the new image did not start",
        };
        let details = Details {
            self_test: Some("rejected"),
            updated_by: Some(&version),
            reason: Some(reason),
            ..Details::default()
        };
        self.report(mqtt, mailbox, &job, Status::Failed, &details)?;
        Ok(Some(Step::Failed { job, reason }))
    }

    /// Takes the next job and carries its update as far as the reset: the file fetched,
    /// checked with the signer's certificate the job names among `certificates` (name and
    /// DER: the code-signing certificates the device holds), and the boot loader asked for it.
    /// A failure is reported to the job, with its reason, and the file dropped. A lost
    /// connection (`AgentError::Mqtt`) leaves the job in progress and the blocks written:
    /// called again on a new connection, the agent takes the same job and fetches only the
    /// blocks still missing.
    pub fn update<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        certificates: &[(&str, &[u8])],
    ) -> Result<Step, AgentError>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        if B < self.config.block_size as usize + BLOCK_OVERHEAD {
            return Err(AgentError::Buffers {
                block: self.config.block_size,
                slot: B,
            });
        }
        let jobs = Jobs::new(self.thing);
        jobs.subscribe(mqtt)?;
        let token = self.token();
        let mut body = [0u8; 64];
        let n = doc::start_next::<Details<'_>>(&mut body, None, &token)?;
        // What the job asks, copied out of the answer.
        let mut stream: String<64> = String::new();
        let mut certfile: String<64> = String::new();
        let mut signature = [0u8; 80];
        // The file signature's length; `None` when the job's is not base64 DER of a size a
        // P-256 signature has.
        let mut sig_len = Some(0);
        let mut file = (0u32, 0u32);
        // What an earlier boot wrote of the file, as it recorded in the job.
        let mut kept = None;
        let taken = jobs.request(
            mqtt,
            mailbox,
            Request::StartNext,
            &body[..n],
            self.config.answer_timeout_ms,
            |payload| -> Result<Option<String<64>>, AgentError> {
                let Some(e) = doc::execution::<Document<'_>, Details<'_>>(payload)
                    .map_err(|_| AgentError::Document)?
                else {
                    return Ok(None);
                };
                kept = e.details.and_then(|d| d.written).and_then(written);
                let d = e.document.ok_or(AgentError::Document)?;
                let f = d.ota.files.first().ok_or(AgentError::Document)?;
                stream
                    .push_str(d.ota.streamname)
                    .map_err(|_| AgentError::Document)?;
                use base64::Engine as _;
                // An unsigned file (length 0) or a signature that is not one: the job fails
                // below, with the reason.
                sig_len = f.signature.map_or(Some(0), |text| {
                    base64::engine::general_purpose::STANDARD
                        .decode_slice(text, &mut signature)
                        .ok()
                });
                certfile
                    .push_str(f.certfile)
                    .map_err(|_| AgentError::Document)?;
                file = (f.fileid, f.filesize);
                Ok(Some(job_name(e.job_id)))
            },
        )??;
        let Some(job) = taken else {
            return Ok(Step::NoJob);
        };
        self.trail
            .note(format_args!("took {job}: file {}, {} B", file.0, file.1));
        let sig_len = match sig_len {
            Some(0) => {
                return self.fail(
                    mqtt,
                    mailbox,
                    job,
                    "unsigned: the job gives no file signature",
                )
            }
            Some(n) => n,
            None => return self.fail(mqtt, mailbox, job, PalError::SignatureMalformed.reason()),
        };
        let Some(&(_, certificate)) = certificates.iter().find(|(name, _)| *name == certfile)
        else {
            return self.fail(
                mqtt,
                mailbox,
                job,
                "no such signer certificate on the device",
            );
        };
        let outcome = self
            .download(mqtt, mailbox, &job, &stream, file, certificate, kept)
            .and_then(|()| {
                self.pal
                    .close_file(&signature[..sig_len], certificate)
                    .map_err(Fetch::Pal)
            });
        let header = match outcome {
            Ok(h) => h,
            Err(e) => {
                let reason = match e {
                    Fetch::Pal(p) => p.reason(),
                    Fetch::Timeout => "download timed out",
                    Fetch::Refused => "the stream refused a request",
                    Fetch::TooLong => "stream name too long for the agent's topics",
                    Fetch::Mqtt(m) => return Err(AgentError::Mqtt(m)),
                };
                return self.fail(mqtt, mailbox, job, reason);
            }
        };
        if let Err(e) = self.pal.activate() {
            return self.fail(mqtt, mailbox, job, e.reason());
        }
        let mut version: String<16> = String::new();
        let _ = write!(version, "0x{:08x}", header.version.to_u32());
        let retries = self.retries_text();
        let details = Details {
            self_test: Some("ready"),
            updated_by: Some(&version),
            retries: Some(&retries),
            ..Details::default()
        };
        self.report(mqtt, mailbox, &job, Status::InProgress, &details)?;
        Ok(Step::Activated { job })
    }

    /// Fetches file `(id, size)` of `stream` into the platform layer; its header is checked
    /// (with `certificate`, the signer's) as soon as the first block is in, so that an image
    /// the board would refuse is not fetched whole. A download of the same job a lost
    /// connection stopped goes on from its blocks; one an earlier boot recorded (`kept`:
    /// blocks, block size) from the blocks it wrote.
    #[allow(clippy::too_many_arguments)] // the job's parts, each used apart
    fn download<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        job: &str,
        stream: &str,
        (file, size): (u32, u32),
        certificate: &[u8],
        kept: Option<(u32, u32)>,
    ) -> Result<(), Fetch>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let block = self.config.block_size;
        let blocks = size.div_ceil(block) as usize;
        if blocks > MAX_BLOCKS {
            return Err(Fetch::Pal(PalError::FileSize {
                size,
                slot: MAX_BLOCKS as u32 * block,
            }));
        }
        let resumed = self.progress.take().filter(|p| {
            p.job.as_str() == job
                && p.file == (file, size)
                && p.block == block
                && self.pal.receiving() == Some(size)
        });
        let mut progress = match resumed {
            Some(p) => {
                self.retries += 1;
                let (n, r) = (p.received, self.retries);
                self.trail.note(format_args!(
                    "went on from {n} of {blocks} blocks (retry {r})"
                ));
                p
            }
            None => {
                self.retries = 0;
                let mut p = Progress {
                    job: job_name(job),
                    file: (file, size),
                    block,
                    have: [0; MAX_BLOCKS / 8],
                    received: 0,
                    bytes: 0,
                };
                // The blocks an earlier boot wrote, if the slot still holds them (their header
                // passes the early checks again); otherwise the file from its start.
                let kept = kept
                    .filter(|&(k, b)| b == block && k > 0 && (k as usize) < blocks)
                    .filter(|&(k, _)| {
                        self.pal.resume_file(size, k * block).is_ok()
                            && self.pal.check_early(certificate).is_ok()
                    });
                match kept {
                    Some((k, _)) => {
                        for i in 0..k as usize {
                            p.have[i / 8] |= 1 << (i % 8);
                        }
                        p.received = k as usize;
                        p.bytes = u64::from(k * block);
                        self.retries += 1;
                        self.trail.note(format_args!(
                            "kept {k} of {blocks} blocks an earlier boot wrote"
                        ));
                    }
                    None => {
                        self.pal.create_file(size).map_err(Fetch::Pal)?;
                        self.trail
                            .note(format_args!("new file: {blocks} blocks of {block} B"));
                    }
                }
                p
            }
        };
        let (before, bytes_before) = (progress.received, progress.bytes);
        let started = mqtt.now_ms();
        let r = self.fetch(mqtt, mailbox, job, stream, &mut progress, certificate);
        self.fetched = Fetched {
            blocks: (progress.received - before) as u32,
            of: blocks as u32,
            bytes: progress.bytes - bytes_before,
            ms: mqtt.now_ms().saturating_sub(started),
        };
        if let Err(Fetch::Mqtt(e)) = r {
            // The connection is gone: the blocks stay for the job's next call.
            let n = progress.received;
            self.trail.note(format_args!(
                "connection lost at {n} of {blocks} blocks: {e:?}"
            ));
            self.progress = Some(progress);
        }
        r
    }

    /// Fetches the blocks `progress` is missing.
    fn fetch<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        job: &str,
        stream: &str,
        progress: &mut Progress,
        certificate: &[u8],
    ) -> Result<(), Fetch>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let c = self.config;
        let (block, (file, size)) = (progress.block, progress.file);
        let blocks = size.div_ceil(block) as usize;
        let mut topic: String<160> = String::new();
        let mut data: String<160> = String::new();
        let mut rejected: String<160> = String::new();
        let base = |s: &mut String<160>, tail: &str| {
            write!(s, "$aws/things/{}/streams/{}/{}", self.thing, stream, tail).is_ok()
        };
        if !(base(&mut topic, "get/cbor")
            && base(&mut data, "data/cbor")
            && base(&mut rejected, "rejected/cbor"))
        {
            return Err(Fetch::TooLong);
        }
        mqtt.subscribe(&[(&data, QoS::AtMostOnce), (&rejected, QoS::AtMostOnce)])
            .map_err(Fetch::Mqtt)?;
        let Progress {
            have,
            received,
            bytes: fetched_bytes,
            ..
        } = progress;
        let missing = |have: &[u8], i: usize| have[i / 8] & (1 << (i % 8)) == 0;
        let mut since_report = 0u32;
        let mut idle = 0u32;
        while *received < blocks {
            // Ask for the next blocks still missing, from the first one missing.
            // The bitmap looks this many blocks ahead (a few per block asked for: holes left by
            // lost blocks are filled while the rest goes on), within its 256 bits.
            let per_request = c.blocks_per_request.clamp(1, 64);
            let first = (0..blocks).find(|&i| missing(&have[..], i)).unwrap_or(0);
            let span = (per_request as usize * 4).min(blocks - first);
            let mut bitmap = [0u8; 32];
            let mut asked = 0;
            for k in 0..span {
                if asked < per_request && missing(&have[..], first + k) {
                    bitmap[k / 8] |= 1 << (k % 8);
                    asked += 1;
                }
            }
            let mut req = [0u8; 128];
            let n = encode_request(
                &mut req,
                self.token + 1,
                file,
                block,
                first as u32,
                span as u32,
                &bitmap[..span.div_ceil(8)],
            )
            .ok_or(Fetch::TooLong)?;
            mqtt.publish(&topic, &req[..n], QoS::AtMostOnce, false)
                .map_err(Fetch::Mqtt)?;
            let mut got = 0;
            let start = mqtt.now_ms();
            while got < asked {
                let left = u64::from(c.request_timeout_ms).saturating_sub(mqtt.now_ms() - start);
                if left == 0 {
                    break;
                }
                let pal = &mut *self.pal;
                let answer = mqtt
                    .wait_for(mailbox, left as u32, |t, payload| {
                        if t == rejected.as_str() {
                            return Some(Err(Fetch::Refused));
                        }
                        if t != data.as_str() {
                            return None;
                        }
                        Some(
                            decode_block(payload, file)
                                .ok_or(Fetch::Refused)
                                .map(|(i, bytes)| {
                                    (i, pal.write_block(i * block, bytes).map(|_| bytes.len()))
                                }),
                        )
                    })
                    .map_err(Fetch::Mqtt)?;
                match answer {
                    None => break,
                    Some(Err(e)) => return Err(e),
                    Some(Ok((i, written))) => {
                        let i = i as usize;
                        if i >= blocks || !missing(&have[..], i) {
                            continue; // a duplicate or stray block
                        }
                        let len = written.map_err(Fetch::Pal)?;
                        if i == 0 {
                            self.pal.check_early(certificate).map_err(Fetch::Pal)?;
                        }
                        have[i / 8] |= 1 << (i % 8);
                        *received += 1;
                        *fetched_bytes += len as u64;
                        got += 1;
                        since_report += 1;
                    }
                }
            }
            if got == 0 {
                idle += 1;
                self.trail.note(format_args!(
                    "no block of {asked} asked from {first} in {} ms",
                    c.request_timeout_ms
                ));
                if idle > c.retries {
                    return Err(Fetch::Timeout);
                }
                self.retries += 1;
            } else {
                idle = 0;
            }
            if since_report >= c.progress_every && *received < blocks {
                since_report = 0;
                let mut progress: String<24> = String::new();
                let _ = write!(progress, "{received}/{blocks}");
                // The blocks written whole from the first, to a sector boundary: what a
                // reset may go on from.
                let whole = (0..blocks)
                    .find(|&i| missing(&have[..], i))
                    .unwrap_or(blocks);
                let per = blocks_per_sector_boundary(block, self.pal.sector()) as usize;
                let mut written: String<24> = String::new();
                let _ = write!(written, "{} blocks of {block}", whole / per * per);
                let retries = self.retries_text();
                let details = Details {
                    progress: Some(&progress),
                    written: Some(&written),
                    retries: Some(&retries),
                    ..Details::default()
                };
                let _ = self.report(mqtt, mailbox, job, Status::InProgress, &details);
            }
        }
        let _ = mqtt.unsubscribe(&[&data, &rejected]);
        Ok(())
    }

    /// Drops the file and ends `job` FAILED with `reason`.
    fn fail<T: Transport, H: FnMut(&Message<'_>), const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        job: String<64>,
        reason: &'static str,
    ) -> Result<Step, AgentError> {
        let _ = self.pal.abort();
        self.trail.note(format_args!("failed: {reason}"));
        let retries = self.retries_text();
        let log = self.trail.0.clone();
        let details = Details {
            reason: Some(reason),
            retries: Some(&retries),
            log: Some(&log),
            ..Details::default()
        };
        self.report(mqtt, mailbox, &job, Status::Failed, &details)?;
        Ok(Step::Failed { job, reason })
    }
}

/// The `written` of a job's status details: blocks and block size (`16 blocks of 4096`).
fn written(text: &str) -> Option<(u32, u32)> {
    let (blocks, block) = text.split_once(" blocks of ")?;
    Some((blocks.parse().ok()?, block.parse().ok()?))
}

/// The least count of `block`-byte blocks that ends on a boundary of `sector`-byte sectors.
fn blocks_per_sector_boundary(block: u32, sector: u32) -> u32 {
    let (mut a, mut b) = (block.max(1), sector.max(1));
    while b != 0 {
        (a, b) = (b, a % b);
    }
    sector.max(1) / a
}

/// Why a download stopped.
#[derive(Clone, Copy, Debug)]
enum Fetch {
    Pal(PalError),
    Mqtt(fqp_mqtt::Error),
    Timeout,
    Refused,
    /// The stream's topics or a request do not fit the agent's buffers.
    TooLong,
}

/// A stream request (CBOR): token, file, block size, first block, span and bitmap.
fn encode_request(
    buf: &mut [u8],
    token: u32,
    file: u32,
    block: u32,
    offset: u32,
    count: u32,
    bitmap: &[u8],
) -> Option<usize> {
    let mut e = minicbor::Encoder::new(minicbor::encode::write::Cursor::new(&mut *buf));
    let mut t: String<12> = String::new();
    write!(t, "b{token}").ok()?;
    e.map(6)
        .ok()?
        .str("c")
        .ok()?
        .str(&t)
        .ok()?
        .str("f")
        .ok()?
        .u32(file)
        .ok()?
        .str("l")
        .ok()?
        .u32(block)
        .ok()?
        .str("o")
        .ok()?
        .u32(offset)
        .ok()?
        .str("n")
        .ok()?
        .u32(count)
        .ok()?
        .str("b")
        .ok()?
        .bytes(bitmap)
        .ok()?;
    Some(e.into_writer().position())
}

/// A data message's block of file `file`: its id and bytes.
fn decode_block(payload: &[u8], file: u32) -> Option<(u32, &[u8])> {
    let mut d = minicbor::Decoder::new(payload);
    let n = d.map().ok()??;
    let (mut f, mut i, mut p) = (None, None, None);
    for _ in 0..n {
        match d.str().ok()? {
            "f" => f = d.u32().ok(),
            "i" => i = d.u32().ok(),
            "p" => p = d.bytes().ok(),
            _ => d.skip().ok()?,
        }
    }
    (f? == file).then_some((i?, p?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_ends_on_a_sector_boundary() {
        assert_eq!(blocks_per_sector_boundary(4096, 4096), 1);
        assert_eq!(blocks_per_sector_boundary(1024, 4096), 4);
        assert_eq!(blocks_per_sector_boundary(256, 4096), 16);
        assert_eq!(blocks_per_sector_boundary(16384, 4096), 1);
        // Sizes that do not divide each other: the least common multiple.
        assert_eq!(blocks_per_sector_boundary(3072, 4096), 4);
    }

    #[test]
    fn the_log_keeps_the_latest_doings_within_its_room() {
        let mut t = Trail::default();
        t.note(format_args!("took ota-1"));
        t.note(format_args!("new file"));
        assert_eq!(t.0.as_str(), "took ota-1; new file");
        for i in 0..40 {
            t.note(format_args!("no block of 4 asked from {i}"));
        }
        t.note(format_args!("failed: download timed out"));
        assert!(t.0.len() <= TRAIL);
        assert!(t.0.ends_with("; failed: download timed out"), "{}", t.0);
        // Whole entries go, oldest first.
        assert!(t.0.starts_with("no block of 4 asked from "), "{}", t.0);
        assert!(!t.0.contains("took"));
    }

    #[test]
    fn written_is_read_back_as_recorded() {
        assert_eq!(written("16 blocks of 4096"), Some((16, 4096)));
        assert_eq!(written("0 blocks of 1024"), Some((0, 1024)));
        for bad in [
            "",
            "16",
            "16x4096",
            " blocks of 4096",
            "16 blocks of ",
            "-1 blocks of 4096",
        ] {
            assert_eq!(written(bad), None, "{bad}");
        }
    }
}
