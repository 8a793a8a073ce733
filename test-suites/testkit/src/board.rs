//! The board interface the test runner needs: the part of a port that qualification drives.
//!
//! A vendor implements [`Board`] for its board (see `port-template/`). The console transmit
//! path is polled so it works in any context, faults included; the receive path is
//! interrupt-driven: the port's UART receive interrupt passes each byte to
//! [`crate::console::rx_byte`].

/// What a port provides to the test runner.
pub trait Board: Sync {
    /// Short board name, reported to the host (`port=` in `HELLO`/`READY`).
    fn name(&self) -> &'static str;

    /// Writes bytes to the console, returning when they are all handed to the hardware.
    /// Must work from any context (task, interrupt, fault handler) without the kernel.
    fn write(&self, bytes: &[u8]);

    /// Number of software-triggerable test interrupts (at least 2 for the ISR groups).
    fn test_irqs(&self) -> usize;

    /// Pends test interrupt `n`. The port's handler for it calls [`crate::irq::dispatch`]
    /// with `n`. Its priority must allow kernel calls.
    fn pend_test_irq(&self, n: usize);

    /// Statistics of the heap, if the port has one (the heap test group needs them).
    fn heap_stats(&self) -> Option<fqp_kernel::heap::HeapStats>;

    /// Resets the whole board.
    fn reset(&self) -> !;

    /// Ends the run with `code` where the board can (an emulator exits); otherwise resets.
    fn exit(&self, code: i32) -> !;
}
