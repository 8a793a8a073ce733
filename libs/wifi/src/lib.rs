//! # fqp-wifi: Wi-Fi through an AT-command co-processor
//!
//! Most boards that reach a network over Wi-Fi do it through a radio module on a UART that
//! speaks an AT command set (Espressif's ESP-AT is the common one): the module holds the
//! radio, the Wi-Fi stack and TCP/IP; the host sends commands (`AT+CWJAP="ssid","pass"`) and
//! reads replies, unsolicited events (`WIFI DISCONNECT`) and received data (`+IPD,<len>:…`).
//! This crate is the driver for such a module, written for no heap so that it runs unchanged on
//! a board with a real module and on the reference board, whose module the lab simulates.
//!
//! Its first part is the wire ([`at`]): commands written with their strings escaped as the
//! module wants them, and the byte stream from the module cut into lines, the send prompt and
//! received data (which may hold any bytes, line ends included), each line read into what it
//! says. It is host-tested on its own, with the replies of the command set.

#![no_std]

pub mod at;
