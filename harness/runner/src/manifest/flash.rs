//! `[flash]`: how the image reaches the device, as written and as checked.

use super::check::Invalid;
use super::QemuSection;
use serde::Deserialize;

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
    pub(super) fn check(self) -> Result<Flash, Invalid> {
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

/// `flash.probe-rs.protocol` names no protocol.
#[derive(Debug, thiserror::Error)]
#[error("`flash.probe-rs.protocol` is {0:?}, which is not a protocol: use \"swd\" or \"jtag\"")]
pub struct UnknownProtocol(String);

impl TryFrom<String> for WireProtocol {
    type Error = UnknownProtocol;

    fn try_from(s: String) -> Result<Self, UnknownProtocol> {
        match s.as_str() {
            "swd" => Ok(WireProtocol::Swd),
            "jtag" => Ok(WireProtocol::Jtag),
            _ => Err(UnknownProtocol(s)),
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
