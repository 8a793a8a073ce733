//! The scheduler's state and its state transitions, free of any CPU detail.
//!
//! [`Kernel`] holds the task table, one ready list per priority with a bitmap of the non-empty
//! ones (the highest ready priority is one count-leading-zeros away), the delayed list sorted by
//! wake-up tick, and the zombie list of self-deleted tasks awaiting the idle task. Every method
//! runs inside a kernel critical section (the caller's duty) and says, by its return value,
//! whether a context switch is due; the callers in the API layer ask the port for it. Because
//! nothing here touches hardware, the whole state machine is unit-tested on the host.
//!
//! Invariant: the running task is the head of the ready list of its priority, and no ready task
//! has a higher priority than it unless the scheduler is locked.

use crate::config::{MAX_TASKS, NOTIFY_INDEXES, PRIORITIES, TIME_SLICING};
use crate::list::{Idx, Link, List, NIL};

/// A task's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The slot holds no task.
    Free,
    /// Ready to run (or running).
    Ready,
    /// Waiting for an event, a timeout, or both.
    Blocked,
    /// Taken out of scheduling until resumed.
    Suspended,
    /// Deleted itself; its stack is released by the idle task.
    Zombie,
}

/// Why a blocked task was made ready again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Not woken yet (or not blocked).
    None,
    /// The event it waited for was signalled.
    Event,
    /// Its timeout expired.
    Timeout,
    /// It was suspended, resumed or had its wait aborted while blocked.
    Aborted,
}

/// State of one direct-to-task notification slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotifyState {
    Idle,
    Waiting,
    Pending,
}

/// The tasks blocked on one kernel object, highest priority first (FIFO among equals).
#[derive(Debug, Default)]
pub struct WaitList {
    list: List,
}

impl WaitList {
    /// An empty wait list.
    pub const fn new() -> Self {
        WaitList { list: List::EMPTY }
    }

    /// True if no task waits.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A task control block.
pub(crate) struct Tcb {
    /// Saved stack pointer while not running.
    pub sp: *mut u32,
    /// Lowest word of the stack (where the guard pattern is).
    pub stack_lo: *mut u32,
    pub stack_words: u32,
    /// Effective priority (raised by priority inheritance).
    pub prio: u8,
    /// Priority given by the application.
    pub base_prio: u8,
    pub state: State,
    /// Incremented each time the slot is freed, so stale handles are detected.
    pub gen: u16,
    pub name: &'static str,
    /// Tick at which a delayed task wakes, valid while `delayed`.
    pub wake_at: u32,
    pub delayed: bool,
    /// The wait list this task is in, or null.
    pub waiting_on: *mut WaitList,
    pub wake: Wake,
    /// Number of mutexes held, for priority disinheritance.
    pub mutexes_held: u8,
    pub notify_value: [u32; NOTIFY_INDEXES],
    pub notify_state: [NotifyState; NOTIFY_INDEXES],
    /// Object-specific wait arguments (event bits and options) and result (bits seen).
    pub wait_arg: u32,
    pub wait_opts: u8,
    pub wait_result: u32,
    /// The stack was allocated from the heap with this many words and is freed on deletion.
    pub heap_stack: bool,
    /// CPU cycles spent running this task.
    pub run_cycles: u64,
}

impl Tcb {
    const EMPTY: Tcb = Tcb {
        sp: core::ptr::null_mut(),
        stack_lo: core::ptr::null_mut(),
        stack_words: 0,
        prio: 0,
        base_prio: 0,
        state: State::Free,
        gen: 0,
        name: "",
        wake_at: 0,
        delayed: false,
        waiting_on: core::ptr::null_mut(),
        wake: Wake::None,
        mutexes_held: 0,
        notify_value: [0; NOTIFY_INDEXES],
        notify_state: [NotifyState::Idle; NOTIFY_INDEXES],
        wait_arg: 0,
        wait_opts: 0,
        wait_result: 0,
        heap_stack: false,
        run_cycles: 0,
    };
}

/// The whole scheduler state.
pub(crate) struct Kernel {
    pub tasks: [Tcb; MAX_TASKS],
    sched_links: [Link; MAX_TASKS],
    wait_links: [Link; MAX_TASKS],
    ready: [List; PRIORITIES],
    ready_bits: u32,
    delayed: List,
    pub zombies: List,
    /// The running task (NIL before the scheduler starts).
    pub current: Idx,
    /// Ticks since start, wrapping.
    pub tick: u32,
    /// Nesting depth of scheduler locks; no switch happens while non-zero.
    pub lock_depth: u32,
    /// A switch was wanted while the scheduler was locked.
    pub switch_deferred: bool,
    pub started: bool,
    /// Cycle stamp of the last context switch, for run-time statistics.
    pub last_switch_cycles: u64,
}

/// The key that orders the delayed list: ticks from now until wake-up.
fn until(now: u32, at: u32) -> u32 {
    at.wrapping_sub(now)
}

/// True if tick `at` has been reached at tick `now` (valid for distances below 2^31 ticks).
pub(crate) fn reached(now: u32, at: u32) -> bool {
    (now.wrapping_sub(at) as i32) >= 0
}

impl Kernel {
    pub const fn new() -> Self {
        Kernel {
            tasks: [Tcb::EMPTY; MAX_TASKS],
            sched_links: [Link::UNLINKED; MAX_TASKS],
            wait_links: [Link::UNLINKED; MAX_TASKS],
            ready: [List::EMPTY; PRIORITIES],
            ready_bits: 0,
            delayed: List::EMPTY,
            zombies: List::EMPTY,
            current: NIL,
            tick: 0,
            lock_depth: 0,
            switch_deferred: false,
            started: false,
            last_switch_cycles: 0,
        }
    }

    /// Finds a free slot.
    pub fn alloc_slot(&self) -> Option<Idx> {
        self.tasks
            .iter()
            .position(|t| t.state == State::Free)
            .map(|i| i as Idx)
    }

    /// Makes a freshly initialised slot a ready task. Returns true if it should preempt.
    pub fn add_task(&mut self, i: Idx) -> bool {
        self.make_ready(i)
    }

    fn make_ready(&mut self, i: Idx) -> bool {
        let t = &mut self.tasks[i as usize];
        t.state = State::Ready;
        let p = t.prio as usize;
        self.ready[p].push_back(&mut self.sched_links, i);
        self.ready_bits |= 1 << p;
        self.preempts(i)
    }

    fn unready(&mut self, i: Idx) {
        let p = self.tasks[i as usize].prio as usize;
        self.ready[p].remove(&mut self.sched_links, i);
        if self.ready[p].is_empty() {
            self.ready_bits &= !(1 << p);
        }
    }

    /// True if task `i` should run instead of the current task.
    fn preempts(&self, i: Idx) -> bool {
        self.started
            && self.current != NIL
            && self.tasks[i as usize].prio > self.tasks[self.current as usize].prio
    }

    /// The highest-priority ready task.
    pub fn highest_ready(&self) -> Idx {
        debug_assert!(
            self.ready_bits != 0,
            "no ready task: the idle task must always exist"
        );
        let p = 31 - self.ready_bits.leading_zeros();
        self.ready[p as usize].head()
    }

    pub fn ready_count(&self, prio: u8) -> usize {
        self.ready[prio as usize].len()
    }

    /// Chooses the task to run next and makes it current.
    pub fn select(&mut self) -> Idx {
        if self.lock_depth == 0 || self.tasks[self.current as usize].state != State::Ready {
            self.current = self.highest_ready();
        }
        self.current
    }

    /// Moves the current task behind the other ready tasks of its priority. Returns true if
    /// another task now comes first.
    pub fn yield_current(&mut self) -> bool {
        let p = self.tasks[self.current as usize].prio as usize;
        if self.ready[p].len() > 1 && self.ready[p].head() == self.current {
            self.ready[p].rotate(&self.sched_links);
            return true;
        }
        false
    }

    // ---- blocking and waking -------------------------------------------------------------

    /// Blocks the current task on `wait` (if any) until woken or `timeout` ticks have passed
    /// (`None`: no timeout). The caller then asks for a context switch.
    ///
    /// # Safety
    /// `wait` must stay valid until the task leaves it (the object outlives the blocking call).
    pub unsafe fn block_current(&mut self, wait: Option<&mut WaitList>, timeout: Option<u32>) {
        let i = self.current;
        self.unready(i);
        let t = &mut self.tasks[i as usize];
        t.state = State::Blocked;
        t.wake = Wake::None;
        if let Some(w) = wait {
            self.wait_insert(w, i);
        }
        if let Some(ticks) = timeout {
            self.delay_until(i, self.tick.wrapping_add(ticks));
        }
    }

    fn delay_until(&mut self, i: Idx, at: u32) {
        let now = self.tick;
        self.tasks[i as usize].wake_at = at;
        self.tasks[i as usize].delayed = true;
        let tasks = &self.tasks;
        self.delayed.insert_sorted(&mut self.sched_links, i, |j| {
            until(now, tasks[j as usize].wake_at)
        });
    }

    fn wait_insert(&mut self, w: &mut WaitList, i: Idx) {
        let tasks = &self.tasks;
        w.list.insert_sorted(&mut self.wait_links, i, |j| {
            u8::MAX - tasks[j as usize].prio
        });
        self.tasks[i as usize].waiting_on = w;
    }

    /// Takes task `i` out of whatever it is blocked on (wait list and delayed list).
    fn unblock(&mut self, i: Idx) {
        let t = &mut self.tasks[i as usize];
        if !t.waiting_on.is_null() {
            // SAFETY: a task's `waiting_on` points to a live wait list while it is in it
            // (contract of `block_current`).
            let w = unsafe { &mut *t.waiting_on };
            t.waiting_on = core::ptr::null_mut();
            w.list.remove(&mut self.wait_links, i);
        }
        if self.tasks[i as usize].delayed {
            self.tasks[i as usize].delayed = false;
            self.delayed.remove(&mut self.sched_links, i);
        }
    }

    /// Wakes blocked task `i` for `reason`. Returns true if it should preempt. The wait list
    /// it is in (if any) must not be borrowed by the caller: use [`Kernel::wake_waiter`] for a
    /// task taken from a list the caller holds.
    pub fn wake(&mut self, i: Idx, reason: Wake) -> bool {
        debug_assert_eq!(self.tasks[i as usize].state, State::Blocked);
        self.unblock(i);
        self.tasks[i as usize].wake = reason;
        self.make_ready(i)
    }

    /// Wakes task `i`, waiting on `w`, with [`Wake::Event`]; removes it from `w` through the
    /// caller's borrow (never through the task's own pointer to the list, which would alias
    /// that borrow). Returns true if it should preempt.
    pub fn wake_waiter(&mut self, w: &mut WaitList, i: Idx) -> bool {
        debug_assert!(core::ptr::eq(self.tasks[i as usize].waiting_on, w));
        w.list.remove(&mut self.wait_links, i);
        self.tasks[i as usize].waiting_on = core::ptr::null_mut();
        self.wake(i, Wake::Event)
    }

    /// Wakes the highest-priority waiter of `w` with [`Wake::Event`]. Returns the task woken,
    /// and whether it should preempt.
    pub fn wake_first(&mut self, w: &mut WaitList) -> Option<(Idx, bool)> {
        let i = w.list.head();
        if i == NIL {
            return None;
        }
        Some((i, self.wake_waiter(w, i)))
    }

    /// The tasks waiting on `w`, highest priority first.
    pub fn waiters<'a>(&'a self, w: &WaitList) -> impl Iterator<Item = Idx> + 'a {
        w.list.iter(&self.wait_links)
    }

    /// The highest priority among the waiters of `w`.
    pub fn top_waiter_prio(&self, w: &WaitList) -> Option<u8> {
        let i = w.list.head();
        (i != NIL).then(|| self.tasks[i as usize].prio)
    }

    /// Why the current task was last woken.
    pub fn wake_reason(&self) -> Wake {
        self.tasks[self.current as usize].wake
    }

    // ---- time ----------------------------------------------------------------------------

    /// Delays the current task until tick `at`; returns false (and does not block) if that
    /// tick has already been reached.
    pub fn sleep_until(&mut self, at: u32) -> bool {
        if reached(self.tick, at) {
            return false;
        }
        let i = self.current;
        self.unready(i);
        self.tasks[i as usize].state = State::Blocked;
        self.tasks[i as usize].wake = Wake::None;
        self.delay_until(i, at);
        true
    }

    /// Advances time by one tick: wakes the tasks whose time has come and applies time
    /// slicing. Returns true if a context switch is due.
    pub fn tick(&mut self) -> bool {
        self.tick = self.tick.wrapping_add(1);
        let now = self.tick;
        let mut switch = false;
        loop {
            let i = self.delayed.head();
            if i == NIL || !reached(now, self.tasks[i as usize].wake_at) {
                break;
            }
            switch |= self.wake(i, Wake::Timeout);
        }
        if TIME_SLICING && self.started && self.current != NIL {
            let p = self.tasks[self.current as usize].prio;
            switch |= self.ready_count(p) > 1;
            if self.ready_count(p) > 1 && self.ready[p as usize].head() == self.current {
                self.ready[p as usize].rotate(&self.sched_links);
            }
        }
        switch
    }

    // ---- suspension, priorities, deletion ------------------------------------------------

    /// Suspends task `i`. A blocked task leaves its wait (its call sees [`Wake::Aborted`]).
    /// Returns true if the current task was suspended (a switch is due).
    pub fn suspend(&mut self, i: Idx) -> bool {
        match self.tasks[i as usize].state {
            State::Ready => self.unready(i),
            State::Blocked => {
                self.unblock(i);
                self.tasks[i as usize].wake = Wake::Aborted;
            }
            _ => return false,
        }
        self.tasks[i as usize].state = State::Suspended;
        i == self.current
    }

    /// Resumes suspended task `i`. Returns true if it should preempt.
    pub fn resume(&mut self, i: Idx) -> bool {
        if self.tasks[i as usize].state != State::Suspended {
            return false;
        }
        self.make_ready(i)
    }

    /// Ends the wait of blocked task `i` early. Returns Some(preempt) if it was blocked.
    pub fn abort_wait(&mut self, i: Idx) -> Option<bool> {
        (self.tasks[i as usize].state == State::Blocked).then(|| self.wake(i, Wake::Aborted))
    }

    /// Sets the effective priority of task `i`, keeping every list it is in ordered.
    /// Returns true if a context switch is due.
    pub fn set_effective_priority(&mut self, i: Idx, prio: u8) -> bool {
        let old = self.tasks[i as usize].prio;
        if old == prio {
            return false;
        }
        match self.tasks[i as usize].state {
            State::Ready => {
                self.unready(i);
                self.tasks[i as usize].prio = prio;
                self.make_ready(i);
            }
            State::Blocked if !self.tasks[i as usize].waiting_on.is_null() => {
                // SAFETY: as in `unblock`.
                let w = unsafe { &mut *self.tasks[i as usize].waiting_on };
                w.list.remove(&mut self.wait_links, i);
                self.tasks[i as usize].prio = prio;
                self.wait_insert(w, i);
            }
            _ => self.tasks[i as usize].prio = prio,
        }
        if self.current == NIL || !self.started {
            return false;
        }
        // Lowering the running task below a ready one, or raising another above it.
        let cur = self.current;
        self.tasks[self.highest_ready() as usize].prio > self.tasks[cur as usize].prio
            || (i == cur && prio < old && self.ready_count(prio) > 1)
    }

    /// Removes task `i` from scheduling. Returns true if it was the current task (it becomes
    /// a zombie until the idle task frees it); otherwise the slot is free at once.
    pub fn delete(&mut self, i: Idx) -> bool {
        match self.tasks[i as usize].state {
            State::Ready => self.unready(i),
            State::Blocked => self.unblock(i),
            State::Suspended => {}
            State::Free | State::Zombie => return false,
        }
        if i == self.current {
            self.tasks[i as usize].state = State::Zombie;
            self.zombies.push_back(&mut self.sched_links, i);
            true
        } else {
            self.free_slot(i);
            false
        }
    }

    /// Takes one zombie off the list; the caller releases its stack, then calls `free_slot`.
    pub fn pop_zombie(&mut self) -> Option<Idx> {
        self.zombies.pop_front(&mut self.sched_links)
    }

    pub fn free_slot(&mut self, i: Idx) {
        let t = &mut self.tasks[i as usize];
        let gen = t.gen.wrapping_add(1);
        *t = Tcb::EMPTY;
        t.gen = gen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_with(prios: &[u8]) -> Kernel {
        let mut k = Kernel::new();
        for (n, &p) in prios.iter().enumerate() {
            let i = k.alloc_slot().unwrap();
            assert_eq!(i as usize, n);
            k.tasks[n].prio = p;
            k.tasks[n].base_prio = p;
            k.add_task(i);
        }
        k.started = true;
        k.select();
        k
    }

    #[test]
    fn highest_priority_runs_and_round_robin_rotates() {
        let mut k = kernel_with(&[0, 3, 3, 1]);
        assert_eq!(k.current, 1);
        assert!(k.yield_current());
        assert_eq!(k.select(), 2);
        assert!(k.yield_current());
        assert_eq!(k.select(), 1);
    }

    #[test]
    fn yield_alone_is_a_no_op() {
        let mut k = kernel_with(&[0, 5]);
        assert!(!k.yield_current());
        assert_eq!(k.select(), 1);
    }

    #[test]
    fn time_slice_rotates_equals_only() {
        let mut k = kernel_with(&[0, 2, 2]);
        assert_eq!(k.current, 1);
        assert_eq!(k.tick(), TIME_SLICING);
        if TIME_SLICING {
            assert_eq!(k.select(), 2);
        }
        let mut k = kernel_with(&[0, 2]);
        assert!(!k.tick(), "a lone task at its level is not sliced");
    }

    #[test]
    fn delayed_tasks_wake_in_deadline_order_and_preempt() {
        let mut k = kernel_with(&[0, 4, 5]);
        assert_eq!(k.current, 2);
        assert!(k.sleep_until(3));
        assert_eq!(k.select(), 1);
        assert!(k.sleep_until(2));
        assert_eq!(k.select(), 0);
        assert!(!k.tick()); // tick 1: nothing due, and idle alone is not sliced
        assert_eq!(k.select(), 0);
        assert!(k.tick()); // tick 2: task 1 wakes and preempts idle
        assert_eq!(k.select(), 1);
        assert_eq!(k.tasks[1].wake, Wake::Timeout);
        assert!(k.tick()); // tick 3: task 2 preempts task 1
        assert_eq!(k.select(), 2);
    }

    #[test]
    fn sleep_until_past_does_not_block() {
        let mut k = kernel_with(&[0, 1]);
        k.tick = 10;
        assert!(!k.sleep_until(10));
        assert!(!k.sleep_until(9));
        assert_eq!(k.tasks[1].state, State::Ready);
    }

    #[test]
    fn tick_wraps_around() {
        let mut k = kernel_with(&[0, 1]);
        k.tick = u32::MAX - 1;
        assert!(k.sleep_until(1)); // three ticks ahead, across the wrap
        k.select();
        k.tick();
        k.tick();
        assert_eq!(k.tasks[1].state, State::Blocked);
        assert_eq!(k.tick, 0);
        assert!(k.tick());
        assert_eq!(k.select(), 1);
    }

    #[test]
    fn wait_list_orders_by_priority_then_fifo() {
        let mut k = kernel_with(&[0, 1, 3, 3, 2, 9]);
        let mut w = WaitList::new();
        // Block each non-idle task in turn (the current one is the highest ready).
        for expected in [5, 2, 3, 4, 1] {
            assert_eq!(k.current, expected);
            // SAFETY: `w` outlives every use below.
            unsafe { k.block_current(Some(&mut w), None) };
            k.select();
        }
        let order: std::vec::Vec<Idx> = k.waiters(&w).collect();
        assert_eq!(order, [5, 2, 3, 4, 1]);
        assert_eq!(k.top_waiter_prio(&w), Some(9));
        assert_eq!(k.wake_first(&mut w), Some((5, true)));
        assert_eq!(k.select(), 5);
        assert_eq!(k.wake_reason(), Wake::Event);
    }

    #[test]
    fn timeout_removes_from_wait_list() {
        let mut k = kernel_with(&[0, 1]);
        let mut w = WaitList::new();
        // SAFETY: `w` outlives the wait.
        unsafe { k.block_current(Some(&mut w), Some(2)) };
        k.select();
        k.tick();
        assert!(!w.is_empty());
        k.tick();
        assert!(w.is_empty());
        assert_eq!(k.select(), 1);
        assert_eq!(k.wake_reason(), Wake::Timeout);
    }

    #[test]
    fn priority_change_reorders_waiters_and_preempts() {
        let mut k = kernel_with(&[0, 2, 3]);
        let mut w = WaitList::new();
        // SAFETY: `w` outlives the waits.
        unsafe { k.block_current(Some(&mut w), None) }; // task 2
        k.select();
        // SAFETY: as above.
        unsafe { k.block_current(Some(&mut w), None) }; // task 1
        k.select();
        assert_eq!(k.waiters(&w).collect::<std::vec::Vec<_>>(), [2, 1]);
        k.set_effective_priority(1, 7);
        assert_eq!(k.waiters(&w).collect::<std::vec::Vec<_>>(), [1, 2]);
        assert_eq!(k.wake_first(&mut w), Some((1, true)));
        // Raising a ready task above the running one asks for a switch.
        let mut k = kernel_with(&[0, 2, 3]);
        assert!(k.set_effective_priority(1, 4));
        assert_eq!(k.select(), 1);
        // Lowering the running one below a ready one too.
        assert!(k.set_effective_priority(1, 1));
        assert_eq!(k.select(), 2);
    }

    #[test]
    fn suspend_resume_and_delete() {
        let mut k = kernel_with(&[0, 1, 2]);
        assert!(k.suspend(2));
        assert_eq!(k.select(), 1);
        assert!(!k.suspend(2), "suspending twice changes nothing");
        assert!(k.resume(2));
        assert_eq!(k.select(), 2);
        // Deleting another task frees its slot and bumps its generation.
        let gen = k.tasks[1].gen;
        assert!(!k.delete(1));
        assert_eq!(k.tasks[1].state, State::Free);
        assert_eq!(k.tasks[1].gen, gen.wrapping_add(1));
        // Deleting the running task leaves a zombie for the idle task.
        assert!(k.delete(2));
        assert_eq!(k.select(), 0);
        assert_eq!(k.pop_zombie(), Some(2));
        k.free_slot(2);
        assert_eq!(k.alloc_slot(), Some(1));
    }

    #[test]
    fn suspending_a_blocked_task_aborts_its_wait() {
        let mut k = kernel_with(&[0, 1, 2]);
        let mut w = WaitList::new();
        // SAFETY: `w` outlives the wait.
        unsafe { k.block_current(Some(&mut w), Some(100)) };
        k.select();
        k.suspend(2);
        assert!(w.is_empty());
        assert_eq!(k.tasks[2].wake, Wake::Aborted);
        for _ in 0..200 {
            k.tick();
        }
        assert_eq!(
            k.tasks[2].state,
            State::Suspended,
            "a suspended task has no timeout"
        );
    }

    #[test]
    fn scheduler_lock_keeps_the_current_task() {
        let mut k = kernel_with(&[0, 1]);
        k.lock_depth = 1;
        let i = k.alloc_slot().unwrap();
        k.tasks[i as usize].prio = 5;
        assert!(k.add_task(i));
        assert_eq!(k.select(), 1);
        k.lock_depth = 0;
        assert_eq!(k.select(), i);
    }
}
