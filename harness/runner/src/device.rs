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
use crate::qemu::Qemu;
use crate::serial::{self, Link, SerialLink, TcpLink, Transcript};
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
pub fn specs(m: &Manifest, wanted: Option<usize>) -> Result<Vec<Spec>, String> {
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
            Some(n) => Err(format!(
                "--devices {n} asks for {n} boards, but {} describes one\n  fix: list the boards as [[devices]] entries (docs/port-manifest.md)",
                m.path.display()
            )),
        };
    }
    let n = wanted.unwrap_or(m.devices.len());
    if n > m.devices.len() {
        return Err(format!(
            "--devices {n} asks for more boards than the {} listed in [[devices]]",
            m.devices.len()
        ));
    }
    Ok(m.devices[..n]
        .iter()
        .map(|d| Spec {
            id: d.id.clone(),
            entry: d.clone(),
        })
        .collect())
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
    pub transcript: &'a Transcript,
    /// The image is already on the device: restart it, do not write it again.
    pub flashed: bool,
    pub progress: bool,
}

/// Starts the device and opens its console.
pub fn start(s: &Start<'_>) -> Result<Running, String> {
    let m = s.m;
    match &m.flash {
        Flash::Qemu(q) => {
            let qemu = Qemu::launch(q, &s.image.elf, s.qemu_log, s.storage)?;
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
            console(s)
        }
        Flash::Command(c) => {
            let argv = match (&c.reset, s.flashed) {
                (Some(reset), true) => reset,
                _ => &c.flash,
            };
            run_command(s, c, argv)?;
            console(s)
        }
    }
}

/// The board's console: its own (`[[devices]]`), or the manifest's.
fn console(s: &Start<'_>) -> Result<Running, String> {
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
fn serial_path(m: &Manifest, e: &DeviceEntry) -> Result<String, String> {
    if let Some(p) = e.serial.as_ref().or(m.serial.path.as_ref()) {
        return Ok(m.relative(p).display().to_string());
    }
    match &m.serial.usb {
        Some(usb) => serial::find_usb_port(usb, e.usb_serial.as_deref(), &serial::list_ports()),
        None => Err(
            "the board has no console configured (serial.path, serial.usb or serial.tcp)".into(),
        ),
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

fn run_command(s: &Start<'_>, c: &CommandSection, argv: &[String]) -> Result<(), String> {
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
    let port_dir = s.m.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let values: Vec<(&str, String)> = PLACEHOLDERS
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
        .collect();
    let args: Vec<String> = argv.iter().map(|a| fill(a, &values)).collect();
    let shown = args.join(" ");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.flash_log)
        .map_err(|e| format!("{}: {e}", s.flash_log.display()))?;
    {
        use std::io::Write;
        let mut l = &log;
        let _ = writeln!(l, "$ {shown}");
    }
    let child = Command::new(&args[0])
        .args(&args[1..])
        .current_dir(&port_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run the flash command `{shown}`: {e}\n  fix: check flash.command in {} (is {} installed and on PATH?)",
                s.m.path.display(),
                args[0]
            )
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
            return Err(format!(
                "the flash command `{shown}` did not finish within {:.1} s (flash.command.timeout_ms); its output: {}",
                c.timeout_ms as f64 / 1000.0,
                s.flash_log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut text = String::new();
        let _ = std::fs::File::open(s.flash_log).and_then(|mut f| f.read_to_string(&mut text));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(format!(
            "the flash command `{shown}` failed ({status}); its output ({}):\n{}",
            s.flash_log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
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
