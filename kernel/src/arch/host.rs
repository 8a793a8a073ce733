//! The host port: runs the kernel's object logic in unit tests on the development machine.
//!
//! A critical section is a global spin lock (host tests run on several threads), a switch
//! request is recorded, and nothing here can run a task: starting the scheduler is refused
//! with a message saying to run it on a device port.

use super::{Port, RawEntry};
use core::sync::atomic::{AtomicBool, Ordering};

static LOCK: AtomicBool = AtomicBool::new(false);
static SWITCH_REQUESTED: AtomicBool = AtomicBool::new(false);

/// The host simulation port.
pub struct Host;

/// Proof that the host's kernel lock is held.
#[derive(Clone, Copy, Debug)]
pub struct Held;

impl Host {
    /// Returns and clears whether a context switch was requested since the last call.
    pub fn take_switch_request() -> bool {
        SWITCH_REQUESTED.swap(false, Ordering::AcqRel)
    }
}

impl Port for Host {
    type Mask = Held;

    fn enter_critical() -> Held {
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Held
    }

    unsafe fn exit_critical(_: Held) {
        LOCK.store(false, Ordering::Release);
    }

    fn request_switch() {
        SWITCH_REQUESTED.store(true, Ordering::Release);
    }

    fn yield_task() -> bool {
        false
    }

    fn in_isr() -> bool {
        false
    }

    unsafe fn init_stack(stack: &mut [u32], entry: RawEntry, args: (usize, usize)) -> *mut u32 {
        // A recognisable frame so that stack accounting can be tested on the host.
        let n = stack.len();
        stack[n - 1] = entry as usize as u32;
        stack[n - 2] = args.0 as u32;
        stack[n - 3] = args.1 as u32;
        // SAFETY: n - 3 is within the slice.
        unsafe { stack.as_mut_ptr().add(n - 3) }
    }

    unsafe fn start_first_task(_: *mut u32, _: u32, _: u32) -> ! {
        panic!("the host port runs kernel logic in unit tests; run tasks on a device port")
    }

    fn cycles_into_tick() -> u32 {
        0
    }

    fn wait_for_interrupt() {
        core::hint::spin_loop();
    }
}
