//! The discovery endpoint: HTTPS with client certificates required (from the CAs given),
//! one request per connection, `GET /greengrass/discover/thing/<thing>` answered with the
//! thing's groups (200), 404 when it is in none, 403 when the client's certificate is not the
//! thing's; anything else 404 or 405.

use super::Greengrass;
use crate::endpoint::{EndpointError, Tls};
use crate::service::Cloud;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head taken.
const MAX_HEAD: usize = 8 * 1024;

/// A running discovery endpoint; dropping it stops it.
pub struct Discovery {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Discovery {
    /// Listens on `bind` (port 0: any free port).
    pub fn start(
        cloud: Arc<Cloud>,
        bind: SocketAddr,
        tls: &Tls,
    ) -> Result<Discovery, EndpointError> {
        let config = Arc::new(crate::endpoint::server_config(tls)?);
        let listen = |e: std::io::Error| EndpointError::Listen {
            addr: bind,
            why: e.to_string(),
        };
        let l = TcpListener::bind(bind).map_err(listen)?;
        l.set_nonblocking(true).map_err(listen)?;
        let addr = l.local_addr().map_err(listen)?;
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        std::thread::Builder::new()
            .name("fqp-discovery".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let (cloud, config) = (cloud.clone(), config.clone());
                            std::thread::spawn(move || serve(c, &cloud, config));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .map_err(|e| EndpointError::Runtime(e.to_string()))?;
        Ok(Discovery { addr, stop })
    }
}

/// Serves one connection: one request, one answer.
fn serve(c: TcpStream, cloud: &Cloud, config: Arc<rustls::ServerConfig>) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut s = rustls::StreamOwned::new(conn, c);
    let Some(head) = read_head(&mut s) else {
        return;
    };
    let fingerprint = s
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| crate::registry::fingerprint(der));
    let (status, body) = answer(cloud, &head, fingerprint.as_deref());
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(response.as_bytes());
    s.conn.send_close_notify();
    let _ = s.flush();
}

/// The request's head (up to the blank line), if one came.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// The status and JSON body for the request `head` from the holder of the certificate whose
/// SHA-256 is `fingerprint`.
fn answer(cloud: &Cloud, head: &str, fingerprint: Option<&str>) -> (u16, String) {
    let error =
        |status: u16, message: &str| (status, serde_json::json!({"message": message}).to_string());
    let request = head.lines().next().unwrap_or("");
    let mut parts = request.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(thing) = path.strip_prefix("/greengrass/discover/thing/") else {
        return error(404, "no such resource");
    };
    if method != "GET" {
        return error(405, "discovery takes GET");
    }
    let allowed = fingerprint.is_some_and(|f| {
        cloud
            .registry()
            .things_with_certificate(f)
            .is_ok_and(|things| things.iter().any(|t| t == thing))
    });
    if !allowed {
        return error(403, "the client certificate is not this thing's");
    }
    match Greengrass::new(cloud.store()).discover(thing) {
        Ok(Ok(doc)) => (200, doc.to_string()),
        Ok(Err(super::NotFound(why))) => error(404, &why),
        Err(_) => error(500, "the discovery service failed"),
    }
}
