//! The Armv7-M (Cortex-M3) port.
//!
//! - Critical sections raise BASEPRI to [`MAX_SYSCALL_PRIORITY`]: interrupts of numerically
//!   lower (more urgent) priority are never masked by the kernel and must not call it; those at
//!   or below may use every non-blocking kernel call.
//! - Tasks run in thread mode on PSP; PendSV (lowest priority) switches context: it saves
//!   r4–r11 on the outgoing task's stack, asks the scheduler for the next stack pointer and
//!   restores r4–r11 from it. The hardware stacks the rest.
//! - The first task is entered through SVC, which loads its frame and returns to thread mode
//!   on PSP; the main stack is reset for interrupts.
//! - SysTick, from the processor clock, is the tick.

use super::{Port, RawEntry};
use core::arch::{asm, global_asm};
use core::ptr::{read_volatile, write_volatile};

/// BASEPRI value of a kernel critical section. With 3 priority bits (AN385) this is level 2.
pub const MAX_SYSCALL_PRIORITY: u8 = 0x40;
/// A priority for interrupts that call the kernel (below the syscall ceiling).
pub const TEST_IRQ_PRIORITY: u8 = 0x80;
const LOWEST_PRIORITY: u8 = 0xFF;

const ICSR: *mut u32 = 0xE000_ED04 as *mut u32;
/// ICSR: the SysTick exception is pending.
const ICSR_PENDSTSET: u32 = 1 << 26;
const PENDSVSET: u32 = 1 << 28;
const VTOR: *const u32 = 0xE000_ED08 as *const u32;
const SHPR3: *mut u32 = 0xE000_ED20 as *mut u32;
const SYST_CSR: *mut u32 = 0xE000_E010 as *mut u32;
const SYST_RVR: *mut u32 = 0xE000_E014 as *mut u32;
const SYST_CVR: *mut u32 = 0xE000_E018 as *mut u32;

/// Initial program status: Thumb bit set.
const INITIAL_XPSR: u32 = 0x0100_0000;

/// The Cortex-M3 port.
pub struct CortexM3;

/// Stack pointer of the first task, read by the SVC handler.
#[no_mangle]
static mut FQP_FIRST_SP: *mut u32 = core::ptr::null_mut();

/// Where a task would return to if its entry returned; entries are `-> !`, so reaching this
/// is a port bug.
extern "C" fn task_returned() -> ! {
    panic!("a task entry returned");
}

impl Port for CortexM3 {
    type Mask = u8;

    #[inline(always)]
    fn enter_critical() -> u8 {
        let old: u32;
        // SAFETY: reading BASEPRI and raising it (BASEPRI_MAX never lowers it) has no memory
        // effect beyond masking interrupts; the compiler barrier is the asm block itself.
        unsafe {
            asm!(
                "mrs {old}, BASEPRI",
                "msr BASEPRI_MAX, {new}",
                old = out(reg) old,
                new = in(reg) MAX_SYSCALL_PRIORITY as u32,
                options(nostack, preserves_flags),
            );
        }
        old as u8
    }

    #[inline(always)]
    unsafe fn exit_critical(mask: u8) {
        // SAFETY: restores the BASEPRI that the matching enter saved (caller's contract).
        unsafe {
            asm!("msr BASEPRI, {0}", in(reg) mask as u32, options(nostack, preserves_flags));
        }
    }

    #[inline(always)]
    fn request_switch() {
        // SAFETY: ICSR is the System Control Block's interrupt control register; setting
        // PENDSVSET only pends PendSV. The barriers make the exception take effect before
        // the next instruction when nothing masks it.
        unsafe {
            write_volatile(ICSR, PENDSVSET);
            asm!("dsb", "isb", options(nostack, preserves_flags));
        }
    }

    #[inline(always)]
    fn in_isr() -> bool {
        let ipsr: u32;
        // SAFETY: reading IPSR has no side effect.
        unsafe { asm!("mrs {0}, IPSR", out(reg) ipsr, options(nomem, nostack, preserves_flags)) };
        ipsr & 0x1FF != 0
    }

    unsafe fn init_stack(stack: &mut [u32], entry: RawEntry, args: (usize, usize)) -> *mut u32 {
        // The hardware frame must start 8-byte aligned.
        let base = stack.as_mut_ptr() as usize;
        let top = (base + stack.len() * 4) & !7;
        let words = (top - base) / 4;
        let frame = &mut stack[words - 16..words];
        frame[15] = INITIAL_XPSR;
        frame[14] = (entry as usize as u32) & !1; // PC
        frame[13] = task_returned as extern "C" fn() -> ! as usize as u32; // LR
        frame[12] = 0; // R12
        frame[11] = 0; // R3
        frame[10] = 0; // R2
        frame[9] = args.1 as u32; // R1
        frame[8] = args.0 as u32; // R0
        for (n, w) in frame[..8].iter_mut().enumerate() {
            *w = 0x0404_0404 * (n as u32 + 1); // R4..R11, recognisable in a debugger
        }
        frame.as_mut_ptr()
    }

    unsafe fn start_first_task(sp: *mut u32, cpu_hz: u32, tick_hz: u32) -> ! {
        // SAFETY: start-up runs with interrupts enabled but before any kernel interrupt is
        // live; writes are to the System Control Space, FQP_FIRST_SP is read only by SVCall.
        unsafe {
            FQP_FIRST_SP = sp;
            // PendSV and SysTick at the lowest priority: a switch never preempts an interrupt.
            let shpr3 = read_volatile(SHPR3) & 0x0000_FFFF;
            write_volatile(
                SHPR3,
                shpr3 | (LOWEST_PRIORITY as u32) << 16 | (LOWEST_PRIORITY as u32) << 24,
            );
            let reload = cpu_hz / tick_hz - 1;
            write_volatile(SYST_CSR, 0);
            write_volatile(SYST_RVR, reload);
            write_volatile(SYST_CVR, 0);
            write_volatile(SYST_CSR, 0b111); // processor clock, interrupt, enable
            asm!(
                // Reuse the whole main stack for interrupts from now on.
                "ldr r0, [{vtor}]",
                "ldr r0, [r0]",
                "msr MSP, r0",
                "msr BASEPRI, {zero}",
                "cpsie i",
                "cpsie f",
                "dsb",
                "isb",
                "svc 0",
                "udf #0",
                vtor = in(reg) VTOR,
                zero = in(reg) 0u32,
                options(noreturn),
            );
        }
    }

    #[inline(always)]
    fn cycles_into_tick() -> u32 {
        // Called with the tick interrupt masked: when the counter has wrapped but the tick
        // is still pending, the tick count is one behind, so the cycles since the counted
        // tick are a whole period plus the counter's progress. The pending bit is read
        // between two counter reads so that a wrap at any moment is seen consistently.
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

    #[inline(always)]
    fn wait_for_interrupt() {
        cortex_m::asm::wfi();
    }
}

/// The tick interrupt.
#[no_mangle]
#[allow(non_snake_case)]
extern "C" fn SysTick() {
    crate::rt::tick_from_isr();
}

// SVCall: enter the first task. PendSV: switch tasks; `fqp_switch_context` takes the outgoing
// stack pointer in r0 and returns the incoming one. r4 holds EXC_RETURN across the call (it was
// saved on the task stack just before). Interrupts up to the syscall ceiling are masked while
// the scheduler runs.
global_asm!(
    ".section .text.SVCall,\"ax\",%progbits",
    ".global SVCall",
    ".type SVCall,%function",
    ".thumb_func",
    "SVCall:",
    "    ldr r1, =FQP_FIRST_SP",
    "    ldr r0, [r1]",
    "    ldmia r0!, {{r4-r11}}",
    "    msr PSP, r0",
    "    isb",
    "    mov r0, #0",
    "    msr BASEPRI, r0",
    "    mvn lr, #2", // 0xFFFFFFFD: thread mode, PSP
    "    bx lr",
    ".size SVCall, . - SVCall",
    "",
    ".section .text.PendSV,\"ax\",%progbits",
    ".global PendSV",
    ".type PendSV,%function",
    ".thumb_func",
    "PendSV:",
    "    mrs r0, PSP",
    "    stmdb r0!, {{r4-r11}}",
    "    mov r4, lr",
    "    mov r1, #{ceiling}",
    "    msr BASEPRI, r1",
    "    bl fqp_switch_context",
    "    mov lr, r4",
    "    mov r1, #0",
    "    msr BASEPRI, r1",
    "    ldmia r0!, {{r4-r11}}",
    "    msr PSP, r0",
    "    bx lr",
    ".size PendSV, . - PendSV",
    ceiling = const MAX_SYSCALL_PRIORITY,
);
