//! Tasks: creation with a static or heap stack, delays, suspension, priorities, deletion,
//! stack high-water marks and run-time statistics.
//!
//! A task is named by a [`TaskId`]: a slot index plus the slot's generation, so a handle to a
//! deleted task is detected (calls return [`TaskGone`]) instead of reaching whatever task
//! reuses the slot.

use crate::arch::{Active, Port, RawEntry};
use crate::config::PRIORITIES;
use crate::list::{Idx, NIL};
use crate::rt::{self, request_switch, switch_if};
use crate::sched::{Kernel, State, Tcb};
pub use crate::sched::{TaskGone, TaskId};
use crate::stack;
use core::cell::UnsafeCell;
use core::sync::atomic::AtomicBool;

/// Smallest stack accepted, in words: the initial frame, the guard, and room to run.
pub const MIN_STACK_WORDS: usize = 64;

/// Why a task could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// All `FQP_MAX_TASKS` slots are in use.
    NoSlot,
    /// The priority is not below `FQP_PRIORITIES`.
    BadPriority,
    /// No stack was given to the builder.
    NoStack,
    /// The stack is smaller than [`MIN_STACK_WORDS`].
    StackTooSmall,
    /// The heap could not provide the stack.
    OutOfMemory,
}

/// Stack memory for one task, in a `static`: no heap needed.
///
/// ```
/// use fqp_kernel::task::{Builder, StaticStack};
///
/// static STACK: StaticStack<512> = StaticStack::new();
///
/// fn net_main(_: usize) { /* the task's work */ }
///
/// fn start_network() {
///     let stack = STACK.take().expect("started once");
///     Builder::new("net").priority(5).static_stack(stack).spawn_fn(net_main, 0).expect("task slot");
/// }
/// # let _ = start_network;
/// ```
#[repr(C, align(8))]
pub struct StaticStack<const WORDS: usize> {
    mem: UnsafeCell<[u32; WORDS]>,
    taken: AtomicBool,
}

// SAFETY: the memory is handed out at most once (`taken`), after which only that task uses it.
unsafe impl<const WORDS: usize> Sync for StaticStack<WORDS> {}

impl<const WORDS: usize> StaticStack<WORDS> {
    pub const fn new() -> Self {
        StaticStack {
            mem: UnsafeCell::new([0; WORDS]),
            taken: AtomicBool::new(false),
        }
    }

    /// The stack memory, the first time only.
    #[allow(clippy::mut_from_ref)] // handed out once: `taken` guards it
    pub fn take(&'static self) -> Option<&'static mut [u32]> {
        if crate::arch::test_and_set(&self.taken) {
            return None;
        }
        // SAFETY: `taken` guarantees this is the only reference ever made.
        Some(unsafe { &mut *self.mem.get() })
    }
}

impl<const WORDS: usize> Default for StaticStack<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

enum StackSpec {
    None,
    Static(&'static mut [u32]),
    #[cfg(feature = "alloc")]
    Heap(usize),
}

/// Builds and starts a task.
pub struct Builder {
    name: &'static str,
    prio: u8,
    stack: StackSpec,
}

impl Builder {
    /// A task called `name`, at priority 1, with no stack yet.
    pub fn new(name: &'static str) -> Self {
        Builder {
            name,
            prio: 1,
            stack: StackSpec::None,
        }
    }

    /// Priority, 0 (idle) to `FQP_PRIORITIES - 1` (highest).
    pub fn priority(mut self, prio: u8) -> Self {
        self.prio = prio;
        self
    }

    /// Runs on this statically allocated stack.
    pub fn static_stack(mut self, stack: &'static mut [u32]) -> Self {
        self.stack = StackSpec::Static(stack);
        self
    }

    /// Runs on a stack of `words` 32-bit words taken from the heap, freed when the task ends.
    #[cfg(feature = "alloc")]
    pub fn stack_words(mut self, words: usize) -> Self {
        self.stack = StackSpec::Heap(words);
        self
    }

    /// Starts `entry(arg)`; the task ends when it returns.
    pub fn spawn_fn(self, entry: fn(usize), arg: usize) -> Result<TaskId, SpawnError> {
        extern "C" fn trampoline(f: usize, arg: usize) -> ! {
            // SAFETY: `f` was made from a `fn(usize)` by `spawn_fn`.
            let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
            f(arg);
            exit()
        }
        self.spawn_raw(trampoline, (entry as usize, arg))
    }

    /// Starts the closure `f`; the task ends when it returns.
    #[cfg(feature = "alloc")]
    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> Result<TaskId, SpawnError> {
        use alloc::boxed::Box;
        type Job = Box<dyn FnOnce() + Send>;
        extern "C" fn trampoline(p: usize, _: usize) -> ! {
            // SAFETY: `p` is the `Box<Job>` leaked by `spawn`, taken back exactly once.
            let job: Box<Job> = unsafe { Box::from_raw(p as *mut Job) };
            job();
            exit()
        }
        let job: Box<Job> = Box::new(Box::new(f));
        let p = Box::into_raw(job);
        self.spawn_raw(trampoline, (p as usize, 0))
            .inspect_err(|_| {
                // SAFETY: the task was not created, so `p` is still only ours.
                drop(unsafe { Box::from_raw(p) });
            })
    }

    /// Starts `entry(args.0, args.1)`, which never returns.
    pub fn spawn_raw(self, entry: RawEntry, args: (usize, usize)) -> Result<TaskId, SpawnError> {
        if self.prio as usize >= PRIORITIES {
            return Err(SpawnError::BadPriority);
        }
        let (stack, heap): (&mut [u32], bool) = match self.stack {
            StackSpec::None => return Err(SpawnError::NoStack),
            StackSpec::Static(s) => (s, false),
            #[cfg(feature = "alloc")]
            StackSpec::Heap(words) => {
                if words < MIN_STACK_WORDS {
                    return Err(SpawnError::StackTooSmall);
                }
                (
                    heap_stack::alloc(words).ok_or(SpawnError::OutOfMemory)?,
                    true,
                )
            }
        };
        if stack.len() < MIN_STACK_WORDS {
            return Err(SpawnError::StackTooSmall);
        }
        stack.fill(stack::FILL);
        // SAFETY: the stack is exclusively the new task's from here on.
        let sp = unsafe { Active::init_stack(stack, entry, args) };
        let (lo, words) = (stack.as_mut_ptr(), stack.len() as u32);
        let made = rt::with(|k| {
            let i = k.alloc_slot()?;
            let gen = k.tasks[i].gen;
            let t = &mut k.tasks[i];
            t.sp = sp;
            t.stack_floor = lo.wrapping_add(stack::GUARD_WORDS);
            t.stack_words = words;
            t.prio = self.prio;
            t.base_prio = self.prio;
            t.name = self.name;
            t.heap_stack = heap;
            t.gen = gen;
            let due = k.add_task(i);
            switch_if(k, due);
            Some(TaskId::of(k, i))
        });
        match made {
            Some(id) => Ok(id),
            None => {
                #[cfg(feature = "alloc")]
                if heap {
                    // SAFETY: allocated above, never given to a task.
                    unsafe { heap_stack::free(lo, words as usize) };
                }
                Err(SpawnError::NoSlot)
            }
        }
    }
}

#[cfg(feature = "alloc")]
mod heap_stack {
    use alloc::alloc::{alloc as raw_alloc, dealloc, Layout};

    fn layout(words: usize) -> Layout {
        Layout::from_size_align(words * 4, 8).expect("stack size overflows")
    }

    pub fn alloc(words: usize) -> Option<&'static mut [u32]> {
        // SAFETY: the layout is non-zero sized (words >= MIN_STACK_WORDS).
        let p = unsafe { raw_alloc(layout(words)) } as *mut u32;
        if p.is_null() {
            crate::hooks::alloc_failed(words * 4);
            return None;
        }
        // SAFETY: `p` is a fresh allocation of `words` u32s, owned by the caller from now on.
        Some(unsafe { core::slice::from_raw_parts_mut(p, words) })
    }

    /// # Safety
    /// `lo` and `words` must come from `alloc` and no task may use the stack any more.
    pub unsafe fn free(lo: *mut u32, words: usize) {
        // SAFETY: the caller's contract.
        unsafe { dealloc(lo as *mut u8, layout(words)) };
    }
}

/// Releases a deleted task's stack if it came from the heap.
fn release_stack(heap: bool, lo: *mut u32, words: u32) {
    #[cfg(feature = "alloc")]
    if heap {
        // SAFETY: the task is gone; its stack came from `heap_stack::alloc`.
        unsafe { heap_stack::free(lo, words as usize) };
    }
    #[cfg(not(feature = "alloc"))]
    let _ = (heap, lo, words);
}

/// The running task.
pub fn current() -> TaskId {
    rt::with(|k| TaskId::of(k, k.current))
}

/// Lets the other ready tasks of the same priority run first.
///
/// A task switches through the port's trap at once (one trip through the kernel instead of a
/// critical section and then a switch interrupt); elsewhere (an interrupt handler, before the
/// scheduler starts) the switch is requested as any other. Must not be called with interrupts
/// masked (inside a critical section of the application's own).
#[inline]
pub fn yield_now() {
    if !Active::yield_task() {
        rt::with(|k| {
            let due = k.yield_current();
            switch_if(k, due);
        });
    }
}

/// Blocks the running task for `ticks` ticks (0: just yield).
pub fn delay(ticks: u32) {
    if ticks == 0 {
        return yield_now();
    }
    rt::with(|k| {
        if k.sleep_until(k.tick.wrapping_add(ticks)) {
            request_switch(k);
        }
    });
}

/// Blocks until `*last_wake + period`, then sets `*last_wake` to that tick: a task that calls
/// this in a loop runs exactly every `period` ticks, however long each round takes. Returns
/// false, without blocking, if that tick has already passed (the task is late).
pub fn delay_until(last_wake: &mut u32, period: u32) -> bool {
    let at = last_wake.wrapping_add(period);
    *last_wake = at;
    rt::with(|k| {
        let blocked = k.sleep_until(at);
        if blocked {
            request_switch(k);
        }
        blocked
    })
}

/// Takes a task out of scheduling until [`resume`]. A blocked task's wait ends (its call
/// retries and may block again with what is left of its timeout when resumed).
pub fn suspend(id: TaskId) -> Result<(), TaskGone> {
    rt::with(|k| {
        let i = id.slot(k)?;
        if k.suspend(i) {
            rt::request_switch_inline(k);
        }
        Ok(())
    })
}

/// Makes a suspended task ready. Resuming a task that is not suspended does nothing.
pub fn resume(id: TaskId) -> Result<(), TaskGone> {
    rt::with(|k| {
        let i = id.slot(k)?;
        if k.resume(i) {
            rt::request_switch_inline(k);
        }
        Ok(())
    })
}

/// Ends a blocked task's delay or wait early. Returns whether it was blocked.
pub fn abort_wait(id: TaskId) -> Result<bool, TaskGone> {
    rt::with(|k| {
        let i = id.slot(k)?;
        let woken = k.abort_wait(i);
        switch_if(k, woken == Some(true));
        Ok(woken.is_some())
    })
}

/// Deletes a task. Deleting the running task does not return.
pub fn delete(id: TaskId) -> Result<(), TaskGone> {
    let freed = rt::with(|k| {
        let i = id.slot(k)?;
        let t = &k.tasks[i];
        let stack = (t.heap_stack, t.stack_lo(), t.stack_words);
        let was_current = k.delete(i);
        if was_current {
            request_switch(k);
            return Ok(None);
        }
        Ok(Some(stack))
    })?;
    match freed {
        Some((heap, lo, words)) => {
            release_stack(heap, lo, words);
            Ok(())
        }
        // The running task deleted itself; the switch happens as the critical section ends.
        None => loop {
            Active::wait_for_interrupt();
        },
    }
}

/// Ends the running task.
pub fn exit() -> ! {
    let _ = delete(current());
    unreachable!("a deleted task ran again")
}

/// Frees the stacks of tasks that deleted themselves (the idle task calls this).
pub(crate) fn reap_zombies() {
    while let Some((heap, lo, words)) = rt::with(|k| {
        let i = k.pop_zombie()?;
        let t = &k.tasks[i];
        let stack = (t.heap_stack, t.stack_lo(), t.stack_words);
        k.free_slot(i);
        Some(stack)
    }) {
        release_stack(heap, lo, words);
    }
}

/// True when other idle-priority tasks are ready.
pub(crate) fn idle_should_yield() -> bool {
    rt::with(|k| k.ready_count(0) > 1)
}

/// Sets a task's priority. While it holds a mutex and has inherited a higher priority, it
/// keeps the inherited one until it releases its mutexes.
pub fn set_priority(id: TaskId, prio: u8) -> Result<(), TaskGone> {
    assert!(
        (prio as usize) < PRIORITIES,
        "priority {prio} is not below FQP_PRIORITIES"
    );
    rt::with(|k| {
        let i = id.slot(k)?;
        let t = &mut k.tasks[i];
        let inherited = t.prio > t.base_prio && t.mutexes_held > 0;
        t.base_prio = prio;
        let effective = if inherited { t.prio.max(prio) } else { prio };
        let due = k.set_effective_priority(i, effective);
        switch_if(k, due);
        Ok(())
    })
}

/// A task's effective priority (its own, or one inherited through a mutex).
pub fn priority(id: TaskId) -> Result<u8, TaskGone> {
    rt::with(|k| Ok(k.tasks[id.slot(k)?].prio))
}

/// A task's own priority, as last set.
pub fn base_priority(id: TaskId) -> Result<u8, TaskGone> {
    rt::with(|k| Ok(k.tasks[id.slot(k)?].base_prio))
}

/// A task's scheduling state.
pub fn state(id: TaskId) -> Result<State, TaskGone> {
    rt::with(|k| Ok(k.tasks[id.slot(k)?].state))
}

/// A task's name.
pub fn name(id: TaskId) -> Result<&'static str, TaskGone> {
    rt::with(|k| Ok(k.tasks[id.slot(k)?].name))
}

/// Words at the bottom of a stack never used so far (its high-water mark).
fn untouched_words(t: &Tcb) -> usize {
    // SAFETY: `stack_lo..stack_lo + stack_words` is the task's stack, live while it exists.
    let stack = unsafe { core::slice::from_raw_parts(t.stack_lo(), t.stack_words as usize) };
    stack.iter().take_while(|&&w| w == stack::FILL).count()
}

/// The fewest free stack words the task has ever had.
pub fn stack_high_water(id: TaskId) -> Result<usize, TaskGone> {
    rt::with(|k| Ok(untouched_words(&k.tasks[id.slot(k)?])))
}

/// A snapshot of one task, for run-time statistics.
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo {
    pub id: TaskId,
    pub name: &'static str,
    pub priority: u8,
    pub base_priority: u8,
    pub state: State,
    pub stack_words: usize,
    pub stack_high_water: usize,
    /// CPU cycles spent running (with `FQP_RUN_TIME_STATS`, the default; else 0).
    pub run_cycles: u64,
}

/// Calls `f` with a snapshot of every task, in slot order.
pub fn for_each(mut f: impl FnMut(TaskInfo)) {
    for i in 0..crate::config::MAX_TASKS as Idx {
        let info = rt::with(|k| {
            let t = &k.tasks[i];
            (!matches!(t.state, State::Free | State::Zombie)).then(|| TaskInfo {
                id: TaskId::of(k, i),
                name: t.name,
                priority: t.prio,
                base_priority: t.base_prio,
                state: t.state,
                stack_words: t.stack_words as usize,
                stack_high_water: untouched_words(t),
                run_cycles: k.run_cycles[i],
            })
        });
        if let Some(info) = info {
            f(info);
        }
    }
}

/// Number of tasks in existence (the idle task included).
pub fn count() -> usize {
    let mut n = 0;
    for_each(|_| n += 1);
    n
}

/// Holds the scheduler still: no other task runs until the guard is dropped (interrupts still
/// run, and tasks they wake run after). Blocking while it is held is a bug and panics.
pub struct SchedulerLock {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Locks the scheduler (nests).
pub fn lock_scheduler() -> SchedulerLock {
    rt::with(|k| k.lock_depth += 1);
    SchedulerLock {
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for SchedulerLock {
    fn drop(&mut self) {
        rt::with(|k| {
            k.lock_depth -= 1;
            if k.lock_depth == 0 && core::mem::take(&mut k.switch_deferred) {
                request_switch(k);
            }
        });
    }
}

/// The slot of the running task (crate use).
pub(crate) fn current_slot(k: &Kernel) -> Idx {
    debug_assert!(k.current != NIL);
    k.current
}

#[cfg(test)]
mod tests {
    use super::TaskId;

    #[test]
    fn a_handle_survives_a_round_trip_through_a_word() {
        let raw = 0x0003_0007;
        assert_eq!(TaskId::from_raw(raw).into_raw(), raw);
        assert_eq!(TaskId::from_raw(raw).index(), 7);
    }
}
