//! What can go wrong in a conversation with a device, outside a test (a test's own failures
//! are its result). Every kind is the console's or the device's: the run records it at the
//! `console` or `boot` stage.

use std::time::Duration;

/// The device could not be synced, listed or provisioned.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot write to the console: {0}\n  fix: the device or its emulator went away (unplugged, reset for good, exited): see serial.log, and qemu.log for an emulator")]
    Write(#[source] std::io::Error),
    #[error(
        "the device did not answer SYNC within {:.1} s. Its last console output:\n{recent}\n  \
         fix: check that the firmware runs the fqp test runner and that serial.path/baud match \
         the board's console",
        .waited.as_secs_f64()
    )]
    NoSync { waited: Duration, recent: String },
    #[error(
        "the device started its test runner (it printed HELLO, port {port:?}) but did not \
         answer SYNC within {:.1} s: what the host sends does not reach it. Its last console \
         output:\n{recent}\n  fix: check the board's console receive path (PORTING.md, step 4): \
         the UART's receive interrupt enabled in the UART and in the interrupt controller, at a \
         priority the kernel allows, handing each byte to fqp_testkit::console::rx_byte, and no \
         byte left behind (clear the interrupt before draining; drain at the end of init)",
        .waited.as_secs_f64()
    )]
    Deaf {
        waited: Duration,
        port: String,
        recent: String,
    },
    #[error(
        "the device {what} while starting, before its test runner answered SYNC: {summary}\n  \
         fix: the port's start-up code (its main, before fqp_testkit::run) is at fault, where \
         named; the memory map (memory.x), the heap's regions and peripheral set-up are the usual \
         causes"
    )]
    AtStart {
        /// "faulted" or "panicked".
        what: &'static str,
        /// The fault or panic, and where (the harness adds the function and source line).
        summary: String,
        /// The faulting program counter, to decode.
        pc: Option<u64>,
    },
    #[error("the console closed before the device synced. Its last output:\n{recent}\n  fix: the device or its emulator went away (unplugged, reset for good, exited): see serial.log, and qemu.log for an emulator")]
    ClosedBeforeSync { recent: String },
    #[error(
        "the board's boot loader did not start the image: \"{said}\"\n  fix: the boot loader \
         checks the signed image in the board's flash before it runs it (docs/ota.md): a \
         refused image (signature, hash, board, security counter) was not signed for this \
         board by a key the boot loader trusts, or was damaged in the flash; serial.log has \
         the boot loader's lines"
    )]
    BootLoader { said: String },
    #[error(
        "the device speaks fqp protocol version {device}, this harness version {harness}\n  \
         fix: rebuild the firmware with this fqp's test kit"
    )]
    Version { device: u64, harness: u32 },
    #[error(
        "the device did not finish listing its tests within {:.1} s\n  fix: its test runner \
         stalled while listing: serial.log shows what it printed last",
        .0.as_secs_f64()
    )]
    ListTimeout(Duration),
    #[error("the console closed while listing tests\n  fix: the device or its emulator went away (unplugged, reset for good, exited): see serial.log, and qemu.log for an emulator")]
    ClosedWhileListing,
    #[error(
        "the device listed a test named {0:?}, which is not group/name (letters, digits, _ and \
         -)\n  fix: rename the group or test in the image (group! names)"
    )]
    BadTestName(String),
    #[error("the device listed test {0} twice\n  fix: put each group in the image's groups once")]
    ListedTwice(String),
    #[error("the device lists more than {0} tests\n  fix: split the image's groups over images (build.features)")]
    TooManyTests(usize),
    #[error(
        "the test list arrived damaged three times; the console is too noisy\n  fix: check the \
         serial line (cable, baud, flow control) and that nothing else prints on the console"
    )]
    ListDamaged,
    #[error(
        "provisioning {key}: the device holds {held} bytes, {sent} were sent\n  fix: the \
         firmware's test kit and this fqp must come from the same tree; see serial.log"
    )]
    SetLength { key: String, held: u64, sent: usize },
    #[error(
        "provisioning {key}: {why}\n  fix: the firmware's test kit and this fqp must come from \
         the same tree; serial.log shows what the device answered"
    )]
    Set { key: String, why: Refusal },
}

/// Why a piece of a setting was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("OK without len")]
    NoLength,
    #[error("device: {0}")]
    Device(String),
    #[error("no answer")]
    NoAnswer,
    #[error("the console closed")]
    Closed,
}
