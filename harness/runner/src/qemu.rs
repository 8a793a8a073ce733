//! The emulated device: a QEMU process whose console UART is a pseudo-terminal, opened by the
//! harness exactly like a board's USB serial port. "Flashing" is loading the image at launch;
//! a reset is a fresh launch.

use crate::manifest::QemuSection;
use fqp_process::Guarded;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// The emulator could not be started, or did not offer its console.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("{}: {source}\n  fix: check that the directory exists and this user may write it (--out)", .path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} not found\n  fix: run scripts/setup.sh, or apt-get install qemu-system-arm")]
    NotFound(String),
    #[error("cannot start {binary}: {source}\n  fix: run `{binary} --version` to see why; scripts/setup.sh installs QEMU")]
    Start {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "QEMU did not open its console pseudo-terminal ({status}); its output ({}):\n{tail}",
        .log.display()
    )]
    NoPty {
        status: String,
        log: PathBuf,
        tail: String,
    },
}

/// A power cut at an operation on an emulated board's flash file: the board's firmware
/// counts the operations (erased sectors, program calls) in `<flash>.ops` and stops the
/// emulator at operation `op` (1 is the run's first), before it starts or (`torn`) half way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashCut {
    pub op: u32,
    pub torn: bool,
}

/// The operation counter of the flash file at `flash` (kept by the board's firmware).
pub fn flash_ops_path(flash: &Path) -> PathBuf {
    let mut p = flash.as_os_str().to_owned();
    p.push(".ops");
    PathBuf::from(p)
}

/// The flash operations counted so far on `flash` (none when it has no counter or it cannot
/// be read).
pub fn flash_ops(flash: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(flash_ops_path(flash)).ok()?;
    match text.trim() {
        "" => Some(0),
        t => t.parse().ok(),
    }
}

/// A running QEMU.
pub struct Qemu {
    /// Killed if the run is interrupted, and when dropped.
    child: Guarded,
    /// The console's pseudo-terminal.
    pub pty: PathBuf,
    /// The thread counting a profiled run's instructions, done when QEMU has exited.
    profiler: Option<std::thread::JoinHandle<()>>,
    /// QEMU was killed by fqp (not from outside).
    killed: bool,
    /// Its power was cut on purpose ([`Qemu::cut_power_after`]).
    cut: Arc<AtomicBool>,
}

/// The installed QEMU's `major.minor`, asked once.
fn qemu_version(binary: &str) -> Option<(u32, u32)> {
    static VERSION: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new(binary).arg("--version").output().ok()?;
        crate::profile::parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
    })
}

impl Qemu {
    /// Starts QEMU with `image`, its monitor output going to `log`, and waits for the console
    /// pseudo-terminal to be announced. The firmware's semihosting command line carries
    /// `storage=<path>`: a host file a port may keep persistent data in (the emulated board
    /// has no flash that outlives QEMU); and `flash=<path>`, the boot loader's flash, when
    /// the board has one, with `flashcut=…` when a power cut at one of its operations is
    /// asked for (`fqp ota powercut --every-op`).
    pub fn launch(
        cfg: &QemuSection,
        image: &Path,
        log: &Path,
        storage: &Path,
        flash: Option<(&Path, Option<FlashCut>)>,
    ) -> Result<Qemu, EmulatorError> {
        let mut cmd = command(cfg, image, storage, flash);
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| EmulatorError::Log {
                path: log.to_path_buf(),
                source,
            })?;
        let log_copy = || {
            logf.try_clone().map_err(|source| EmulatorError::Log {
                path: log.to_path_buf(),
                source,
            })
        };
        let stderr = match cfg.profile {
            Some(_) => Stdio::piped(),
            None => Stdio::from(log_copy()?),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => EmulatorError::NotFound(cfg.binary.clone()),
                _ => EmulatorError::Start {
                    binary: cfg.binary.clone(),
                    source,
                },
            })?;
        let (stderr, stdout) = (child.stderr.take(), child.stdout.take());
        let mut child = Guarded::new(child);
        let profiler = match (&cfg.profile, stderr) {
            (Some(profile), Some(stderr)) => {
                let (profile, rest) = (profile.clone(), log_copy()?);
                Some(std::thread::spawn(move || {
                    profile.feed(BufReader::with_capacity(1 << 20, stderr), rest)
                }))
            }
            _ => None,
        };
        let Some(stdout) = stdout else {
            return Err(EmulatorError::NoPty {
                status: "its standard output was not given to fqp".into(),
                log: log.to_path_buf(),
                tail: String::new(),
            });
        };
        let rx = announced_pty(stdout, logf);
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(pty) => {
                tracing::debug!(pty = %pty.display(), pid = child.id(), "QEMU started");
                Ok(Qemu {
                    child,
                    pty,
                    profiler,
                    killed: false,
                    cut: Arc::default(),
                })
            }
            Err(_) => {
                let status = child.kill();
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                Err(EmulatorError::NoPty {
                    status: status.map_or("still running".into(), |s| s.to_string()),
                    log: log.to_path_buf(),
                    tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                })
            }
        }
    }

    /// Cuts the board's power `after` from now, unless QEMU has ended by then: QEMU killed
    /// at once (SIGKILL), in the middle of whatever the board was doing — its flash file
    /// left as the last completed write left it (`fqp ota powercut`). `then` runs just
    /// after the cut.
    pub fn cut_power_after(&self, after: Duration, then: impl FnOnce() + Send + 'static) {
        let Some(target) = self.child.target() else {
            return;
        };
        let cut = self.cut.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            cut.store(true, Ordering::SeqCst);
            if fqp_process::kill_registered(target) {
                then();
            }
        });
    }

    /// The exit status, if QEMU has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }

    /// The signal that ended QEMU, if something other than fqp killed it (an operator, the
    /// kernel's OOM killer, a crash of QEMU itself): the infrastructure failed, not the port.
    pub fn killed_from_outside(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        if self.killed || self.cut.load(Ordering::SeqCst) || fqp_process::signal().is_some() {
            return None;
        }
        // The console closes as QEMU dies: give the process a moment to be reapable.
        let end = std::time::Instant::now() + Duration::from_millis(500);
        loop {
            if let Some(status) = self.exited() {
                return status.signal();
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills QEMU and reaps it.
    fn kill(&mut self) -> Option<ExitStatus> {
        self.killed = true;
        self.child.kill()
    }

    /// Waits up to `d` for QEMU to end by itself, then kills it. Returns its status.
    pub fn finish(mut self, d: Duration) -> Option<ExitStatus> {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
        // QEMU is gone: its error stream has ended, and the count is complete.
        if let Some(t) = self.profiler.take() {
            let _ = t.join();
        }
    }
}

/// QEMU's command line for `cfg`: the machine, the console on a pseudo-terminal, semihosting
/// with the firmware's arguments (`storage=<path>` and `flash=<path>` among them), icount,
/// the image.
fn command(
    cfg: &QemuSection,
    image: &Path,
    storage: &Path,
    flash: Option<(&Path, Option<FlashCut>)>,
) -> Command {
    let mut semihosting = String::from("enable=on,target=native,arg=fw");
    let storage = format!("storage={}", storage.display());
    let (flash, cut) = match flash {
        Some((f, cut)) => (
            Some(format!("flash={}", f.display())),
            cut.map(|c| format!("flashcut={}{}", c.op, if c.torn { "/torn" } else { "" })),
        ),
        None => (None, None),
    };
    for a in cfg
        .semihosting_args
        .iter()
        .chain([&storage])
        .chain(&flash)
        .chain(&cut)
    {
        semihosting.push_str(",arg=");
        // QEMU's option syntax: a comma inside a value is written twice.
        semihosting.push_str(&a.replace(',', ",,"));
    }
    let mut cmd = Command::new(&cfg.binary);
    cmd.args([
        "-M",
        &cfg.machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "pty",
    ])
    .args(["-semihosting-config", &semihosting]);
    if let Some(shift) = cfg.icount_shift {
        let sleep = if cfg.icount_sleep { "on" } else { "off" };
        cmd.args(["-icount", &format!("shift={shift},align=off,sleep={sleep}")]);
    }
    cmd.arg("-kernel").arg(image).args(&cfg.extra_args);
    if cfg.profile.is_some() {
        cmd.args(crate::profile::qemu_args(qemu_version(&cfg.binary)));
    }
    cmd
}

/// Drains QEMU's standard output into `log` (on a thread of its own, for as long as QEMU
/// runs); the pseudo-terminal QEMU announces there arrives on the channel returned.
fn announced_pty(stdout: ChildStdout, log: std::fs::File) -> mpsc::Receiver<PathBuf> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut log = log;
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if let Some(pos) = line.find("/dev/pts/") {
                let path: String = line[pos..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(PathBuf::from(path));
                }
            }
        }
    });
    rx
}
