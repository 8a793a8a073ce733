//! `fqp ota powercut`: power cuts on the emulated board in the middle of an update, as
//! MCUboot's simulator makes them, on the real boot loader and flash file. Each cut is a run
//! of its own of the `ota` group's `a_newer_version_is_accepted` (download, reset, swap, first
//! boot, self test) in which the power goes: at a random moment of it (QEMU killed), or
//! (`--every-op`) at one operation on the board's flash — every one of the update's in turn,
//! or those of a phase, as MCUboot's simulator does — before it starts or torn half way (the
//! board's firmware counts its flash operations and stops the emulator at the one asked).
//! The board then starts again as after a power loss, and the test is tried again. The board
//! must always boot a valid image (never the boot loader's "cannot boot": bricked) and end
//! on a newer image, confirmed (the update completed, on the retry).

use crate::progress::out_line;
use fqp_reports::{Stage, Status};
use fqp_runner::qemu::{flash_ops, FlashCut};
use fqp_runner::qualify::{self, Options, PowerCut};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The update every cut interrupts.
const SCENARIO: &str = "ota/a_newer_version_is_accepted";

#[derive(clap::Args)]
pub(super) struct PowercutArgs {
    /// The port (an emulated board with a boot loader: `[boot]` in port.toml).
    #[arg(long, default_value = "reference-port")]
    port: PathBuf,
    /// Power cuts to make at random moments, each in a run of its own.
    #[arg(long, default_value_t = 10)]
    cuts: u32,
    /// Seed of the cut times: the same seed cuts at the same moments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cut at the update's flash operations instead, one per run: every one the update
    /// without a cut made (hours for a large image: narrow with --phase and --step).
    #[arg(long, conflicts_with_all = ["cuts", "seed"])]
    every_op: bool,
    /// With --every-op: only the operations of this phase.
    #[arg(long, value_enum, requires = "every_op")]
    phase: Option<Phase>,
    /// With --every-op: every STEP-th operation (1: all of them).
    #[arg(long, default_value_t = 1, requires = "every_op", value_parser = clap::value_parser!(u32).range(1..))]
    step: u32,
    /// With --every-op: N operations spread evenly over the phase instead (1: its middle one).
    #[arg(long, value_name = "N", requires = "every_op", conflicts_with = "step", value_parser = clap::value_parser!(u32).range(1..))]
    sample: Option<u32>,
    /// With --every-op: the operation cut is torn half way (half a sector erased, half the
    /// bytes programmed) rather than never started.
    #[arg(long, requires = "every_op")]
    torn: bool,
    /// Where the runs and the report (powercut.json) go [default: out/<port>-powercut].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Lab directory (as for qualify).
    #[arg(long, value_name = "DIR")]
    lab: Option<PathBuf>,
    /// Keep the run directory of every cut (by default only those of cuts that went wrong).
    #[arg(long)]
    keep: bool,
}

/// The phases of an update, by the flash operations the board made in them.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Before the reset: the test's start, the download, the request to install.
    Download,
    /// The boot loader's, between the reset and the new image running.
    Swap,
    /// The new image's, on trial: its self test and confirmation.
    FirstBoot,
}

/// The operations of each phase of the update without a cut (1 is the run's first).
struct Ops {
    total: u32,
    /// The count at the test's reboot and when the device was back.
    reboot: u32,
    back: u32,
}

impl Ops {
    /// Read from the clean run's flash counter and its transcript's marks.
    fn of_clean_run(out: &Path) -> Option<Ops> {
        let total = flash_ops(&out.join("boot-flash.bin"))?;
        let transcript = std::fs::read_to_string(out.join("serial.log")).ok()?;
        let mark = |when: &str| {
            transcript.lines().find_map(|l| {
                l.strip_prefix("--- fqp: flash operations: ")?
                    .strip_suffix(&format!(" at {when} ---"))?
                    .parse()
                    .ok()
            })
        };
        Some(Ops {
            total,
            reboot: mark("the test's reboot")?,
            back: mark("the device back")?,
        })
    }

    fn range(&self, phase: Option<Phase>) -> std::ops::RangeInclusive<u32> {
        match phase {
            None => 1..=self.total,
            Some(Phase::Download) => 1..=self.reboot,
            Some(Phase::Swap) => self.reboot + 1..=self.back,
            Some(Phase::FirstBoot) => self.back + 1..=self.total,
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "total": self.total,
            "download": [1, self.reboot],
            "swap": [self.reboot + 1, self.back],
            "first_boot": [self.back + 1, self.total],
        })
    }
}

/// When a cut was made.
#[derive(Clone, Copy)]
enum At {
    Ms(u64),
    Op(FlashCut),
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Ms(ms) => write!(f, "at {ms} ms"),
            At::Op(c) if c.torn => write!(f, "at flash operation {} (torn)", c.op),
            At::Op(c) => write!(f, "at flash operation {}", c.op),
        }
    }
}

/// Where in the update a cut fell, and what came of it.
struct Cut {
    at: At,
    /// `start` (the test starting, before the update was offered), `download`, `swap`
    /// (after the reset, before the new image ran), `first boot` (the new image running on
    /// trial), or `none` (the run ended before the cut).
    phase: &'static str,
    /// What the boot loader said when the board started again.
    after: Vec<String>,
    bricked: bool,
    completed: bool,
    /// The test's end: passed (on the first try), flaky (passed on a retry), failed, error.
    test: String,
    run: PathBuf,
}

impl Cut {
    fn json(&self) -> serde_json::Value {
        let at = match self.at {
            At::Ms(ms) => serde_json::json!({ "ms": ms }),
            At::Op(c) => serde_json::json!({ "flash_op": c.op, "torn": c.torn }),
        };
        serde_json::json!({
            "at": at,
            "phase": self.phase,
            "after": self.after,
            "bricked": self.bricked,
            "completed": self.completed,
            "test": self.test,
            "run": self.run,
        })
    }
}

/// A small generator of cut times (xorshift64*): the same seed, the same cuts.
struct Times(u64);

impl Times {
    fn next(&mut self, span: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % span.max(1)
    }
}

impl PowercutArgs {
    pub(super) fn run(self) -> ExitCode {
        let name = self
            .port
            .file_name()
            .map_or("port".into(), |n| n.to_string_lossy().to_string());
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(format!("{name}-powercut")));
        let options = |dir: &str, cut: Option<PowerCut>| Options {
            port: self.port.clone(),
            out: Some(out.join(dir)),
            tests: vec![SCENARIO.into()],
            retries: 2,
            lab: self.lab.clone(),
            power_cut: cut,
            observers: crate::progress::observers(true),
            ..Options::default()
        };
        out_line(&format!(
            "fqp ota powercut: the update without a cut first ({SCENARIO})"
        ));
        let clean = qualify::qualify(&Options {
            retries: 0,
            ..options("clean", None)
        });
        let Some(test) = scenario(&clean.run) else {
            eprintln!(
                "error: the port's image has no test {SCENARIO}\n  fix: give the port a boot \
                 loader ([boot] in port.toml) and the capability ota, so that its image holds \
                 the ota group (docs/ota.md); the run: {}",
                clean.out.join("report.html").display()
            );
            return ExitCode::from(1);
        };
        if test.status != Status::Passed {
            eprintln!(
                "error: the update does not pass without a power cut, so cuts would prove \
                 nothing\n  fix: make `fqp qualify --port {} --test {SCENARIO}` pass first \
                 (its report: {})",
                self.port.display(),
                clean.out.join("report.html").display()
            );
            return ExitCode::from(1);
        };
        let span = test.wall_ms;
        let ops = Ops::of_clean_run(&clean.out);
        let plan: Vec<At> = if self.every_op {
            let Some(ops) = &ops else {
                eprintln!(
                    "error: the update without a cut left no count of its flash operations \
                     (boot-flash.bin.ops, and the marks of the test's reboot in serial.log)\n  \
                     fix: give the board's flash the operation counter of \
                     fqp_port_cortex_m::semihosting::HostFlash (docs/ota.md); the run: {}",
                    clean.out.display()
                );
                return ExitCode::from(1);
            };
            let chosen = choose(ops.range(self.phase), self.step, self.sample);
            out_line(&format!(
                "clean update: {span} ms, {} flash operations (download 1-{}, swap {}-{}, \
                 first boot {}-{}); {} cuts{}: {}",
                ops.total,
                ops.reboot,
                ops.reboot + 1,
                ops.back,
                ops.back + 1,
                ops.total,
                chosen.len(),
                if self.torn {
                    ", each torn half way"
                } else {
                    ""
                },
                listed(&chosen),
            ));
            if chosen.is_empty() {
                eprintln!(
                    "error: no flash operation to cut in that phase of the update\n  fix: \
                     choose another --phase (the update's phases are above)"
                );
                return ExitCode::from(1);
            }
            chosen
                .into_iter()
                .map(|op| {
                    At::Op(FlashCut {
                        op,
                        torn: self.torn,
                    })
                })
                .collect()
        } else {
            out_line(&format!(
                "clean update: {span} ms; {} cuts at random moments of it (seed {})",
                self.cuts, self.seed
            ));
            let mut times = Times(self.seed.max(1));
            (0..self.cuts).map(|_| At::Ms(times.next(span))).collect()
        };
        let _ = std::fs::remove_dir_all(out.join("clean"));
        let mut cuts = Vec::new();
        for (i, at) in plan.iter().enumerate() {
            let i = i + 1;
            let dir = format!("cut-{i}");
            let cut = match *at {
                At::Ms(ms) => PowerCut::After(Duration::from_millis(ms)),
                At::Op(c) => PowerCut::AtFlashOp(c),
            };
            let f = qualify::qualify(&options(&dir, Some(cut)));
            let cut = judge(&f.run, &f.out, *at);
            out_line(&format!(
                "cut {i}/{}: {at}, in the {}; then {}; {}",
                plan.len(),
                cut.phase,
                if cut.after.is_empty() {
                    "-".to_string()
                } else {
                    cut.after.join(", ")
                },
                match (cut.bricked, cut.completed) {
                    (true, _) => "BRICKED".to_string(),
                    (false, true) => format!("update completed ({})", cut.test),
                    (false, false) => format!("update NOT completed ({})", cut.test),
                }
            ));
            if cut.completed && !self.keep {
                let _ = std::fs::remove_dir_all(&f.out);
            }
            cuts.push(cut);
        }
        let injected = cuts.iter().filter(|c| c.phase != "none").count();
        let bricked = cuts.iter().filter(|c| c.bricked).count();
        let completed = cuts.iter().filter(|c| c.completed).count();
        let phase = |p: &str| cuts.iter().filter(|c| c.phase == p).count();
        let report = serde_json::json!({
            "scenario": SCENARIO,
            "mode": if self.every_op { "flash operations" } else { "random moments" },
            "seed": (!self.every_op).then_some(self.seed),
            "span_ms": span,
            "flash_ops": ops.as_ref().map(Ops::json),
            "cuts": injected,
            "by_phase": {
                "start": phase("start"),
                "download": phase("download"),
                "swap": phase("swap"),
                "first_boot": phase("first boot"),
                "none": phase("none"),
            },
            "bricked": bricked,
            "completed": completed,
            "each": cuts.iter().map(Cut::json).collect::<Vec<_>>(),
        });
        let path = out.join("powercut.json");
        if let Err(e) = std::fs::create_dir_all(&out).and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&report).unwrap_or_default(),
            )
        }) {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(fqp_reports::EXIT_INFRASTRUCTURE);
        }
        out_line(&format!(
            "{injected} power cuts (start {}, download {}, swap {}, first boot {}): {bricked} \
             bricked, {completed} of {} updates completed; report: {}",
            phase("start"),
            phase("download"),
            phase("swap"),
            phase("first boot"),
            cuts.len(),
            path.display()
        ));
        if bricked == 0 && completed == cuts.len() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// The operations of `range` to cut: every `step`-th from its first, or `sample` of them at the
/// middles of as many equal parts.
fn choose(range: std::ops::RangeInclusive<u32>, step: u32, sample: Option<u32>) -> Vec<u32> {
    let (first, last) = (*range.start(), *range.end());
    if first > last {
        return Vec::new();
    }
    match sample {
        None => range.step_by(step.max(1) as usize).collect(),
        Some(n) => {
            let (len, n) = (u64::from(last - first) + 1, u64::from(n));
            let mut ops: Vec<u32> = (0..n.min(len))
                .map(|i| first + ((2 * i + 1) * len / (2 * n.min(len))) as u32)
                .collect();
            ops.dedup();
            ops
        }
    }
}

/// A list of operations in a line: runs of consecutive or evenly spaced ones shortened.
fn listed(ops: &[u32]) -> String {
    match ops {
        [] => "none".into(),
        [one] => one.to_string(),
        [a, b] => format!("{a}, {b}"),
        [a, b, .., z] if ops.windows(2).all(|w| w[1] - w[0] == b - a) => {
            format!("{a}, {b}, … {z} (every {})", b - a)
        }
        _ => ops
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The scenario's test in a run.
fn scenario(run: &fqp_reports::Run) -> Option<&fqp_reports::Test> {
    run.groups
        .iter()
        .flat_map(|g| &g.tests)
        .find(|t| t.id == SCENARIO)
}

/// What a run with a cut `at` came to, from its results and its console transcript.
fn judge(run: &fqp_reports::Run, out: &Path, at: At) -> Cut {
    let transcript = std::fs::read_to_string(out.join("serial.log")).unwrap_or_default();
    let (before, after) = match transcript.find("--- fqp: power cut") {
        Some(i) => transcript.split_at(i),
        None => (transcript.as_str(), ""),
    };
    let phase = if after.is_empty() {
        "none"
    } else if !before.contains("action=cloud-ota-offer") {
        "start"
    } else {
        match before.rfind("@FQP REBOOT") {
            None => "download",
            Some(r) if before[r..].contains("@FQP HELLO") => "first boot",
            Some(_) => "swap",
        }
    };
    // What the boot loader said on the board's next start.
    let said: Vec<String> = after
        .lines()
        .skip_while(|l| !l.starts_with("--- fqp: boot"))
        .skip(1)
        .take_while(|l| !l.starts_with("--- fqp:") && !l.starts_with("@FQP"))
        .filter_map(|l| l.find("fqp-boot: ").map(|i| l[i + 10..].trim().to_string()))
        .collect();
    let bricked = run.problems.iter().any(|p| {
        p.stage == Stage::Port && p.message.contains("boot loader did not start the image")
    }) || said.iter().any(|l| l.starts_with("cannot boot"));
    let test = scenario(run);
    let status = test.map_or("not run", |t| t.status.as_str()).to_string();
    Cut {
        at,
        phase,
        after: said,
        bricked,
        completed: test.is_some_and(|t| matches!(t.status, Status::Passed | Status::Flaky)),
        test: status,
        run: out.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_th_operation_from_the_first() {
        assert_eq!(choose(10..=20, 5, None), [10, 15, 20]);
        assert_eq!(choose(10..=20, 1, None).len(), 11);
        // A phase without operations (a first boot that wrote nothing).
        assert!(choose(std::ops::RangeInclusive::new(21, 20), 1, None).is_empty());
    }

    #[test]
    fn a_sample_takes_the_middles_of_equal_parts() {
        assert_eq!(choose(278..=4383, 1, Some(1)), [2331]);
        assert_eq!(choose(1..=100, 1, Some(4)), [13, 38, 63, 88]);
        // Never more cuts than operations, never the same one twice.
        assert_eq!(choose(5..=7, 1, Some(10)), [5, 6, 7]);
        assert_eq!(choose(4384..=4384, 1, Some(3)), [4384]);
    }

    #[test]
    fn lists_are_shortened_when_evenly_spaced() {
        assert_eq!(listed(&[]), "none");
        assert_eq!(listed(&[7]), "7");
        assert_eq!(listed(&[13, 38, 63, 88]), "13, 38, … 88 (every 25)");
        assert_eq!(listed(&[1, 2, 4]), "1, 2, 4");
    }
}
