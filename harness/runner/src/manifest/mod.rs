//! The port manifest (`port.toml`): how to build a port's firmware, how to put it on the
//! device, where its console is, and what it can do. Reference: `docs/port-manifest.md`.
//!
//! Every mistake is reported with the file, the key and what to write instead; unknown keys
//! are errors (a typo must not silently fall back to a default).

mod check;
mod flash;
#[cfg(test)]
mod tests;

pub use check::{load, parse, ManifestError};
pub use flash::{CommandSection, Flash, ProbeRsSection, RawFlash, WireProtocol, PLACEHOLDERS};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// The board's boot loader, which starts the image from its flash (`[boot]`).
    #[serde(default)]
    pub boot: Option<BootSection>,
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

/// The boot loader (`[boot]`): built with the image, which is then signed with the lab's
/// code-signing key and written into the primary slot of the board's flash; the board starts
/// the boot loader, which checks and starts the image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSection {
    /// The boot loader's crate, relative to the manifest.
    #[serde(rename = "crate")]
    pub crate_dir: PathBuf,
    /// The image's version, major.minor.patch (default: the firmware crate's version).
    #[serde(default)]
    pub version: Option<String>,
    /// The boot loader's flash (status, scratch, two slots), as the emulator's host file
    /// holds it: its size.
    #[serde(default = "flash_bytes")]
    pub flash_bytes: u32,
    /// Its erase sector.
    #[serde(default = "sector_bytes")]
    pub sector_bytes: u32,
}

fn flash_bytes() -> u32 {
    2 * 1024 * 1024
}

fn sector_bytes() -> u32 {
    4096
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

fn release() -> String {
    "release".into()
}

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
