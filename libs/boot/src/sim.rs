//! A simulated NOR flash that can lose power at any operation (feature `sim`, host only): what
//! the boot loader's power-cut campaigns and the OTA platform layer's host tests run on.
//!
//! Erase sets whole sectors to 0xFF; program writes whole write units into erased bytes only —
//! programming over data panics, since that is a bug of the code under test, not a fault of
//! the flash. A cut chosen with [`Sim::cut_at`] happens at that erase or program operation,
//! counted from the call: the operation does not happen ([`Cut::Before`]) or half of it does
//! ([`Cut::Torn`]), and every operation after it fails until [`Sim::power_on`].

extern crate std;

use crate::{DeviceError, Flash};
use std::sync::Mutex;
use std::vec;
use std::vec::Vec;

/// How the power is cut at the chosen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The operation does not happen.
    Before,
    /// Half of it happens (half the bytes programmed or erased).
    Torn,
}

#[derive(Debug)]
struct Mem {
    bytes: Vec<u8>,
    /// Erase and program operations so far.
    ops: usize,
    cut: Option<(usize, Cut)>,
    dead: bool,
}

/// The flash: `sectors` sectors of `sector` bytes, programmed in units of `write`.
#[derive(Debug)]
pub struct Sim {
    mem: Mutex<Mem>,
    sector: u32,
    write: u32,
}

impl Sim {
    /// An erased flash.
    pub fn new(sectors: u32, sector: u32, write: u32) -> Self {
        Sim {
            mem: Mutex::new(Mem {
                bytes: vec![0xff; (sectors * sector) as usize],
                ops: 0,
                cut: None,
                dead: false,
            }),
            sector,
            write,
        }
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power at the `op`-th erase or program from now (0: the next).
    pub fn cut_at(&self, op: usize, how: Cut) {
        let mut m = self.mem();
        m.cut = Some((m.ops + op, how));
    }

    /// Power back (a reset): operations work again, no cut pending.
    pub fn power_on(&self) {
        let mut m = self.mem();
        m.dead = false;
        m.cut = None;
    }

    /// Erase and program operations so far.
    pub fn ops(&self) -> usize {
        self.mem().ops
    }

    /// The bytes from `offset`, `len` of them, as they are.
    pub fn bytes(&self, offset: u32, len: u32) -> Vec<u8> {
        self.mem().bytes[offset as usize..(offset + len) as usize].to_vec()
    }

    /// Flips bits of the byte at `offset` (damage, as a test makes it).
    pub fn flip(&self, offset: u32, bits: u8) {
        self.mem().bytes[offset as usize] ^= bits;
    }

    /// An operation begins: how much of it happens (`None`: all of it).
    fn begin(m: &mut Mem) -> Result<Option<Cut>, DeviceError> {
        if m.dead {
            return Err(DeviceError::Failed);
        }
        let n = m.ops;
        m.ops += 1;
        match m.cut {
            Some((at, how)) if at == n => {
                m.dead = true;
                Ok(Some(how))
            }
            _ => Ok(None),
        }
    }
}

impl Flash for Sim {
    fn size(&self) -> u32 {
        self.mem().bytes.len() as u32
    }
    fn erase_size(&self) -> u32 {
        self.sector
    }
    fn write_size(&self) -> u32 {
        self.write
    }
    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), DeviceError> {
        let m = self.mem();
        if m.dead {
            return Err(DeviceError::Failed);
        }
        let at = offset as usize;
        let src = m
            .bytes
            .get(at..at + buf.len())
            .ok_or(DeviceError::BadAddress)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn erase(&self, offset: u32, len: u32) -> Result<(), DeviceError> {
        let mut m = self.mem();
        if !offset.is_multiple_of(self.sector)
            || !len.is_multiple_of(self.sector)
            || (offset + len) as usize > m.bytes.len()
        {
            return Err(DeviceError::BadAddress);
        }
        let cut = Sim::begin(&mut m)?;
        let range = offset as usize..(offset + len) as usize;
        match cut {
            None => m.bytes[range].fill(0xff),
            Some(Cut::Before) => return Err(DeviceError::Failed),
            Some(Cut::Torn) => {
                let half = range.start + range.len() / 2;
                m.bytes[range.start..half].fill(0xff);
                return Err(DeviceError::Failed);
            }
        }
        Ok(())
    }
    fn program(&self, offset: u32, data: &[u8]) -> Result<(), DeviceError> {
        let mut m = self.mem();
        if !offset.is_multiple_of(self.write)
            || !data.len().is_multiple_of(self.write as usize)
            || offset as usize + data.len() > m.bytes.len()
        {
            return Err(DeviceError::BadAddress);
        }
        let at = offset as usize;
        assert!(
            m.bytes[at..at + data.len()].iter().all(|&b| b == 0xff),
            "programming over unerased bytes at {offset:#x}"
        );
        let cut = Sim::begin(&mut m)?;
        let n = match cut {
            None => data.len(),
            Some(Cut::Before) => 0,
            Some(Cut::Torn) => data.len() / 2,
        };
        m.bytes[at..at + n].copy_from_slice(&data[..n]);
        if cut.is_some() {
            return Err(DeviceError::Failed);
        }
        Ok(())
    }
}
