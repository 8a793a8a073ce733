//! Semihosting, for a board run under an emulator or a debugger: the firmware's command line
//! (what `fqp` passes: `fw`, `storage=<path>`, `flash=<path>`, `flashcut=<n>[/torn]`, the
//! manifest's `semihosting_args`), flash for the boot loader in a host file ([`HostFlash`]), and
//! persistent storage in a file on the host ([`HostFile`]) for a board whose flash does not
//! outlive the emulator, or that a port has not yet given a flash driver. `fqp` names the file
//! on the command line (`storage=<path>`, one per device, kept across the boots of a run). A
//! store writes a temporary file and renames it over the old one, so a reset in the middle
//! leaves the previous image whole. (On silicon without a debugger attached these calls
//! fault: a product's storage is its flash.)

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use fqp_port::{DeviceError as Error, Storage};

const SYS_OPEN: usize = 0x01;
const SYS_GET_CMDLINE: usize = 0x15;
const SYS_CLOSE: usize = 0x02;
const SYS_WRITE: usize = 0x05;
const SYS_READ: usize = 0x06;
const SYS_SEEK: usize = 0x0a;
const SYS_FLEN: usize = 0x0c;
const SYS_RENAME: usize = 0x0f;
/// `fopen` modes as semihosting numbers them.
const MODE_RB: usize = 1;
const MODE_RPLUSB: usize = 3;
const MODE_WB: usize = 5;

/// Longest path (with the `.tmp` suffix and the terminating NUL).
const PATH: usize = 200;

/// The firmware's semihosting command line, in `buf` (empty when the host gave none).
pub fn cmdline(buf: &mut [u8]) -> &[u8] {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE writes at most `buf.len()` bytes into `buf` and the length into
    // block[1]; both live across the call.
    let ok =
        unsafe { cortex_m_semihosting::syscall1(SYS_GET_CMDLINE, block.as_mut_ptr() as usize) }
            == 0;
    let n = if ok { block[1].min(buf.len()) } else { 0 };
    &buf[..n]
}

/// The value of the command line's word that starts with `key` (`storage=`, `flash=`).
fn arg<'a>(cmdline: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    cmdline
        .split(|&c| c == b' ')
        .find_map(|w| w.strip_prefix(key))
}

/// Storage in a file on the host (the keystore's, say).
pub struct HostFile {
    path: [u8; PATH],
    len: usize,
}

fn syscall(op: usize, args: &[usize]) -> isize {
    // SAFETY: every operation used here reads `args` as its parameter block (never writes
    // it) and only touches the memory the block points to (path and data buffers that live
    // across the call).
    unsafe { cortex_m_semihosting::syscall1(op, args.as_ptr() as usize) as isize }
}

/// Set (once, with `FILE` written) by [`HostFile::init`].
static READY: AtomicBool = AtomicBool::new(false);
/// Claimed by the first [`HostFile::init`] that finds a path.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Claims FILE for its one writer: false if it was claimed before.
fn claim() -> bool {
    // A critical section, not a swap: Armv6-M has no atomic swap.
    fqp_kernel::critical(|| {
        let was = CLAIMED.load(Ordering::Acquire);
        CLAIMED.store(true, Ordering::Release);
        !was
    })
}
static mut FILE: HostFile = HostFile {
    path: [0; PATH],
    len: 0,
};

impl HostFile {
    /// Takes the file named by `storage=<path>` on the firmware's command line (in `main`,
    /// before the test runner starts); whether there was one.
    pub fn init(cmdline: &[u8]) -> bool {
        let Some(value) = arg(cmdline, b"storage=") else {
            return false;
        };
        if value.is_empty() || value.len() + 5 > PATH || !claim() {
            return false;
        }
        // SAFETY: CLAIMED lets one call, once, write FILE; no reader looks at it before READY
        // is set below.
        let file = unsafe { &mut *core::ptr::addr_of_mut!(FILE) };
        file.path[..value.len()].copy_from_slice(value);
        file.len = value.len();
        READY.store(true, Ordering::Release);
        true
    }

    /// The file [`HostFile::init`] took, if any.
    pub fn get() -> Option<&'static HostFile> {
        // SAFETY: once READY is set FILE is never written again (init wrote it before).
        READY
            .load(Ordering::Acquire)
            .then(|| unsafe { &*core::ptr::addr_of!(FILE) })
    }

    /// The path (`tmp`: with `.tmp` appended), NUL-terminated, and its length without NUL.
    fn path(&self, tmp: bool) -> ([u8; PATH], usize) {
        let mut p = [0u8; PATH];
        p[..self.len].copy_from_slice(&self.path[..self.len]);
        let mut n = self.len;
        if tmp {
            p[n..n + 4].copy_from_slice(b".tmp");
            n += 4;
        }
        (p, n)
    }

    fn open(&self, tmp: bool, mode: usize) -> Option<usize> {
        let (p, n) = self.path(tmp);
        let fd = syscall(SYS_OPEN, &[p.as_ptr() as usize, mode, n]);
        (fd >= 0).then_some(fd as usize)
    }
}

impl Storage for HostFile {
    fn load(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let Some(fd) = self.open(false, MODE_RB) else {
            return Ok(0); // nothing saved yet
        };
        let len = syscall(SYS_FLEN, &[fd]);
        let read = if len < 0 {
            Err(Error::Failed)
        } else if len as usize > buf.len() {
            Err(Error::TooLong)
        } else {
            let left = syscall(SYS_READ, &[fd, buf.as_mut_ptr() as usize, len as usize]);
            if left == 0 {
                Ok(len as usize)
            } else {
                Err(Error::Failed)
            }
        };
        syscall(SYS_CLOSE, &[fd]);
        read
    }

    fn store(&self, data: &[u8]) -> Result<(), Error> {
        let fd = self.open(true, MODE_WB).ok_or(Error::Failed)?;
        let left = syscall(SYS_WRITE, &[fd, data.as_ptr() as usize, data.len()]);
        let closed = syscall(SYS_CLOSE, &[fd]);
        if left != 0 || closed != 0 {
            return Err(Error::Failed);
        }
        let (tmp, tmp_len) = self.path(true);
        let (path, len) = self.path(false);
        let renamed = syscall(
            SYS_RENAME,
            &[tmp.as_ptr() as usize, tmp_len, path.as_ptr() as usize, len],
        );
        if renamed == 0 {
            Ok(())
        } else {
            Err(Error::Failed)
        }
    }
}

/// Flash in a file on the host: the boot loader's slots and status area for a board run under
/// an emulator, whose own flash is reloaded from the image at every start. `fqp` names the
/// file (`flash=<path>`, one per device, its size the flash's) and writes the factory image
/// into it; the file outlives resets and emulator restarts, and killing the emulator in the
/// middle of an erase or a program leaves it half done, as a power cut does.
///
/// NOR semantics: erase sets 4 KiB sectors to 0xFF; program ANDs 8-byte units into what is
/// there (as flash can only clear bits).
///
/// **Power cuts at a flash operation** (`fqp ota powercut --every-op`): when the file
/// `<path>.ops` exists, every operation (a sector erased, a program call) is counted in it,
/// across the boot loader, the application and their resets (the count is the file's text,
/// ten digits). With `flashcut=<n>` on the command line, operation *n* is the board's last:
/// not started (`flashcut=<n>`) or torn half way (`flashcut=<n>/torn`), then the emulator
/// stops at once, as when the power goes.
pub struct HostFlash {
    fd: usize,
    size: u32,
    /// The operation counter's file, when there is one.
    ops: Option<usize>,
    /// The operation to cut at (0: none), and whether it is torn half way.
    cut: u32,
    torn: bool,
}

/// Flash operations counted so far (the counter file's value, kept here between updates).
static OPS: AtomicU32 = AtomicU32::new(0);

/// What becomes of a flash operation about to start.
enum Go {
    Whole,
    /// The power goes during it: after none of it, or (torn) half of it.
    Cut {
        torn: bool,
    },
}

/// The erase sector of a [`HostFlash`].
pub const HOST_FLASH_SECTOR: u32 = 4096;
/// Its program unit.
pub const HOST_FLASH_WRITE: u32 = 8;

/// Set (once, with `FLASH` written) by [`HostFlash::init`].
static FLASH_READY: AtomicBool = AtomicBool::new(false);
static mut FLASH: HostFlash = HostFlash {
    fd: 0,
    size: 0,
    ops: None,
    cut: 0,
    torn: false,
};

/// The digits of a flash operation count in its file.
const OPS_DIGITS: usize = 10;

impl HostFlash {
    /// Opens the file named by `flash=<path>` on the firmware's command line (in `main`,
    /// before anything uses it); whether there was one, of a whole number of sectors.
    pub fn init(cmdline: &[u8]) -> bool {
        let Some(value) = arg(cmdline, b"flash=") else {
            return false;
        };
        if value.is_empty() || value.len() >= PATH || FLASH_READY.load(Ordering::Acquire) {
            return false;
        }
        let mut path = [0u8; PATH];
        path[..value.len()].copy_from_slice(value);
        let fd = syscall(
            SYS_OPEN,
            &[path.as_ptr() as usize, MODE_RPLUSB, value.len()],
        );
        if fd < 0 {
            return false;
        }
        let len = syscall(SYS_FLEN, &[fd as usize]);
        if len <= 0
            || len as u64 > u32::MAX as u64
            || !(len as u32).is_multiple_of(HOST_FLASH_SECTOR)
        {
            syscall(SYS_CLOSE, &[fd as usize]);
            return false;
        }
        let ops = open_ops(value);
        let (cut, torn) = match arg(cmdline, b"flashcut=") {
            Some(v) => {
                let (n, torn) = match v.strip_suffix(b"/torn") {
                    Some(n) => (n, true),
                    None => (v, false),
                };
                (number(n).unwrap_or(0), torn)
            }
            None => (0, false),
        };
        // SAFETY: FLASH_READY is not set yet, so nothing reads FLASH; `main` calls this once,
        // before other tasks run (a second call returns above).
        unsafe {
            *core::ptr::addr_of_mut!(FLASH) = HostFlash {
                fd: fd as usize,
                size: len as u32,
                ops,
                cut,
                torn,
            };
        }
        FLASH_READY.store(true, Ordering::Release);
        true
    }

    /// The flash [`HostFlash::init`] opened, if any.
    pub fn get() -> Option<&'static HostFlash> {
        // SAFETY: once FLASH_READY is set FLASH is never written again.
        FLASH_READY
            .load(Ordering::Acquire)
            .then(|| unsafe { &*core::ptr::addr_of!(FLASH) })
    }

    /// Counts the operation about to start; whether the power goes during it.
    fn begin(&self) -> Go {
        let Some(fd) = self.ops else {
            return Go::Whole;
        };
        let n = fqp_kernel::critical(|| {
            let n = OPS.load(Ordering::Relaxed) + 1;
            OPS.store(n, Ordering::Relaxed);
            let mut text = [b'0'; OPS_DIGITS];
            let mut v = n;
            for d in text.iter_mut().rev() {
                *d = b'0' + (v % 10) as u8;
                v /= 10;
            }
            // A counter that cannot be written counts nothing more: the cut is off too.
            if syscall(SYS_SEEK, &[fd, 0]) != 0
                || syscall(SYS_WRITE, &[fd, text.as_ptr() as usize, text.len()]) != 0
            {
                return 0;
            }
            n
        });
        if n != 0 && n == self.cut {
            Go::Cut { torn: self.torn }
        } else {
            Go::Whole
        }
    }

    fn check(&self, offset: u32, len: usize, unit: u32) -> Result<(), Error> {
        let end = offset as u64 + len as u64;
        if end > self.size as u64
            || !offset.is_multiple_of(unit)
            || !(len as u32).is_multiple_of(unit)
        {
            return Err(Error::BadAddress);
        }
        Ok(())
    }

    /// Seeks to `offset`, then reads into (`write` false) or writes from `buf`.
    fn transfer(&self, offset: u32, buf: *mut u8, len: usize, write: bool) -> Result<(), Error> {
        if syscall(SYS_SEEK, &[self.fd, offset as usize]) != 0 {
            return Err(Error::Failed);
        }
        let op = if write { SYS_WRITE } else { SYS_READ };
        // Both calls answer the count of bytes *not* transferred.
        if syscall(op, &[self.fd, buf as usize, len]) == 0 {
            Ok(())
        } else {
            Err(Error::Failed)
        }
    }
}

impl fqp_port::Flash for HostFlash {
    fn size(&self) -> u32 {
        self.size
    }

    fn erase_size(&self) -> u32 {
        HOST_FLASH_SECTOR
    }

    fn write_size(&self) -> u32 {
        HOST_FLASH_WRITE
    }

    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), Error> {
        self.check(offset, buf.len(), 1)?;
        // One seek and read at a time: tasks share the file position.
        fqp_kernel::critical(|| self.transfer(offset, buf.as_mut_ptr(), buf.len(), false))
    }

    fn erase(&self, offset: u32, len: u32) -> Result<(), Error> {
        self.check(offset, len as usize, HOST_FLASH_SECTOR)?;
        let ones = [0xffu8; 512];
        let mut sector = offset;
        while sector < offset + len {
            // Each sector is an operation of its own (as a flash controller erases them).
            let end = match self.begin() {
                Go::Whole => sector + HOST_FLASH_SECTOR,
                Go::Cut { torn: false } => power_cut(),
                Go::Cut { torn: true } => sector + HOST_FLASH_SECTOR / 2,
            };
            let mut at = sector;
            while at < end {
                // The file is written 512 bytes at a time: a kill of the emulator leaves the
                // sector half erased.
                fqp_kernel::critical(|| {
                    self.transfer(at, ones.as_ptr() as *mut u8, ones.len(), true)
                })?;
                at += ones.len() as u32;
            }
            if end < sector + HOST_FLASH_SECTOR {
                power_cut()
            }
            sector += HOST_FLASH_SECTOR;
        }
        Ok(())
    }

    fn program(&self, offset: u32, data: &[u8]) -> Result<(), Error> {
        self.check(offset, data.len(), HOST_FLASH_WRITE)?;
        let (data, cut) = match self.begin() {
            Go::Whole => (data, false),
            Go::Cut { torn: false } => power_cut(),
            // Half the bytes programmed, the last unit perhaps in part (its other bits
            // left as they were): a program torn by the power going.
            Go::Cut { torn: true } => (&data[..data.len() / 2], true),
        };
        let mut buf = [0u8; 256];
        for (i, chunk) in data.chunks(buf.len()).enumerate() {
            let at = offset + (i * buf.len()) as u32;
            let cell = &mut buf[..chunk.len()];
            fqp_kernel::critical(|| {
                self.transfer(at, cell.as_mut_ptr(), cell.len(), false)?;
                for (c, d) in cell.iter_mut().zip(chunk) {
                    *c &= d;
                }
                self.transfer(at, cell.as_mut_ptr(), cell.len(), true)
            })?;
        }
        if cut {
            power_cut()
        }
        Ok(())
    }
}

/// The counter file of the flash at `path` (`<path>.ops`), open for update, if it exists;
/// the count goes on from its value.
fn open_ops(path: &[u8]) -> Option<usize> {
    let mut p = [0u8; PATH + 4];
    p[..path.len()].copy_from_slice(path);
    p[path.len()..path.len() + 4].copy_from_slice(b".ops");
    let fd = syscall(
        SYS_OPEN,
        &[p.as_ptr() as usize, MODE_RPLUSB, path.len() + 4],
    );
    if fd < 0 {
        return None;
    }
    let fd = fd as usize;
    let mut text = [0u8; OPS_DIGITS];
    let len = syscall(SYS_FLEN, &[fd]);
    let value = if len == 0 {
        Some(0) // a new counter
    } else if len == OPS_DIGITS as isize
        && syscall(SYS_READ, &[fd, text.as_mut_ptr() as usize, text.len()]) == 0
    {
        number(&text)
    } else {
        None
    };
    match value {
        Some(v) => {
            OPS.store(v, Ordering::Relaxed);
            Some(fd)
        }
        None => {
            syscall(SYS_CLOSE, &[fd]);
            None
        }
    }
}

/// A decimal number.
fn number(digits: &[u8]) -> Option<u32> {
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// The power goes: the emulator stops at once (semihosting's exit; the host's `fqp` knows the
/// cut from the operation counter it reads back).
fn power_cut() -> ! {
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::nop();
    }
}
