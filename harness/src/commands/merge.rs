//! `fqp merge`: the parts of one partitioned run joined into one report.

use super::fail;
use crate::progress::out_line;
use fqp_runner::{qualify, sign};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// results.json files to merge.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Directory for the merged reports.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Lab directory with the key that signs the merged results, and whose certificate
    /// the parts must be signed with unless --trust says otherwise (as for qualify).
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
    /// Trust parts signed by this certificate (PEM), or issued by it (a CA) for signing
    /// results, instead of the lab's own certificate.
    #[arg(long, value_name = "CERT")]
    pub trust: Option<PathBuf>,
}

impl Args {
    /// Checks that the parts are authentic and form one whole, joins them, states the
    /// qualification of the whole, writes and signs the reports.
    pub fn run(self) -> ExitCode {
        let lab_dir = sign::lab_dir(self.lab.as_deref());
        let trusted = match sign::trusted_pem(self.trust.as_deref(), &lab_dir) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        let mut runs = Vec::new();
        for p in &self.results {
            if let Err(e) = fqp_reports::sign::verify_file(p, &trusted.pem) {
                return fail(format!(
                    "{}: {e}\n  fix: merge only parts signed by {} (or give --trust the certificate of the lab that ran them)",
                    p.display(),
                    trusted.what
                ));
            }
            match fqp_reports::read_json(p) {
                Ok(r) => runs.push(r),
                Err(e) => return fail(e),
            }
        }
        let _lock = match qualify::claim_out(&self.out) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let mut run = match fqp_reports::merge(runs) {
            Ok(run) => run,
            Err(e) => return fail(e),
        };
        qualify::conclude(&mut run);
        let written = qualify::publish(&mut run, &self.out, self.lab.as_deref());
        out_line(&qualify::summary(&run, &self.out));
        match written {
            Ok(()) => ExitCode::from(run.exit_code()),
            Err(e) => fail(e),
        }
    }
}
