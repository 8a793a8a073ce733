//! Qualification image of this port: the kernel, the board support in `board.rs`, and the
//! kernel test suites and performance benchmarks, run by the fqp test runner over the console.

#![no_std]
#![no_main]

extern crate alloc;

mod board;
#[cfg(feature = "net")]
mod ethernet;
mod pl011;

use cortex_m_rt::entry;

/// Main stack kept for interrupts below the top of RAM; the rest after the program's data is
/// heap. PORT: size for your interrupt handlers.
const MAIN_STACK_BYTES: usize = 4 * 1024;

static BOARD: board::Lm3s6965 = board::Lm3s6965;

#[entry]
fn main() -> ! {
    // The console, then the board named to the test kit, before anything else: a fault in
    // the rest of start-up is reported on the console (the harness names the function).
    board::CONSOLE.init(board::CPU_HZ, 115_200);
    fqp_testkit::set_board(&BOARD);
    let (lo, len) = fqp_port_cortex_m::ram::after_data(MAIN_STACK_BYTES);
    // SAFETY: the RAM after the image's data is used by nothing else; it is handed to the
    // heap once, before anything allocates.
    unsafe { board::HEAP.add_region(lo, len) };
    let mut cp = cortex_m::Peripherals::take().expect("peripherals taken once, at start-up");
    board::enable_interrupts(&mut cp.NVIC);
    #[cfg(feature = "net")]
    ethernet::ETHERNET.init();
    #[cfg(feature = "storage")]
    fqp_port_cortex_m::semihosting::HostFile::init(fqp_port_cortex_m::semihosting::cmdline(
        &mut [0; 256],
    ));
    fqp_testkit::run(&BOARD, groups(), env!("CARGO_PKG_VERSION"), board::CPU_HZ)
}

/// The groups in the image: the kernel's, those of the libraries chosen (Cargo.toml's
/// features), then the performance benchmarks.
fn groups() -> &'static [&'static fqp_testkit::Group] {
    let mut all = alloc::vec::Vec::from(fqp_suite_kernel::GROUPS);
    #[cfg(feature = "net")]
    all.push(&fqp_suite_net::NETWORK);
    #[cfg(feature = "mqtt")]
    all.push(&fqp_suite_net::MQTT);
    #[cfg(feature = "keystore")]
    all.push(&fqp_suite_security::KEYSTORE);
    #[cfg(feature = "tls")]
    all.push(&fqp_suite_security::TLS);
    all.push(&fqp_suite_perf::PERF);
    all.leak()
}
