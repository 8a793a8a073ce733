//! `fqp`: the qualification harness.
//!
//! Builds a port's firmware (kernel, the port's board support, the on-device test suites),
//! puts it on the device, drives the tests over the console, and writes JUnit, JSON and a
//! serial transcript. The exit status is the table in `EXIT_STATUS` (and the README's).

mod commands;
mod doctor;
mod init;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit statuses of `qualify`, `bench` and `merge`, as `fqp --help` prints them (the
/// README has the same table).
const EXIT_STATUS: &str = "Exit status (qualify, bench, merge):
  0    every selected test passed and, for a whole run (no --group/--test/--capability,
       no --partition), the port QUALIFIED
  1    a product failure: a test failed, errored or was flaky, a threshold was missed, or a
       whole run did NOT QUALIFY (results.json says why)
  2    the run could not be carried out: infrastructure (build, flash, boot, console,
       emulator, lab service) or configuration (manifest, options, toolchain), or its
       reports could not be written
  130  interrupted by SIGINT (129 SIGHUP, 143 SIGTERM): devices and services stopped, the
       reports say `interrupted`
`fqp verify` and `fqp doctor`: 0 when every check passes, 1 otherwise.
References: docs/port-manifest.md (port.toml), docs/protocol.md (console protocol),
docs/results.md (results.json).";

#[derive(Parser)]
#[command(
    name = "fqp",
    version,
    about = "Qualify an RTOS port: build, flash, test over the console, report",
    after_help = EXIT_STATUS
)]
struct Cli {
    /// More diagnostics on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and the final summary.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the port's firmware, run its test suites on the device, write the reports.
    ///
    /// Reports go to --out (default out/<port name>): results.json and its signature,
    /// junit.xml, report.html, summary.md, serial.log (the raw console), build.log, and
    /// qemu.log (emulators) or flash.log (flash commands).
    Qualify(commands::qualify::Args),
    /// List the tests of the port's image: timeouts, required capabilities, whether each is
    /// required for qualification and whether it runs on this port.
    ///
    /// Builds the image and boots the device once to ask it.
    List(commands::list::Args),
    /// Merge the parts of one partitioned run (`qualify --partition I/N`) into one report.
    ///
    /// Every part 1..N must be given once, of one port, image, selection and harness, each
    /// with a valid signature by a trusted signer (as `fqp verify` checks); anything else is
    /// refused (exit 2). The merged results are judged again (QUALIFIED only as a whole) and
    /// signed with this lab's key. Writes the reports to --out; exits like `qualify`.
    Merge(commands::merge::Args),
    /// Check a result file handed in: who signed it, the image it is about, the suite
    /// descriptions it was judged by, and that its verdict and qualification statement follow
    /// from its tests.
    ///
    /// Trust is explicit: the signer must be the certificate given with --trust (PEM), or
    /// issued by it when it is a CA — and then be a certificate for signing results
    /// (extendedKeyUsage codeSigning, keyUsage digitalSignature, not a CA). Without --trust,
    /// only this machine's lab certificate is trusted (lab-cert.pem in the lab directory:
    /// --lab, $FQP_LAB, ~/.config/fqp/lab). A signer that is not trusted, an unsigned or
    /// edited file, a verdict or a qualification that does not follow from the tests, a file
    /// judged by other suite descriptions: each fails, with its reason.
    ///
    /// Exit status 0 when every check passes, 1 when one fails (each is printed).
    Verify(commands::verify::Args),
    /// Check that this machine can qualify the port (toolchain, emulator or probe and chip,
    /// flash tool, console, signing key), and say how to fix what is missing.
    ///
    /// Exit status 0 when everything needed is there, 1 otherwise.
    Doctor(commands::doctor::Args),
    /// List the debug probes and serial ports in view (USB ids, serial numbers), or search
    /// probe-rs's chip database.
    Devices(commands::devices::Args),
    /// Create a new port from the port template, named for your board, with the chosen
    /// libraries' test suites wired in. It builds (and qualifies on the template's emulated
    /// board) as generated; then follow the PORT: markers and PORTING.md.
    Init(commands::init::Args),
    /// Make the lab's PKI with rcgen: a root CA, the broker's certificate (for broker.fqp.lab
    /// and the given address), one client certificate per device, and the bad cases the TLS
    /// tests use (untrusted CA, expired, wrong host name, malformed, foreign client).
    Pki(commands::pki::Args),
    /// Run the performance group under the FreeRTOS baseline's conditions (QEMU with
    /// -icount, idle time not following real time; the kernel without time slicing or
    /// run-time statistics; a fresh boot) and print its figures, which repeat exactly from run
    /// to run, and the kernel's size in the image (by module).
    ///
    /// The image is built apart from the qualification image, with the manifest's
    /// bench_features (the reference port's leave every other group out, so the image holds
    /// the benchmarks' kernel). Reports go to --out (default out/<port name>-bench). With
    /// --baseline, every figure is also shown as a ratio to the saved run's, and a drop beyond
    /// --tolerance fails (exit 1).
    Bench(commands::bench::Args),
    /// Build the port's firmware and print the image path.
    Build(commands::build::Args),
    /// The local IoT cloud: serve it for a lab (`fqp cloud serve`), and inspect and change
    /// its things, groups, shadows, jobs, Defender profiles, alarms and audit (docs/cloud.md).
    Cloud(commands::cloud::Args),
    /// Over-the-air updates: sign a firmware image for the boot loader and the OTA agent
    /// (`fqp ota sign`, with the lab's code-signing key or your own) and read one back
    /// (`fqp ota inspect`).
    Ota(commands::ota::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    fqp_process::install();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FQP_LOG")
                // probe-rs reports each probe driver it could not list with: say it once, in
                // `fqp devices`, instead. The lab broker's own log is for FQP_LOG=rumqttd=….
                .unwrap_or_else(|_| format!("{level},probe_rs=error,rumqttd=off").into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match cli.cmd {
        Cmd::Qualify(a) => a.run(cli.quiet),
        Cmd::List(a) => a.run(),
        Cmd::Merge(a) => a.run(),
        Cmd::Verify(a) => a.run(),
        Cmd::Doctor(a) => a.run(),
        Cmd::Devices(a) => a.run(),
        Cmd::Init(a) => a.run(),
        Cmd::Pki(a) => a.run(),
        Cmd::Bench(a) => a.run(cli.quiet),
        Cmd::Build(a) => a.run(),
        Cmd::Cloud(a) => a.run(),
        Cmd::Ota(a) => a.run(),
    }
}
