//! The Armv7-M and Armv7E-M port: Cortex-M3, and Cortex-M4/M7 with or without their FPU;
//! and with two differences, the Armv8-M Mainline port (Cortex-M33 and kin, `thumbv8m.main`):
//!
//! - Critical sections raise BASEPRI to [`MAX_SYSCALL_PRIORITY`]: interrupts of numerically
//!   lower (more urgent) priority are never masked by the kernel and must not call it; those at
//!   or below may use every non-blocking kernel call.
//! - Tasks run in thread mode on PSP; PendSV (lowest priority) switches context: it saves
//!   r4–r11 on the outgoing task's stack, asks the scheduler for the next stack pointer and
//!   restores r4–r11 from it. The hardware stacks the rest.
//! - With the FPU (hard-float targets, `eabihf`: M4F, M7), each task keeps its own EXC_RETURN
//!   with its saved registers: a task that has used the FPU since its last switch returns with
//!   an extended frame (bit 4 clear), and only then are its s16–s31 saved and restored by the
//!   switch (the hardware stacks s0–s15 and FPSCR, lazily: only if the handler itself uses the
//!   FPU). A task that never touches the FPU costs one test per switch. Tasks start without FP
//!   state (CONTROL.FPCA clear). cortex-m-rt turns the FPU on at reset for these targets.
//! - A task's yield is a trap: `svc` enters SVCall, which runs at the syscall ceiling (so it
//!   excludes every interrupt that may call the kernel without touching BASEPRI) and switches
//!   at once. Pending PendSV instead would cost a critical section in the task, the pend and
//!   its barriers, and a second exception.
//! - The first task is entered from thread mode: its initial frame is unstacked by hand, the
//!   thread stack becomes PSP, the main stack is reset for interrupts, and its entry is called.
//! - SysTick, from the processor clock, is the tick.
//! - Armv8-M Mainline: the kernel runs on the non-secure side, as a TrustZone system's
//!   application does (the secure side — a boot stage that configures the security
//!   attribution and hands over, or TF-M — is the board's), so tasks return with the
//!   non-secure EXC_RETURN (0xFFFFFFBC). Each task's stack floor is its stack limit (PSPLIM),
//!   set on every switch: the push that would overflow faults (UsageFault, STKOF) instead of
//!   writing below the stack, and the fault handler here reports the task and suspends it for
//!   good (`fqp_stack_limit_hit`). Other usage faults go on to the board's HardFault handler.

use super::scb::{self, HW_WORDS, VTOR};
use super::{Port, RawEntry};
use crate::sched::layout;
use core::arch::{asm, global_asm};

/// BASEPRI value of a kernel critical section. With 3 priority bits (AN385) this is level 2.
pub const MAX_SYSCALL_PRIORITY: u8 = 0x40;
/// A priority for interrupts that call the kernel (below the syscall ceiling).
pub const TEST_IRQ_PRIORITY: u8 = 0x80;

/// The Armv7-M / Armv7E-M port.
pub struct ArmV7M;

/// The FPU's registers are part of a task's context (hard-float targets).
const FPU: bool = cfg!(target_abi = "eabihf") && !cfg!(feature = "selftest-no-fp-context");
/// Words the switch saves below the hardware frame of a task that has no FP state: r4–r11,
/// and with the FPU the task's EXC_RETURN.
const SAVED_WORDS: usize = if FPU { 9 } else { 8 };
/// Armv8-M Mainline, non-secure side, with a stack limit register.
const V8M: bool = cfg!(fqp_cpu = "armv8m_main");
/// Each task's stack floor is its stack limit (PSPLIM).
const STACK_LIMIT: bool = V8M && !cfg!(feature = "selftest-no-stack-limit");
/// EXC_RETURN of a task without FP state: thread mode, process stack, basic frame (on
/// Armv8-M: of the non-secure side, which stacked no callee registers).
const EXC_RETURN_THREAD_PSP: u32 = if V8M { 0xFFFF_FFBC } else { 0xFFFF_FFFD };

impl Port for ArmV7M {
    /// BASEPRI as read (a whole register: no narrowing on the way in or out).
    type Mask = u32;

    #[inline(always)]
    fn enter_critical() -> u32 {
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
        old
    }

    #[inline(always)]
    unsafe fn exit_critical(mask: u32) {
        // SAFETY: restores the BASEPRI that the matching enter saved (caller's contract).
        unsafe {
            asm!("msr BASEPRI, {0}", in(reg) mask, options(nostack, preserves_flags));
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
        let frame = scb::initial_frame(stack, SAVED_WORDS, entry, args);
        if FPU {
            frame[8] = EXC_RETURN_THREAD_PSP;
        }
        frame.as_mut_ptr()
    }

    unsafe fn start_first_task(sp: *mut u32, cpu_hz: u32, tick_hz: u32) -> ! {
        // SAFETY: writes are to the System Control Space. Interrupts stay off until the first
        // task's stack is the process stack: an interrupt that woke a task (the console's,
        // say) would otherwise have PendSV save "the running task" onto whatever PSP held.
        // The asm enters the first task from its initial frame and never returns; nothing
        // runs on the main stack it resets but interrupt handlers.
        unsafe {
            asm!("cpsid i", options(nomem, nostack, preserves_flags));
            // SVCall at the syscall ceiling: the yield trap excludes the kernel's interrupts.
            scb::set_priorities(MAX_SYSCALL_PRIORITY);
            scb::start_tick(cpu_hz, tick_hz);
            #[cfg(fqp_cpu = "armv8m_main")]
            let floor = {
                scb::enable_usage_fault();
                crate::rt::current_stack_floor()
            };
            #[cfg(not(fqp_cpu = "armv8m_main"))]
            let floor = 0usize;
            asm!(
                // The frame: r4-r11 (and EXC_RETURN with the FPU), then r0-r3, r12, lr, pc,
                // xpsr as an exception stacks them.
                ".if {stack_limit}",
                "msr PSPLIM, r2",
                ".endif",
                "add r1, r3, #{end}",
                "msr PSP, r1",
                "mov r1, #2",
                "msr CONTROL, r1", // thread mode on PSP from here on, no FP state yet
                "isb",
                // Reuse the whole main stack for interrupts.
                "ldr r1, [r12]",
                "ldr r1, [r1]",
                "msr MSP, r1",
                "ldr lr, [r3, #{lr}]",
                "ldr r2, [r3, #{pc}]",
                "orr r2, r2, #1", // the frame holds the entry without the Thumb bit
                "ldr r1, [r3, #{r1}]",
                "ldr r0, [r3, #{r0}]",
                "mov r3, #0",
                "msr BASEPRI, r3",
                "cpsie i",
                "cpsie f",
                "bx r2",
                in("r3") sp,
                in("r12") VTOR,
                in("r2") floor,
                stack_limit = const STACK_LIMIT as u32,
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

// PendSV and SVCall switch tasks: each saves r4-r11 below the hardware frame on the outgoing
// task's stack, and restores them from the incoming one's, returning to thread mode on PSP
// (`save_context`/`restore_context`). Without the FPU every task returns with EXC_RETURN
// 0xFFFFFFFD, rewritten after a call; with it, the task's own EXC_RETURN is saved with its
// registers, with s16-s31 before them when it says the task has FP state (bit 4 clear).
//
// PendSV, at the lowest priority, raises BASEPRI to the syscall ceiling and switches to the
// head of the highest non-empty ready list (the count of leading zeros of the ready bitmap),
// after the same stack check and accounting as below; while the scheduler is locked it asks
// the kernel instead (`fqp_switch_context`: stack pointer out in r0, next one back in r0).
//
// SVCall is a task's yield and runs at the ceiling already. Its common case is written out
// here: with the scheduler not locked, the running task heads its ready list (the kernel's
// invariant), so a yield makes the task after it (`sched_links`) the head and the running
// task; when the task is alone, nothing is saved or changed at all. The outgoing stack is
// checked as the kernel checks it (stack pointer above the floor, the two guard words below
// the floor intact), a damaged one reported through `fqp_stack_overflowed`, and with run-time
// statistics the outgoing task's time is accounted by `fqp_account_switch`. A locked
// scheduler goes to `fqp_yield_context`, which does the same in Rust and more. The offsets come from `sched::layout`; the indices read are the kernel's
// own (the running task and its list neighbour), always slots of the task table.
global_asm!(
    // The assembler is told of the FPU (module-level assembly gets no target features).
    ".if {fpu}",
    ".fpu fpv4-sp-d16",
    ".endif",
    // r1: the scheduler's lock depth. The FPU's context and the stack limit make the paths
    // longer than cbnz reaches.
    ".macro if_locked_goto_5",
    ".if {fpu} || {v8m}",
    "    cmp r1, #0",
    "    bne 5f",
    ".else",
    "    cbnz r1, 5f",
    ".endif",
    ".endm",
    // r0: the task's stack pointer, moved past what is saved or restored.
    ".macro save_context",
    ".if {fpu}",
    "    tst lr, #0x10",
    "    it eq",
    "    vstmdbeq r0!, {{s16-s31}}",
    "    stmdb r0!, {{r4-r11, lr}}",
    ".else",
    "    stmdb r0!, {{r4-r11}}",
    ".endif",
    ".endm",
    // r1, r2: scratch. The incoming task's stack floor becomes the stack limit.
    ".macro set_stack_limit",
    ".if {stack_limit}",
    "    ldr r2, ={kernel}",
    "    ldrb r1, [r2, #{current}]",
    "    add r2, r2, r1, lsl #{tcb_shift}",
    "    ldr r1, [r2, #{tcb_floor}]",
    "    msr PSPLIM, r1",
    ".endif",
    ".endm",
    ".macro restore_context",
    ".if {fpu}",
    "    ldmia r0!, {{r4-r11, lr}}",
    "    tst lr, #0x10",
    "    it eq",
    "    vldmiaeq r0!, {{s16-s31}}",
    ".else",
    "    ldmia r0!, {{r4-r11}}",
    ".endif",
    ".endm",
    "",
    ".section .text.SVCall,\"ax\",%progbits",
    ".global SVCall",
    ".type fqp_kernel_svcall,%function",
    ".thumb_set SVCall, fqp_kernel_svcall",
    ".thumb_func",
    "fqp_kernel_svcall:",
    "    ldr r3, ={kernel}",
    "    ldr r1, [r3, #{lock_depth}]",
    "    if_locked_goto_5", // locked: the kernel's way
    "    ldrb r1, [r3, #{current}]",
    "    add r2, r3, r1, lsl #{link_shift}",
    "    ldrb r2, [r2, #{sched_next}]", // r2: the task after the running one
    "    cmp r2, r1",
    "    beq 4f", // alone at its priority: nothing to do
    "    mrs r0, PSP",
    "    save_context",
    "    mov r4, r1", // r4: the outgoing slot, r5: the incoming one, r6: the kernel
    "    mov r5, r2",
    "    mov r6, r3",
    "    add r12, r3, r1, lsl #{tcb_shift}",
    "    str r0, [r12, #{tcb_sp}]",
    "    ldrb r1, [r12, #{tcb_prio}]",
    "    add r1, r3, r1, lsl #{list_shift}",
    "    strb r2, [r1, #{ready_head}]",
    "    strb r2, [r3, #{current}]",
    ".if {stack_check}",
    "    ldr r1, [r12, #{tcb_floor}]",
    "    cmp r0, r1",
    "    blo 2f",
    "    ldrd r0, r1, [r1, #-8]", // the two guard words
    "    cmp r0, #{fill}",
    "    it eq",
    "    cmpeq r1, #{fill}",
    "    bne 2f",
    ".endif",
    "1:",
    ".if {run_time_stats}",
    "    mov r0, r4",
    "    bl fqp_account_switch",
    "    mvn lr, #{exc_not}",
    ".endif",
    "    add r12, r6, r5, lsl #{tcb_shift}",
    "    ldr r0, [r12, #{tcb_sp}]",
    "    restore_context",
    "    set_stack_limit",
    "    msr PSP, r0",
    "4:",
    "    bx lr",
    "2:",
    "    push {{r4, lr}}", // r4 for the 8-byte stack alignment of the call
    "    mov r0, r4",
    "    bl fqp_stack_overflowed",
    "    pop {{r4, lr}}",
    "    b 1b",
    "5:",
    "    mrs r0, PSP",
    "    save_context",
    "    bl fqp_yield_context",
    "    restore_context",
    "    set_stack_limit",
    "    msr PSP, r0",
    ".if !{fpu}",
    "    mvn lr, #{exc_not}",
    ".endif",
    "    bx lr",
    ".ltorg",
    ".size fqp_kernel_svcall, . - fqp_kernel_svcall",
    "",
    ".section .text.PendSV,\"ax\",%progbits",
    ".global PendSV",
    ".type fqp_kernel_pendsv,%function",
    ".thumb_set PendSV, fqp_kernel_pendsv",
    ".thumb_func",
    "fqp_kernel_pendsv:",
    "    mrs r0, PSP",
    "    save_context",
    "    mov r1, #{ceiling}",
    "    msr BASEPRI, r1",
    "    ldr r4, ={kernel}", // r4: the kernel (kept across the overflow report's call)
    "    ldr r1, [r4, #{lock_depth}]",
    "    if_locked_goto_5", // locked: the kernel's way
    "    ldrb r1, [r4, #{current}]",
    "    add r12, r4, r1, lsl #{tcb_shift}",
    "    str r0, [r12, #{tcb_sp}]",
    ".if {stack_check}",
    "    ldr r2, [r12, #{tcb_floor}]",
    "    cmp r0, r2",
    "    blo 2f",
    "    ldrd r0, r2, [r2, #-8]", // the two guard words
    "    cmp r0, #{fill}",
    "    it eq",
    "    cmpeq r2, #{fill}",
    "    bne 2f",
    ".endif",
    "1:",
    ".if {run_time_stats}",
    "    ldrb r0, [r4, #{current}]",
    "    bl fqp_account_switch",
    "    mvn lr, #{exc_not}",
    ".endif",
    // The head of the highest non-empty ready list runs.
    "    ldr r2, [r4, #{ready_bits}]",
    "    clz r2, r2",
    "    rsb r2, r2, #31",
    "    add r2, r4, r2, lsl #{list_shift}",
    "    ldrb r2, [r2, #{ready_head}]",
    "    strb r2, [r4, #{current}]",
    "    add r12, r4, r2, lsl #{tcb_shift}",
    "    ldr r0, [r12, #{tcb_sp}]",
    "6:",
    "    mov r1, #0",
    "    msr BASEPRI, r1",
    "    restore_context",
    "    set_stack_limit",
    "    msr PSP, r0",
    "    bx lr",
    "2:",
    "    mov r0, r1",
    "    bl fqp_stack_overflowed",
    "    mvn lr, #{exc_not}",
    "    b 1b",
    "5:",
    "    bl fqp_switch_context",
    "    mvn lr, #{exc_not}",
    "    b 6b",
    ".ltorg",
    ".size fqp_kernel_pendsv, . - fqp_kernel_pendsv",
    ceiling = const MAX_SYSCALL_PRIORITY,
    v8m = const V8M as u32,
    stack_limit = const STACK_LIMIT as u32,
    exc_not = const !EXC_RETURN_THREAD_PSP,
    fpu = const FPU as u32,
    kernel = sym crate::rt::KERNEL,
    run_time_stats = const crate::config::RUN_TIME_STATS as u32,
    stack_check = const crate::config::STACK_CHECK as u32,
    fill = const crate::stack::FILL,
    lock_depth = const layout::LOCK_DEPTH,
    ready_bits = const layout::READY_BITS,
    current = const layout::CURRENT,
    sched_next = const layout::SCHED_NEXT,
    link_shift = const shift(layout::LINK_SIZE),
    ready_head = const layout::READY_HEAD,
    list_shift = const shift(layout::LIST_SIZE),
    tcb_shift = const shift(layout::TCB_SIZE),
    tcb_sp = const layout::TASKS + layout::TCB_SP,
    tcb_prio = const layout::TASKS + layout::TCB_PRIO,
    tcb_floor = const layout::TASKS + layout::TCB_STACK_FLOOR,
);

// Armv8-M: a task's push below its stack limit faults (UsageFault, STKOF). The handler
// clears the fault, drops the task's critical section (BASEPRI) and moves its stack pointer
// back inside its stack (the fault left no usable frame there; the switch saves into it),
// then has the kernel report and suspend the task; the switch it asks for runs before the
// return to thread mode. A usage fault of another kind, or one outside a task, turns the
// usage fault off and returns: the instruction faults again, as a HardFault, which the
// board reports.
#[cfg(fqp_cpu = "armv8m_main")]
global_asm!(
    ".section .text.UsageFault,\"ax\",%progbits",
    ".global UsageFault",
    ".type fqp_kernel_usagefault,%function",
    ".thumb_set UsageFault, fqp_kernel_usagefault",
    ".thumb_func",
    "fqp_kernel_usagefault:",
    "    ldr r0, ={cfsr}",
    "    ldr r1, [r0]",
    "    tst r1, #{stkof}",
    "    beq 1f",
    "    tst lr, #4", // from the process stack: a task
    "    beq 1f",
    "    mov r1, #{stkof}",
    "    str r1, [r0]", // write one to clear
    "    mrs r1, PSPLIM",
    "    add r1, r1, #{room}",
    "    msr PSP, r1",
    "    mov r1, #0",
    "    msr BASEPRI, r1",
    "    push {{r4, lr}}",
    "    bl fqp_stack_limit_hit",
    "    pop {{r4, lr}}",
    "    bx lr",
    "1:",
    "    ldr r0, ={shcsr}",
    "    ldr r1, [r0]",
    "    bic r1, r1, #{usgfaultena}",
    "    str r1, [r0]",
    "    dsb",
    "    isb",
    "    bx lr",
    ".ltorg",
    ".size fqp_kernel_usagefault, . - fqp_kernel_usagefault",
    cfsr = const 0xE000_ED28u32,
    shcsr = const 0xE000_ED24u32,
    stkof = const 1u32 << 20,
    usgfaultena = const 1u32 << 18,
    // Room for what the switch saves: r4-r11, EXC_RETURN, s16-s31.
    room = const 4 * (9 + 16),
);

// The switch paths load the guard as one pair of words below the floor.
const _: () = assert!(crate::stack::GUARD_WORDS == 2);

/// log2 of an array stride the switch path multiplies by with a shift.
const fn shift(stride: usize) -> u32 {
    assert!(
        stride.is_power_of_two(),
        "the task control block's size must be a power of two (FQP_NOTIFY_INDEXES changes it)"
    );
    stride.trailing_zeros()
}
