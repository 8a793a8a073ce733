//! The console as the test runner uses it: whole protocol lines out (one writer at a time, so
//! lines from several tasks never interleave mid-line), bytes in from the receive interrupt.

use crate::board::board;
use crate::running;
use core::fmt;
use fqp_kernel::arch::{Active, Port};
use fqp_kernel::mutex::Mutex;
use fqp_kernel::queue::Queue;
use fqp_kernel::Timeout;
use fqp_protocol::{Kind, LineBuf};

/// Bytes received and not yet read by the runner.
static RX: Queue<u8, 256> = Queue::new();
static TX_LOCK: Mutex<()> = Mutex::new(());

/// Longest protocol line built on the device.
pub const LINE: usize = 512;

/// Called by the port's UART receive interrupt for each byte. A byte that finds the buffer
/// full is dropped (the host's checksums catch the damage and it retries).
pub fn rx_byte(b: u8) {
    let _ = RX.try_send(b);
}

/// Writes one complete line. From a task, lines are serialised; elsewhere (interrupts, before
/// the scheduler, faults) they go straight out.
pub fn send(bytes: &[u8]) {
    if fqp_kernel::is_running() && !Active::in_isr() {
        let _held = TX_LOCK.lock();
        board().write(bytes);
    } else {
        board().write(bytes);
    }
}

/// Sends a protocol line.
pub fn send_line(mut line: LineBuf<LINE>) {
    send(line.finish());
}

/// Reads one line (without its end) into `buf`; overlong lines are cut.
pub(crate) fn read_line(buf: &mut [u8]) -> &[u8] {
    loop {
        if let Some(n) = read_line_until(buf, None) {
            return &buf[..n];
        }
    }
}

/// Reads one line into `buf` until tick `deadline` (none: forever); its length.
pub(crate) fn read_line_until(buf: &mut [u8], deadline: Option<u32>) -> Option<usize> {
    let mut n = 0;
    loop {
        let timeout = match deadline {
            None => Timeout::FOREVER,
            Some(end) => {
                let left = end.wrapping_sub(fqp_kernel::time::now()) as i32;
                if left <= 0 {
                    return None;
                }
                Timeout::ticks(left as u32)
            }
        };
        let Ok(b) = RX.receive(timeout) else {
            if deadline.is_some() {
                return None;
            }
            continue;
        };
        match b {
            b'\n' | b'\r' if n > 0 => return Some(n),
            b'\n' | b'\r' => {}
            _ if n < buf.len() => {
                buf[n] = b;
                n += 1;
            }
            _ => {}
        }
    }
}

fn test_id() -> impl fmt::Display {
    struct Id(Option<(&'static str, &'static str)>);
    impl fmt::Display for Id {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some((g, t)) => write!(f, "{g}/{t}"),
                None => f.write_str("-"),
            }
        }
    }
    Id(running::current())
}

/// A `LOG` line for the running test.
pub fn log(args: fmt::Arguments<'_>) {
    send_line(
        LineBuf::new(Kind::Log)
            .field("id", test_id())
            .field("msg", args),
    );
}

/// Asks the host to do `action` (with `fields`) for the running test (`ASK`), and waits up
/// to `timeout_ms` for its `DONE`: `Ok` when it was done, else the host's reason.
pub fn ask(
    action: &str,
    fields: &[(&str, &str)],
    timeout_ms: u32,
) -> Result<(), alloc::string::String> {
    let mut line = LineBuf::new(Kind::Ask)
        .field("id", test_id())
        .field("action", action);
    for (k, v) in fields {
        line = line.field(k, v);
    }
    send_line(line);
    let end = fqp_kernel::time::now().wrapping_add(fqp_kernel::time::ms_to_ticks(timeout_ms));
    let mut line = [0u8; 256];
    loop {
        let Some(n) = read_line_until(&mut line, Some(end)) else {
            return Err(alloc::format!(
                "no answer from the host within {timeout_ms} ms"
            ));
        };
        let Ok(text) = core::str::from_utf8(&line[..n]) else {
            continue;
        };
        if let Ok(Some(f)) = fqp_protocol::parse(text) {
            // The host may answer with settings first.
            if f.kind == Kind::Set {
                send_line(crate::runner::on_set(&f));
                continue;
            }
            if f.kind == Kind::Done && f.raw("action") == Some(action) {
                return if f.num("ok") == Some(1) {
                    Ok(())
                } else {
                    let mut msg = [0u8; 160];
                    let msg = f.get_into("msg", &mut msg).unwrap_or(&[]);
                    Err(alloc::string::String::from_utf8_lossy(msg).into_owned())
                };
            }
        }
    }
}

/// Tells the host the running test reboots the device and goes on after it (`REBOOT`), with
/// the device time it ran on this boot.
pub fn reboot() {
    send_line(
        LineBuf::new(Kind::Reboot)
            .field("id", test_id())
            .field("us", crate::running::elapsed_us()),
    );
}

/// A `METRIC` line for the running test.
pub fn metric(name: &str, value: impl fmt::Display, unit: &str) {
    send_line(
        LineBuf::new(Kind::Metric)
            .field("id", test_id())
            .field("name", name)
            .field("value", value)
            .field("unit", unit),
    );
}
