//! # fqp-runner: a qualification run, from a port's manifest to its results
//!
//! The manifest parsed into types ([`manifest`]); the firmware built for the port's target
//! ([`firmware`]); devices brought up by the port's flash method and their consoles opened
//! ([`device`], [`qemu`], [`probe`], [`serial`]); one session per device speaking the line
//! protocol ([`session`]); the run itself — plan, pool of devices, retries, verdict, reports
//! ([`qualify`]) — and its figures ([`bench`], [`profile`]); what it tells meanwhile
//! ([`events`], which the command line's progress display and the live event log consume);
//! signing results ([`sign`]) and checking them ([`verify`]). The command line (`fqp`) is a
//! thin front over this crate; the lab's services are `fqp-lab`.

pub mod bench;
pub mod device;
mod error;
pub mod events;
pub mod firmware;
pub mod manifest;
pub mod probe;
pub mod profile;
pub mod qemu;
pub mod qualify;
pub mod serial;
pub mod session;
pub mod sign;
pub mod verify;

pub use error::Error;
