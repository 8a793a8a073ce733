//! The AN505's secure boot stage: the Cortex-M33 resets on its secure side, and the kernel
//! runs on the non-secure side, as an application of a TrustZone system does. This stage is
//! what a secure boot image (TF-M, say) does first, and nothing more: it opens the board to
//! the non-secure side and hands over. It runs from the first 32 KiB of SSRAM1 at its secure
//! alias (`m33/memory.x`), needs no RAM, and is never entered again.
//!
//! 1. Security attribution: the SAU off with ALLNS, so that everything the board's IDAU does
//!    not make secure (addresses with bit 28 set) is non-secure.
//! 2. Memory: the memory protection controllers of SSRAM1 (from the non-secure image up) and
//!    SSRAM2/3 (all) let non-secure accesses through. Their block size is read, not assumed.
//! 3. Peripherals: every port of the peripheral protection controllers non-secure.
//! 4. Every interrupt line targets the non-secure side, and so do HardFault, BusFault and NMI
//!    (AIRCR.BFHFNMINS): the image's own fault handlers report faults. The FPU is shared.
//! 5. The non-secure vector table and main stack, then `bxns` to its reset handler.

core::arch::global_asm!(
    ".section .fqp_secure_boot,\"ax\",%progbits",
    ".p2align 7",
    ".global fqp_secure_vectors",
    "fqp_secure_vectors:",
    "    .word 0x30008000", // main stack: the SSE's SRAM, secure alias (only `bl` uses it)
    "    .word fqp_secure_reset",
    "    .word fqp_secure_stop", // NMI
    "    .word fqp_secure_stop", // HardFault
    "    .word fqp_secure_stop", // MemManage
    "    .word fqp_secure_stop", // BusFault
    "    .word fqp_secure_stop", // UsageFault
    "    .word fqp_secure_stop", // SecureFault
    "",
    ".thumb_func",
    "fqp_secure_reset:",
    "    ldr r0, ={sau_ctrl}",
    "    movs r1, #2", // ALLNS, SAU disabled
    "    str r1, [r0]",
    "    ldr r0, ={mpc_ssram1}",
    "    ldr r1, =__fqp_ns_start",
    "    bl fqp_mpc_open_from",
    "    ldr r0, ={mpc_ssram2}",
    "    movs r1, #0",
    "    bl fqp_mpc_open_from",
    "    ldr r0, ={mpc_ssram3}",
    "    movs r1, #0",
    "    bl fqp_mpc_open_from",
    // The non-secure PPC enables: AHBNSPPC0, AHBNSPPCEXP0-3, APBNSPPC0-1, APBNSPPCEXP0-3.
    "    ldr r0, ={secctl}",
    "    mvn r1, #0",
    "    str r1, [r0, #0x50]",
    "    str r1, [r0, #0x60]",
    "    str r1, [r0, #0x64]",
    "    str r1, [r0, #0x68]",
    "    str r1, [r0, #0x6c]",
    "    str r1, [r0, #0x70]",
    "    str r1, [r0, #0x74]",
    "    str r1, [r0, #0x80]",
    "    str r1, [r0, #0x84]",
    "    str r1, [r0, #0x88]",
    "    str r1, [r0, #0x8c]",
    "    ldr r0, ={itns}",
    "    str r1, [r0]",
    "    str r1, [r0, #4]",
    "    str r1, [r0, #8]",
    "    str r1, [r0, #12]",
    "    ldr r0, ={aircr}",
    "    ldr r1, [r0]",
    "    uxth r1, r1",
    "    ldr r2, ={aircr_set}",
    "    orr r1, r1, r2",
    "    str r1, [r0]",
    "    ldr r0, ={nsacr}",
    "    ldr r1, [r0]",
    "    orr r1, r1, #0xC00", // CP10, CP11: the FPU
    "    str r1, [r0]",
    "    dsb",
    "    isb",
    "    ldr r0, =__fqp_ns_vectors",
    "    ldr r1, ={vtor_ns}",
    "    str r0, [r1]",
    "    ldr r1, [r0]",
    "    msr MSP_NS, r1",
    "    ldr r1, [r0, #4]",
    "    bic r1, r1, #1", // bit 0 clear: the branch goes to the non-secure side
    "    bxns r1",
    "",
    // r0: a memory protection controller; r1: the first byte (offset in its memory) from
    // which its blocks become non-secure. Blocks of 2^(BLK_CFG+5) bytes, 32 per LUT word.
    ".thumb_func",
    "fqp_mpc_open_from:",
    "    ldr r2, [r0, #0x14]", // BLK_CFG
    "    adds r2, r2, #5",
    "    lsrs r1, r1, r2", // r1: the first non-secure block
    "    ldr r3, [r0, #0x10]", // BLK_MAX: the last LUT word
    "    ldr r2, [r0]",
    "    orr r2, r2, #0x100", // CTRL.AUTOINC
    "    str r2, [r0]",
    "    movs r2, #0",
    "    str r2, [r0, #0x18]", // BLK_IDX
    "2:",
    "    lsls r4, r2, #5",
    "    subs r4, r1, r4", // the first non-secure bit of this word, if 1..31
    "    mvn r5, #0",
    "    cmp r4, #0",
    "    ble 3f", // all of this word's blocks
    "    cmp r4, #32",
    "    ite lt",
    "    lsllt r5, r5, r4",
    "    movge r5, #0",
    "3:",
    "    str r5, [r0, #0x1c]", // BLK_LUT
    "    adds r2, r2, #1",
    "    cmp r2, r3",
    "    bls 2b",
    "    bx lr",
    "",
    // A fault on the secure side: nothing here can report it; stop where a debugger sees it.
    ".thumb_func",
    "fqp_secure_stop:",
    "    bkpt #0",
    "    b fqp_secure_stop",
    ".ltorg",
    sau_ctrl = const 0xE000_EDD0u32,
    mpc_ssram1 = const 0x5800_7000u32,
    mpc_ssram2 = const 0x5800_8000u32,
    mpc_ssram3 = const 0x5800_9000u32,
    secctl = const 0x5008_0000u32,
    itns = const 0xE000_E380u32,
    aircr = const 0xE000_ED0Cu32,
    // VECTKEY, BFHFNMINS.
    aircr_set = const 0x05FA_0000u32 | 1 << 13,
    nsacr = const 0xE000_ED8Cu32,
    vtor_ns = const 0xE002_ED08u32,
);
