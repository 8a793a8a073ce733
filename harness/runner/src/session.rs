//! One conversation with a device's test runner: sync, list, run one test at a time.
//!
//! The host drives and keeps every clock: the device only answers. Lines that are not
//! protocol lines are the device's output and are kept with the running test; a protocol line
//! that arrives damaged is never believed, and the host asks for the result again (`AGAIN`).
//! Whatever happens to the device during a test (a check fails, it faults, panics, resets,
//! hangs, or disappears) ends that test with a precise status, and says whether the device
//! must be restarted before the next one.

use crate::serial::{Link, Recv};
use fqp_protocol::{Kind, LineBuf};
use fqp_reports::{ErrorKind, Metric, Status, Test};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the device said about itself when it synced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceInfo {
    pub port: String,
    pub fw: String,
    pub kernel: String,
    pub tests: u64,
    /// The optional devices the board provides (`devices=`; `None` from a firmware built
    /// before the test kit reported them).
    pub devices: Option<Vec<String>>,
}

/// The capabilities that need a device of the board: (capability, device, its accessor).
const DEVICE_OF: [(&str, &str, &str); 2] = [
    ("network", "ethernet", "Board::ethernet"),
    ("storage", "storage", "Board::storage"),
];

impl DeviceInfo {
    /// What is wrong when the manifest declares a capability whose device the board does not
    /// provide (each named, with the accessor to implement); `None` when nothing is.
    pub fn lacking(&self, capabilities: &[String]) -> Option<String> {
        let devices = self.devices.as_ref()?;
        let lacking: Vec<String> = DEVICE_OF
            .iter()
            .filter(|(cap, dev, _)| {
                capabilities.iter().any(|c| c == cap) && !devices.iter().any(|d| d == dev)
            })
            .map(|(cap, dev, accessor)| {
                format!(
                    "the port declares capability \"{cap}\" but board {:?} provides no {dev} \
                     device ({accessor} returned None at start-up)",
                    self.port
                )
            })
            .collect();
        (!lacking.is_empty()).then(|| {
            format!(
                "{}\n  fix: implement the accessor in the port's board (fqp-port's Board; check \
                 that the device's initialisation succeeds), or leave the capability out of \
                 `capabilities` in port.toml",
                lacking.join("\n")
            )
        })
    }
}

/// A test the device offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: String,
    /// Position in the device's listing.
    pub index: usize,
    pub timeout_ms: u64,
}

/// The end of one test.
#[derive(Debug)]
pub struct Outcome {
    pub test: Test,
    /// The device is not in a known state: restart it before the next test.
    pub restart: bool,
}

/// Lines of plain output kept for error messages.
const RECENT: usize = 20;
/// How often SYNC is repeated while the device does not answer.
const SYNC_EVERY: Duration = Duration::from_millis(300);
/// Bytes of a setting per `SET` line (escaped, it stays within the device's 256-byte line).
const SET_CHUNK: usize = 64;
/// Corrupt lines tolerated per test before giving up on asking again.
const MAX_AGAIN: usize = 3;
/// The longest a device may ask for a test to run: a listed timeout beyond it is cut to it.
pub const MAX_TEST_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// Tests an image may list.
const MAX_TESTS: usize = 10_000;
/// Console output kept with one test (lines, bytes); the rest is in the serial transcript.
const MAX_OUTPUT_LINES: usize = 2_000;
const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Figures one test may report.
const MAX_METRICS: usize = 64;

/// Whether `id` is `group/name`, each a non-empty identifier (ASCII letters, digits, `_`,
/// `-`): what every report and file name built from it can hold.
fn valid_id(id: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && w.len() <= 96
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    matches!(id.split_once('/'), Some((g, n)) if word(g) && word(n))
}

/// The figure a `METRIC` line reports, if the reports can hold it and the thresholds judge
/// it: named, a finite number, reported once, one of at most [`MAX_METRICS`] (`have`).
fn figure(f: &fqp_protocol::Frame<'_>, have: &[Metric]) -> Result<Metric, String> {
    let name = f.get("name").unwrap_or_default();
    let text = f.get("value").unwrap_or_default();
    if name.is_empty() {
        return Err("a figure without a name".into());
    }
    let value: f64 = text
        .parse()
        .map_err(|_| format!("figure {name} = {text:?}, not a number"))?;
    if !value.is_finite() {
        return Err(format!("figure {name} = {text}, not a finite number"));
    }
    if have.iter().any(|m| m.name == name) {
        return Err(format!("figure {name} reported twice"));
    }
    if have.len() == MAX_METRICS {
        return Err(format!("more than {MAX_METRICS} figures"));
    }
    Ok(Metric {
        name,
        value,
        unit: f.get("unit").unwrap_or_default(),
    })
}

/// A test's console output, bounded: past the limits, lines are counted, not kept.
fn keep_output(t: &mut Test, line: String, dropped: &mut usize) {
    let bytes: usize = t.output.iter().map(String::len).sum();
    if *dropped > 0 || t.output.len() >= MAX_OUTPUT_LINES || bytes + line.len() > MAX_OUTPUT_BYTES {
        *dropped += 1;
    } else {
        t.output.push(line);
    }
}

/// Carries out what a test asks of the host (`ASK action=…`): the action and its other
/// fields. What it answers, if anything, are settings provisioned (`SET`) before `DONE`.
pub type Actions = std::sync::Arc<
    dyn Fn(&str, &[(String, String)]) -> Result<Vec<(String, String)>, String> + Send + Sync,
>;

pub struct Session<L: Link> {
    link: L,
    nonce: u64,
    recent: VecDeque<String>,
    /// Protocol lines that failed their checksum (all tests).
    pub corrupt_lines: usize,
    /// What tests may ask of the lab; none: every request is refused.
    pub actions: Option<Actions>,
}

fn command(kind: Kind, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut l = LineBuf::<256>::new(kind);
    for (k, v) in fields {
        l = l.field(k, v);
    }
    l.finish().to_vec()
}

impl<L: Link> Session<L> {
    pub fn new(link: L) -> Self {
        Session {
            link,
            nonce: std::process::id() as u64 * 1000,
            recent: VecDeque::new(),
            corrupt_lines: 0,
            actions: None,
        }
    }

    fn remember(&mut self, line: &str) {
        if !line.trim().is_empty() {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(line.to_string());
        }
    }

    /// The last plain lines the device printed.
    pub fn recent_output(&self) -> String {
        if self.recent.is_empty() {
            "(nothing)".into()
        } else {
            self.recent.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.link
            .send(bytes)
            .map_err(|e| format!("cannot write to the console: {e}"))
    }

    /// Sends `SYNC` until the device answers with our nonce, for at most `timeout`.
    pub fn sync(&mut self, timeout: Duration) -> Result<DeviceInfo, String> {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let sync = command(Kind::Sync, &[("nonce", &nonce)]);
        let end = Instant::now() + timeout;
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            if now >= end {
                return Err(format!(
                    "the device did not answer SYNC within {:.1} s. Its last console output:\n{}\n  fix: check that the \
                     firmware runs the fqp test runner and that serial.path/baud match the board's console",
                    timeout.as_secs_f64(),
                    self.recent_output()
                ));
            }
            if now >= next {
                self.send(&sync)?;
                next = now + SYNC_EVERY;
            }
            match self.link.recv(next.min(end)) {
                Recv::Timeout => {}
                Recv::Closed => {
                    return Err(format!(
                        "the console closed before the device synced. Its last output:\n{}",
                        self.recent_output()
                    ))
                }
                Recv::Line(l) => match fqp_protocol::parse(&l) {
                    Ok(Some(f))
                        if f.kind == Kind::Ready && f.raw("nonce") == Some(nonce.as_str()) =>
                    {
                        let proto = f.num("proto").unwrap_or(0);
                        if proto != fqp_protocol::VERSION as u64 {
                            return Err(format!(
                                "the device speaks fqp protocol version {proto}, this harness version {}\n  fix: rebuild the firmware with this fqp's test kit",
                                fqp_protocol::VERSION
                            ));
                        }
                        return Ok(DeviceInfo {
                            port: f.get("port").unwrap_or_default(),
                            fw: f.get("fw").unwrap_or_default(),
                            kernel: f.get("kernel").unwrap_or_default(),
                            tests: f.num("tests").unwrap_or(0),
                            devices: f.get("devices").map(|d| {
                                d.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            }),
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => self.remember(&l),
                    Err(_) => self.corrupt_lines += 1,
                },
            }
        }
    }

    /// Asks for the list of tests.
    pub fn list(&mut self, timeout: Duration) -> Result<Vec<Listed>, String> {
        for _attempt in 0..3 {
            self.send(&command(Kind::List, &[]))?;
            let end = Instant::now() + timeout;
            let mut tests = Vec::new();
            let mut damaged = false;
            loop {
                match self.link.recv(end) {
                    Recv::Timeout => {
                        return Err(format!(
                            "the device did not finish listing its tests within {:.1} s",
                            timeout.as_secs_f64()
                        ))
                    }
                    Recv::Closed => return Err("the console closed while listing tests".into()),
                    Recv::Line(l) => match fqp_protocol::parse(&l) {
                        Ok(Some(f)) if f.kind == Kind::Test => {
                            let id = f.get("id").unwrap_or_default();
                            if !valid_id(&id) {
                                return Err(format!(
                                    "the device listed a test named {:?}, which is not group/name (letters, digits, _ and -)",
                                    id.chars().take(120).collect::<String>()
                                ));
                            }
                            if tests.iter().any(|t: &Listed| t.id == id) {
                                return Err(format!("the device listed test {id} twice"));
                            }
                            if tests.len() == MAX_TESTS {
                                return Err(format!(
                                    "the device lists more than {MAX_TESTS} tests"
                                ));
                            }
                            tests.push(Listed {
                                id,
                                index: tests.len(),
                                timeout_ms: f
                                    .num("timeout_ms")
                                    .unwrap_or(5000)
                                    .min(MAX_TEST_TIMEOUT_MS),
                            })
                        }
                        Ok(Some(f)) if f.kind == Kind::Listed => {
                            if damaged || f.num("count") != Some(tests.len() as u64) {
                                break; // a line was lost: list again
                            }
                            return Ok(tests);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            self.corrupt_lines += 1;
                            damaged = true;
                        }
                    },
                }
            }
        }
        Err("the test list arrived damaged three times; the console is too noisy".into())
    }

    /// Runs test `id`, allowing it `timeout`.
    pub fn run(&mut self, id: &str, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let mut t = Test::new(id, Status::Error);
        let mut agains = 0;
        let mut dropped = 0;
        let mut failed_check = false;
        let fail = |t: &mut Test, kind: ErrorKind, msg: String| {
            t.status = Status::Error;
            t.error_kind = Some(kind);
            t.message = Some(msg);
        };
        let restart = 'run: {
            if let Err(e) = self.send(&command(Kind::Run, &[("id", id)])) {
                fail(&mut t, ErrorKind::DeviceLost, e);
                break 'run true;
            }
            let deadline = started + timeout;
            loop {
                let line = match self.link.recv(deadline) {
                    Recv::Line(l) => l,
                    Recv::Timeout => {
                        fail(
                            &mut t,
                            ErrorKind::Timeout,
                            format!(
                                "no result within {:.1} s (test hung or device stalled)",
                                timeout.as_secs_f64()
                            ),
                        );
                        break 'run true;
                    }
                    Recv::Closed => {
                        fail(
                            &mut t,
                            ErrorKind::DeviceLost,
                            "the console closed during the test (device gone or emulator exited)"
                                .into(),
                        );
                        break 'run true;
                    }
                };
                let f = match fqp_protocol::parse(&line) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        self.remember(&line);
                        if !line.trim().is_empty() {
                            keep_output(&mut t, line, &mut dropped);
                        }
                        continue;
                    }
                    Err(e) => {
                        self.corrupt_lines += 1;
                        keep_output(
                            &mut t,
                            format!("[fqp: damaged protocol line ignored ({e})] {line}"),
                            &mut dropped,
                        );
                        if agains < MAX_AGAIN {
                            agains += 1;
                            let _ = self.send(&command(Kind::Again, &[]));
                        }
                        continue;
                    }
                };
                let ours = f.get("id").as_deref() == Some(id);
                match f.kind {
                    Kind::Log => {
                        keep_output(&mut t, f.get("msg").unwrap_or_default(), &mut dropped)
                    }
                    Kind::Metric if ours => match figure(&f, &t.metrics) {
                        Ok(m) => t.metrics.push(m),
                        Err(why) => {
                            fail(
                                &mut t,
                                ErrorKind::Protocol,
                                format!("the device reported {why}"),
                            );
                            break 'run true;
                        }
                    },
                    Kind::Fail if ours => {
                        failed_check = true;
                        t.message = f.get("msg");
                        t.location = Some(format!(
                            "{}:{}",
                            f.get("file").unwrap_or_default(),
                            f.num("line").unwrap_or(0)
                        ));
                    }
                    Kind::End if ours => {
                        t.device_us = f.num("us");
                        match f.raw("status") {
                            Some("pass") if failed_check => {
                                fail(
                                    &mut t,
                                    ErrorKind::Protocol,
                                    "the device reported a failed check (FAIL), then that the test passed".into(),
                                );
                                break 'run true;
                            }
                            Some("pass") => t.status = Status::Passed,
                            Some("skip") => {
                                t.status = Status::Skipped;
                                t.message = f.get("reason");
                            }
                            Some("fail") => {
                                t.status = Status::Failed;
                                if t.message.is_none() {
                                    t.message = Some(
                                        "check failed (its FAIL line was lost on the console)"
                                            .into(),
                                    );
                                }
                            }
                            other => {
                                fail(
                                    &mut t,
                                    ErrorKind::Protocol,
                                    format!("unknown test status {other:?}"),
                                );
                                break 'run true;
                            }
                        }
                        break 'run false;
                    }
                    Kind::Fault => {
                        for (k, v) in f.fields() {
                            t.details.insert(k.to_string(), v.to_string());
                        }
                        let g = |k: &str| f.get(k).unwrap_or_else(|| "?".into());
                        fail(
                            &mut t,
                            ErrorKind::Fault,
                            format!(
                                "{} at pc={} (lr={}, xpsr={}, cfsr={}, hfsr={})",
                                g("kind"),
                                g("pc"),
                                g("lr"),
                                g("xpsr"),
                                g("cfsr"),
                                g("hfsr")
                            ),
                        );
                        break 'run true;
                    }
                    Kind::Panic => {
                        t.location = Some(format!(
                            "{}:{}",
                            f.get("file").unwrap_or_default(),
                            f.num("line").unwrap_or(0)
                        ));
                        fail(
                            &mut t,
                            ErrorKind::Panic,
                            format!("panic: {}", f.get("msg").unwrap_or_default()),
                        );
                        break 'run true;
                    }
                    Kind::Hello | Kind::Bye => {
                        fail(
                            &mut t,
                            ErrorKind::Reset,
                            "the device reset during the test".into(),
                        );
                        break 'run true;
                    }
                    Kind::Err => {
                        fail(
                            &mut t,
                            ErrorKind::Protocol,
                            format!("device: {}", f.get("msg").unwrap_or_default()),
                        );
                        break 'run false;
                    }
                    Kind::Ask if ours => {
                        let action = f.get("action").unwrap_or_default();
                        let fields: Vec<(String, String)> = f
                            .fields()
                            .filter(|(k, _)| !matches!(*k, "id" | "action"))
                            .map(|(k, _)| (k.to_string(), f.get(k).unwrap_or_default()))
                            .collect();
                        let done = match &self.actions {
                            Some(act) => act(&action, &fields),
                            None => Err("this lab takes no requests".into()),
                        }
                        .and_then(|answer| {
                            answer.iter().try_for_each(|(k, v)| {
                                self.set(k, v.as_bytes(), Duration::from_secs(2))
                            })
                        });
                        t.output.push(format!(
                            "[fqp: {action}: {}]",
                            done.as_ref().map_or_else(|e| e.as_str(), |()| "done")
                        ));
                        let (ok, msg) = match &done {
                            Ok(()) => ("1", String::new()),
                            Err(e) => ("0", e.clone()),
                        };
                        let _ = self.send(&command(
                            Kind::Done,
                            &[("action", &action), ("ok", ok), ("msg", &msg)],
                        ));
                    }
                    _ => {} // START, stale ENDs of earlier tests, READY repeats
                }
            }
        };
        if dropped > 0 {
            t.output.push(format!(
                "[fqp: {dropped} more lines of output not kept here (at most {MAX_OUTPUT_LINES} lines, {} KiB per test); the serial transcript has them]",
                MAX_OUTPUT_BYTES / 1024
            ));
        }
        t.wall_ms = started.elapsed().as_millis() as u64;
        Outcome { test: t, restart }
    }

    /// Asks the device for its own count of tests passed, failed and skipped since boot.
    pub fn summary(&mut self, timeout: Duration) -> Option<[u64; 3]> {
        self.send(&command(Kind::Summary, &[])).ok()?;
        let end = Instant::now() + timeout;
        loop {
            match self.link.recv(end) {
                Recv::Line(l) => {
                    if let Ok(Some(f)) = fqp_protocol::parse(&l) {
                        if f.kind == Kind::Summary {
                            return Some([f.num("passed")?, f.num("failed")?, f.num("skipped")?]);
                        }
                    }
                }
                Recv::Timeout | Recv::Closed => return None,
            }
        }
    }

    /// Provisions setting `key` = `value` on the device (in pieces that fit a command line),
    /// waiting for each piece to be acknowledged.
    pub fn set(&mut self, key: &str, value: &[u8], timeout: Duration) -> Result<(), String> {
        let pieces: Vec<&[u8]> = if value.is_empty() {
            vec![&[][..]]
        } else {
            value.chunks(SET_CHUNK).collect()
        };
        let mut sent = 0;
        for (n, piece) in pieces.iter().enumerate() {
            let text = String::from_utf8_lossy(piece);
            let append = if n == 0 { "0" } else { "1" };
            let at = sent.to_string();
            sent += piece.len();
            // A damaged line is answered by ERR or nothing: try each piece a few times. Each
            // piece names its offset (`at`), so a piece the device took twice (its first answer
            // came late) leaves the value as sent once; `append` is for test kits before `at`.
            let mut tries = 0;
            loop {
                self.send(&command(
                    Kind::Set,
                    &[
                        ("key", key),
                        ("value", &text),
                        ("append", append),
                        ("at", &at),
                    ],
                ))?;
                match self.wait_ok(key, sent as u64, timeout) {
                    Ok(len) if len == sent as u64 => break,
                    Ok(len) => {
                        return Err(format!(
                            "provisioning {key}: the device holds {len} bytes, {sent} were sent"
                        ))
                    }
                    Err(e) if tries >= 2 => return Err(format!("provisioning {key}: {e}")),
                    Err(_) => tries += 1,
                }
            }
        }
        Ok(())
    }

    /// Waits for the `OK` of a `SET` of `key` that leaves `expected` bytes; the length it
    /// reports. A shorter one is the late answer to an earlier piece, and is passed over.
    fn wait_ok(&mut self, key: &str, expected: u64, timeout: Duration) -> Result<u64, String> {
        let end = Instant::now() + timeout;
        loop {
            match self.link.recv(end) {
                Recv::Line(l) => match fqp_protocol::parse(&l) {
                    Ok(Some(f)) if f.kind == Kind::Ok && f.get("key").as_deref() == Some(key) => {
                        match f.num("len") {
                            Some(len) if len < expected => continue,
                            Some(len) => return Ok(len),
                            None => return Err("OK without len".to_string()),
                        }
                    }
                    Ok(Some(f)) if f.kind == Kind::Err => {
                        return Err(format!("device: {}", f.get("msg").unwrap_or_default()))
                    }
                    Ok(None) => self.remember(&l),
                    _ => {}
                },
                Recv::Timeout => return Err("no answer".into()),
                Recv::Closed => return Err("the console closed".into()),
            }
        }
    }

    /// Asks an emulated device to end the run (it answers with a best-effort `BYE`).
    pub fn exit(&mut self, code: i32) {
        let _ = self.send(&command(Kind::Exit, &[("code", &code.to_string())]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the fake device answers a command (its kind and full text).
    type Answer = Box<dyn FnMut(Kind, &str) -> Vec<Recv>>;

    /// A device simulated by a function from each command to the lines it answers.
    struct Fake {
        queue: VecDeque<Recv>,
        answer: Answer,
        sent: Vec<String>,
    }

    impl Link for Fake {
        fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            let text = String::from_utf8_lossy(bytes).to_string();
            let f = fqp_protocol::parse(&text).unwrap().unwrap();
            self.sent.push(f.kind.as_str().to_string());
            let lines = (self.answer)(f.kind, &text);
            self.queue.extend(lines);
            Ok(())
        }
        fn recv(&mut self, deadline: Instant) -> Recv {
            match self.queue.pop_front() {
                Some(r) => r,
                None => {
                    std::thread::sleep(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(5)),
                    );
                    Recv::Timeout
                }
            }
        }
    }

    fn dev(kind: Kind, fields: &[(&str, &str)]) -> Recv {
        let mut l = LineBuf::<320>::new(kind);
        for (k, v) in fields {
            l = l.field(k, v);
        }
        Recv::Line(
            String::from_utf8(l.finish().to_vec())
                .unwrap()
                .trim_end()
                .to_string(),
        )
    }

    fn fake(answer: impl FnMut(Kind, &str) -> Vec<Recv> + 'static) -> Session<Fake> {
        Session::new(Fake {
            queue: VecDeque::new(),
            answer: Box::new(answer),
            sent: vec![],
        })
    }

    fn nonce_of(cmd: &str) -> String {
        fqp_protocol::parse(cmd)
            .unwrap()
            .unwrap()
            .get("nonce")
            .unwrap()
    }

    #[test]
    fn sync_retries_until_answered_and_ignores_noise() {
        let mut calls = 0;
        let mut s = fake(move |k, cmd| {
            assert_eq!(k, Kind::Sync);
            calls += 1;
            if calls < 3 {
                return vec![Recv::Line("booting...".into())];
            }
            let n = nonce_of(cmd);
            vec![
                Recv::Line("@FQP READY garbage *0000".into()),
                dev(
                    Kind::Ready,
                    &[("proto", "1"), ("nonce", "1"), ("port", "x")],
                ),
                dev(
                    Kind::Ready,
                    &[
                        ("proto", "1"),
                        ("nonce", &n),
                        ("port", "demo"),
                        ("fw", "9"),
                        ("kernel", "1.0"),
                        ("tests", "4"),
                        ("devices", "ethernet,entropy"),
                    ],
                ),
            ]
        });
        let info = s.sync(Duration::from_secs(5)).unwrap();
        assert_eq!(
            info,
            DeviceInfo {
                port: "demo".into(),
                fw: "9".into(),
                kernel: "1.0".into(),
                tests: 4,
                devices: Some(vec!["ethernet".into(), "entropy".into()]),
            }
        );
        assert_eq!(s.corrupt_lines, 1);
        assert_eq!(s.link.sent.len(), 3);
    }

    #[test]
    fn a_piece_answered_late_and_taken_twice_leaves_the_value_as_sent() {
        // A device that applies `at` as the test kit does; it takes the second piece but its
        // answer comes only after the host gave up on it and sent the piece again.
        let value: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::<u8>::new()));
        let device = held.clone();
        let mut pieces = 0;
        let mut late: Option<Recv> = None;
        let mut s = fake(move |k, cmd| {
            assert_eq!(k, Kind::Set);
            let f = fqp_protocol::parse(cmd).unwrap().unwrap();
            let at = f.num("at").unwrap() as usize;
            let mut v = device.borrow_mut();
            assert!(at <= v.len());
            v.truncate(at);
            v.extend_from_slice(f.get("value").unwrap().as_bytes());
            let ok = dev(Kind::Ok, &[("key", "ca"), ("len", &v.len().to_string())]);
            pieces += 1;
            if pieces == 2 {
                late = Some(ok);
                return vec![Recv::Timeout];
            }
            late.take().into_iter().chain([ok]).collect()
        });
        s.set("ca", &value, Duration::from_millis(50)).unwrap();
        assert_eq!(*held.borrow(), value);
        assert_eq!(s.link.sent.len(), 5, "4 pieces, the second sent twice");
    }

    #[test]
    fn a_declared_capability_without_its_device_is_named_with_the_accessor() {
        let info = |devices: Option<&str>| DeviceInfo {
            port: "demo".into(),
            devices: devices.map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }),
            ..DeviceInfo::default()
        };
        let caps: Vec<String> = ["kernel", "network", "storage", "keystore"]
            .map(String::from)
            .to_vec();
        assert_eq!(info(Some("ethernet,storage")).lacking(&caps), None);
        let e = info(Some("storage")).lacking(&caps).unwrap();
        assert!(
            e.contains("capability \"network\" but board \"demo\" provides no ethernet device (Board::ethernet returned None"),
            "{e}"
        );
        assert!(!e.contains("Board::storage"), "{e}");
        let e = info(Some("")).lacking(&caps).unwrap();
        assert!(
            e.contains("Board::ethernet") && e.contains("Board::storage") && e.contains("fix: "),
            "{e}"
        );
        // Capabilities that need no device, and firmware that does not report devices.
        assert_eq!(
            info(Some("")).lacking(&["kernel".into(), "keystore".into()]),
            None
        );
        assert_eq!(info(None).lacking(&caps), None);
    }

    #[test]
    fn sync_timeout_shows_last_output() {
        let mut s = fake(|_, _| vec![Recv::Line("U-Boot 2024.01".into())]);
        let e = s.sync(Duration::from_millis(400)).unwrap_err();
        assert!(
            e.contains("did not answer SYNC") && e.contains("U-Boot 2024.01"),
            "{e}"
        );
    }

    #[test]
    fn sync_rejects_other_protocol_versions() {
        let mut s = fake(|_, cmd| {
            vec![dev(
                Kind::Ready,
                &[("proto", "2"), ("nonce", &nonce_of(cmd))],
            )]
        });
        assert!(s
            .sync(Duration::from_secs(1))
            .unwrap_err()
            .contains("protocol version 2"));
    }

    #[test]
    fn list_retries_when_a_line_was_lost() {
        let mut n = 0;
        let mut s = fake(move |_, _| {
            n += 1;
            let mut v = vec![dev(Kind::Test, &[("id", "a/x"), ("timeout_ms", "100")])];
            if n > 1 {
                v.push(dev(Kind::Test, &[("id", "a/y")]));
            }
            v.push(dev(Kind::Listed, &[("count", "2")]));
            v
        });
        let l = s.list(Duration::from_secs(1)).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            Listed {
                id: "a/x".into(),
                index: 0,
                timeout_ms: 100
            }
        );
        assert_eq!((l[1].index, l[1].timeout_ms), (1, 5000));
    }

    fn run_with(lines: Vec<Recv>) -> Outcome {
        let mut lines = Some(lines);
        let mut s = fake(move |_, _| lines.take().unwrap_or_default());
        s.run("g/t", Duration::from_millis(300))
    }

    #[test]
    fn passing_test_with_output_and_metrics() {
        let o = run_with(vec![
            dev(Kind::Start, &[("id", "g/t")]),
            Recv::Line("plain print".into()),
            dev(Kind::Log, &[("id", "g/t"), ("msg", "hello world")]),
            dev(
                Kind::Metric,
                &[
                    ("id", "g/t"),
                    ("name", "switch"),
                    ("value", "42.5"),
                    ("unit", "cycles"),
                ],
            ),
            dev(
                Kind::End,
                &[("id", "g/t"), ("status", "pass"), ("us", "1200")],
            ),
        ]);
        assert!(!o.restart);
        assert_eq!(o.test.status, Status::Passed);
        assert_eq!(o.test.device_us, Some(1200));
        assert_eq!(o.test.output, ["plain print", "hello world"]);
        assert_eq!(o.test.metrics[0].value, 42.5);
    }

    #[test]
    fn failed_check_carries_location() {
        let o = run_with(vec![
            dev(
                Kind::Fail,
                &[
                    ("id", "g/t"),
                    ("file", "src/q.rs"),
                    ("line", "17"),
                    ("msg", "left 1 right 2"),
                ],
            ),
            dev(Kind::End, &[("id", "g/t"), ("status", "fail"), ("us", "5")]),
        ]);
        assert_eq!(o.test.status, Status::Failed);
        assert_eq!(o.test.location.as_deref(), Some("src/q.rs:17"));
        assert_eq!(o.test.message.as_deref(), Some("left 1 right 2"));
        assert!(!o.restart);
    }

    /// What a misbehaving device claims never becomes a pass it did not earn, nor a report
    /// that cannot be read back.
    #[test]
    fn a_device_is_held_to_the_protocols_meaning() {
        let end_pass = || dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "1")]);
        let metric = |name: &str, value: &str| {
            dev(
                Kind::Metric,
                &[
                    ("id", "g/t"),
                    ("name", name),
                    ("value", value),
                    ("unit", "u"),
                ],
            )
        };
        for (value, why) in [
            ("NaN", "not a finite number"),
            ("inf", "not a finite number"),
            ("-infinity", "not a finite number"),
            ("12abc", "not a number"),
        ] {
            let o = run_with(vec![metric("m", value), end_pass()]);
            assert_eq!(o.test.status, Status::Error, "{value}");
            assert_eq!(o.test.error_kind, Some(ErrorKind::Protocol));
            assert!(
                o.test.message.as_deref().unwrap().contains(why),
                "{:?}",
                o.test.message
            );
            assert!(o.restart);
        }
        let o = run_with(vec![metric("m", "1"), metric("m", "2"), end_pass()]);
        assert!(o
            .test
            .message
            .as_deref()
            .unwrap()
            .contains("figure m reported twice"));
        let o = run_with(vec![metric("", "1"), end_pass()]);
        assert_eq!(o.test.status, Status::Error);
        let many: Vec<Recv> = (0..=MAX_METRICS)
            .map(|i| metric(&format!("m{i}"), "1"))
            .chain([end_pass()])
            .collect();
        assert_eq!(run_with(many).test.status, Status::Error);
        // A failed check, then "pass": not a pass.
        let o = run_with(vec![
            dev(
                Kind::Fail,
                &[
                    ("id", "g/t"),
                    ("file", "a.rs"),
                    ("line", "1"),
                    ("msg", "no"),
                ],
            ),
            end_pass(),
        ]);
        assert_eq!(
            (o.test.status, o.test.error_kind),
            (Status::Error, Some(ErrorKind::Protocol))
        );
        // Output is bounded, and says so.
        let flood: Vec<Recv> = (0..MAX_OUTPUT_LINES + 500)
            .map(|i| Recv::Line(format!("line {i}")))
            .chain([end_pass()])
            .collect();
        let o = run_with(flood);
        assert_eq!(o.test.status, Status::Passed);
        assert_eq!(o.test.output.len(), MAX_OUTPUT_LINES + 1);
        assert!(
            o.test.output.last().unwrap().contains("500 more lines"),
            "{:?}",
            o.test.output.last()
        );
        let big = "x".repeat(60_000);
        let o = run_with(
            (0..10)
                .map(|_| Recv::Line(big.clone()))
                .chain([end_pass()])
                .collect(),
        );
        assert!(o.test.output.iter().map(String::len).sum::<usize>() <= MAX_OUTPUT_BYTES + 200);
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever a device sends during a test, the session never panics, and records a
        /// pass only when the device sent an intact END for this very test with status pass
        /// and no failed check before it.
        #[test]
        fn fuzz_a_test_never_passes_unearned(lines in proptest::collection::vec(fqp_fuzzing::mutated(device_lines()), 0..12)) {
            let text: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
            let mut queue = Some(text.iter().map(|l| Recv::Line(l.clone())).collect::<Vec<_>>());
            let mut s = fake(move |_, _| queue.take().unwrap_or_default());
            let o = s.run("g/t", Duration::ZERO);
            if o.test.status == Status::Passed {
                let ends = text.iter().filter_map(|l| fqp_protocol::parse(l).ok().flatten()).filter(|f| f.kind == Kind::End && f.get("id").as_deref() == Some("g/t"));
                proptest::prop_assert!(ends.clone().any(|f| f.raw("status") == Some("pass")), "{text:?}");
            }
            proptest::prop_assert!(o.test.output.len() <= MAX_OUTPUT_LINES + 1);
        }
    }

    /// What a device says during a test: the corpus the fuzzer damages.
    fn device_lines() -> Vec<Vec<u8>> {
        let line = |r: Recv| match r {
            Recv::Line(l) => l.into_bytes(),
            _ => unreachable!(),
        };
        vec![
            line(dev(Kind::Start, &[("id", "g/t")])),
            line(dev(Kind::Log, &[("id", "g/t"), ("msg", "hello")])),
            line(dev(
                Kind::Metric,
                &[
                    ("id", "g/t"),
                    ("name", "m"),
                    ("value", "1.5"),
                    ("unit", "u"),
                ],
            )),
            line(dev(
                Kind::Fail,
                &[
                    ("id", "g/t"),
                    ("file", "a.rs"),
                    ("line", "3"),
                    ("msg", "no"),
                ],
            )),
            line(dev(
                Kind::End,
                &[("id", "g/t"), ("status", "pass"), ("us", "10")],
            )),
            line(dev(
                Kind::End,
                &[("id", "g/t"), ("status", "fail"), ("us", "10")],
            )),
            line(dev(Kind::Fault, &[("kind", "HardFault"), ("pc", "0x10")])),
            line(dev(
                Kind::Ask,
                &[("id", "g/t"), ("action", "restart-broker")],
            )),
            b"plain output".to_vec(),
        ]
    }

    #[test]
    fn a_listing_is_checked() {
        let listing = |tests: Vec<Vec<(&'static str, &'static str)>>| {
            let mut s = fake(move |_, _| {
                let mut v: Vec<Recv> = tests.iter().map(|f| dev(Kind::Test, f)).collect();
                v.push(dev(Kind::Listed, &[("count", &tests.len().to_string())]));
                v
            });
            s.list(Duration::from_secs(1))
        };
        let e = listing(vec![vec![("id", "a/x")], vec![("id", "a/x")]]).unwrap_err();
        assert!(e.contains("listed test a/x twice"), "{e}");
        for bad in ["nogroup", "a/", "/x", "a/b/c", "a/x y", "a/<script>"] {
            let e = listing(vec![vec![("id", bad)]]).unwrap_err();
            assert!(e.contains("not group/name"), "{bad}: {e}");
        }
        let l = listing(vec![vec![
            ("id", "a/x"),
            ("timeout_ms", "18446744073709551615"),
        ]])
        .unwrap();
        assert_eq!(l[0].timeout_ms, MAX_TEST_TIMEOUT_MS);
    }

    #[test]
    fn fault_reports_pc_and_asks_for_restart() {
        let o = run_with(vec![dev(
            Kind::Fault,
            &[
                ("kind", "HardFault"),
                ("pc", "0x00001234"),
                ("lr", "0x1"),
                ("cfsr", "0x00010000"),
            ],
        )]);
        assert_eq!(o.test.status, Status::Error);
        assert_eq!(o.test.error_kind, Some(ErrorKind::Fault));
        assert!(o
            .test
            .message
            .as_deref()
            .unwrap()
            .contains("HardFault at pc=0x00001234"));
        assert_eq!(o.test.details["pc"], "0x00001234");
        assert!(o.restart);
    }

    #[test]
    fn panic_reset_timeout_and_loss() {
        let o = run_with(vec![dev(
            Kind::Panic,
            &[("file", "a.rs"), ("line", "3"), ("msg", "boom")],
        )]);
        assert_eq!(
            (o.test.error_kind, o.test.location.as_deref()),
            (Some(ErrorKind::Panic), Some("a.rs:3"))
        );
        let o = run_with(vec![dev(Kind::Hello, &[("proto", "1")])]);
        assert_eq!(o.test.error_kind, Some(ErrorKind::Reset));
        let o = run_with(vec![dev(Kind::Start, &[("id", "g/t")])]);
        assert_eq!(o.test.error_kind, Some(ErrorKind::Timeout));
        assert!(o.restart);
        let o = run_with(vec![Recv::Closed]);
        assert_eq!(o.test.error_kind, Some(ErrorKind::DeviceLost));
    }

    #[test]
    fn damaged_end_is_asked_again() {
        let good = dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "9")]);
        let Recv::Line(text) = &good else {
            unreachable!()
        };
        let damaged = text.replace("pass", "pasS");
        let mut first = true;
        let mut s = fake(move |k, _| match k {
            Kind::Run if first => {
                first = false;
                vec![Recv::Line(damaged.clone())]
            }
            Kind::Again => vec![good_line()],
            _ => vec![],
        });
        fn good_line() -> Recv {
            dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "9")])
        }
        let o = s.run("g/t", Duration::from_secs(1));
        assert_eq!(o.test.status, Status::Passed);
        assert_eq!(s.link.sent, ["RUN", "AGAIN"]);
        assert_eq!(s.corrupt_lines, 1);
    }

    #[test]
    fn summary_returns_the_device_counts() {
        let mut s = fake(|k, _| {
            assert_eq!(k, Kind::Summary);
            let counts = [("passed", "3"), ("failed", "1"), ("skipped", "0")];
            vec![Recv::Line("noise".into()), dev(Kind::Summary, &counts)]
        });
        assert_eq!(s.summary(Duration::from_secs(1)), Some([3, 1, 0]));
        let mut silent = fake(|_, _| vec![]);
        assert_eq!(silent.summary(Duration::from_millis(50)), None);
    }

    #[test]
    fn stale_end_of_another_test_is_ignored() {
        let o = run_with(vec![
            dev(Kind::End, &[("id", "g/old"), ("status", "fail")]),
            dev(
                Kind::End,
                &[("id", "g/t"), ("status", "skip"), ("reason", "no timer")],
            ),
        ]);
        assert_eq!(o.test.status, Status::Skipped);
        assert_eq!(o.test.message.as_deref(), Some("no timer"));
    }
}
