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

use crate::config::{NOTIFY_INDEXES, TIME_SLICING};
use crate::list::{Idx, Links, List, Slots, NIL, SLOTS};

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

/// A handle to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskId {
    idx: Idx,
    gen: u16,
}

/// The task a handle named no longer exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskGone;

impl TaskId {
    pub(crate) fn of(k: &Kernel, i: Idx) -> TaskId {
        TaskId {
            idx: i,
            gen: k.tasks[i].gen,
        }
    }

    /// The slot, if the task still exists.
    pub(crate) fn slot(self, k: &Kernel) -> Result<Idx, TaskGone> {
        if self.idx as usize >= crate::config::MAX_TASKS {
            return Err(TaskGone);
        }
        let t = &k.tasks[self.idx];
        if t.gen == self.gen && !matches!(t.state, State::Free | State::Zombie) {
            Ok(self.idx)
        } else {
            Err(TaskGone)
        }
    }

    /// The slot number (stable while the task exists).
    pub fn index(self) -> usize {
        self.idx as usize
    }

    /// The handle as one word, for keeping it where only atomics go (an interrupt handler's
    /// statics); [`TaskId::from_raw`] gives it back.
    pub fn into_raw(self) -> u32 {
        (self.gen as u32) << 16 | self.idx as u32
    }

    /// A handle from [`TaskId::into_raw`]. A word that never named a task gives a handle that
    /// names none (every call with it answers [`TaskGone`]), unless it happens to match a live
    /// task's slot and generation.
    pub fn from_raw(raw: u32) -> TaskId {
        TaskId {
            idx: (raw & 0xff) as Idx,
            gen: (raw >> 16) as u16,
        }
    }
}

/// A task control block. The fields the context switch reads come first; a block is 64 bytes
/// (aligned so: with the default configuration its fields take 60), so a slot's block is one
/// shift away.
#[repr(C, align(64))]
pub(crate) struct Tcb {
    /// Saved stack pointer while not running.
    pub sp: *mut u32,
    /// Lowest stack word above the guard ([`crate::stack::GUARD_WORDS`] words, below it, keep
    /// the fill pattern while the stack has never overflowed).
    pub stack_floor: *mut u32,
    /// Effective priority (raised by priority inheritance).
    pub prio: u8,
    pub state: State,
    /// Priority given by the application.
    pub base_prio: u8,
    /// True while in the delayed list (`wake_at` is valid).
    pub delayed: bool,
    /// Incremented each time the slot is freed, so stale handles are detected.
    pub gen: u16,
    pub wake: Wake,
    /// Number of mutexes held, for priority disinheritance.
    pub mutexes_held: u8,
    pub stack_words: u32,
    /// Tick at which a delayed task wakes, valid while `delayed`.
    pub wake_at: u32,
    /// The wait list this task is in, or null.
    pub waiting_on: *mut WaitList,
    pub name: &'static str,
    /// Object-specific wait arguments (event bits and options) and result (bits seen).
    pub wait_arg: u32,
    pub wait_result: u32,
    pub wait_opts: u8,
    /// The stack was allocated from the heap with this many words and is freed on deletion.
    pub heap_stack: bool,
    pub notify_state: [NotifyState; NOTIFY_INDEXES],
    pub notify_value: [u32; NOTIFY_INDEXES],
}

impl Tcb {
    /// Lowest word of the stack.
    pub fn stack_lo(&self) -> *mut u32 {
        self.stack_floor.wrapping_sub(crate::stack::GUARD_WORDS)
    }

    const EMPTY: Tcb = Tcb {
        sp: core::ptr::null_mut(),
        stack_floor: core::ptr::null_mut(),
        prio: 0,
        state: State::Free,
        base_prio: 0,
        delayed: false,
        gen: 0,
        wake: Wake::None,
        mutexes_held: 0,
        stack_words: 0,
        wake_at: 0,
        waiting_on: core::ptr::null_mut(),
        name: "",
        wait_arg: 0,
        wait_result: 0,
        wait_opts: 0,
        heap_stack: false,
        notify_state: [NotifyState::Idle; NOTIFY_INDEXES],
        notify_value: [0; NOTIFY_INDEXES],
    };
}

/// The ready list of priority `p`, as an index into [`Kernel::ready`] (priorities are below 32).
#[inline(always)]
fn level(p: u8) -> usize {
    p as usize & 31
}

/// The whole scheduler state. `repr(C)`, scalars first: a port's hand-written switch path
/// reaches the fields it needs with short immediate offsets (see [`layout`]).
#[repr(C)]
pub(crate) struct Kernel {
    /// The running task (NIL before the scheduler starts).
    pub current: Idx,
    /// A switch was wanted while the scheduler was locked.
    pub switch_deferred: bool,
    pub started: bool,
    /// Nesting depth of scheduler locks; no switch happens while non-zero.
    pub lock_depth: u32,
    /// Ticks since start, wrapping.
    pub tick: u32,
    /// Bit `p` is set while the ready list of priority `p` is not empty.
    ready_bits: u32,
    /// One list per priority level (see [`level`]).
    ready: [List; 32],
    delayed: List,
    pub zombies: List,
    sched_links: Links,
    wait_links: Links,
    pub tasks: Slots<Tcb>,
    /// Cycle stamp of the last context switch, for run-time statistics.
    pub last_switch_cycles: u64,
    /// CPU cycles each task has run (with run-time statistics configured).
    pub run_cycles: Slots<u64>,
}

/// Where a port's hand-written switch path finds the scheduler's state: byte offsets into
/// [`Kernel`] and [`Tcb`], and the strides of their arrays (the Armv7-M and Armv8-M path
/// reads them all; elsewhere only the tick's is read).
#[cfg_attr(
    not(any(fqp_cpu = "armv7m", fqp_cpu = "armv8m_main")),
    allow(dead_code)
)]
pub(crate) mod layout {
    use super::{Kernel, Tcb};
    use crate::list::{Link, List};
    use core::mem::{offset_of, size_of};

    pub const CURRENT: usize = offset_of!(Kernel, current);
    pub const TICK: usize = offset_of!(Kernel, tick);
    pub const LOCK_DEPTH: usize = offset_of!(Kernel, lock_depth);
    pub const READY_BITS: usize = offset_of!(Kernel, ready_bits);
    /// `ready[p].head` is at `READY_HEAD + p * LIST_SIZE`.
    pub const READY_HEAD: usize = offset_of!(Kernel, ready) + List::HEAD_OFFSET;
    pub const LIST_SIZE: usize = size_of::<List>();
    /// `sched_links[i].next` is at `SCHED_NEXT + i * LINK_SIZE`.
    pub const SCHED_NEXT: usize = offset_of!(Kernel, sched_links) + offset_of!(Link, next);
    pub const LINK_SIZE: usize = size_of::<Link>();
    /// `tasks[i]` is at `TASKS + i * TCB_SIZE`.
    pub const TASKS: usize = offset_of!(Kernel, tasks);
    pub const TCB_SIZE: usize = size_of::<Tcb>();
    pub const TCB_SP: usize = offset_of!(Tcb, sp);
    pub const TCB_PRIO: usize = offset_of!(Tcb, prio);
    pub const TCB_STACK_FLOOR: usize = offset_of!(Tcb, stack_floor);

    // Thumb-2 loads and stores reach 4095 bytes past a base; arrays are indexed by a shift.
    const _: () = {
        let offsets = [
            CURRENT,
            LOCK_DEPTH,
            READY_HEAD,
            SCHED_NEXT,
            TASKS + TCB_STACK_FLOOR,
        ];
        let mut i = 0;
        while i < offsets.len() {
            assert!(
                offsets[i] < 4096,
                "a switch-path field is beyond an immediate offset"
            );
            i += 1;
        }
        assert!(LIST_SIZE.is_power_of_two() && LINK_SIZE.is_power_of_two());
        assert!(TCB_SP < TCB_SIZE && TCB_PRIO < TCB_SIZE && TCB_STACK_FLOOR < TCB_SIZE);
    };
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
            current: NIL,
            switch_deferred: false,
            started: false,
            lock_depth: 0,
            tick: 0,
            ready_bits: 0,
            ready: [List::EMPTY; 32],
            delayed: List::EMPTY,
            zombies: List::EMPTY,
            sched_links: Links::new(),
            wait_links: Links::new(),
            tasks: Slots([Tcb::EMPTY; SLOTS]),
            last_switch_cycles: 0,
            run_cycles: Slots([0; SLOTS]),
        }
    }

    /// Finds a free slot.
    pub fn alloc_slot(&self) -> Option<Idx> {
        self.tasks.0[..crate::config::MAX_TASKS]
            .iter()
            .position(|t| t.state == State::Free)
            .map(|i| i as Idx)
    }

    /// Makes a freshly initialised slot a ready task. Returns true if it should preempt.
    pub fn add_task(&mut self, i: Idx) -> bool {
        self.make_ready(i)
    }

    /// Makes task `i` ready (one copy, with the list update inlined: a call site pays one
    /// call). Returns true if it should preempt.
    #[inline(never)]
    fn make_ready(&mut self, i: Idx) -> bool {
        self.make_ready_inline(i)
    }

    /// [`Kernel::make_ready`] inlined: for resume, the hot path of preemptive scheduling.
    #[inline(always)]
    fn make_ready_inline(&mut self, i: Idx) -> bool {
        let t = &mut self.tasks[i];
        t.state = State::Ready;
        let p = t.prio;
        self.ready[level(p)].push_back_inline(&mut self.sched_links, i);
        self.ready_bits |= 1 << (p & 31);
        self.preempts(i)
    }

    /// Takes task `i` out of its ready list (one copy).
    #[inline(never)]
    fn unready(&mut self, i: Idx) {
        self.unready_inline(i)
    }

    /// [`Kernel::unready`] inlined: for suspend, the other hot path of preemptive scheduling.
    #[inline(always)]
    fn unready_inline(&mut self, i: Idx) {
        let p = self.tasks[i].prio;
        let list = &mut self.ready[level(p)];
        list.remove_inline(&mut self.sched_links, i);
        if list.is_empty() {
            self.ready_bits &= !(1 << (p & 31));
        }
    }

    /// True if task `i` should run instead of the current task.
    #[inline(always)]
    fn preempts(&self, i: Idx) -> bool {
        self.started && self.current != NIL && self.tasks[i].prio > self.tasks[self.current].prio
    }

    /// The highest-priority ready task.
    pub fn highest_ready(&self) -> Idx {
        debug_assert!(
            self.ready_bits != 0,
            "no ready task: the idle task must always exist"
        );
        self.ready[level(31 - self.ready_bits.leading_zeros() as u8)].head()
    }

    pub fn ready_count(&self, prio: u8) -> usize {
        self.ready[level(prio)].len()
    }

    /// Chooses the task to run next and makes it current.
    pub fn select(&mut self) -> Idx {
        if self.lock_depth == 0 || self.tasks[self.current].state != State::Ready {
            self.current = self.highest_ready();
        }
        self.current
    }

    /// The yield of a running task while the scheduler is not locked: the running task heads
    /// its ready list, and the task after it (itself when alone) becomes the head and is
    /// returned. The caller switches to it.
    #[inline(always)]
    pub fn rotate_running(&mut self) -> Idx {
        let cur = self.current;
        debug_assert!(self.lock_depth == 0 && self.tasks[cur].state == State::Ready);
        let list = &mut self.ready[level(self.tasks[cur].prio)];
        debug_assert_eq!(list.head(), cur, "the running task heads its ready list");
        let next = self.sched_links[cur].next;
        list.set_head(next);
        next
    }

    /// Moves the current task behind the other ready tasks of its priority. Returns true if
    /// another task now comes first.
    pub fn yield_current(&mut self) -> bool {
        let list = &mut self.ready[level(self.tasks[self.current].prio)];
        if list.len() > 1 && list.head() == self.current {
            list.rotate(&self.sched_links);
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
        let t = &mut self.tasks[i];
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
        self.tasks[i].wake_at = at;
        self.tasks[i].delayed = true;
        let tasks = &self.tasks;
        self.delayed
            .insert_sorted(&mut self.sched_links, i, |j| until(now, tasks[j].wake_at));
    }

    fn wait_insert(&mut self, w: &mut WaitList, i: Idx) {
        let tasks = &self.tasks;
        w.list
            .insert_sorted(&mut self.wait_links, i, |j| u8::MAX - tasks[j].prio);
        self.tasks[i].waiting_on = w;
    }

    /// Takes task `i` out of whatever it is blocked on (wait list and delayed list).
    fn unblock(&mut self, i: Idx) {
        let t = &mut self.tasks[i];
        if !t.waiting_on.is_null() {
            // SAFETY: a task's `waiting_on` points to a live wait list while it is in it
            // (contract of `block_current`).
            let w = unsafe { &mut *t.waiting_on };
            t.waiting_on = core::ptr::null_mut();
            w.list.remove(&mut self.wait_links, i);
        }
        if self.tasks[i].delayed {
            self.tasks[i].delayed = false;
            self.delayed.remove(&mut self.sched_links, i);
        }
    }

    /// Wakes blocked task `i` for `reason`. Returns true if it should preempt. The wait list
    /// it is in (if any) must not be borrowed by the caller: use [`Kernel::wake_waiter`] for a
    /// task taken from a list the caller holds.
    pub fn wake(&mut self, i: Idx, reason: Wake) -> bool {
        debug_assert_eq!(self.tasks[i].state, State::Blocked);
        self.unblock(i);
        self.tasks[i].wake = reason;
        self.make_ready(i)
    }

    /// Wakes task `i`, waiting on `w`, with [`Wake::Event`]; removes it from `w` through the
    /// caller's borrow (never through the task's own pointer to the list, which would alias
    /// that borrow). Returns true if it should preempt.
    pub fn wake_waiter(&mut self, w: &mut WaitList, i: Idx) -> bool {
        debug_assert!(core::ptr::eq(self.tasks[i].waiting_on, w));
        w.list.remove(&mut self.wait_links, i);
        self.tasks[i].waiting_on = core::ptr::null_mut();
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
        (i != NIL).then(|| self.tasks[i].prio)
    }

    /// Why the current task was last woken.
    pub fn wake_reason(&self) -> Wake {
        self.tasks[self.current].wake
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
        self.tasks[i].state = State::Blocked;
        self.tasks[i].wake = Wake::None;
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
            if i == NIL || !reached(now, self.tasks[i].wake_at) {
                break;
            }
            switch |= self.wake(i, Wake::Timeout);
        }
        if TIME_SLICING && self.started && self.current != NIL {
            let list = &mut self.ready[level(self.tasks[self.current].prio)];
            switch |= list.len() > 1;
            if list.len() > 1 && list.head() == self.current {
                list.rotate(&self.sched_links);
            }
        }
        switch
    }

    // ---- suspension, priorities, deletion ------------------------------------------------

    /// Suspends task `i`. A blocked task leaves its wait (its call sees [`Wake::Aborted`]).
    /// Returns true if the current task was suspended (a switch is due).
    pub fn suspend(&mut self, i: Idx) -> bool {
        match self.tasks[i].state {
            State::Ready => self.unready_inline(i),
            State::Blocked => {
                self.unblock(i);
                self.tasks[i].wake = Wake::Aborted;
            }
            _ => return false,
        }
        self.tasks[i].state = State::Suspended;
        i == self.current
    }

    /// Resumes suspended task `i`. Returns true if it should preempt.
    pub fn resume(&mut self, i: Idx) -> bool {
        if self.tasks[i].state != State::Suspended {
            return false;
        }
        self.make_ready_inline(i)
    }

    /// Ends the wait of blocked task `i` early. Returns Some(preempt) if it was blocked.
    pub fn abort_wait(&mut self, i: Idx) -> Option<bool> {
        (self.tasks[i].state == State::Blocked).then(|| self.wake(i, Wake::Aborted))
    }

    /// Sets the effective priority of task `i`, keeping every list it is in ordered.
    /// Returns true if a context switch is due.
    pub fn set_effective_priority(&mut self, i: Idx, prio: u8) -> bool {
        let old = self.tasks[i].prio;
        if old == prio {
            return false;
        }
        match self.tasks[i].state {
            State::Ready => {
                self.unready(i);
                self.tasks[i].prio = prio;
                self.make_ready(i);
            }
            State::Blocked if !self.tasks[i].waiting_on.is_null() => {
                // SAFETY: as in `unblock`.
                let w = unsafe { &mut *self.tasks[i].waiting_on };
                w.list.remove(&mut self.wait_links, i);
                self.tasks[i].prio = prio;
                self.wait_insert(w, i);
            }
            _ => self.tasks[i].prio = prio,
        }
        if self.current == NIL || !self.started {
            return false;
        }
        // Lowering the running task below a ready one, or raising another above it.
        let cur = self.current;
        self.tasks[self.highest_ready()].prio > self.tasks[cur].prio
            || (i == cur && prio < old && self.ready_count(prio) > 1)
    }

    /// Removes task `i` from scheduling. Returns true if it was the current task (it becomes
    /// a zombie until the idle task frees it); otherwise the slot is free at once.
    pub fn delete(&mut self, i: Idx) -> bool {
        match self.tasks[i].state {
            State::Ready => self.unready(i),
            State::Blocked => self.unblock(i),
            State::Suspended => {}
            State::Free | State::Zombie => return false,
        }
        if i == self.current {
            self.tasks[i].state = State::Zombie;
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
        let t = &mut self.tasks[i];
        let gen = t.gen.wrapping_add(1);
        *t = Tcb::EMPTY;
        t.gen = gen;
        self.run_cycles[i] = 0;
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
            k.tasks[n as Idx].prio = p;
            k.tasks[n as Idx].base_prio = p;
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
        k.tasks[i].prio = 5;
        assert!(k.add_task(i));
        assert_eq!(k.select(), 1);
        k.lock_depth = 0;
        assert_eq!(k.select(), i);
    }
}
