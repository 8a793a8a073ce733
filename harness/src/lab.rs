//! The lab's network services, run by the harness for the network tests: a TCP echo server
//! and a server that says `bye` and closes. Their addresses, as the device reaches this
//! machine (`network.host` in the manifest; QEMU's user network: 10.0.2.2), are provisioned
//! on the device as settings `echo` and `closer` after every boot.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Services of one run (they live until the harness exits).
pub struct Lab {
    /// Settings to provision: `(key, value)`.
    pub settings: Vec<(String, String)>,
}

fn serve(listener: TcpListener, each: fn(TcpStream)) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || each(conn));
        }
    });
}

fn echo(mut c: TcpStream) {
    let _ = c.set_nodelay(true);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn closer(mut c: TcpStream) {
    let _ = c.write_all(b"bye\n");
    let _ = c.shutdown(std::net::Shutdown::Both);
}

impl Lab {
    /// Starts the services, listening where a device at `host` can reach them (loopback for
    /// an emulator's user network, every interface for boards).
    pub fn start(host: &str, emulated: bool) -> Result<Lab, String> {
        let bind = if emulated { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let mut settings = Vec::new();
        for (key, each) in [("echo", echo as fn(TcpStream)), ("closer", closer)] {
            let l = TcpListener::bind(bind)
                .map_err(|e| format!("cannot start the lab's {key} server: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            serve(l, each);
            settings.push((key.to_string(), format!("{host}:{port}")));
        }
        Ok(Lab { settings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_closer_behave() {
        let lab = Lab::start("127.0.0.1", true).unwrap();
        let addr = |k: &str| {
            lab.settings
                .iter()
                .find(|(key, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
        let mut c = TcpStream::connect(addr("echo")).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let mut c = TcpStream::connect(addr("closer")).unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"bye\n");
    }
}
