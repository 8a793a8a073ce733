//! The Armv6-M port: Cortex-M0, M0+ and M1.
//!
//! What differs from Armv7-M, and what the kernel does about it:
//! - No BASEPRI: a critical section sets PRIMASK, which masks every configurable interrupt.
//!   There is no class of interrupt the kernel leaves running, so any interrupt priority may
//!   make the kernel's interrupt-safe calls; the price is that the kernel's critical sections
//!   delay all of them.
//! - No compare-and-swap (`ldrex`/`strex`): the kernel's few atomic read-modify-writes go
//!   through a critical section (`arch::test_and_set`); plain atomic loads and stores remain.
//! - Thumb-1: `stm`/`ldm` reach only r0–r7, so the switch moves r8–r11 through low registers,
//!   and there is no `clz`: the next task is chosen in Rust (`fqp_switch_context`), not by a
//!   hand-written path as on Armv7-M. A task's saved context is laid out as there (r4–r11
//!   below the hardware frame).
//! - The yield is a trap as on Armv7-M (`svc`), its handler masking interrupts itself; the
//!   tick is SysTick, the vector table's address VTOR where the core has one.

use super::scb::{self, HW_WORDS, VTOR};
use super::{Port, RawEntry};
use core::arch::{asm, global_asm};

/// A priority for interrupts that call the kernel. Every priority may; this one is in the
/// middle of the two bits an Armv6-M core has.
pub const TEST_IRQ_PRIORITY: u8 = 0x80;

/// Words the switch saves below the hardware frame: r4–r11.
const SAVED_WORDS: usize = 8;

/// The Armv6-M port.
pub struct ArmV6M;

impl Port for ArmV6M {
    /// PRIMASK as read: 1 when interrupts were already masked.
    type Mask = u32;

    #[inline(always)]
    fn enter_critical() -> u32 {
        let old: u32;
        // SAFETY: reading PRIMASK and setting it only masks interrupts; the asm block is the
        // compiler barrier.
        unsafe {
            asm!(
                "mrs {old}, PRIMASK",
                "cpsid i",
                old = out(reg) old,
                options(nostack, preserves_flags),
            );
        }
        old
    }

    #[inline(always)]
    unsafe fn exit_critical(mask: u32) {
        // SAFETY: restores the PRIMASK that the matching enter saved (caller's contract).
        unsafe {
            asm!("msr PRIMASK, {0}", in(reg) mask, options(nostack, preserves_flags));
        }
    }

    #[inline(always)]
    fn request_switch() {
        scb::pend_switch();
    }

    #[inline(always)]
    fn yield_task() -> bool {
        scb::yield_by_trap()
    }

    #[inline(always)]
    fn in_isr() -> bool {
        scb::in_isr()
    }

    unsafe fn init_stack(stack: &mut [u32], entry: RawEntry, args: (usize, usize)) -> *mut u32 {
        scb::initial_frame(stack, SAVED_WORDS, entry, args).as_mut_ptr()
    }

    unsafe fn start_first_task(sp: *mut u32, cpu_hz: u32, tick_hz: u32) -> ! {
        // SAFETY: as on Armv7-M: System Control Space writes with interrupts off until the
        // first task's stack is the process stack, then the first task entered from its
        // initial frame, never returning; the main stack it resets serves only interrupts.
        unsafe {
            asm!("cpsid i", options(nomem, nostack, preserves_flags));
            // SVCall masks interrupts itself; its priority does not matter to the kernel.
            scb::set_priorities(0);
            scb::start_tick(cpu_hz, tick_hz);
            asm!(
                "movs r1, #{end}",
                "adds r1, r1, r3",
                "msr PSP, r1",
                "movs r1, #2",
                "msr CONTROL, r1", // thread mode on PSP from here on
                "isb",
                // Reuse the whole main stack for interrupts.
                "ldr r1, [r2]",
                "ldr r1, [r1]",
                "msr MSP, r1",
                "ldr r1, [r3, #{lr}]",
                "mov lr, r1",
                "ldr r2, [r3, #{pc}]",
                "movs r1, #1",
                "orrs r2, r1", // the frame holds the entry without the Thumb bit
                "ldr r1, [r3, #{r1}]",
                "ldr r0, [r3, #{r0}]",
                "cpsie i",
                "bx r2",
                in("r3") sp,
                in("r2") VTOR,
                end = const 4 * (SAVED_WORDS + HW_WORDS),
                r0 = const 4 * SAVED_WORDS,
                r1 = const 4 * (SAVED_WORDS + 1),
                lr = const 4 * (SAVED_WORDS + 5),
                pc = const 4 * (SAVED_WORDS + 6),
                options(noreturn),
            );
        }
    }

    #[inline(always)]
    fn cycles_into_tick() -> u32 {
        scb::cycles_into_tick()
    }

    #[inline(always)]
    fn wait_for_interrupt() {
        cortex_m::asm::wfi();
    }
}

// PendSV (a switch the kernel asked for) and SVCall (a task's yield) save r4-r11 below the
// hardware frame on the outgoing task's stack, mask interrupts, ask the kernel for the next
// stack pointer (`fqp_switch_context` / `fqp_yield_context`: the outgoing one in r0, the
// incoming one back in r0; stack checks and accounting are theirs), restore r4-r11 from it
// and return to thread mode on the process stack (EXC_RETURN 0xFFFFFFFD, rebuilt after the
// call). Interrupts come back on only once the process stack is the incoming task's.
global_asm!(
    ".macro fqp_switch_via fn",
    "    mrs r0, PSP",
    "    subs r0, #32",
    "    stmia r0!, {{r4-r7}}",
    "    mov r4, r8",
    "    mov r5, r9",
    "    mov r6, r10",
    "    mov r7, r11",
    "    stmia r0!, {{r4-r7}}",
    "    subs r0, #32",
    "    cpsid i",
    "    bl \\fn",
    "    adds r0, #16",
    "    ldmia r0!, {{r4-r7}}", // r8-r11
    "    mov r8, r4",
    "    mov r9, r5",
    "    mov r10, r6",
    "    mov r11, r7",
    "    msr PSP, r0",
    "    subs r0, #32",
    "    ldmia r0!, {{r4-r7}}",
    "    cpsie i",
    "    movs r0, #2",
    "    mvns r0, r0", // 0xFFFFFFFD
    "    bx r0",
    ".endm",
    "",
    ".section .text.PendSV,\"ax\",%progbits",
    ".global PendSV",
    ".type fqp_kernel_pendsv,%function",
    ".thumb_set PendSV, fqp_kernel_pendsv",
    ".thumb_func",
    "fqp_kernel_pendsv:",
    "    fqp_switch_via fqp_switch_context",
    ".size fqp_kernel_pendsv, . - fqp_kernel_pendsv",
    "",
    ".section .text.SVCall,\"ax\",%progbits",
    ".global SVCall",
    ".type fqp_kernel_svcall,%function",
    ".thumb_set SVCall, fqp_kernel_svcall",
    ".thumb_func",
    "fqp_kernel_svcall:",
    "    fqp_switch_via fqp_yield_context",
    ".size fqp_kernel_svcall, . - fqp_kernel_svcall",
);
