//! What a built image holds, read from its ELF program headers: the bytes that are loaded
//! into the device's memory, where. Checked before the image is flashed (a Cortex-M image
//! starts with its vector table: the initial stack pointer, then the reset handler), and
//! written as the raw binary some flash tools take. The architecture the linker recorded is
//! checked against the target too: the emulator runs an Armv6-M image on a Cortex-M3, which
//! would also run Armv7-M code that a real Cortex-M0 cannot (a C library built for another
//! core, say), so the image's own attributes are the proof.

use super::BuildError;
use std::path::Path;

/// The loadable contents of `elf`: (physical address, bytes) of every `PT_LOAD` segment with
/// file contents.
fn segments(elf: &Path) -> Result<Vec<(u64, Vec<u8>)>, BuildError> {
    use object::elf::{FileHeader32, PT_LOAD};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::Endianness;
    let bad = |e: &dyn std::fmt::Display| BuildError::NotElf {
        elf: elf.to_path_buf(),
        why: e.to_string(),
    };
    let data = std::fs::read(elf).map_err(BuildError::file(elf))?;
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
        pieces.push((ph.p_paddr(endian) as u64, bytes.to_vec()));
    }
    Ok(pieces)
}

/// Checks that `elf` starts, at its lowest load address, with a Cortex-M vector table whose
/// reset handler is Thumb code (odd address) inside the image.
pub(super) fn check_vectors(elf: &Path) -> Result<(), BuildError> {
    let pieces = segments(elf)?;
    vectors_ok(&pieces).map_err(|problem| match problem {
        None => BuildError::Empty(elf.to_path_buf()),
        Some((at, reset)) => BuildError::Vectors {
            elf: elf.to_path_buf(),
            at,
            reset,
        },
    })
}

/// `Err(None)`: nothing to load; `Err(Some((table, reset)))`: the table's reset vector is not
/// Thumb code in the image.
fn vectors_ok(pieces: &[(u64, Vec<u8>)]) -> Result<(), Option<(u64, u64)>> {
    let (at, first) = pieces.iter().min_by_key(|p| p.0).ok_or(None)?;
    let word = |k: usize| {
        first
            .get(4 * k..4 * k + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
    };
    let reset = word(1).ok_or(Some((*at, 0)))?;
    let code = reset & !1;
    let inside = pieces
        .iter()
        .any(|(a, b)| code >= *a && code < a + b.len() as u64);
    if reset & 1 == 1 && inside {
        Ok(())
    } else {
        Err(Some((*at, reset)))
    }
}

/// An Arm M-profile architecture.
struct Arch {
    name: &'static str,
    /// The build attribute values (`Tag_CPU_arch`) that name it.
    tags: &'static [u64],
    /// The first part of its Rust targets' names.
    rust: &'static str,
}

/// In the order each runs the code of those before it.
const ARCHES: [Arch; 5] = [
    Arch {
        name: "Armv6-M",
        tags: &[11, 12],
        rust: "thumbv6m",
    },
    Arch {
        name: "Armv8-M Baseline",
        tags: &[16],
        rust: "thumbv8m.base",
    },
    Arch {
        name: "Armv7-M",
        tags: &[10],
        rust: "thumbv7m",
    },
    Arch {
        name: "Armv7E-M",
        tags: &[13],
        rust: "thumbv7em",
    },
    Arch {
        name: "Armv8-M Mainline",
        tags: &[17],
        rust: "thumbv8m.main",
    },
];

/// The `Tag_CPU_arch` value recorded in `elf`'s Arm build attributes (the linker keeps the
/// highest of the objects it linked), if it has any.
fn recorded_arch(elf: &Path) -> Result<Option<u64>, BuildError> {
    use object::elf::{FileHeader32, SHT_ARM_ATTRIBUTES};
    use object::read::elf::{FileHeader, SectionHeader};
    use object::Endianness;
    let bad = |e: object::read::Error| BuildError::NotElf {
        elf: elf.to_path_buf(),
        why: e.to_string(),
    };
    let data = std::fs::read(elf).map_err(BuildError::file(elf))?;
    let header = FileHeader32::<Endianness>::parse(&*data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, &*data).map_err(bad)?;
    for section in sections.iter() {
        if section.sh_type(endian) != SHT_ARM_ATTRIBUTES {
            continue;
        }
        let mut subsections = section
            .attributes(endian, &*data)
            .map_err(bad)?
            .subsections()
            .map_err(bad)?;
        while let Some(sub) = subsections.next().map_err(bad)? {
            if sub.vendor() != b"aeabi" {
                continue;
            }
            let mut subsubs = sub.subsubsections();
            while let Some(subsub) = subsubs.next().map_err(bad)? {
                if subsub.tag() == object::elf::Tag_File {
                    return cpu_arch(subsub.attributes()).map_err(bad);
                }
            }
        }
    }
    Ok(None)
}

/// `Tag_CPU_arch` among a file's attributes. Tags 4, 5, 67 and the odd ones from 33 up hold
/// strings, 32 a number and a string, the rest numbers (the Arm ABI's rule).
fn cpu_arch(mut r: object::read::elf::AttributeReader) -> object::read::Result<Option<u64>> {
    while let Some(tag) = r.read_tag()? {
        match tag {
            6 => return r.read_integer().map(Some),
            4 | 5 | 67 => drop(r.read_string()?),
            32 => {
                r.read_integer()?;
                r.read_string()?;
            }
            t if t > 32 && t % 2 == 1 => drop(r.read_string()?),
            _ => drop(r.read_integer()?),
        }
    }
    Ok(None)
}

/// Checks that the code in `elf` is for an architecture `target` runs: nothing linked in was
/// built for a bigger core.
pub(super) fn check_arch(elf: &Path, target: &str) -> Result<(), BuildError> {
    let Some(found) = recorded_arch(elf)? else {
        return Ok(());
    };
    arch_fits(found, target).map_err(|(found, expected)| BuildError::Arch {
        elf: elf.to_path_buf(),
        target: target.to_string(),
        found,
        expected,
    })
}

/// `Err((found, expected))` names both when `found` (a `Tag_CPU_arch`) needs more than
/// `target`'s architecture; a target or value this table does not know passes.
fn arch_fits(found: u64, target: &str) -> Result<(), (&'static str, &'static str)> {
    let arch = target.split('-').next().unwrap_or(target);
    let want = ARCHES.iter().position(|a| a.rust == arch);
    let have = ARCHES.iter().position(|a| a.tags.contains(&found));
    match (want, have) {
        (Some(want), Some(have)) if have > want => Err((ARCHES[have].name, ARCHES[want].name)),
        _ => Ok(()),
    }
}

/// Writes `elf`'s loadable contents as a raw binary image (what many flash tools take):
/// every `PT_LOAD` segment with file contents, placed at its physical (load) address, from
/// the lowest one; gaps are filled with 0xFF, as erased flash reads.
pub fn write_raw_binary(elf: &Path, out: &Path) -> Result<(), BuildError> {
    let pieces = segments(elf)?;
    let start = pieces
        .iter()
        .map(|p| p.0)
        .min()
        .ok_or_else(|| BuildError::NotElf {
            elf: elf.to_path_buf(),
            why: "no loadable segment".into(),
        })?;
    let end = pieces
        .iter()
        .map(|p| p.0 + p.1.len() as u64)
        .max()
        .unwrap_or(start);
    if end - start > 64 << 20 {
        return Err(BuildError::Spread {
            elf: elf.to_path_buf(),
            mib: (end - start) >> 20,
        });
    }
    let mut bin = vec![0xFFu8; (end - start) as usize];
    for (addr, bytes) in pieces {
        let at = (addr - start) as usize;
        bin[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    std::fs::write(out, bin).map_err(BuildError::file(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn code_for_a_bigger_core_than_the_targets_is_refused() {
        assert_eq!(arch_fits(12, "thumbv6m-none-eabi"), Ok(()));
        assert_eq!(
            arch_fits(10, "thumbv6m-none-eabi"),
            Err(("Armv7-M", "Armv6-M"))
        );
        assert_eq!(
            arch_fits(11, "thumbv7em-none-eabihf"),
            Ok(()),
            "M0 code runs on an M4"
        );
        assert_eq!(
            arch_fits(13, "thumbv7m-none-eabi"),
            Err(("Armv7E-M", "Armv7-M"))
        );
        assert_eq!(
            arch_fits(99, "thumbv7m-none-eabi"),
            Ok(()),
            "unknown: not judged"
        );
    }

    #[test]
    fn an_image_starts_with_a_vector_table_pointing_into_its_code() {
        // Flash at 0: stack pointer, reset handler (Thumb) at 0x41, code up to 0x100.
        let mut flash = words(&[0x2000_4000, 0x41]);
        flash.resize(0x100, 0);
        let data = (0x2000_0000, vec![1, 2, 3, 4]);
        assert_eq!(vectors_ok(&[data.clone(), (0, flash.clone())]), Ok(()));
        assert_eq!(vectors_ok(&[]), Err(None), "nothing to load");
        let mut even = flash.clone();
        even[4..8].copy_from_slice(&0x40u32.to_le_bytes());
        assert_eq!(vectors_ok(&[(0, even)]), Err(Some((0, 0x40))), "not Thumb");
        let mut outside = flash;
        outside[4..8].copy_from_slice(&0x1001u32.to_le_bytes());
        assert_eq!(
            vectors_ok(&[(0, outside)]),
            Err(Some((0, 0x1001))),
            "not in the image"
        );
        assert_eq!(
            vectors_ok(&[(0, vec![0; 4])]),
            Err(Some((0, 0))),
            "too short"
        );
    }
}
