//! Stack overflow detection at context switch.

use crate::util::Counter;
use fqp_kernel::hooks;
use fqp_kernel::task::{self, Builder};
use fqp_testkit::{check, check_eq, group, TestResult};

group!(pub STACK_OVERFLOW, "stack_overflow", [
    overflow_is_reported_at_the_next_switch,
]);

/// A stack of 512 words placed above 512 words of slack that absorbs the overflow, so the test
/// damages nothing but its own memory.
#[repr(C, align(8))]
struct Region([u32; 1024]);
static mut REGION: Region = Region([0; 1024]);

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

fn overflow_is_reported_at_the_next_switch() -> TestResult {
    REPORTED.set(0);
    DEPTH_REACHED.set(0);
    hooks::set_stack_overflow_hook(Some(|_, name| {
        if name == "overflow" {
            REPORTED.inc();
        }
    }));
    // SAFETY: the region is used only by this test's task, whose stack is its upper half.
    let stack = unsafe {
        let base = core::ptr::addr_of_mut!(REGION.0) as *mut u32;
        core::slice::from_raw_parts_mut(base.add(512), 512)
    };
    let id = Builder::new("overflow")
        .priority(crate::util::HIGH)
        .static_stack(stack)
        .spawn_fn(deep, 0);
    check!(id.is_ok());
    task::delay(5);
    check_eq!(DEPTH_REACHED.get(), 1);
    check!(REPORTED.get() >= 1, "the overflow was not reported");
    Ok(())
}
