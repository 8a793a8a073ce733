//! The cloud's small HTTPS servers (Greengrass discovery, the OTA data plane): HTTP/1.1 over
//! TLS, one request per connection, a thread per connection, stopped when dropped. Requests
//! are GETs with a head only (no body); answers carry a length and close the connection.

use crate::endpoint::{EndpointError, Tls};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Largest request head taken.
const MAX_HEAD: usize = 8 * 1024;

/// A request as the handler sees it.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The path, with its query if any.
    pub(crate) target: &'a str,
    head: &'a str,
    /// SHA-256 (hex) of the client's certificate, when it gave one.
    pub(crate) fingerprint: Option<String>,
}

impl Request<'_> {
    /// The value of header `name` (case-insensitive), if given.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An answer: status, content type, headers beyond the usual, body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A JSON answer `{"message": …}` with `status`.
    pub(crate) fn message(status: u16, message: &str) -> Response {
        Response::json(
            status,
            serde_json::json!({ "message": message }).to_string(),
        )
    }

    pub(crate) fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

/// What answers requests.
pub(crate) type Handler = Arc<dyn Fn(&Request<'_>) -> Response + Send + Sync>;

/// A running server; dropping it stops it.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Listens on `bind` (port 0: any free port) with `tls` (client certificates required when
/// it names client CAs), answering with `handler`; `name` names its thread.
pub(crate) fn start(
    name: &str,
    bind: SocketAddr,
    tls: &Tls,
    handler: Handler,
) -> Result<Server, EndpointError> {
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
        .name(name.into())
        .spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (handler, config) = (handler.clone(), config.clone());
                        std::thread::spawn(move || serve(c, &handler, config));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(|e| EndpointError::Runtime(e.to_string()))?;
    Ok(Server { addr, stop })
}

/// Serves one connection: one request, one answer.
fn serve(c: TcpStream, handler: &Handler, config: Arc<rustls::ServerConfig>) {
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
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let request = Request {
        method: parts.next().unwrap_or(""),
        target: parts.next().unwrap_or(""),
        head: &head,
        fingerprint,
    };
    let r = handler(&request);
    let reason = match r.status {
        200 => "OK",
        206 => "Partial Content",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    let _ = s.write_all(&bytes);
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
