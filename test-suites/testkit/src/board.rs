//! The board the runner was started on, kept in one place that the runner, the console, the
//! test interrupts and the fault handlers all reach it from (none of them through another).
//!
//! What a board is, and what a port implements, is `fqp-port`'s [`Board`].

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
pub use fqp_port::{Board, Device};

/// The board, once [`set_board`]: written once, at start-up, before anything reads it (no
/// heap needed: a port names its board before its heap exists).
struct Slot {
    board: UnsafeCell<Option<&'static dyn Board>>,
    /// `board` is written and may be read.
    ready: AtomicBool,
}

// SAFETY: `board` is written once, by `set_board` before `ready` is published (Release), and
// read only after `ready` is seen (Acquire); a second `set_board` writes nothing.
unsafe impl Sync for Slot {}

static BOARD: Slot = Slot {
    board: UnsafeCell::new(None),
    ready: AtomicBool::new(false),
};

/// Makes `board` the one the test kit uses. Call it first thing in `main`, before the heap,
/// the console or any peripheral is set up: a fault or panic in the board's own start-up is
/// then reported on its console (with the faulting code's address), not a silent reset.
/// `fqp_testkit::run` calls it too; only the first call counts.
pub fn set_board(board: &'static dyn Board) {
    if BOARD.ready.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: start-up is single-threaded and nothing reads `board` before `ready`.
    unsafe { *BOARD.board.get() = Some(board) };
    BOARD.ready.store(true, Ordering::Release);
}

/// The board given to `fqp_testkit::run`.
pub fn board() -> &'static dyn Board {
    try_board().expect("fqp_testkit::run has not been called")
}

/// The board, once set (fault handlers use this).
pub fn try_board() -> Option<&'static dyn Board> {
    if !BOARD.ready.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: `ready` says `board` was written, and it is never written again.
    unsafe { *BOARD.board.get() }
}

/// The optional devices `board` provides, comma-separated (`READY`'s `devices=`).
pub(crate) struct Devices(pub &'static dyn Board);

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for d in Device::ALL.into_iter().filter(|d| self.0.has(*d)) {
            write!(f, "{sep}{}", d.name())?;
            sep = ",";
        }
        Ok(())
    }
}
