//! `fqp doctor`: what this machine has for the port, and what it lacks.

use crate::doctor;
use crate::progress::out_line;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the port (holds port.toml); without it, the reference setup (QEMU).
    #[arg(long, value_name = "DIR")]
    pub port: Option<PathBuf>,
    /// Lab directory with the signing key (as for qualify).
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let findings = doctor::doctor(self.port.as_deref(), self.lab.as_deref());
        for f in &findings {
            let mark = if f.ok { "ok  " } else { "FAIL" };
            out_line(&format!("{mark}  {:<12} {}", f.what, f.detail));
        }
        if findings.iter().all(|f| f.ok) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}
