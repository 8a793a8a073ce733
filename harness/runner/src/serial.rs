//! The console link: a serial port (a board's, or QEMU's pseudo-terminal) opened with the
//! `serialport` crate, read by a thread that saves every raw byte to the transcript and hands
//! complete lines to the session.

use crate::manifest::{SerialSection, UsbMatch};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A device's console could not be found, opened or reached.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "cannot open console {name}: {why}\n  fix: check serial.path in the manifest, and that \
         no other program holds the port"
    )]
    Open { name: String, why: String },
    #[error(
        "cannot share console {name}: {why}\n  fix: check that no other program holds the port"
    )]
    Share { name: String, why: String },
    #[error("console {addr}: cannot resolve: {source}\n  fix: check serial.tcp (host:port)")]
    Resolve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot connect to the console at {addr} within {:.1} s\n  fix: check serial.tcp and \
         that the terminal server (or board) is up",
        .within.as_secs_f64()
    )]
    Connect { addr: String, within: Duration },
    #[error("console {addr}: {source}\n  fix: check that the terminal server (or board) at serial.tcp is up")]
    Socket {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no serial port is {wanted} (ports on this machine: {ports})\n  fix: plug the board in, \
         or correct serial.usb; `fqp devices` lists the ports with their ids"
    )]
    NoUsbPort { wanted: String, ports: String },
    #[error(
        "{count} serial ports are {wanted}: {paths}\n  fix: add the board's USB serial number \
         (serial.usb.serial, or devices[].usb_serial)"
    )]
    SeveralUsbPorts {
        wanted: String,
        count: usize,
        paths: String,
    },
    #[error(
        "the board has no console configured\n  fix: set serial.path, serial.usb or serial.tcp \
         in port.toml (or devices[].serial, devices[].tcp)"
    )]
    NotConfigured,
}

/// What the session reads from a link.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    Line(String),
    /// Nothing before the deadline.
    Timeout,
    /// The link is gone (device unplugged, emulator exited).
    Closed,
}

/// A bidirectional line link to the device.
pub trait Link {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn recv(&mut self, deadline: Instant) -> Recv;
}

/// The raw transcript of everything the device sent, shared across device restarts.
pub type Transcript = Arc<Mutex<std::fs::File>>;

/// Opens (creating or appending) a transcript file.
pub fn transcript(path: &Path) -> std::io::Result<Transcript> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Arc::new(Mutex::new(f)))
}

/// Notes a harness event in the transcript, on a line of its own.
pub fn mark(t: &Transcript, what: &str) {
    if let Ok(mut f) = t.lock() {
        let _ = writeln!(f, "\n--- fqp: {what} ---");
    }
}

pub struct SerialLink {
    port: Box<dyn serialport::SerialPort>,
    lines: Receiver<Option<String>>,
    stop: Arc<AtomicBool>,
    closed: bool,
}

impl SerialLink {
    /// Opens the console at `path` with the manifest's line settings (validated there).
    pub fn open(
        path: &Path,
        settings: &SerialSection,
        transcript: Transcript,
    ) -> Result<SerialLink, ConsoleError> {
        use serialport::{DataBits, FlowControl, Parity, StopBits};
        let name = path.to_string_lossy().to_string();
        let data_bits = match settings.data_bits.unwrap_or(8) {
            5 => DataBits::Five,
            6 => DataBits::Six,
            7 => DataBits::Seven,
            _ => DataBits::Eight,
        };
        let parity = match settings.parity.as_deref() {
            Some("even") => Parity::Even,
            Some("odd") => Parity::Odd,
            _ => Parity::None,
        };
        let stop_bits = match settings.stop_bits {
            Some(2) => StopBits::Two,
            _ => StopBits::One,
        };
        let flow = match settings.flow_control.as_deref() {
            Some("software") => FlowControl::Software,
            Some("hardware") => FlowControl::Hardware,
            _ => FlowControl::None,
        };
        let port = serialport::new(&name, settings.baud.unwrap_or(115_200))
            .data_bits(data_bits)
            .parity(parity)
            .stop_bits(stop_bits)
            .flow_control(flow)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| ConsoleError::Open {
                name: name.clone(),
                why: e.to_string(),
            })?;
        let mut reader = port.try_clone().map_err(|e| ConsoleError::Share {
            name: name.clone(),
            why: e.to_string(),
        })?;
        let (rx, stop) = read_lines(move |buf| reader.read(buf), transcript);
        Ok(SerialLink {
            port,
            lines: rx,
            stop,
            closed: false,
        })
    }
}

/// Reads raw bytes with `read` on a thread of its own, saving each to the transcript and
/// sending complete lines (or 64 KiB pieces of a line that never ends); `None` when the link
/// is gone.
fn read_lines(
    mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize> + Send + 'static,
    transcript: Transcript,
) -> (Receiver<Option<String>>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut pending: Vec<u8> = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            match read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    if let Ok(mut f) = transcript.lock() {
                        let _ = f.write_all(&buf[..n]);
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        let text = String::from_utf8_lossy(&line)
                            .trim_end_matches(['\r', '\n'])
                            .to_string();
                        if tx.send(Some(text)).is_err() {
                            return;
                        }
                    }
                    if pending.len() > 64 * 1024 {
                        // A device printing without newlines: hand it over in pieces.
                        let text = String::from_utf8_lossy(&pending).to_string();
                        pending.clear();
                        let _ = tx.send(Some(text));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    (rx, stop)
}

/// Receives the next line before `deadline`.
fn recv_line(lines: &Receiver<Option<String>>, closed: &mut bool, deadline: Instant) -> Recv {
    if *closed {
        return Recv::Closed;
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    match lines.recv_timeout(wait) {
        Ok(Some(l)) => Recv::Line(l),
        Ok(None) | Err(RecvTimeoutError::Disconnected) => {
            *closed = true;
            Recv::Closed
        }
        Err(RecvTimeoutError::Timeout) => Recv::Timeout,
    }
}

impl Link for SerialLink {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn recv(&mut self, deadline: Instant) -> Recv {
        recv_line(&self.lines, &mut self.closed, deadline)
    }
}

impl Drop for SerialLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A console over TCP: a terminal server in front of a board, a board's network console, or
/// an emulator's `-serial tcp:`.
pub struct TcpLink {
    stream: std::net::TcpStream,
    lines: Receiver<Option<String>>,
    stop: Arc<AtomicBool>,
    closed: bool,
}

impl TcpLink {
    /// Connects to `addr` (`host:port`), trying until `within` has passed (the console may
    /// come up a little after the board).
    pub fn connect(
        addr: &str,
        within: Duration,
        transcript: Transcript,
    ) -> Result<TcpLink, ConsoleError> {
        use std::net::ToSocketAddrs;
        let end = Instant::now() + within;
        let resolved: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|source| ConsoleError::Resolve {
                addr: addr.to_string(),
                source,
            })?
            .collect();
        let stream = loop {
            let tried = resolved
                .iter()
                .map(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(500)))
                .find_map(Result::ok);
            match tried {
                Some(s) => break s,
                None if Instant::now() >= end => {
                    return Err(ConsoleError::Connect {
                        addr: addr.to_string(),
                        within,
                    })
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let _ = stream.set_nodelay(true);
        let reader = stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .and_then(|()| stream.try_clone())
            .map_err(|source| ConsoleError::Socket {
                addr: addr.to_string(),
                source,
            })?;
        let mut reader = reader;
        let (lines, stop) = read_lines(
            move |buf| match reader.read(buf) {
                // A closed connection is the link going away, not "nothing yet".
                Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                other => other,
            },
            transcript,
        );
        Ok(TcpLink {
            stream,
            lines,
            stop,
            closed: false,
        })
    }
}

impl Link for TcpLink {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn recv(&mut self, deadline: Instant) -> Recv {
        recv_line(&self.lines, &mut self.closed, deadline)
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Link for Box<dyn Link + Send> {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        (**self).send(bytes)
    }

    fn recv(&mut self, deadline: Instant) -> Recv {
        (**self).recv(deadline)
    }
}

/// A serial port as the OS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub path: String,
    /// USB vendor id, product id, serial number, product name (USB ports only).
    pub usb: Option<(u16, u16, Option<String>, Option<String>)>,
}

/// The serial ports of this machine.
pub fn list_ports() -> Vec<PortInfo> {
    serialport::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| PortInfo {
            path: p.port_name,
            usb: match p.port_type {
                serialport::SerialPortType::UsbPort(u) => {
                    Some((u.vid, u.pid, u.serial_number, u.product))
                }
                _ => None,
            },
        })
        .collect()
}

impl std::fmt::Display for PortInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some((vid, pid, serial, product)) = &self.usb {
            write!(f, " (USB {vid:04x}:{pid:04x}")?;
            if let Some(s) = serial {
                write!(f, " serial {s}")?;
            }
            if let Some(p) = product {
                write!(f, ", {p}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// The console among `ports` that `usb` (with this board's serial number, if given) names.
pub fn find_usb_port(
    usb: &UsbMatch,
    serial: Option<&str>,
    ports: &[PortInfo],
) -> Result<String, ConsoleError> {
    // Validated by the manifest.
    let vid = u16::from_str_radix(&usb.vid, 16).unwrap_or(0);
    let pid = u16::from_str_radix(&usb.pid, 16).unwrap_or(0);
    let serial = serial.or(usb.serial.as_deref());
    let found: Vec<&PortInfo> = ports
        .iter()
        .filter(|p| {
            p.usb.as_ref().is_some_and(|(v, i, s, _)| {
                *v == vid && *i == pid && serial.is_none_or(|want| s.as_deref() == Some(want))
            })
        })
        .collect();
    let wanted = format!(
        "USB {vid:04x}:{pid:04x}{}",
        serial.map(|s| format!(" serial {s}")).unwrap_or_default()
    );
    let listing = || {
        if ports.is_empty() {
            "none".to_string()
        } else {
            ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    match found.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => Err(ConsoleError::NoUsbPort {
            wanted,
            ports: listing(),
        }),
        many => Err(ConsoleError::SeveralUsbPorts {
            wanted,
            count: many.len(),
            paths: many
                .iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(path: &str, vid: u16, pid: u16, serial: &str) -> PortInfo {
        PortInfo {
            path: path.into(),
            usb: Some((vid, pid, Some(serial.into()), Some("STLink".into()))),
        }
    }

    #[test]
    fn usb_console_is_found_by_ids_and_serial_number() {
        let ports = vec![
            PortInfo {
                path: "/dev/ttyS0".into(),
                usb: None,
            },
            usb("/dev/ttyACM0", 0x0483, 0x374b, "AAA"),
            usb("/dev/ttyACM1", 0x0483, 0x374b, "BBB"),
            usb("/dev/ttyUSB0", 0x10c4, 0xea60, "CCC"),
        ];
        let m = |vid: &str, pid: &str, serial: Option<&str>| UsbMatch {
            vid: vid.into(),
            pid: pid.into(),
            serial: serial.map(str::to_string),
        };
        assert_eq!(
            find_usb_port(&m("10c4", "EA60", None), None, &ports).unwrap(),
            "/dev/ttyUSB0"
        );
        assert_eq!(
            find_usb_port(&m("0483", "374b", Some("BBB")), None, &ports).unwrap(),
            "/dev/ttyACM1"
        );
        // A pool entry's serial number picks its board.
        assert_eq!(
            find_usb_port(&m("0483", "374b", None), Some("AAA"), &ports).unwrap(),
            "/dev/ttyACM0"
        );
        let e = find_usb_port(&m("0483", "374b", None), None, &ports)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 serial ports are USB 0483:374b") && e.contains("usb_serial"),
            "{e}"
        );
        let e = find_usb_port(&m("1366", "0105", None), None, &ports)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no serial port is USB 1366:0105")
                && e.contains("/dev/ttyACM0 (USB 0483:374b serial AAA, STLink)"),
            "{e}"
        );
    }

    #[test]
    fn tcp_console_carries_lines_both_ways_and_reports_closing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"hello\r\npartial").unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b" line\n").unwrap();
            buf
        });
        let log = std::env::temp_dir().join(format!("fqp-tcp-{}.log", std::process::id()));
        let mut link =
            TcpLink::connect(&addr, Duration::from_secs(2), transcript(&log).unwrap()).unwrap();
        let soon = || Instant::now() + Duration::from_secs(2);
        assert_eq!(link.recv(soon()), Recv::Line("hello".into()));
        link.send(b"ping\n").unwrap();
        assert_eq!(link.recv(soon()), Recv::Line("partial line".into()));
        assert_eq!(&server.join().unwrap(), b"ping\n");
        assert_eq!(link.recv(soon()), Recv::Closed);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "hello\r\npartial line\n"
        );
        std::fs::remove_file(&log).unwrap();
        // Nobody listening: a clear error after the wait.
        let e = TcpLink::connect(
            "127.0.0.1:9",
            Duration::from_millis(300),
            transcript(&std::env::temp_dir().join("fqp-tcp-none.log")).unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("cannot connect to the console at 127.0.0.1:9"),
            "{e}"
        );
    }
}
