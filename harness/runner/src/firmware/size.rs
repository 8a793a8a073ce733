//! The kernel's share of an image, by section kind and by kernel module, read from the
//! image's symbols and DWARF line tables: what the size comparison with FreeRTOS reports.

use std::path::{Path, PathBuf};

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
/// `src` (`queue.rs` is `queue`, `arch/armv7m.rs` is `arch`).
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
        assert_eq!(kernel_module_of_file(Path::new("arch/armv7m.rs")), "arch");
        assert_eq!(
            kernel_module_of_file(Path::new("heap/first_fit.rs")),
            "heap"
        );
    }
}
