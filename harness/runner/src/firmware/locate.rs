//! Addresses of an image decoded to functions and source lines, as a debugger would: where a
//! device's fault happened.

use std::path::Path;

/// Where in the source an address of the image is.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The innermost function (inlined or not), demangled without its hash.
    pub function: Option<String>,
    /// `file:line`.
    pub source: Option<String>,
}

impl Located {
    /// `in <function> at <file:line>`, as much of it as is known.
    pub fn place(&self) -> String {
        let mut place = Vec::new();
        if let Some(f) = &self.function {
            place.push(format!("in {f}"));
        }
        if let Some(s) = &self.source {
            place.push(format!("at {s}"));
        }
        place.join(" ")
    }
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
