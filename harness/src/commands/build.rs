//! `fqp build`: the port's firmware, built as a run builds it.

use super::fail;
use crate::progress::out_line;
use fqp_runner::{firmware, manifest, qualify, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the port (holds port.toml), or the manifest file itself.
    #[arg(long, value_name = "DIR")]
    pub port: PathBuf,
}

impl Args {
    pub fn run(self) -> ExitCode {
        match build(&self.port) {
            Ok(img) => {
                out_line(&format!(
                    "{}\nsha256 {}  {} bytes  {}",
                    img.elf.display(),
                    img.sha256,
                    img.size_bytes,
                    img.toolchain
                ));
                if let Some(b) = &img.boot {
                    out_line(&format!(
                        "boot loader {}\nsigned image {} (version {}, the lab's code-signing key)",
                        b.elf.display(),
                        b.signed.display(),
                        b.version
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    }
}

/// Builds the port's firmware into its default output directory.
fn build(port: &Path) -> Result<firmware::Image, Error> {
    let m = manifest::load(port)?;
    let out = qualify::out_dir(&qualify::Options::default(), &m.port.name);
    std::fs::create_dir_all(&out).map_err(|source| Error::Output {
        path: out.clone(),
        source,
    })?;
    let tc = firmware::detect(&m.build.target)?;
    let lab = fqp_runner::sign::lab_dir(None);
    Ok(firmware::build(&m, &tc, &out, &lab)?)
}
