//! Kernel qualification tests: one group per primitive. Each test checks behaviour (who runs
//! when, what a call returns, what a waiter sees, how many ticks passed), not only that calls
//! return.
//!
//! Tests run in the runner task at [`fqp_testkit::TEST_PRIORITY`]; helpers run above it (they
//! preempt the test at once) or below it (they run only while the test blocks). Timing checks
//! are in ticks, which the kernel counts exactly whatever the host's speed.
//!
//! A test starts at an arbitrary point of a tick period (when the host's command arrives). A
//! test whose outcome depends on where the next tick falls (time slicing, exact tick counts)
//! first aligns itself with `task::delay(1)`, which returns just after a tick. A test that
//! waits for lower-priority helpers to run blocks a whole tick period (`util::let_lower_run`).

#![no_std]

extern crate alloc;

mod delays;
mod events;
#[cfg(target_abi = "eabihf")]
mod fpu;
mod heap;
mod isr;
mod mutexes;
mod notifications;
mod queues;
mod scheduling;
mod semaphores;
mod stack_overflow;
mod static_alloc;
mod streams;
mod tasks;
mod timers;
mod util;

use fqp_testkit::Group;

/// Every kernel test group, in the order the host lists them.
pub static GROUPS: &[&Group] = &[
    &tasks::TASKS,
    &scheduling::SCHEDULING,
    &delays::DELAYS,
    &queues::QUEUE,
    &queues::QUEUE_SET,
    &semaphores::SEMAPHORE,
    &mutexes::MUTEX,
    &mutexes::RECURSIVE_MUTEX,
    &notifications::NOTIFY,
    &streams::STREAM_BUFFER,
    &streams::MESSAGE_BUFFER,
    &events::EVENT_GROUP,
    &timers::TIMER,
    &heap::HEAP,
    &static_alloc::STATIC_ALLOC,
    &stack_overflow::STACK_OVERFLOW,
    &isr::ISR,
    #[cfg(target_abi = "eabihf")]
    &fpu::FPU,
];
