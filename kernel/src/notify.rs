//! Direct-to-task notifications: each task has `FQP_NOTIFY_INDEXES` 32-bit values, each with a
//! pending flag, that other tasks and interrupts update and the owner waits on. Lighter than a
//! semaphore or an event group because no object and no wait list are involved.

use crate::config::NOTIFY_INDEXES;
use crate::rt::{self, switch_if};
use crate::sched::NotifyState;
use crate::task::{current_slot, TaskGone, TaskId};
use crate::time::{block_on, Step, TimedOut, Timeout};

/// How a notification changes the target's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Only mark the notification pending.
    None,
    /// OR these bits into the value (event-group style).
    SetBits(u32),
    /// Add one (counting-semaphore style).
    Increment,
    /// Replace the value, pending or not (mailbox style).
    Overwrite(u32),
    /// Replace the value only if no notification is pending.
    NoOverwrite(u32),
}

/// Why a notification was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyError {
    /// The target task does not exist.
    TaskGone,
    /// [`Action::NoOverwrite`] found a notification still pending.
    Pending,
}

impl From<TaskGone> for NotifyError {
    fn from(_: TaskGone) -> Self {
        NotifyError::TaskGone
    }
}

fn check_index(index: usize) {
    assert!(
        index < NOTIFY_INDEXES,
        "notification index {index} is not below FQP_NOTIFY_INDEXES"
    );
}

/// Notifies `task` at `index`, waking it if it waits there. Returns the previous value.
/// Callable from interrupt handlers.
pub fn notify(task: TaskId, index: usize, action: Action) -> Result<u32, NotifyError> {
    check_index(index);
    rt::with(|k| {
        let i = task.slot(k)?;
        let t = &mut k.tasks[i];
        let old_state = t.notify_state[index];
        let old = t.notify_value[index];
        let v = &mut t.notify_value[index];
        match action {
            Action::None => {}
            Action::SetBits(b) => *v |= b,
            Action::Increment => *v = v.wrapping_add(1),
            Action::Overwrite(x) => *v = x,
            Action::NoOverwrite(x) => {
                if old_state == NotifyState::Pending {
                    return Err(NotifyError::Pending);
                }
                *v = x;
            }
        }
        t.notify_state[index] = NotifyState::Pending;
        if old_state == NotifyState::Waiting {
            if let Some(due) = k.abort_wait(i) {
                k.tasks[i].wake = crate::sched::Wake::Event;
                switch_if(k, due);
            }
        }
        Ok(old)
    })
}

/// Increments the value at `index` of `task` (the light-weight "give").
pub fn give(task: TaskId, index: usize) -> Result<(), TaskGone> {
    notify(task, index, Action::Increment)
        .map(|_| ())
        .map_err(|_| TaskGone)
}

/// Waits for a notification at `index` of the running task. Bits in `clear_on_entry` are
/// cleared first if none is pending; on success the value is returned, then the bits in
/// `clear_on_exit` are cleared.
pub fn wait(
    index: usize,
    clear_on_entry: u32,
    clear_on_exit: u32,
    timeout: Timeout,
) -> Result<u32, TimedOut> {
    check_index(index);
    let mut first = true;
    block_on(timeout, |k, expired| {
        let slot = current_slot(k);
        let t = &mut k.tasks[slot];
        if first && t.notify_state[index] != NotifyState::Pending {
            t.notify_value[index] &= !clear_on_entry;
        }
        first = false;
        if t.notify_state[index] == NotifyState::Pending {
            let v = t.notify_value[index];
            t.notify_value[index] &= !clear_on_exit;
            t.notify_state[index] = NotifyState::Idle;
            return Step::Done(Ok(v));
        }
        if expired {
            t.notify_state[index] = NotifyState::Idle;
            return Step::Done(Err(TimedOut));
        }
        t.notify_state[index] = NotifyState::Waiting;
        Step::Block(None)
    })
}

/// Waits until the value at `index` is non-zero, then decrements it (or clears it if
/// `clear`). Returns the value before that, or 0 on timeout.
pub fn take(index: usize, clear: bool, timeout: Timeout) -> u32 {
    check_index(index);
    block_on(timeout, |k, expired| {
        let slot = current_slot(k);
        let t = &mut k.tasks[slot];
        let v = t.notify_value[index];
        if v != 0 {
            t.notify_value[index] = if clear { 0 } else { v - 1 };
            t.notify_state[index] = NotifyState::Idle;
            return Step::Done(v);
        }
        if expired {
            t.notify_state[index] = NotifyState::Idle;
            return Step::Done(0);
        }
        t.notify_state[index] = NotifyState::Waiting;
        Step::Block(None)
    })
}

/// Clears a pending notification of `task` at `index`; returns whether one was pending.
pub fn clear_state(task: TaskId, index: usize) -> Result<bool, TaskGone> {
    check_index(index);
    rt::with(|k| {
        let slot = task.slot(k)?;
        let t = &mut k.tasks[slot];
        let was = t.notify_state[index] == NotifyState::Pending;
        if was {
            t.notify_state[index] = NotifyState::Idle;
        }
        Ok(was)
    })
}

/// Clears `bits` in the value of `task` at `index`; returns the value before.
pub fn clear_bits(task: TaskId, index: usize, bits: u32) -> Result<u32, TaskGone> {
    check_index(index);
    rt::with(|k| {
        let slot = task.slot(k)?;
        let t = &mut k.tasks[slot];
        let old = t.notify_value[index];
        t.notify_value[index] &= !bits;
        Ok(old)
    })
}
