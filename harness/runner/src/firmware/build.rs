//! The build itself: cargo in the port's crate for its target, watched and logged, and the
//! image copied out for the run; the raw binary some flash tools take.

use super::{Image, Toolchain};
use crate::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What one cargo build makes: the crate, and how.
pub(super) struct Crate<'a> {
    pub dir: &'a Path,
    pub bin: Option<&'a str>,
    pub features: &'a [String],
    pub env: &'a [(&'a str, String)],
}

/// `cargo build` of `krate` for the port's target and profile, into `target_dir`, with the
/// toolchain `tc` (and its build-std flags); the command and the cargo it runs.
fn cargo_build(
    m: &Manifest,
    tc: &Toolchain,
    krate: &Crate<'_>,
    target_dir: &Path,
) -> (Command, PathBuf) {
    let (cargo, rustc) = match tc {
        Toolchain::Installed { cargo, rustc } | Toolchain::BuildStd { cargo, rustc, .. } => {
            (cargo, rustc)
        }
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(krate.dir)
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--target",
            &m.build.target,
        ])
        .args(["--profile", &m.build.profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTC", rustc)
        // The port's name, for a device that reports the manifest's (`option_env!`).
        .env("FQP_PORT_NAME", &m.port.name)
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .envs(m.kernel_env())
        .envs(krate.env.iter().map(|(k, v)| (k, v)));
    if let Some(bin) = krate.bin {
        cmd.args(["--bin", bin]);
    }
    if !krate.features.is_empty() {
        cmd.args(["--features", &krate.features.join(",")]);
    }
    if let Toolchain::BuildStd { linker, .. } = tc {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            m.build.target.to_uppercase().replace(['-', '.'], "_")
        );
        cmd.args([
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .env(var, linker);
    }
    (cmd, cargo.clone())
}

/// What cargo's JSON messages say was built: the executable, and the kernel crate's source
/// directory (for the size analysis by module).
fn artifacts(stdout: std::process::ChildStdout) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut executable = None;
    let mut kernel_src = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            executable = Some(PathBuf::from(exe));
        }
        if msg["target"]["name"] == "fqp_kernel" {
            kernel_src = msg["target"]["src_path"]
                .as_str()
                .and_then(|p| Path::new(p).parent())
                .map(Path::to_path_buf);
        }
    }
    (executable, kernel_src)
}

/// The firmware could not be built, or its image not read.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{}: `build.crate` points to {}, which has no Cargo.toml\n  fix: set build.crate to the \
         firmware crate's directory, relative to the manifest",
        .manifest.display(),
        .dir.display()
    )]
    NoCrate { manifest: PathBuf, dir: PathBuf },
    #[error("{}: {source}\n  fix: check that this user may write --out and the port's target directory", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] fqp_reports::files::FileError),
    #[error(
        "cannot run {}: {source}\n  fix: run scripts/setup.sh; fqp doctor checks the toolchain",
        .cargo.display()
    )]
    Cargo {
        cargo: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the firmware build did not finish within {ms} ms and was stopped (timeouts.build_ms); \
         its log: {}\n  fix: look for what it waits on (a lock held by another cargo, a build \
         script), or raise timeouts.build_ms",
        .log.display()
    )]
    TimedOut { ms: u64, log: PathBuf },
    #[error(
        "the image does not fit the board's memory: {}; full log: {}\n  fix: a smaller image \
         (fewer libraries: `fqp init --libs` chose them as cargo features, the `default` of \
         the port's Cargo.toml), or, if the board has more, the sizes in memory.x",
        .over.iter().map(|(region, bytes)| format!("{region} over by {bytes} bytes"))
            .collect::<Vec<_>>().join(", "),
        .log.display()
    )]
    TooBig {
        /// Each memory region the linker could not fit, with the bytes too many.
        over: Vec<(String, u64)>,
        log: PathBuf,
    },
    #[error("firmware build failed ({status}); full log: {}\n{tail}", .log.display())]
    Failed {
        status: std::process::ExitStatus,
        log: PathBuf,
        /// The last lines cargo printed.
        tail: String,
    },
    #[error(
        "the build produced no executable; if the crate has several binaries, set build.bin in {}",
        .manifest.display()
    )]
    NoExecutable { manifest: PathBuf },
    #[error(
        "copying the image {} to {}: {source}\n  fix: check that this user may write --out",
        .from.display(),
        .to.display()
    )]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: the image holds nothing to load (no vector table, no code)\n  fix: the link \
         script did not apply: check that the port's build.rs calls \
         fqp_port_build::link_scripts() and that memory.x describes the board's flash and RAM",
        .0.display()
    )]
    Empty(PathBuf),
    #[error(
        "{}: the vector table at {at:#x} (the image's lowest address) gives the reset handler \
         {reset:#x}, which is not Thumb code in the image\n  fix: check memory.x (the FLASH \
         origin is where the core fetches its vector table) and that nothing is placed before \
         the vector table",
        .elf.display()
    )]
    Vectors { elf: PathBuf, at: u64, reset: u64 },
    #[error(
        "{}: the image holds {found} code, but the target {target} is {expected}: a core of \
         that kind cannot run it\n  fix: something linked in was built for another core (a C \
         library or object file, or a `-C target-cpu` / `target-feature` in RUSTFLAGS or \
         .cargo/config.toml); build it for {target}",
        .elf.display()
    )]
    Arch {
        elf: PathBuf,
        target: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error(
        "{}: not a 32-bit ELF image: {why}\n  fix: build.bin must name the firmware binary, \
         built for a 32-bit target",
        .elf.display()
    )]
    NotElf { elf: PathBuf, why: String },
    #[error(
        "{}: loadable segments span {mib} MiB (flash and RAM addresses mixed?); use {{image}} \
         instead of {{bin}}",
        .elf.display()
    )]
    Spread { elf: PathBuf, mib: u64 },
    #[error("the boot loader's image: {problem}\n  fix: {fix}")]
    Boot { problem: String, fix: String },
}

impl BuildError {
    pub(super) fn file(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::File {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What cargo did: how it ended, and what its messages and errors said.
struct Cargo {
    status: std::process::ExitStatus,
    /// The build outlived `timeouts.build_ms` and was stopped.
    timed_out: bool,
    executable: Option<PathBuf>,
    kernel_src: Option<PathBuf>,
    stderr: String,
}

/// Builds the port's firmware into `out` (cargo's output to `build.log`, the image copied to
/// `firmware.elf`, which is what the run flashes and its results name). Returns the image.
///
/// Builds of one target directory (ports sharing it, one port with other features) take
/// turns, and each copies its image out before the next may link over cargo's copy of it: a
/// run never flashes an image another run built.
///
/// With a boot loader (`[boot]`), the boot loader is built too, trusting the code-signing key
/// of the lab in `lab`, and the image signed with it (see [`super::boot`]).
pub fn build(m: &Manifest, tc: &Toolchain, out: &Path, lab: &Path) -> Result<Image, BuildError> {
    let log = &out.join("build.log");
    let dir = m.crate_dir();
    if !dir.join("Cargo.toml").is_file() {
        return Err(BuildError::NoCrate {
            manifest: m.path.clone(),
            dir,
        });
    }
    // Each port's own target directory, unless FQP_FIRMWARE_TARGET_DIR names one its ports
    // share (the test command's many ports then build the target's core library once).
    let target_root = std::env::var_os("FQP_FIRMWARE_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| dir.join("target"), PathBuf::from);
    let target_dir = target_root.join(match m.build.variant {
        Some(v) => format!("fqp-{}-{v}", tc.kind()),
        None => format!("fqp-{}", tc.kind()),
    });
    let krate = Crate {
        dir: &dir,
        bin: m.build.bin.as_deref(),
        features: &m.build.features,
        env: &[],
    };
    tracing::info!(crate_dir = %dir.display(), toolchain = %tc.describe(), "building firmware");
    std::fs::create_dir_all(&target_dir).map_err(BuildError::file(&target_dir))?;
    // A new log for the run: the boot loader's build, if any, is appended.
    std::fs::File::create(log).map_err(BuildError::file(log))?;
    let elf = out.join("firmware.elf");
    let kernel_src = build_crate(m, tc, &krate, &target_dir, &elf, log)?;
    if m.build.target.starts_with("thumb") {
        super::image::check_vectors(&elf)?;
        super::image::check_arch(&elf, &m.build.target)?;
    }
    let size_bytes = std::fs::metadata(&elf)
        .map_err(BuildError::file(&elf))?
        .len();
    let boot = match &m.boot {
        Some(b) => Some(super::boot::prepare(m, b, tc, &target_dir, &elf, out, lab)?),
        None => None,
    };
    Ok(Image {
        sha256: file_sha256(&elf)?,
        size_bytes,
        elf,
        toolchain: tc.describe(),
        kernel_src,
        boot,
    })
}

/// Builds `krate` into `target_dir` (taking its turn with the other builds there, and
/// copying the executable to `to` before the next may link over cargo's copy of it); cargo's
/// messages are appended to `log`. The source directory of the kernel crate it was built
/// with, when it has one.
pub(super) fn build_crate(
    m: &Manifest,
    tc: &Toolchain,
    krate: &Crate<'_>,
    target_dir: &Path,
    to: &Path,
    log: &Path,
) -> Result<Option<PathBuf>, BuildError> {
    let (cmd, cargo) = cargo_build(m, tc, krate, target_dir);
    let turn =
        fqp_reports::files::lock(&target_dir.join(".fqp-build.lock")).map_err(BuildError::Lock)?;
    let built = run_cargo(cmd, &cargo, Duration::from_millis(m.timeouts.build_ms))?;
    let mut logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(BuildError::file(log))?;
    let _ = logf.write_all(built.stderr.as_bytes());
    let log = log.to_path_buf();
    if built.timed_out {
        return Err(BuildError::TimedOut {
            ms: m.timeouts.build_ms,
            log,
        });
    }
    if !built.status.success() {
        let over = regions_over(&built.stderr);
        if !over.is_empty() {
            return Err(BuildError::TooBig { over, log });
        }
        let tail: Vec<&str> = built.stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(BuildError::Failed {
            status: built.status,
            log,
            tail: tail.join("\n"),
        });
    }
    let executable = built.executable.ok_or_else(|| BuildError::NoExecutable {
        manifest: m.path.clone(),
    })?;
    std::fs::copy(&executable, to).map_err(|source| BuildError::Copy {
        from: executable.clone(),
        to: to.to_path_buf(),
        source,
    })?;
    drop(turn);
    Ok(built.kernel_src)
}

/// Runs the build `cmd` (of `cargo`), stopping it after `deadline`, and collects what it
/// said. An interrupted run kills the build too (its output ends, and the wait returns).
fn run_cargo(mut cmd: Command, cargo: &Path, deadline: Duration) -> Result<Cargo, BuildError> {
    let spawn_error = |source| BuildError::Cargo {
        cargo: cargo.to_path_buf(),
        source,
    };
    let mut child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(spawn_error(std::io::Error::other(
            "its output was not given to fqp",
        )));
    };
    // cargo leads a process group of its own: killing the group stops its compilers too.
    let guard = fqp_process::Registered::group(child.id());
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let target = guard.target();
        std::thread::spawn(move || {
            let expired = matches!(
                finished.recv_timeout(deadline),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            expired && fqp_process::kill_registered(target)
        })
    };
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let (executable, kernel_src) = artifacts(stdout);
    drop(guard);
    let status = child.wait().map_err(spawn_error)?;
    drop(done);
    Ok(Cargo {
        status,
        timed_out: watchdog.join().unwrap_or(false),
        executable,
        kernel_src,
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String, BuildError> {
    let bytes = std::fs::read(path).map_err(BuildError::file(path))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The memory regions a failed link overflowed, from the linker's messages (`section '.bss'
/// will not fit in region 'RAM': overflowed by 21184 bytes`): the largest overflow of each.
fn regions_over(log: &str) -> Vec<(String, u64)> {
    let mut over: Vec<(String, u64)> = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("will not fit in region '").nth(1) else {
            continue;
        };
        let Some((region, rest)) = rest.split_once('\'') else {
            continue;
        };
        let Some(bytes) = rest
            .split("overflowed by ")
            .nth(1)
            .and_then(|b| b.split_whitespace().next())
            .and_then(|b| b.parse::<u64>().ok())
        else {
            continue;
        };
        match over.iter_mut().find(|(r, _)| r == region) {
            Some((_, most)) => *most = (*most).max(bytes),
            None => over.push((region.to_string(), bytes)),
        }
    }
    over
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_that_overflows_names_each_region_once_with_its_largest_overflow() {
        let log = "ld.lld: error: section '.rodata' will not fit in region 'FLASH': overflowed by 45612 bytes
ld.lld: error: section '.data' will not fit in region 'FLASH': overflowed by 55396 bytes
ld.lld: error: section '.bss' will not fit in region 'RAM': overflowed by 21184 bytes
error: could not compile";
        assert_eq!(
            regions_over(log),
            [("FLASH".to_string(), 55396), ("RAM".to_string(), 21184)]
        );
        assert!(regions_over("error[E0308]: mismatched types").is_empty());
    }
}
