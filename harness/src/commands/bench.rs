//! `fqp bench`: the performance group's figures, the kernel's size, and the comparison with
//! a saved run.

use super::fail;
use crate::progress::out_line;
use fqp_runner::qualify::{self, Options};
use fqp_runner::{
    bench,
    profile::{Profile, Symbols},
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the port (holds port.toml), or the manifest file itself.
    #[arg(long, value_name = "DIR")]
    pub port: PathBuf,
    /// Directory for the reports.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// results.json of an earlier `fqp bench` (or `fqp qualify`) to compare with.
    #[arg(long, value_name = "RESULTS")]
    pub baseline: Option<PathBuf>,
    /// How much worse than the baseline a figure may be, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 2.0)]
    pub tolerance: f64,
    /// Only benchmarks whose `perf/name` contains this text (repeatable).
    #[arg(long = "test", value_name = "PATTERN")]
    pub tests: Vec<String>,
    /// Also count the instructions the emulated device executes, by function, and print
    /// the functions that take most (written whole to <out>/profile.txt). The emulator
    /// runs tens of times slower: profile one benchmark at a time (--test).
    #[arg(long)]
    pub profile: bool,
    /// Lab directory with the key that signs results.json (as for qualify).
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
}

impl Args {
    pub fn run(self, quiet: bool) -> ExitCode {
        let baseline = match self.baseline.map(|b| bench::load(&b)).transpose() {
            Ok(b) => b,
            Err(e) => return fail(e),
        };
        let opts = Options {
            port: self.port,
            out: self.out,
            groups: vec![bench::GROUP.into()],
            tests: self.tests,
            retries: 0,
            lab: self.lab,
            progress: !quiet,
            observers: crate::progress::observers(quiet),
            bench: true,
            profile: self.profile.then(Default::default),
            ..Default::default()
        };
        let f = qualify::qualify(&opts);
        let (run, out) = (&f.run, &f.out);
        let cmp = bench::compare(run, baseline.as_ref(), self.tolerance, &opts.tests);
        out_line(&cmp.table);
        if let Some(fw) = &run.firmware {
            if let Some(k) = fw.kernel_size {
                out_line(&format!("kernel in this image: {k}"));
            }
            if !fw.kernel_text_by_module.is_empty() {
                out_line(&format!(
                    "  its text by module (B): {}",
                    fw.kernel_modules_line()
                ));
            }
        }
        if let Some(p) = opts.profile.as_ref().filter(|p| !p.is_empty()) {
            // An image a boot loader started: QEMU names the boot loader's code only.
            let started = run
                .firmware
                .as_ref()
                .filter(|fw| fw.boot.is_some())
                .map(|fw| Symbols::of(Path::new(&fw.image)));
            print_profile(p, out, started.as_ref());
        }
        // The counts and the report; qualification is `fqp qualify`'s business.
        let summary = qualify::summary(run, out);
        if let Some(e) = &f.report_error {
            eprintln!("error: {e}");
        }
        let plain: Vec<&str> = summary
            .lines()
            .take_while(|l| !l.starts_with("QUALIFIED") && !l.starts_with("NOT QUALIFIED"))
            .collect();
        out_line(&plain.join("\n"));
        let code = f.exit_code();
        if code == 0 && !cmp.regressions.is_empty() {
            out_line(&format!(
                "REGRESSION beyond {}%: {}",
                self.tolerance,
                cmp.regressions.join(", ")
            ));
            return ExitCode::from(1);
        }
        ExitCode::from(code)
    }
}

/// The functions that took most instructions, and all of them in `<out>/profile.txt`.
fn print_profile(p: &Profile, out: &Path, started: Option<&Symbols>) {
    let whole = p.table(usize::MAX, started);
    let file = out.join("profile.txt");
    if let Err(e) = std::fs::write(&file, &whole) {
        eprintln!("error: {}: {e}", file.display());
    }
    out_line(&format!(
        "instructions executed by function (all of them: {}):\n{}",
        file.display(),
        p.table(25, started)
    ));
}
