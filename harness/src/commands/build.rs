//! `fqp build`: the port's firmware, built as a run builds it.

use super::fail;
use fqp_runner::progress::out_line;
use fqp_runner::{firmware, manifest, qualify};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the port (holds port.toml), or the manifest file itself.
    #[arg(long, value_name = "DIR")]
    pub port: PathBuf,
}

impl Args {
    pub fn run(self) -> ExitCode {
        let built = manifest::load(&self.port)
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
            Err(e) => fail(e),
        }
    }
}
