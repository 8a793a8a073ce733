//! The plain services: TCP echo, a server that says `bye` and closes, the lab's name server,
//! and TLS echo servers (with the certificates of the TLS tests).

use crate::{Endings, LabError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A TLS 1.3 echo server presenting `server` (its certificate DER, as is — a malformed one
/// too — and key), requiring client certificates from `client_root` when given; returns the
/// port. How each connection ended goes to `endings`.
pub(crate) fn tls_echo(
    bind: &str,
    server: &crate::pki::Pair,
    client_root: Option<&[u8]>,
    endings: Endings,
) -> Result<u16, LabError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]);
    let builder = match client_root {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(root.to_vec()))
                .map_err(|e| LabError::Tls(format!("root CA: {e}")))?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
                    .build()
                    .map_err(|e| LabError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from(server.der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone())),
        )
        .map_err(|e| LabError::Tls(e.to_string()))?;
    let config = std::sync::Arc::new(config);
    let l = TcpListener::bind(bind).map_err(LabError::start("a lab TLS server"))?;
    let port = l
        .local_addr()
        .map_err(LabError::start("a lab TLS server"))?
        .port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (config, endings) = (config.clone(), endings.clone());
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, c);
                let mut buf = [0u8; 16 * 1024];
                let ending = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break "closed".to_string(),
                        Ok(n) => {
                            if let Err(e) = s.write_all(&buf[..n]) {
                                break format!("refused: {e}");
                            }
                        }
                        Err(e) => break format!("refused: {e}"),
                    }
                };
                if let Ok(mut e) = endings.lock() {
                    e.push(ending);
                }
            });
        }
    });
    Ok(port)
}

/// A DNS server (UDP) answering the A query for [`crate::pki::BROKER_NAME`] with `address`
/// and NXDOMAIN for every other name; returns its port.
pub(crate) fn name_server(bind: &str, address: std::net::Ipv4Addr) -> Result<u16, LabError> {
    let start = || LabError::start("the lab's name server");
    let sock = std::net::UdpSocket::bind(bind).map_err(start())?;
    let port = sock.local_addr().map_err(start())?.port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n], address) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    Ok(port)
}

/// The reply to DNS query `q`, or `None` for what is not a standard query of one question.
pub(crate) fn dns_reply(q: &[u8], address: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0xf8 != 0 || q[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    let mut name = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        name.push(String::from_utf8_lossy(q.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    let question = q.get(12..at + 5)?;
    let (kind, class) = (&q[at + 1..at + 3], &q[at + 3..at + 5]);
    let known = name.join(".") == crate::pki::BROKER_NAME;
    let answer = known && kind == [0, 1] && class == [0, 1];
    let mut r = Vec::with_capacity(question.len() + 28);
    r.extend_from_slice(&q[..2]);
    // QR, RD as asked, RA; NXDOMAIN for names the lab does not have.
    r.extend_from_slice(&[0x80 | (q[2] & 0x01), 0x80 | if known { 0 } else { 3 }]);
    r.extend_from_slice(&[0, 1, 0, answer as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&address.octets());
    }
    Some(r)
}

pub(crate) fn serve(listener: TcpListener, each: fn(TcpStream)) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || each(conn));
        }
    });
}

pub(crate) fn echo(mut c: TcpStream) {
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

/// Answers the first thing it receives with `bye` and closes. (Waiting for the client first
/// keeps the close after the connection is fully set up: closing at once races an emulator's
/// user network, which may still be completing the guest's handshake.)
pub(crate) fn closer(mut c: TcpStream) {
    let mut buf = [0u8; 256];
    if matches!(c.read(&mut buf), Ok(n) if n > 0) {
        let _ = c.write_all(b"bye\n");
    }
    let _ = c.shutdown(std::net::Shutdown::Both);
}

/// A port nothing listens on now, on `ip` (for `what`, named in the error).
pub(crate) fn free_port(ip: &str, what: &str) -> Result<u16, LabError> {
    TcpListener::bind(format!("{ip}:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(LabError::start(format!("{what} (no free port on {ip})")))
}

/// Waits up to 5 s for `what` to accept connections on `port` of this machine; `gone` says
/// why, if the server ended meanwhile.
pub(crate) fn wait_listening(
    port: u16,
    what: &str,
    mut gone: impl FnMut() -> Option<LabError>,
) -> Result<(), LabError> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(why) = gone() {
            return Err(why);
        }
        if std::time::Instant::now() > end {
            return Err(LabError::Broker {
                problem: format!("{what} did not listen on port {port} within 5 s"),
                fix: "the machine may be overloaded, or something blocks connections to 127.0.0.1: try again, or look for a firewall".into(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
