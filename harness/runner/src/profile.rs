//! `fqp bench --profile`: where an emulated device's instructions go, function by function.
//!
//! QEMU runs one instruction per translation block and logs every block it executes
//! (`-d exec,nochain`), naming the function it is in from the image's symbols; each logged
//! line is one instruction executed. The log is read from QEMU's error stream as it is written
//! (gigabytes for a benchmark's two device-seconds, never stored), counted by function, and the
//! other lines of that stream go to `qemu.log` as usual. Under `-icount` the device's virtual
//! time still follows its instruction count, so the benchmarks measure the same work: only
//! slower in wall time (tens of times), which the harness allows for in its timeouts.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;

/// How much slower the device runs, in wall time, while profiled.
pub const SLOWDOWN: f64 = 60.0;

/// Instructions executed, by function, over every boot of a run.
#[derive(Debug, Default)]
pub struct Profile {
    counts: Mutex<HashMap<Vec<u8>, u64>>,
}

/// QEMU's options for one logged instruction per executed block: `one-insn-per-tb` since
/// QEMU 8.1, `-singlestep` before (the version is what `qemu --version` prints).
pub fn qemu_args(version: Option<(u32, u32)>) -> Vec<String> {
    let per_instruction = match version {
        Some((major, minor)) if (major, minor) >= (8, 1) => {
            vec!["-accel".into(), "tcg,one-insn-per-tb=on".into()]
        }
        _ => vec!["-singlestep".into()],
    };
    per_instruction
        .into_iter()
        .chain(["-d".into(), "exec,nochain".into()])
        .collect()
}

/// The `major.minor` of `qemu-system-* --version`'s first line.
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split("version ").nth(1)?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Profile {
    /// Counts the executed-block lines of QEMU's error stream; writes the others to `log`.
    /// Returns at the end of the stream (QEMU exited).
    pub fn feed(&self, stream: impl BufRead, mut log: impl Write) {
        let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
        for line in stream.split(b'\n').map_while(Result::ok) {
            match function_of(&line) {
                Some(f) => match counts.get_mut(f) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(f.to_vec(), 1);
                    }
                },
                None => {
                    let _ = log.write_all(&line);
                    let _ = log.write_all(b"\n");
                }
            }
        }
        let mut all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (f, n) in counts {
            *all.entry(f).or_default() += n;
        }
    }

    /// True until an instruction has been counted.
    pub fn is_empty(&self) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The `top` functions by instructions executed, with their share, as a table.
    ///
    /// With `started` — the symbols of an image a boot loader started — QEMU knew only the
    /// boot loader's symbols (its `-kernel`): the functions it named are the boot loader's,
    /// shown as such, and the addresses it could not name are named from the image's.
    pub fn table(&self, top: usize, started: Option<&Symbols>) -> String {
        let all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = all.values().sum();
        let mut named: HashMap<String, u64> = HashMap::new();
        for (f, &n) in all.iter() {
            let f = String::from_utf8_lossy(f);
            let address = u64::from_str_radix(&f, 16).ok();
            let (whose, name) = match (started, address) {
                (Some(image), Some(pc)) => ("", image.name(pc).unwrap_or(&f)),
                (Some(_), None) => ("boot loader: ", &*f),
                (None, _) => ("", &*f),
            };
            let name = format!("{whose}{:#}", rustc_demangle::demangle(name));
            *named.entry(name).or_default() += n;
        }
        let mut rows: Vec<(String, u64)> = named.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut t = format!("{:>14} {:>7}  function\n", "instructions", "share");
        for (f, n) in rows.iter().take(top) {
            let share = 100.0 * *n as f64 / total.max(1) as f64;
            t.push_str(&format!("{n:>14} {share:>6.2}%  {f}\n"));
        }
        t.push_str(&format!(
            "{total:>14} 100.00%  (all, {} functions)",
            rows.len()
        ));
        t
    }
}

/// The functions of an image by address, from its symbol table.
#[derive(Debug, Default)]
pub struct Symbols(Vec<(u64, u64, String)>);

impl Symbols {
    /// The function symbols of the ELF file `elf` (none when it cannot be read).
    pub fn of(elf: &std::path::Path) -> Symbols {
        use object::{Object, ObjectSymbol, SymbolKind};
        let Ok(data) = std::fs::read(elf) else {
            return Symbols::default();
        };
        let Ok(file) = object::File::parse(&*data) else {
            return Symbols::default();
        };
        let mut all: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                // Thumb functions' addresses carry the Thumb bit.
                let start = s.address() & !1;
                Some((start, start + s.size(), s.name().ok()?.to_string()))
            })
            .collect();
        all.sort();
        Symbols(all)
    }

    /// The function `pc` is in.
    pub fn name(&self, pc: u64) -> Option<&str> {
        let i = self.0.partition_point(|(start, _, _)| *start <= pc);
        let (_, end, name) = self.0.get(i.checked_sub(1)?)?;
        (pc < *end).then_some(name.as_str())
    }
}

/// The function named by one of QEMU's executed-block lines
/// (`Trace 0: 0x7f… [00000000/000004d0/00000110/ff020201] symbol`), or the block's address
/// where no symbol covers it; `None` for any other line.
fn function_of(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"Trace ")?;
    let open = rest.iter().position(|&b| b == b'[')?;
    let close = open + rest[open..].iter().position(|&b| b == b']')?;
    let name = rest.get(close + 1..).unwrap_or_default().trim_ascii();
    if !name.is_empty() {
        return Some(name);
    }
    // [cs_base/pc/flags/cflags]: the address, when the image has no symbol for it.
    rest[open + 1..close].split(|&b| b == b'/').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_instructions_by_function_and_passes_other_lines_on() {
        let log = "char device redirected to /dev/pts/3 (label serial0)\n\
            Trace 0: 0x7f7ef4000100 [00800400/000000c0/00000110/ff020201] Reset\n\
            Trace 0: 0x7f7ef4000240 [00800400/00004342/00000110/ff020201] _RNvNtCslIWEsdIyHqI_10fqp_kernel2rt10idle_entry\n\
            Trace 0: 0x7f7ef4000440 [00800400/00004344/00000110/ff020201] _RNvNtCslIWEsdIyHqI_10fqp_kernel2rt10idle_entry\n\
            Trace 0: 0x7f7ef4000580 [00800400/00fe0000/00000110/ff020201] \n";
        let p = Profile::default();
        let mut rest = Vec::new();
        p.feed(log.as_bytes(), &mut rest);
        p.feed(
            "Trace 0: 0x1 [0/c2/0/0] Reset\nTrace 0: 0x2 [0/4346/0/0] _RNvNtCslIWEsdIyHqI_10fqp_kernel2rt10idle_entry\n".as_bytes(),
            &mut rest,
        );
        assert_eq!(
            String::from_utf8(rest).unwrap(),
            "char device redirected to /dev/pts/3 (label serial0)\n"
        );
        let t = p.table(10, None);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].contains("3  50.00%  fqp_kernel::rt::idle_entry"),
            "{t}"
        );
        assert!(lines[2].contains("2  33.33%  Reset"), "{t}");
        assert!(lines[3].ends_with("00fe0000"), "{t}");
        assert!(lines[4].contains("6 100.00%  (all, 3 functions)"), "{t}");
        // Under a boot loader: QEMU named the boot loader's functions; the address is the
        // started image's, named from its symbols.
        let image = Symbols(vec![(0x00fe_0000, 0x00fe_0010, "main".into())]);
        let t = p.table(10, Some(&image));
        assert!(t.contains("boot loader: fqp_kernel::rt::idle_entry"), "{t}");
        assert!(t.contains("1  16.67%  main"), "{t}");
        assert_eq!(image.name(0x00fe_0010), None);
        assert_eq!(image.name(0x00fd_ffff), None);
    }

    #[test]
    fn one_instruction_per_block_the_way_the_installed_qemu_spells_it() {
        let v = parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)");
        assert_eq!(v, Some((7, 2)));
        assert_eq!(qemu_args(v)[0], "-singlestep");
        assert_eq!(
            qemu_args(Some((9, 0)))[..2],
            ["-accel", "tcg,one-insn-per-tb=on"]
        );
        assert_eq!(qemu_args(None)[1..], ["-d", "exec,nochain"]);
    }
}
