//! The board the runner was started on, kept in one place that the runner, the console, the
//! test interrupts and the fault handlers all reach it from (none of them through another).
//!
//! What a board is, and what a port implements, is `fqp-port`'s [`Board`].

use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};
pub use fqp_port::{Board, Device};

/// The board, once [`set`]; a leaked box holding the trait object (a wide pointer does not
/// fit an atomic).
static BOARD: AtomicPtr<&'static dyn Board> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `board` the one the test kit uses (by `fqp_testkit::run`, once, at start-up).
pub(crate) fn set(board: &'static dyn Board) {
    let boxed = alloc::boxed::Box::leak(alloc::boxed::Box::new(board));
    BOARD.store(boxed, Ordering::Release);
}

/// The board given to `fqp_testkit::run`.
pub fn board() -> &'static dyn Board {
    try_board().expect("fqp_testkit::run has not been called")
}

/// The board, if `fqp_testkit::run` has been called (fault handlers use this).
pub fn try_board() -> Option<&'static dyn Board> {
    // SAFETY: when set, the pointer is to a leaked, never-freed box written once by `set`.
    unsafe { BOARD.load(Ordering::Acquire).as_ref() }.copied()
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
