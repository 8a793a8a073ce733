//! Kernel qualification tests: one group per primitive. Each test checks behaviour (who runs
//! when, what a call returns, what a waiter sees), not only that calls return.
//!
//! Tests run in the runner task at [`fqp_testkit::TEST_PRIORITY`]; helpers run above it (they
//! preempt the test at once) or below it (they run only while the test blocks).

#![no_std]

extern crate alloc;

mod tasks;
mod util;

use fqp_testkit::Group;

/// Every kernel test group, in the order the host lists them.
pub static GROUPS: &[&Group] = &[&tasks::TASKS];
