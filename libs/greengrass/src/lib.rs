//! # fqp-greengrass: Greengrass discovery on the device
//!
//! A device that works through a Greengrass core finds it by asking the discovery endpoint
//! (`shared/reference/cloud-contract.md`): [`http::discover`] sends
//! `GET /greengrass/discover/thing/<thing>` over a transport the caller opened (fqp-tls with
//! the thing's certificate: the endpoint identifies the thing by it), [`parse`] reads the
//! answer — groups, their cores, each core's connectivity entries, the group's CAs — with no
//! heap and no copies (everything borrows the answer's text; a CA's DER is decoded into the
//! caller's buffer when it is needed: [`Ca::der`]), and [`connect`] tries the entries in order,
//! each with its group's CAs, until one connects.

#![no_std]

#[cfg(test)]
extern crate std;

pub mod http;

use base64::Engine as _;
use serde::Deserialize;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    Transport(fqp_transport::Error),
    /// The endpoint answered with this status: 404 (the thing is in no group), 403 (the
    /// certificate is not the thing's), …
    Status(u16),
    /// The answer is not HTTP/1.1.
    Http,
    /// The answer does not fit the buffer given, or holds more than this library keeps.
    TooLong,
    /// The body is not a discovery document.
    BadDocument,
}

impl From<fqp_transport::Error> for Error {
    fn from(e: fqp_transport::Error) -> Self {
        Error::Transport(e)
    }
}

/// Most groups, cores per group, entries per core and CAs per group kept.
pub const MAX_GROUPS: usize = 2;
pub const MAX_CORES: usize = 2;
pub const MAX_ENTRIES: usize = 4;
pub const MAX_CAS: usize = 2;

/// A way into a core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry<'a> {
    #[serde(rename = "Id", borrow)]
    pub id: &'a str,
    #[serde(rename = "HostAddress", borrow)]
    pub host: &'a str,
    #[serde(rename = "PortNumber")]
    pub port: u16,
    #[serde(rename = "Metadata", borrow, default)]
    pub metadata: &'a str,
}

/// A core and its entries, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Core<'a> {
    #[serde(rename = "thingArn", borrow)]
    pub thing_arn: &'a str,
    #[serde(rename = "Connectivity", borrow)]
    pub connectivity: heapless::Vec<Entry<'a>, MAX_ENTRIES>,
}

/// A group's CA certificate, as the answer holds it: PEM, still JSON-escaped (kept borrowed
/// from the answer, so that a discovery needs no more memory than its text);
/// [`Ca::der`] decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Ca<'a>(#[serde(borrow)] pub &'a str);

impl Ca<'_> {
    /// The certificate in DER, written into `out`: its length, or `None` if this is not a
    /// PEM certificate or `out` is too small.
    pub fn der(&self, out: &mut [u8]) -> Option<usize> {
        let body = self
            .0
            .trim()
            .strip_prefix("-----BEGIN CERTIFICATE-----")?
            .trim_end_matches("\\n")
            .trim_end()
            .strip_suffix("-----END CERTIFICATE-----")?;
        // The base64 text, without line breaks (whitespace, or JSON's escaped `\n`, `\r`)
        // and with JSON's `\/` read as `/`; decoded a block of four characters at a time.
        let mut quad = [0u8; 4];
        let (mut q, mut n) = (0, 0);
        let mut bytes = body.bytes();
        while let Some(c) = bytes.next() {
            let c = match c {
                b'\\' => match bytes.next()? {
                    b'n' | b'r' | b't' => continue,
                    b'/' => b'/',
                    _ => return None,
                },
                c if c.is_ascii_whitespace() => continue,
                c => c,
            };
            quad[q] = c;
            q += 1;
            if q == 4 {
                let mut three = [0u8; 3];
                let got = base64::engine::general_purpose::STANDARD
                    .decode_slice(quad, &mut three)
                    .ok()?;
                out.get_mut(n..n + got)?.copy_from_slice(&three[..got]);
                n += got;
                q = 0;
            }
        }
        (q == 0).then_some(n)
    }
}

/// A Greengrass group: its cores and CAs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group<'a> {
    #[serde(rename = "GGGroupId", borrow)]
    pub id: &'a str,
    #[serde(rename = "Cores", borrow)]
    pub cores: heapless::Vec<Core<'a>, MAX_CORES>,
    #[serde(rename = "CAs", borrow)]
    pub cas: heapless::Vec<Ca<'a>, MAX_CAS>,
}

/// A discovery answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovery<'a> {
    #[serde(rename = "GGGroups", borrow)]
    pub groups: heapless::Vec<Group<'a>, MAX_GROUPS>,
}

/// Reads a discovery answer (borrowing its text: no copies).
pub fn parse(body: &[u8]) -> Result<Discovery<'_>, Error> {
    serde_json_core::from_slice::<Discovery<'_>>(body)
        .map(|(d, _)| d)
        .map_err(|_| Error::BadDocument)
}

/// Tries the connectivity entries of `d` in order — each group's cores, each core's
/// entries — with `attempt` (given the entry and its group's CAs), until one succeeds: what it
/// returned and the number of the entry (0 for the first). When none does, the last
/// entry's error and how many were tried.
pub fn connect<'d, 'a, T, E>(
    d: &'d Discovery<'a>,
    mut attempt: impl FnMut(&'d Entry<'a>, &'d [Ca<'a>]) -> Result<T, E>,
) -> Result<(T, usize), (Option<E>, usize)> {
    let mut tried = 0;
    let mut last = None;
    for g in &d.groups {
        for c in &g.cores {
            for e in &c.connectivity {
                match attempt(e, &g.cas) {
                    Ok(t) => return Ok((t, tried)),
                    Err(err) => last = Some(err),
                }
                tried += 1;
            }
        }
    }
    Err((last, tried))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\\nMIIBAzCBqqADAgECAgEBMAoGCCqGSM49BAMC\\n-----END CERTIFICATE-----\\n";

    #[test]
    fn an_answer_is_read_and_its_entries_tried_in_order() {
        let body = alloc_body();
        let d = parse(body.as_bytes()).unwrap();
        assert_eq!(d.groups.len(), 1);
        let g = &d.groups[0];
        assert_eq!(g.id, "g1");
        assert_eq!(g.cores[0].connectivity[1].port, 8883);
        let mut der = [0u8; 64];
        let n = g.cas[0].der(&mut der).unwrap();
        assert_eq!((n, der[0]), (27, 0x30), "DER begins with a SEQUENCE");
        assert_eq!(
            Ca("-----BEGIN CERTIFICATE-----\\nMII\\n-----END CERTIFICATE-----").der(&mut der),
            None,
            "not whole"
        );
        assert_eq!(g.cas[0].der(&mut der[..8]), None, "too small a buffer");
        let tried = connect(&d, |e, cas| {
            assert_eq!(cas.len(), 1);
            if e.port == 1 {
                Err("refused")
            } else {
                Ok(e.id)
            }
        });
        assert_eq!(tried, Ok(("live", 1)));
        let none: Result<((), usize), _> = connect(&d, |_, _| Err("refused"));
        assert_eq!(none, Err((Some("refused"), 2)));
        assert_eq!(parse(b"{\"GGGroups\":7}"), Err(Error::BadDocument));
    }

    fn alloc_body() -> &'static str {
        // One group, a core with a dead entry then a live one, one CA.
        static BODY: &str = concat!(
            r#"{"GGGroups":[{"GGGroupId":"g1","Cores":[{"thingArn":"arn:core","Connectivity":["#,
            r#"{"Id":"dead","HostAddress":"10.0.2.2","PortNumber":1,"Metadata":""},"#,
            r#"{"Id":"live","HostAddress":"10.0.2.2","PortNumber":8883,"Metadata":"lab"}]}],"CAs":[""#,
        );
        static END: &str = r#""]}]}"#;
        let s = std::format!("{BODY}{CA_PEM}{END}");
        std::boxed::Box::leak(s.into_boxed_str())
    }
}
