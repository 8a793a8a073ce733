//! The result model.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `results.json` layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// One qualification run of one port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Run {
    pub schema: u32,
    pub harness: String,
    pub port: Port,
    pub firmware: Option<Firmware>,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_ms: u64,
    pub verdict: Verdict,
    /// Problems of the run itself, outside the tests: its configuration (manifest, options,
    /// toolchain) or its infrastructure (build, flash, boot, console, emulator, lab services,
    /// signing, the harness itself).
    pub problems: Vec<Problem>,
    /// Everything that went wrong, each once, by who is at fault, with the first line where
    /// the run left what was expected and what to do: derived from the tests and problems
    /// ([`Run::classify`]).
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// This run covered only part `index` of `count` of the selected tests.
    #[serde(default)]
    pub partition: Option<Partition>,
    /// The tests were chosen (`--group`, `--test`, `--capability`); none for every test.
    #[serde(default)]
    pub selection: Option<Selection>,
    /// The suite descriptions the run was judged against (pinned cases, requirements,
    /// thresholds).
    #[serde(default)]
    pub suites: Option<SuitesRef>,
    /// The run was stopped by this signal (`SIGINT`, `SIGTERM`, `SIGHUP`) before it ended.
    #[serde(default)]
    pub interrupted: Option<String>,
    /// Whether the port qualifies, by the suite descriptions.
    #[serde(default)]
    pub qualification: Option<Qualification>,
    pub groups: Vec<Group>,
}

/// The qualification statement of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Qualification {
    pub qualified: bool,
    /// The capabilities the port declared, and so qualified for.
    pub capabilities: Vec<String>,
    /// Why not (empty when qualified).
    pub reasons: Vec<String>,
}

/// Where a problem of a run arose.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The port manifest (`port.toml`).
    Manifest,
    /// The command line.
    Options,
    /// The compiler and tools to build with.
    Toolchain,
    /// Building the firmware.
    Build,
    /// Putting the image on the device.
    Flash,
    /// Starting the device and its test runner.
    Boot,
    /// The port's own code outside the tests: its start-up faulted or panicked before the
    /// test runner answered (the port's fault, not the lab's).
    Port,
    /// The console link and its protocol outside a test.
    Console,
    /// The emulator, killed or crashed from outside.
    Emulator,
    /// The lab's services: PKI, brokers, servers.
    Lab,
    /// Signing the results.
    Signing,
    /// The harness itself (a bug).
    Internal,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Manifest => "manifest",
            Stage::Options => "options",
            Stage::Toolchain => "toolchain",
            Stage::Build => "build",
            Stage::Flash => "flash",
            Stage::Boot => "boot",
            Stage::Port => "port",
            Stage::Console => "console",
            Stage::Emulator => "emulator",
            Stage::Lab => "lab",
            Stage::Signing => "signing",
            Stage::Internal => "internal",
        }
    }

    /// Configuration (the user's to fix), infrastructure (the lab's), or a crash of the port's
    /// own code (the product's).
    pub fn category(self) -> Category {
        match self {
            Stage::Manifest | Stage::Options | Stage::Toolchain => Category::Configuration,
            Stage::Port => Category::Crash,
            _ => Category::Infrastructure,
        }
    }

    /// What to do when a problem of this stage says nothing more precise.
    fn hint(self) -> &'static str {
        match self {
            Stage::Manifest => "correct port.toml (docs/port-manifest.md describes every key)",
            Stage::Options => "correct the command line (fqp --help)",
            Stage::Toolchain => "run scripts/setup.sh; fqp doctor --port <dir> says what is missing",
            Stage::Build => "the firmware did not build: the first error in build.log is the one to fix",
            Stage::Flash => "see flash.log: check the probe or flash tool, its command and the board's connection",
            Stage::Boot => "the device did not start its test runner: see serial.log and qemu.log, check the console settings and that the image starts the runner",
            Stage::Port => "the port's start-up code failed before the test runner ran: the message names the function and line",
            Stage::Console => "the console link or protocol failed: check the serial port and cable, and that nothing else prints on the console; see serial.log",
            Stage::Emulator => "the emulator was stopped from outside fqp: run again, and check the machine (memory, the OOM killer, other users)",
            Stage::Lab => "a lab service could not start or answer: fqp doctor checks the lab's tools and directory",
            Stage::Signing => "check the lab directory's lab-key.pem and lab-cert.pem (or remove both to have a new pair made)",
            Stage::Internal => "a bug in fqp: report it with this run's output directory",
        }
    }
}

/// A problem of the run itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Problem {
    pub stage: Stage,
    /// What happened, and (after `fix:`) what to do.
    pub message: String,
}

/// The longest problem message kept (a tool's log quoted whole can be long): the rest is in
/// the log files the message names.
pub const MAX_PROBLEM_BYTES: usize = 16 * 1024;

impl Problem {
    pub fn new(stage: Stage, message: impl Into<String>) -> Problem {
        let mut message = message.into();
        if message.len() > MAX_PROBLEM_BYTES {
            let mut cut = MAX_PROBLEM_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("\n[fqp: cut here; the log files named above have the rest]");
        }
        Problem { stage, message }
    }
}

/// Who is at fault.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The port did not do what a test checks (a failed check, a missed threshold, a flaky
    /// result, a broken protocol).
    Product,
    /// The device crashed during a test (fault, panic, reset, console lost).
    Crash,
    /// A test did not end in time.
    Timeout,
    /// The lab failed: build, flash, boot, console, emulator, lab services, signing, fqp.
    Infrastructure,
    /// The run was set up wrong: manifest, options, toolchain.
    Configuration,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Product => "product",
            Category::Crash => "crash",
            Category::Timeout => "timeout",
            Category::Infrastructure => "infrastructure",
            Category::Configuration => "configuration",
        }
    }
}

impl Finding {
    /// Where it happened: the test, or the stage of the run.
    pub fn place(&self) -> &str {
        match (&self.test, self.stage) {
            (Some(t), _) => t,
            (None, Some(s)) => s.as_str(),
            (None, None) => "",
        }
    }
}

/// One thing that went wrong, classified.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Finding {
    pub category: Category,
    /// The test (`group/name`), for a test that did not pass.
    pub test: Option<String>,
    /// The stage, for a problem of the run.
    pub stage: Option<Stage>,
    /// The first line where the run left what was expected: the failed check and where, the
    /// fault and the function and source line it hit, the last output before a hang, the
    /// first error of a build.
    pub first_divergence: String,
    /// What to do.
    pub hint: String,
}

/// The first line of `text` that reads as an error (a compiler's `error…` line before a
/// summary's `… failed`), else its first line.
fn first_error_line(text: &str) -> &str {
    let lines = || text.lines().map(str::trim).filter(|l| !l.is_empty());
    let lower = |l: &str| l.to_ascii_lowercase();
    lines()
        .find(|l| lower(l).starts_with("error"))
        .or_else(|| lines().find(|l| lower(l).contains("error:")))
        .or_else(|| lines().next())
        .unwrap_or("")
}

/// The text after `fix:` in `text`, if any.
fn fix_of(text: &str) -> Option<&str> {
    text.split_once("fix:").map(|(_, f)| f.trim())
}

/// Which tests a run was asked for, when not all of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Selection {
    /// `--group`: only these groups.
    pub groups: Vec<String>,
    /// `--test`: only tests whose `group/name` contains one of these.
    pub tests: Vec<String>,
    /// `--capability`: only tests that need one of these.
    pub capabilities: Vec<String>,
}

impl Selection {
    /// `--group queue --test fifo` as given on the command line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (flag, values) in [
            ("--group", &self.groups),
            ("--test", &self.tests),
            ("--capability", &self.capabilities),
        ] {
            parts.extend(values.iter().map(|v| format!("{flag} {v}")));
        }
        parts.join(" ")
    }
}

/// The suite descriptions (`test-suites/suites.toml`) a run was judged against.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct SuitesRef {
    /// Their `version`.
    pub version: u32,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// One part of a selection split for parallel CI jobs (`--partition index/count`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Partition {
    /// 1-based.
    pub index: usize,
    pub count: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Port {
    pub name: String,
    pub board: String,
    pub vendor: Option<String>,
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    pub manifest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Firmware {
    pub image: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub toolchain: String,
    /// As reported by the device at sync.
    pub version: Option<String>,
    pub kernel: Option<String>,
    /// Bytes of the image that are the kernel's (the code its sources generated wherever it
    /// was inlined, its symbols); none when the image has no symbols.
    #[serde(default)]
    pub kernel_size: Option<Sections>,
    /// The kernel's code and constants by module, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_text_by_module: Vec<ModuleBytes>,
    /// The boot loader the image ran under, and the image as signed for it (a port with
    /// `[boot]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootImage>,
}

/// A boot loader and the signed image it started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct BootImage {
    /// The boot loader's ELF.
    pub loader: String,
    pub loader_sha256: String,
    /// The signed image written into the primary slot (header and payload).
    pub signed_image: String,
    pub signed_sha256: String,
    /// The version in its header.
    pub version: String,
}

impl Firmware {
    /// The kernel's text by module as one line (`task 1812, arch 1342, …`); empty when unknown.
    pub fn kernel_modules_line(&self) -> String {
        let parts: Vec<String> = self
            .kernel_text_by_module
            .iter()
            .map(|m| format!("{} {}", m.module, m.bytes))
            .collect();
        parts.join(", ")
    }
}

/// Bytes of one kernel module.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct ModuleBytes {
    pub module: String,
    pub bytes: u64,
}

/// Bytes by kind: code and constants, initialised data, zeroed data.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Sections {
    pub text: u64,
    pub data: u64,
    pub bss: u64,
}

impl std::fmt::Display for Sections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "text {} B, data {} B, bss {} B",
            self.text, self.data, self.bss
        )
    }
}

/// The overall result, and the exit code that goes with it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every selected test passed (or was skipped with a reason).
    Passed,
    /// At least one test failed or errored.
    Failed,
    /// The run could not be carried out as asked (build, flash, sync…).
    InfrastructureError,
    /// A signal stopped the run before it ended (see [`Run::interrupted`]).
    Interrupted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::InfrastructureError => "infrastructure_error",
            Verdict::Interrupted => "interrupted",
        }
    }
}

/// Exit status: every selected test passed (and a whole run qualified).
pub const EXIT_OK: u8 = 0;
/// Exit status: a product failure (a test failed, errored or was flaky; a whole run did not
/// qualify).
pub const EXIT_PRODUCT: u8 = 1;
/// Exit status: the run could not be carried out (infrastructure or configuration), or its
/// reports could not be written.
pub const EXIT_INFRASTRUCTURE: u8 = 2;

/// The exit status of a run stopped by `signal`: 128 + its number, as a shell reports it
/// (SIGHUP 129, SIGINT 130, SIGTERM 143).
pub fn interrupted_exit_code(signal: &str) -> u8 {
    match signal {
        "SIGHUP" => 129,
        "SIGTERM" => 143,
        _ => 130,
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Group {
    pub name: String,
    pub tests: Vec<Test>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    /// A check in the test failed.
    Failed,
    /// The test did not finish: fault, panic, reset, timeout, protocol breakdown.
    Error,
    Skipped,
    /// Failed or errored, then passed when retried: not a pass (it fails the run and
    /// disqualifies).
    Flaky,
}

/// What kind of error ended a test with [`Status::Error`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Fault,
    Panic,
    Timeout,
    Reset,
    Protocol,
    DeviceLost,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Flaky => "flaky",
        }
    }
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Fault => "fault",
            ErrorKind::Panic => "panic",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::DeviceLost => "device_lost",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// One test's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Test {
    /// `group/name`.
    pub id: String,
    /// Position in the device's list of tests: results of partial runs (partitions, devices
    /// of a pool) are put back in this order.
    #[serde(default)]
    pub index: Option<usize>,
    pub name: String,
    pub status: Status,
    pub error_kind: Option<ErrorKind>,
    /// Failure or error message, or the reason for a skip.
    pub message: Option<String>,
    /// `file:line` of the failed check.
    pub location: Option<String>,
    /// Earlier runs of the test that failed, oldest first, when it was retried; `status`
    /// and the fields above are those of the last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<Attempt>,
    /// Duration measured on the device (passed and failed tests).
    pub device_us: Option<u64>,
    /// Wall-clock time on the host, from `RUN` to the end.
    pub wall_ms: u64,
    /// Device details (fault registers and the like).
    pub details: BTreeMap<String, String>,
    /// Console output during the test: `LOG` messages and plain lines.
    pub output: Vec<String>,
    pub metrics: Vec<Metric>,
}

/// A failed run of a test that was then run again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Attempt {
    /// `failed` or `error`.
    pub status: Status,
    pub error_kind: Option<ErrorKind>,
    pub message: Option<String>,
    pub location: Option<String>,
    pub device_us: Option<u64>,
    pub wall_ms: u64,
    pub output: Vec<String>,
}

impl Attempt {
    /// The outcome of `t`, as an earlier attempt.
    pub fn of(t: Test) -> Self {
        Attempt {
            status: t.status,
            error_kind: t.error_kind,
            message: t.message,
            location: t.location,
            device_us: t.device_us,
            wall_ms: t.wall_ms,
            output: t.output,
        }
    }

    /// `failed: message (location)` or `error [kind]: message`.
    pub fn describe(&self) -> String {
        let msg = self.message.as_deref().unwrap_or("");
        match (self.error_kind, self.location.as_deref()) {
            (Some(k), _) => format!("{} [{}]: {msg}", self.status.as_str(), k.as_str()),
            (None, Some(at)) => format!("{}: {msg} ({at})", self.status.as_str()),
            (None, None) => format!("{}: {msg}", self.status.as_str()),
        }
    }
}

impl Test {
    /// What this test's outcome says is wrong, if anything.
    pub fn finding(&self) -> Option<Finding> {
        let msg = self.message.as_deref().unwrap_or("");
        let at = |what: &str| match &self.location {
            Some(l) => format!("{what} ({l})"),
            None => what.to_string(),
        };
        let (category, first, hint) = match (self.status, self.error_kind) {
            (Status::Passed | Status::Skipped, _) => return None,
            (Status::Flaky, _) => (
                Category::Product,
                msg.to_string(),
                "it failed, then passed when run again: a race, a timing margin or state left by an earlier test; run it alone (--test) with --retries 0 to reproduce".to_string(),
            ),
            (Status::Failed, _) if msg.contains("threshold") => (
                Category::Product,
                msg.to_string(),
                "a figure missed its bound (test-suites/suites.toml): check the core clock, caches, flash wait states and the optimisation level the port builds with".to_string(),
            ),
            (Status::Failed, _) => (
                Category::Product,
                at(msg),
                match &self.location {
                    Some(l) => format!("a check failed on the device: the test's source at {l} says what it expects of the port"),
                    None => "a check failed on the device: the test's source says what it expects of the port".to_string(),
                },
            ),
            (_, Some(ErrorKind::Fault)) => (
                Category::Crash,
                at(msg),
                match self.details.get("function") {
                    Some(f) => format!("the CPU faulted in {f}: look there for a stack overflow (raise the stack), a bad pointer, or an access to a peripheral the board does not have"),
                    None => "the CPU faulted: decode the pc (details) against the image; look for a stack overflow, a bad pointer, or an access to a peripheral the board does not have".to_string(),
                },
            ),
            (_, Some(ErrorKind::Panic)) => (
                Category::Crash,
                at(msg),
                "code on the device panicked at that line".to_string(),
            ),
            (_, Some(ErrorKind::Reset)) => (
                Category::Crash,
                msg.to_string(),
                "the device reset during the test: a watchdog, a brown-out, or a fault handler that resets; serial.log has what it printed".to_string(),
            ),
            (_, Some(ErrorKind::DeviceLost)) => (
                Category::Crash,
                msg.to_string(),
                "the console went away during the test: the device exited or reset, or its serial/USB link dropped".to_string(),
            ),
            (_, Some(ErrorKind::Timeout)) => (
                Category::Timeout,
                match self.output.iter().rev().find(|l| !l.trim().is_empty()) {
                    Some(last) => format!("{msg}; last output: {last}"),
                    None => format!("{msg}; no output"),
                },
                "the test did not end in time: a hang or deadlock, interrupts left masked, or a tick running slow (check the port's tick and clock set-up)".to_string(),
            ),
            (_, Some(ErrorKind::Protocol)) => (
                Category::Product,
                msg.to_string(),
                "the device broke the console protocol: a test runner of another fqp version, or other output interleaved with protocol lines".to_string(),
            ),
            (_, None) => (
                Category::Product,
                msg.to_string(),
                "the test did not finish".to_string(),
            ),
        };
        Some(Finding {
            category,
            test: Some(self.id.clone()),
            stage: None,
            first_divergence: first,
            hint,
        })
    }

    /// How many times the test ran.
    pub fn attempts(&self) -> usize {
        self.retried.len() + 1
    }

    pub fn new(id: &str, status: Status) -> Self {
        let name = id.split_once('/').map_or(id, |(_, n)| n).to_string();
        Test {
            id: id.to_string(),
            index: None,
            name,
            status,
            error_kind: None,
            message: None,
            location: None,
            retried: Vec::new(),
            device_us: None,
            wall_ms: 0,
            details: BTreeMap::new(),
            output: Vec::new(),
            metrics: Vec::new(),
        }
    }
}

/// Counts by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
    pub flaky: usize,
}

impl Run {
    /// A run of `port` by harness version `harness`, started at `started` (RFC 3339), that
    /// has not got anywhere yet: no image, no tests, and an infrastructure-error verdict until
    /// [`Run::decide`] is asked again.
    pub fn new(harness: &str, port: Port, started: &str) -> Run {
        Run {
            schema: SCHEMA_VERSION,
            harness: harness.to_string(),
            port,
            firmware: None,
            started: started.to_string(),
            duration_ms: 0,
            verdict: Verdict::InfrastructureError,
            problems: Vec::new(),
            findings: Vec::new(),
            partition: None,
            selection: None,
            suites: None,
            interrupted: None,
            qualification: None,
            groups: Vec::new(),
        }
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for t in self.groups.iter().flat_map(|g| &g.tests) {
            s.total += 1;
            match t.status {
                Status::Passed => s.passed += 1,
                Status::Failed => s.failed += 1,
                Status::Error => s.errors += 1,
                Status::Skipped => s.skipped += 1,
                Status::Flaky => s.flaky += 1,
            }
        }
        s
    }

    /// Whether this run was asked for every test of the image (no selection, no partition):
    /// only such a run can qualify.
    pub fn is_whole(&self) -> bool {
        self.selection.is_none() && self.partition.is_none()
    }

    /// The exit status a CI gate reads (`EXIT_*`; 129/130/143 when interrupted): 0 only when
    /// every selected test passed and, for a whole run, the port qualified.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Interrupted => {
                interrupted_exit_code(self.interrupted.as_deref().unwrap_or("SIGINT"))
            }
            Verdict::InfrastructureError => EXIT_INFRASTRUCTURE,
            Verdict::Failed => EXIT_PRODUCT,
            Verdict::Passed => {
                let qualified = self.qualification.as_ref().is_some_and(|q| q.qualified);
                if self.is_whole() && !qualified {
                    EXIT_PRODUCT
                } else {
                    EXIT_OK
                }
            }
        }
    }

    /// The one-line verdict reports lead with: the qualification statement when there is
    /// one, else the run's verdict.
    pub fn headline(&self) -> &'static str {
        match (&self.qualification, self.verdict) {
            (_, Verdict::Interrupted) => "INTERRUPTED",
            (_, Verdict::InfrastructureError) => "INFRASTRUCTURE ERROR",
            (Some(q), _) if q.qualified => "QUALIFIED",
            (Some(_), _) => "NOT QUALIFIED",
            (None, Verdict::Passed) => "PASSED",
            (None, _) => "FAILED",
        }
    }

    /// The verdict the tests, infrastructure errors and an interruption call for. A flaky
    /// test fails the run: it passed only when tried again.
    pub fn decide(&self) -> Verdict {
        let s = self.summary();
        if self.interrupted.is_some() {
            Verdict::Interrupted
        } else if self
            .problems
            .iter()
            .any(|p| p.stage.category() != Category::Crash)
        {
            // The lab or the configuration failed: the run says nothing of the port.
            Verdict::InfrastructureError
        } else if s.failed + s.errors + s.flaky > 0 || !self.problems.is_empty() {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }

    /// What went wrong, classified: every problem of the run, then every test that did not
    /// pass (skips are not failures), in listing order.
    pub fn classify(&self) -> Vec<Finding> {
        let mut out: Vec<Finding> = self
            .problems
            .iter()
            .map(|p| Finding {
                category: p.stage.category(),
                test: None,
                stage: Some(p.stage),
                first_divergence: first_error_line(&p.message).to_string(),
                hint: fix_of(&p.message).unwrap_or(p.stage.hint()).to_string(),
            })
            .collect();
        for t in self.groups.iter().flat_map(|g| &g.tests) {
            if let Some(f) = t.finding() {
                out.push(f);
            }
        }
        out
    }

    /// Puts groups and tests in the device's listing order (tests without an index keep their
    /// place after those with one).
    pub fn sort(&mut self) {
        for g in &mut self.groups {
            g.tests.sort_by_key(|t| t.index.unwrap_or(usize::MAX));
        }
        self.groups.sort_by_key(|g| {
            g.tests
                .iter()
                .filter_map(|t| t.index)
                .min()
                .unwrap_or(usize::MAX)
        });
    }

    /// Adds a test result under its group (groups keep first-seen order).
    pub fn push(&mut self, group: &str, test: Test) {
        match self.groups.iter_mut().find(|g| g.name == group) {
            Some(g) => g.tests.push(test),
            None => self.groups.push(Group {
                name: group.to_string(),
                tests: vec![test],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(statuses: &[Status]) -> Run {
        let mut r = Run::new("0", crate::sample::port(), "");
        for (i, s) in statuses.iter().enumerate() {
            r.push("g", Test::new(&format!("g/{i}"), *s));
        }
        r.verdict = r.decide();
        r
    }

    fn qualified(r: &mut Run, yes: bool) {
        r.qualification = Some(Qualification {
            qualified: yes,
            capabilities: vec![],
            reasons: vec![],
        });
    }

    #[test]
    fn exit_codes_a_ci_gate_can_rely_on() {
        // A whole run: 0 only when qualified.
        let mut r = run(&[Status::Passed, Status::Skipped]);
        qualified(&mut r, true);
        assert_eq!(r.exit_code(), EXIT_OK);
        qualified(&mut r, false);
        assert_eq!(r.exit_code(), EXIT_PRODUCT);
        // A selection or a partition: 0 when what was selected passed.
        r.selection = Some(Selection::default());
        assert_eq!(r.exit_code(), EXIT_OK);
        r.selection = None;
        r.partition = Some(Partition { index: 1, count: 2 });
        assert_eq!(r.exit_code(), EXIT_OK);
        // A flaky test is a product failure.
        let mut r = run(&[Status::Passed, Status::Flaky]);
        qualified(&mut r, true);
        assert_eq!((r.verdict, r.exit_code()), (Verdict::Failed, EXIT_PRODUCT));
        let r = run(&[Status::Error]);
        assert_eq!(r.exit_code(), EXIT_PRODUCT);
        // The run itself failed.
        let mut r = run(&[Status::Failed]);
        r.problems.push(Problem::new(Stage::Boot, "x"));
        r.verdict = r.decide();
        assert_eq!(r.exit_code(), EXIT_INFRASTRUCTURE);
        // Interrupted, whatever else: 128 + the signal's number.
        for (signal, code) in [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)] {
            r.interrupted = Some(signal.into());
            r.verdict = r.decide();
            assert_eq!((r.verdict, r.exit_code()), (Verdict::Interrupted, code));
        }
    }

    #[test]
    fn problems_are_bounded() {
        let p = Problem::new(Stage::Lab, "é".repeat(MAX_PROBLEM_BYTES));
        assert!(p.message.len() <= MAX_PROBLEM_BYTES + 80);
        assert!(p.message.ends_with("have the rest]"));
    }

    #[test]
    fn every_failure_is_classified_with_where_and_what_to_do() {
        let mut r = run(&[Status::Passed, Status::Skipped]);
        assert!(r.classify().is_empty());
        r.problems.push(Problem::new(
            Stage::Build,
            "firmware build failed (exit status: 101); full log: build.log\n   Compiling x\nerror[E0425]: cannot find value `y`",
        ));
        r.problems.push(Problem::new(
            Stage::Manifest,
            "port.toml: `flash.method`: unknown method\n  fix: use qemu, probe-rs or command",
        ));
        let mut fault = Test::new("g/crash", Status::Error);
        fault.error_kind = Some(ErrorKind::Fault);
        fault.message = Some("HardFault at pc=0x1234".into());
        fault.location = Some("src/q.rs:7".into());
        fault.details.insert("function".into(), "q::boom".into());
        r.push("g", fault);
        let mut hang = Test::new("g/hang", Status::Error);
        hang.error_kind = Some(ErrorKind::Timeout);
        hang.message = Some("no result within 1.5 s".into());
        hang.output.push("waiting for the semaphore".into());
        r.push("g", hang);
        let mut check = Test::new("g/check", Status::Failed);
        check.message = Some("left 1, right 2".into());
        check.location = Some("src/g.rs:9".into());
        r.push("g", check);
        let f = r.classify();
        let cats: Vec<&str> = f.iter().map(|f| f.category.as_str()).collect();
        assert_eq!(
            cats,
            [
                "infrastructure",
                "configuration",
                "crash",
                "timeout",
                "product"
            ]
        );
        assert_eq!(f[0].first_divergence, "error[E0425]: cannot find value `y`");
        assert!(f[0].hint.contains("build.log"));
        assert_eq!(f[1].hint, "use qemu, probe-rs or command");
        assert_eq!(f[2].first_divergence, "HardFault at pc=0x1234 (src/q.rs:7)");
        assert!(f[2].hint.contains("q::boom"));
        assert!(f[3]
            .first_divergence
            .ends_with("last output: waiting for the semaphore"));
        assert_eq!(f[4].first_divergence, "left 1, right 2 (src/g.rs:9)");
        assert_eq!(f[4].test.as_deref(), Some("g/check"));
    }
}
