//! # fqp-transport: a byte stream with timeouts
//!
//! The boundary between fqp's connectivity libraries (MQTT, TLS, …) and whatever carries their
//! bytes. fqp's own TCP/IP (`fqp-net`) implements it; a vendor whose chip has its own network
//! stack or an offload module (Wi-Fi or cellular with an AT interface) implements it instead,
//! and the libraries above do not change. TLS is itself a `Transport` over a `Transport`.
//!
//! Every call takes a timeout in milliseconds; `0` means "do not wait".

#![no_std]

#[cfg(feature = "std")]
extern crate std;

/// What went wrong on a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Nothing happened within the timeout.
    Timeout,
    /// The peer closed the connection (or reset it).
    Closed,
    /// The peer refused the connection.
    Refused,
    /// The name could not be resolved.
    NameNotFound,
    /// The network is not up (no link, no address).
    NoNetwork,
    /// No resource (socket, buffer) was free.
    Exhausted,
    /// A security layer refused the peer or the data (TLS alert, bad certificate).
    Security,
    /// The arguments were not usable (address, port).
    Invalid,
}

/// A connected, reliable, ordered byte stream.
pub trait Transport {
    /// Sends some of `data`, waiting up to `timeout_ms` for room; how many bytes were taken
    /// (at least one unless `data` is empty).
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, Error>;

    /// Receives into `buf`, waiting up to `timeout_ms` for at least one byte; `Ok(0)` when the
    /// peer has closed its side.
    fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, Error>;

    /// Sends all of `data`, waiting up to `timeout_ms` for each piece to be taken.
    fn send_all(&mut self, mut data: &[u8], timeout_ms: u32) -> Result<(), Error> {
        while !data.is_empty() {
            let n = self.send(data, timeout_ms)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Fills `buf` exactly, waiting up to `timeout_ms` for each piece.
    fn recv_exact(&mut self, mut buf: &mut [u8], timeout_ms: u32) -> Result<(), Error> {
        while !buf.is_empty() {
            let n = self.recv(buf, timeout_ms)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            buf = &mut buf[n..];
        }
        Ok(())
    }
}

/// A host's TCP socket is a transport: for host tools and tests that drive the device
/// libraries against the lab's services (feature `std`).
#[cfg(feature = "std")]
impl Transport for std::net::TcpStream {
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, Error> {
        use std::io::Write;
        let wait = std::time::Duration::from_millis(u64::from(timeout_ms.max(1)));
        let _ = self.set_write_timeout(Some(wait));
        self.write(data).map_err(|e| io_error(&e))
    }

    fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, Error> {
        use std::io::Read;
        let wait = std::time::Duration::from_millis(u64::from(timeout_ms.max(1)));
        let _ = self.set_read_timeout(Some(wait));
        self.read(buf).map_err(|e| io_error(&e))
    }
}

#[cfg(feature = "std")]
fn io_error(e: &std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => Error::Timeout,
        ConnectionRefused => Error::Refused,
        _ => Error::Closed,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A transport that moves at most 3 bytes per call.
    struct Trickle {
        input: Vec<u8>,
        output: Vec<u8>,
    }

    impl Transport for Trickle {
        fn send(&mut self, data: &[u8], _: u32) -> Result<usize, Error> {
            let n = data.len().min(3);
            self.output.extend_from_slice(&data[..n]);
            Ok(n)
        }

        fn recv(&mut self, buf: &mut [u8], _: u32) -> Result<usize, Error> {
            let n = buf.len().min(3).min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn send_all_and_recv_exact_loop_over_short_transfers() {
        let mut t = Trickle {
            input: b"0123456789".to_vec(),
            output: Vec::new(),
        };
        t.send_all(b"hello world", 10).unwrap();
        assert_eq!(t.output, b"hello world");
        let mut buf = [0u8; 7];
        t.recv_exact(&mut buf, 10).unwrap();
        assert_eq!(&buf, b"0123456");
        let mut more = [0u8; 5];
        assert_eq!(t.recv_exact(&mut more, 10), Err(Error::Closed));
    }
}
