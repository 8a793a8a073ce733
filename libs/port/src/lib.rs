//! # fqp-port: everything a vendor implements
//!
//! A port of fqp to a board is this crate's traits implemented for that board, and nothing
//! else: the kernel's CPU port aside (one per architecture, in `fqp-kernel`), every library
//! and test suite reaches the hardware through [`Board`] and the devices it hands out.
//!
//! - [`Board`]: the console, reset and exit, the test interrupts, the heap's figures, and an
//!   accessor per optional device. Every port implements it.
//! - [`Ethernet`]: frames in and out, for the TCP/IP stack (`fqp-net`). Capability `network`.
//! - [`Entropy`]: a true random number generator, for the keystore. Without one, the host's
//!   seed is used (on an emulated board), which the report says.
//! - [`Storage`]: what keeps the keystore across resets (flash, EEPROM, a host file).
//!   Capability `storage`.
//!
//! - [`Flash`]: where firmware images go — the boot loader's two slots and status area.
//!   Capability `ota`.
//!
//! Wi-Fi comes next, the same way: a trait here and an accessor on [`Board`] that returns
//! `None` by default, so a port that lacks the device compiles unchanged.
//!
//! One style throughout: devices are reached through `&self` (`Sync`), from any task, never
//! from an interrupt unless the method says so; a device with state guards it itself (a
//! kernel `Mutex`, a critical section). A board is a `static`, so what its accessors return
//! lives as long as the firmware.
//!
//! The harness checks what is declared against what is there: when the port's manifest
//! declares a capability whose device the board does not provide, the run stops at sync and
//! names the accessor that returned `None` (see [`Board::has`]).

#![no_std]

mod board;
mod devices;

pub use board::{Board, Device};
pub use devices::{DeviceError, Entropy, Ethernet, Flash, Storage};
pub use fqp_kernel::heap::HeapStats;
