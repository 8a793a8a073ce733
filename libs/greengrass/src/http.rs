//! The discovery request and its answer: HTTP/1.1, one request on a connection the caller
//! opened (TLS with the thing's certificate, as the endpoint requires).

use crate::Error;
use fqp_transport::Transport;

/// Sends `GET /greengrass/discover/thing/<thing>` to `host` over `t` and reads the answer into
/// `buf`: the body of a 200 answer. Another status is [`Error::Status`].
pub fn discover<'b, T: Transport>(
    t: &mut T,
    host: &str,
    thing: &str,
    buf: &'b mut [u8],
    timeout_ms: u32,
) -> Result<&'b [u8], Error> {
    for piece in [
        "GET /greengrass/discover/thing/",
        thing,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    ] {
        t.send_all(piece.as_bytes(), timeout_ms)?;
    }
    let mut have = 0;
    let head_end = loop {
        if let Some(i) = find(&buf[..have], b"\r\n\r\n") {
            break i + 4;
        }
        if have == buf.len() {
            return Err(Error::TooLong);
        }
        match t.recv(&mut buf[have..], timeout_ms)? {
            0 => return Err(Error::Http),
            n => have += n,
        }
    };
    let head = core::str::from_utf8(&buf[..head_end]).map_err(|_| Error::Http)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or(Error::Http)?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    // The body: as long as Content-Length says, or up to the end of the connection.
    loop {
        let body = have - head_end;
        if length.is_some_and(|l| body >= l) {
            break;
        }
        if have == buf.len() {
            return Err(Error::TooLong);
        }
        match t.recv(&mut buf[have..], timeout_ms) {
            Ok(0) | Err(fqp_transport::Error::Closed) if length.is_none() => break,
            Ok(0) => return Err(Error::Http),
            Ok(n) => have += n,
            Err(e) => return Err(Error::Transport(e)),
        }
    }
    let end = length.map_or(have, |l| head_end + l);
    match status {
        200 => Ok(&buf[head_end..end]),
        s => Err(Error::Status(s)),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
