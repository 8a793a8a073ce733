//! The shadow documents the device writes and reads, with serde-json-core (no heap): an
//! update's `state` with its sections, the answers' `version` and `clientToken`, a rejection's
//! code and message, a delta's state, a document's sections. Fields a reader does not name
//! are skipped (a document's `metadata`, its timestamps).

use crate::Error;
use fqp_iot::Text;
use serde::{Deserialize, Serialize};

/// A request's body: the sections to change (`null` deletes a key, `None` leaves the
/// section alone), the version it expects the shadow at (optimistic locking), its token.
#[derive(Serialize)]
struct Update<'t, D, R> {
    state: Sections<D, R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(rename = "clientToken")]
    client_token: &'t str,
}

#[derive(Serialize)]
struct Sections<D, R> {
    #[serde(skip_serializing_if = "Option::is_none")]
    desired: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported: Option<R>,
}

/// What an update changes: `Some(value)` sets the section's keys to the value's (a field
/// serialized as `null` deletes the key); `None` leaves the section alone.
pub fn update<D: Serialize, R: Serialize>(
    buf: &mut [u8],
    desired: Option<&D>,
    reported: Option<&R>,
    version: Option<u64>,
    token: &str,
) -> Result<usize, Error> {
    let u = Update {
        state: Sections { desired, reported },
        version,
        client_token: token,
    };
    serde_json_core::to_slice(&u, buf).map_err(|_| Error::TooLong)
}

#[derive(Serialize)]
struct Request<'t> {
    #[serde(rename = "clientToken")]
    client_token: &'t str,
}

/// A get's or a delete's body: its token only.
pub fn request(buf: &mut [u8], token: &str) -> Result<usize, Error> {
    serde_json_core::to_slice(
        &Request {
            client_token: token,
        },
        buf,
    )
    .map_err(|_| Error::TooLong)
}

#[derive(Deserialize)]
struct Common<'a> {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default, borrow)]
    message: Option<&'a str>,
}

fn common(payload: &[u8]) -> Option<Common<'_>> {
    serde_json_core::from_slice::<Common<'_>>(payload)
        .ok()
        .map(|(c, _)| c)
}

/// The `clientToken` of an answer, if it has one (and it has no escapes).
pub use fqp_iot::client_token;

/// The `version` of an answer or a delta.
pub fn version(payload: &[u8]) -> Option<u64> {
    common(payload)?.version
}

/// A rejection's code and message (its first 96 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    text: Text<96>,
}

impl Rejection {
    pub fn message(&self) -> &str {
        self.text.as_str()
    }
}

impl core::fmt::Debug for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {:?}", self.code, self.message())
    }
}

/// Reads a rejection; `None` if the payload is not one.
pub fn rejection(payload: &[u8]) -> Option<Rejection> {
    let c = common(payload)?;
    Some(Rejection {
        code: c.code?,
        text: Text::new(c.message.unwrap_or("")),
    })
}

#[derive(Deserialize)]
struct Delta<T> {
    state: T,
    version: u64,
}

/// A delta message: the version, and the state desired that differs from the reported.
pub fn delta<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<(u64, T), Error> {
    let (d, _) = serde_json_core::from_slice::<Delta<T>>(payload).map_err(|_| Error::BadAnswer)?;
    Ok((d.version, d.state))
}

/// A shadow document's sections, as a get's answer has them.
#[derive(Deserialize, Debug, PartialEq)]
pub struct State<T> {
    #[serde(default = "none")]
    pub desired: Option<T>,
    #[serde(default = "none")]
    pub reported: Option<T>,
    #[serde(default = "none")]
    pub delta: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct Document<T> {
    state: State<T>,
    version: u64,
}

/// A get's (or an update's) accepted answer: its version and sections.
pub fn document<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<(u64, State<T>), Error> {
    let (d, _) =
        serde_json_core::from_slice::<Document<T>>(payload).map_err(|_| Error::BadAnswer)?;
    Ok((d.version, d.state))
}

#[derive(Deserialize)]
struct Documents<T> {
    previous: Option<Document<T>>,
    current: Document<T>,
}

/// A documents message (`update/documents`): the previous document (none for a new shadow)
/// and the current one, each its version and sections.
#[allow(clippy::type_complexity)] // the two documents, each a (version, sections) pair
pub fn documents<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
) -> Result<(Option<(u64, State<T>)>, (u64, State<T>)), Error> {
    let (d, _) =
        serde_json_core::from_slice::<Documents<T>>(payload).map_err(|_| Error::BadAnswer)?;
    Ok((
        d.previous.map(|p| (p.version, p.state)),
        (d.current.version, d.current.state),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    struct Lamp {
        #[serde(default)]
        on: Option<bool>,
        #[serde(default)]
        level: Option<u8>,
    }

    #[test]
    fn an_update_is_written_as_the_contract_has_it() {
        let mut buf = [0u8; 128];
        let on = Lamp {
            on: Some(true),
            level: None,
        };
        let n = update(&mut buf, Some(&on), None::<&()>, Some(3), "t1").unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"state":{"desired":{"on":true,"level":null}},"version":3,"clientToken":"t1"}"#
        );
        let n = request(&mut buf, "t2").unwrap();
        assert_eq!(&buf[..n], br#"{"clientToken":"t2"}"#);
        assert_eq!(
            update(&mut buf[..10], Some(&on), None::<&()>, None, "t"),
            Err(Error::TooLong)
        );
    }

    #[test]
    fn answers_are_read_skipping_what_is_not_asked_for() {
        let got = br#"{"state":{"desired":{"on":true},"reported":{"on":false,"level":3},"delta":{"on":true}},
            "metadata":{"desired":{"on":{"timestamp":1}},"reported":{"on":{"timestamp":1},"level":{"timestamp":2}}},
            "version":7,"timestamp":1700000000,"clientToken":"t9"}"#;
        assert_eq!(client_token(got), Some("t9"));
        assert_eq!(version(got), Some(7));
        let (v, s) = document::<Lamp>(got).unwrap();
        assert_eq!(v, 7);
        assert_eq!(
            s.reported,
            Some(Lamp {
                on: Some(false),
                level: Some(3)
            })
        );
        assert_eq!(
            s.delta,
            Some(Lamp {
                on: Some(true),
                level: None
            })
        );
        let d = br#"{"version":8,"timestamp":1,"state":{"level":9},"metadata":{"level":{"timestamp":1}}}"#;
        assert_eq!(
            delta::<Lamp>(d).unwrap(),
            (
                8,
                Lamp {
                    on: None,
                    level: Some(9)
                }
            )
        );
        let r = rejection(
            br#"{"code":409,"message":"Version conflict","clientToken":"t3","timestamp":1}"#,
        )
        .unwrap();
        assert_eq!((r.code, r.message()), (409, "Version conflict"));
        assert_eq!(rejection(got), None, "a document is not a rejection");
        assert_eq!(document::<Lamp>(b"{]"), Err(Error::BadAnswer));
        let docs = br#"{"previous":null,"current":{"state":{"reported":{"on":true}},"metadata":{},"version":1},"timestamp":5}"#;
        let (before, (v, now)) = documents::<Lamp>(docs).unwrap();
        assert!(before.is_none());
        assert_eq!(
            (v, now.reported),
            (
                1,
                Some(Lamp {
                    on: Some(true),
                    level: None
                })
            )
        );
    }
}
