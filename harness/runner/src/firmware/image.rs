//! What a built image holds, read from its ELF program headers: the bytes that are loaded
//! into the device's memory, where. Checked before the image is flashed (a Cortex-M image
//! starts with its vector table: the initial stack pointer, then the reset handler), and
//! written as the raw binary some flash tools take.

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
