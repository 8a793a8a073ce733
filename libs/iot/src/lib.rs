//! # fqp-iot: what the cloud clients share of the IoT contract
//!
//! Every service of the contract lives under `$aws/things/<thing>/` and answers requests on
//! `…/accepted` and `…/rejected`, matching them to requests by the `clientToken` they carry
//! and explaining refusals in a message. `fqp-shadow`, `fqp-jobs` and the Defender agent
//! build on these pieces: [`thing_topic`] writes a topic into the caller's buffer,
//! [`client_token`] reads an answer's token, [`Text`] keeps a short message without a heap,
//! [`request`] publishes a request and waits for its answer, and [`Error`] says what went
//! wrong in one.

#![no_std]

use fqp_mqtt::{Client, Mailbox, Message, QoS};
use fqp_transport::Transport;
use serde::Deserialize;

/// What went wrong in a request to a service (`R`: the service's refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<R> {
    /// A topic or document does not fit its buffer.
    TooLong,
    /// MQTT failed (not connected, the broker went away, …).
    Mqtt(fqp_mqtt::Error),
    /// No answer within the time given.
    Timeout,
    /// The service refused the request, saying why.
    Rejected(R),
    /// An answer could not be read as the document asked for.
    BadAnswer,
}

impl<R> From<fqp_mqtt::Error> for Error<R> {
    fn from(e: fqp_mqtt::Error) -> Self {
        Error::Mqtt(e)
    }
}

impl<R> From<TooLong> for Error<R> {
    fn from(_: TooLong) -> Self {
        Error::TooLong
    }
}

/// Subscribes to every filter of `filters` at QoS 1 (at most 8); a refusal of any is
/// [`fqp_mqtt::Error::SubscriptionRefused`].
pub fn subscribe<T, H, R>(mqtt: &mut Client<'_, T, H>, filters: &[&str]) -> Result<(), Error<R>>
where
    T: Transport,
    H: FnMut(&Message<'_>),
{
    let mut with_qos = [("", QoS::AtLeastOnce); 8];
    let n = filters.len().min(8);
    for (slot, f) in with_qos.iter_mut().zip(filters) {
        slot.0 = f;
    }
    let granted = mqtt.subscribe(&with_qos[..n])?;
    match granted[..n].iter().all(Option::is_some) {
        true => Ok(()),
        false => Err(Error::Mqtt(fqp_mqtt::Error::SubscriptionRefused)),
    }
}

/// Publishes `body` on `topic` and waits up to `timeout_ms` for its answer, polling `mqtt`
/// (whose handler offers every message to `mailbox`): the first message for which
/// `answer_of` (given its topic) says it answers this request — `Some(true)` accepted,
/// `Some(false)` rejected — and whose `clientToken` is the body's. An acceptance goes to
/// `accepted`; a rejection is read by `refusal`.
#[allow(clippy::too_many_arguments)] // a request: where, what, how long, and its answers
pub fn request<T, H, A, R, const N: usize, const B: usize>(
    mqtt: &mut Client<'_, T, H>,
    mailbox: &Mailbox<N, B>,
    topic: &str,
    body: &[u8],
    timeout_ms: u32,
    mut answer_of: impl FnMut(&str) -> Option<bool>,
    mut accepted: impl FnMut(&[u8]) -> A,
    refusal: fn(&[u8]) -> Option<R>,
) -> Result<A, Error<R>>
where
    T: Transport,
    H: FnMut(&Message<'_>),
{
    let token = client_token(body);
    mqtt.publish(topic, body, QoS::AtMostOnce, false)?;
    let answer = mqtt.wait_for(mailbox, timeout_ms, |t, payload| {
        let ok = answer_of(t)?;
        if client_token(payload) != token {
            return None;
        }
        Some(match ok {
            true => Ok(accepted(payload)),
            false => Err(refusal(payload).map_or(Error::BadAnswer, Error::Rejected)),
        })
    })?;
    answer.unwrap_or(Err(Error::Timeout))
}

/// A topic did not fit the buffer given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Writes `$aws/things/<thing>/` followed by `parts` joined with `/` into `buf`.
pub fn thing_topic<'b>(thing: &str, parts: &[&str], buf: &'b mut [u8]) -> Result<&'b str, TooLong> {
    let mut at = 0;
    let mut put = |s: &str| -> Result<(), TooLong> {
        let end = at + s.len();
        buf.get_mut(at..end)
            .ok_or(TooLong)?
            .copy_from_slice(s.as_bytes());
        at = end;
        Ok(())
    };
    put("$aws/things/")?;
    put(thing)?;
    for p in parts {
        put("/")?;
        put(p)?;
    }
    // Every piece written is a whole &str.
    core::str::from_utf8(&buf[..at]).map_err(|_| TooLong)
}

/// The thing and the rest of a topic under `$aws/things/<thing>/`.
pub fn split_thing_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    (!thing.is_empty()).then_some((thing, rest))
}

#[derive(Deserialize)]
struct Token<'a> {
    #[serde(rename = "clientToken", borrow, default)]
    client_token: Option<&'a str>,
}

/// The `clientToken` of a JSON document, if it has one (without escapes).
pub fn client_token(payload: &[u8]) -> Option<&str> {
    serde_json_core::from_slice::<Token<'_>>(payload)
        .ok()?
        .0
        .client_token
}

/// Up to `N` bytes of text, cut at a character boundary: a refusal's message, a code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub fn new(s: &str) -> Self {
        let mut n = s.len().min(N);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        let mut bytes = [0u8; N];
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        Text { len: n, bytes }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_tokens_and_texts() {
        let mut buf = [0u8; 64];
        let t = thing_topic("lamp", &["jobs", "$next", "get"], &mut buf).unwrap();
        assert_eq!(t, "$aws/things/lamp/jobs/$next/get");
        assert_eq!(split_thing_topic(t), Some(("lamp", "jobs/$next/get")));
        assert_eq!(split_thing_topic("$aws/things//x"), None);
        assert_eq!(thing_topic("lamp", &["x"; 40], &mut buf), Err(TooLong));
        assert_eq!(
            client_token(br#"{"a":{"b":[1]},"clientToken":"t7"}"#),
            Some("t7")
        );
        assert_eq!(client_token(br#"{"a":1}"#), None);
        assert_eq!(client_token(b"{"), None);
        let t: Text<5> = Text::new("héllo wörld");
        assert_eq!(t.as_str(), "héll", "cut before the 2-byte é would split");
    }
}
