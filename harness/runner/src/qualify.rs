//! A qualification run: build the port's firmware, boot the device, run the selected tests one
//! by one (restarting the device after any test that left it in an unknown state), and write
//! the reports. Whatever goes wrong, a valid report of what happened is written.

use crate::device::{self, Running, Spec};
use crate::firmware::{self, Image};
use crate::manifest::{self, Manifest};
use crate::progress::Progress;
use crate::qemu::Qemu;
use crate::serial::{self, Link, Transcript};
use crate::session::{DeviceInfo, Listed, Session};
use fqp_lab::Lab;
use fqp_reports::{
    Attempt, ErrorKind, Firmware, Partition, Port, Problem, Run, Stage, Status, Test, Verdict,
};
use fqp_suites::Suites;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Lab directory holding the results-signing key (see `verify::lab_dir`).
    pub lab: Option<PathBuf>,
    /// The MQTT broker of the network tests.
    pub broker: fqp_lab::Broker,
    /// The CA an external TLS broker's certificate chains to.
    pub broker_ca: Option<PathBuf>,
    /// Print each test's result as it ends.
    pub progress: bool,
    /// Benchmark conditions (`fqp bench`): the kernel without time slicing, an emulator's
    /// idle time not following real time, no lab services; a build of its own.
    pub bench: bool,
    /// Count an emulator's instructions by function into this profile (timeouts stretched
    /// for the slower emulation).
    pub profile: Option<std::sync::Arc<crate::profile::Profile>>,
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

/// A booted device with a synced session.
struct Device {
    /// The emulator, when the device is one: dropping it ends it.
    qemu: Option<Qemu>,
    session: Session<Box<dyn Link + Send>>,
    info: DeviceInfo,
}

impl Device {
    /// Ends the session and lets an emulator exit (boards keep running).
    fn close(mut self) {
        self.session.exit(0);
        if let Some(q) = self.qemu.take() {
            let status = q.finish(Duration::from_secs(3));
            tracing::debug!(?status, "QEMU ended");
        }
    }
}

/// One device of the run (the only one, or one of a pool) and its logs.
struct Ctx<'a> {
    m: &'a Manifest,
    image: &'a Image,
    spec: Spec,
    /// `serial.log`/`qemu.log`/`flash.log`, or `serial-ID.log`… in a pool.
    serial_log: PathBuf,
    qemu_log: PathBuf,
    flash_log: PathBuf,
    /// An emulator's persistent storage (`storage.bin`, `storage-ID.bin`): kept across the
    /// boots of a run, like a board's flash; new each run.
    storage: PathBuf,
    transcript: Transcript,
    boots: u32,
    /// The image is on the device (boards are flashed once, then only reset).
    flashed: bool,
    progress: bool,
    /// Settings provisioned after every boot, and the lab actions tests may ask for.
    lab: LabAccess<'a>,
}

/// What a device's tests get of the lab.
#[derive(Clone, Default)]
struct LabAccess<'a> {
    settings: &'a [(String, String)],
    actions: Option<crate::session::Actions>,
}

impl<'a> Ctx<'a> {
    fn new(
        m: &'a Manifest,
        image: &'a Image,
        out: &Path,
        spec: Spec,
        pool: bool,
        progress: bool,
        lab: LabAccess<'a>,
    ) -> Result<Self, String> {
        let suffix = if pool {
            format!("-{}", spec.id)
        } else {
            String::new()
        };
        let serial_log = out.join(format!("serial{suffix}.log"));
        let qemu_log = out.join(format!("qemu{suffix}.log"));
        let flash_log = out.join(format!("flash{suffix}.log"));
        let storage = out.join(format!("storage{suffix}.bin"));
        for l in [&serial_log, &qemu_log, &flash_log, &storage] {
            let _ = std::fs::remove_file(l);
        }
        let transcript = serial::transcript(&serial_log)
            .map_err(|e| format!("cannot write the serial transcript: {e}"))?;
        Ok(Ctx {
            m,
            image,
            spec,
            serial_log,
            qemu_log,
            flash_log,
            storage,
            transcript,
            boots: 0,
            flashed: false,
            progress,
            lab,
        })
    }

    fn boot(&mut self) -> Result<Device, String> {
        if let Some(signal) = fqp_process::signal() {
            return Err(format!("the run was interrupted ({signal})"));
        }
        self.boots += 1;
        serial::mark(&self.transcript, &format!("boot {}", self.boots));
        let Running { qemu, link } = device::start(&device::Start {
            m: self.m,
            image: self.image,
            spec: &self.spec,
            qemu_log: &self.qemu_log,
            flash_log: &self.flash_log,
            storage: &self.storage,
            transcript: &self.transcript,
            flashed: self.flashed,
            progress: self.progress,
        })?;
        self.flashed = true;
        let mut session = Session::new(link);
        let info = session.sync(Duration::from_millis(self.m.timeouts.boot_ms))?;
        for (key, value) in self.lab.settings {
            session.set(key, value.as_bytes(), Duration::from_secs(2))?;
        }
        session.actions = self.lab.actions.clone();
        tracing::debug!(device = %self.spec.id, port = %info.port, fw = %info.fw, tests = info.tests, boot = self.boots, "device synced");
        Ok(Device {
            qemu,
            session,
            info,
        })
    }
}

impl Ctx<'_> {
    /// Boots, trying up to `1 + retries` times (an emulator or a board can fail to come up
    /// for reasons outside the port: a busy host, a USB hiccup).
    fn boot_retrying(&mut self, retries: u32) -> Result<Device, String> {
        let mut attempt = 1;
        loop {
            match self.boot() {
                Ok(d) => return Ok(d),
                Err(e) if attempt > retries || fqp_process::signal().is_some() => {
                    return Err(if attempt > 1 {
                        format!("{e} (the device failed to start {attempt} times in a row)")
                    } else {
                        e
                    })
                }
                Err(e) => {
                    tracing::warn!(attempt, "the device did not start, trying again: {e}");
                    serial::mark(&self.transcript, &format!("boot failed: {e}"));
                    attempt += 1;
                }
            }
        }
    }
}

/// One result from the attempts at a test: the last attempt's, with the earlier ones kept,
/// except that a pass after failures is `Flaky`.
fn combine(mut attempts: Vec<Test>) -> Test {
    let mut last = attempts.pop().expect("at least one attempt");
    last.retried = attempts.into_iter().map(Attempt::of).collect();
    if last.status == Status::Passed {
        if let Some(first) = last.retried.first() {
            last.status = Status::Flaky;
            last.message = Some(format!(
                "passed on attempt {} after: {}",
                last.attempts(),
                first.describe()
            ));
        }
    }
    last
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
    pub report_error: Option<String>,
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

/// The reports a run writes: removed when a run starts, so that reports in an output
/// directory are always those of its latest run (or of none, if it died unreported).
const REPORTS: [&str; 7] = [
    "firmware.elf",
    "results.json",
    "results.json.sig",
    "junit.xml",
    "report.html",
    "summary.md",
    "profile.txt",
];

/// An output directory held by this run: another run into it is refused while this lives.
pub struct OutLock {
    _file: std::fs::File,
}

/// Creates `out`, takes it for this run (refused while another run holds it) and removes the
/// reports of the previous run there.
pub fn claim_out(out: &Path) -> Result<OutLock, String> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(out).map_err(|e| {
        format!(
            "cannot create the output directory {}: {e}\n  fix: give --out a directory this user can write",
            out.display()
        )
    })?;
    let path = out.join(".fqp.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(format!(
                "another fqp run ({}) is writing its reports to {}\n  fix: wait for it to end, or give this run another --out",
                match holder.trim() {
                    "" => "process unknown".to_string(),
                    pid => format!("process {pid}"),
                },
                out.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", path.display()))
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    for name in REPORTS {
        match std::fs::remove_file(out.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "cannot remove the previous run's {} in {}: {e}",
                    name,
                    out.display()
                ))
            }
        }
    }
    Ok(OutLock { _file: file })
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

/// The tests the options select, in listing order: groups and patterns first, then the
/// partition (every `count`-th selected test, so that parts are balanced and each is stable
/// for a given image and selection).
fn select(listed: Vec<Listed>, opts: &Options) -> Result<Vec<Listed>, String> {
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
        return Err(format!(
            "no test matches the selection (groups {:?}, tests {:?}, capabilities {:?}); the device has groups: {}",
            opts.groups,
            opts.tests,
            opts.capabilities,
            groups.join(", ")
        ));
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
        Ok(mut m) if opts.bench => {
            // The conditions of the FreeRTOS baseline (shared/baselines): no time slicing, and
            // no run-time statistics (FreeRTOS's configGENERATE_RUN_TIME_STATS is off there).
            // Idle time must not follow real time either: waking from idle a little late, as
            // the host's scheduler decides, would move the benchmarks' phase against the tick.
            for key in ["time_slicing", "run_time_stats"] {
                m.kernel.insert(key.into(), toml::Value::Boolean(false));
            }
            if let Some(q) = m.flash.qemu_mut() {
                q.icount_sleep = false;
                if let Some(p) = &opts.profile {
                    q.profile = Some(p.clone());
                    m.timeouts.factor *= crate::profile::SLOWDOWN;
                    m.timeouts.boot_ms =
                        (m.timeouts.boot_ms as f64 * crate::profile::SLOWDOWN) as u64;
                }
            }
            m.build.variant = Some("bench");
            let extra = std::mem::take(&mut m.build.bench_features);
            m.build.features.extend(extra);
            m
        }
        Ok(m) => m,
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
    let unknown = Suites::builtin()
        .unknown_capabilities(&opts.capabilities)
        .join(", ");
    if !unknown.is_empty() {
        run.problems.push(Problem::new(
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
        return finish(run, &out, t0, opts);
    }
    if opts.profile.is_some() && !m.flash.is_emulated() {
        run.problems.push(Problem::new(Stage::Options, format!(
            "--profile counts an emulator's instructions, and this port's devices are flashed with {:?}\n  fix: profile on an emulated board (flash.method = \"qemu\"), or leave --profile out",
            m.flash.method()
        )));
        return finish(run, &out, t0, opts);
    }
    let built = firmware::detect(&m.build.target)
        .map_err(|e| Problem::new(Stage::Toolchain, e))
        .and_then(|tc| firmware::build(&m, &tc, &out).map_err(|e| Problem::new(Stage::Build, e)));
    let image = match built {
        Ok(i) => i,
        Err(p) => {
            run.problems.push(p);
            return finish(run, &out, t0, opts);
        }
    };
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
    });
    run.partition = opts.partition;
    if fqp_process::signal().is_none() {
        // A harness bug, or a device value it mishandles, must not lose the run: it becomes
        // an infrastructure error in a report like any other.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_tests(&m, &image, &out, opts, &mut run)
        }));
        if let Err(panic) = ran {
            run.problems.push(internal_error("the run", &*panic));
        }
    }
    hold_to_thresholds(&mut run);
    finish(run, &out, t0, opts)
}

/// A run whose reports cannot be written where asked.
fn unreported(run: Run, out: PathBuf, why: String) -> Finished {
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
pub fn list(opts: &Options) -> Result<Vec<String>, String> {
    let m = manifest::load(&opts.port).map_err(|e| e.to_string())?;
    let out = out_dir(opts, &m.port.name);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let image = firmware::detect(&m.build.target).and_then(|tc| firmware::build(&m, &tc, &out))?;
    let spec = device::specs(&m, Some(1))?.remove(0);
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

/// What one device did: its results and the problems outside the tests.
#[derive(Default)]
struct Work {
    tests: Vec<(String, Test)>,
    errors: Vec<Problem>,
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

/// Fails the tests that passed on the device but missed a threshold on one of their figures
/// (`min`/`max`/`min_relative` in test-suites/suites.toml; relative floors against the group's
/// control figure of this run).
fn hold_to_thresholds(run: &mut Run) {
    let suites = Suites::builtin();
    for g in &mut run.groups {
        // The group's control figure, from this run, if its control test passed.
        let control = suites.control(&g.name).and_then(|c| {
            let id = format!("{}/{c}", g.name);
            let t = g
                .tests
                .iter()
                .find(|t| t.id == id && t.status == Status::Passed)?;
            t.metrics.iter().find(|m| m.name == c).map(|m| m.value)
        });
        for t in g.tests.iter_mut().filter(|t| t.status == Status::Passed) {
            if let Some(why) = suites.missed_threshold(&t.id, &t.metrics, control) {
                t.status = Status::Failed;
                t.message = Some(why);
            }
        }
    }
}

/// The lab of a run: its private directory (keys; removed when dropped), its PKI (also
/// written to `<out>/pki`: certificates only), and its services, unless the run is a
/// benchmark or the port names no address for this machine. The lab lives until the run ends
/// (a broker process with it).
fn start_lab(m: &Manifest, out: &Path, opts: &Options, ids: &[String]) -> Result<RunLab, Problem> {
    let lab_problem = |e: String| Problem::new(Stage::Lab, e);
    let lab_dir = crate::verify::lab_dir(opts.lab.as_deref());
    let private = fqp_lab::PrivateRunDir::new(&lab_dir)
        .map_err(|e| lab_problem(format!("the lab directory: {e}")))?;
    let pki_dir = private.path();
    let pki = fqp_lab::Pki::make(
        &m.lab_host().unwrap_or_else(|| "10.0.2.2".into()),
        ids,
        Some(&lab_dir),
    )
    .and_then(|p| p.write_with_keys(pki_dir).map(|_| p))
    .and_then(|p| p.write_certificates(&out.join("pki")).map(|_| p))
    .map_err(|e| lab_problem(e.to_string()))?;
    let lab = match m.lab_host().filter(|_| !opts.bench) {
        Some(host) => Some(Arc::new(
            Lab::start(
                &host,
                m.flash.is_emulated(),
                &opts.broker,
                opts.broker_ca.as_deref(),
                out,
                &pki,
                pki_dir,
            )
            .map_err(|e| lab_problem(e.to_string()))?,
        )),
        None => None,
    };
    Ok(RunLab {
        _private: private,
        pki: Arc::new(pki),
        lab,
    })
}

/// What [`start_lab`] started, kept for the run.
struct RunLab {
    /// Removed (with the keys in it) when the run ends.
    _private: fqp_lab::PrivateRunDir,
    pki: Arc<fqp_lab::Pki>,
    lab: Option<Arc<Lab>>,
}

/// What every device is given after boot: the lab's settings, fresh entropy (a board may
/// have no entropy source of its own; an emulated one certainly has none), the time (for
/// certificate validity) and the root CA.
fn device_settings(lab: Option<&Lab>, pki: &fqp_lab::Pki, bench: bool) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut settings: Vec<(String, String)> = lab.map_or_else(Vec::new, |l| l.settings.clone());
    settings.push(("entropy".into(), fqp_lab::entropy_hex()));
    if !bench {
        // The performance group's reporting period: Thread-Metric's second is for `fqp bench`
        // (the baseline's conditions); thresholds are per second of the port's own figures,
        // which a quarter of a second measures as well.
        settings.push(("perf_period_ms".into(), QUALIFY_PERF_PERIOD_MS.to_string()));
    }
    settings.push((
        "time".into(),
        time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
    ));
    settings.push(("root_ca".into(), hex::encode(&pki.root_der)));
    settings.push((
        "root_ca_sha256".into(),
        hex::encode(sha2::Sha256::digest(&pki.root_der)),
    ));
    settings
}

/// What the tests may ask of the host (`ASK action=…`): signatures checked, certificates
/// issued for keys made on the device, and the lab services' own actions.
fn lab_actions(lab: Option<Arc<Lab>>, pki: Arc<fqp_lab::Pki>) -> crate::session::Actions {
    Arc::new(
        move |action: &str, fields: &[(String, String)]| match action {
            "verify-signature" => fqp_lab::verify_signature(fields)
                .map(|()| vec![])
                .map_err(|e| e.to_string()),
            "issue-certificate" => {
                fqp_lab::issue_certificate(&pki, fields).map_err(|e| e.to_string())
            }
            other => match &lab {
                Some(l) => l
                    .act(other, fields)
                    .map(|()| vec![])
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "no lab services for {other}: set network.host in port.toml"
                )),
            },
        },
    )
}

fn run_tests(m: &Manifest, image: &Image, out: &Path, opts: &Options, run: &mut Run) {
    let mut specs = match device::specs(m, opts.devices) {
        Ok(s) => s.into_iter(),
        Err(e) => return run.problems.push(Problem::new(Stage::Options, e)),
    };
    let pool = specs.len() > 1;
    let ids: Vec<String> = specs.clone().map(|s| s.id).collect();
    let run_lab = match start_lab(m, out, opts, &ids) {
        Ok(l) => l,
        Err(p) => return run.problems.push(p),
    };
    let settings = device_settings(run_lab.lab.as_deref(), &run_lab.pki, opts.bench);
    let actions = lab_actions(run_lab.lab.clone(), run_lab.pki.clone());
    let access = LabAccess {
        settings: &settings[..],
        actions: Some(actions),
    };
    let first_spec = specs.next().expect("at least one device");
    let mut first = match Ctx::new(
        m,
        image,
        out,
        first_spec,
        pool,
        opts.progress,
        access.clone(),
    ) {
        Ok(c) => c,
        Err(e) => return run.problems.push(Problem::new(Stage::Console, e)),
    };
    let mut dev = match first.boot_retrying(opts.retries) {
        Ok(d) => d,
        Err(e) => return run.problems.push(Problem::new(Stage::Boot, e)),
    };
    if let Some(fw) = run.firmware.as_mut() {
        fw.version = Some(dev.info.fw.clone());
        fw.kernel = Some(dev.info.kernel.clone());
    }
    if let Some(e) = dev.info.lacking(&m.capabilities) {
        return run.problems.push(Problem::new(Stage::Manifest, e));
    }
    let chosen = match dev
        .session
        .list(Duration::from_secs(10))
        .map_err(|e| Problem::new(Stage::Console, e))
        .and_then(|l| select(l, opts).map_err(|e| Problem::new(Stage::Options, e)))
    {
        Ok(c) => c,
        Err(p) => return run.problems.push(p),
    };
    let progress = Progress::new(opts.progress, chosen.len());
    // Tests needing a capability the port does not declare are reported, not run.
    let suites = Suites::builtin();
    let caps = &m.capabilities;
    let (chosen, lacking): (Vec<Listed>, Vec<Listed>) = chosen
        .into_iter()
        .partition(|t| suites.missing(&t.id, caps).is_empty());
    for l in lacking {
        let mut t = Test::new(&l.id, Status::Skipped);
        t.index = Some(l.index);
        t.message = Some(format!(
            "needs capability {}, which the port does not declare (`capabilities` in port.toml)",
            suites.missing(&l.id, caps).join(", ")
        ));
        progress.result(&t);
        run.push(group_of(&l.id), t);
    }
    let all = chosen.clone();
    let queue = Mutex::new(units(chosen));
    let done: Vec<Work> = std::thread::scope(|scope| {
        let (queue, progress) = (&queue, &progress);
        let mut names = vec![first.spec.id.clone()];
        let mut handles =
            vec![scope.spawn(move || work(&mut first, Some(dev), queue, opts, progress))];
        for spec in specs {
            let access = access.clone();
            names.push(spec.id.clone());
            handles.push(scope.spawn(move || {
                let id = spec.id.clone();
                match Ctx::new(m, image, out, spec, pool, opts.progress, access) {
                    Ok(mut ctx) => work(&mut ctx, None, queue, opts, progress),
                    Err(e) => Work {
                        errors: vec![Problem::new(Stage::Console, format!("device {id}: {e}"))],
                        ..Work::default()
                    },
                }
            }));
        }
        // A worker that panicked loses nothing silently: the panic is an infrastructure
        // error, and the tests it held are reported as not run below.
        handles
            .into_iter()
            .zip(names)
            .map(|(h, name)| {
                h.join().unwrap_or_else(|panic| Work {
                    errors: vec![internal_error(
                        &format!("the worker of device {name}"),
                        &*panic,
                    )],
                    ..Work::default()
                })
            })
            .collect()
    });
    progress.finish();
    for w in done {
        run.problems.extend(w.errors);
        for (group, t) in w.tests {
            run.push(&group, t);
        }
    }
    // Units no device could take (every device was lost, or the run was interrupted), and
    // tests a panicked worker held: reported, never silently missing.
    let mut left: Vec<Listed> = queue
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let held: Vec<Listed> = all
        .into_iter()
        .filter(|l| {
            !run.groups
                .iter()
                .flat_map(|g| &g.tests)
                .any(|t| t.id == l.id)
        })
        .filter(|l| !left.iter().any(|x| x.id == l.id))
        .collect();
    left.extend(held);
    for l in left {
        let t = match fqp_process::signal() {
            Some(signal) => interrupted_test(&l, signal),
            None => {
                let mut t = Test::new(&l.id, Status::Error);
                t.index = Some(l.index);
                t.error_kind = Some(ErrorKind::DeviceLost);
                t.message =
                    Some("not run: no device was left to run it (see the run's problems)".into());
                t
            }
        };
        run.push(group_of(&l.id), t);
    }
    run.sort();
}

/// Names the function and source line a fault's program counter is at (from the image's
/// debug information), in the test's details, location and message.
fn decode_fault(t: &mut Test, elf: &Path) {
    if t.error_kind != Some(ErrorKind::Fault) {
        return;
    }
    let Some(pc) = t
        .details
        .get("pc")
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    else {
        return;
    };
    let Some(at) = firmware::locate(elf, pc) else {
        return;
    };
    let mut place = Vec::new();
    if let Some(f) = at.function {
        place.push(format!("in {f}"));
        t.details.insert("function".into(), f);
    }
    if let Some(s) = at.source {
        place.push(format!("at {s}"));
        t.details.insert("source".into(), s.clone());
        t.location.get_or_insert(s);
    }
    if let Some(m) = t.message.as_mut() {
        m.push_str(&format!(", {}", place.join(" ")));
    }
}

/// The performance group's reporting period in a qualification (see `fqp_suite_perf`).
const QUALIFY_PERF_PERIOD_MS: u32 = 250;

/// Times an emulator may be killed from outside before a device is given up.
const MAX_OUTSIDE_KILLS: u32 = 3;

/// The result of a test the interruption stopped or kept from running.
fn interrupted_test(l: &Listed, signal: &str) -> Test {
    let mut t = Test::new(&l.id, Status::Skipped);
    t.index = Some(l.index);
    t.message = Some(format!(
        "not run to its end: the run was interrupted ({signal})"
    ));
    t
}

/// One device's loop: take a group, run its tests (restarting the device when a test leaves
/// it in an unknown state, retrying failed tests), until the queue is empty or the device
/// cannot be brought back.
fn work(
    ctx: &mut Ctx<'_>,
    booted: Option<Device>,
    queue: &Mutex<VecDeque<Vec<Listed>>>,
    opts: &Options,
    progress: &Progress,
) -> Work {
    let line = progress.device(&ctx.spec.id);
    let mut w = Work::default();
    let t = &ctx.m.timeouts;
    let mut device = booted;
    let log = ctx.serial_log.display().to_string();
    // Outcomes on the current boot, to check against the device's own count at the end.
    let mut this_boot = [0u64; 3];
    let mut outside_kills = 0;
    // The guard lives only inside the closure: the queue is not held while tests run.
    'units: while let Some(unit) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
        for (n, test) in unit.iter().enumerate() {
            // Fault injection for the harness's own tests (debug builds only): a worker that
            // panics must not lose the run.
            #[cfg(debug_assertions)]
            if std::env::var_os("FQP_TEST_PANIC_IN_WORKER").is_some() {
                panic!("FQP_TEST_PANIC_IN_WORKER is set");
            }
            if let Some(signal) = fqp_process::signal() {
                // Report the rest of this group; the queue's are reported by the caller.
                for l in &unit[n..] {
                    w.tests
                        .push((group_of(&l.id).to_string(), interrupted_test(l, signal)));
                }
                break 'units;
            }
            let timeout =
                Duration::from_millis((test.timeout_ms as f64 * t.factor) as u64 + t.grace_ms);
            let mut attempts = Vec::new();
            loop {
                if device.is_none() {
                    line.set(format!("starting (boot {})", ctx.boots + 1));
                }
                let d = match device.as_mut() {
                    Some(d) => d,
                    None => match ctx.boot_retrying(opts.retries) {
                        Ok(d) => {
                            this_boot = [0; 3];
                            device.insert(d)
                        }
                        Err(e) => {
                            if fqp_process::signal().is_none() {
                                w.errors.push(Problem::new(
                                    Stage::Boot,
                                    format!("the device could not be (re)started ({log}): {e}"),
                                ));
                            }
                            // Keep what this test did so far; give the rest of the group back:
                            // another device may run it.
                            let rest = if attempts.is_empty() { n } else { n + 1 };
                            if !attempts.is_empty() {
                                let t = combine(attempts);
                                w.tests.push((group_of(&test.id).to_string(), t));
                            }
                            if let Ok(mut q) = queue.lock() {
                                q.push_front(unit[rest..].to_vec());
                            }
                            break 'units;
                        }
                    },
                };
                line.set(match attempts.len() {
                    0 => test.id.clone(),
                    k => format!("{} (attempt {})", test.id, k + 1),
                });
                let mut outcome = d.session.run(&test.id, timeout);
                outcome.test.index = Some(test.index);
                decode_fault(&mut outcome.test, &ctx.image.elf);
                if let Some(signal) = fqp_process::signal() {
                    // The interruption ended the test (its device was killed), not the port.
                    if outcome.test.status != Status::Passed {
                        outcome.test = interrupted_test(test, signal);
                    }
                    attempts.push(outcome.test);
                    device = None;
                    break;
                }
                let outside = match (outcome.restart, d.qemu.as_mut()) {
                    (true, Some(q)) => q.killed_from_outside(),
                    _ => None,
                };
                if let Some(sig) = outside {
                    // Not the port's doing: run the test again on a fresh boot, as if it had
                    // not started, and say that the lab failed.
                    w.errors.push(Problem::new(Stage::Emulator, format!(
                        "the emulator was killed by signal {sig} from outside fqp during {} (an operator, the OOM killer, or QEMU itself crashing): the infrastructure failed, not the port; the test was run again on a fresh boot",
                        test.id
                    )));
                    serial::mark(
                        &ctx.transcript,
                        &format!("emulator killed by signal {sig} from outside"),
                    );
                    device = None;
                    outside_kills += 1;
                    if outside_kills > MAX_OUTSIDE_KILLS {
                        w.errors.push(Problem::new(Stage::Emulator, format!("the emulator was killed from outside {outside_kills} times: giving up on device {}", ctx.spec.id)));
                        if let Ok(mut q) = queue.lock() {
                            q.push_front(unit[n..].to_vec());
                        }
                        break 'units;
                    }
                    continue;
                }
                match outcome.test.status {
                    Status::Passed => this_boot[0] += 1,
                    Status::Failed => this_boot[1] += 1,
                    Status::Skipped => this_boot[2] += 1,
                    Status::Error | Status::Flaky => {}
                }
                if outcome.restart {
                    let why = format!(
                        "{} ended the device ({:?}); restarting",
                        test.id, outcome.test.error_kind
                    );
                    serial::mark(&ctx.transcript, &why);
                    device = None; // dropping kills QEMU
                }
                let again = matches!(outcome.test.status, Status::Failed | Status::Error)
                    && attempts.len() < opts.retries as usize;
                attempts.push(outcome.test);
                if !again {
                    break;
                }
                serial::mark(
                    &ctx.transcript,
                    &format!("retrying {} (attempt {})", test.id, attempts.len() + 1),
                );
            }
            let result = combine(attempts);
            progress.result(&result);
            w.tests.push((group_of(&test.id).to_string(), result));
        }
    }
    if let Some(mut d) = device {
        match d.session.summary(Duration::from_secs(2)) {
            Some(counts) if counts != this_boot => w.errors.push(Problem::new(Stage::Console, format!(
                "the device counted {counts:?} tests passed/failed/skipped on its last boot, the harness \
                 {this_boot:?}: protocol lines were lost; see {log}"
            ))),
            Some(_) => {}
            None => w.errors.push(Problem::new(Stage::Console, format!("the device did not answer SUMMARY at the end of the run; see {log}"))),
        }
        if d.session.corrupt_lines > 0 {
            tracing::warn!(
                corrupt = d.session.corrupt_lines,
                log,
                "damaged protocol lines were detected and ignored"
            );
        }
        d.close();
    }
    w
}

fn finish(mut run: Run, out: &Path, t0: Instant, opts: &Options) -> Finished {
    run.duration_ms = t0.elapsed().as_millis() as u64;
    if let Some(signal) = fqp_process::signal() {
        run.interrupted = Some(signal.into());
    }
    conclude(&mut run);
    let report_error = publish(&mut run, out, opts.lab.as_deref()).err();
    Finished {
        run,
        out: out.to_path_buf(),
        report_error,
    }
}

/// Sets the verdict and the qualification statement from the tests.
pub fn conclude(run: &mut Run) {
    run.verdict = run.decide();
    run.findings = run.classify();
    run.qualification = Some(Suites::builtin().qualification(run));
}

/// Writes the reports and signs `results.json`. A run whose results cannot be signed is not
/// a complete run: that becomes an infrastructure error, in reports written unsigned. Err:
/// the reports could not be written (and the run cannot be relied on).
pub fn publish(run: &mut Run, out: &Path, lab: Option<&Path>) -> Result<(), String> {
    write_reports(run, out)?;
    let results = out.join("results.json");
    if let Err(e) = crate::verify::sign_results(&results, &crate::verify::lab_dir(lab)) {
        run.problems.push(Problem::new(Stage::Signing, e));
        conclude(run);
        let _ = std::fs::remove_file(fqp_reports::sign::signature_path(&results));
        write_reports(run, out)?;
    }
    Ok(())
}

/// Writes the reports of `run` to `out`, each whole or not at all (written aside, then moved
/// into place).
pub fn write_reports(run: &Run, out: &Path) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| {
        let part = out.join(format!("{name}.part"));
        std::fs::write(&part, bytes)
            .and_then(|()| std::fs::rename(&part, out.join(name)))
            .map_err(|e| {
                let _ = std::fs::remove_file(&part);
                format!(
                    "cannot write {}: {e}\n  fix: free space there, or give --out a directory this user can write",
                    out.join(name).display()
                )
            })
    };
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write("results.json", fqp_reports::to_json(run)?.as_bytes())?;
    let mut junit = Vec::new();
    fqp_reports::write_junit(run, &mut junit)?;
    write("junit.xml", &junit)?;
    write("report.html", fqp_reports::render_html(run).as_bytes())?;
    let md = fqp_reports::render_markdown(run);
    write("summary.md", md.as_bytes())?;
    // On GitHub Actions, the summary also goes to the job's page.
    if let Some(page) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&page)
            .and_then(|mut f| f.write_all(md.as_bytes()));
        if let Err(e) = appended {
            tracing::warn!(
                "cannot append to GITHUB_STEP_SUMMARY ({}): {e}",
                page.to_string_lossy()
            );
        }
    }
    Ok(())
}

/// One-paragraph summary for the terminal.
pub fn summary(run: &Run, out: &Path) -> String {
    let s = run.summary();
    let mut text = format!(
        "{}: {} tests, {} passed, {} failed, {} errors, {} skipped{} in {:.1} s — verdict: {}\nreport: {}",
        run.port.name,
        s.total,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        if s.flaky > 0 {
            format!(", {} flaky", s.flaky)
        } else {
            String::new()
        },
        run.duration_ms as f64 / 1000.0,
        match run.verdict {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
            Verdict::InfrastructureError => "INFRASTRUCTURE ERROR",
            Verdict::Interrupted => "INTERRUPTED",
        },
        out.join("report.html").display()
    );
    for p in &run.problems {
        text.push_str(&format!(
            "\n{} problem ({}): {}",
            p.stage.category().as_str(),
            p.stage.as_str(),
            p.message
        ));
    }
    if let Some(q) = &run.qualification {
        let caps = q.capabilities.join(", ");
        if q.qualified {
            text.push_str(&format!("\nQUALIFIED for capabilities [{caps}]"));
        } else {
            text.push_str(&format!("\nNOT QUALIFIED for capabilities [{caps}]:"));
            for r in &q.reasons {
                text.push_str(&format!("\n  - {r}"));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passed_test_under_its_threshold_fails() {
        let mut run = test_run();
        for (id, value) in [
            ("perf/basic_processing", 3000.0),
            ("perf/cooperative_scheduling", 1.0),
            ("perf/message_processing", 1e9),
        ] {
            let mut t = Test::new(id, Status::Passed);
            t.metrics.push(fqp_reports::Metric {
                name: id.trim_start_matches("perf/").into(),
                value,
                unit: "/s".into(),
            });
            run.push("perf", t);
        }
        hold_to_thresholds(&mut run);
        let tests = &run.groups[0].tests;
        assert_eq!(tests[0].status, Status::Passed);
        assert_eq!(tests[1].status, Status::Failed);
        assert!(
            tests[1]
                .message
                .as_deref()
                .unwrap()
                .contains("below the threshold"),
            "{:?}",
            tests[1].message
        );
        assert_eq!(tests[2].status, Status::Passed);
    }

    fn listed(ids: &[&str]) -> Vec<Listed> {
        ids.iter()
            .enumerate()
            .map(|(index, id)| Listed {
                id: id.to_string(),
                index,
                timeout_ms: 1,
            })
            .collect()
    }

    fn ids(l: &[Listed]) -> Vec<&str> {
        l.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn partitions_cover_the_selection_exactly_once() {
        let all = listed(&["a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "c/2"]);
        let mut seen = Vec::new();
        for index in 1..=3 {
            let o = Options {
                partition: Some(Partition { index, count: 3 }),
                ..Default::default()
            };
            let part = select(all.clone(), &o).unwrap();
            assert!(
                part.len() >= 2 && part.len() <= 3,
                "balanced: {:?}",
                ids(&part)
            );
            seen.extend(part.into_iter().map(|t| t.index));
        }
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        // More parts than tests: some parts are empty, which is not an error.
        let o = Options {
            partition: Some(Partition { index: 9, count: 9 }),
            ..Default::default()
        };
        assert!(select(all, &o).unwrap().is_empty());
    }

    fn attempt(status: Status, msg: &str) -> Test {
        let mut t = Test::new("g/t", status);
        t.message = Some(msg.into());
        if status == Status::Failed {
            t.location = Some("src/g.rs:7".into());
        }
        if status == Status::Error {
            t.error_kind = Some(ErrorKind::Timeout);
        }
        t
    }

    #[test]
    fn a_pass_after_failures_is_flaky_and_keeps_the_failures() {
        let t = combine(vec![
            attempt(Status::Failed, "off by one"),
            attempt(Status::Error, "no result"),
            attempt(Status::Passed, ""),
        ]);
        assert_eq!(t.status, Status::Flaky);
        assert_eq!(t.attempts(), 3);
        assert_eq!(
            t.message.as_deref(),
            Some("passed on attempt 3 after: failed: off by one (src/g.rs:7)")
        );
        assert_eq!(t.retried[1].describe(), "error [timeout]: no result");
        // Failing every time is a failure with the last attempt's message.
        let t = combine(vec![
            attempt(Status::Failed, "first"),
            attempt(Status::Failed, "second"),
        ]);
        assert_eq!((t.status, t.attempts()), (Status::Failed, 2));
        assert_eq!(t.message.as_deref(), Some("second"));
        // A single pass is a pass.
        let t = combine(vec![attempt(Status::Passed, "")]);
        assert_eq!((t.status, t.attempts()), (Status::Passed, 1));
    }

    #[test]
    fn units_are_whole_groups_in_order() {
        let u = units(listed(&["a/1", "a/2", "b/1", "c/1", "c/2"]));
        let shapes: Vec<Vec<&str>> = u.iter().map(|g| ids(g)).collect();
        assert_eq!(
            shapes,
            [vec!["a/1", "a/2"], vec!["b/1"], vec!["c/1", "c/2"]]
        );
    }

    #[test]
    fn selection_by_group_and_pattern() {
        let all = listed(&["queue/a", "queue/b", "sem/a", "mutex/inherit"]);
        let o = Options {
            groups: vec!["queue".into()],
            ..Default::default()
        };
        assert_eq!(select(all.clone(), &o).unwrap().len(), 2);
        let o = Options {
            tests: vec!["/a".into()],
            ..Default::default()
        };
        assert_eq!(select(all.clone(), &o).unwrap().len(), 2);
        let o = Options {
            groups: vec!["sem".into()],
            tests: vec!["inherit".into()],
            ..Default::default()
        };
        let e = select(all, &o).unwrap_err();
        assert!(e.contains("queue, sem, mutex"), "{e}");
    }
}
