//! Task stacks as the kernel checks them: the fill pattern that marks unused words, and the
//! guard words at the bottom whose change means the stack overflowed. Shared by task creation,
//! the scheduler's switch check and the CPU port's hand-written switch path.

/// Word written over every new stack; unused stack still holds it.
pub(crate) const FILL: u32 = 0xA5A5_A5A5;
/// Lowest words of a stack that must keep the fill pattern (the overflow guard).
pub(crate) const GUARD_WORDS: usize = 2;

/// True if `sp` is inside a stack whose lowest usable word is `floor` (the guard lies just
/// below it), and the guard is intact.
#[inline(always)]
pub(crate) fn intact(floor: *mut u32, sp: *mut u32) -> bool {
    if sp < floor {
        return false;
    }
    // SAFETY: the guard words are the lowest words of the task's live stack, just below
    // its floor.
    let [a, b] = unsafe { *(floor.wrapping_sub(GUARD_WORDS) as *const [u32; GUARD_WORDS]) };
    a == FILL && b == FILL
}
