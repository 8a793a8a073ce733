//! The port manifest (`port.toml`): how to build a port's firmware, how to put it on the
//! device, where its console is, and what it can do. Reference: `docs/port-manifest.md`.
//!
//! Every mistake is reported with the file, the key and what to write instead; unknown keys
//! are errors (a typo must not silently fall back to a default).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Kernel configuration keys a manifest may set (`[kernel]`), passed to the build as `FQP_*`.
pub const KERNEL_KEYS: &[&str] = &[
    "max_tasks",
    "priorities",
    "tick_hz",
    "time_slicing",
    "notify_indexes",
    "idle_stack_words",
    "timer_stack_words",
    "timer_priority",
];

/// A port's manifest. `F` is how `[flash]` is held: as written ([`RawFlash`], while parsing)
/// or checked ([`Flash`], what [`load`] and [`parse`] return).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest<F = Flash> {
    pub port: PortSection,
    pub build: BuildSection,
    #[serde(default)]
    pub kernel: BTreeMap<String, toml::Value>,
    pub flash: F,
    #[serde(default)]
    pub serial: SerialSection,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub network: NetworkSection,
    /// A pool of identical boards (`[[devices]]`); QEMU pools are sized with `--devices`.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
    /// Where the manifest was read from (set by [`load`]).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    pub name: String,
    pub board: String,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    /// Directory of the firmware crate, relative to the manifest.
    #[serde(rename = "crate", default = "dot")]
    pub crate_dir: PathBuf,
    /// Binary target to build (default: the crate's only binary).
    #[serde(default)]
    pub bin: Option<String>,
    pub target: String,
    #[serde(default = "release")]
    pub profile: String,
    #[serde(default)]
    pub features: Vec<String>,
    /// Features added for `fqp bench`'s image, typically one that leaves out every group
    /// but the performance group, so the image holds just the kernel the benchmarks use.
    #[serde(default)]
    pub bench_features: Vec<String>,
    /// A build other than the qualification image's (`bench`), kept in its own target
    /// directory so the two do not rebuild each other.
    #[serde(skip)]
    pub variant: Option<&'static str>,
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

fn release() -> String {
    "release".into()
}

/// `[flash]` as written: a method's name and tables, checked into a [`Flash`] by [`parse`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlash {
    method: String,
    #[serde(default)]
    qemu: Option<QemuSection>,
    #[serde(default, rename = "probe-rs")]
    probe_rs: Option<ProbeRsSection>,
    #[serde(default)]
    command: Option<CommandSection>,
}

/// How the image reaches the device: the flash method, with its settings.
#[derive(Debug, Clone)]
pub enum Flash {
    /// An emulator (`method = "qemu"`): QEMU started for each device, its console a
    /// pseudo-terminal.
    Qemu(QemuSection),
    /// A debug probe, through probe-rs (`method = "probe-rs"`).
    ProbeRs(ProbeRsSection),
    /// The vendor's own tool (`method = "command"`).
    Command(CommandSection),
}

impl Flash {
    /// The method's name, as `flash.method` writes it.
    pub fn method(&self) -> &'static str {
        match self {
            Flash::Qemu(_) => "qemu",
            Flash::ProbeRs(_) => "probe-rs",
            Flash::Command(_) => "command",
        }
    }

    /// The emulator's settings, for an emulated device.
    pub fn qemu(&self) -> Option<&QemuSection> {
        match self {
            Flash::Qemu(q) => Some(q),
            _ => None,
        }
    }

    /// The emulator's settings, to change for one run.
    pub fn qemu_mut(&mut self) -> Option<&mut QemuSection> {
        match self {
            Flash::Qemu(q) => Some(q),
            _ => None,
        }
    }

    /// True for an emulated device (started by fqp; a board is there already).
    pub fn is_emulated(&self) -> bool {
        matches!(self, Flash::Qemu(_))
    }
}

impl RawFlash {
    /// The method with its table, or what is missing or unknown.
    fn check(self) -> Result<Flash, Invalid> {
        match (self.method.as_str(), self.qemu, self.probe_rs, self.command) {
            ("qemu", Some(q), ..) => Ok(Flash::Qemu(q)),
            ("qemu", None, ..) => Err((
                "flash.qemu",
                "method \"qemu\" needs a [flash.qemu] table".into(),
                "add [flash.qemu] with at least `machine = \"...\"`",
            )),
            ("probe-rs", _, Some(p), _) => Ok(Flash::ProbeRs(p)),
            ("probe-rs", _, None, _) => Err((
                "flash.probe-rs",
                "method \"probe-rs\" needs a [flash.probe-rs] table".into(),
                "add [flash.probe-rs] with at least `chip = \"...\"` (`fqp devices --chips NAME` searches the chip database)",
            )),
            ("command", .., Some(c)) => Ok(Flash::Command(c)),
            ("command", .., None) => Err((
                "flash.command",
                "method \"command\" needs a [flash.command] table".into(),
                "add [flash.command] with `flash = [\"tool\", \"args\", \"{image}\"]`",
            )),
            (other, ..) => Err((
                "flash.method",
                format!("flash method {other:?} is not supported"),
                "use \"qemu\" (an emulator), \"probe-rs\" (a debug probe) or \"command\" (your own flash tool)",
            )),
        }
    }
}

/// How a debug probe talks to the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum WireProtocol {
    Swd,
    Jtag,
}

impl TryFrom<String> for WireProtocol {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "swd" => Ok(WireProtocol::Swd),
            "jtag" => Ok(WireProtocol::Jtag),
            _ => Err(format!(
                "`flash.probe-rs.protocol` is {s:?}, which is not a protocol: use \"swd\" or \"jtag\""
            )),
        }
    }
}

/// Flashing through a debug probe with probe-rs.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProbeRsSection {
    /// Chip name from probe-rs's target database, e.g. "STM32F411RETx".
    pub chip: String,
    /// Which probe: "VID:PID" or "VID:PID:SERIAL" (default: the only one attached).
    #[serde(default)]
    pub probe: Option<String>,
    /// "swd" or "jtag" (default: the probe's).
    #[serde(default)]
    pub protocol: Option<WireProtocol>,
    #[serde(default)]
    pub speed_khz: Option<u32>,
    /// Read the flash back after writing it.
    #[serde(default = "yes")]
    pub verify: bool,
    #[serde(default)]
    pub connect_under_reset: bool,
}

fn yes() -> bool {
    true
}

/// Flashing with the vendor's own tool: argument lists with placeholders (see
/// [`PLACEHOLDERS`]).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CommandSection {
    /// Writes the image and starts it, e.g. `["st-flash", "write", "{bin}", "0x8000000"]`.
    pub flash: Vec<String>,
    /// Restarts the board without writing it again (default: run `flash` again).
    #[serde(default)]
    pub reset: Option<Vec<String>>,
    #[serde(default = "flash_timeout_ms")]
    pub timeout_ms: u64,
}

fn flash_timeout_ms() -> u64 {
    120_000
}

/// Placeholders a flash command may use, and what they stand for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("{image}", "absolute path of the ELF image"),
    (
        "{bin}",
        "absolute path of the image as a raw binary (loadable sections from the lowest address)",
    ),
    (
        "{device}",
        "the device's id (`devices[].id`, or `1`, `2`, …)",
    ),
    (
        "{probe}",
        "the device's probe selector (`devices[].probe`), empty when none",
    ),
    (
        "{serial}",
        "the device's console path, empty when the console is not a local serial port",
    ),
    ("{port_dir}", "the directory of port.toml"),
];

/// One board of a pool.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Name in logs and reports, and `{device}` in flash commands.
    pub id: String,
    /// This board's console, instead of `serial.path`.
    #[serde(default)]
    pub serial: Option<String>,
    /// This board's console over TCP (`host:port`), instead of `serial.tcp`.
    #[serde(default)]
    pub tcp: Option<String>,
    /// This board's USB serial number, to find its console (with `serial.usb`).
    #[serde(default)]
    pub usb_serial: Option<String>,
    /// This board's probe ("VID:PID:SERIAL"), instead of `flash.probe-rs.probe`.
    #[serde(default)]
    pub probe: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    #[serde(default = "qemu_arm")]
    pub binary: String,
    pub machine: String,
    /// `-icount shift=N`: deterministic virtual time, one instruction = 2^N ns.
    #[serde(default)]
    pub icount_shift: Option<u32>,
    /// With `icount_shift`: an idle device waits in real time (`sleep=on`) instead of
    /// skipping to its next timer. Needed when tests talk to the outside world (a network),
    /// whose answers come in real time.
    #[serde(default)]
    pub icount_sleep: bool,
    /// Arguments the firmware reads through semihosting (after the image name).
    #[serde(default)]
    pub semihosting_args: Vec<String>,
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Count the instructions executed by function (`fqp bench --profile`).
    #[serde(skip)]
    pub profile: Option<std::sync::Arc<crate::profile::Profile>>,
}

fn qemu_arm() -> String {
    "qemu-system-arm".into()
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SerialSection {
    /// Device path of the console; omitted with `method = "qemu"`: QEMU's pseudo-terminal.
    #[serde(default)]
    pub path: Option<String>,
    /// Find the console among the USB serial ports by vendor/product id (and serial number).
    #[serde(default)]
    pub usb: Option<UsbMatch>,
    /// A console reached over TCP (`host:port`): a terminal server, or a board's network
    /// console.
    #[serde(default)]
    pub tcp: Option<String>,
    #[serde(default)]
    pub baud: Option<u32>,
    /// 5, 6, 7 or 8 (default 8).
    #[serde(default)]
    pub data_bits: Option<u8>,
    /// "none" (default), "even" or "odd".
    #[serde(default)]
    pub parity: Option<String>,
    /// 1 (default) or 2.
    #[serde(default)]
    pub stop_bits: Option<u8>,
    /// "none" (default), "software" or "hardware".
    #[serde(default)]
    pub flow_control: Option<String>,
}

/// How the device reaches the machine running fqp (for the lab services: echo server, …).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// This machine's address as the device sees it (default with QEMU: its user network's
    /// host, 10.0.2.2).
    #[serde(default)]
    pub host: Option<String>,
}

/// Which USB serial port is the console.
#[derive(Debug, Deserialize, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UsbMatch {
    /// Vendor id, hex ("0483").
    pub vid: String,
    /// Product id, hex ("374b").
    pub pid: String,
    /// USB serial number, when several such boards are attached.
    #[serde(default)]
    pub serial: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// From power-on (or flash) to an answer to `SYNC`.
    #[serde(default = "boot_ms")]
    pub boot_ms: u64,
    /// Multiplies every test's own timeout (slow boards, emulation).
    #[serde(default = "one")]
    pub factor: f64,
    /// Added to every test's timeout, for the console round trip.
    #[serde(default = "grace_ms")]
    pub grace_ms: u64,
    /// The longest a firmware build may take: a build that hangs (a lock held, a build
    /// script waiting) ends the run with a report instead of holding it forever.
    #[serde(default = "build_ms")]
    pub build_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            boot_ms: boot_ms(),
            factor: one(),
            grace_ms: grace_ms(),
            build_ms: build_ms(),
        }
    }
}

fn build_ms() -> u64 {
    30 * 60 * 1000
}

fn boot_ms() -> u64 {
    10_000
}
fn one() -> f64 {
    1.0
}
fn grace_ms() -> u64 {
    2_000
}

/// A manifest problem: where, which key, and how to fix it.
#[derive(Debug, PartialEq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(k) = &self.key {
            write!(f, ": `{k}`")?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

impl std::error::Error for ManifestError {}

/// Reads and validates the manifest of the port in `dir` (or the file `dir` itself).
pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
    let file = if dir.is_dir() {
        dir.join("port.toml")
    } else {
        dir.to_path_buf()
    };
    let err = |key: Option<&str>, problem: String, fix: &str| ManifestError {
        file: file.clone(),
        key: key.map(str::to_string),
        problem,
        fix: fix.to_string(),
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        err(None, format!("cannot read the port manifest: {e}"), "pass --port the directory of a port (it holds port.toml); port-template/ has an example")
    })?;
    parse(&text, &file)
}

/// Parses and validates the manifest `text` of the file `file`.
pub fn parse(text: &str, file: &Path) -> Result<Manifest, ManifestError> {
    let file = file.to_path_buf();
    let err = |key: Option<&str>, problem: String, fix: &str| ManifestError {
        file: file.clone(),
        key: key.map(str::to_string),
        problem,
        fix: fix.to_string(),
    };
    let raw: Manifest<RawFlash> = toml::from_str(text).map_err(|e| {
        let key = e.message().split('`').nth(1).map(str::to_string);
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ManifestError {
            file: file.clone(),
            key,
            problem: format!("line {line}, column {col}: {}", e.message()),
            fix: "see docs/port-manifest.md for every section and key".into(),
        }
    })?;
    let mut m = raw
        .with_flash(RawFlash::check)
        .map_err(|(key, problem, fix)| err(Some(key), problem, fix))?;
    // Absolute, so that every path derived from it (the crate, cargo's target directory)
    // means the same wherever cargo and QEMU run.
    m.path = std::path::absolute(&file).unwrap_or(file.clone());
    validate(&m).map_err(|(key, problem, fix)| err(Some(key), problem, fix))?;
    Ok(m)
}

/// The first `{…}` in `arg` that is not a known placeholder.
fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e + 1)?;
        let p = &rest[start..end];
        if !PLACEHOLDERS.iter().any(|(name, _)| *name == p) {
            return Some(p.to_string());
        }
        rest = &rest[end..];
    }
    None
}

fn serial_options_error(s: &SerialSection) -> Option<Invalid> {
    if s.data_bits.is_some_and(|b| !(5..=8).contains(&b)) {
        return Some((
            "serial.data_bits",
            "must be 5, 6, 7 or 8".into(),
            "most boards use 8",
        ));
    }
    if s.stop_bits.is_some_and(|b| b != 1 && b != 2) {
        return Some((
            "serial.stop_bits",
            "must be 1 or 2".into(),
            "most boards use 1",
        ));
    }
    if s.parity
        .as_deref()
        .is_some_and(|p| !matches!(p, "none" | "even" | "odd"))
    {
        return Some((
            "serial.parity",
            format!("{:?} is not a parity", s.parity.as_deref().unwrap_or("")),
            "use \"none\", \"even\" or \"odd\"",
        ));
    }
    if s.flow_control
        .as_deref()
        .is_some_and(|p| !matches!(p, "none" | "software" | "hardware"))
    {
        return Some((
            "serial.flow_control",
            format!(
                "{:?} is not a flow control",
                s.flow_control.as_deref().unwrap_or("")
            ),
            "use \"none\", \"software\" or \"hardware\"",
        ));
    }
    None
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

type Invalid = (&'static str, String, &'static str);

fn validate(m: &Manifest) -> Result<(), Invalid> {
    if m.port.name.is_empty()
        || !m
            .port
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "port.name",
            format!("{:?} is not a valid port name", m.port.name),
            "use letters, digits, `-` and `_` only",
        ));
    }
    match &m.flash {
        Flash::Qemu(_) => {}
        Flash::ProbeRs(p) => {
            if let Some(sel) = &p.probe {
                crate::probe::parse_selector(sel).map_err(|e| {
                    (
                        "flash.probe-rs.probe",
                        e,
                        "write VID:PID or VID:PID:SERIAL in hex, e.g. \"0483:374b\"",
                    )
                })?;
            }
        }
        Flash::Command(c) => {
            for (key, argv) in [
                ("flash.command.flash", Some(&c.flash)),
                ("flash.command.reset", c.reset.as_ref()),
            ] {
                let Some(argv) = argv else { continue };
                if argv.is_empty() {
                    return Err((key, "empty command".into(), "give the program and its arguments, e.g. [\"st-flash\", \"write\", \"{bin}\", \"0x8000000\"]"));
                }
                for a in argv {
                    if let Some(bad) = unknown_placeholder(a) {
                        return Err((key, format!("unknown placeholder {bad} in {a:?}"), "use {image}, {bin}, {device}, {probe}, {serial} or {port_dir} (docs/port-manifest.md)"));
                    }
                }
            }
        }
    }
    if let Some(u) = &m.serial.usb {
        for (key, v) in [("serial.usb.vid", &u.vid), ("serial.usb.pid", &u.pid)] {
            if u16::from_str_radix(v, 16).is_err() {
                return Err((key, format!("{v:?} is not a hex USB id"), "write four hex digits, e.g. \"0483\" (`fqp devices` lists the ports with their ids)"));
            }
        }
    }
    let consoles = [
        m.serial.path.is_some(),
        m.serial.usb.is_some(),
        m.serial.tcp.is_some(),
    ];
    if consoles.iter().filter(|c| **c).count() > 1 {
        return Err((
            "serial",
            "more than one of path, usb and tcp".into(),
            "name the console one way: path, usb or tcp",
        ));
    }
    if let Some(e) = serial_options_error(&m.serial) {
        return Err(e);
    }
    let mut ids = std::collections::BTreeSet::new();
    for d in &m.devices {
        if d.id.is_empty() || !ids.insert(d.id.as_str()) {
            return Err((
                "devices",
                format!("device id {:?} is empty or used twice", d.id),
                "give every [[devices]] entry its own id",
            ));
        }
        if m.flash.is_emulated() {
            return Err((
                "devices",
                "[[devices]] lists boards; QEMU devices are started as needed".into(),
                "remove [[devices]] and pass --devices N for N emulators",
            ));
        }
    }
    if let Some(q) = m.flash.qemu() {
        if q.icount_shift.is_some_and(|s| s > 10) {
            return Err((
                "flash.qemu.icount_shift",
                "must be 0..=10".into(),
                "5 matches the performance baselines (32 ns per instruction)",
            ));
        }
    }
    let console_for_all = consoles.iter().any(|c| *c);
    let console_each = !m.devices.is_empty()
        && m.devices
            .iter()
            .all(|d| d.serial.is_some() || d.tcp.is_some());
    if !m.flash.is_emulated() && !console_for_all && !console_each {
        return Err((
            "serial.path",
            "no console for the board".into(),
            "set serial.path (e.g. \"/dev/ttyACM0\"), serial.usb (vid/pid, found among the USB ports) or serial.tcp (\"host:port\")",
        ));
    }
    for (k, v) in &m.kernel {
        if !KERNEL_KEYS.contains(&k.as_str()) {
            return Err((
                "kernel",
                format!("unknown kernel setting {k:?}"),
                "use one of the keys listed in docs/port-manifest.md ([kernel])",
            ));
        }
        if !matches!(v, toml::Value::Integer(n) if *n >= 0) && !matches!(v, toml::Value::Boolean(_))
        {
            return Err((
                "kernel",
                format!("kernel setting {k:?} must be a non-negative integer or a boolean"),
                "for example `tick_hz = 1000` or `time_slicing = false`",
            ));
        }
    }
    if !(m.timeouts.factor > 0.0 && m.timeouts.factor <= 100.0) {
        return Err((
            "timeouts.factor",
            format!("{} is out of range", m.timeouts.factor),
            "use a factor between 0 and 100 (1.0 = the tests' own timeouts)",
        ));
    }
    if m.build.target.is_empty() {
        return Err((
            "build.target",
            "empty target".into(),
            "name the Rust target triple, e.g. \"thumbv7m-none-eabi\"",
        ));
    }
    Ok(())
}

impl<F> Manifest<F> {
    /// The same manifest with `[flash]` turned by `f`.
    fn with_flash<G>(
        self,
        f: impl FnOnce(F) -> Result<G, Invalid>,
    ) -> Result<Manifest<G>, Invalid> {
        Ok(Manifest {
            port: self.port,
            build: self.build,
            kernel: self.kernel,
            flash: f(self.flash)?,
            serial: self.serial,
            timeouts: self.timeouts,
            capabilities: self.capabilities,
            network: self.network,
            devices: self.devices,
            path: self.path,
        })
    }
}

impl Manifest {
    /// The firmware crate's directory (absolute, `..` resolved when it exists).
    pub fn crate_dir(&self) -> PathBuf {
        let dir = self
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.build.crate_dir);
        dir.canonicalize().unwrap_or(dir)
    }

    /// `p` as written in the manifest: relative paths are relative to the manifest's
    /// directory.
    pub fn relative(&self, p: &str) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).join(p)
    }

    /// The address at which the device reaches this machine, if known.
    pub fn lab_host(&self) -> Option<String> {
        self.network
            .host
            .clone()
            .or_else(|| self.flash.is_emulated().then(|| "10.0.2.2".to_string()))
    }

    /// `FQP_*` environment for the build from `[kernel]`.
    pub fn kernel_env(&self) -> Vec<(String, String)> {
        self.kernel
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::Boolean(b) => (*b as u8).to_string(),
                    other => other.to_string(),
                };
                (format!("FQP_{}", k.to_uppercase()), v)
            })
            .collect()
    }
}

/// `to` relative to the directory `from` (both absolute), or `to` itself when they share no
/// root.
pub fn relative(to: &Path, from: &Path) -> PathBuf {
    let (t, f): (Vec<std::path::Component>, Vec<std::path::Component>) =
        (to.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return to.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[port]
name = "demo"
board = "Demo board"

[build]
target = "thumbv7m-none-eabi"

[kernel]
tick_hz = 1000
time_slicing = false

[flash]
method = "qemu"

[flash.qemu]
machine = "mps2-an385"
"#;

    fn load_str(name: &str, text: &str) -> Result<Manifest, ManifestError> {
        let dir = std::env::temp_dir().join(format!("fqp-manifest-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("port.toml"), text).unwrap();
        let r = load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn good_manifest_loads_with_defaults() {
        let m = load_str("good", GOOD).unwrap();
        assert_eq!(m.build.profile, "release");
        assert_eq!(m.timeouts.boot_ms, 10_000);
        assert_eq!(m.flash.qemu().unwrap().binary, "qemu-system-arm");
        assert_eq!(m.flash.method(), "qemu");
        let env = m.kernel_env();
        assert!(env.contains(&("FQP_TICK_HZ".into(), "1000".into())));
        assert!(env.contains(&("FQP_TIME_SLICING".into(), "0".into())));
    }

    #[test]
    fn crate_dir_is_absolute_from_a_relative_port_path() {
        let dir = std::env::temp_dir().join(format!("fqp-manifest-{}-rel", std::process::id()));
        std::fs::create_dir_all(dir.join("fw")).unwrap();
        std::fs::write(
            dir.join("port.toml"),
            GOOD.replace("[build]", "[build]\ncrate = \"fw\""),
        )
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = relative(&dir, &cwd);
        let m = load(&rel).unwrap();
        assert!(m.path.is_absolute(), "{}", m.path.display());
        assert_eq!(m.crate_dir(), dir.join("fw").canonicalize().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_says_what_to_pass() {
        let e = load(Path::new("/nonexistent/port")).unwrap_err();
        assert!(e.to_string().contains("--port"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = load_str("typo", &GOOD.replace("board = ", "bord = ")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("bord"));
        assert!(e.problem.contains("line 4"), "{}", e.problem);
    }

    #[test]
    fn missing_section_is_named() {
        let e = load_str(
            "nobuild",
            &GOOD.replace("[build]\ntarget = \"thumbv7m-none-eabi\"\n", ""),
        )
        .unwrap_err();
        assert!(e.problem.contains("build"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_fix() {
        let cases = [
            (
                GOOD.replace("method = \"qemu\"", "method = \"jtag\""),
                "flash.method",
                "qemu",
            ),
            (
                GOOD.replace("[flash.qemu]\nmachine = \"mps2-an385\"\n", ""),
                "flash.qemu",
                "machine",
            ),
            (
                GOOD.replace("tick_hz = 1000", "tickhz = 1000"),
                "kernel",
                "docs/port-manifest.md",
            ),
            (
                GOOD.replace("tick_hz = 1000", "tick_hz = \"fast\""),
                "kernel",
                "tick_hz = 1000",
            ),
            (
                GOOD.replace("name = \"demo\"", "name = \"my port!\""),
                "port.name",
                "letters",
            ),
            (
                format!("{GOOD}\n[timeouts]\nfactor = 0.0\n"),
                "timeouts.factor",
                "between",
            ),
            (
                GOOD.replace("method = \"qemu\"", "method = \"probe-rs\""),
                "flash.probe-rs",
                "chip",
            ),
            (
                board("[flash.probe-rs]\nchip = \"STM32F411RETx\"\nprobe = \"stlink\"\n")
                    .replace("method = \"command\"", "method = \"probe-rs\""),
                "flash.probe-rs.probe",
                "VID:PID",
            ),
            (
                board("[flash.probe-rs]\nchip = \"STM32F411RETx\"\nprotocol = \"usb\"\n")
                    .replace("method = \"command\"", "method = \"probe-rs\""),
                "flash.probe-rs.protocol",
                "docs/port-manifest.md",
            ),
            (
                board("[flash.command]\nflash = [\"st-flash\", \"write\", \"{elf}\"]\n"),
                "flash.command.flash",
                "{image}",
            ),
            (
                board("[flash.command]\nflash = []\n"),
                "flash.command.flash",
                "program",
            ),
            (
                board("[flash.command]\nflash = [\"x\"]\n").replace(
                    "path = \"/dev/ttyACM0\"",
                    "usb = { vid = \"ST\", pid = \"374b\" }",
                ),
                "serial.usb.vid",
                "hex",
            ),
            (
                board("[flash.command]\nflash = [\"x\"]\n").replace(
                    "path = \"/dev/ttyACM0\"",
                    "path = \"/dev/ttyACM0\"\ntcp = \"lab:4000\"",
                ),
                "serial",
                "one way",
            ),
            (
                board("[flash.command]\nflash = [\"x\"]\n").replace(
                    "path = \"/dev/ttyACM0\"",
                    "path = \"/dev/ttyACM0\"\nparity = \"mark\"",
                ),
                "serial.parity",
                "even",
            ),
            (
                board("[flash.command]\nflash = [\"x\"]\n")
                    .replace("path = \"/dev/ttyACM0\"\n", ""),
                "serial.path",
                "serial.tcp",
            ),
            (
                format!("{GOOD}\n[[devices]]\nid = \"a\"\n"),
                "devices",
                "--devices N",
            ),
        ];
        for (text, key, fix) in cases {
            let e = load_str(key, &text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(
                e.fix.contains(fix),
                "fix for {key} should mention {fix:?}: {e}"
            );
        }
    }

    /// A board port: method "command" with `flash` (the given tables), console on a path.
    fn board(flash: &str) -> String {
        GOOD.replace("method = \"qemu\"", "method = \"command\"")
            .replace("[flash.qemu]\nmachine = \"mps2-an385\"\n", flash)
            .replace("[kernel]", "[serial]\npath = \"/dev/ttyACM0\"\n\n[kernel]")
    }

    #[test]
    fn board_manifests_load() {
        let m = load_str(
            "board",
            &board("[flash.command]\nflash = [\"st-flash\", \"write\", \"{bin}\", \"0x8000000\"]\n\n[[devices]]\nid = \"b1\"\nserial = \"/dev/ttyACM1\"\n"),
        )
        .unwrap();
        let Flash::Command(c) = &m.flash else {
            panic!("a command-flashed board: {:?}", m.flash)
        };
        assert_eq!(c.timeout_ms, 120_000);
        assert_eq!(m.devices[0].serial.as_deref(), Some("/dev/ttyACM1"));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = load_str("syntax", "[port\nname=1").unwrap_err();
        assert!(e.problem.starts_with("line 1"), "{}", e.problem);
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever a port manifest holds, loading it never panics: it is a manifest, or an
        /// error naming the file and the fix.
        #[test]
        fn fuzz_manifest(input in fqp_fuzzing::inputs(manifest_seeds(), 400)) {
            let file = Path::new("/fuzz/port.toml");
            if let Err(e) = parse(&String::from_utf8_lossy(&input), file) {
                proptest::prop_assert!(e.to_string().contains("fix:"), "{e}");
            }
        }
    }

    /// The manifests of the tree's ports.
    fn manifest_seeds() -> Vec<Vec<u8>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        [
            "reference-port",
            "port-template",
            "harness/tests/ports/selftest",
        ]
        .iter()
        .map(|p| std::fs::read(root.join(p).join("port.toml")).unwrap())
        .collect()
    }
}
