//! The devices of a run: booting them, the lab they are given, and the work loop that takes
//! tests from the shared queue, retries, reboots after a fault and records what happened.

use super::*;

/// A booted device with a synced session.
pub(super) struct Device {
    /// The emulator, when the device is one: dropping it ends it.
    qemu: Option<Qemu>,
    pub(super) session: Session<Box<dyn Link + Send>>,
    info: DeviceInfo,
}

impl Device {
    /// Ends the session and lets an emulator exit (boards keep running).
    pub(super) fn close(mut self) {
        self.session.exit(0);
        if let Some(q) = self.qemu.take() {
            let status = q.finish(Duration::from_secs(3));
            tracing::debug!(?status, "QEMU ended");
        }
    }
}

/// One device of the run (the only one, or one of a pool) and its logs.
pub(super) struct Ctx<'a> {
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
pub(super) struct LabAccess<'a> {
    settings: &'a [(String, String)],
    actions: Option<crate::session::Actions>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        m: &'a Manifest,
        image: &'a Image,
        out: &Path,
        spec: Spec,
        pool: bool,
        progress: bool,
        lab: LabAccess<'a>,
    ) -> Result<Self, crate::Error> {
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
        let transcript =
            serial::transcript(&serial_log).map_err(|source| crate::Error::Output {
                path: serial_log.clone(),
                source,
            })?;
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

    fn boot(&mut self) -> Result<Device, crate::Error> {
        if let Some(signal) = fqp_process::signal() {
            return Err(crate::Error::Interrupted(signal));
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
    pub(super) fn boot_retrying(&mut self, retries: u32) -> Result<Device, crate::Error> {
        let mut attempt = 1;
        loop {
            match self.boot() {
                Ok(d) => return Ok(d),
                Err(e) if attempt > retries || fqp_process::signal().is_some() => {
                    return Err(if attempt > 1 {
                        crate::Error::Retried {
                            last: Box::new(e),
                            attempts: attempt,
                        }
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
pub(super) fn combine(mut attempts: Vec<Test>) -> Test {
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

/// What one device did: its results and the problems outside the tests.
#[derive(Default)]
pub(super) struct Work {
    tests: Vec<(String, Test)>,
    errors: Vec<Problem>,
}

/// The lab of a run: its private directory (keys; removed when dropped), its PKI (also
/// written to `<out>/pki`: certificates only), and its services, unless the run is a
/// benchmark or the port names no address for this machine. The lab lives until the run ends
/// (a broker process with it).
pub(super) fn start_lab(
    m: &Manifest,
    out: &Path,
    opts: &Options,
    ids: &[String],
) -> Result<RunLab, Problem> {
    let lab_problem = |e: String| Problem::new(Stage::Lab, e);
    let lab_dir = crate::sign::lab_dir(opts.lab.as_deref());
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
pub(super) struct RunLab {
    /// Removed (with the keys in it) when the run ends.
    _private: fqp_lab::PrivateRunDir,
    pki: Arc<fqp_lab::Pki>,
    lab: Option<Arc<Lab>>,
}

/// What every device is given after boot: the lab's settings, fresh entropy (a board may
/// have no entropy source of its own; an emulated one certainly has none), the time (for
/// certificate validity) and the root CA.
pub(super) fn device_settings(
    lab: Option<&Lab>,
    pki: &fqp_lab::Pki,
    bench: bool,
) -> Vec<(String, String)> {
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
pub(super) fn lab_actions(
    lab: Option<Arc<Lab>>,
    pki: Arc<fqp_lab::Pki>,
) -> crate::session::Actions {
    Arc::new(
        move |action: &str, fields: &[(String, String)]| match action {
            "verify-signature" => fqp_lab::verify_signature(fields).map(|()| vec![]),
            "issue-certificate" => fqp_lab::issue_certificate(&pki, fields),
            other => match &lab {
                Some(l) => l.act(other, fields).map(|()| vec![]),
                None => Err(fqp_lab::LabError::NoServices(other.to_string())),
            },
        },
    )
}

pub(super) fn run_tests(m: &Manifest, image: &Image, out: &Path, opts: &Options, run: &mut Run) {
    let mut specs = match device::specs(m, opts.devices) {
        Ok(s) => s.into_iter(),
        Err(e) => {
            return run
                .problems
                .push(Problem::new(Stage::Options, e.to_string()))
        }
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
        Err(e) => {
            return run
                .problems
                .push(Problem::new(Stage::Console, e.to_string()))
        }
    };
    let mut dev = match first.boot_retrying(opts.retries) {
        Ok(d) => d,
        Err(e) => return run.problems.push(Problem::new(Stage::Boot, e.to_string())),
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
        .map_err(|e| Problem::new(Stage::Console, e.to_string()))
        .and_then(|l| select(l, opts).map_err(|e| Problem::new(Stage::Options, e.to_string())))
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
pub(super) fn decode_fault(t: &mut Test, elf: &Path) {
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
pub(super) const QUALIFY_PERF_PERIOD_MS: u32 = 250;

/// Times an emulator may be killed from outside before a device is given up.
pub(super) const MAX_OUTSIDE_KILLS: u32 = 3;

/// The result of a test the interruption stopped or kept from running.
pub(super) fn interrupted_test(l: &Listed, signal: &str) -> Test {
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
pub(super) fn work(
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
