//! The fqp serial line protocol, version 1 — both ends of it.
//!
//! The device's console carries ordinary text (its own logs, a vendor's prints, noise) and,
//! among it, protocol lines. A protocol line is
//!
//! ```text
//! @FQP <KIND> <key>=<value> <key>=<value> ... *<crc>\n
//! ```
//!
//! where `<crc>` is the CRC-16/CCITT-FALSE, as four upper-case hex digits, of every byte from
//! `@` up to and including the space before `*`. Values are percent-encoded: bytes outside
//! printable ASCII, and ` `, `%`, `*`, `=`, are written `%XX`. Text before `@FQP` on the same
//! line (noise that had no newline) is ignored; a line whose checksum does not match is
//! reported as corrupt, never half-believed. Both directions use the same framing, so a
//! corrupted command is caught by the device too.
//!
//! The message kinds and their fields are listed in `docs/protocol.md`; [`Kind`] names them.

#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

use core::fmt;

/// The protocol version this crate speaks, announced in `HELLO` and `READY`.
pub const VERSION: u32 = 1;

/// Instructions in one iteration of the loop the test kit counts from one tick to the next
/// (`tick_loops=` in `HELLO`/`READY`): with an emulator's instruction clock, the host turns
/// the count into the tick's real rate.
pub const TICK_LOOP_INSTRUCTIONS: u32 = 4;
/// What starts every protocol line.
pub const PREFIX: &str = "@FQP ";

/// Message kinds. Device to host: `Hello` … `Bye`; host to device: `Sync` … `Exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Device booted: `proto`, `port`, `fw`, `tests`.
    Hello,
    /// Answer to `SYNC`: `proto`, `nonce`, `port`, `fw`, `kernel`, `tests`.
    Ready,
    /// One test in a listing: `id` (`group/name`), `timeout_ms`.
    Test,
    /// End of a listing: `count`.
    Listed,
    /// A test started: `id`.
    Start,
    /// A failed check: `id`, `file`, `line`, `msg`.
    Fail,
    /// A test ended: `id`, `status` (`pass`/`fail`/`skip`), `us` (duration), `reason` (skips).
    End,
    /// A log line from a test: `msg`.
    Log,
    /// A metric measured by a test: `id`, `name`, `value`, `unit`.
    Metric,
    /// The CPU faulted: `kind`, `pc`, `lr`, `xpsr`, `cfsr`, `hfsr`, `mmfar`, `bfar`.
    Fault,
    /// The firmware panicked: `file`, `line`, `msg`.
    Panic,
    /// The device did not understand a command: `msg`.
    Err,
    /// The device is about to exit or reset: `reason`, and its count of tests `passed`,
    /// `failed` and `skipped` since boot. Best effort: it may be lost as the device goes.
    Bye,
    /// Both ways. Host: ask for the device's own count of tests since boot. Device: the
    /// answer, `passed`, `failed`, `skipped`.
    Summary,
    /// Host: start a session: `nonce`.
    Sync,
    /// Host: list the tests.
    List,
    /// Host: run one test: `id`.
    Run,
    /// Host: repeat the last `END` line (it arrived corrupt).
    Again,
    /// Host: reset the device.
    Reset,
    /// Host: end the emulated run with exit `code`.
    Exit,
    /// Host: provision a setting for the tests: `key`, `value`, `append=1` to add to it
    /// (values longer than a line are sent in pieces).
    Set,
    /// Device: a setting was stored: `key`, `len` (its length so far).
    Ok,
    /// Device: the running test asks the host to act on the lab: `id`, `action`
    /// (`restart-broker`).
    Ask,
    /// Host: answer to `ASK`: `action`, `ok` (1 done, 0 not), `msg`.
    Done,
    /// Device: the running test resets the board now and goes on after it: `id`. The host
    /// follows: it syncs again, provisions its settings again and sends `RUN` of the same
    /// test with `resumed` (how many times it rebooted).
    Reboot,
}

const KINDS: [(Kind, &str); 25] = [
    (Kind::Hello, "HELLO"),
    (Kind::Ready, "READY"),
    (Kind::Test, "TEST"),
    (Kind::Listed, "LISTED"),
    (Kind::Start, "START"),
    (Kind::Fail, "FAIL"),
    (Kind::End, "END"),
    (Kind::Log, "LOG"),
    (Kind::Metric, "METRIC"),
    (Kind::Fault, "FAULT"),
    (Kind::Panic, "PANIC"),
    (Kind::Err, "ERR"),
    (Kind::Bye, "BYE"),
    (Kind::Summary, "SUMMARY"),
    (Kind::Sync, "SYNC"),
    (Kind::List, "LIST"),
    (Kind::Run, "RUN"),
    (Kind::Again, "AGAIN"),
    (Kind::Reset, "RESET"),
    (Kind::Exit, "EXIT"),
    (Kind::Set, "SET"),
    (Kind::Ok, "OK"),
    (Kind::Ask, "ASK"),
    (Kind::Done, "DONE"),
    (Kind::Reboot, "REBOOT"),
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, s)| *s)
            .unwrap_or("?")
    }

    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
    }
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn needs_escape(b: u8) -> bool {
    !(0x21..0x7F).contains(&b) || matches!(b, b'%' | b'*' | b'=')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Builds one protocol line in a fixed buffer (no heap). Values that do not fit are cut and
/// the line is marked with `trunc=1`.
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

/// Room kept at the end of a line for the truncation mark ` trunc=1`, then ` *`, the CRC-16
/// in four hex digits and `\n` (15 bytes).
const TAIL: usize = 16;

impl<const N: usize> LineBuf<N> {
    /// Starts a line of `kind`.
    pub fn new(kind: Kind) -> Self {
        assert!(N >= 64, "protocol line buffer too small");
        let mut l = LineBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        };
        l.raw(PREFIX.as_bytes());
        l.raw(kind.as_str().as_bytes());
        l
    }

    fn raw(&mut self, b: &[u8]) -> bool {
        if self.len + b.len() + TAIL > N {
            self.truncated = true;
            return false;
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        true
    }

    /// Adds `key=value`, with `value` formatted by `Display` and escaped.
    pub fn field(mut self, key: &str, value: impl fmt::Display) -> Self {
        if self.raw(b" ") && self.raw(key.as_bytes()) && self.raw(b"=") {
            let _ = fmt::write(&mut Escaper(&mut self), format_args!("{value}"));
        }
        self
    }

    /// Finishes the line (checksum and newline) and returns its bytes.
    pub fn finish(&mut self) -> &[u8] {
        if self.truncated {
            // The room for this was kept in reserve (TAIL).
            self.truncated = false;
            let mark = b" trunc=1";
            self.buf[self.len..self.len + mark.len()].copy_from_slice(mark);
            self.len += mark.len();
        }
        self.buf[self.len] = b' ';
        self.len += 1;
        let crc = crc16(&self.buf[..self.len]);
        let tail = [
            b'*',
            HEX[(crc >> 12) as usize & 15],
            HEX[(crc >> 8) as usize & 15],
            HEX[(crc >> 4) as usize & 15],
            HEX[crc as usize & 15],
            b'\n',
        ];
        self.buf[self.len..self.len + 6].copy_from_slice(&tail);
        self.len += 6;
        &self.buf[..self.len]
    }
}

struct Escaper<'a, const N: usize>(&'a mut LineBuf<N>);

impl<const N: usize> fmt::Write for Escaper<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            let ok = if needs_escape(b) {
                self.0
                    .raw(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
            } else {
                self.0.raw(&[b])
            };
            if !ok {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// Why a line that claims to be a protocol line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The line does not end with ` *` and a four-hex-digit CRC-16.
    NoChecksum,
    /// The checksum does not match the content.
    BadChecksum { expected: u16, found: u16 },
    /// Unknown message kind.
    UnknownKind,
    /// A field is not `key=value`.
    BadField,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NoChecksum => write!(f, "no checksum"),
            FrameError::BadChecksum { expected, found } => {
                write!(
                    f,
                    "checksum {found:04X} does not match content ({expected:04X})"
                )
            }
            FrameError::UnknownKind => write!(f, "unknown message kind"),
            FrameError::BadField => write!(f, "malformed field"),
        }
    }
}

/// A checked protocol line, borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    fields: &'a str,
}

/// Finds and checks the protocol line in `line` (without its newline). `Ok(None)`: not a
/// protocol line (plain text).
pub fn parse(line: &str) -> Result<Option<Frame<'_>>, FrameError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(start) = line.rfind(PREFIX) else {
        return Ok(None);
    };
    let body = &line[start..];
    let star = body.rfind(" *").ok_or(FrameError::NoChecksum)?;
    let hex = &body[star + 2..];
    if hex.len() != 4 {
        return Err(FrameError::NoChecksum);
    }
    let found = u16::from_str_radix(hex, 16).map_err(|_| FrameError::NoChecksum)?;
    let expected = crc16(&body.as_bytes()[..star + 1]);
    if found != expected {
        return Err(FrameError::BadChecksum { expected, found });
    }
    // A line of the prefix and a checksum alone: the checksum's space is the prefix's own,
    // and there is no kind.
    let content = body
        .get(PREFIX.len()..star)
        .ok_or(FrameError::UnknownKind)?;
    let (kind, fields) = content.split_once(' ').unwrap_or((content, ""));
    let kind = Kind::parse(kind).ok_or(FrameError::UnknownKind)?;
    if fields
        .split(' ')
        .filter(|f| !f.is_empty())
        .any(|f| !f.contains('='))
    {
        return Err(FrameError::BadField);
    }
    Ok(Some(Frame { kind, fields }))
}

impl<'a> Frame<'a> {
    /// The raw (still escaped) value of `key`.
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.fields
            .split(' ')
            .filter_map(|f| f.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The fields in order, raw.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.fields.split(' ').filter_map(|f| f.split_once('='))
    }

    /// `key` decoded into `out`; returns the decoded prefix that fit.
    pub fn get_into<'b>(&self, key: &str, out: &'b mut [u8]) -> Option<&'b [u8]> {
        let raw = self.raw(key)?;
        let mut n = 0;
        for b in Unescape(raw.as_bytes()) {
            if n == out.len() {
                break;
            }
            out[n] = b;
            n += 1;
        }
        Some(&out[..n])
    }

    /// `key` parsed as a number (decimal, or hex with `0x`).
    pub fn num(&self, key: &str) -> Option<u64> {
        let v = self.raw(key)?;
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// `key` decoded to an owned string (lossy for invalid UTF-8).
    #[cfg(feature = "alloc")]
    pub fn get(&self, key: &str) -> Option<alloc::string::String> {
        let raw = self.raw(key)?;
        let bytes: alloc::vec::Vec<u8> = Unescape(raw.as_bytes()).collect();
        Some(alloc::string::String::from_utf8_lossy(&bytes).into_owned())
    }
}

struct Unescape<'a>(&'a [u8]);

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        if b == b'%' && rest.len() >= 2 {
            let hex = core::str::from_utf8(&rest[..2]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                self.0 = &rest[2..];
                return Some(v);
            }
        }
        self.0 = rest;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn line(kind: Kind, fields: &[(&str, &str)]) -> String {
        let mut l = LineBuf::<256>::new(kind);
        for (k, v) in fields {
            l = l.field(k, v);
        }
        String::from_utf8(l.finish().to_vec()).unwrap()
    }

    #[test]
    fn crc_matches_reference_value() {
        // CRC-16/CCITT-FALSE check value.
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn round_trip_with_escapes() {
        let s = line(
            Kind::Fail,
            &[("id", "queue/send"), ("msg", "left=1 * right=2 100% ünï")],
        );
        assert!(s.starts_with("@FQP FAIL id=queue/send msg=left%3D1%20%2A%20right%3D2%20100%25%20"));
        assert!(s.ends_with('\n'));
        let f = parse(&s).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Fail);
        let mut buf = [0u8; 64];
        assert_eq!(
            f.get_into("msg", &mut buf).unwrap(),
            "left=1 * right=2 100% ünï".as_bytes()
        );
        assert_eq!(f.raw("id"), Some("queue/send"));
        assert_eq!(f.raw("nope"), None);
    }

    #[test]
    fn noise_before_the_prefix_is_ignored() {
        let s = line(
            Kind::End,
            &[("id", "a/b"), ("status", "pass"), ("us", "1234")],
        );
        let noisy = std::format!("\x00\x7f garbage{s}");
        let f = parse(&noisy).unwrap().unwrap();
        assert_eq!(f.num("us"), Some(1234));
    }

    #[test]
    fn plain_text_is_not_a_frame() {
        assert_eq!(parse("hello world"), Ok(None));
    }

    #[test]
    fn any_single_corruption_is_detected() {
        let s = line(
            Kind::End,
            &[("id", "sem/give"), ("status", "pass"), ("us", "77")],
        );
        let s = s.trim_end();
        for i in PREFIX.len()..s.len() {
            let mut b = s.as_bytes().to_vec();
            b[i] ^= 0x04;
            let Ok(t) = String::from_utf8(b) else {
                continue;
            };
            assert!(
                !matches!(parse(&t), Ok(Some(_))),
                "corruption at byte {i} accepted: {t}"
            );
        }
    }

    #[test]
    fn long_values_are_truncated_and_marked() {
        let long = "x".repeat(500);
        let s = line(Kind::Log, &[("msg", &long)]);
        assert!(s.len() <= 256);
        let f = parse(&s).unwrap().unwrap();
        assert_eq!(f.raw("trunc"), Some("1"));
    }

    #[test]
    fn numbers_decimal_and_hex() {
        let s = line(Kind::Fault, &[("pc", "0x000012AB"), ("line", "42")]);
        let f = parse(&s).unwrap().unwrap();
        assert_eq!(f.num("pc"), Some(0x12AB));
        assert_eq!(f.num("line"), Some(42));
    }

    #[test]
    fn kinds_round_trip() {
        for (k, n) in KINDS {
            assert_eq!(Kind::parse(n), Some(k));
            assert_eq!(k.as_str(), n);
        }
    }

    #[test]
    fn a_checksummed_line_with_nothing_after_the_prefix_is_refused() {
        // The prefix and its right checksum: the checksum's space is the prefix's own.
        let crc = crc16(b"@FQP ");
        let line = std::format!("@FQP *{crc:04X}");
        assert!(parse(&line).is_err());
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever a console delivers, parsing it never panics, and what it accepts can be
        /// read field by field.
        #[test]
        fn fuzz_parse(input in fqp_fuzzing::inputs(seeds(), 300)) {
            let text = String::from_utf8_lossy(&input);
            if let Ok(Some(f)) = parse(&text) {
                for (k, _) in f.fields() {
                    let _ = (f.raw(k), f.num(k));
                    let mut out = [0u8; 8];
                    let _ = f.get_into(k, &mut out);
                }
            }
        }

        /// Any value the runner writes reads back as written (or cut and marked).
        #[test]
        fn fuzz_round_trip(kind in 0..KINDS.len(), key in "[a-z_]{1,12}", value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let value = String::from_utf8_lossy(&value).into_owned();
            let mut l = LineBuf::<256>::new(KINDS[kind].0);
            l = l.field(&key, &value);
            let bytes = l.finish().to_vec();
            let text = String::from_utf8(bytes).unwrap();
            let f = parse(text.trim_end()).unwrap().unwrap();
            proptest::prop_assert_eq!(f.kind, KINDS[kind].0);
            let mut buf = [0u8; 1024];
            let got = f.get_into(&key, &mut buf).unwrap();
            if f.raw("trunc").is_none() {
                proptest::prop_assert_eq!(got, value.as_bytes());
            } else {
                proptest::prop_assert!(value.as_bytes().starts_with(got));
            }
        }
    }

    /// Valid lines of every kind: the corpus the fuzzer damages.
    fn seeds() -> std::vec::Vec<std::vec::Vec<u8>> {
        KINDS
            .iter()
            .map(|(k, _)| {
                line(
                    *k,
                    &[
                        ("id", "queue/fifo"),
                        ("status", "pass"),
                        ("msg", "a b%c=d"),
                        ("us", "0x1F"),
                    ],
                )
                .into_bytes()
            })
            .collect()
    }
}
