//! `fqp pki`: the lab's certificates and keys, written out for a broker set up by hand.

use super::fail;
use crate::progress::out_line;
use fqp_runner::sign;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the .crt/.key files.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The broker's address as the devices reach it (a certificate name).
    #[arg(long, value_name = "IP", default_value = "10.0.2.2")]
    pub broker_ip: String,
    /// Device ids to make client certificates for.
    #[arg(long = "device", value_name = "ID", default_values_t = vec!["1".to_string()])]
    pub devices: Vec<String>,
    /// Lab directory whose root CA signs (made there on first use; as for qualify).
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let lab = sign::lab_dir(self.lab.as_deref());
        match fqp_lab::Pki::make(&self.broker_ip, &self.devices, Some(&lab))
            .and_then(|p| p.write_with_keys(&self.out))
        {
            Ok(files) => {
                for f in files {
                    out_line(&f.display().to_string());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}
