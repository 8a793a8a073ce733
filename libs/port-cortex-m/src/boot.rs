//! The boot loader's last step on a Cortex-M board that runs its image from RAM: the image
//! `fqp-boot` chose is copied from flash to its load address, its payload hashed once more
//! where it will run, and the core handed to it (vector table, stack pointer, reset handler).
//! Copying first means the image runs from memory only the boot loader wrote, after the
//! check; a board that executes in place from the primary slot jumps to it directly instead.

use core::fmt::{self, Write};
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use fqp_boot::{boot, BootError, Event, Flash, Layout, TrustedKey};
use fqp_image::{PayloadHash, HEADER_LEN};

/// A console given as a function, to format onto: what the boot loader prints, line by line
/// (`fqp-boot: ...`).
pub struct Console<'a>(pub &'a dyn Fn(&[u8]));

impl Write for Console<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        (self.0)(s.as_bytes());
        Ok(())
    }
}

/// Why nothing was started.
#[derive(Debug)]
pub enum Failure {
    /// The flash's geometry leaves no room for two slots.
    Layout,
    /// `fqp-boot` found nothing to boot, or the flash failed.
    Boot(BootError),
    /// The image's load address range is not one this board loads into, or too short to
    /// hold a vector table.
    LoadAddress { at: u32, len: u32 },
    /// The copy in RAM is not what was checked in flash.
    Copy,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Layout => f.write_str("the flash is too small for two slots"),
            Failure::Boot(e) => write!(f, "{e}"),
            Failure::LoadAddress { at, len } => {
                write!(
                    f,
                    "the image loads {len} bytes at {at:#x}: not a vector table and code \
                     within the load region"
                )
            }
            Failure::Copy => f.write_str("the image read into RAM is not the one checked"),
        }
    }
}

/// The time a swap took, after what the boot loader says of it (` (swap 2345 ms)`), when
/// the board gave a clock.
struct Took(Option<u32>);

/// The board's flash, with the clock read at the first write to the slots or the scratch
/// sector and after each: only a swap writes there (the checks before and after it read; the
/// status log is written outside the swap too), so the span from the first such write to
/// the end of the last is the swap's time. (Atomics only because a flash is shared between
/// tasks: the boot loader has one.)
struct Timed<'a> {
    flash: &'a dyn Flash,
    /// Writes here are not the swap's.
    status: fqp_boot::Area,
    clock: Option<&'a Clock>,
    wrote: AtomicBool,
    first: AtomicU32,
    last: AtomicU32,
}

/// Milliseconds of a free-running clock.
pub type Clock = dyn Fn() -> u32 + Sync;

impl Timed<'_> {
    fn write<T>(&self, offset: u32, op: impl FnOnce() -> T) -> T {
        let status = self.status.offset..self.status.offset + self.status.len;
        let Some(clock) = self.clock.filter(|_| !status.contains(&offset)) else {
            return op();
        };
        if !self.wrote.load(Ordering::Relaxed) {
            self.first.store(clock(), Ordering::Relaxed);
            self.wrote.store(true, Ordering::Relaxed);
        }
        let done = op();
        self.last.store(clock(), Ordering::Relaxed);
        done
    }

    /// From the first write to the end of the last, if there was any.
    fn span(&self) -> Took {
        Took(self.wrote.load(Ordering::Relaxed).then(|| {
            let (a, b) = (&self.first, &self.last);
            b.load(Ordering::Relaxed)
                .wrapping_sub(a.load(Ordering::Relaxed))
        }))
    }
}

impl Flash for Timed<'_> {
    fn size(&self) -> u32 {
        self.flash.size()
    }
    fn erase_size(&self) -> u32 {
        self.flash.erase_size()
    }
    fn write_size(&self) -> u32 {
        self.flash.write_size()
    }
    fn read(&self, offset: u32, buf: &mut [u8]) -> Result<(), fqp_boot::DeviceError> {
        self.flash.read(offset, buf)
    }
    fn erase(&self, offset: u32, len: u32) -> Result<(), fqp_boot::DeviceError> {
        self.write(offset, || self.flash.erase(offset, len))
    }
    fn program(&self, offset: u32, data: &[u8]) -> Result<(), fqp_boot::DeviceError> {
        self.write(offset, || self.flash.program(offset, data))
    }
}

impl fmt::Display for Took {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ms) => write!(f, " (swap {ms} ms)"),
            None => Ok(()),
        }
    }
}

/// Boots the image `fqp-boot` chooses from `flash` (the whole of it: status, scratch, two
/// slots): checked with `keys` for `board`, copied into `load` (its load address range must
/// lie within), started. Prints what it did on `console`, with the time an update's or a
/// rollback's swap took (from its first copy to the end of its last) by `clock` (milliseconds of a
/// free-running clock), if the board has one; returns only when it cannot boot.
pub fn ram_load(
    flash: &dyn Flash,
    keys: &[TrustedKey],
    board: &str,
    load: Range<u32>,
    console: &dyn Fn(&[u8]),
    clock: Option<&Clock>,
) -> Failure {
    let mut out = Console(console);
    let Some(layout) = Layout::whole(flash) else {
        return Failure::Layout;
    };
    let timed = Timed {
        flash,
        status: layout.status,
        clock,
        wrote: AtomicBool::new(false),
        first: AtomicU32::new(0),
        last: AtomicU32::new(0),
    };
    let booted = match boot(&timed, &layout, keys, board) {
        Ok(b) => b,
        Err(e) => return Failure::Boot(e),
    };
    let took = timed.span();
    let h = &booted.header;
    let _ = match booted.event {
        Event::Unchanged => Ok(()),
        Event::Installed => writeln!(out, "fqp-boot: installed the new image{took}"),
        Event::Refused(r) => writeln!(out, "fqp-boot: refused the new image: {}", r.reason()),
        Event::RolledBack { rejected: true } => {
            writeln!(
                out,
                "fqp-boot: rolled back: the new image rejected itself{took}"
            )
        }
        Event::RolledBack { rejected: false } => {
            writeln!(
                out,
                "fqp-boot: rolled back: the new image did not confirm itself{took}"
            )
        }
    };
    let (at, len) = (h.load_address, h.payload_len);
    let inside = at >= load.start && at.checked_add(len).is_some_and(|end| end <= load.end);
    let failure = if !inside || len < 8 {
        Some(Failure::LoadAddress { at, len })
    } else {
        // SAFETY: [at, at + len) lies in `load`, memory the port gives the images and that
        // nothing else uses while the boot loader runs (its own code and stack are elsewhere).
        let dest = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, len as usize) };
        if let Err(e) = flash.read(booted.slot.offset + HEADER_LEN as u32, dest) {
            return Failure::Boot(BootError::Flash(e));
        }
        let mut hash = PayloadHash::new();
        hash.update(dest);
        h.check_payload(hash).err().map(|_| Failure::Copy)
    };
    if let Some(f) = failure {
        // A new image on trial that cannot start is rejected, as if its self test had
        // failed: the next boot brings the previous image back, rather than leaving the
        // board with nothing to run.
        if booted.trial {
            let rejected = fqp_boot::status::Status::read(flash, &layout)
                .and_then(|mut s| s.reject())
                .unwrap_or(false);
            if rejected {
                let _ = writeln!(out, "fqp-boot: the new image cannot start ({f}): reverting");
                cortex_m::peripheral::SCB::sys_reset();
            }
        }
        return f;
    }
    // Its own time from the board's start (the image's checks, a swap, the copy): the last
    // thing it says.
    let _ = write!(
        out,
        "fqp-boot: starting {} ({}), security counter {}",
        h.version,
        if booted.trial { "trial" } else { "confirmed" },
        h.security_counter
    );
    let _ = match clock {
        Some(ms) => writeln!(out, " (boot {} ms)", ms()),
        None => writeln!(out),
    };
    // SAFETY: the payload starts with its vector table (initial stack pointer, reset
    // handler), checked above; VTOR takes its address, so its handlers are the ones called.
    unsafe {
        (*cortex_m::peripheral::SCB::PTR).vtor.write(at);
        cortex_m::asm::bootload(at as *const u32)
    }
}
