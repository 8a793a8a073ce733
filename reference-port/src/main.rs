//! fqp reference port: Arm MPS2 AN385 (Cortex-M3), as emulated by QEMU `mps2-an385`; the
//! same crate serves the AN386 (Cortex-M4F) and the AN505 (Cortex-M33, non-secure side:
//! `board.rs`, `secure_boot.rs`).
//!
//! Board support (UART0 console, vector table, fault reporting, semihosting exit, two heap
//! regions) plus the qualification image: the kernel test suites driven by the test runner.
//! A vendor's port has the same shape; see `port-template/`.

#![no_std]
#![no_main]

extern crate alloc;

mod board;
mod lan9118;
#[cfg(feature = "mps2-an505")]
mod secure_boot;
#[cfg(feature = "selftest")]
mod selftest;
mod uart;
mod vectors;

use core::sync::atomic::{AtomicBool, Ordering};
use cortex_m_rt::entry;
use fqp_kernel::heap::FirstFit;
use fqp_port::{Board, Ethernet, Flash, HeapStats, Storage};
use fqp_port_cortex_m::semihosting::{self, HostFile, HostFlash};
use fqp_testkit::Group;
use uart::Uart;

use board::CPU_HZ;
/// Main stack left to interrupts below the top of RAM.
const MAIN_STACK_BYTES: usize = 64 * 1024;

#[global_allocator]
static HEAP: FirstFit = FirstFit::new();

// SAFETY: the board's UART0, which only this driver touches.
pub(crate) static UART0: Uart = unsafe { Uart::new(board::UART0) };

// SAFETY: the board's LAN9118, which only this driver touches.
pub(crate) static ETH: lan9118::Lan9118 = unsafe { lan9118::Lan9118::new(board::ETH) };

/// The board. The devices it hands out are set up once, in `main`, before the test runner
/// starts: the Ethernet controller when it answers, the keystore's host file when `fqp`
/// named one (fqp-port-cortex-m's `semihosting::HostFile`), and under the boot loader its
/// flash (`semihosting::HostFlash`).
struct An385 {
    ethernet_up: AtomicBool,
}

impl Board for An385 {
    fn name(&self) -> &'static str {
        // The manifest's name (fqp passes it): one crate, several boards (m4f/, m33/, m0/).
        option_env!("FQP_PORT_NAME").unwrap_or("mps2-an385")
    }

    fn write(&self, bytes: &[u8]) {
        UART0.write(bytes);
    }

    fn test_irqs(&self) -> usize {
        vectors::TEST_IRQS.len()
    }

    fn pend_test_irq(&self, n: usize) {
        // A port that forgot its test interrupts (the harness's own test of its pre-flight).
        if cfg!(feature = "irq-off") {
            return;
        }
        fqp_port_cortex_m::nvic::pend(vectors::TEST_IRQS[n]);
    }

    fn heap_stats(&self) -> Option<HeapStats> {
        Some(HEAP.stats())
    }

    fn reset(&self) -> ! {
        fqp_port_cortex_m::reset()
    }

    fn exit(&self, code: i32) -> ! {
        fqp_port_cortex_m::exit(code)
    }

    fn ethernet(&self) -> Option<&dyn Ethernet> {
        self.ethernet_up
            .load(Ordering::Acquire)
            .then_some(&ETH as &dyn Ethernet)
    }

    // No `entropy`: the AN385 has no TRNG, so the host provisions a seed.

    fn storage(&self) -> Option<&dyn Storage> {
        HostFile::get().map(|f| f as &dyn Storage)
    }

    /// The boot loader's flash (a host file: `flash=<path>`), when the image runs under it.
    fn flash(&self) -> Option<&dyn Flash> {
        if cfg!(feature = "ota") {
            HostFlash::get().map(|f| f as &dyn Flash)
        } else {
            None
        }
    }
}

static BOARD: An385 = An385 {
    ethernet_up: AtomicBool::new(false),
};

/// The groups in the image: every kernel group, then networking, MQTT, the keystore, TLS, the
/// cloud's services, over-the-air updates and the performance benchmarks.
#[cfg(not(any(feature = "selftest", feature = "bench")))]
fn groups() -> &'static [&'static Group] {
    let suites = [
        fqp_suite_kernel::GROUPS,
        fqp_suite_net::GROUPS,
        fqp_suite_security::GROUPS,
        fqp_suite_cloud::GROUPS,
        fqp_suite_ota::GROUPS,
        &[&fqp_suite_perf::PERF],
    ];
    suites.concat().leak()
}

#[cfg(feature = "selftest")]
fn groups() -> &'static [&'static Group] {
    static SELFTEST: [&Group; 1] = [&selftest::SELFTEST];
    &SELFTEST
}

/// `fqp bench`'s image: the performance benchmarks only.
#[cfg(all(feature = "bench", not(feature = "selftest")))]
fn groups() -> &'static [&'static Group] {
    static PERF: [&Group; 1] = [&fqp_suite_perf::PERF];
    &PERF
}

extern "C" {
    static mut _heap2_start: u8;
    static mut _heap2_end: u8;
}

#[entry]
fn main() -> ! {
    // The console, then the board named to the test kit, before anything else: a fault in
    // the rest of start-up is reported on the console (the harness names the function).
    UART0.init(CPU_HZ, 115_200);
    fqp_testkit::set_board(&BOARD);
    let (lo, len) = fqp_port_cortex_m::ram::after_data(MAIN_STACK_BYTES);
    // SAFETY: the RAM after the image's data and [_heap2_start, _heap2_end) (memory.x) are
    // used by nothing else; they are handed to the heap once, before anything allocates.
    unsafe {
        HEAP.add_region(lo, len);
        let lo2 = core::ptr::addr_of_mut!(_heap2_start);
        let hi2 = core::ptr::addr_of_mut!(_heap2_end) as usize;
        HEAP.add_region(lo2, hi2 - lo2 as usize);
    }
    BOARD.ethernet_up.store(ETH.init(), Ordering::Release);
    let mut cp = cortex_m::Peripherals::take().expect("peripherals taken once, at start-up");
    vectors::enable(&mut cp.NVIC);
    let mut line = [0u8; 512];
    let cmdline = semihosting::cmdline(&mut line);
    HostFile::init(cmdline);
    if cfg!(feature = "ota") {
        HostFlash::init(cmdline);
    }
    #[cfg(feature = "selftest")]
    selftest::boot(cmdline);
    // With `tick-10x`, the clock a port with a wrong CPU_HZ would give (the harness's test).
    let kernel_hz = if cfg!(feature = "tick-10x") {
        CPU_HZ * 10
    } else {
        CPU_HZ
    };
    fqp_testkit::run(&BOARD, groups(), env!("CARGO_PKG_VERSION"), kernel_hz)
}
