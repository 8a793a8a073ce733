//! The console link: a serial port (a board's, or QEMU's pseudo-terminal) opened with the
//! `serialport` crate, read by a thread that saves every raw byte to the transcript and hands
//! complete lines to the session.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Opens the console at `path`.
    pub fn open(path: &Path, baud: u32, transcript: Transcript) -> Result<SerialLink, String> {
        let name = path.to_string_lossy().to_string();
        let port = serialport::new(&name, baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| format!("cannot open console {name}: {e}\n  fix: check serial.path in the manifest, and that no other program holds the port"))?;
        let mut reader = port
            .try_clone()
            .map_err(|e| format!("cannot share console {name}: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut pending: Vec<u8> = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
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
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                }
            }
        });
        Ok(SerialLink {
            port,
            lines: rx,
            stop,
            closed: false,
        })
    }
}

impl Link for SerialLink {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn recv(&mut self, deadline: Instant) -> Recv {
        if self.closed {
            return Recv::Closed;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(Some(l)) => Recv::Line(l),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Recv::Closed
            }
            Err(RecvTimeoutError::Timeout) => Recv::Timeout,
        }
    }
}

impl Drop for SerialLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
