//! One module per subcommand: its arguments (a `clap::Args`) and its `run`.

pub mod bench;
pub mod build;
pub mod cloud;
pub mod devices;
pub mod doctor;
pub mod init;
pub mod list;
pub mod merge;
pub mod ota;
pub mod pki;
mod powercut;
pub mod qualify;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

/// The port and which of its tests: shared by `qualify` and `list`.
#[derive(clap::Args)]
pub struct Selection {
    /// Directory of the port (holds port.toml), or the manifest file itself.
    #[arg(long, value_name = "DIR")]
    pub port: PathBuf,
    /// Only this test group (repeatable).
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// Only tests whose `group/name` contains this text (repeatable).
    #[arg(long = "test", value_name = "PATTERN")]
    pub tests: Vec<String>,
    /// Only tests that need this capability (repeatable).
    #[arg(long = "capability", value_name = "NAME")]
    pub capabilities: Vec<String>,
}

impl Selection {
    /// The run's options for this selection, the rest as defaults.
    pub fn options(self) -> fqp_runner::qualify::Options {
        fqp_runner::qualify::Options {
            port: self.port,
            groups: self.groups,
            tests: self.tests,
            capabilities: self.capabilities,
            ..Default::default()
        }
    }
}

/// Prints `e` as the error it is and gives exit status 2 (the command could not be carried
/// out).
pub fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(fqp_reports::EXIT_INFRASTRUCTURE)
}
