//! The harness's self-test group: tests that fail on purpose, in every way a device can fail,
//! so the harness's own tests can prove it reports each one. Built only with `selftest`.

use fqp_testkit::{check, check_eq, group, log, TestResult};

group!(pub SELFTEST, "selftest", [
    passes,
    fails_check,
    fails_check_eq,
    skips,
    hard_fault,
    panics,
    hangs => 500,
    noisy_pass,
    resets,
    flaky,
    reboots_and_goes_on => 20_000,
]);

fn passes() -> TestResult {
    log!("all good");
    check!(core::hint::black_box(1) + 1 == 2);
    Ok(())
}

fn fails_check() -> TestResult {
    let answer = 41;
    check!(answer == 42, "expected the answer to be 42, got {}", answer);
    Ok(())
}

fn fails_check_eq() -> TestResult {
    check_eq!(2 + 2, 5);
    Ok(())
}

fn skips() -> TestResult {
    fqp_testkit::skip!("no such peripheral on this board")
}

fn hard_fault() -> TestResult {
    // An undefined instruction escalates to HardFault (no UsageFault handler enabled).
    // SAFETY: deliberately faults; the fault handler reports and resets.
    unsafe { core::arch::asm!("udf #7") };
    Ok(())
}

fn panics() -> TestResult {
    let v: [u32; 2] = [1, 2];
    let i = core::hint::black_box(5);
    check!(v[i % 7] == 0); // index out of bounds: panics
    Ok(())
}

fn hangs() -> TestResult {
    loop {
        core::hint::spin_loop();
    }
}

fn noisy_pass() -> TestResult {
    // Garbage on the console between protocol lines, with and without newlines.
    fqp_testkit::console::send(b"\x00\xff\x1b[31mnoise\r\n@FQP END id=fake status=pass *0000\n");
    fqp_testkit::console::send(b"half a line without end ");
    Ok(())
}

fn resets() -> TestResult {
    cortex_m::peripheral::SCB::sys_reset()
}

fn flaky() -> TestResult {
    // Fails on its first run after boot, passes when run again (a retry on the same boot).
    static RUNS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    use core::sync::atomic::Ordering::Relaxed;
    let run = RUNS.load(Relaxed) + 1; // one writer: the runner task
    RUNS.store(run, Relaxed);
    check!(run > 1, "fails on run {} after boot", run);
    Ok(())
}

/// With the semihosting argument `mute`, behave like a board that never answers: print noise
/// forever and never start the runner.
pub fn boot(cmdline: &[u8]) {
    if cmdline.windows(14).any(|w| w == b"fault-at-start") {
        // A board whose start-up faults before the test runner exists.
        // SAFETY: `udf` raises a UsageFault (escalated to HardFault): the point of this mode.
        unsafe { core::arch::asm!("udf #9") };
    }
    if cmdline.windows(4).any(|w| w == b"mute") {
        loop {
            crate::UART0.write(b"booting... no protocol here\r\n");
            cortex_m::asm::delay(2_000_000);
        }
    }
}

/// Reboots the device twice and passes on its third run: the host follows a test across the
/// device's resets.
fn reboots_and_goes_on() -> TestResult {
    let runs = fqp_testkit::resumed();
    log!("run {} of this test", runs + 1);
    if runs < 2 {
        fqp_testkit::reboot_and_resume();
    }
    check_eq!(runs, 2);
    Ok(())
}
