//! # fqp-jobs: Jobs on the device
//!
//! The device's side of the Jobs contract (`shared/reference/cloud-contract.md`) over
//! fqp-mqtt, with no heap: the topics written and recognised ([`topic`]), the documents
//! written and read with serde-json-core ([`doc`]: the job's document and status details are
//! the application's own types), and the requests — list, start-next, describe, update with
//! `expectedVersion` — sent and their answers awaited, matched by client token, a refusal
//! returned with the contract's code and message ([`Error::Rejected`]). `notify-next` and
//! `notify` messages stay in the application's [`fqp_mqtt::Mailbox`] for it to take
//! ([`Jobs::take_next`]).

#![no_std]

pub mod doc;
pub mod topic;

pub use doc::{Code, Execution, Pending, Rejection, State, Status, Summary};
/// The type to read a job document or status details as when the application does not look
/// at them.
pub use serde::de::IgnoredAny as Ignored;
pub use topic::{Request, Topic, MAX_TOPIC};

use fqp_mqtt::{Client, Mailbox, Message};
use fqp_transport::Transport;

/// What went wrong: [`Error::Rejected`] carries the contract's code and message.
pub type Error = fqp_iot::Error<Rejection>;

/// The jobs of one thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jobs<'a> {
    pub thing: &'a str,
}

impl<'a> Jobs<'a> {
    pub const fn new(thing: &'a str) -> Self {
        Jobs { thing }
    }

    /// Subscribes (QoS 1) to the answers of every request. `notify-next` only with
    /// [`Self::subscribe_next`]: every change to the thing's executions sends one, and unread
    /// they would fill the mailbox.
    pub fn subscribe<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut bufs = [[0u8; MAX_TOPIC]; 5];
        let [b, c, d, e, f] = &mut bufs;
        let t = self.thing;
        let filters = [
            topic::filter(t, &["get", "+"], b)?,
            topic::filter(t, &["start-next", "+"], c)?,
            topic::filter(t, &["$next", "get", "+"], d)?,
            topic::filter(t, &["+", "get", "+"], e)?,
            topic::filter(t, &["+", "update", "+"], f)?,
        ];
        fqp_iot::subscribe(mqtt, &filters)
    }

    /// Subscribes (QoS 1) to `notify-next`: the next execution, whenever it changes.
    pub fn subscribe_next<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut buf = [0u8; MAX_TOPIC];
        let filter = topic::filter(self.thing, &["notify-next"], &mut buf)?;
        fqp_iot::subscribe(mqtt, &[filter])
    }

    /// Publishes `body` (a document with a `clientToken`: [`doc`]) as `request` and waits up
    /// to `timeout_ms` for its answer, polling `mqtt` (whose handler offers every message to
    /// `mailbox`). An accepted answer is given to `accepted`, whose result is returned.
    pub fn request<T, H, R, const N: usize, const B: usize>(
        &self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        request: Request<'_>,
        body: &[u8],
        timeout_ms: u32,
        mut accepted: impl FnMut(&[u8]) -> R,
    ) -> Result<R, Error>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let mut buf = [0u8; MAX_TOPIC];
        let topic = topic::write(self.thing, request, None, &mut buf)?;
        fqp_iot::request(
            mqtt,
            mailbox,
            topic,
            body,
            timeout_ms,
            |t| match topic::parse(t)? {
                (thing, Topic::Request(r, ok)) if thing == self.thing && r == request => ok,
                _ => None,
            },
            &mut accepted,
            doc::rejection,
        )
    }

    /// Takes the oldest `notify-next` message from `mailbox`, given to `f`.
    pub fn take_next<R, const N: usize, const B: usize>(
        &self,
        mailbox: &Mailbox<N, B>,
        mut f: impl FnMut(&[u8]) -> R,
    ) -> Option<R> {
        mailbox.take(|t, payload| match topic::parse(t)? {
            (thing, Topic::NotifyNext) if thing == self.thing => Some(f(payload)),
            _ => None,
        })
    }
}
