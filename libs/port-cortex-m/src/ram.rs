//! The RAM a cortex-m-rt image leaves free: from the end of its data (`__sheap`) to the top
//! of the main stack (`_stack_start`), less what the port keeps for the main stack, which
//! serves interrupts once the scheduler runs. Every port gives it to its heap.

extern "C" {
    static mut __sheap: u8;
    static mut _stack_start: u8;
}

/// The free RAM after the image's data, keeping `main_stack` bytes below the stack's top:
/// its start and length. Panics when the data leave less than that.
pub fn after_data(main_stack: usize) -> (*mut u8, usize) {
    let lo = core::ptr::addr_of_mut!(__sheap);
    let top = core::ptr::addr_of_mut!(_stack_start) as usize;
    let len = top
        .checked_sub(main_stack)
        .and_then(|hi| hi.checked_sub(lo as usize))
        .expect("no RAM left for the heap: the main stack (MAIN_STACK_BYTES) takes it all");
    (lo, len)
}
