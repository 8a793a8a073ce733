//! Bringing a device up, by the port's flash method, and connecting to its console.
//!
//! - `qemu`: every start is a fresh emulator loaded with the image (flashing and reset are
//!   the same thing); the console is its pseudo-terminal.
//! - `probe-rs`: the first start writes the image through the debug probe and verifies it;
//!   later starts (after a test left the board in an unknown state) only reset it.
//! - `command`: the vendor's own tool, from an argument template; later starts run the
//!   `reset` template, or flash again when there is none.
//!
//! A board's console is a serial port by path, a USB serial port found by its ids, or a TCP
//! address; each board of a pool (`[[devices]]`) can name its own.

use crate::firmware::Image;
use crate::manifest::{CommandSection, DeviceEntry, Flash, Manifest, PLACEHOLDERS};
use crate::probe::ProbeError;
use crate::qemu::{EmulatorError, Qemu};
use crate::serial::{self, ConsoleError, Link, SerialLink, TcpLink, Transcript};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One device of the run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `devices[].id`, or `1`, `2`, … for emulators and a single board.
    pub id: String,
    pub entry: DeviceEntry,
}

/// The devices a run may use: `wanted` emulators, or the boards of `[[devices]]` (the first
/// `wanted` when given), or the one board the manifest describes.
pub fn specs(m: &Manifest, wanted: Option<usize>) -> Result<Vec<Spec>, DevicesError> {
    if wanted == Some(0) {
        return Err(DevicesError::None);
    }
    let numbered = |n: usize| {
        (1..=n)
            .map(|k| Spec {
                id: k.to_string(),
                entry: DeviceEntry::default(),
            })
            .collect()
    };
    if m.flash.is_emulated() {
        return Ok(numbered(wanted.unwrap_or(1)));
    }
    if m.devices.is_empty() {
        return match wanted {
            None | Some(1) => Ok(numbered(1)),
            Some(n) => Err(DevicesError::OneBoard {
                wanted: n,
                manifest: m.path.clone(),
            }),
        };
    }
    let n = wanted.unwrap_or(m.devices.len());
    if n > m.devices.len() {
        return Err(DevicesError::TooMany {
            wanted: n,
            listed: m.devices.len(),
        });
    }
    Ok(m.devices[..n]
        .iter()
        .map(|d| Spec {
            id: d.id.clone(),
            entry: d.clone(),
        })
        .collect())
}

/// `--devices` asks for devices the port does not have.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("--devices 0 leaves no device to run the tests\n  fix: ask for one device or more")]
    None,
    #[error(
        "--devices {wanted} asks for {wanted} boards, but {} describes one\n  fix: list the \
         boards as [[devices]] entries (docs/port-manifest.md)",
        .manifest.display()
    )]
    OneBoard { wanted: usize, manifest: PathBuf },
    #[error("--devices {wanted} asks for more boards than the {listed} listed in [[devices]]")]
    TooMany { wanted: usize, listed: usize },
}

/// A started device: what keeps it alive (an emulator) and its console.
pub struct Running {
    pub qemu: Option<Qemu>,
    pub link: Box<dyn Link + Send>,
}

/// Where a device writes its logs, and what it was started with.
pub struct Start<'a> {
    pub m: &'a Manifest,
    pub image: &'a Image,
    pub spec: &'a Spec,
    pub qemu_log: &'a Path,
    pub flash_log: &'a Path,
    /// An emulator's persistent storage file.
    pub storage: &'a Path,
    /// An emulated board's flash for its boot loader (`flash=<path>`), when it has one, and
    /// the power cut to make at one of its operations.
    pub boot_flash: Option<(&'a Path, Option<crate::qemu::FlashCut>)>,
    pub transcript: &'a Transcript,
    /// The image is already on the device: restart it, do not write it again.
    pub flashed: bool,
    pub progress: bool,
}

/// Starts the device and opens its console.
pub fn start(s: &Start<'_>) -> Result<Running, StartError> {
    let m = s.m;
    match &m.flash {
        Flash::Qemu(q) => {
            // With a boot loader the board starts it, and it the image in the flash.
            let kernel = s.image.boot.as_ref().map_or(&s.image.elf, |b| &b.elf);
            let qemu = Qemu::launch(q, kernel, s.qemu_log, s.storage, s.boot_flash)?;
            let path = m
                .serial
                .path
                .as_ref()
                .map_or(qemu.pty.clone(), PathBuf::from);
            let link = SerialLink::open(&path, &m.serial, s.transcript.clone())?;
            Ok(Running {
                qemu: Some(qemu),
                link: Box::new(link),
            })
        }
        Flash::ProbeRs(p) => {
            let probe = s
                .spec
                .entry
                .probe
                .as_deref()
                .or(p.probe.as_deref())
                .map(crate::probe::parse_selector)
                .transpose()?;
            let job = crate::probe::Job {
                chip: &p.chip,
                probe: probe.as_ref(),
                protocol: p.protocol,
                speed_khz: p.speed_khz,
                connect_under_reset: p.connect_under_reset,
            };
            if s.flashed {
                crate::probe::reset(&job)?;
            } else {
                crate::probe::flash(&job, &s.image.elf, p.verify, s.progress)?;
            }
            Ok(console(s)?)
        }
        Flash::Command(c) => {
            let argv = match (&c.reset, s.flashed) {
                (Some(reset), true) => reset,
                _ => &c.flash,
            };
            run_command(s, c, argv)?;
            Ok(console(s)?)
        }
    }
}

/// The board's console: its own (`[[devices]]`), or the manifest's.
fn console(s: &Start<'_>) -> Result<Running, ConsoleError> {
    let (m, e) = (s.m, &s.spec.entry);
    let within = Duration::from_millis(m.timeouts.boot_ms);
    let link: Box<dyn Link + Send> = if let Some(addr) = e.tcp.as_ref().or(m.serial.tcp.as_ref()) {
        Box::new(TcpLink::connect(addr, within, s.transcript.clone())?)
    } else {
        let path = serial_path(m, &s.spec.entry)?;
        Box::new(SerialLink::open(
            Path::new(&path),
            &m.serial,
            s.transcript.clone(),
        )?)
    };
    Ok(Running { qemu: None, link })
}

/// The local serial port of a board, when its console is one (by path or found by USB ids).
fn serial_path(m: &Manifest, e: &DeviceEntry) -> Result<String, ConsoleError> {
    if let Some(p) = e.serial.as_ref().or(m.serial.path.as_ref()) {
        return Ok(m.relative(p).display().to_string());
    }
    match &m.serial.usb {
        Some(usb) => serial::find_usb_port(usb, e.usb_serial.as_deref(), &serial::list_ports()),
        None => Err(ConsoleError::NotConfigured),
    }
}

/// Fills the placeholders of one argument.
fn fill(arg: &str, values: &[(&str, String)]) -> String {
    let mut out = arg.to_string();
    for (name, value) in values {
        out = out.replace(name, value);
    }
    out
}

/// The values of the placeholders in a flash or reset command, for this device.
fn placeholder_values(
    s: &Start<'_>,
    argv: &[String],
) -> Result<Vec<(&'static str, String)>, FlashCommandError> {
    let uses = |p: &str| argv.iter().any(|a| a.contains(p));
    let bin = if uses("{bin}") {
        let path = s.image.elf.with_extension("bin");
        crate::firmware::write_raw_binary(&s.image.elf, &path)?;
        path.display().to_string()
    } else {
        String::new()
    };
    let serial = if uses("{serial}") {
        serial_path(s.m, &s.spec.entry).unwrap_or_default()
    } else {
        String::new()
    };
    let port_dir = s.m.path.parent().unwrap_or(Path::new("."));
    Ok(PLACEHOLDERS
        .iter()
        .map(|(name, _)| {
            let v = match *name {
                "{image}" => s.image.elf.display().to_string(),
                "{bin}" => bin.clone(),
                "{device}" => s.spec.id.clone(),
                "{probe}" => s.spec.entry.probe.clone().unwrap_or_default(),
                "{serial}" => serial.clone(),
                _ => port_dir.display().to_string(),
            };
            (*name, v)
        })
        .collect())
}

/// Runs the port's flash (or reset) command `argv` for this device, its output appended to
/// the flash log, within `flash.command.timeout_ms`.
fn run_command(
    s: &Start<'_>,
    c: &CommandSection,
    argv: &[String],
) -> Result<(), FlashCommandError> {
    let values = placeholder_values(s, argv)?;
    let args: Vec<String> = argv.iter().map(|a| fill(a, &values)).collect();
    let shown = args.join(" ");
    let log_error = |source| FlashCommandError::Log {
        path: s.flash_log.to_path_buf(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.flash_log)
        .map_err(log_error)?;
    {
        use std::io::Write;
        let mut l = &log;
        let _ = writeln!(l, "$ {shown}");
    }
    let port_dir = s.m.path.parent().unwrap_or(Path::new("."));
    let child = Command::new(&args[0])
        .args(&args[1..])
        .current_dir(port_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(log_error)?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|source| FlashCommandError::Spawn {
            shown: shown.clone(),
            manifest: s.m.path.clone(),
            program: args[0].clone(),
            source,
        })?;
    // Killed if the run is interrupted.
    let mut child = fqp_process::Guarded::new(child);
    let end = Instant::now() + Duration::from_millis(c.timeout_ms);
    let status = loop {
        if let Some(st) = child.try_wait() {
            break st;
        }
        if Instant::now() >= end {
            child.kill();
            return Err(FlashCommandError::TimedOut {
                shown,
                ms: c.timeout_ms,
                log: s.flash_log.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut text = String::new();
        let _ = std::fs::File::open(s.flash_log).and_then(|mut f| f.read_to_string(&mut text));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(FlashCommandError::Failed {
            shown,
            status,
            log: s.flash_log.to_path_buf(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// A device could not be brought up: flashed, reset, started or its console opened.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Command(#[from] FlashCommandError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
}

/// The port's flash or reset command did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum FlashCommandError {
    #[error("{}: {source}\n  fix: check that this user may write --out", .path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] crate::firmware::BuildError),
    #[error(
        "cannot run the flash command `{shown}`: {source}\n  fix: check flash.command in {} (is \
         {program} installed and on PATH?)",
        .manifest.display()
    )]
    Spawn {
        shown: String,
        manifest: PathBuf,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the flash command `{shown}` did not finish within {:.1} s (flash.command.timeout_ms); \
         its output: {}",
        *.ms as f64 / 1000.0,
        .log.display()
    )]
    TimedOut {
        shown: String,
        ms: u64,
        log: PathBuf,
    },
    #[error("the flash command `{shown}` failed ({status}); its output ({}):\n{tail}", .log.display())]
    Failed {
        shown: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_everywhere_in_an_argument() {
        let v = vec![
            ("{image}", "/a/fw.elf".to_string()),
            ("{device}", "b2".to_string()),
        ];
        assert_eq!(fill("--file={image}@{device}", &v), "--file=/a/fw.elf@b2");
        assert_eq!(fill("plain", &v), "plain");
    }
}
