//! Which toolchain builds the port's firmware. Two are supported, found in this order:
//! 1. the `rustc` on `PATH` (usually rustup's) when its sysroot has the target's standard
//!    library (`rustup target add <target>`);
//! 2. Debian's `rustc-web` (`/usr/bin/rustc`), building `core` and `alloc` from `rust-web-src`
//!    with `-Zbuild-std`, linked by LLVM's `ld.lld`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A toolchain able to build for the port's target.
#[derive(Debug, Clone, PartialEq)]
pub enum Toolchain {
    /// The target's prebuilt standard library is installed.
    Installed { cargo: PathBuf, rustc: PathBuf },
    /// Debian's toolchain, building the standard library from source.
    BuildStd {
        cargo: PathBuf,
        rustc: PathBuf,
        linker: PathBuf,
    },
}

impl Toolchain {
    pub fn describe(&self) -> String {
        match self {
            Toolchain::Installed { rustc, .. } => {
                format!("{} (installed target)", version_of(rustc))
            }
            Toolchain::BuildStd { rustc, linker, .. } => {
                format!(
                    "{} (-Zbuild-std, linker {})",
                    version_of(rustc),
                    linker.display()
                )
            }
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Toolchain::Installed { .. } => "installed",
            Toolchain::BuildStd { .. } => "build-std",
        }
    }
}

fn version_of(rustc: &Path) -> String {
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| rustc.display().to_string())
}

fn sysroot(rustc: &Path) -> Option<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The newest `ld.lld` installed by Debian's `lld-N` packages, or one on `PATH`.
fn find_lld() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(dir) = std::fs::read_dir("/usr/lib") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(v) = name
                .strip_prefix("llvm-")
                .and_then(|v| v.parse::<u32>().ok())
            {
                let p = e.path().join("bin/ld.lld");
                if p.exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, p));
                }
            }
        }
    }
    best.map(|(_, p)| p).or_else(|| which("ld.lld"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// What was found on this machine.
#[derive(Debug, Clone, Default)]
struct Found {
    /// `cargo` and `rustc` on PATH, if the rustc's sysroot has the target installed.
    installed: Option<(PathBuf, PathBuf)>,
    debian_rustc: bool,
    debian_src: bool,
    lld: Option<PathBuf>,
}

fn look(target: &str) -> Found {
    let installed = match (which("rustc"), which("cargo")) {
        (Some(rustc), Some(cargo)) => sysroot(&rustc)
            .filter(|root| root.join("lib/rustlib").join(target).join("lib").is_dir())
            .map(|_| (cargo, rustc)),
        _ => None,
    };
    let debian = Path::new("/usr/bin/rustc");
    Found {
        installed,
        debian_rustc: debian.exists() && Path::new("/usr/bin/cargo").exists(),
        debian_src: sysroot(debian)
            .is_some_and(|r| r.join("lib/rustlib/src/rust/library").is_dir()),
        lld: find_lld(),
    }
}

fn choose(target: &str, f: Found) -> Result<Toolchain, ToolchainError> {
    if let Some((cargo, rustc)) = f.installed {
        return Ok(Toolchain::Installed { cargo, rustc });
    }
    if let (true, true, Some(linker)) = (f.debian_rustc, f.debian_src, f.lld.clone()) {
        return Ok(Toolchain::BuildStd {
            cargo: PathBuf::from("/usr/bin/cargo"),
            rustc: PathBuf::from("/usr/bin/rustc"),
            linker,
        });
    }
    let mut missing = Vec::new();
    if !f.debian_rustc {
        missing.push("Debian's rustc-web/cargo-web");
    }
    if !f.debian_src {
        missing.push("the standard library source (rust-web-src)");
    }
    if f.lld.is_none() {
        missing.push("an LLVM linker (lld)");
    }
    Err(ToolchainError {
        target: target.to_string(),
        missing: missing.join(", "),
    })
}

/// No toolchain on this machine can build for the port's target.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error(
    "no Rust toolchain can build for {target}: the rustc on PATH lacks the target's standard \
     library, and the build-std toolchain is incomplete (missing {missing}).\n  fix: `rustup \
     target add {target}`, or on Debian run `scripts/setup.sh` (apt-get install rustc-web \
     cargo-web rust-web-src rust-web-llvm lld-22)"
)]
pub struct ToolchainError {
    pub target: String,
    /// The parts of the build-std toolchain not found.
    pub missing: String,
}

/// Finds a toolchain for `target`, or says how to install one.
pub fn detect(target: &str) -> Result<Toolchain, ToolchainError> {
    choose(target, look(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_target_wins() {
        let f = Found {
            installed: Some(("cargo".into(), "rustc".into())),
            debian_rustc: true,
            debian_src: true,
            lld: Some("ld.lld".into()),
        };
        assert!(matches!(choose("t", f), Ok(Toolchain::Installed { .. })));
    }

    #[test]
    fn build_std_needs_source_and_linker() {
        let f = Found {
            installed: None,
            debian_rustc: true,
            debian_src: true,
            lld: Some("/x/ld.lld".into()),
        };
        assert_eq!(
            choose("t", f),
            Ok(Toolchain::BuildStd {
                cargo: "/usr/bin/cargo".into(),
                rustc: "/usr/bin/rustc".into(),
                linker: "/x/ld.lld".into()
            })
        );
        let f = Found {
            installed: None,
            debian_rustc: true,
            debian_src: false,
            lld: None,
        };
        let e = choose("thumbv7m-none-eabi", f).unwrap_err().to_string();
        assert!(e.contains("rust-web-src") && e.contains("lld"), "{e}");
        assert!(e.contains("rustup target add thumbv7m-none-eabi"), "{e}");
        assert!(e.contains("scripts/setup.sh"), "{e}");
        assert!(!e.contains("rustc-web/cargo-web"), "{e}");
    }
}
