//! `fqp ota powercut`: power cuts on the emulated board in the middle of an update, as
//! MCUboot's simulator makes them, on the real boot loader and flash file. Each cut is a run
//! of its own of the `ota` group's `a_newer_version_is_accepted` (download, reset, swap, first
//! boot, self test) in which QEMU is killed at a random moment; the board then starts again
//! as after a power loss, and the test is tried again. The board must always boot a valid
//! image (never the boot loader's "cannot boot": bricked) and end on a newer image, confirmed
//! (the update completed, on the retry).

use crate::progress::out_line;
use fqp_reports::{Stage, Status};
use fqp_runner::qualify::{self, Options};
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
    /// Power cuts to make, each in a run of its own.
    #[arg(long, default_value_t = 10)]
    cuts: u32,
    /// Seed of the cut times: the same seed cuts at the same moments.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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

/// Where in the update a cut fell, and what came of it.
struct Cut {
    at_ms: u64,
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
        serde_json::json!({
            "at_ms": self.at_ms,
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
        let options = |dir: &str, cut: Option<Duration>| Options {
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
        out_line(&format!(
            "clean update: {span} ms; {} cuts at random moments of it (seed {})",
            self.cuts, self.seed
        ));
        let _ = std::fs::remove_dir_all(out.join("clean"));
        let mut times = Times(self.seed.max(1));
        let mut cuts = Vec::new();
        for i in 1..=self.cuts {
            let at = times.next(span);
            let dir = format!("cut-{i}");
            let f = qualify::qualify(&options(&dir, Some(Duration::from_millis(at))));
            let cut = judge(&f.run, &f.out, at);
            out_line(&format!(
                "cut {i}/{}: at {at} ms, in the {}; then {}; {}",
                self.cuts,
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
            "seed": self.seed,
            "span_ms": span,
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

/// The scenario's test in a run.
fn scenario(run: &fqp_reports::Run) -> Option<&fqp_reports::Test> {
    run.groups
        .iter()
        .flat_map(|g| &g.tests)
        .find(|t| t.id == SCENARIO)
}

/// What a run with a cut at `at` ms came to, from its results and its console transcript.
fn judge(run: &fqp_reports::Run, out: &Path, at: u64) -> Cut {
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
        at_ms: at,
        phase,
        after: said,
        bricked,
        completed: test.is_some_and(|t| matches!(t.status, Status::Passed | Status::Flaky)),
        test: status,
        run: out.to_path_buf(),
    }
}
