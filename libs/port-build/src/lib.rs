//! # fqp-port-build: what a port's `build.rs` does
//!
//! A port's build script is one call, `fqp_port_build::link_scripts()`: the port's
//! `memory.x` (its flash and RAM) and `device.x` (its interrupt names, when it has one) go
//! where cortex-m-rt's `link.x` includes them from, cargo relinks when either changes, and the
//! port's binaries are linked with `link.x` for whatever bare-metal target they are built for.
//! (Without it the linker finds the scripts only when run from the port's own directory, an
//! edited `memory.x` would not relink, and the `-Tlink.x` a `.cargo/config.toml` gives under
//! `[target.<triple>]` silently stops applying when the port's target changes in `port.toml`:
//! the image then links with no vector table and no code.)

use std::path::{Path, PathBuf};

/// The linker scripts a port may carry, by name; `memory.x` is required.
const SCRIPTS: [(&str, bool); 2] = [("memory.x", true), ("device.x", false)];

/// Copies the port's linker scripts to `OUT_DIR` and adds it to the linker's search path.
/// Panics (failing the build) with what is missing and where, as a build script should.
pub fn link_scripts() {
    link_scripts_from(".");
}

/// [`link_scripts`] with `memory.x` taken from `dir`, relative to the crate, and `device.x`
/// from there or else the crate's: for a crate that serves several boards, each with its
/// memory map (chosen by feature, say). Keep no `memory.x` at such a crate's root: the
/// linker looks in its working directory, the crate's, before anywhere else.
pub fn link_scripts_from(dir: &str) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dirs = [crate_dir.join(dir), crate_dir.clone()];
    let dirs = if dir == "." { &dirs[1..] } else { &dirs[..] };
    if let Err(e) = copy_scripts(dirs, &out) {
        panic!("{e}");
    }
    for (name, _) in SCRIPTS {
        for d in [Path::new(dir), Path::new(".")] {
            println!("cargo:rerun-if-changed={}", d.join(name).display());
        }
    }
    println!("cargo:rustc-link-search={}", out.display());
    // Only for the device: a build for the host (a check, a test) has no memory map.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        // Segments not padded to pages: else, with flash that does not start on a 64 KiB
        // boundary, the linker loads the ELF headers below it, over whatever is there.
        println!("cargo:rustc-link-arg-bins=--nmagic");
    }
}

/// Copies the scripts to `out`, each from the first of `dirs` that has it (`memory.x` only
/// from the first); an error names a required one that is missing.
fn copy_scripts(dirs: &[PathBuf], out: &Path) -> Result<(), String> {
    for (name, required) in SCRIPTS {
        let looked = if required { &dirs[..1] } else { dirs };
        let Some(from) = looked.iter().map(|d| d.join(name)).find(|f| f.is_file()) else {
            if required {
                return Err(format!(
                    "{} is missing: a port describes its flash and RAM there (see \
                     port-template/memory.x)",
                    dirs[0].join(name).display()
                ));
            }
            continue;
        };
        std::fs::copy(&from, out.join(name))
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_found_are_copied_and_a_missing_memory_map_is_named() {
        let base = std::env::temp_dir().join(format!("fqp-port-build-{}", std::process::id()));
        let (port, out) = (base.join("port"), base.join("out"));
        std::fs::create_dir_all(&port).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let e = copy_scripts(std::slice::from_ref(&port), &out).unwrap_err();
        assert!(e.contains("memory.x is missing"), "{e}");
        std::fs::write(port.join("memory.x"), "MEMORY {}").unwrap();
        copy_scripts(std::slice::from_ref(&port), &out).unwrap();
        assert!(out.join("memory.x").is_file());
        assert!(!out.join("device.x").exists(), "device.x is optional");
        // A board's directory: its memory map, the crate's device.x.
        let board = port.join("board");
        std::fs::create_dir_all(&board).unwrap();
        std::fs::write(port.join("device.x"), "/* device */").unwrap();
        let e = copy_scripts(&[board.clone(), port.clone()], &out).unwrap_err();
        assert!(
            e.contains("board/memory.x is missing"),
            "not the crate's: {e}"
        );
        std::fs::write(board.join("memory.x"), "MEMORY { board }").unwrap();
        copy_scripts(&[board, port], &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("memory.x")).unwrap(),
            "MEMORY { board }"
        );
        assert!(out.join("device.x").is_file());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
