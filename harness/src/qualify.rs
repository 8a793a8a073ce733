//! A qualification run: build the port's firmware, boot the device, run the selected tests one
//! by one (restarting the device after any test that left it in an unknown state), and write
//! the reports. Whatever goes wrong, a valid report of what happened is written.

use crate::firmware::{self, Image};
use crate::manifest::{self, Manifest};
use crate::qemu::Qemu;
use crate::serial::{self, SerialLink, Transcript};
use crate::session::{DeviceInfo, Listed, Session};
use fqp_reports::{ErrorKind, Firmware, Port, Run, Status, Test, Verdict, SCHEMA_VERSION};
use std::path::{Path, PathBuf};
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
    /// Print each test's result as it ends.
    pub progress: bool,
}

/// Where the reports of a run go.
pub fn out_dir(opts: &Options, port_name: &str) -> PathBuf {
    opts.out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(port_name))
}

/// A booted device with a synced session.
struct Device {
    qemu: Qemu,
    session: Session<SerialLink>,
    info: DeviceInfo,
}

struct Ctx<'a> {
    m: &'a Manifest,
    image: &'a Image,
    out: &'a Path,
    transcript: Transcript,
    boots: u32,
}

impl Ctx<'_> {
    fn boot(&mut self) -> Result<Device, String> {
        self.boots += 1;
        serial::mark(&self.transcript, &format!("boot {}", self.boots));
        let q = self
            .m
            .flash
            .qemu
            .as_ref()
            .expect("validated: qemu method has [flash.qemu]");
        let qemu = Qemu::launch(q, &self.image.elf, &self.out.join("qemu.log"))?;
        let path = self
            .m
            .serial
            .path
            .as_ref()
            .map_or(qemu.pty.clone(), PathBuf::from);
        let link = SerialLink::open(
            &path,
            self.m.serial.baud.unwrap_or(115_200),
            self.transcript.clone(),
        )?;
        let mut session = Session::new(link);
        let info = session.sync(Duration::from_millis(self.m.timeouts.boot_ms))?;
        tracing::info!(port = %info.port, fw = %info.fw, tests = info.tests, boot = self.boots, "device synced");
        Ok(Device {
            qemu,
            session,
            info,
        })
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn empty_run(port: Port) -> Run {
    Run {
        schema: SCHEMA_VERSION,
        harness: env!("CARGO_PKG_VERSION").to_string(),
        port,
        firmware: None,
        started: now_rfc3339(),
        duration_ms: 0,
        verdict: Verdict::InfrastructureError,
        infrastructure_errors: Vec::new(),
        groups: Vec::new(),
    }
}

fn select(listed: Vec<Listed>, opts: &Options) -> Result<Vec<Listed>, String> {
    let chosen: Vec<Listed> = listed
        .iter()
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
            "no test matches the selection (groups {:?}, tests {:?}); the device has groups: {}",
            opts.groups,
            opts.tests,
            groups.join(", ")
        ));
    }
    Ok(chosen)
}

/// Runs a qualification and writes its reports; returns the run.
pub fn qualify(opts: &Options) -> Run {
    let t0 = Instant::now();
    let m = match manifest::load(&opts.port) {
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
            run.infrastructure_errors.push(e.to_string());
            return finish(run, &out_dir(opts, "unknown"), t0);
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
    if let Err(e) = std::fs::create_dir_all(&out) {
        run.infrastructure_errors.push(format!(
            "cannot create the output directory {}: {e}",
            out.display()
        ));
        return finish(run, &out, t0);
    }
    let image = match firmware::detect(&m.build.target)
        .and_then(|tc| firmware::build(&m, &tc, &out.join("build.log")))
    {
        Ok(i) => i,
        Err(e) => {
            run.infrastructure_errors.push(e);
            return finish(run, &out, t0);
        }
    };
    run.firmware = Some(Firmware {
        image: image.elf.display().to_string(),
        sha256: image.sha256.clone(),
        size_bytes: image.size_bytes,
        toolchain: image.toolchain.clone(),
        version: None,
        kernel: None,
    });
    let transcript = match serial::transcript(&out.join("serial.log")) {
        Ok(t) => t,
        Err(e) => {
            run.infrastructure_errors
                .push(format!("cannot write the serial transcript: {e}"));
            return finish(run, &out, t0);
        }
    };
    let _ = std::fs::remove_file(out.join("qemu.log"));
    let mut ctx = Ctx {
        m: &m,
        image: &image,
        out: &out,
        transcript,
        boots: 0,
    };
    run_tests(&mut ctx, opts, &mut run);
    finish(run, &out, t0)
}

fn run_tests(ctx: &mut Ctx<'_>, opts: &Options, run: &mut Run) {
    let mut dev = match ctx.boot() {
        Ok(d) => d,
        Err(e) => return run.infrastructure_errors.push(e),
    };
    if let Some(fw) = run.firmware.as_mut() {
        fw.version = Some(dev.info.fw.clone());
        fw.kernel = Some(dev.info.kernel.clone());
    }
    let listed = match dev.session.list(Duration::from_secs(10)) {
        Ok(l) => l,
        Err(e) => return run.infrastructure_errors.push(e),
    };
    let chosen = match select(listed, opts) {
        Ok(c) => c,
        Err(e) => return run.infrastructure_errors.push(e),
    };
    let t = &ctx.m.timeouts;
    let mut device = Some(dev);
    // Outcomes on the current boot, to check against the device's own count at the end.
    let mut this_boot = [0u64; 3];
    for (n, test) in chosen.iter().enumerate() {
        let group = test.id.split('/').next().unwrap_or("").to_string();
        let d = match device.as_mut() {
            Some(d) => d,
            None => match ctx.boot() {
                Ok(d) => {
                    this_boot = [0; 3];
                    device.insert(d)
                }
                Err(e) => {
                    run.infrastructure_errors
                        .push(format!("the device could not be restarted: {e}"));
                    for rest in &chosen[n..] {
                        let mut t = Test::new(&rest.id, Status::Error);
                        t.error_kind = Some(ErrorKind::DeviceLost);
                        t.message = Some("not run: the device could not be restarted".into());
                        run.push(rest.id.split('/').next().unwrap_or(""), t);
                    }
                    break;
                }
            },
        };
        let timeout =
            Duration::from_millis((test.timeout_ms as f64 * t.factor) as u64 + t.grace_ms);
        let outcome = d.session.run(&test.id, timeout);
        if opts.progress {
            print_result(&outcome.test);
        }
        match outcome.test.status {
            Status::Passed => this_boot[0] += 1,
            Status::Failed => this_boot[1] += 1,
            Status::Skipped => this_boot[2] += 1,
            Status::Error => {}
        }
        if outcome.restart {
            serial::mark(
                &ctx.transcript,
                &format!(
                    "{} ended the device ({:?}); restarting",
                    test.id, outcome.test.error_kind
                ),
            );
            device = None; // dropping kills QEMU
        }
        run.push(&group, outcome.test);
    }
    if let Some(mut d) = device {
        match d.session.summary(Duration::from_secs(2)) {
            Some(counts) if counts != this_boot => run.infrastructure_errors.push(format!(
                "the device counted {counts:?} tests passed/failed/skipped on its last boot, the harness {this_boot:?}: \
                 protocol lines were lost; see serial.log"
            )),
            Some(_) => {}
            None => run
                .infrastructure_errors
                .push("the device did not answer SUMMARY at the end of the run; see serial.log".into()),
        }
        d.session.exit(0);
        let corrupt = d.session.corrupt_lines;
        if corrupt > 0 {
            tracing::warn!(corrupt, "damaged protocol lines were detected and ignored");
        }
        let status = d.qemu.finish(Duration::from_secs(3));
        tracing::debug!(?status, "QEMU ended");
    }
}

fn print_result(t: &Test) {
    let (tag, extra) = match t.status {
        Status::Passed => ("PASS", String::new()),
        Status::Skipped => ("SKIP", format!(": {}", t.message.as_deref().unwrap_or(""))),
        Status::Failed => (
            "FAIL",
            format!(
                ": {} ({})",
                t.message.as_deref().unwrap_or(""),
                t.location.as_deref().unwrap_or("?")
            ),
        ),
        Status::Error => (
            "ERROR",
            format!(
                " [{}]: {}",
                t.error_kind.map_or("error", |k| k.as_str()),
                t.message.as_deref().unwrap_or("")
            ),
        ),
    };
    let time = t.device_us.map_or(format!("{} ms wall", t.wall_ms), |us| {
        format!("{:.1} ms", us as f64 / 1000.0)
    });
    crate::out_line(&format!("{tag:>5} {} ({time}){extra}", t.id));
}

fn finish(mut run: Run, out: &Path, t0: Instant) -> Run {
    run.duration_ms = t0.elapsed().as_millis() as u64;
    run.verdict = run.decide();
    if let Err(e) = write_reports(&run, out) {
        eprintln!("error: {e}");
    }
    run
}

fn write_reports(run: &Run, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    fqp_reports::write_json(run, &out.join("results.json"))
        .map_err(|e| format!("results.json: {e}"))?;
    let f = std::fs::File::create(out.join("junit.xml")).map_err(|e| format!("junit.xml: {e}"))?;
    fqp_reports::write_junit(run, std::io::BufWriter::new(f))
}

/// One-paragraph summary for the terminal.
pub fn summary(run: &Run, out: &Path) -> String {
    let s = run.summary();
    let mut text = format!(
        "{}: {} tests, {} passed, {} failed, {} errors, {} skipped in {:.1} s — verdict: {}\nreports: {}",
        run.port.name,
        s.total,
        s.passed,
        s.failed,
        s.errors,
        s.skipped,
        run.duration_ms as f64 / 1000.0,
        match run.verdict {
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
            Verdict::InfrastructureError => "INFRASTRUCTURE ERROR",
        },
        out.display()
    );
    for e in &run.infrastructure_errors {
        text.push_str(&format!("\ninfrastructure error: {e}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[&str]) -> Vec<Listed> {
        ids.iter()
            .map(|id| Listed {
                id: id.to_string(),
                timeout_ms: 1,
            })
            .collect()
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
