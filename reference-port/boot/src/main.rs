//! The boot loader of the reference port (MPS2 AN385): finds the board's flash (the file
//! `fqp` names with `flash=<path>`), lets `fqp-boot` choose and check the image — finishing
//! a swap a power cut interrupted, reverting a trial that did not confirm, installing a
//! requested update that passes every check — and starts it from the code memory above its
//! own 64 KiB (`fqp_port_cortex_m::boot`). Nothing it cannot verify runs: without an image it
//! says why on the console and ends the run.
//!
//! The key it trusts is fixed when it is built (`FQP_BOOT_KEY`, the SEC1 public key in hex:
//! `fqp` passes the lab's code-signing key), as a boot loader's keys are burned into it.

#![no_std]
#![no_main]

#[allow(dead_code)] // the board's other facts are the application's
#[path = "../../src/board.rs"]
mod board;
#[path = "../../src/uart.rs"]
mod uart;

use core::fmt::Write as _;
use cortex_m_rt::entry;
use fqp_boot::TrustedKey;
use fqp_port_cortex_m::boot::{ram_load, Console};
use fqp_port_cortex_m::semihosting::{self, HostFlash};
use uart::Uart;

// SAFETY: the board's UART0; the boot loader is its only user until the image starts.
static UART0: Uart = unsafe { Uart::new(board::UART0) };

/// Where images may load: code memory above the boot loader, below the heap's second
/// region (../an385/memory.x).
const LOAD: core::ops::Range<u32> = 0x0001_0000..0x0030_0000;

/// The board's CMSDK APB timer 0 (its registers: control, value, reload), which the
/// application leaves alone: the boot loader's clock for the time a swap takes, in device
/// time (a 32-bit count down at the CPU's clock: it wraps after 171 s).
mod timer0 {
    const BASE: usize = 0x4000_0000;
    const CTRL: *mut u32 = BASE as *mut u32;
    const VALUE: *mut u32 = (BASE + 0x4) as *mut u32;
    const RELOAD: *mut u32 = (BASE + 0x8) as *mut u32;

    /// Starts it counting down from the top.
    pub fn start() {
        // SAFETY: the timer's registers on this board; nothing else uses the timer while the
        // boot loader runs.
        unsafe {
            RELOAD.write_volatile(u32::MAX);
            VALUE.write_volatile(u32::MAX);
            CTRL.write_volatile(1);
        }
    }

    /// Milliseconds since [`start`].
    pub fn ms() -> u32 {
        // SAFETY: as in `start`; reading the count has no side effect.
        let left = unsafe { VALUE.read_volatile() };
        (u32::MAX - left) / (super::board::CPU_HZ / 1000)
    }
}

/// Formats one line of the boot loader's onto the console.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(Console(&|b| UART0.write(b)), "fqp-boot: {}", format_args!($($arg)*));
    }};
}

/// The trusted key from its hex (130 digits), if it was given and is one.
fn trusted_key() -> Option<TrustedKey> {
    let hex = option_env!("FQP_BOOT_KEY")?.as_bytes();
    let mut key = [0u8; 65];
    if hex.len() != 2 * key.len() {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (i, pair) in hex.chunks(2).enumerate() {
        key[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(TrustedKey::new(key))
}

#[entry]
fn main() -> ! {
    UART0.init(board::CPU_HZ, 115_200);
    timer0::start();
    let mut line = [0u8; 512];
    let cmdline = semihosting::cmdline(&mut line);
    let board = option_env!("FQP_PORT_NAME").unwrap_or("mps2-an385");
    let (flash, key) = match (HostFlash::init(cmdline), trusted_key()) {
        (true, Some(key)) => (HostFlash::get().expect("opened above"), key),
        (false, _) => {
            say!("no flash: the emulator was not given flash=<file> (fqp names one)");
            fqp_port_cortex_m::exit(3)
        }
        (true, None) => {
            say!("built without a trusted key (FQP_BOOT_KEY: the SEC1 key in hex)");
            fqp_port_cortex_m::exit(3)
        }
    };
    let e = ram_load(
        flash,
        &[key],
        board,
        LOAD,
        &|b| UART0.write(b),
        Some(&timer0::ms),
    );
    say!("cannot boot: {e}");
    fqp_port_cortex_m::exit(3)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    say!("panic: {info}");
    fqp_port_cortex_m::exit(3)
}
