//! Reading a manifest: parse, then check every key, each mistake named with its key and fix.

use super::{Flash, Manifest, RawFlash, SerialSection, KERNEL_KEYS, PLACEHOLDERS};
use std::fmt;
use std::path::{Path, PathBuf};

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

/// A mistake: the key, the problem, the fix.
pub(crate) type Invalid = (&'static str, String, &'static str);

fn validate(m: &Manifest) -> Result<(), Invalid> {
    check_port_name(&m.port.name)?;
    check_flash(&m.flash)?;
    check_serial(&m.serial)?;
    check_devices(m)?;
    check_kernel(m)?;
    check_fpu(m)?;
    check_boot(m)?;
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
    check_cargo_target(m)
}

/// The target of a plain `cargo build` in the port (its `.cargo/config.toml`), when it names
/// one, is the manifest's: a port built for one target by fqp and another by its vendor is
/// two ports. (A manifest elsewhere that builds the crate for another core, `build.crate`
/// pointing to it, is a port of its own and may choose its target.)
fn check_cargo_target(m: &Manifest) -> Result<(), Invalid> {
    let dir = m.crate_dir();
    let beside = m.path.parent().and_then(|d| d.canonicalize().ok());
    if beside.as_deref() != Some(dir.as_path()) {
        return Ok(());
    }
    let config = dir.join(".cargo/config.toml");
    let Ok(text) = std::fs::read_to_string(&config) else {
        return Ok(());
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(()); // cargo itself says what is wrong with it
    };
    let named = table
        .get("build")
        .and_then(|b| b.get("target"))
        .and_then(toml::Value::as_str);
    match named {
        Some(t) if t != m.build.target => Err((
            "build.target",
            format!(
                "{:?} here, but {} says [build] target = {t:?}",
                m.build.target,
                config.display()
            ),
            "write the same target triple in both: fqp builds for port.toml's, a plain `cargo \
             build` in the port for .cargo/config.toml's",
        )),
        _ => Ok(()),
    }
}

fn check_port_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "port.name",
            format!("{name:?} is not a valid port name"),
            "use letters, digits, `-` and `_` only",
        ));
    }
    Ok(())
}

/// The method's own settings (that it has its table is [`RawFlash::check`]'s).
fn check_flash(flash: &Flash) -> Result<(), Invalid> {
    match flash {
        Flash::Qemu(q) => {
            if q.icount_shift.is_some_and(|s| s > 10) {
                return Err((
                    "flash.qemu.icount_shift",
                    "must be 0..=10".into(),
                    "5 matches the performance baselines (32 ns per instruction)",
                ));
            }
        }
        Flash::ProbeRs(p) => {
            if let Some(sel) = &p.probe {
                crate::probe::parse_selector(sel).map_err(|e| {
                    (
                        "flash.probe-rs.probe",
                        e.to_string(),
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
    Ok(())
}

/// How many ways `[serial]` names the console (path, usb, tcp).
fn console_ways(s: &SerialSection) -> usize {
    [s.path.is_some(), s.usb.is_some(), s.tcp.is_some()]
        .iter()
        .filter(|c| **c)
        .count()
}

fn check_serial(s: &SerialSection) -> Result<(), Invalid> {
    if let Some(u) = &s.usb {
        for (key, v) in [("serial.usb.vid", &u.vid), ("serial.usb.pid", &u.pid)] {
            if u16::from_str_radix(v, 16).is_err() {
                return Err((key, format!("{v:?} is not a hex USB id"), "write four hex digits, e.g. \"0483\" (`fqp devices` lists the ports with their ids)"));
            }
        }
    }
    if console_ways(s) > 1 {
        return Err((
            "serial",
            "more than one of path, usb and tcp".into(),
            "name the console one way: path, usb or tcp",
        ));
    }
    match serial_options_error(s) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The pool of boards, and a console for each board.
fn check_devices(m: &Manifest) -> Result<(), Invalid> {
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
    let console_each = !m.devices.is_empty()
        && m.devices
            .iter()
            .all(|d| d.serial.is_some() || d.tcp.is_some());
    if !m.flash.is_emulated() && console_ways(&m.serial) == 0 && !console_each {
        return Err((
            "serial.path",
            "no console for the board".into(),
            "set serial.path (e.g. \"/dev/ttyACM0\"), serial.usb (vid/pid, found among the USB ports) or serial.tcp (\"host:port\")",
        ));
    }
    Ok(())
}

/// A hard-float target (`…eabihf`) puts the FPU's registers in every task's context: the
/// port declares `fpu` (and the fpu group qualifies it), and only such a port does. (The
/// device says the same at sync, for targets named otherwise.)
fn check_fpu(m: &Manifest) -> Result<(), Invalid> {
    let hard = m.build.target.ends_with("eabihf");
    let declared = m.capabilities.iter().any(|c| c == "fpu");
    match (hard, declared) {
        (true, false) => Err((
            "capabilities",
            format!(
                "{:?} is a hard-float target (the FPU's registers are in use), but capability \
                 \"fpu\" is not declared",
                m.build.target
            ),
            "add \"fpu\" to capabilities: the fpu group then checks that every task keeps its FP \
             registers",
        )),
        (false, true) => Err((
            "capabilities",
            format!(
                "capability \"fpu\" is declared, but {:?} is a soft-float target",
                m.build.target
            ),
            "build for the core's hard-float target (e.g. \"thumbv7em-none-eabihf\" for a \
             Cortex-M4F or M7), or leave \"fpu\" out of capabilities",
        )),
        _ => Ok(()),
    }
}

fn check_boot(m: &Manifest) -> Result<(), Invalid> {
    let Some(b) = &m.boot else {
        return Ok(());
    };
    if !m.flash.is_emulated() {
        return Err((
            "boot",
            format!(
                "fqp puts a boot loader and a signed image on emulated boards only so far, and                  this port's devices are flashed with {:?}",
                m.flash.method()
            ),
            "leave [boot] out: flash the boot loader and the signed image (`fqp ota sign`) to              the board yourself, as your production line does",
        ));
    }
    if let Some(v) = &b.version {
        if fqp_signing::Version::parse(v).is_none() {
            return Err((
                "boot.version",
                format!("{v:?} is not major.minor.patch"),
                "write the image's version as e.g. \"1.0.0\" (major and minor 0-255, patch \
                 0-65535)",
            ));
        }
    }
    let layout = fqp_boot::Layout::of(
        b.flash_bytes,
        b.sector_bytes,
        crate::firmware::BOOT_FLASH_WRITE,
        fqp_boot::Area {
            offset: 0,
            len: b.flash_bytes,
        },
    );
    if layout.is_none() || !b.flash_bytes.is_multiple_of(b.sector_bytes) {
        return Err((
            "boot.flash_bytes",
            format!(
                "{} bytes in sectors of {} leave no room for the status area (2 sectors), the                  scratch sector and two slots",
                b.flash_bytes, b.sector_bytes
            ),
            "give a whole number of sectors, at least 5, enough for two images",
        ));
    }
    Ok(())
}

fn check_kernel(m: &Manifest) -> Result<(), Invalid> {
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
            boot: self.boot,
            path: self.path,
        })
    }
}
