//! A qualification run: build the port's firmware, boot the device, run the selected tests one
//! by one (restarting the device after any test that left it in an unknown state), and write
//! the reports. Whatever goes wrong, a valid report of what happened is written.

use crate::device::{self, Running, Spec};
use crate::events::{Event, EventLog, Observers};
use crate::firmware::{self, Image};
use crate::manifest::{self, Manifest};
use crate::qemu::Qemu;
use crate::serial::{self, Link, Transcript};
use crate::session::{DeviceInfo, Listed, Session, SessionError};
use fqp_lab::Lab;
use fqp_qualification::Suites;
use fqp_reports::{
    Attempt, ErrorKind, Firmware, Partition, Port, Problem, Run, Stage, Status, Test, Verdict,
};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod lab;
mod pool;
mod publish;
#[cfg(test)]
mod tests;
mod together;
mod work;

use lab::*;
use pool::*;
pub use publish::{claim_out, conclude, publish, summary, write_reports, OutLock, ReportError};
use publish::{finish, hold_to_thresholds};
use work::*;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub port: PathBuf,
    pub out: Option<PathBuf>,
    /// Run only these groups (all when empty).
    pub groups: Vec<String>,
    /// Run only tests whose `group/name` contains one of these.
    pub tests: Vec<String>,
    /// Run only tests that need one of these capabilities (all when empty).
    pub capabilities: Vec<String>,
    /// Run only this part of the selection (1-based index, count).
    pub partition: Option<Partition>,
    /// Number of identical devices to spread the groups over: emulators, or the first N
    /// boards of `[[devices]]` (default: one emulator, or every listed board).
    pub devices: Option<usize>,
    /// How many more times a failed test, or a failed boot, is tried.
    pub retries: u32,
    /// Lab directory holding the results-signing key (see `sign::lab_dir`).
    pub lab: Option<PathBuf>,
    /// The MQTT broker of the network tests.
    pub broker: fqp_lab::Broker,
    /// The CA an external TLS broker's certificate chains to.
    pub broker_ca: Option<PathBuf>,
    /// Show the progress of what the runner does itself (a board's flashing).
    pub progress: bool,
    /// Who watches the run (the progress display; the event log is added by the run).
    pub observers: Observers,
    /// Benchmark conditions (`fqp bench`): the kernel without time slicing, an emulator's
    /// idle time not following real time, no lab services; a build of its own.
    pub bench: bool,
    /// Count an emulator's instructions by function into this profile (timeouts stretched
    /// for the slower emulation).
    pub profile: Option<std::sync::Arc<crate::profile::Profile>>,
    /// Cut the (first) emulated board's power once (`fqp ota powercut`): the device is
    /// restarted as after a crash.
    pub power_cut: Option<PowerCut>,
}

/// A power cut `fqp ota powercut` makes on the first emulated board of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerCut {
    /// This long after its first test starts (QEMU killed).
    After(Duration),
    /// At an operation on its boot loader's flash, counted from the run's start (the board's
    /// first boot): the emulator stops before it or half way through it.
    AtFlashOp(crate::qemu::FlashCut),
}

/// Where the reports of a run go.
pub fn out_dir(opts: &Options, port_name: &str) -> PathBuf {
    let name = if opts.bench {
        format!("{port_name}-bench")
    } else {
        port_name.to_string()
    };
    opts.out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(name))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn empty_run(port: Port) -> Run {
    let mut run = Run::new(env!("CARGO_PKG_VERSION"), port, &now_rfc3339());
    run.suites = Some(Suites::builtin().reference());
    run
}

/// A finished run: its results, where its reports are, and whether they could be written.
pub struct Finished {
    pub run: Run,
    pub out: PathBuf,
    /// The reports could not be written (or signed): the run cannot be relied on.
    pub report_error: Option<ReportError>,
}

impl Finished {
    /// The process's exit status (see `fqp --help`).
    pub fn exit_code(&self) -> u8 {
        // An interruption says so, whatever else failed with it.
        if self.report_error.is_some() && self.run.verdict != Verdict::Interrupted {
            fqp_reports::EXIT_INFRASTRUCTURE
        } else {
            self.run.exit_code()
        }
    }
}

/// What the options select, as results record it: none when every test was asked for.
fn selection_of(opts: &Options) -> Option<fqp_reports::Selection> {
    let s = fqp_reports::Selection {
        groups: opts.groups.clone(),
        tests: opts.tests.clone(),
        capabilities: opts.capabilities.clone(),
    };
    (s != fqp_reports::Selection::default()).then_some(s)
}

/// The options select none of the device's tests.
#[derive(Debug, thiserror::Error)]
#[error(
    "no test matches the selection (groups {groups:?}, tests {tests:?}, capabilities \
     {capabilities:?}); the device has groups: {available}"
)]
pub struct SelectionError {
    pub groups: Vec<String>,
    pub tests: Vec<String>,
    pub capabilities: Vec<String>,
    /// The device's groups.
    pub available: String,
}

/// The tests the options select, in listing order: groups and patterns first, then the
/// partition (every `count`-th selected test, so that parts are balanced and each is stable
/// for a given image and selection).
fn select(listed: Vec<Listed>, opts: &Options) -> Result<Vec<Listed>, SelectionError> {
    let suites = Suites::builtin();
    let chosen: Vec<Listed> = listed
        .iter()
        .filter(|t| {
            let needs = suites.requirements(&t.id);
            opts.capabilities.is_empty() || opts.capabilities.iter().any(|c| needs.contains(c))
        })
        .filter(|t| {
            let group = t.id.split('/').next().unwrap_or("");
            (opts.groups.is_empty() || opts.groups.iter().any(|g| g == group))
                && (opts.tests.is_empty() || opts.tests.iter().any(|p| t.id.contains(p.as_str())))
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        let mut groups: Vec<&str> = listed
            .iter()
            .map(|t| t.id.split('/').next().unwrap_or(""))
            .collect();
        groups.dedup();
        return Err(SelectionError {
            groups: opts.groups.clone(),
            tests: opts.tests.clone(),
            capabilities: opts.capabilities.clone(),
            available: groups.join(", "),
        });
    }
    Ok(match opts.partition {
        Some(p) => chosen
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % p.count == p.index - 1)
            .map(|(_, t)| t)
            .collect(),
        None => chosen,
    })
}

/// Consecutive tests of one group: the unit a pool hands to a device.
fn units(chosen: Vec<Listed>) -> VecDeque<Vec<Listed>> {
    let mut units: VecDeque<Vec<Listed>> = VecDeque::new();
    for t in chosen {
        match units.back_mut() {
            Some(u) if group_of(&u[0].id) == group_of(&t.id) => u.push(t),
            _ => units.push_back(vec![t]),
        }
    }
    units
}

fn group_of(id: &str) -> &str {
    id.split('/').next().unwrap_or("")
}

/// Runs a qualification and writes its reports.
pub fn qualify(opts: &Options) -> Finished {
    let t0 = Instant::now();
    let m = match manifest::load(&opts.port) {
        Ok(mut m) => {
            if opts.bench {
                bench_conditions(&mut m, opts);
            }
            m
        }
        Err(e) => {
            let mut run = empty_run(Port {
                name: "unknown".into(),
                board: String::new(),
                vendor: None,
                description: None,
                capabilities: Vec::new(),
                manifest: opts.port.display().to_string(),
            });
            run.problems
                .push(Problem::new(Stage::Manifest, e.to_string()));
            let out = out_dir(opts, "unknown");
            return match claim_out(&out) {
                Ok(_lock) => finish(run, &out, t0, opts),
                Err(e) => unreported(run, out, e),
            };
        }
    };
    let out = out_dir(opts, &m.port.name);
    let mut run = empty_run(Port {
        name: m.port.name.clone(),
        board: m.port.board.clone(),
        vendor: m.port.vendor.clone(),
        description: m.port.description.clone(),
        capabilities: m.capabilities.clone(),
        manifest: m.path.display().to_string(),
    });
    let _lock = match claim_out(&out) {
        Ok(l) => l,
        Err(e) => return unreported(run, out, e),
    };
    run.selection = selection_of(opts);
    if let Err(p) = check_options(&m, opts) {
        run.problems.push(p);
        return finish(run, &out, t0, opts);
    }
    let image = match build_image(
        &m,
        &out,
        &crate::sign::lab_dir(opts.lab.as_deref()),
        &mut run,
    ) {
        Ok(i) => i,
        Err(p) => {
            run.problems.push(p);
            return finish(run, &out, t0, opts);
        }
    };
    run.partition = opts.partition;
    if fqp_process::signal().is_none() {
        let opts = &with_event_log(opts, &out);
        // A harness bug, or a device value it mishandles, must not lose the run: it becomes
        // an infrastructure error in a report like any other.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_tests(&m, &image, &out, opts, &mut run)
        }));
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(p)) => run.problems.push(p),
            Err(panic) => run.problems.push(internal_error("the run", &*panic)),
        }
    }
    hold_to_thresholds(&mut run);
    finish(run, &out, t0, opts)
}

/// The conditions of the FreeRTOS baseline (shared/baselines) for `fqp bench`: no time
/// slicing, and no run-time statistics (FreeRTOS's configGENERATE_RUN_TIME_STATS is off
/// there). Idle time must not follow real time either: waking from idle a little late, as the
/// host's scheduler decides, would move the benchmarks' phase against the tick.
fn bench_conditions(m: &mut Manifest, opts: &Options) {
    for key in ["time_slicing", "run_time_stats"] {
        m.kernel.insert(key.into(), toml::Value::Boolean(false));
    }
    if let Some(q) = m.flash.qemu_mut() {
        q.icount_sleep = false;
        if let Some(p) = &opts.profile {
            q.profile = Some(p.clone());
            m.timeouts.factor *= crate::profile::SLOWDOWN;
            m.timeouts.boot_ms = (m.timeouts.boot_ms as f64 * crate::profile::SLOWDOWN) as u64;
        }
    }
    m.build.variant = Some("bench");
    let extra = std::mem::take(&mut m.build.bench_features);
    m.build.features.extend(extra);
}

/// Options that cannot apply to this port or to any port.
fn check_options(m: &Manifest, opts: &Options) -> Result<(), Problem> {
    let unknown = Suites::builtin()
        .unknown_capabilities(&opts.capabilities)
        .join(", ");
    if !unknown.is_empty() {
        return Err(Problem::new(
            Stage::Options,
            format!(
                "--capability {unknown}: no such capability\n  fix: use one of {}",
                Suites::builtin()
                    .capabilities
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if opts.profile.is_some() && !m.flash.is_emulated() {
        return Err(Problem::new(Stage::Options, format!(
            "--profile counts an emulator's instructions, and this port's devices are flashed with {:?}\n  fix: profile on an emulated board (flash.method = \"qemu\"), or leave --profile out",
            m.flash.method()
        )));
    }
    Ok(())
}

/// Builds the port's image and records it (with the kernel's share) in `run`.
fn build_image(m: &Manifest, out: &Path, lab: &Path, run: &mut Run) -> Result<Image, Problem> {
    let tc = firmware::detect(&m.build.target)
        .map_err(|e| Problem::new(Stage::Toolchain, e.to_string()))?;
    let image =
        firmware::build(m, &tc, out, lab).map_err(|e| Problem::new(Stage::Build, e.to_string()))?;
    let kernel = firmware::kernel_size(&image.elf, image.kernel_src.as_deref());
    run.firmware = Some(Firmware {
        image: image.elf.display().to_string(),
        sha256: image.sha256.clone(),
        size_bytes: image.size_bytes,
        toolchain: image.toolchain.clone(),
        version: None,
        kernel: None,
        kernel_size: kernel.as_ref().map(|k| k.sections),
        kernel_text_by_module: kernel.map(|k| k.text_by_module).unwrap_or_default(),
        boot: match &image.boot {
            Some(b) => Some(fqp_reports::BootImage {
                loader: b.elf.display().to_string(),
                loader_sha256: firmware::file_sha256(&b.elf)
                    .map_err(|e| Problem::new(Stage::Build, e.to_string()))?,
                signed_image: b.signed.display().to_string(),
                signed_sha256: firmware::file_sha256(&b.signed)
                    .map_err(|e| Problem::new(Stage::Build, e.to_string()))?,
                version: b.version.to_string(),
            }),
            None => None,
        },
    });
    Ok(image)
}

/// The options with the run's event log (`events.jsonl` in `out`) among the observers;
/// unchanged, with a warning, when the log cannot be written.
fn with_event_log(opts: &Options, out: &Path) -> Options {
    let mut opts = opts.clone();
    match EventLog::create(out) {
        Ok(log) => opts.observers = opts.observers.with(Arc::new(log)),
        Err(e) => tracing::warn!("cannot write {}: {e}", out.join(EventLog::FILE).display()),
    }
    opts
}

/// A run whose reports cannot be written where asked.
fn unreported(run: Run, out: PathBuf, why: ReportError) -> Finished {
    Finished {
        run,
        out,
        report_error: Some(why),
    }
}

/// The problem of a panic of `what` (the payload's message, when it has one).
fn internal_error(what: &str, panic: &(dyn std::any::Any + Send)) -> Problem {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    Problem::new(
        Stage::Internal,
        format!(
            "internal error: {what} panicked: {msg}\n  fix: this is a harness bug: please report it with this run's output directory"
        ),
    )
}

/// Builds the port, boots one device, and returns the selected tests of its image with their
/// descriptions, one formatted line each, and a closing summary line.
pub fn list(opts: &Options) -> Result<Vec<String>, crate::Error> {
    let m = manifest::load(&opts.port)?;
    let out = out_dir(opts, &m.port.name);
    std::fs::create_dir_all(&out).map_err(|source| crate::Error::Output {
        path: out.clone(),
        source,
    })?;
    let lab = crate::sign::lab_dir(opts.lab.as_deref());
    let image = firmware::build(&m, &firmware::detect(&m.build.target)?, &out, &lab)?;
    let Some(spec) = device::specs(&m, Some(1))?.into_iter().next() else {
        return Err(device::DevicesError::None.into());
    };
    let mut ctx = Ctx::new(&m, &image, &out, spec, false, false, LabAccess::default())?;
    let mut dev = ctx.boot_retrying(1)?;
    let listed = dev.session.list(Duration::from_secs(10));
    dev.close();
    let chosen = select(listed?, opts)?;
    let suites = Suites::builtin();
    let width = chosen.iter().map(|t| t.id.len()).max().unwrap_or(0).max(10);
    let mut lines = vec![format!(
        "{:<width$}  {:>8}  {:<22}  {:<9}  on this port",
        "test", "timeout", "requires", "qualif."
    )];
    let mut runs = 0;
    let mut groups: Vec<&str> = Vec::new();
    for t in &chosen {
        let group = group_of(&t.id);
        if groups.last() != Some(&group) {
            groups.push(group);
        }
        let missing = suites.missing(&t.id, &m.capabilities);
        if missing.is_empty() {
            runs += 1;
        }
        lines.push(format!(
            "{:<width$}  {:>6.1} s  {:<22}  {:<9}  {}",
            t.id,
            t.timeout_ms as f64 / 1000.0,
            suites.requirements(&t.id).join(", "),
            if suites.required(group) {
                "required"
            } else {
                "optional"
            },
            if missing.is_empty() {
                "runs".to_string()
            } else {
                format!("skipped: lacks {}", missing.join(", "))
            },
        ));
    }
    lines.push(format!(
        "{} tests in {} groups; {} run on {} (capabilities: {})",
        chosen.len(),
        groups.len(),
        runs,
        m.port.name,
        m.capabilities.join(", ")
    ));
    Ok(lines)
}

/// An empty run of a made-up port, for tests.
#[cfg(test)]
pub(crate) fn test_run() -> Run {
    empty_run(Port {
        name: "p".into(),
        board: "b".into(),
        vendor: None,
        description: None,
        capabilities: vec![],
        manifest: "m".into(),
    })
}
