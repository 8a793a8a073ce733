//! `fqp init`: a new port from `port-template/`, named for the vendor's board, with the chosen
//! libraries' test suites wired in, that builds (and, on the template's emulated board,
//! qualifies) as generated. The vendor then follows the `PORT:` markers and `PORTING.md`.

use fqp_runner::manifest::relative;
use std::path::{Path, PathBuf};

/// A library a port can include: the template's feature that carries its suites (and
/// drivers) into the image, and the capabilities it qualifies.
pub struct Library {
    pub name: &'static str,
    /// The template's cargo feature (none: always in).
    pub feature: Option<&'static str>,
    pub capabilities: &'static [&'static str],
    pub about: &'static str,
}

/// The libraries this fqp ships with suites for.
pub const LIBRARIES: &[Library] = &[
    Library {
        name: "kernel",
        feature: None,
        capabilities: &["kernel"],
        about: "the RTOS kernel (always included)",
    },
    Library {
        name: "net",
        feature: Some("net"),
        capabilities: &["network"],
        about: "TCP/IP over the board's Ethernet (a driver outline in src/ethernet.rs)",
    },
    Library {
        name: "mqtt",
        feature: Some("mqtt"),
        capabilities: &["network"],
        about: "the MQTT client (with net)",
    },
    Library {
        name: "keystore",
        feature: Some("keystore"),
        capabilities: &["keystore"],
        about: "keys and certificates",
    },
    Library {
        name: "tls",
        feature: Some("tls"),
        capabilities: &["network", "keystore"],
        about: "TLS 1.3 (with net and keystore)",
    },
    Library {
        name: "storage",
        feature: Some("storage"),
        capabilities: &["storage"],
        about: "the keystore kept across resets (a host file until the flash has a driver)",
    },
];

/// What to create.
pub struct Request<'a> {
    pub dir: &'a Path,
    /// Port name (letters, digits, `-`, `_`); default: the directory's name.
    pub name: Option<&'a str>,
    pub board: &'a str,
    pub vendor: Option<&'a str>,
    pub libs: &'a [String],
    /// The fqp tree (holds `port-template/`, `kernel/`, `test-suites/`).
    pub fqp_root: &'a Path,
}

/// The fqp tree this binary was built from.
pub fn fqp_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A port could not be made from the template.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{0:?} is not a valid port name\n  fix: use letters, digits, `-` and `_` (pass --name, or \
         name the directory so)"
    )]
    Name(String),
    #[error("unknown library {name:?}\n  fix: choose from {known}")]
    Library { name: String, known: String },
    #[error(
        "{} exists and is not empty\n  fix: choose a new directory; fqp init never overwrites",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(
        "no port template at {}\n  fix: run the fqp built from a complete fqp tree",
        .0.display()
    )]
    NoTemplate(PathBuf),
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl InitError {
    fn file(path: &Path) -> impl FnOnce(std::io::Error) -> InitError {
        let path = path.to_path_buf();
        move |source| InitError::File { path, source }
    }
}

/// Creates the port; returns the files written (relative to `dir`).
pub fn init(r: &Request<'_>) -> Result<Vec<PathBuf>, InitError> {
    let dir_name = r
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = r.name.unwrap_or(&dir_name);
    check(r, name)?;
    let template = r.fqp_root.join("port-template");
    std::fs::create_dir_all(r.dir).map_err(InitError::file(r.dir))?;
    // Canonical paths (no `..`, no links): the dependency paths written into the new port
    // are computed from them, so `fqp init ../my-board` points where `/abs/my-board` would.
    let dir = std::fs::canonicalize(r.dir).map_err(InitError::file(r.dir))?;
    let root = std::fs::canonicalize(r.fqp_root).map_err(InitError::file(r.fqp_root))?;
    let mut written = Vec::new();
    copy_tree(&template, &dir, Path::new(""), &mut written)?;
    name_package(&dir, &root, name, r.board)?;
    choose_libraries(&dir, r.libs)?;
    name_manifest(&dir, r, name)?;
    // The name the device reports at sync.
    let board_rs = dir.join("src/board.rs");
    let text = read(&board_rs)?.replace("\"lm3s6965\"", &format!("\"{name}\""));
    write(&board_rs, &text)?;
    Ok(written)
}

/// What must hold before anything is written: a valid name, known libraries, an empty
/// directory, a template to copy.
fn check(r: &Request<'_>, name: &str) -> Result<(), InitError> {
    if !valid_name(name) {
        return Err(InitError::Name(name.to_string()));
    }
    for lib in r.libs {
        if !LIBRARIES.iter().any(|l| l.name == lib) {
            return Err(InitError::Library {
                name: lib.clone(),
                known: LIBRARIES
                    .iter()
                    .map(|l| format!("{} ({})", l.name, l.about))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    if r.dir.exists()
        && std::fs::read_dir(r.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(InitError::NotEmpty(r.dir.to_path_buf()));
    }
    let template = r.fqp_root.join("port-template");
    if !template.join("port.toml").is_file() {
        return Err(InitError::NoTemplate(template));
    }
    Ok(())
}

/// Cargo.toml (and its lock file): the package and binary named for the port, the path
/// dependencies pointing into the fqp tree at `root`.
fn name_package(dir: &Path, root: &Path, name: &str, board: &str) -> Result<(), InitError> {
    let cargo = dir.join("Cargo.toml");
    let mut text = read(&cargo)?;
    let package = format!("fqp-port-{name}");
    text = text
        .replace("fqp-port-lm3s6965", &package)
        .replace(
            "description = \"fqp port template: TI LM3S6965 (Cortex-M3), as emulated by QEMU lm3s6965evb\"",
            &format!("description = \"fqp port: {}\"", toml_escape(board)),
        );
    for (dep, sub) in [
        ("../kernel", "kernel"),
        ("../test-suites/testkit", "test-suites/testkit"),
        ("../libs/port", "libs/port"),
        ("../libs/port-cortex-m", "libs/port-cortex-m"),
        ("../libs/port-build", "libs/port-build"),
        ("../test-suites/kernel", "test-suites/kernel"),
        ("../test-suites/perf", "test-suites/perf"),
        ("../test-suites/net", "test-suites/net"),
        ("../test-suites/security", "test-suites/security"),
        ("../libs/net", "libs/net"),
    ] {
        let to = relative(&root.join(sub), dir);
        text = text.replace(
            &format!("path = \"{dep}\""),
            &format!("path = {:?}", to.display().to_string()),
        );
    }
    write(&cargo, &text)?;
    // The template's lock file pins the same dependencies (a build needs no new resolution);
    // only the package's own name changes.
    let lock = dir.join("Cargo.lock");
    if lock.exists() {
        let text = read(&lock)?.replace("\"fqp-port-lm3s6965\"", &format!("\"{package}\""));
        write(&lock, &text)?;
    }
    Ok(())
}

/// Cargo.toml: the chosen libraries' features on by default, so that a plain `cargo build`
/// and `fqp` build the same image.
fn choose_libraries(dir: &Path, libs: &[String]) -> Result<(), InitError> {
    let features: Vec<String> = LIBRARIES
        .iter()
        .filter(|l| libs.iter().any(|n| n == l.name))
        .filter_map(|l| l.feature)
        .map(|f| format!("\"{f}\""))
        .collect();
    let cargo = dir.join("Cargo.toml");
    let text = read(&cargo)?.replace(
        "\ndefault = []\n",
        &format!("\ndefault = [{}]\n", features.join(", ")),
    );
    write(&cargo, &text)
}

/// port.toml: name, board, vendor, and the capabilities of the chosen libraries.
fn name_manifest(dir: &Path, r: &Request<'_>, name: &str) -> Result<(), InitError> {
    let manifest = dir.join("port.toml");
    let mut text = read(&manifest)?;
    text = text
        .replace("name = \"lm3s6965\"", &format!("name = \"{name}\""))
        .replace(
            "board = \"TI LM3S6965 (Cortex-M3), emulated by QEMU\"",
            &format!("board = \"{}\"", toml_escape(r.board)),
        )
        .replace(
            "vendor = \"fqp project\"",
            &format!(
                "vendor = \"{}\"",
                toml_escape(r.vendor.unwrap_or("(your company)"))
            ),
        );
    let mut caps = vec!["kernel", "test-irq", "heap"];
    for lib in r.libs {
        if let Some(l) = LIBRARIES.iter().find(|l| l.name == lib) {
            for c in l.capabilities {
                if !caps.contains(c) {
                    caps.push(c);
                }
            }
        }
    }
    text = text.replace(
        "capabilities = [\"kernel\", \"test-irq\", \"heap\"]",
        &format!(
            "capabilities = [{}]",
            caps.iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    write(&manifest, &text)
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn read(p: &Path) -> Result<String, InitError> {
    std::fs::read_to_string(p).map_err(InitError::file(p))
}

fn write(p: &Path, text: &str) -> Result<(), InitError> {
    std::fs::write(p, text).map_err(InitError::file(p))
}

/// Copies the template (without build output) into `to`.
fn copy_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), InitError> {
    let dir = from.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(InitError::file(&dir))?;
    for e in entries {
        let e = e.map_err(InitError::file(&dir))?;
        let name = e.file_name();
        if name == "target" {
            continue;
        }
        let r = rel.join(&name);
        let kind = e.file_type().map_err(InitError::file(&e.path()))?;
        if kind.is_dir() {
            std::fs::create_dir_all(to.join(&r)).map_err(InitError::file(&to.join(&r)))?;
            copy_tree(from, to, &r, written)?;
        } else {
            std::fs::copy(from.join(&r), to.join(&r)).map_err(InitError::file(&to.join(&r)))?;
            written.push(r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_root() {
        assert_eq!(
            relative(Path::new("/fqp/kernel"), Path::new("/work/ports/acme")),
            PathBuf::from("../../../fqp/kernel")
        );
        assert_eq!(
            relative(Path::new("/fqp/kernel"), Path::new("/fqp/ports/acme")),
            PathBuf::from("../../kernel")
        );
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("fqp-init-{}", std::process::id()));
        let root = fqp_root();
        let none: Vec<String> = Vec::new();
        let mqtt = vec!["mqtt".to_string(), "zigbee".to_string()];
        let mut req = Request {
            dir: &dir,
            name: Some("my board"),
            board: "B",
            vendor: None,
            libs: &none,
            fqp_root: &root,
        };
        let e = init(&req).unwrap_err().to_string();
        assert!(e.contains("not a valid port name"), "{e}");
        req.name = Some("ok");
        req.libs = &mqtt;
        let e = init(&req).unwrap_err().to_string();
        assert!(
            e.contains("unknown library \"zigbee\"")
                && e.contains("kernel (")
                && e.contains("tls ("),
            "{e}"
        );
        assert!(!dir.exists(), "nothing was written");
    }
}
