//! `fqp verify`: is this result file the one a trusted lab signed, and does its verdict follow
//! from its tests.

use crate::progress::out_line;
use fqp_runner::{sign, verify};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The results.json to check (its signature is <file>.sig).
    #[arg(value_name = "RESULTS")]
    pub results: PathBuf,
    /// Trust this signer's certificate (PEM), or, a CA, the results signers it issued.
    #[arg(long, value_name = "CERT")]
    pub trust: Option<PathBuf>,
    /// Lab directory whose lab-cert.pem is trusted when --trust is not given.
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
    /// The image that was qualified, when not at the path the results record.
    #[arg(long, value_name = "ELF")]
    pub image: Option<PathBuf>,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let v = verify::verify(
            &self.results,
            self.trust.as_deref(),
            &sign::lab_dir(self.lab.as_deref()),
            self.image.as_deref(),
        );
        for l in &v.lines {
            out_line(l);
        }
        if v.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}
