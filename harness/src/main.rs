//! `fqp`: the qualification harness.
//!
//! Builds a port's firmware (kernel, the port's board support, the on-device test suites),
//! puts it on the device, drives the tests over the console, and writes JUnit, JSON and a
//! serial transcript. The exit status is the table in `EXIT_STATUS` (and the README's).

mod bench;
mod device;
mod doctor;
mod firmware;
mod init;
mod manifest;
mod probe;
mod profile;
mod progress;
mod qemu;
mod qualify;
mod serial;
mod session;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
    Qualify {
        #[command(flatten)]
        selection: Selection,
        /// Directory for the reports.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run only part I of N of the selection (CI sharding; `fqp merge` joins the parts).
        #[arg(long, value_name = "I/N", value_parser = parse_partition)]
        partition: Option<fqp_reports::Partition>,
        /// Spread the test groups over this many identical devices, in parallel: QEMU
        /// instances, or the first N boards of the manifest's [[devices]] (default: one
        /// emulator, or every listed board).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        devices: Option<u16>,
        /// Retry a failed test, and a device that would not boot or sync, up to N more times
        /// (a test that ended the device runs again on a fresh boot). A test that fails, then
        /// passes is reported as flaky, never as passed.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10))]
        retries: u32,
        /// Lab directory with the key that signs results.json (lab-key.pem, lab-cert.pem;
        /// made, self-signed, on first use). Default: $FQP_LAB, else ~/.config/fqp/lab.
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
        /// MQTT broker for the network tests: embedded (rumqttd in fqp), mosquitto (Debian's,
        /// started with a generated configuration), mqtt://[user:password@]host:port, or
        /// mqtts://[user:password@]host:port (TLS; devices present certificates from the lab
        /// root, pki-root.crt in the lab directory, which the broker must trust).
        #[arg(long, value_name = "BROKER", default_value = "embedded")]
        broker: fqp_lab::Broker,
        /// The CA certificate (PEM or DER) an mqtts:// broker's certificate chains to
        /// (default: the lab root, for a broker given a certificate by `fqp pki`).
        #[arg(long, value_name = "FILE")]
        broker_ca: Option<PathBuf>,
    },
    /// List the tests of the port's image: timeouts, required capabilities, whether each is
    /// required for qualification and whether it runs on this port.
    ///
    /// Builds the image and boots the device once to ask it.
    List {
        #[command(flatten)]
        selection: Selection,
    },
    /// Merge the parts of one partitioned run (`qualify --partition I/N`) into one report.
    ///
    /// Every part 1..N must be given once, of one port, image, selection and harness, each
    /// with a valid signature by a trusted signer (as `fqp verify` checks); anything else is
    /// refused (exit 2). The merged results are judged again (QUALIFIED only as a whole) and
    /// signed with this lab's key. Writes the reports to --out; exits like `qualify`.
    Merge {
        /// results.json files to merge.
        #[arg(required = true, value_name = "RESULTS")]
        results: Vec<PathBuf>,
        /// Directory for the merged reports.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lab directory with the key that signs the merged results, and whose certificate
        /// the parts must be signed with unless --trust says otherwise (as for qualify).
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
        /// Trust parts signed by this certificate (PEM), or issued by it (a CA) for signing
        /// results, instead of the lab's own certificate.
        #[arg(long, value_name = "CERT")]
        trust: Option<PathBuf>,
    },
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
    Verify {
        /// The results.json to check (its signature is <file>.sig).
        #[arg(value_name = "RESULTS")]
        results: PathBuf,
        /// Trust this signer's certificate (PEM), or, a CA, the results signers it issued.
        #[arg(long, value_name = "CERT")]
        trust: Option<PathBuf>,
        /// Lab directory whose lab-cert.pem is trusted when --trust is not given.
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
        /// The image that was qualified, when not at the path the results record.
        #[arg(long, value_name = "ELF")]
        image: Option<PathBuf>,
    },
    /// Check that this machine can qualify the port (toolchain, emulator or probe and chip,
    /// flash tool, console, signing key), and say how to fix what is missing.
    ///
    /// Exit status 0 when everything needed is there, 1 otherwise.
    Doctor {
        /// Directory of the port (holds port.toml); without it, the reference setup (QEMU).
        #[arg(long, value_name = "DIR")]
        port: Option<PathBuf>,
        /// Lab directory with the signing key (as for qualify).
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
    },
    /// List the debug probes and serial ports in view (USB ids, serial numbers), or search
    /// probe-rs's chip database.
    Devices {
        /// Instead, list the chips whose name starts with this (`x` matches any character).
        #[arg(long, value_name = "PREFIX")]
        chips: Option<String>,
    },
    /// Create a new port from the port template, named for your board, with the chosen
    /// libraries' test suites wired in. It builds (and qualifies on the template's emulated
    /// board) as generated; then follow the PORT: markers and PORTING.md.
    Init {
        /// Directory to create (must not exist, or be empty).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The board, as a human reads it (port.board).
        #[arg(long)]
        board: String,
        /// Short port name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Who makes the port (port.vendor).
        #[arg(long)]
        vendor: Option<String>,
        /// Libraries to include, comma-separated (kernel is always included).
        #[arg(long, value_delimiter = ',', value_name = "LIB,…")]
        libs: Vec<String>,
    },
    /// Make the lab's PKI with rcgen: a root CA, the broker's certificate (for broker.fqp.lab
    /// and the given address), one client certificate per device, and the bad cases the TLS
    /// tests use (untrusted CA, expired, wrong host name, malformed, foreign client).
    Pki {
        /// Directory for the .crt/.key files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The broker's address as the devices reach it (a certificate name).
        #[arg(long, value_name = "IP", default_value = "10.0.2.2")]
        broker_ip: String,
        /// Device ids to make client certificates for.
        #[arg(long = "device", value_name = "ID", default_values_t = vec!["1".to_string()])]
        devices: Vec<String>,
        /// Lab directory whose root CA signs (made there on first use; as for qualify).
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
    },
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
    Bench {
        /// Directory of the port (holds port.toml), or the manifest file itself.
        #[arg(long, value_name = "DIR")]
        port: PathBuf,
        /// Directory for the reports.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// results.json of an earlier `fqp bench` (or `fqp qualify`) to compare with.
        #[arg(long, value_name = "RESULTS")]
        baseline: Option<PathBuf>,
        /// How much worse than the baseline a figure may be, in percent.
        #[arg(long, value_name = "PERCENT", default_value_t = 2.0)]
        tolerance: f64,
        /// Only benchmarks whose `perf/name` contains this text (repeatable).
        #[arg(long = "test", value_name = "PATTERN")]
        tests: Vec<String>,
        /// Also count the instructions the emulated device executes, by function, and print
        /// the functions that take most (written whole to <out>/profile.txt). The emulator
        /// runs tens of times slower: profile one benchmark at a time (--test).
        #[arg(long)]
        profile: bool,
        /// Lab directory with the key that signs results.json (as for qualify).
        #[arg(long, value_name = "DIR")]
        lab: Option<PathBuf>,
    },
    /// Build the port's firmware and print the image path.
    Build {
        /// Directory of the port (holds port.toml), or the manifest file itself.
        #[arg(long, value_name = "DIR")]
        port: PathBuf,
    },
}

/// The port and which of its tests: shared by `qualify` and `list`.
#[derive(clap::Args)]
struct Selection {
    /// Directory of the port (holds port.toml), or the manifest file itself.
    #[arg(long, value_name = "DIR")]
    port: PathBuf,
    /// Only this test group (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Only tests whose `group/name` contains this text (repeatable).
    #[arg(long = "test", value_name = "PATTERN")]
    tests: Vec<String>,
    /// Only tests that need this capability (repeatable).
    #[arg(long = "capability", value_name = "NAME")]
    capabilities: Vec<String>,
}

/// Writes one line to stdout. A reader that went away (`fqp … | head`) is not an error of
/// the run: the exit status still tells the verdict.
pub(crate) fn out_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Parses `I/N` with 1 <= I <= N.
fn parse_partition(s: &str) -> Result<fqp_reports::Partition, String> {
    let bad = || format!("{s:?} is not a partition: write I/N with 1 <= I <= N, for example 2/4");
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

/// `fqp merge`: checks that the parts are authentic and form one whole, joins them, states
/// the qualification of the whole, writes and signs the reports.
fn merge(
    results: &[PathBuf],
    out: &std::path::Path,
    lab: Option<&std::path::Path>,
    trust: Option<&std::path::Path>,
) -> ExitCode {
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
        Cmd::Qualify {
            selection:
                Selection {
                    port,
                    groups,
                    tests,
                    capabilities,
                },
            out,
            partition,
            devices,
            retries,
            lab,
            broker,
            broker_ca,
        } => {
            let opts = qualify::Options {
                port,
                out,
                groups,
                tests,
                capabilities,
                partition,
                devices: devices.map(usize::from),
                retries,
                lab,
                broker,
                broker_ca,
                progress: !cli.quiet,
                bench: false,
                profile: None,
            };
            let f = qualify::qualify(&opts);
            out_line(&qualify::summary(&f.run, &f.out));
            if let Some(e) = &f.report_error {
                eprintln!("error: {e}");
            }
            ExitCode::from(f.exit_code())
        }
        Cmd::List {
            selection:
                Selection {
                    port,
                    groups,
                    tests,
                    capabilities,
                },
        } => {
            let opts = qualify::Options {
                port,
                groups,
                tests,
                capabilities,
                ..Default::default()
            };
            match qualify::list(&opts) {
                Ok(lines) => {
                    for l in lines {
                        out_line(&l);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Init {
            dir,
            board,
            name,
            vendor,
            libs,
        } => {
            let root = init::fqp_root();
            let made = init::init(&init::Request {
                dir: &dir,
                name: name.as_deref(),
                board: &board,
                vendor: vendor.as_deref(),
                libs: &libs,
                fqp_root: &root,
            });
            match made {
                Ok(files) => {
                    out_line(&format!(
                        "created {} ({} files)",
                        dir.display(),
                        files.len()
                    ));
                    out_line(&format!(
                        "next:\n  fqp qualify --port {0}     # builds and qualifies it (the template's emulated board)\n  then follow the PORT: markers; {0}/PORTING.md explains each step",
                        dir.display()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Pki {
            out,
            broker_ip,
            devices,
            lab,
        } => match fqp_lab::Pki::make(&broker_ip, &devices, Some(&verify::lab_dir(lab.as_deref())))
            .and_then(|p| p.write_with_keys(&out))
        {
            Ok(files) => {
                for f in files {
                    out_line(&f.display().to_string());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Doctor { port, lab } => {
            let findings = doctor::doctor(port.as_deref(), lab.as_deref());
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
        Cmd::Devices { chips } => {
            let lines = match chips {
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
        Cmd::Merge {
            results,
            out,
            lab,
            trust,
        } => merge(&results, &out, lab.as_deref(), trust.as_deref()),
        Cmd::Verify {
            results,
            trust,
            lab,
            image,
        } => {
            let v = verify::verify(
                &results,
                trust.as_deref(),
                &verify::lab_dir(lab.as_deref()),
                image.as_deref(),
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
        Cmd::Bench {
            port,
            out,
            baseline,
            tolerance,
            tests,
            profile,
            lab,
        } => {
            let baseline = match baseline.map(|b| bench::load(&b)).transpose() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = qualify::Options {
                port,
                out,
                groups: vec![bench::GROUP.into()],
                tests,
                retries: 0,
                lab,
                progress: !cli.quiet,
                bench: true,
                profile: profile.then(Default::default),
                ..Default::default()
            };
            let f = qualify::qualify(&opts);
            let (run, out) = (&f.run, &f.out);
            let cmp = bench::compare(run, baseline.as_ref(), tolerance, &opts.tests);
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
                let whole = p.table(usize::MAX);
                let file = out.join("profile.txt");
                if let Err(e) = std::fs::write(&file, &whole) {
                    eprintln!("error: {}: {e}", file.display());
                }
                out_line(&format!(
                    "instructions executed by function (all of them: {}):\n{}",
                    file.display(),
                    p.table(25)
                ));
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
                    "REGRESSION beyond {tolerance}%: {}",
                    cmp.regressions.join(", ")
                ));
                return ExitCode::from(1);
            }
            ExitCode::from(code)
        }
        Cmd::Build { port } => {
            let built = manifest::load(&port)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    let out = qualify::out_dir(&qualify::Options::default(), &m.port.name);
                    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
                    let tc = firmware::detect(&m.build.target)?;
                    firmware::build(&m, &tc, &out)
                });
            match built {
                Ok(img) => {
                    out_line(&format!(
                        "{}\nsha256 {}  {} bytes  {}",
                        img.elf.display(),
                        img.sha256,
                        img.size_bytes,
                        img.toolchain
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
