//! `fqp qualify`: a run of the port's test suites, its reports and its verdict.

use super::Selection;
use crate::progress::out_line;
use fqp_runner::qualify;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub selection: Selection,
    /// Directory for the reports.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only part I of N of the selection (CI sharding; `fqp merge` joins the parts).
    #[arg(long, value_name = "I/N", value_parser = parse_partition)]
    pub partition: Option<fqp_reports::Partition>,
    /// Spread the test groups over this many identical devices, in parallel: QEMU
    /// instances, or the first N boards of the manifest's [[devices]] (default: one
    /// emulator, or every listed board).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub devices: Option<u16>,
    /// Retry a failed test, and a device that would not boot or sync, up to N more times
    /// (a test that ended the device runs again on a fresh boot). A test that fails, then
    /// passes is reported as flaky, never as passed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// Lab directory with the key that signs results.json (lab-key.pem, lab-cert.pem;
    /// made, self-signed, on first use). Default: $FQP_LAB, else ~/.config/fqp/lab.
    #[arg(long, value_name = "DIR")]
    pub lab: Option<PathBuf>,
    /// MQTT broker for the network tests: embedded (rumqttd in fqp), mosquitto (Debian's,
    /// started with a generated configuration), mqtt://[user:password@]host:port, or
    /// mqtts://[user:password@]host:port (TLS; devices present certificates from the lab
    /// root, pki-root.crt in the lab directory, which the broker must trust).
    #[arg(long, value_name = "BROKER", default_value = "embedded")]
    pub broker: fqp_lab::Broker,
    /// The CA certificate (PEM or DER) an mqtts:// broker's certificate chains to
    /// (default: the lab root, for a broker given a certificate by `fqp pki`).
    #[arg(long, value_name = "FILE")]
    pub broker_ca: Option<PathBuf>,
}

impl Args {
    pub fn run(self, quiet: bool) -> ExitCode {
        let opts = qualify::Options {
            out: self.out,
            partition: self.partition,
            devices: self.devices.map(usize::from),
            retries: self.retries,
            lab: self.lab,
            broker: self.broker,
            broker_ca: self.broker_ca,
            progress: !quiet,
            observers: crate::progress::observers(quiet),
            ..self.selection.options()
        };
        let f = qualify::qualify(&opts);
        out_line(&qualify::summary(&f.run, &f.out));
        if let Some(e) = &f.report_error {
            eprintln!("error: {e}");
        }
        ExitCode::from(f.exit_code())
    }
}

/// `--partition` is not `I/N` with 1 <= I <= N.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a partition: write I/N with 1 <= I <= N, for example 2/4")]
pub struct PartitionError(String);

/// Parses `I/N` with 1 <= I <= N.
fn parse_partition(s: &str) -> Result<fqp_reports::Partition, PartitionError> {
    let bad = || PartitionError(s.to_string());
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if index == 0 || index > count {
        return Err(bad());
    }
    Ok(fqp_reports::Partition { index, count })
}
