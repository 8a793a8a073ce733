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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub port: PortSection,
    pub build: BuildSection,
    #[serde(default)]
    pub kernel: BTreeMap<String, toml::Value>,
    pub flash: FlashSection,
    #[serde(default)]
    pub serial: SerialSection,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub capabilities: Vec<String>,
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
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

fn release() -> String {
    "release".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashSection {
    pub method: String,
    #[serde(default)]
    pub qemu: Option<QemuSection>,
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
    /// Arguments the firmware reads through semihosting (after the image name).
    #[serde(default)]
    pub semihosting_args: Vec<String>,
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn qemu_arm() -> String {
    "qemu-system-arm".into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SerialSection {
    /// Device path of the console; omitted with `method = "qemu"`: QEMU's pseudo-terminal.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub baud: Option<u32>,
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
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            boot_ms: boot_ms(),
            factor: one(),
            grace_ms: grace_ms(),
        }
    }
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
    let mut m: Manifest = toml::from_str(&text).map_err(|e| {
        let key = e.message().split('`').nth(1).map(str::to_string);
        let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
        ManifestError {
            file: file.clone(),
            key,
            problem: format!("line {line}, column {col}: {}", e.message()),
            fix: "see docs/port-manifest.md for every section and key".into(),
        }
    })?;
    // Absolute, so that every path derived from it (the crate, cargo's target directory)
    // means the same wherever cargo and QEMU run.
    m.path = std::path::absolute(&file).unwrap_or(file.clone());
    validate(&m).map_err(|(key, problem, fix)| err(Some(key), problem, fix))?;
    Ok(m)
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
    match m.flash.method.as_str() {
        "qemu" => {
            if m.flash.qemu.is_none() {
                return Err((
                    "flash.qemu",
                    "method \"qemu\" needs a [flash.qemu] table".into(),
                    "add [flash.qemu] with at least `machine = \"...\"`",
                ));
            }
        }
        other => {
            return Err((
                "flash.method",
                format!("flash method {other:?} is not supported"),
                "use \"qemu\"",
            ));
        }
    }
    if let Some(q) = &m.flash.qemu {
        if q.icount_shift.is_some_and(|s| s > 10) {
            return Err((
                "flash.qemu.icount_shift",
                "must be 0..=10".into(),
                "5 matches the performance baselines (32 ns per instruction)",
            ));
        }
    }
    if m.serial.path.is_none() && m.flash.method != "qemu" {
        return Err((
            "serial.path",
            "no console path".into(),
            "set serial.path to the board's console, e.g. \"/dev/ttyACM0\"",
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
        assert_eq!(m.flash.qemu.as_ref().unwrap().binary, "qemu-system-arm");
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
        let rel = pathdiff(&dir, &cwd);
        let m = load(&rel).unwrap();
        assert!(m.path.is_absolute(), "{}", m.path.display());
        assert_eq!(m.crate_dir(), dir.join("fw").canonicalize().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `path` relative to `base` (both absolute), with `..` as needed.
    fn pathdiff(path: &Path, base: &Path) -> PathBuf {
        let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &p[common..] {
            out.push(c);
        }
        out
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

    #[test]
    fn syntax_error_has_position() {
        let e = load_str("syntax", "[port\nname=1").unwrap_err();
        assert!(e.problem.starts_with("line 1"), "{}", e.problem);
    }
}
