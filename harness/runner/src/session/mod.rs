//! One conversation with a device's test runner: sync, list, run one test at a time.
//!
//! The host drives and keeps every clock: the device only answers. Lines that are not
//! protocol lines are the device's output and are kept with the running test; a protocol line
//! that arrives damaged is never believed, and the host asks for the result again (`AGAIN`).
//! Whatever happens to the device during a test (a check fails, it faults, panics, resets,
//! hangs, or disappears) ends that test with a precise status, and says whether the device
//! must be restarted before the next one.

mod error;
mod run;

pub use error::{Refusal, SessionError};

use crate::serial::{Link, Recv};
use fqp_protocol::{Kind, LineBuf};
use fqp_reports::Test;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far a device's time is from a reference's, given `ratio` (device over reference):
/// `None` within half to twice (the measurements' noise), else the factor (at least 1), how
/// the core clock the port gave the kernel compares with the real one ("higher" for a device
/// that runs slow), and the device's pace ("slower" or "faster").
fn off_by(ratio: f64) -> Option<(f64, &'static str, &'static str)> {
    if (0.5..=2.0).contains(&ratio) {
        None
    } else if ratio < 1.0 {
        Some((1.0 / ratio, "higher", "slower"))
    } else {
        Some((ratio, "lower", "faster"))
    }
}

/// What a tick off by `factor` says of the port's clock constant, and the fix.
fn cpu_hz_wrong(factor: f64, way: &str) -> String {
    format!(
        "the core clock the port gives the kernel (the cpu_hz passed to fqp_testkit::run, \
         CPU_HZ) is about {factor:.1} times {way} than the clock the core's SysTick really \
         counts\n  fix: pass the frequency the core runs at (the board's SysTick clock); every \
         timed test depends on it"
    )
}

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
    /// The image is hard-float: the FPU's registers are part of every task's context
    /// (`fpu=1`; `None` from a test kit before it said so).
    pub fpu: Option<bool>,
    /// The board's test interrupt lines (`Board::test_irqs`) and those that fired when the
    /// test kit pended each once before it said HELLO (`irq_lines`, `irq_fired`; `None` from
    /// a test kit before it checked).
    pub irqs: Option<(u64, Vec<u64>)>,
    /// Iterations of the test kit's counting loop from one tick to the next (`tick_loops`).
    pub tick_loops: Option<u64>,
}

/// The capabilities that need a device of the board: (capability, device, its accessor).
const DEVICE_OF: [(&str, &str, &str); 3] = [
    ("network", "ethernet", "Board::ethernet"),
    ("storage", "storage", "Board::storage"),
    ("ota", "flash", "Board::flash"),
];

impl DeviceInfo {
    /// What is wrong when the manifest declares a capability whose device the board does not
    /// provide (each named, with the accessor to implement); `None` when nothing is.
    pub fn lacking(&self, capabilities: &[String]) -> Option<String> {
        if let Some(e) = self.fpu_mismatch(capabilities) {
            return Some(e);
        }
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

    /// Why the interrupt tests cannot run on this board, naming the function and line to fix:
    /// a test interrupt the test kit pended that did not fire, or too few lines. `None` when
    /// they can, or the test kit did not check.
    pub fn irqs_blocked(&self) -> Option<String> {
        let (lines, fired) = self.irqs.as_ref()?;
        if *lines < TEST_IRQ_LINES {
            return Some(format!(
                "board {:?} offers {lines} test interrupts (Board::test_irqs), the interrupt \
                 tests need {TEST_IRQ_LINES}\n  fix: give two interrupt lines nothing drives to \
                 the test kit (PORTING.md, step 5), or leave capability \"test-irq\" out",
                self.port
            ));
        }
        let silent = (0..TEST_IRQ_LINES).find(|n| !fired.contains(n))?;
        Some(format!(
            "test interrupt {silent} of board {:?} did not fire: Board::pend_test_irq({silent}) \
             pended it and its handler did not run\n  fix: in the port's board: the line's vector \
             calls fqp_testkit::irq::dispatch({silent}); the line is enabled in the interrupt \
             controller (NVIC ISER) at a priority the kernel allows (TEST_IRQ_PRIORITY); \
             pend_test_irq({silent}) pends that same line (NVIC ISPR)",
            self.port
        ))
    }

    /// When the device's tick, counted against an emulator's instruction clock (`ns` per
    /// instruction), is not `tick_hz`: what is wrong and the constant to fix. Off by less than
    /// half or twice is taken as the measurement's noise (interrupts during the count).
    pub fn tick_off(&self, ns_per_instruction: f64, tick_hz: u32) -> Option<String> {
        let loops = self.tick_loops? as f64;
        let period_s =
            loops * fqp_protocol::TICK_LOOP_INSTRUCTIONS as f64 * ns_per_instruction * 1e-9;
        let measured = 1.0 / period_s;
        let (factor, way, _) = off_by(measured / tick_hz as f64)?;
        Some(format!(
            "the tick of board {:?} runs at about {measured:.0} Hz (counted against the \
             emulator's instruction clock), not the kernel's tick_hz = {tick_hz}: {}",
            self.port,
            cpu_hz_wrong(factor, way)
        ))
    }

    /// The device's clock against the host's, where no emulator counts instructions (a real
    /// board, or an emulator in real time): from the tests that took 200 ms or more on the
    /// host (the serial line's latency is then lost in the count), 2 s of them at least, the
    /// device's own durations against the host's. A device whose time runs at under half or
    /// over twice the host's: what is wrong and the constant to fix. `durations` are
    /// (device µs, host ms) pairs.
    pub fn clock_off(&self, durations: impl IntoIterator<Item = (u64, u64)>) -> Option<String> {
        let (device_us, host_ms) = durations
            .into_iter()
            .filter(|&(_, ms)| ms >= 200)
            .fold((0u64, 0u64), |(d, h), (us, ms)| (d + us, h + ms));
        if host_ms < 2000 {
            return None;
        }
        let (factor, way, pace) = off_by(device_us as f64 / (host_ms as f64 * 1000.0))?;
        Some(format!(
            "the clock of board {:?} runs {factor:.1} times {pace} than the host's: its tests \
             took {:.1} s by the device's count and {:.1} s by the host's; {}",
            self.port,
            device_us as f64 / 1e6,
            host_ms as f64 / 1e3,
            cpu_hz_wrong(factor, way)
        ))
    }

    /// A hard-float image whose port does not declare `fpu` (its FP context would go
    /// unqualified), or a soft-float one whose port declares it.
    fn fpu_mismatch(&self, capabilities: &[String]) -> Option<String> {
        let declared = capabilities.iter().any(|c| c == "fpu");
        match (self.fpu?, declared) {
            (true, false) => Some(format!(
                "board {:?} runs a hard-float image (the FPU's registers are in use, and part of \
                 every task's context) but the port does not declare capability \"fpu\"\n  fix: \
                 add \"fpu\" to `capabilities` in port.toml: the fpu group then checks that every \
                 task keeps its FP registers",
                self.port
            )),
            (false, true) => Some(format!(
                "the port declares capability \"fpu\" but board {:?} runs a soft-float image\n  \
                 fix: build for the core's hard-float target (`build.target`, e.g. \
                 \"thumbv7em-none-eabihf\" for a Cortex-M4F or M7), or leave \"fpu\" out of \
                 `capabilities`",
                self.port
            )),
            _ => None,
        }
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
    /// The test rebooted the device (`REBOOT`), which started counting its tests anew.
    pub rebooted: bool,
}

/// The test interrupt lines the interrupt tests use (0 and 1).
const TEST_IRQ_LINES: u64 = 2;

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

/// Carries out what a test asks of the host (`ASK action=…`): the action and its other
/// fields. What it answers, if anything, are settings provisioned (`SET`) before `DONE`.
pub type Actions = std::sync::Arc<
    dyn Fn(&str, &[(String, String)]) -> Result<Vec<(String, String)>, fqp_lab::LabError>
        + Send
        + Sync,
>;

/// Where a test's reboot of its device (`REBOOT`) has got to, for whoever watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootStep {
    /// The test asked for the reboot.
    Asked,
    /// The device booted again and is synced: the test goes on.
    Synced,
}

/// Told of each step of a test's reboot of its device (the runner counts the emulated
/// board's flash operations at each, for `fqp ota powercut`).
pub type RebootHook = Box<dyn FnMut(RebootStep) + Send>;

pub struct Session<L: Link> {
    link: L,
    nonce: u64,
    recent: VecDeque<String>,
    /// Protocol lines that failed their checksum (all tests).
    pub corrupt_lines: usize,
    /// What tests may ask of the lab; none: every request is refused.
    pub actions: Option<Actions>,
    /// Every setting provisioned (key, value): given again when a test reboots the device.
    provisioned: Vec<(String, Vec<u8>)>,
    /// Told of the steps of a test's reboot.
    pub on_reboot: Option<RebootHook>,
    /// The boot loader's lines (from `fqp-boot: `) since the device last rebooted for a
    /// test, at most [`RECENT`].
    loader: Vec<String>,
}

/// `HardFault at pc=… (lr=…, xpsr=…, cfsr=…, hfsr=…)`: a `FAULT` line in words.
fn fault_summary(f: &fqp_protocol::Frame<'_>) -> String {
    let g = |k: &str| f.get(k).unwrap_or_else(|| "?".into());
    format!(
        "{} at pc={} (lr={}, xpsr={}, cfsr={}, hfsr={})",
        g("kind"),
        g("pc"),
        g("lr"),
        g("xpsr"),
        g("cfsr"),
        g("hfsr")
    )
}

/// A fault or panic the device reported before it synced.
fn at_start(f: &fqp_protocol::Frame<'_>) -> SessionError {
    let g = |k: &str| f.get(k).unwrap_or_else(|| "?".into());
    if f.kind == Kind::Panic {
        return SessionError::AtStart {
            what: "panicked",
            summary: format!("panic: {} at {}:{}", g("msg"), g("file"), g("line")),
            pc: None,
        };
    }
    SessionError::AtStart {
        what: "faulted",
        summary: fault_summary(f),
        pc: f
            .get("pc")
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()),
    }
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
            provisioned: Vec::new(),
            on_reboot: None,
            loader: Vec::new(),
        }
    }

    fn remember(&mut self, line: &str) {
        if let Some(at) = line.find("fqp-boot: ") {
            if self.loader.len() < RECENT {
                self.loader.push(line[at..].trim_end().to_string());
            }
        }
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

    fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.link.send(bytes).map_err(SessionError::Write)
    }

    /// Sends `SYNC` until the device answers with our nonce, for at most `timeout`.
    pub fn sync(&mut self, timeout: Duration) -> Result<DeviceInfo, SessionError> {
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        let sync = command(Kind::Sync, &[("nonce", &nonce)]);
        let end = Instant::now() + timeout;
        let mut next = Instant::now();
        // The port named by a HELLO the device printed while it did not answer.
        let mut hello: Option<String> = None;
        loop {
            let now = Instant::now();
            if now >= end {
                let recent = self.recent_output();
                return Err(match hello {
                    Some(port) => SessionError::Deaf {
                        waited: timeout,
                        port,
                        recent,
                    },
                    None => SessionError::NoSync {
                        waited: timeout,
                        recent,
                    },
                });
            }
            if now >= next {
                self.send(&sync)?;
                next = now + SYNC_EVERY;
            }
            match self.link.recv(next.min(end)) {
                Recv::Timeout => {}
                Recv::Closed => {
                    let recent = self.recent_output();
                    // The boot loader's last word, when it stopped the board (wherever it
                    // starts on its line: the console may have caught noise before it).
                    let said = recent.lines().rev().find_map(|l| {
                        let at = l.find("fqp-boot: ")?;
                        (!l.contains("fqp-boot: starting")).then(|| &l[at..])
                    });
                    return Err(match said {
                        Some(l) => SessionError::BootLoader {
                            said: l.trim().to_string(),
                        },
                        None => SessionError::ClosedBeforeSync { recent },
                    });
                }
                Recv::Line(l) => match fqp_protocol::parse(&l) {
                    Ok(Some(f))
                        if f.kind == Kind::Ready && f.raw("nonce") == Some(nonce.as_str()) =>
                    {
                        let proto = f.num("proto").unwrap_or(0);
                        if proto != fqp_protocol::VERSION as u64 {
                            return Err(SessionError::Version {
                                device: proto,
                                harness: fqp_protocol::VERSION,
                            });
                        }
                        return Ok(DeviceInfo {
                            port: f.get("port").unwrap_or_default(),
                            fw: f.get("fw").unwrap_or_default(),
                            kernel: f.get("kernel").unwrap_or_default(),
                            tests: f.num("tests").unwrap_or(0),
                            fpu: f.num("fpu").map(|n| n == 1),
                            tick_loops: f.num("tick_loops").filter(|n| *n > 0),
                            irqs: f.num("irq_lines").map(|lines| {
                                let fired = f.get("irq_fired").unwrap_or_default();
                                let fired = fired.split(',').filter_map(|n| n.parse().ok());
                                (lines, fired.collect())
                            }),
                            devices: f.get("devices").map(|d| {
                                d.split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect()
                            }),
                        });
                    }
                    Ok(Some(f)) if matches!(f.kind, Kind::Fault | Kind::Panic) => {
                        return Err(at_start(&f));
                    }
                    Ok(Some(f)) => {
                        // What the device says of itself is part of what it printed: a
                        // HELLO means it runs the test runner and its console sends.
                        if f.kind == Kind::Hello {
                            hello = Some(f.get("port").unwrap_or_default());
                        }
                        self.remember(&l);
                    }
                    Ok(None) => self.remember(&l),
                    // Still what the device printed (a boot loader's refusal after noise).
                    Err(_) => {
                        self.corrupt_lines += 1;
                        self.remember(&l);
                    }
                },
            }
        }
    }

    /// Asks for the list of tests.
    pub fn list(&mut self, timeout: Duration) -> Result<Vec<Listed>, SessionError> {
        for _attempt in 0..3 {
            self.send(&command(Kind::List, &[]))?;
            let end = Instant::now() + timeout;
            let mut tests = Vec::new();
            let mut damaged = false;
            loop {
                match self.link.recv(end) {
                    Recv::Timeout => return Err(SessionError::ListTimeout(timeout)),
                    Recv::Closed => return Err(SessionError::ClosedWhileListing),
                    Recv::Line(l) => match fqp_protocol::parse(&l) {
                        Ok(Some(f)) if f.kind == Kind::Test => {
                            let id = f.get("id").unwrap_or_default();
                            if !valid_id(&id) {
                                return Err(SessionError::BadTestName(
                                    id.chars().take(120).collect(),
                                ));
                            }
                            if tests.iter().any(|t: &Listed| t.id == id) {
                                return Err(SessionError::ListedTwice(id));
                            }
                            if tests.len() == MAX_TESTS {
                                return Err(SessionError::TooManyTests(MAX_TESTS));
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
        Err(SessionError::ListDamaged)
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
    pub fn set(&mut self, key: &str, value: &[u8], timeout: Duration) -> Result<(), SessionError> {
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
                        return Err(SessionError::SetLength {
                            key: key.to_string(),
                            held: len,
                            sent,
                        })
                    }
                    Err(why) if tries >= 2 => {
                        return Err(SessionError::Set {
                            key: key.to_string(),
                            why,
                        })
                    }
                    Err(_) => tries += 1,
                }
            }
        }
        match self.provisioned.iter_mut().find(|(k, _)| k == key) {
            Some(kept) => kept.1 = value.to_vec(),
            None => self.provisioned.push((key.to_string(), value.to_vec())),
        }
        Ok(())
    }

    /// After the running test rebooted the device (`REBOOT`): syncs with it again by
    /// `deadline` and provisions every setting again.
    fn follow_reboot(&mut self, deadline: Instant) -> Result<(), SessionError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.loader.clear();
        self.sync(left)?;
        for (key, value) in std::mem::take(&mut self.provisioned) {
            self.provision(&key, &value)?;
        }
        Ok(())
    }

    /// Provisions setting `key` on a device that has just booted: as given, but `entropy`
    /// fresh — each boot starts its random numbers anew (a network stack seeded as the last
    /// boot would reuse its ports and sequence numbers; keys made would repeat).
    pub fn provision(&mut self, key: &str, value: &[u8]) -> Result<(), SessionError> {
        let fresh;
        let value = match key {
            "entropy" => {
                fresh = fqp_lab::entropy_hex();
                fresh.as_bytes()
            }
            _ => value,
        };
        self.set(key, value, Duration::from_secs(2))
    }

    /// Waits for the `OK` of a `SET` of `key` that leaves `expected` bytes; the length it
    /// reports. A shorter one is the late answer to an earlier piece, and is passed over.
    fn wait_ok(&mut self, key: &str, expected: u64, timeout: Duration) -> Result<u64, Refusal> {
        let end = Instant::now() + timeout;
        loop {
            match self.link.recv(end) {
                Recv::Line(l) => match fqp_protocol::parse(&l) {
                    Ok(Some(f)) if f.kind == Kind::Ok && f.get("key").as_deref() == Some(key) => {
                        match f.num("len") {
                            Some(len) if len < expected => continue,
                            Some(len) => return Ok(len),
                            None => return Err(Refusal::NoLength),
                        }
                    }
                    Ok(Some(f)) if f.kind == Kind::Err => {
                        return Err(Refusal::Device(f.get("msg").unwrap_or_default()))
                    }
                    Ok(None) => self.remember(&l),
                    _ => {}
                },
                Recv::Timeout => return Err(Refusal::NoAnswer),
                Recv::Closed => return Err(Refusal::Closed),
            }
        }
    }

    /// Asks an emulated device to end the run (it answers with a best-effort `BYE`).
    pub fn exit(&mut self, code: i32) {
        let _ = self.send(&command(Kind::Exit, &[("code", &code.to_string())]));
    }
}

#[cfg(test)]
mod tests;
