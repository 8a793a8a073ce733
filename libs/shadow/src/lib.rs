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

use fqp_mqtt::{Client, Mailbox, Message};
use fqp_transport::Transport;

/// What went wrong: [`Error::Rejected`] carries the cloud's code (400, 404, 409, 413, 429, …)
/// and message.
pub type Error = fqp_iot::Error<Rejection>;

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
            self.filter(Op::Get, "+", a)?,
            self.filter(Op::Update, "accepted", b)?,
            self.filter(Op::Update, "rejected", c)?,
            self.filter(Op::Update, "delta", d)?,
            self.filter(Op::Delete, "+", e)?,
        ];
        fqp_iot::subscribe(mqtt, &filters)
    }

    /// Subscribes (QoS 1) to the documents messages (`update/documents`).
    pub fn subscribe_documents<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut buf = [0u8; MAX_TOPIC];
        let filter = self.filter(Op::Update, "documents", &mut buf)?;
        fqp_iot::subscribe(mqtt, &[filter])
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
        let mut buf = [0u8; MAX_TOPIC];
        let topic = self.topic(op, None, &mut buf)?;
        fqp_iot::request(
            mqtt,
            mailbox,
            topic,
            body,
            timeout_ms,
            |t| match Shadow::parse(t)? {
                (s, o, Some(Answer::Accepted)) if s == *self && o == op => Some(true),
                (s, o, Some(Answer::Rejected)) if s == *self && o == op => Some(false),
                _ => None,
            },
            &mut accepted,
            doc::rejection,
        )
    }

    /// Polls `mqtt` up to `timeout_ms` for a message of `kind` (a delta or a documents
    /// message) for this shadow, given to `f`; `None` when none came.
    pub fn wait<T, H, R, const N: usize, const B: usize>(
        &self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        kind: Answer,
        timeout_ms: u32,
        mut f: impl FnMut(&[u8]) -> R,
    ) -> Result<Option<R>, Error>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        Ok(mqtt.wait_for(mailbox, timeout_ms, |topic, payload| {
            let (shadow, _, answer) = Shadow::parse(topic)?;
            (shadow == *self && answer == Some(kind)).then(|| f(payload))
        })?)
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
