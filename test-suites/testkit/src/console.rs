//! The console as the test runner uses it: whole protocol lines out (one writer at a time, so
//! lines from several tasks never interleave mid-line), bytes in from the receive interrupt.

use crate::runner::{board, current_test};
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
pub const LINE: usize = 320;

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
    let mut n = 0;
    loop {
        let Ok(b) = RX.receive(Timeout::FOREVER) else {
            continue;
        };
        match b {
            b'\n' | b'\r' if n > 0 => return &buf[..n],
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
    Id(current_test())
}

/// A `LOG` line for the running test.
pub fn log(args: fmt::Arguments<'_>) {
    send_line(
        LineBuf::new(Kind::Log)
            .field("id", test_id())
            .field("msg", args),
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
