//! The result model.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the `results.json` layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// Problems outside the tests: build, flash, sync, the device dying between tests.
    pub infrastructure_errors: Vec<String>,
    /// This run covered only part `index` of `count` of the selected tests.
    #[serde(default)]
    pub partition: Option<Partition>,
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
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::InfrastructureError => "infrastructure_error",
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::InfrastructureError => 2,
        }
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
    /// Failed or errored, then passed when retried: not a pass (it does not fail the run's
    /// exit status, but it does disqualify a required group).
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
            infrastructure_errors: Vec::new(),
            partition: None,
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

    /// The one-line verdict reports lead with: the qualification statement when there is
    /// one, else the run's verdict.
    pub fn headline(&self) -> &'static str {
        match (&self.qualification, self.verdict) {
            (_, Verdict::InfrastructureError) => "INFRASTRUCTURE ERROR",
            (Some(q), _) if q.qualified => "QUALIFIED",
            (Some(_), _) => "NOT QUALIFIED",
            (None, Verdict::Passed) => "PASSED",
            (None, _) => "FAILED",
        }
    }

    /// The verdict the tests and infrastructure errors call for.
    pub fn decide(&self) -> Verdict {
        let s = self.summary();
        if !self.infrastructure_errors.is_empty() {
            Verdict::InfrastructureError
        } else if s.failed + s.errors > 0 {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
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
