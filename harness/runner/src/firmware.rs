//! Building a port's firmware: pick a toolchain that can build for the port's target, run
//! cargo in the port's crate, and find the image.
//!
//! Two toolchains are supported, found in this order:
//! 1. the `rustc` on `PATH` (usually rustup's) when its sysroot has the target's standard
//!    library (`rustup target add <target>`);
//! 2. Debian's `rustc-web` (`/usr/bin/rustc`), building `core` and `alloc` from `rust-web-src`
//!    with `-Zbuild-std`, linked by LLVM's `ld.lld`.

use crate::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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

    fn kind(&self) -> &'static str {
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

fn choose(target: &str, f: Found) -> Result<Toolchain, String> {
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
    Err(format!(
        "no Rust toolchain can build for {target}: the rustc on PATH lacks the target's standard library, \
         and the build-std toolchain is incomplete (missing {}).\n  fix: `rustup target add {target}`, \
         or on Debian run `scripts/setup.sh` (apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22)",
        missing.join(", ")
    ))
}

/// Finds a toolchain for `target`, or says how to install one.
pub fn detect(target: &str) -> Result<Toolchain, String> {
    choose(target, look(target))
}

/// A built firmware image.
#[derive(Debug, Clone)]
pub struct Image {
    pub elf: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    pub toolchain: String,
    /// The source directory of the kernel crate the image was built with (from cargo's
    /// build messages), to tell the kernel's code from the rest.
    pub kernel_src: Option<PathBuf>,
}

/// The kernel's share of an image.
#[derive(Debug)]
pub struct KernelSize {
    pub sections: fqp_reports::Sections,
    /// Code bytes by kernel module (`task`, `queue`, `arch`, …), largest first.
    pub text_by_module: Vec<fqp_reports::ModuleBytes>,
}

/// The kernel's share of `elf`, by the kind of section it is in. Code is every byte of
/// machine code that the kernel's sources generated, wherever the compiler put it (DWARF line
/// tables: kernel functions inlined into a caller count, a test's code inlined into a kernel
/// function does not), together with the kernel's own symbols (functions with the library code
/// inlined into them, the hand-written switch handlers, which have no line table, and named
/// constants). Data and zeroed data are the kernel's symbols there. `None` without a symbol
/// table.
pub fn kernel_size(elf: &Path, kernel_src: Option<&Path>) -> Option<KernelSize> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionKind};
    let data = std::fs::read(elf).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let mut code = CodeMap::new(&file);
    if let Some(src) = kernel_src {
        // Line rows first: they say which module a byte's source is in. An image without
        // line tables (built without debug info) keeps the symbols' count.
        let _ = mark_lines_from(&file, src, &mut code);
    }
    let mut size = fqp_reports::Sections::default();
    let mut constants = std::collections::BTreeMap::<String, u64>::new();
    let mut any = false;
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(module) = kernel_module_of_symbol(name) else {
            continue;
        };
        let Some(section) = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        any = true;
        match section.kind() {
            // Thumb function symbols carry the Thumb bit in their address.
            SectionKind::Text => code.mark_unmarked(sym.address() & !1, sym.size(), module),
            SectionKind::ReadOnlyData | SectionKind::ReadOnlyString => {
                *constants.entry(module.to_string()).or_default() += sym.size();
            }
            SectionKind::Data => size.data += sym.size(),
            SectionKind::UninitializedData => size.bss += sym.size(),
            _ => {}
        }
    }
    let mut by_module = code.by_module();
    for (m, n) in constants {
        *by_module.entry(m).or_default() += n;
    }
    size.text = by_module.values().sum();
    let mut text_by_module: Vec<fqp_reports::ModuleBytes> = by_module
        .into_iter()
        .map(|(module, bytes)| fqp_reports::ModuleBytes { module, bytes })
        .collect();
    text_by_module.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.module.cmp(&b.module)));
    any.then_some(KernelSize {
        sections: size,
        text_by_module,
    })
}

/// The kernel module a symbol belongs to, if it is the kernel's: the path component after the
/// crate name in a mangled Rust name (`_RNv…10fqp_kernel5queue…`, `_ZN10fqp_kernel4task…`),
/// or `arch` for the port's hand-written `fqp_kernel_*` handlers.
fn kernel_module_of_symbol(name: &str) -> Option<&str> {
    let at = name.find("fqp_kernel")?;
    let rest = &name[at + "fqp_kernel".len()..];
    if rest.starts_with('_') {
        return Some("arch");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let len: usize = rest[..digits].parse().ok()?;
    rest.get(digits..digits + len)
}

/// The kernel module a source file of the kernel crate is in: its first path component below
/// `src` (`queue.rs` is `queue`, `arch/cortex_m3.rs` is `arch`).
fn kernel_module_of_file(relative: &Path) -> String {
    let first = relative.components().next();
    let name = first.map_or("lib".into(), |c| {
        c.as_os_str().to_string_lossy().into_owned()
    });
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// Which bytes of an image's code sections belong to the kernel, and to which module.
struct CodeMap {
    sections: Vec<(u64, Vec<u8>)>,
    /// Module names; byte value `n` in a section map is `modules[n - 1]`, 0 is not kernel.
    modules: Vec<String>,
}

impl CodeMap {
    fn new(file: &object::File) -> CodeMap {
        use object::{Object, ObjectSection, SectionKind};
        let sections = file
            .sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .map(|s| (s.address(), vec![0; s.size() as usize]))
            .collect();
        CodeMap {
            sections,
            modules: Vec::new(),
        }
    }

    fn id(&mut self, module: &str) -> u8 {
        let n = match self.modules.iter().position(|m| m == module) {
            Some(n) => n,
            None => {
                self.modules.push(module.to_string());
                self.modules.len() - 1
            }
        };
        u8::try_from(n + 1).unwrap_or(u8::MAX)
    }

    /// Marks `[start, start + len)` as `module`'s; `only_unmarked` leaves bytes already
    /// marked alone.
    fn mark_as(&mut self, start: u64, len: u64, module: &str, only_unmarked: bool) {
        let id = self.id(module);
        for (base, bytes) in &mut self.sections {
            let end = *base + bytes.len() as u64;
            let (lo, hi) = (start.max(*base), (start + len).min(end));
            if lo < hi {
                for b in &mut bytes[(lo - *base) as usize..(hi - *base) as usize] {
                    if !only_unmarked || *b == 0 {
                        *b = id;
                    }
                }
            }
        }
    }

    fn mark_unmarked(&mut self, start: u64, len: u64, module: &str) {
        self.mark_as(start, len, module, true);
    }

    fn by_module(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = vec![0u64; self.modules.len() + 1];
        for (_, bytes) in &self.sections {
            for &b in bytes {
                counts[b as usize] += 1;
            }
        }
        self.modules
            .iter()
            .zip(&counts[1..])
            .filter(|(_, &n)| n > 0)
            .map(|(m, &n)| (m.clone(), n))
            .collect()
    }
}

/// Marks the code whose DWARF line rows name a file under `src`, by module.
fn mark_lines_from(
    file: &object::File,
    src: &Path,
    code: &mut CodeMap,
) -> Result<(), gimli::Error> {
    use gimli::{EndianSlice, RunTimeEndian};
    use object::{Object, ObjectSection};
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or_default())
    };
    let sections = gimli::DwarfSections::load(load)?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    let text = |r: EndianSlice<RunTimeEndian>| String::from_utf8_lossy(r.slice()).into_owned();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let Some(program) = unit.line_program.clone() else {
            continue;
        };
        let comp_dir = unit.comp_dir.map(text).unwrap_or_default();
        // The kernel module of each file of this unit's line table (None: not the kernel's).
        let mut module_of: std::collections::HashMap<u64, Option<String>> = Default::default();
        let mut rows = program.rows();
        // The row that opened the current address range: its address and module.
        let mut open: Option<(u64, Option<String>)> = None;
        while let Some((header, row)) = rows.next_row()? {
            if let Some((start, Some(module))) = &open {
                let len = row.address().saturating_sub(*start);
                code.mark_as(*start, len, module, false);
            }
            if row.end_sequence() {
                open = None;
                continue;
            }
            let index = row.file_index();
            let module = match module_of.get(&index) {
                Some(m) => m.clone(),
                None => {
                    let path = row.file(header).map(|f| {
                        let mut p = PathBuf::from(&comp_dir);
                        if let Some(dir) = f.directory(header) {
                            p.push(text(dwarf.attr_string(&unit, dir)?));
                        }
                        p.push(text(dwarf.attr_string(&unit, f.path_name())?));
                        Ok::<_, gimli::Error>(p)
                    });
                    let m = match path {
                        Some(Ok(p)) => p.strip_prefix(src).ok().map(kernel_module_of_file),
                        _ => None,
                    };
                    module_of.insert(index, m.clone());
                    m
                }
            };
            open = Some((row.address(), module));
        }
    }
    Ok(())
}

/// `cargo build` of the port's crate in `dir` for its target and profile, into `target_dir`,
/// with the toolchain `tc` (and its build-std flags); the command and the cargo it runs.
fn cargo_build(m: &Manifest, tc: &Toolchain, dir: &Path, target_dir: &Path) -> (Command, PathBuf) {
    let (cargo, rustc) = match tc {
        Toolchain::Installed { cargo, rustc } | Toolchain::BuildStd { cargo, rustc, .. } => {
            (cargo, rustc)
        }
    };
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args([
            "build",
            "--message-format=json-render-diagnostics",
            "--target",
            &m.build.target,
        ])
        .args(["--profile", &m.build.profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTC", rustc)
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .envs(m.kernel_env());
    if let Some(bin) = &m.build.bin {
        cmd.args(["--bin", bin]);
    }
    if !m.build.features.is_empty() {
        cmd.args(["--features", &m.build.features.join(",")]);
    }
    if let Toolchain::BuildStd { linker, .. } = tc {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            m.build.target.to_uppercase().replace(['-', '.'], "_")
        );
        cmd.args([
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .env(var, linker);
    }
    (cmd, cargo.clone())
}

/// What cargo's JSON messages say was built: the executable, and the kernel crate's source
/// directory (for the size analysis by module).
fn artifacts(stdout: std::process::ChildStdout) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut executable = None;
    let mut kernel_src = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            executable = Some(PathBuf::from(exe));
        }
        if msg["target"]["name"] == "fqp_kernel" {
            kernel_src = msg["target"]["src_path"]
                .as_str()
                .and_then(|p| Path::new(p).parent())
                .map(Path::to_path_buf);
        }
    }
    (executable, kernel_src)
}

/// Builds the port's firmware into `out` (cargo's output to `build.log`, the image copied to
/// `firmware.elf`, which is what the run flashes and its results name). Returns the image.
///
/// Builds of one target directory (ports sharing it, one port with other features) take
/// turns, and each copies its image out before the next may link over cargo's copy of it: a
/// run never flashes an image another run built.
pub fn build(m: &Manifest, tc: &Toolchain, out: &Path) -> Result<Image, String> {
    let log = &out.join("build.log");
    let dir = m.crate_dir();
    if !dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "{}: `build.crate` points to {}, which has no Cargo.toml\n  fix: set build.crate to the firmware crate's directory, relative to the manifest",
            m.path.display(),
            dir.display()
        ));
    }
    // Each port's own target directory, unless FQP_FIRMWARE_TARGET_DIR names one its ports
    // share (the test command's many ports then build the target's core library once).
    let target_root = std::env::var_os("FQP_FIRMWARE_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| dir.join("target"), PathBuf::from);
    let target_dir = target_root.join(match m.build.variant {
        Some(v) => format!("fqp-{}-{v}", tc.kind()),
        None => format!("fqp-{}", tc.kind()),
    });
    let (mut cmd, cargo) = cargo_build(m, tc, &dir, &target_dir);
    tracing::info!(crate_dir = %dir.display(), toolchain = %tc.describe(), "building firmware");
    std::fs::create_dir_all(&target_dir).map_err(|e| format!("{}: {e}", target_dir.display()))?;
    let turn = fqp_reports::files::lock(&target_dir.join(".fqp-build.lock"))?;
    let mut child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    // An interrupted run kills the build (its output ends, and the wait below returns), and so
    // does a build that outlives its deadline.
    // cargo leads a process group of its own: killing the group stops its compilers too.
    let guard = fqp_process::Registered::group(child.id());
    let deadline = Duration::from_millis(m.timeouts.build_ms);
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let target = guard.target();
        std::thread::spawn(move || {
            let expired = matches!(
                finished.recv_timeout(deadline),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            expired && fqp_process::kill_registered(target)
        })
    };
    let mut logf = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let (executable, kernel_src) = artifacts(child.stdout.take().expect("piped"));
    drop(guard);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    drop(done);
    if watchdog.join().unwrap_or(false) {
        return Err(format!(
            "the firmware build did not finish within {} ms and was stopped (timeouts.build_ms); its log: {}\n  fix: look for what it waits on (a lock held by another cargo, a build script), or raise timeouts.build_ms",
            m.timeouts.build_ms,
            log.display()
        ));
    }
    let stderr_text = err_thread.join().unwrap_or_default();
    let _ = logf.write_all(stderr_text.as_bytes());
    if !status.success() {
        let tail: Vec<&str> = stderr_text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "firmware build failed ({status}); full log: {}\n{}",
            log.display(),
            tail.join("\n")
        ));
    }
    let built = executable.ok_or_else(|| {
        format!("the build produced no executable; if the crate has several binaries, set build.bin in {}", m.path.display())
    })?;
    let elf = out.join("firmware.elf");
    std::fs::copy(&built, &elf).map_err(|e| {
        format!(
            "copying the image {} to {}: {e}",
            built.display(),
            elf.display()
        )
    })?;
    drop(turn);
    let size_bytes = std::fs::metadata(&elf)
        .map_err(|e| format!("{}: {e}", elf.display()))?
        .len();
    Ok(Image {
        sha256: file_sha256(&elf)?,
        size_bytes,
        elf,
        toolchain: tc.describe(),
        kernel_src,
    })
}

/// Writes `elf`'s loadable contents as a raw binary image (what many flash tools take):
/// every `PT_LOAD` segment with file contents, placed at its physical (load) address, from
/// the lowest one; gaps are filled with 0xFF, as erased flash reads.
pub fn write_raw_binary(elf: &Path, out: &Path) -> Result<(), String> {
    use object::elf::{FileHeader32, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    let bad = |e: &dyn std::fmt::Display| format!("{}: not a 32-bit ELF image: {e}", elf.display());
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let header = FileHeader32::<Endianness>::parse(&*data).map_err(|e| bad(&e))?;
    let endian = header.endian().map_err(|e| bad(&e))?;
    let mut pieces = Vec::new();
    for ph in header
        .program_headers(endian, &*data)
        .map_err(|e| bad(&e))?
    {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let bytes = ph
            .data(endian, &*data)
            .map_err(|_| bad(&"segment outside the file"))?;
        pieces.push((ph.p_paddr(endian) as u64, bytes));
    }
    let start = pieces
        .iter()
        .map(|p| p.0)
        .min()
        .ok_or_else(|| bad(&"no loadable segment"))?;
    let end = pieces
        .iter()
        .map(|p| p.0 + p.1.len() as u64)
        .max()
        .unwrap_or(start);
    if end - start > 64 << 20 {
        return Err(format!(
            "{}: loadable segments span {} MiB (flash and RAM addresses mixed?); use {{image}} instead of {{bin}}",
            elf.display(),
            (end - start) >> 20
        ));
    }
    let mut bin = vec![0xFFu8; (end - start) as usize];
    for (addr, bytes) in pieces {
        let at = (addr - start) as usize;
        bin[at..at + bytes.len()].copy_from_slice(bytes);
    }
    std::fs::write(out, bin).map_err(|e| format!("{}: {e}", out.display()))
}

/// SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_symbols_and_files_name_their_module() {
        for (symbol, module) in [
            (
                "_RNvNtCslIWEsdIyHqI_10fqp_kernel2rt10idle_entry",
                Some("rt"),
            ),
            (
                "_RNvMs_NtCs5toOOsLLGn1_10fqp_kernel5queueINtB4_5QueuehKj10_E4send",
                Some("queue"),
            ),
            (
                "_ZN10fqp_kernel4task7suspend17h0123456789abcdefE",
                Some("task"),
            ),
            ("fqp_kernel_pendsv", Some("arch")),
            ("_RNvCs1_9fqp_suite4main", None),
            ("PendSV", None),
        ] {
            assert_eq!(kernel_module_of_symbol(symbol), module, "{symbol}");
        }
        assert_eq!(kernel_module_of_file(Path::new("queue.rs")), "queue");
        assert_eq!(
            kernel_module_of_file(Path::new("arch/cortex_m3.rs")),
            "arch"
        );
        assert_eq!(
            kernel_module_of_file(Path::new("heap/first_fit.rs")),
            "heap"
        );
    }

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
        let e = choose("thumbv7m-none-eabi", f).unwrap_err();
        assert!(e.contains("rust-web-src") && e.contains("lld"), "{e}");
        assert!(e.contains("rustup target add thumbv7m-none-eabi"), "{e}");
        assert!(e.contains("scripts/setup.sh"), "{e}");
        assert!(!e.contains("rustc-web/cargo-web"), "{e}");
    }
}

/// Where in the source an address of the image is.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The innermost function (inlined or not), demangled without its hash.
    pub function: Option<String>,
    /// `file:line`.
    pub source: Option<String>,
}

/// The function and source line of the code at `pc` in `elf` (its DWARF line tables and
/// symbols): a fault's program counter, decoded as a debugger would. `None` when the image
/// cannot be read or holds nothing for that address.
pub fn locate(elf: &Path, pc: u64) -> Option<Located> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(elf).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or_default())
    };
    // Thumb code addresses carry the Thumb bit.
    let pc = pc & !1;
    let demangle = |name: &str| format!("{:#}", rustc_demangle::demangle(name));
    let mut found = Located {
        function: None,
        source: None,
    };
    if let Ok(sections) = gimli::DwarfSections::load(load) {
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
        if let Ok(ctx) = addr2line::Context::from_dwarf(dwarf) {
            if let Ok(mut frames) = ctx.find_frames(pc).skip_all_loads() {
                if let Ok(Some(frame)) = frames.next() {
                    found.function = frame
                        .function
                        .as_ref()
                        .and_then(|f| f.raw_name().ok())
                        .map(|n| demangle(&n));
                    found.source = frame
                        .location
                        .and_then(|l| Some(format!("{}:{}", short_path(l.file?), l.line?)));
                }
            }
        }
    }
    if found.function.is_none() {
        // No debug information: the symbol the address falls in.
        found.function = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text)
            .find(|s| {
                let start = s.address() & !1;
                start <= pc && pc < start + s.size().max(1)
            })
            .and_then(|s| s.name().ok().map(demangle));
    }
    (found.function.is_some() || found.source.is_some()).then_some(found)
}

/// `path` without the directories above this checkout or the cargo registry's crate folder:
/// what a reader finds in their tree.
fn short_path(path: &str) -> String {
    // This crate is harness/runner in the checkout.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(|p| format!("{}/", p.display()))
        .unwrap_or_default();
    let rootless = path.strip_prefix(&root).unwrap_or(path);
    match rootless.find("/registry/src/") {
        Some(i) => rootless[i + "/registry/src/".len()..]
            .split_once('/')
            .map_or(rootless, |(_, rest)| rest)
            .to_string(),
        None => rootless.to_string(),
    }
}
