//! The FPU's registers as part of a task's context (hard-float images: Cortex-M4F, M7): every
//! one of s0–s31 keeps its value through preemption by the tick, yields to tasks of the same
//! priority, and interrupts whose handlers use the FPU and wake a higher task — while other
//! tasks load their own values. The values are held in the registers by assembly that touches
//! no FP register between loading and reading them back, so nothing but the kernel's switch
//! (and the hardware's lazy stacking) can keep them.
//!
//! Compiled for hard-float targets only (`target_abi = "eabihf"`); the test kit reports
//! `fpu=1` and the harness requires capability `fpu` of such a port.

use crate::util::{helper, park, Counter, HIGH};
use core::arch::asm;
use core::sync::atomic::AtomicU32;
use fqp_kernel::arch::{Active, Port};
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::{task, Timeout};
use fqp_testkit::{check, check_eq, group, irq, TestResult, TEST_PRIORITY};

group!(pub FPU, "fpu", [
    registers_survive_preemption,
    registers_survive_yields,
    registers_survive_interrupts,
]);

/// `asm!` with every FP register (s0–s31) declared written: the compiler keeps nothing of
/// its own there across the block, and saves the callee-saved ones around it.
macro_rules! fp_asm {
    ($($arg:tt)*) => {
        asm!(
            $($arg)*
            out("s0") _, out("s1") _, out("s2") _, out("s3") _,
            out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _,
            out("s12") _, out("s13") _, out("s14") _, out("s15") _,
            out("s16") _, out("s17") _, out("s18") _, out("s19") _,
            out("s20") _, out("s21") _, out("s22") _, out("s23") _,
            out("s24") _, out("s25") _, out("s26") _, out("s27") _,
            out("s28") _, out("s29") _, out("s30") _, out("s31") _,
        )
    };
}

/// Ticks or interrupts the held values must live through.
const ROUNDS: u32 = 5;
/// Yields each task of the yield test makes while holding its values.
const YIELDS: u32 = 40;

/// A recognisable value for register `n` of task `k`: distinct per register and per task.
const fn pattern(k: u32) -> [u32; 32] {
    let mut p = [0u32; 32];
    let mut n = 0;
    while n < 32 {
        p[n] = 0x3F80_0000 + (k << 16) + n as u32 * 0x101;
        n += 1;
    }
    p
}

static MINE: [u32; 32] = pattern(1);
static THEIRS: [u32; 32] = pattern(2);
static OTHERS: [[u32; 32]; 2] = [pattern(3), pattern(4)];

/// Loads s0–s31 from `values`, leaves them in place until `counter` reaches `target` (reading
/// it with core registers only), and returns what s0–s31 then hold.
fn hold_until(values: &[u32; 32], counter: &AtomicU32, target: u32) -> [u32; 32] {
    // A test runs with nothing masked (BASEPRI 0).
    hold_unmasking(values, 0, counter, target)
}

/// Loads s0–s31 from `values`, yields `yields` times with the kernel's trap (`svc`, as
/// `task::yield_now` does) while they are live, and returns what s0–s31 then hold.
fn hold_yielding(values: &[u32; 32], yields: u32) -> [u32; 32] {
    let mut seen = [0u32; 32];
    // SAFETY: as in `hold_unmasking`; `svc 0` is the kernel's yield, taken from a task in thread
    // mode with interrupts enabled, and returns with every core register but the ones the
    // exception frame holds (restored) unchanged.
    unsafe {
        fp_asm!(
            "vldmia {v}, {{s0-s31}}",
            "2:",
            "svc 0",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {s}, {{s0-s31}}",
            v = in(reg) values.as_ptr(),
            n = inout(reg) yields => _,
            s = in(reg) seen.as_mut_ptr(),
        );
    }
    seen
}

/// Overwrites s0–s31 with `values` (what a task or handler that uses the FPU does to them).
fn clobber(values: &[u32; 32]) {
    // SAFETY: reads 32 words from a valid array; every FP register written is declared.
    unsafe {
        fp_asm!(
            "vldmia {v}, {{s0-s31}}",
            v = in(reg) values.as_ptr(),
        );
    }
}

/// The first register of `seen` that is not `want`'s, as (register, held, expected).
fn first_difference(seen: &[u32; 32], want: &[u32; 32]) -> Option<(usize, u32, u32)> {
    (0..32)
        .find(|&n| seen[n] != want[n])
        .map(|n| (n, seen[n], want[n]))
}

static WAKES: Counter = Counter::new();

fn registers_survive_preemption() -> TestResult {
    WAKES.set(0);
    // Each tick a higher task preempts the test and loads its own values into every FP
    // register.
    helper("fp-high", HIGH, || loop {
        task::delay(1);
        clobber(&THEIRS);
        WAKES.inc();
    });
    let seen = hold_until(&MINE, WAKES.atomic(), ROUNDS);
    check_eq!(first_difference(&seen, &MINE), None);
    Ok(())
}

static DONE: Counter = Counter::new();
static BROKEN: Counter = Counter::new();

fn registers_survive_yields() -> TestResult {
    DONE.set(0);
    BROKEN.set(0);
    // Two more tasks at the test's priority, each holding its own values: every yield of the
    // three switches to the next with FP state live in all of them.
    for (k, values) in OTHERS.iter().enumerate() {
        helper(["fp-yield-a", "fp-yield-b"][k], TEST_PRIORITY, move || {
            if first_difference(&hold_yielding(values, YIELDS), values).is_some() {
                BROKEN.inc();
            }
            DONE.inc();
            park()
        });
    }
    let seen = hold_yielding(&MINE, YIELDS);
    check_eq!(first_difference(&seen, &MINE), None);
    while DONE.get() < 2 {
        task::yield_now();
    }
    check_eq!(BROKEN.get(), 0);
    Ok(())
}

static WAKE_HIGH: Semaphore = Semaphore::binary();
static TAKEN: Counter = Counter::new();

fn registers_survive_interrupts() -> TestResult {
    TAKEN.set(0);
    while WAKE_HIGH.try_take().is_ok() {}
    // The handler uses the FPU (the hardware stacks s0–s15 of the interrupted task, lazily)
    // and wakes a higher task that loads its own values: the switch on the interrupt's return
    // must keep the test's s16–s31 as well.
    irq::set_handler(
        0,
        Some(|| {
            clobber(&OTHERS[0]);
            let _ = WAKE_HIGH.give();
        }),
    );
    helper("fp-woken", HIGH, || loop {
        if WAKE_HIGH.take(Timeout::FOREVER).is_ok() {
            clobber(&THEIRS);
            TAKEN.inc();
        }
    });
    for round in 1..=ROUNDS {
        // Pended while masked, the interrupt is taken inside `hold_unmasking`, once the test's
        // values are in the registers: BASEPRI is lowered there, not here.
        let mask = Active::enter_critical();
        irq::trigger(0);
        let seen = hold_unmasking(&MINE, mask, TAKEN.atomic(), round);
        check_eq!(first_difference(&seen, &MINE), None);
    }
    check!(irq::count(0) >= ROUNDS as usize);
    Ok(())
}

/// `hold_until(values, counter, target)`, entered with the kernel's interrupts masked: they
/// are unmasked (`mask` restored) only once the values are in the registers.
fn hold_unmasking(values: &[u32; 32], mask: u32, counter: &AtomicU32, target: u32) -> [u32; 32] {
    let mut seen = [0u32; 32];
    // SAFETY: the asm reads 32 words from `values`, writes 32 to `seen` (both valid arrays)
    // and reads `counter`; every FP register it writes is declared clobbered (the compiler
    // saves the callee-saved ones); `mask` is what the caller's `enter_critical` returned (or
    // the task's own 0), and restoring it is that critical section's exit.
    unsafe {
        fp_asm!(
            "vldmia {v}, {{s0-s31}}",
            "msr BASEPRI, {mask}",
            "isb",
            "2:",
            "ldr {t}, [{c}]",
            "cmp {t}, {target}",
            "blo 2b",
            "vstmia {s}, {{s0-s31}}",
            v = in(reg) values.as_ptr(),
            mask = in(reg) mask,
            c = in(reg) counter.as_ptr(),
            target = in(reg) target,
            s = in(reg) seen.as_mut_ptr(),
            t = out(reg) _,
        );
    }
    seen
}
