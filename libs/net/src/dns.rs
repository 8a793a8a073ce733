//! DNS A-record queries and answers (RFC 1035), for [`crate::resolve`].
//!
//! Why not smoltcp's DNS socket: it always asks servers on port 53, and a qualification lab
//! must be able to run its name server as an unprivileged process on another port. The
//! messages themselves are small: one question, answers read until the first A record (CNAME
//! chains are answered in full by recursive servers).

use core::net::Ipv4Addr;

/// Why a name was not resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// The name is not a valid host name (empty, label over 63 bytes, name over 253).
    BadName,
    /// The server says the name does not exist, or it has no IPv4 address.
    NotFound,
    /// The server failed or refused to answer (SERVFAIL, REFUSED, …).
    ServerFailure,
    /// The answer is not a well-formed reply to our question.
    Malformed,
}

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// Longest query: header, a 253-byte name in labels (255 bytes), type and class.
pub const MAX_QUERY: usize = HEADER + 255 + 4;

/// Writes a recursive query for the A record of `name` with `id` into `buf`; its length.
pub fn query(id: u16, name: &str, buf: &mut [u8; MAX_QUERY]) -> Result<usize, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName);
    }
    buf[..HEADER].copy_from_slice(&[
        (id >> 8) as u8,
        id as u8,
        0x01, // RD: recursion desired
        0x00,
        0,
        1, // one question
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    let mut at = HEADER;
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !ok {
            return Err(DnsError::BadName);
        }
        buf[at] = label.len() as u8;
        buf[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    buf[at] = 0;
    buf[at + 1..at + 5].copy_from_slice(&[0, TYPE_A as u8, 0, CLASS_IN as u8]);
    Ok(at + 5)
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Malformed)
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            // A pointer ends the name where it stands.
            0xc0..=0xff => return Ok(at + 2),
            1..=63 => at += 1 + len as usize,
            _ => return Err(DnsError::Malformed),
        }
    }
}

/// The first IPv4 address in `msg`, the server's reply to query `id`. `Ok(None)`: not a reply
/// to that query (a stray or late datagram), to be ignored.
pub fn answer(id: u16, msg: &[u8]) -> Result<Option<Ipv4Addr>, DnsError> {
    if msg.len() < HEADER {
        return Err(DnsError::Malformed);
    }
    let flags = u16_at(msg, 2)?;
    if u16_at(msg, 0)? != id || flags & 0x8000 == 0 {
        return Ok(None);
    }
    match flags & 0x000f {
        0 => {}
        3 => return Err(DnsError::NotFound), // NXDOMAIN
        _ => return Err(DnsError::ServerFailure),
    }
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut at = HEADER;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let kind = u16_at(msg, at)?;
        let class = u16_at(msg, at + 2)?;
        let len = u16_at(msg, at + 8)? as usize;
        let data = msg.get(at + 10..at + 10 + len).ok_or(DnsError::Malformed)?;
        if kind == TYPE_A && class == CLASS_IN && len == 4 {
            return Ok(Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])));
        }
        at += 10 + len;
    }
    Err(DnsError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;

    /// A reply to `q` (a query we made) with `rcode` and the given answer records.
    fn reply(q: &[u8], rcode: u8, answers: &[(u16, &[u8])]) -> std::vec::Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[7] = answers.len() as u8;
        for (kind, data) in answers {
            m.extend_from_slice(&[0xc0, 12]); // the question's name
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 1, 0]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn queries_are_encoded_as_labels() {
        let mut buf = [0u8; MAX_QUERY];
        let n = query(0x1234, "broker.fqp.lab.", &mut buf).unwrap();
        assert_eq!(&buf[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&buf[12..n], b"\x06broker\x03fqp\x03lab\x00\x00\x01\x00\x01");
        for bad in ["", "a..b", "sp ace.lab", &"x".repeat(64), &"a.".repeat(130)] {
            assert_eq!(query(1, bad, &mut buf), Err(DnsError::BadName), "{bad}");
        }
    }

    #[test]
    fn the_first_a_record_answers() {
        let mut buf = [0u8; MAX_QUERY];
        let n = query(7, "broker.fqp.lab", &mut buf).unwrap();
        let q = &buf[..n];
        let cname: &[u8] = b"\x05other\x00";
        let r = reply(q, 0, &[(5, cname), (1, &[10, 0, 2, 2])]);
        assert_eq!(answer(7, &r), Ok(Some(Ipv4Addr::new(10, 0, 2, 2))));
        // Another query's reply, or a query, is not ours.
        assert_eq!(answer(8, &r), Ok(None));
        assert_eq!(answer(7, q), Ok(None));
        // NXDOMAIN, no A record, server failure, truncation.
        assert_eq!(answer(7, &reply(q, 3, &[])), Err(DnsError::NotFound));
        assert_eq!(answer(7, &reply(q, 0, &[])), Err(DnsError::NotFound));
        assert_eq!(answer(7, &reply(q, 2, &[])), Err(DnsError::ServerFailure));
        assert_eq!(answer(7, &r[..r.len() - 2]), Err(DnsError::Malformed));
        assert_eq!(answer(7, &r[..5]), Err(DnsError::Malformed));
    }

    fn seeds() -> std::vec::Vec<std::vec::Vec<u8>> {
        let mut buf = [0u8; MAX_QUERY];
        let n = query(7, "broker.fqp.lab", &mut buf).unwrap();
        let q = &buf[..n];
        let cname: &[u8] = b"\x05other\x00";
        std::vec![
            reply(q, 0, &[(5, cname), (1, &[10, 0, 2, 2])]),
            reply(q, 0, &[(1, &[127, 0, 0, 1])]),
            reply(q, 3, &[]),
            q.to_vec(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever datagram arrives on the resolver's port, reading it never panics.
        #[test]
        fn fuzz_answer(input in fqp_fuzzing::inputs(seeds(), 300)) {
            let _ = answer(7, &input);
        }
    }
}
