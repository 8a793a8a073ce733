//! Ticks, timeouts and the generic "try, else block until the deadline" loop every blocking
//! call uses.

use crate::arch::{Active, Port};
use crate::config::TICK_HZ;
use crate::rt;
use crate::sched::{reached, Kernel, WaitList};

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(u32);

impl Timeout {
    /// Do not wait: fail at once if the call cannot complete.
    pub const NONE: Timeout = Timeout(0);
    /// Wait as long as it takes.
    pub const FOREVER: Timeout = Timeout(u32::MAX);

    /// Wait at most `n` ticks. `n` must be below 2^31 (about 24 days at 1 kHz).
    pub const fn ticks(n: u32) -> Timeout {
        assert!(n < 1 << 31, "timeout too long: use Timeout::FOREVER");
        Timeout(n)
    }

    /// Wait at most `ms` milliseconds, rounded up to whole ticks.
    pub const fn ms(ms: u32) -> Timeout {
        Timeout::ticks(ms_to_ticks(ms))
    }

    /// The number of ticks, or `None` for [`Timeout::FOREVER`].
    pub const fn as_ticks(self) -> Option<u32> {
        if self.0 == u32::MAX {
            None
        } else {
            Some(self.0)
        }
    }
}

/// Milliseconds to ticks, rounded up.
pub const fn ms_to_ticks(ms: u32) -> u32 {
    ((ms as u64 * TICK_HZ as u64).div_ceil(1000)) as u32
}

/// The error of a call that timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

/// Ticks since the scheduler started (wraps after 2^32 ticks).
pub fn now() -> u32 {
    rt::with(|k| k.tick)
}

/// The address of the tick count, for code that counts its own instructions per tick without
/// calling the kernel (the test kit's tick-rate check: an assembly loop). A load of this
/// aligned word sees the count as of the last tick; nothing may write it.
pub fn tick_address() -> *const u32 {
    // The kernel state's address (`rt::KERNEL` is the kernel, as the switch path reads it)
    // plus the field's offset: no reference to the state is made.
    core::ptr::addr_of!(rt::KERNEL)
        .cast::<u8>()
        .wrapping_add(crate::sched::layout::TICK)
        .cast()
}

/// Microseconds since the scheduler started, from the tick count and the tick timer.
pub fn uptime_us() -> u64 {
    let cycles = rt::with(|k| rt::uptime_cycles_locked(k));
    let hz = rt::cpu_hz().max(1) as u64;
    cycles * 1_000_000 / hz
}

/// CPU cycles since the scheduler started.
pub fn uptime_cycles() -> u64 {
    rt::with(|k| rt::uptime_cycles_locked(k))
}

/// What a blocking call's attempt decided.
pub(crate) enum Step<R> {
    /// The call completed with this result.
    Done(R),
    /// The call cannot complete yet: block on this wait list (or on none: only a timeout or
    /// a direct wake-up, such as a notification, ends the wait).
    Block(Option<*mut WaitList>),
}

/// Runs `attempt` in a critical section until it is done. `attempt` gets `expired = true` once
/// the timeout has run out (at once for [`Timeout::NONE`], or in an interrupt handler, where
/// nothing may block) and must then return `Done`.
///
/// The deadline is worked out only when the call first blocks: a call that completes at once
/// (the common case: a semaphore that is free, a queue with room) pays for no time keeping.
pub(crate) fn block_on<R>(
    timeout: Timeout,
    mut attempt: impl FnMut(&mut Kernel, bool) -> Step<R>,
) -> R {
    let in_isr = Active::in_isr();
    // The tick the wait ends at; set when the call first blocks with a finite timeout.
    let mut deadline: Option<u32> = None;
    loop {
        let done = rt::with(|k| {
            let expired = match deadline {
                Some(at) => reached(k.tick, at),
                None => in_isr || timeout == Timeout::NONE || !k.started,
            };
            match attempt(k, expired) {
                Step::Done(r) => Some(r),
                Step::Block(w) => {
                    assert!(!expired, "kernel object asked to block after its timeout");
                    block(k, w, timeout, &mut deadline);
                    None
                }
            }
        });
        if let Some(r) = done {
            return r;
        }
    }
}

/// Blocks the running task on `w` until woken or the deadline (worked out now, at the first
/// block of the call) has passed. The part of [`block_on`] every kind of call shares.
#[inline(never)]
fn block(k: &mut Kernel, w: Option<*mut WaitList>, timeout: Timeout, deadline: &mut Option<u32>) {
    assert!(
        k.lock_depth == 0,
        "blocking call while the scheduler is locked"
    );
    // Not expired, so the deadline is still ahead: at least one tick to wait.
    let wait = timeout.as_ticks().map(|t| {
        let at = *deadline.get_or_insert(k.tick.wrapping_add(t));
        at.wrapping_sub(k.tick)
    });
    // SAFETY: the wait list belongs to an object borrowed by the caller for the whole
    // blocking call, so it outlives the wait.
    unsafe { k.block_current(w.map(|w| &mut *w), wait) };
    rt::request_switch(k);
}
