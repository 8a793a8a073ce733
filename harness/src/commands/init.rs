//! `fqp init`: a new port from the template.

use super::fail;
use crate::init;
use crate::progress::out_line;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to create (must not exist, or be empty).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The board, as a human reads it (port.board).
    #[arg(long)]
    pub board: String,
    /// Short port name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Who makes the port (port.vendor).
    #[arg(long)]
    pub vendor: Option<String>,
    /// Libraries to include, comma-separated: net, mqtt, keystore, tls, storage (kernel is
    /// always included).
    #[arg(long, value_delimiter = ',', value_name = "LIB,…")]
    pub libs: Vec<String>,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let root = init::fqp_root();
        let made = init::init(&init::Request {
            dir: &self.dir,
            name: self.name.as_deref(),
            board: &self.board,
            vendor: self.vendor.as_deref(),
            libs: &self.libs,
            fqp_root: &root,
        });
        match made {
            Ok(files) => {
                out_line(&format!(
                    "created {} ({} files)",
                    self.dir.display(),
                    files.len()
                ));
                out_line(&format!(
                    "next:\n  {1} qualify --port {0}     # builds and qualifies it (the template's emulated board)\n  then follow the PORT: markers; {0}/PORTING.md explains each step",
                    self.dir.display(),
                    this_command()
                ));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// How to run this fqp again from here: `fqp` when that is this program on `PATH`, else this
/// program's path (`cargo run` leaves it in the tree's target directory, not on `PATH`).
fn this_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "fqp".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| std::fs::canonicalize(d.join("fqp")).is_ok_and(|p| p == me))
    });
    if on_path {
        "fqp".into()
    } else {
        me.display().to_string()
    }
}
