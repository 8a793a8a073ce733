//! # fqp-mqtt: an MQTT 3.1.1 client with no heap
//!
//! coreMQTT-class: the application gives the buffers (a packet must fit the receive buffer;
//! 64 KiB payloads need a buffer that large), the transport ([`fqp_transport::Transport`]:
//! plain TCP, TLS, a modem) and a clock; the client does CONNECT (clean or persistent session,
//! will, credentials, keep-alive), PUBLISH at QoS 0 and 1 (acknowledged, retried with DUP),
//! SUBSCRIBE / UNSUBSCRIBE with wildcards, acknowledges incoming QoS 1 messages, pings when
//! idle and notices a dead broker. [`Backoff`] spaces reconnections (exponential, with jitter).
//!
//! Incoming messages go to the handler given at creation, whichever call is running when they
//! arrive (a publish waiting for its acknowledgement receives them too); a [`Mailbox`] keeps
//! them for code that waits for a particular answer.

#![no_std]

#[cfg(test)]
extern crate std;

mod backoff;
pub mod codec;
mod mailbox;
pub mod topic;

pub use backoff::Backoff;
pub use codec::{Connect, Packet, Publish as Message, QoS, Will};
use fqp_transport::Transport;
pub use mailbox::Mailbox;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The transport failed (closed, timed out, …).
    Transport(fqp_transport::Error),
    /// A packet does not fit the buffer given to the client.
    BufferTooSmall,
    /// A string, topic or payload is longer than MQTT allows.
    TooLong,
    /// A topic name or filter is not valid.
    InvalidTopic,
    /// The broker sent something MQTT does not allow.
    Protocol,
    /// The broker refused the connection, with CONNACK's return code (1 protocol version,
    /// 2 client id, 3 unavailable, 4 bad user name or password, 5 not authorized).
    Refused(u8),
    /// The broker did not acknowledge in time (after every retry).
    NoAck,
    /// The broker refused a subscription (SUBACK 0x80).
    SubscriptionRefused,
    /// The broker stopped answering pings.
    PingTimeout,
    /// There is no connection (connect first).
    NotConnected,
}

impl From<fqp_transport::Error> for Error {
    fn from(e: fqp_transport::Error) -> Self {
        Error::Transport(e)
    }
}

/// Timing of acknowledgements.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long to wait for an acknowledgement before sending again.
    pub ack_timeout_ms: u32,
    /// How many times a QoS 1 PUBLISH (or a SUBSCRIBE) is sent again before giving up.
    pub retries: u8,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ack_timeout_ms: 2_000,
            retries: 3,
        }
    }
}

/// An MQTT client on transport `T`; incoming messages go to `H`.
pub struct Client<'b, T: Transport, H: FnMut(&Message<'_>)> {
    transport: Option<T>,
    tx: &'b mut [u8],
    rx: &'b mut [u8],
    /// Bytes of `rx` holding received data not yet handled.
    have: usize,
    next_id: u16,
    keep_alive_ms: u64,
    last_sent_ms: u64,
    ping_sent_ms: Option<u64>,
    clock: fn() -> u64,
    timing: Timing,
    on_message: H,
}

/// What an incoming packet was, once handled.
enum Seen {
    ConnAck(bool, u8),
    PubAck(u16),
    SubAck(u16, [u8; 8], usize),
    UnsubAck(u16),
    Other,
}

impl<'b, T: Transport, H: FnMut(&Message<'_>)> Client<'b, T, H> {
    /// A client with its buffers, a millisecond clock and the message handler.
    pub fn new(tx: &'b mut [u8], rx: &'b mut [u8], clock: fn() -> u64, on_message: H) -> Self {
        Client {
            transport: None,
            tx,
            rx,
            have: 0,
            next_id: 1,
            keep_alive_ms: 0,
            last_sent_ms: 0,
            ping_sent_ms: None,
            clock,
            timing: Timing::default(),
            on_message,
        }
    }

    /// The client's clock, in milliseconds: for callers that wait on it.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn set_timing(&mut self, t: Timing) {
        self.timing = t;
    }

    /// Connects over `transport` (already connected to the broker); returns whether the
    /// broker had a session for this client.
    pub fn connect(
        &mut self,
        transport: T,
        c: &Connect<'_>,
        timeout_ms: u32,
    ) -> Result<bool, Error> {
        self.transport = Some(transport);
        self.have = 0;
        self.ping_sent_ms = None;
        self.keep_alive_ms = c.keep_alive as u64 * 1000;
        let n = codec::connect(self.tx, c)?;
        self.send(n)?;
        match self.wait(timeout_ms, |s| matches!(s, Seen::ConnAck(..)))? {
            Seen::ConnAck(present, 0) => Ok(present),
            Seen::ConnAck(_, code) => {
                self.transport = None;
                Err(Error::Refused(code))
            }
            _ => Err(Error::Protocol),
        }
    }

    /// Whether there is a connection (not known to be broken).
    pub fn is_connected(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends DISCONNECT (the will is not published) and drops the transport.
    pub fn disconnect(&mut self) -> Result<(), Error> {
        let n = codec::disconnect(self.tx)?;
        let r = self.send(n);
        self.transport = None;
        r
    }

    fn id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = if id == u16::MAX { 1 } else { id + 1 };
        id
    }

    fn send(&mut self, n: usize) -> Result<(), Error> {
        let t = self.transport.as_mut().ok_or(Error::NotConnected)?;
        if let Err(e) = t.send_all(&self.tx[..n], 5_000) {
            self.transport = None;
            return Err(e.into());
        }
        self.last_sent_ms = (self.clock)();
        Ok(())
    }

    /// Publishes; for QoS 1, waits for the acknowledgement, sending again (DUP) up to
    /// `retries` times.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        if qos == QoS::AtMostOnce {
            let n = codec::publish(self.tx, topic, payload, qos, retain, false, None)?;
            return self.send(n);
        }
        let id = self.id();
        for attempt in 0..=self.timing.retries {
            let n = codec::publish(self.tx, topic, payload, qos, retain, attempt > 0, Some(id))?;
            self.send(n)?;
            match self.wait(
                self.timing.ack_timeout_ms,
                |s| matches!(s, Seen::PubAck(i) if *i == id),
            ) {
                Ok(_) => return Ok(()),
                Err(Error::Transport(fqp_transport::Error::Timeout)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::NoAck)
    }

    /// Subscribes to `filters`; returns the QoS the broker granted each.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<[Option<QoS>; 8], Error> {
        if filters.len() > 8 {
            return Err(Error::TooLong);
        }
        let id = self.id();
        let n = codec::subscribe(self.tx, id, filters)?;
        self.send(n)?;
        match self.wait_retrying(n, |s| matches!(s, Seen::SubAck(i, ..) if *i == id))? {
            Seen::SubAck(_, codes, count) if count == filters.len() => {
                let mut granted = [None; 8];
                for (g, c) in granted.iter_mut().zip(&codes[..count]) {
                    *g = match c {
                        0 => Some(QoS::AtMostOnce),
                        1 | 2 => Some(QoS::AtLeastOnce),
                        _ => return Err(Error::SubscriptionRefused),
                    };
                }
                Ok(granted)
            }
            _ => Err(Error::Protocol),
        }
    }

    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<(), Error> {
        let id = self.id();
        let n = codec::unsubscribe(self.tx, id, filters)?;
        self.send(n)?;
        self.wait_retrying(n, |s| matches!(s, Seen::UnsubAck(i) if *i == id))
            .map(|_| ())
    }

    /// Sends the packet in `tx[..n]` again until its acknowledgement comes.
    fn wait_retrying(&mut self, n: usize, want: impl Fn(&Seen) -> bool) -> Result<Seen, Error> {
        for attempt in 0..=self.timing.retries {
            if attempt > 0 {
                self.send(n)?;
            }
            match self.wait(self.timing.ack_timeout_ms, &want) {
                Err(Error::Transport(fqp_transport::Error::Timeout)) => continue,
                other => return other,
            }
        }
        Err(Error::NoAck)
    }

    /// Waits up to `timeout_ms` for a packet and handles it (a message goes to the handler);
    /// returns as soon as one was handled, or when the time is up. Keeps the connection
    /// alive: call it regularly.
    pub fn poll(&mut self, timeout_ms: u32) -> Result<(), Error> {
        match self.wait(timeout_ms, |_| true) {
            Err(Error::Transport(fqp_transport::Error::Timeout)) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// Polls until `f` takes a message from `mailbox` (where this client's handler leaves
    /// them), up to `timeout_ms`: what `f` returned, or `None` when the time is up.
    pub fn wait_for<R, const N: usize, const B: usize>(
        &mut self,
        mailbox: &Mailbox<N, B>,
        timeout_ms: u32,
        mut f: impl FnMut(&str, &[u8]) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        let start = (self.clock)();
        loop {
            if let Some(r) = mailbox.take(&mut f) {
                return Ok(Some(r));
            }
            let waited = (self.clock)().saturating_sub(start);
            if waited >= u64::from(timeout_ms) {
                return Ok(None);
            }
            self.poll((u64::from(timeout_ms) - waited).min(100) as u32)?;
        }
    }

    /// Reads and handles packets until one satisfies `want` (returned) or `timeout_ms`
    /// passes (a transport timeout). Sends pings as keep-alive requires.
    fn wait(&mut self, timeout_ms: u32, want: impl Fn(&Seen) -> bool) -> Result<Seen, Error> {
        let start = (self.clock)();
        loop {
            self.keep_alive()?;
            if let Some(seen) = self.handle_buffered()? {
                if want(&seen) {
                    return Ok(seen);
                }
                continue;
            }
            let elapsed = (self.clock)().saturating_sub(start);
            if elapsed >= timeout_ms as u64 {
                return Err(Error::Transport(fqp_transport::Error::Timeout));
            }
            let slice = (timeout_ms as u64 - elapsed).min(100) as u32;
            let t = self.transport.as_mut().ok_or(Error::NotConnected)?;
            if self.have == self.rx.len() {
                return Err(Error::BufferTooSmall);
            }
            match t.recv(&mut self.rx[self.have..], slice) {
                Ok(0) => {
                    self.transport = None;
                    return Err(Error::Transport(fqp_transport::Error::Closed));
                }
                Ok(n) => self.have += n,
                Err(fqp_transport::Error::Timeout) => {}
                Err(e) => {
                    self.transport = None;
                    return Err(e.into());
                }
            }
        }
    }

    fn keep_alive(&mut self) -> Result<(), Error> {
        if self.keep_alive_ms == 0 || self.transport.is_none() {
            return Ok(());
        }
        let now = (self.clock)();
        if let Some(sent) = self.ping_sent_ms {
            if now.saturating_sub(sent) > self.keep_alive_ms {
                self.transport = None;
                return Err(Error::PingTimeout);
            }
        } else if now.saturating_sub(self.last_sent_ms) >= self.keep_alive_ms * 3 / 4 {
            let n = codec::pingreq(self.tx)?;
            self.send(n)?;
            self.ping_sent_ms = Some(now);
        }
        Ok(())
    }

    /// Handles one whole packet at the start of `rx`, if there is one.
    fn handle_buffered(&mut self) -> Result<Option<Seen>, Error> {
        let Some((first, h, len)) = codec::header(&self.rx[..self.have])? else {
            return Ok(None);
        };
        if h + len > self.rx.len() {
            return Err(Error::BufferTooSmall);
        }
        if self.have < h + len {
            return Ok(None);
        }
        let mut ack = None;
        let seen = match codec::decode(first, &self.rx[h..h + len])? {
            Packet::ConnAck {
                session_present,
                code,
            } => Seen::ConnAck(session_present, code),
            Packet::PubAck { id } => Seen::PubAck(id),
            Packet::SubAck { id, codes } => {
                let mut c = [0u8; 8];
                let k = codes.len().min(8);
                c[..k].copy_from_slice(&codes[..k]);
                Seen::SubAck(id, c, codes.len())
            }
            Packet::UnsubAck { id } => Seen::UnsubAck(id),
            Packet::PingResp => {
                self.ping_sent_ms = None;
                Seen::Other
            }
            Packet::Publish(m) => {
                (self.on_message)(&m);
                ack = m.id;
                Seen::Other
            }
        };
        self.rx.copy_within(h + len..self.have, 0);
        self.have -= h + len;
        if let Some(id) = ack {
            let n = codec::puback(self.tx, id)?;
            self.send(n)?;
        }
        Ok(Some(seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use std::collections::VecDeque;
    use std::vec::Vec;

    std::thread_local! {
        static NOW: Cell<u64> = const { Cell::new(0) };
    }

    fn clock() -> u64 {
        NOW.with(Cell::get)
    }

    /// A scripted broker: answers each packet the client sends with `respond`, and lets time
    /// pass when the client waits for nothing.
    struct Broker {
        sent: Vec<Vec<u8>>,
        inbox: VecDeque<u8>,
        respond: fn(&[u8], usize) -> Vec<u8>,
    }

    impl Transport for Broker {
        fn send(&mut self, data: &[u8], _: u32) -> Result<usize, fqp_transport::Error> {
            let reply = (self.respond)(data, self.sent.len());
            self.sent.push(data.to_vec());
            self.inbox.extend(reply);
            Ok(data.len())
        }

        fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
            if self.inbox.is_empty() {
                NOW.with(|n| n.set(n.get() + timeout_ms as u64));
                return Err(fqp_transport::Error::Timeout);
            }
            let k = buf.len().min(self.inbox.len()).min(5); // arrive in small pieces
            for b in buf.iter_mut().take(k) {
                *b = self.inbox.pop_front().unwrap();
            }
            Ok(k)
        }
    }

    fn broker(respond: fn(&[u8], usize) -> Vec<u8>) -> Broker {
        Broker {
            sent: Vec::new(),
            inbox: VecDeque::new(),
            respond,
        }
    }

    const CONNACK_OK: [u8; 4] = [0x20, 2, 0, 0];

    fn opts(keep_alive: u16) -> Connect<'static> {
        Connect {
            client_id: "t",
            clean_session: true,
            keep_alive,
            username: None,
            password: None,
            will: None,
        }
    }

    #[test]
    fn connect_reports_refusal_codes() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        assert_eq!(
            c.connect(broker(|_, _| CONNACK_OK.to_vec()), &opts(0), 1000),
            Ok(false)
        );
        assert!(c.is_connected());
        let refused = broker(|_, _| std::vec![0x20, 2, 0, 5]);
        assert_eq!(c.connect(refused, &opts(0), 1000), Err(Error::Refused(5)));
        assert!(!c.is_connected());
    }

    #[test]
    fn qos1_publish_is_sent_again_with_dup_until_acknowledged() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        // CONNACK; no answer to the first PUBLISH; PUBACK for the second.
        let b = broker(|p, n| match (p[0] >> 4, n) {
            (1, _) => CONNACK_OK.to_vec(),
            (3, 1) => Vec::new(),
            (3, _) => std::vec![0x40, 2, p[p.len() - 4], p[p.len() - 3]],
            _ => Vec::new(),
        });
        c.connect(b, &opts(0), 1000).unwrap();
        c.publish("a/b", b"hi", QoS::AtLeastOnce, false).unwrap();
        let t = c.transport.as_ref().unwrap();
        assert_eq!(t.sent.len(), 3);
        assert_eq!(t.sent[1][0], 0x32, "first: QoS 1, no DUP");
        assert_eq!(t.sent[2][0], 0x3A, "retry: DUP set");
        assert_eq!(t.sent[1][2..], t.sent[2][2..], "same id and payload");
    }

    #[test]
    fn qos1_publish_gives_up_after_the_retries() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        c.set_timing(Timing {
            ack_timeout_ms: 100,
            retries: 2,
        });
        c.connect(
            broker(|p, _| {
                if p[0] >> 4 == 1 {
                    CONNACK_OK.to_vec()
                } else {
                    Vec::new()
                }
            }),
            &opts(0),
            1000,
        )
        .unwrap();
        assert_eq!(
            c.publish("a", b"x", QoS::AtLeastOnce, false),
            Err(Error::NoAck)
        );
        assert_eq!(c.transport.as_ref().unwrap().sent.len(), 1 + 3);
    }

    #[test]
    fn incoming_messages_reach_the_handler_and_qos1_ones_are_acknowledged() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut got = Vec::new();
        let mut c = Client::new(&mut tx, &mut rx, clock, |m: &Message<'_>| {
            got.push((
                std::string::String::from(m.topic),
                m.payload.to_vec(),
                m.qos,
            ))
        });
        // After SUBSCRIBE: SUBACK, then a QoS 1 message (id 0x0102) and a QoS 0 one.
        let b = broker(|p, _| match p[0] >> 4 {
            1 => CONNACK_OK.to_vec(),
            8 => {
                let mut r = std::vec![0x90, 3, p[2], p[3], 1];
                r.extend([0x32, 9, 0, 3, b's', b'/', b'1', 1, 2, b'o', b'k']);
                r.extend([0x30, 6, 0, 3, b's', b'/', b'2', b'!']);
                r
            }
            _ => Vec::new(),
        });
        c.connect(b, &opts(0), 1000).unwrap();
        let granted = c.subscribe(&[("s/+", QoS::AtLeastOnce)]).unwrap();
        assert_eq!(granted[0], Some(QoS::AtLeastOnce));
        // Each poll handles one packet as soon as it is there.
        c.poll(200).unwrap();
        c.poll(200).unwrap();
        let sent = c.transport.as_ref().unwrap().sent.clone();
        assert_eq!(
            sent.last().unwrap(),
            &std::vec![0x40, 2, 1, 2],
            "PUBACK for id 0x0102"
        );
        drop(c);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ("s/1".into(), b"ok".to_vec(), QoS::AtLeastOnce));
        assert_eq!(got[1], ("s/2".into(), b"!".to_vec(), QoS::AtMostOnce));
    }

    #[test]
    fn refused_subscription_is_an_error() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        let b = broker(|p, _| match p[0] >> 4 {
            1 => CONNACK_OK.to_vec(),
            8 => std::vec![0x90, 3, p[2], p[3], 0x80],
            _ => Vec::new(),
        });
        c.connect(b, &opts(0), 1000).unwrap();
        assert_eq!(
            c.subscribe(&[("x/#", QoS::AtMostOnce)]),
            Err(Error::SubscriptionRefused)
        );
    }

    #[test]
    fn idle_connections_ping_and_a_silent_broker_is_noticed() {
        let (mut tx, mut rx) = ([0u8; 256], [0u8; 256]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        // Answers pings only the first time.
        let b = broker(|p, n| match (p[0] >> 4, n) {
            (1, _) => CONNACK_OK.to_vec(),
            (12, 1) => std::vec![0xD0, 0],
            _ => Vec::new(),
        });
        c.connect(b, &opts(10), 1000).unwrap();
        // 10 s keep-alive: a ping after 7.5 s idle, answered.
        c.poll(8_000).unwrap();
        assert_eq!(c.transport.as_ref().unwrap().sent[1], std::vec![0xC0, 0]);
        // The next ping is not answered: after the keep-alive period, the broker is dead.
        let mut r = Ok(());
        for _ in 0..30 {
            r = c.poll(1_000);
            if r.is_err() {
                break;
            }
        }
        assert_eq!(r, Err(Error::PingTimeout));
        assert!(!c.is_connected());
    }

    #[test]
    fn a_packet_larger_than_the_receive_buffer_is_reported() {
        let (mut tx, mut rx) = ([0u8; 64], [0u8; 16]);
        let mut c = Client::new(&mut tx, &mut rx, clock, |_| {});
        let b = broker(|p, _| match p[0] >> 4 {
            1 => {
                let mut r = CONNACK_OK.to_vec();
                r.extend([0x30, 40, 0, 1, b't']);
                r.extend([b'x'; 37]);
                r
            }
            _ => Vec::new(),
        });
        c.connect(b, &opts(0), 1000).unwrap();
        assert_eq!(c.poll(100), Err(Error::BufferTooSmall));
    }
}
