//! # fqp-kernel: a preemptive RTOS kernel for microcontrollers
//!
//! FreeRTOS-class in scope (tasks with 32 priorities, preemption and time slicing, delays,
//! queues, semaphores, mutexes with priority inheritance, recursive mutexes, task
//! notifications, stream and message buffers, event groups, queue sets, software timers,
//! heaps), Rust in its interface: objects are `static`-friendly
//! `const fn` constructors, a mutex owns its data and hands it out through a guard, a queue is
//! typed and gives an item back when it cannot take it.
//!
//! ## Layers
//! - [`arch`]: the CPU port (the only place that knows registers and exception frames).
//! - `sched`: the scheduler state machine, pure and unit-tested on the host.
//! - `rt`: the one kernel instance, its critical section, tick and switch entries;
//!   `startup`: the idle task and the first switch; `stack`: fill pattern and overflow guard.
//! - the API modules ([`task`], [`queue`], [`semaphore`], [`mutex`], [`notify`],
//!   [`stream`], [`event_group`], [`timer`], [`heap`]), each a thin critical-section wrapper
//!   over the state machine.
//!
//! ## Calling the kernel from interrupt handlers
//! Every non-blocking call (`try_*`, `give`, `set`, `notify`, …) may be made from an interrupt
//! whose priority is at or below the port's syscall ceiling (Cortex-M: numerically at least
//! `MAX_SYSCALL_PRIORITY`). A blocking call made from an interrupt does not block: it behaves
//! as with [`time::Timeout::NONE`]. A task woken from an interrupt runs as soon as the
//! interrupt returns if it has the higher priority.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod arch;
pub mod config;
pub mod event_group;
pub mod heap;
pub mod hooks;
mod list;
pub mod mutex;
pub mod notify;
pub mod queue;
pub mod queue_set;
mod rt;
mod sched;
pub mod semaphore;
mod stack;
mod startup;
pub mod stream;
pub mod task;
pub mod time;
pub mod timer;

pub use arch::critical;
pub use rt::{cpu_hz, fqp_switch_context, fqp_yield_context, is_running, tick_from_isr};
pub use sched::{State as TaskState, WaitList};
pub use startup::start;
pub use time::{TimedOut, Timeout};

/// Version of this kernel.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
