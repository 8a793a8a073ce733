//! The payload of a firmware ELF: its loadable bytes as they lie in the board's memory, from
//! the lowest load address (what `objcopy -O binary` writes).

use crate::OtaError;

/// The widest hole between two loadable segments filled in (with zeros): a wider one means
/// segments in separate memories (flash and RAM), which one image cannot hold.
const MAX_GAP: u64 = 64 * 1024;

/// The load address and the bytes of `elf`'s loadable segments (those with file contents,
/// at their physical addresses: initialised data at its place in flash).
pub fn payload_from_elf(elf: &[u8]) -> Result<(u32, Vec<u8>), OtaError> {
    let file = object::File::parse(elf).map_err(|e| OtaError::Elf(e.to_string()))?;
    let object::File::Elf32(elf32) = &file else {
        return Err(OtaError::Elf("not a 32-bit ELF".into()));
    };
    let endian = elf32.endian();
    let mut segments: Vec<(u64, &[u8])> = Vec::new();
    for seg in elf32.elf_program_headers() {
        use object::read::elf::ProgramHeader;
        if seg.p_type(endian) != object::elf::PT_LOAD || seg.p_filesz(endian) == 0 {
            continue;
        }
        let data = seg
            .data(endian, elf)
            .map_err(|_| OtaError::Elf("a segment outside the file".into()))?;
        segments.push((u64::from(seg.p_paddr(endian)), data));
    }
    segments.sort_by_key(|s| s.0);
    let Some(&(start, _)) = segments.first() else {
        return Err(OtaError::Elf("no loadable segment".into()));
    };
    let mut out = Vec::new();
    for (addr, data) in segments {
        let at = addr - start;
        let end = out.len() as u64;
        if at < end {
            return Err(OtaError::Elf(format!("segments overlap at {addr:#x}")));
        }
        if at - end > MAX_GAP {
            return Err(OtaError::Elf(format!(
                "a gap of {} bytes before {addr:#x}: segments in separate memories",
                at - end
            )));
        }
        out.resize(at as usize, 0);
        out.extend_from_slice(data);
    }
    let start =
        u32::try_from(start).map_err(|_| OtaError::Elf("load address above 4 GiB".into()))?;
    Ok((start, out))
}
