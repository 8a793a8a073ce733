//! The devices of a run: booting them, the lab they are given, and the work loop that takes
//! tests from the shared queue, retries, reboots after a fault and records what happened.

use super::*;

/// A booted device with a synced session.
pub(super) struct Device {
    /// The emulator, when the device is one: dropping it ends it.
    pub(super) qemu: Option<Qemu>,
    pub(super) session: Session<Box<dyn Link + Send>>,
    pub(super) info: DeviceInfo,
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
    pub(super) m: &'a Manifest,
    pub(super) image: &'a Image,
    pub(super) spec: Spec,
    /// `serial.log`/`qemu.log`/`flash.log`, or `serial-ID.log`… in a pool.
    pub(super) serial_log: PathBuf,
    qemu_log: PathBuf,
    flash_log: PathBuf,
    /// An emulator's persistent storage (`storage.bin`, `storage-ID.bin`): kept across the
    /// boots of a run, like a board's flash; new each run.
    storage: PathBuf,
    /// The boot loader's flash of an emulated board with one (`boot-flash.bin`, …): the
    /// signed image in its primary slot at the start of the run, kept across its boots.
    boot_flash: Option<PathBuf>,
    pub(super) transcript: Transcript,
    pub(super) boots: u32,
    /// The image is on the device (boards are flashed once, then only reset).
    flashed: bool,
    /// Show a board's flashing as it goes.
    progress: bool,
    /// Settings provisioned after every boot, and the lab actions tests may ask for.
    lab: LabAccess<'a>,
    /// Cut the emulated board's power once: this long after its first test starts, or at an
    /// operation on its flash during its first boot (taken once the cut is marked).
    pub(super) power_cut: Option<super::PowerCut>,
}

/// What a device's tests get of the lab.
#[derive(Clone, Default)]
pub(super) struct LabAccess<'a> {
    settings: &'a [(String, String)],
    actions: Option<crate::session::Actions>,
    /// The lab's services, for what each device gets of its own (its thing in the cloud).
    services: Option<Arc<Lab>>,
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
        let boot_flash = match &image.boot {
            Some(boot) => {
                let path = out.join(format!("boot-flash{suffix}.bin"));
                // FQP_BOOT_FAULT=corrupt-image: a byte of the image altered in the flash, for
                // the harness's own test of a board whose boot loader refuses its image.
                let corrupt = std::env::var("FQP_BOOT_FAULT").as_deref() == Ok("corrupt-image");
                boot.write_factory_flash(&path, corrupt).map_err(|source| {
                    crate::Error::Output {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(path)
            }
            None => None,
        };
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
            boot_flash,
            transcript,
            boots: 0,
            flashed: false,
            progress,
            lab,
            power_cut: None,
        })
    }

    fn boot(&mut self) -> Result<Device, crate::Error> {
        if let Some(signal) = fqp_process::signal() {
            return Err(crate::Error::Interrupted(signal));
        }
        self.boots += 1;
        let mut cut = None;
        if let (Some(super::PowerCut::AtFlashOp(c)), Some(flash)) =
            (self.power_cut, self.boot_flash.as_deref())
        {
            if self.boots == 1 {
                cut = Some(c);
            } else {
                // The first boot's power went at that operation if the count reached it.
                if crate::qemu::flash_ops(flash).is_some_and(|n| n >= c.op) {
                    let how = if c.torn { ", torn half way" } else { "" };
                    let op = c.op;
                    serial::mark(
                        &self.transcript,
                        &format!("power cut at flash operation {op}{how}"),
                    );
                }
                self.power_cut = None;
            }
        }
        serial::mark(&self.transcript, &format!("boot {}", self.boots));
        let Running { qemu, link } = device::start(&device::Start {
            m: self.m,
            image: self.image,
            spec: &self.spec,
            qemu_log: &self.qemu_log,
            flash_log: &self.flash_log,
            storage: &self.storage,
            boot_flash: self.boot_flash.as_deref().map(|f| (f, cut)),
            transcript: &self.transcript,
            flashed: self.flashed,
            progress: self.progress,
        })?;
        self.flashed = true;
        let mut session = Session::new(link);
        let info = match session.sync(Duration::from_millis(self.m.timeouts.boot_ms)) {
            Ok(info) => info,
            Err(SessionError::AtStart { what, summary, pc }) => {
                return Err(SessionError::AtStart {
                    what,
                    summary: match pc.and_then(|pc| firmware::locate(&self.image.elf, pc)) {
                        Some(at) => format!("{summary}, {}", at.place()),
                        None => summary,
                    },
                    pc,
                }
                .into())
            }
            Err(e) if qemu.is_some() => {
                return Err(crate::Error::said_by_emulator(e, &self.qemu_log))
            }
            Err(e) => return Err(e.into()),
        };
        let own = self
            .lab
            .services
            .as_ref()
            .map(|l| l.device_settings(&self.spec.id));
        for (key, value) in self.lab.settings.iter().chain(own.iter().flatten()) {
            session.provision(key, value.as_bytes())?;
        }
        session.actions = self.lab.actions.clone();
        if let Some(flash) = &self.boot_flash {
            session.on_reboot = Some(count_flash_ops(flash, &self.transcript));
        }
        tracing::debug!(device = %self.spec.id, port = %info.port, fw = %info.fw, tests = info.tests, boot = self.boots, "device synced");
        Ok(Device {
            qemu,
            session,
            info,
        })
    }
}

/// Marks in the transcript how many operations the board's flash has seen when a test
/// reboots it and when it is back (`fqp ota powercut` finds the phases of an update so: the
/// download before the first, the boot loader's swap between the two).
fn count_flash_ops(flash: &Path, transcript: &Transcript) -> crate::session::RebootHook {
    let (flash, transcript) = (flash.to_path_buf(), transcript.clone());
    Box::new(move |step| {
        let Some(n) = crate::qemu::flash_ops(&flash) else {
            return;
        };
        let when = match step {
            crate::session::RebootStep::Asked => "the test's reboot",
            crate::session::RebootStep::Synced => "the device back",
        };
        serial::mark(&transcript, &format!("flash operations: {n} at {when}"));
    })
}

impl Ctx<'_> {
    /// Boots, trying up to `1 + retries` times (an emulator or a board can fail to come up
    /// for reasons outside the port: a busy host, a USB hiccup).
    pub(super) fn boot_retrying(&mut self, retries: u32) -> Result<Device, crate::Error> {
        let mut attempt = 1;
        loop {
            match self.boot() {
                Ok(d) => return Ok(d),
                Err(e)
                    if attempt > retries
                        || fqp_process::signal().is_some()
                        || !e.worth_retrying() =>
                {
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

/// The run's devices at work: the first one booted (its tests listed and chosen), the
/// others started by their workers; every chosen test ends with a result in `run`.
pub(super) fn run_tests(
    m: &Manifest,
    image: &Image,
    out: &Path,
    opts: &Options,
    run: &mut Run,
) -> Result<(), Problem> {
    let specs =
        device::specs(m, opts.devices).map_err(|e| Problem::new(Stage::Options, e.to_string()))?;
    let pool = specs.len() > 1;
    let ids: Vec<String> = specs.iter().map(|s| s.id.clone()).collect();
    let mut specs = specs.into_iter();
    let Some(first_spec) = specs.next() else {
        return Err(Problem::new(
            Stage::Options,
            device::DevicesError::None.to_string(),
        ));
    };
    let run_lab = start_lab(m, image, out, opts, &ids)?;
    let settings = device_settings(run_lab.lab.as_deref(), &run_lab.pki, opts.bench);
    let access = LabAccess {
        settings: &settings[..],
        actions: Some(lab_actions(run_lab.lab.clone(), run_lab.pki.clone())),
        services: run_lab.lab.clone(),
    };
    let mut first = Ctx::new(
        m,
        image,
        out,
        first_spec,
        pool,
        opts.progress,
        access.clone(),
    )
    .map_err(|e| Problem::new(Stage::Console, e.to_string()))?;
    first.power_cut = opts.power_cut;
    opts.observers.tell(&Event::Starting {
        device: &first.spec.id,
        boot: 1,
    });
    let mut dev = first
        .boot_retrying(opts.retries)
        .map_err(|e| Problem::new(e.boot_stage(), e.to_string()))?;
    if let Some(fw) = run.firmware.as_mut() {
        fw.version = Some(dev.info.fw.clone());
        fw.kernel = Some(dev.info.kernel.clone());
    }
    if let Some(e) = dev.info.lacking(&m.capabilities) {
        return Err(Problem::new(Stage::Manifest, e));
    }
    let chosen = dev
        .session
        .list(Duration::from_secs(10))
        .map_err(|e| Problem::new(Stage::Console, e.to_string()))
        .and_then(|l| select(l, opts).map_err(|e| Problem::new(Stage::Options, e.to_string())))?;
    opts.observers.tell(&Event::Planned {
        tests: chosen.len(),
        devices: ids.len(),
    });
    check_tick(&dev.info, m, opts, run);
    let chosen = skip_lacking(chosen, m, opts, run);
    let chosen = skip_blocked(chosen, &dev.info, m, opts, run);
    let suites = Suites::builtin();
    let (pooled, queued): (Vec<Listed>, Vec<Listed>) =
        chosen.iter().cloned().partition(|l| suites.pooled(&l.id));
    let queue = Mutex::new(units(queued));
    let together = together::Together::new(pooled, ids.len());
    let pool = Pool {
        m,
        image,
        out,
        opts,
        pool,
        queue: &queue,
        together: &together,
    };
    let info = dev.info.clone();
    let done = pool.work(first, dev, specs.collect(), access);
    let mut tests = Vec::new();
    let mut each: std::collections::BTreeMap<String, Vec<(String, Test)>> = Default::default();
    for w in done {
        run.problems.extend(w.errors);
        for (group, t) in w.tests {
            match together.tests.iter().any(|l| l.id == t.id) {
                true => each
                    .entry(t.id.clone())
                    .or_default()
                    .push((w.device.clone(), t)),
                false => tests.push((group, t)),
            }
        }
    }
    for results in each.into_values() {
        if let Some(t) = together::merge(results) {
            tests.push((group_of(&t.id).to_string(), t));
        }
    }
    check_clock(&info, &tests, m, opts, run);
    opts.observers.tell(&Event::Finished);
    for (group, t) in tests {
        run.push(&group, t);
    }
    report_left(chosen, queue, opts, run);
    run.sort();
    Ok(())
}

/// Reports the tests that need a capability the port does not declare (not run); the rest.
fn skip_lacking(chosen: Vec<Listed>, m: &Manifest, opts: &Options, run: &mut Run) -> Vec<Listed> {
    let suites = Suites::builtin();
    let caps = &m.capabilities;
    let (chosen, lacking): (Vec<Listed>, Vec<Listed>) = chosen
        .into_iter()
        .partition(|t| suites.missing(&t.id, caps).is_empty());
    for l in lacking {
        let why = format!(
            "needs capability {}, which the port does not declare (`capabilities` in port.toml)",
            suites.missing(&l.id, caps).join(", ")
        );
        record_unrun(opts, run, unrun(&l, Status::Skipped, why));
    }
    chosen
}

/// The result of listed test `l`, which did not run: `status`, and why.
pub(super) fn unrun(l: &Listed, status: Status, why: String) -> Test {
    let mut t = Test::new(&l.id, status);
    t.index = Some(l.index);
    t.message = Some(why);
    t
}

/// Records the result of a test no device ran (and tells the observers).
fn record_unrun(opts: &Options, run: &mut Run, t: Test) {
    opts.observers.tell(&Event::Result {
        device: None,
        test: &t,
    });
    let group = group_of(&t.id).to_string();
    run.push(&group, t);
}

/// Records a problem of the run found before the devices went to work (and tells the
/// observers).
fn record_problem(opts: &Options, run: &mut Run, problem: Problem) {
    opts.observers.tell(&Event::Problem {
        device: None,
        problem: &problem,
    });
    run.problems.push(problem);
}

/// On an emulator that counts instructions, the device's tick against that clock: a tick far
/// from `tick_hz` is reported once (the port's problem, naming the clock constant); the tests
/// still run.
fn check_tick(info: &DeviceInfo, m: &Manifest, opts: &Options, run: &mut Run) {
    let Some(shift) = m.flash.qemu().and_then(|q| q.icount_shift) else {
        return;
    };
    let tick_hz = m
        .kernel
        .get("tick_hz")
        .and_then(toml::Value::as_integer)
        .map_or(1000, |hz| hz as u32);
    if let Some(why) = info.tick_off((1u64 << shift) as f64, tick_hz) {
        record_problem(opts, run, Problem::new(Stage::Port, why));
    }
}

/// Where no emulator counts instructions, the device's clock against the host's, over the
/// tests that ran: a clock far off is reported once (the port's problem, naming the
/// constant).
fn check_clock(
    info: &DeviceInfo,
    tests: &[(String, Test)],
    m: &Manifest,
    opts: &Options,
    run: &mut Run,
) {
    if m.flash.qemu().is_some_and(|q| q.icount_shift.is_some()) {
        return;
    }
    let durations = tests
        .iter()
        .filter_map(|(_, t)| Some((t.device_us?, t.wall_ms)));
    if let Some(why) = info.clock_off(durations) {
        record_problem(opts, run, Problem::new(Stage::Port, why));
    }
}

/// When the board's test interrupts do not fire (checked by the test kit before HELLO), the
/// port is told once, naming the function and line, and the tests that need them are
/// reported as blocked rather than each failing its own way; the rest.
fn skip_blocked(
    chosen: Vec<Listed>,
    info: &DeviceInfo,
    m: &Manifest,
    opts: &Options,
    run: &mut Run,
) -> Vec<Listed> {
    let Some(why) = info.irqs_blocked() else {
        return chosen;
    };
    if !m.capabilities.iter().any(|c| c == "test-irq") {
        return chosen;
    }
    let suites = Suites::builtin();
    let (blocked, chosen): (Vec<Listed>, Vec<Listed>) = chosen
        .into_iter()
        .partition(|t| suites.requirements(&t.id).iter().any(|r| r == "test-irq"));
    record_problem(opts, run, Problem::new(Stage::Port, why));
    for l in blocked {
        let why = "blocked: the board's test interrupts do not fire (the run's port problem says \
                   which and how to fix it)";
        record_unrun(opts, run, unrun(&l, Status::Skipped, why.into()));
    }
    chosen
}

/// What every worker of a run shares.
struct Pool<'p> {
    m: &'p Manifest,
    image: &'p Image,
    out: &'p Path,
    opts: &'p Options,
    /// More than one device (their logs are named by device).
    pool: bool,
    queue: &'p Queue,
    /// The tests every device runs at once, after the queue.
    together: &'p together::Together,
}

impl Pool<'_> {
    /// One worker per device, the `first` already booted as `dev`; what each did.
    fn work(
        &self,
        mut first: Ctx<'_>,
        dev: Device,
        others: Vec<Spec>,
        access: LabAccess<'_>,
    ) -> Vec<Work> {
        let (queue, together, opts) = (self.queue, self.together, self.opts);
        std::thread::scope(|scope| {
            let mut names = vec![first.spec.id.clone()];
            let mut handles = vec![scope.spawn(move || {
                work(
                    &mut first,
                    Some(dev),
                    queue,
                    together,
                    opts,
                    &opts.observers,
                )
            })];
            for spec in others {
                let access = access.clone();
                names.push(spec.id.clone());
                handles.push(scope.spawn(move || self.worker(spec, access)));
            }
            // A worker that panicked loses nothing silently: the panic is an infrastructure
            // error, and the tests it held are reported as not run.
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
        })
    }

    /// The worker of a device that is not started yet.
    fn worker(&self, spec: Spec, access: LabAccess<'_>) -> Work {
        let id = spec.id.clone();
        match Ctx::new(
            self.m,
            self.image,
            self.out,
            spec,
            self.pool,
            self.opts.progress,
            access,
        ) {
            Ok(mut ctx) => work(
                &mut ctx,
                None,
                self.queue,
                self.together,
                self.opts,
                &self.opts.observers,
            ),
            Err(e) => {
                // Not coming to the devices' meeting: they are not to wait for it.
                drop(self.together.seat());
                Work {
                    errors: vec![Problem::new(Stage::Console, format!("device {id}: {e}"))],
                    ..Work::default()
                }
            }
        }
    }
}

/// Reports the units no device could take (every device was lost, or the run was
/// interrupted), and tests a panicked worker held: never silently missing.
fn report_left(chosen: Vec<Listed>, queue: Queue, opts: &Options, run: &mut Run) {
    let mut left: Vec<Listed> = queue
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let held: Vec<Listed> = chosen
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
                let why = "not run: no device was left to run it (see the run's problems)";
                let mut t = unrun(&l, Status::Error, why.into());
                t.error_kind = Some(ErrorKind::DeviceLost);
                t
            }
        };
        record_unrun(opts, run, t);
    }
}
