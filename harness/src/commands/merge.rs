//! `fqp merge`: the parts of one partitioned run joined into one report.

use fqp_runner::progress::out_line;
use fqp_runner::{qualify, verify};
use std::path::{Path, PathBuf};
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
    pub fn run(self) -> ExitCode {
        merge(
            &self.results,
            &self.out,
            self.lab.as_deref(),
            self.trust.as_deref(),
        )
    }
}

/// `fqp merge`: checks that the parts are authentic and form one whole, joins them, states
/// the qualification of the whole, writes and signs the reports.
fn merge(results: &[PathBuf], out: &Path, lab: Option<&Path>, trust: Option<&Path>) -> ExitCode {
    let refuse = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(fqp_reports::EXIT_INFRASTRUCTURE)
    };
    let lab_dir = verify::lab_dir(lab);
    let trusted = match verify::trusted_pem(trust, &lab_dir) {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let mut runs = Vec::new();
    for p in results {
        if let Err(e) = fqp_reports::sign::verify_file(p, &trusted.pem) {
            return refuse(format!(
                "{}: {e}\n  fix: merge only parts signed by {} (or give --trust the certificate of the lab that ran them)",
                p.display(),
                trusted.what
            ));
        }
        match fqp_reports::read_json(p) {
            Ok(r) => runs.push(r),
            Err(e) => return refuse(e),
        }
    }
    let _lock = match qualify::claim_out(out) {
        Ok(l) => l,
        Err(e) => return refuse(e),
    };
    match fqp_reports::merge(runs) {
        Ok(mut run) => {
            qualify::conclude(&mut run);
            let written = qualify::publish(&mut run, out, lab);
            out_line(&qualify::summary(&run, out));
            match written {
                Ok(()) => ExitCode::from(run.exit_code()),
                Err(e) => refuse(e),
            }
        }
        Err(e) => refuse(e),
    }
}
