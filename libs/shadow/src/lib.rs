//! # fqp-shadow: Device Shadow on the device
//!
//! The device's side of the shadow contract (`shared/reference/cloud-contract.md`), over
//! fqp-mqtt and any transport, with no heap: classic and named shadows ([`Shadow`]); the
//! topics written and recognised ([`topic`]); the documents written and read with
//! serde-json-core ([`doc`]); and the requests — get, update, delete — sent and their answers
//! awaited ([`Shadow::request`]), matched by client token, a rejection returned with its code
//! and message ([`Error::Rejected`]). Deltas and documents that arrive meanwhile stay in the
//! application's [`fqp_mqtt::Mailbox`] for it to take ([`Shadow::take`]).
//!
//! The application owns the MQTT client and its message handler; the handler gives every
//! message to the mailbox (`|m| { mailbox.offer(m); }`), which is where requests find their
//! answers.

#![no_std]

pub mod doc;
pub mod topic;

pub use doc::{Rejection, State};
pub use topic::{Answer, Op, Shadow, MAX_TOPIC};

use fqp_mqtt::{Client, Mailbox, Message, QoS};
use fqp_transport::Transport;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A topic or document does not fit its buffer.
    TooLong,
    /// MQTT failed (not connected, the broker went away, …).
    Mqtt(fqp_mqtt::Error),
    /// No answer within the time given.
    Timeout,
    /// The cloud refused the request: its code (400, 404, 409, 413, 429, …) and message.
    Rejected(Rejection),
    /// An answer could not be read as the document asked for.
    BadAnswer,
}

impl From<fqp_mqtt::Error> for Error {
    fn from(e: fqp_mqtt::Error) -> Self {
        Error::Mqtt(e)
    }
}

impl From<fqp_iot::TooLong> for Error {
    fn from(_: fqp_iot::TooLong) -> Self {
        Error::TooLong
    }
}

impl Shadow<'_> {
    /// Subscribes (QoS 1) to the answers of this shadow's requests and to its deltas: what
    /// [`Self::request`] and a device that follows its desired state need. Documents
    /// messages, which every update causes, only with [`Self::subscribe_documents`]: unread,
    /// they would fill the mailbox.
    pub fn subscribe<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut bufs = [[0u8; MAX_TOPIC]; 5];
        let [a, b, c, d, e] = &mut bufs;
        let filters = [
            (self.filter(Op::Get, "+", a)?, QoS::AtLeastOnce),
            (self.filter(Op::Update, "accepted", b)?, QoS::AtLeastOnce),
            (self.filter(Op::Update, "rejected", c)?, QoS::AtLeastOnce),
            (self.filter(Op::Update, "delta", d)?, QoS::AtLeastOnce),
            (self.filter(Op::Delete, "+", e)?, QoS::AtLeastOnce),
        ];
        let granted = mqtt.subscribe(&filters)?;
        match granted[..filters.len()].iter().all(Option::is_some) {
            true => Ok(()),
            false => Err(Error::Mqtt(fqp_mqtt::Error::SubscriptionRefused)),
        }
    }

    /// Subscribes (QoS 1) to the documents messages (`update/documents`).
    pub fn subscribe_documents<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut buf = [0u8; MAX_TOPIC];
        let filter = self.filter(Op::Update, "documents", &mut buf)?;
        match mqtt.subscribe(&[(filter, QoS::AtLeastOnce)])?[0] {
            Some(_) => Ok(()),
            None => Err(Error::Mqtt(fqp_mqtt::Error::SubscriptionRefused)),
        }
    }

    /// Publishes `body` (a document with a `clientToken`: [`doc`]) as an `op` request and
    /// waits up to `timeout_ms` for its answer, polling `mqtt` (whose handler offers every
    /// message to `mailbox`). An accepted answer is given to `accepted`, whose result is
    /// returned; a rejection is [`Error::Rejected`].
    pub fn request<T, H, R, const N: usize, const B: usize>(
        &self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        op: Op,
        body: &[u8],
        timeout_ms: u32,
        mut accepted: impl FnMut(&[u8]) -> R,
    ) -> Result<R, Error>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let token = fqp_iot::client_token(body);
        let mut buf = [0u8; MAX_TOPIC];
        let topic = self.topic(op, None, &mut buf)?;
        mqtt.publish(topic, body, QoS::AtMostOnce, false)?;
        let answer = mqtt.wait_for(mailbox, timeout_ms, |topic, payload| {
            let (shadow, o, answer) = Shadow::parse(topic)?;
            if shadow != *self || o != op || fqp_iot::client_token(payload) != token {
                return None;
            }
            match answer? {
                Answer::Accepted => Some(Ok(accepted(payload))),
                Answer::Rejected => Some(Err(
                    doc::rejection(payload).map_or(Error::BadAnswer, Error::Rejected)
                )),
                _ => None,
            }
        })?;
        answer.unwrap_or(Err(Error::Timeout))
    }

    /// Takes the oldest message of `kind` (a delta or a documents message) for this shadow
    /// from `mailbox`, given to `f`.
    pub fn take<R, const N: usize, const B: usize>(
        &self,
        mailbox: &Mailbox<N, B>,
        kind: Answer,
        mut f: impl FnMut(&[u8]) -> R,
    ) -> Option<R> {
        mailbox.take(|topic, payload| {
            let (shadow, _, answer) = Shadow::parse(topic)?;
            (shadow == *self && answer == Some(kind)).then(|| f(payload))
        })
    }
}
