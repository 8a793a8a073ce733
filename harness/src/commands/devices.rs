//! `fqp devices`: the probes and serial ports in view, or chips of probe-rs's database.

use crate::doctor;
use crate::progress::out_line;
use fqp_runner::probe;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Instead, list the chips whose name starts with this (`x` matches any character).
    #[arg(long, value_name = "PREFIX")]
    pub chips: Option<String>,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let lines = match self.chips {
            Some(prefix) => {
                let found = probe::search_chips(&prefix);
                if found.is_empty() {
                    eprintln!("no chip in probe-rs's database starts with {prefix:?}");
                    return ExitCode::from(1);
                }
                found
            }
            None => doctor::devices(),
        };
        for l in lines {
            out_line(&l);
        }
        ExitCode::SUCCESS
    }
}
