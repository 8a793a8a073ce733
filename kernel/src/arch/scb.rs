//! What every Cortex-M port shares, from Armv6-M to Armv7E-M: the System Control Block's
//! switch request and handler priorities, SysTick as the tick, and a new task's exception
//! frame. The CPU ports differ in how they mask interrupts and save registers, not here.

use super::RawEntry;
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

const ICSR: *mut u32 = 0xE000_ED04 as *mut u32;
/// ICSR: the SysTick exception is pending.
const ICSR_PENDSTSET: u32 = 1 << 26;
const PENDSVSET: u32 = 1 << 28;
/// The vector table's address (reads as zero on a core without VTOR, whose table is at 0).
pub const VTOR: *const u32 = 0xE000_ED08 as *const u32;
// Armv6-M reaches these only as whole words; so do we, everywhere.
const SHPR2: *mut u32 = 0xE000_ED1C as *mut u32;
const SHPR3: *mut u32 = 0xE000_ED20 as *mut u32;
const SYST_CSR: *mut u32 = 0xE000_E010 as *mut u32;
const SYST_RVR: *mut u32 = 0xE000_E014 as *mut u32;
const SYST_CVR: *mut u32 = 0xE000_E018 as *mut u32;
const LOWEST_PRIORITY: u32 = 0xFF;

/// Initial program status: Thumb bit set.
const INITIAL_XPSR: u32 = 0x0100_0000;
/// Words of a hardware exception frame without FP state: r0–r3, r12, lr, pc, xpsr.
pub const HW_WORDS: usize = 8;

/// Where a task would return to if its entry returned; entries are `-> !`, so reaching this
/// is a port bug.
extern "C" fn task_returned() -> ! {
    panic!("a task entry returned");
}

/// Writes a new task's first frame at the 8-byte aligned top of `stack`: `saved` words the
/// port's switch restores (r4–r11 first, then what the port adds, left zero), then the
/// hardware frame that enters `entry(args.0, args.1)`. Returns the frame, whose start is the
/// task's initial stack pointer.
pub fn initial_frame(
    stack: &mut [u32],
    saved: usize,
    entry: RawEntry,
    args: (usize, usize),
) -> &mut [u32] {
    let base = stack.as_mut_ptr() as usize;
    let top = (base + stack.len() * 4) & !7;
    let words = (top - base) / 4;
    let frame = &mut stack[words - saved - HW_WORDS..words];
    let hw = &mut frame[saved..];
    hw[7] = INITIAL_XPSR;
    hw[6] = (entry as usize as u32) & !1; // PC
    hw[5] = task_returned as extern "C" fn() -> ! as usize as u32; // LR
    hw[4] = 0; // R12
    hw[3] = 0; // R3
    hw[2] = 0; // R2
    hw[1] = args.1 as u32; // R1
    hw[0] = args.0 as u32; // R0
    for (n, w) in frame[..saved].iter_mut().enumerate() {
        // R4..R11 recognisable in a debugger; anything after them zero.
        *w = if n < 8 {
            0x0404_0404 * (n as u32 + 1)
        } else {
            0
        };
    }
    frame
}

/// The port's synchronous yield: from a task (thread mode on the process stack; handler
/// mode reads SPSEL as 0, and start-up code runs on the main stack), `svc` enters SVCall,
/// which switches at once, and this returns true; elsewhere false.
#[inline(always)]
pub fn yield_by_trap() -> bool {
    let control: u32;
    // SAFETY: reading CONTROL has no side effect.
    unsafe { asm!("mrs {0}, CONTROL", out(reg) control, options(nomem, nostack, preserves_flags)) };
    if control & 2 == 0 {
        return false;
    }
    // SAFETY: the port's SVCall switches tasks as its PendSV does; the caller is a task in
    // thread mode, and `svc` with interrupts masked is the documented misuse of `yield_now`.
    unsafe { asm!("svc 0", options(nostack)) };
    true
}

/// True in an exception handler.
#[inline(always)]
pub fn in_isr() -> bool {
    let ipsr: u32;
    // SAFETY: reading IPSR has no side effect.
    unsafe { asm!("mrs {0}, IPSR", out(reg) ipsr, options(nomem, nostack, preserves_flags)) };
    ipsr & 0x1FF != 0
}

/// Pends PendSV, the switch.
#[inline(always)]
pub fn pend_switch() {
    // SAFETY: ICSR is the System Control Block's interrupt control register; setting
    // PENDSVSET only pends PendSV. The barriers make the exception take effect before the
    // next instruction when nothing masks it.
    unsafe {
        write_volatile(ICSR, PENDSVSET);
        asm!("dsb", "isb", options(nostack, preserves_flags));
    }
}

/// PendSV and SysTick at the lowest priority (a switch never preempts an interrupt), SVCall
/// at `svcall`.
///
/// # Safety
/// Start-up only, with interrupts disabled.
pub unsafe fn set_priorities(svcall: u8) {
    // SAFETY: word accesses to the System Handler Priority Registers (caller's contract).
    unsafe {
        let shpr3 = read_volatile(SHPR3) & 0x0000_FFFF;
        write_volatile(SHPR3, shpr3 | LOWEST_PRIORITY << 16 | LOWEST_PRIORITY << 24);
        let shpr2 = read_volatile(SHPR2) & 0x00FF_FFFF;
        write_volatile(SHPR2, shpr2 | (svcall as u32) << 24);
    }
}

/// Turns the UsageFault exception on (else usage faults escalate to HardFault).
///
/// # Safety
/// Start-up only, with interrupts disabled, and a UsageFault handler linked.
#[cfg(fqp_cpu = "armv8m_main")]
pub unsafe fn enable_usage_fault() {
    const SHCSR: *mut u32 = 0xE000_ED24 as *mut u32;
    // SAFETY: a read-modify-write of the System Handler Control and State Register at
    // start-up (caller's contract).
    unsafe { write_volatile(SHCSR, read_volatile(SHCSR) | 1 << 18) };
}

/// Starts SysTick from the processor clock, interrupting `tick_hz` times a second.
///
/// # Safety
/// Start-up only, with interrupts disabled.
pub unsafe fn start_tick(cpu_hz: u32, tick_hz: u32) {
    let reload = cpu_hz / tick_hz - 1;
    // SAFETY: SysTick's registers (caller's contract: nobody else uses them yet).
    unsafe {
        write_volatile(SYST_CSR, 0);
        write_volatile(SYST_RVR, reload);
        write_volatile(SYST_CVR, 0);
        write_volatile(SYST_CSR, 0b111); // processor clock, interrupt, enable
    }
}

/// CPU cycles since the counted tick; called with the tick interrupt masked.
#[inline(always)]
pub fn cycles_into_tick() -> u32 {
    // When the counter has wrapped but the tick is still pending, the tick count is one
    // behind, so the cycles since the counted tick are a whole period plus the counter's
    // progress. The pending bit is read between two counter reads so that a wrap at any
    // moment is seen consistently.
    // SAFETY: SysTick and ICSR are always readable.
    unsafe {
        let reload = read_volatile(SYST_RVR);
        let before = read_volatile(SYST_CVR);
        let pending = read_volatile(ICSR) & ICSR_PENDSTSET != 0;
        if pending {
            let after = read_volatile(SYST_CVR);
            (reload + 1) + reload.wrapping_sub(after)
        } else {
            reload.wrapping_sub(before)
        }
    }
}

/// The tick interrupt.
#[no_mangle]
#[allow(non_snake_case)]
extern "C" fn SysTick() {
    crate::rt::tick_from_isr();
}
