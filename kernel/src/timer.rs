//! Software timers: one-shot or auto-reload, run by the timer service task.
//!
//! Active timers form one list sorted by expiry tick. Starting, stopping, resetting or
//! changing the period of a timer edits that list directly inside a kernel critical section
//! (from a task or an interrupt) and, when the earliest expiry changed, notifies the service
//! task, which sleeps until the earliest expiry and then calls the callbacks of the timers due,
//! in expiry order, at its own priority (`FQP_TIMER_PRIORITY`). Callbacks must not block.
//! An auto-reload timer is re-armed from its expected expiry, so it keeps its rhythm even if
//! its callback runs late. The service task is created when a timer is first started: an
//! application without timers has neither the task nor its stack.

use crate::config::TIMER_STACK_WORDS;
use crate::notify;
use crate::rt;
use crate::sched::{reached, Kernel};
use crate::task::{self, StaticStack, TaskId};
use crate::time::Timeout;
use core::cell::UnsafeCell;
use core::ptr::null;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A timer's callback; it gets the timer (for its id, or to restart it).
pub type Callback = fn(&'static Timer);

struct State {
    period: u32,
    auto_reload: bool,
    active: bool,
    expiry: u32,
    next: *const Timer,
}

/// A software timer; create it in a `static` (or leak it) and start it.
pub struct Timer {
    name: &'static str,
    callback: Callback,
    s: UnsafeCell<State>,
    id: AtomicUsize,
}

// SAFETY: the state is touched only inside kernel critical sections (and by the service task
// inside them); `id` is atomic.
unsafe impl Sync for Timer {}

struct List {
    head: *const Timer,
    service: Option<TaskId>,
}

struct Global(UnsafeCell<List>);
// SAFETY: accessed only inside kernel critical sections.
unsafe impl Sync for Global {}

static LIST: Global = Global(UnsafeCell::new(List {
    head: null(),
    service: None,
}));

/// Notification index the service task sleeps on.
const NOTIFY_INDEX: usize = 0;

// Exclusive access comes from the kernel critical section every caller holds.
#[allow(clippy::mut_from_ref)]
fn state(t: &Timer) -> &mut State {
    // SAFETY: only called inside kernel critical sections, never twice for one timer at once.
    unsafe { &mut *t.s.get() }
}

fn list() -> &'static mut List {
    // SAFETY: only called inside kernel critical sections.
    unsafe { &mut *LIST.0.get() }
}

impl Timer {
    /// A stopped timer that calls `callback` every `period` ticks (auto-reload) or once.
    pub const fn new(
        name: &'static str,
        period: u32,
        auto_reload: bool,
        callback: Callback,
    ) -> Timer {
        assert!(
            period > 0 && period < 1 << 31,
            "timer period must be 1..2^31 ticks"
        );
        Timer {
            name,
            callback,
            s: UnsafeCell::new(State {
                period,
                auto_reload,
                active: false,
                expiry: 0,
                next: null(),
            }),
            id: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A value for the application (which timer fired, a counter…).
    pub fn id(&self) -> usize {
        self.id.load(Ordering::Relaxed)
    }

    pub fn set_id(&self, id: usize) {
        self.id.store(id, Ordering::Relaxed)
    }

    /// Starts the timer, or restarts it: it expires `period` ticks from now. Callable from
    /// interrupt handlers.
    pub fn start(&'static self) {
        start_service();
        rt::with(|k| {
            unlink(self);
            let at = k.tick.wrapping_add(state(self).period);
            arm(k, self, at);
        })
    }

    /// Same as [`Timer::start`] (FreeRTOS's name for restarting).
    pub fn reset(&'static self) {
        self.start()
    }

    /// Stops the timer; its callback is not called until it is started again.
    pub fn stop(&'static self) {
        rt::with(|_| unlink(self))
    }

    /// Sets a new period and (re)starts the timer with it.
    pub fn change_period(&'static self, period: u32) {
        assert!(
            period > 0 && period < 1 << 31,
            "timer period must be 1..2^31 ticks"
        );
        start_service();
        rt::with(|k| {
            unlink(self);
            state(self).period = period;
            let at = k.tick.wrapping_add(period);
            arm(k, self, at);
        })
    }

    /// Makes the timer one-shot or auto-reload.
    pub fn set_auto_reload(&'static self, auto_reload: bool) {
        rt::with(|_| state(self).auto_reload = auto_reload)
    }

    pub fn is_active(&self) -> bool {
        rt::with(|_| state(self).active)
    }

    pub fn period(&self) -> u32 {
        rt::with(|_| state(self).period)
    }

    /// The tick at which it expires next, if active.
    pub fn expiry(&self) -> Option<u32> {
        rt::with(|_| {
            let s = state(self);
            s.active.then_some(s.expiry)
        })
    }
}

/// Inserts `t` in expiry order; wakes the service task if `t` is now first.
fn arm(k: &mut Kernel, t: &'static Timer, at: u32) {
    let now = k.tick;
    let l = list();
    let s = state(t);
    s.expiry = at;
    s.active = true;
    let mut prev: *const Timer = null();
    let mut cur = l.head;
    // SAFETY: list entries are `'static` timers.
    while let Some(c) = unsafe { cur.as_ref() } {
        if at.wrapping_sub(now) < state(c).expiry.wrapping_sub(now) {
            break;
        }
        prev = cur;
        cur = state(c).next;
    }
    state(t).next = cur;
    // SAFETY: `prev` is null or a `'static` timer in the list.
    match unsafe { prev.as_ref() } {
        Some(p) => state(p).next = t,
        None => {
            l.head = t;
            if let Some(svc) = l.service {
                // The earliest expiry changed: the service task must recompute its sleep.
                wake_service(k, svc);
            }
        }
    }
}

fn wake_service(k: &mut Kernel, svc: TaskId) {
    if let Ok(i) = svc.slot(k) {
        let t = &mut k.tasks[i];
        t.notify_value[NOTIFY_INDEX] = t.notify_value[NOTIFY_INDEX].wrapping_add(1);
        let waiting = t.notify_state[NOTIFY_INDEX] == crate::sched::NotifyState::Waiting;
        t.notify_state[NOTIFY_INDEX] = crate::sched::NotifyState::Pending;
        if waiting {
            if let Some(due) = k.abort_wait(i) {
                k.tasks[i].wake = crate::sched::Wake::Event;
                rt::switch_if(k, due);
            }
        }
    }
}

/// Takes `t` out of the active list (if in it).
fn unlink(t: &'static Timer) {
    let l = list();
    if !state(t).active {
        return;
    }
    state(t).active = false;
    let mut prev: *const Timer = null();
    let mut cur = l.head;
    // SAFETY: list entries are `'static` timers.
    while let Some(c) = unsafe { cur.as_ref() } {
        if core::ptr::eq(c, t) {
            let next = state(c).next;
            // SAFETY: `prev` is null or a `'static` timer in the list.
            match unsafe { prev.as_ref() } {
                Some(p) => state(p).next = next,
                None => l.head = next,
            }
            state(c).next = null();
            return;
        }
        prev = cur;
        cur = state(c).next;
    }
}

/// Creates the timer service task, the first time a timer is started. A timer armed by
/// another task while the service is being created is not missed: the service looks at the
/// list before it first sleeps.
fn start_service() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.load(Ordering::Relaxed) || crate::arch::test_and_set(&STARTED) {
        return;
    }
    static STACK: StaticStack<TIMER_STACK_WORDS> = StaticStack::new();
    let id = task::Builder::new("timers")
        .priority(crate::config::TIMER_PRIORITY)
        .static_stack(STACK.take().expect("timer service started twice"))
        .spawn_raw(service, (0, 0))
        .expect("no task slot left for the timer service");
    rt::with(|_| list().service = Some(id));
}

/// What the service task does next.
enum Next {
    Fire(&'static Timer),
    Sleep(Timeout),
}

extern "C" fn service(_: usize, _: usize) -> ! {
    loop {
        let next = rt::with(|k| {
            let l = list();
            // SAFETY: list entries are `'static` timers.
            let Some(t) = (unsafe { l.head.as_ref() }) else {
                return Next::Sleep(Timeout::FOREVER);
            };
            let s = state(t);
            if !reached(k.tick, s.expiry) {
                return Next::Sleep(Timeout::ticks(s.expiry.wrapping_sub(k.tick)));
            }
            unlink(t);
            if s.auto_reload {
                let at = s.expiry.wrapping_add(s.period);
                arm(k, t, at);
            }
            Next::Fire(t)
        });
        match next {
            Next::Fire(t) => (t.callback)(t),
            Next::Sleep(d) => {
                notify::take(NOTIFY_INDEX, true, d);
            }
        }
    }
}
