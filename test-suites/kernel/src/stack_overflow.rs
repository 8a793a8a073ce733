//! Stack overflow detection: at the task's next context switch (the stack pointer below its
//! floor, or the guard words below it damaged), or at once where the core has a stack limit
//! register (Armv8-M's PSPLIM: the push that would overflow faults, and the task is stopped
//! before it writes below its stack).

use crate::util::Counter;
use fqp_kernel::hooks;
use fqp_kernel::task::{self, Builder};
use fqp_testkit::{check, check_eq, group, TestResult};

group!(pub STACK_OVERFLOW, "stack_overflow", [
    overflow_is_reported,
]);

/// A stack of 512 words placed above 512 words of slack that absorbs the overflow, so the test
/// damages nothing but its own memory.
#[repr(C, align(8))]
struct Region([u32; 1024]);
static mut REGION: Region = Region([0; 1024]);
/// What the slack holds before the test; a core with a stack limit leaves it so.
const SLACK: u32 = 0x5A5A_A5A5;

static REPORTED: Counter = Counter::new();
static DEPTH_REACHED: Counter = Counter::new();
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u32; 48];
    for (i, w) in frame.iter_mut().enumerate() {
        // SAFETY: a write to a local array through a valid reference.
        unsafe { core::ptr::write_volatile(w, depth + i as u32) };
    }
    if depth == 0 {
        DEPTH_REACHED.set(1);
        task::delay(1); // switch out with the stack pointer below the stack's end
        return frame[0];
    }
    core::hint::black_box(recurse(depth - 1)) + frame[1]
}

fn deep(_: usize) {
    core::hint::black_box(recurse(12)); // about 12 × 52 words: beyond 512
}

fn overflow_is_reported() -> TestResult {
    REPORTED.set(0);
    DEPTH_REACHED.set(0);
    hooks::set_stack_overflow_hook(Some(|_, name| {
        if name == "overflow" {
            REPORTED.inc();
        }
    }));
    // SAFETY: the region is used only by this test's task, whose stack is its upper half;
    // nothing runs on it yet.
    let (slack, stack) = unsafe {
        let base = core::ptr::addr_of_mut!(REGION.0) as *mut u32;
        (
            core::slice::from_raw_parts_mut(base, 512),
            core::slice::from_raw_parts_mut(base.add(512), 512),
        )
    };
    slack.fill(SLACK);
    let spawned = Builder::new("overflow")
        .priority(crate::util::HIGH)
        .static_stack(stack)
        .spawn_fn(deep, 0);
    check!(spawned.is_ok());
    task::delay(5);
    check!(REPORTED.get() >= 1, "the overflow was not reported");
    if fqp_kernel::arch::STACK_LIMIT_IN_HARDWARE {
        // Stopped at the limit: it never got to the bottom of its recursion, wrote nothing
        // below its stack, and runs no more.
        check_eq!(DEPTH_REACHED.get(), 0);
        let written = slack
            .iter()
            // SAFETY: a read of the region's own memory; the overflowing task is stopped.
            .position(|w| unsafe { core::ptr::read_volatile(w) } != SLACK);
        check!(
            written.is_none(),
            "the task wrote below its stack, at word {:?}",
            written
        );
        if let Ok(id) = spawned {
            check_eq!(task::state(id).ok(), Some(fqp_kernel::TaskState::Suspended));
        }
    } else {
        check_eq!(DEPTH_REACHED.get(), 1);
    }
    Ok(())
}
