//! # fqp-defender: the Device Defender agent
//!
//! The device's side of Device Defender's device-side metrics
//! (`shared/reference/cloud-contract.md`): what the device's network is doing — TCP and UDP
//! ports listening, connections established, bytes and packets in and out — written as a
//! metrics report (JSON or CBOR, long or short names: [`encode`]) and published on
//! `$aws/things/<thing>/defender/metrics/{json,cbor}` on a period ([`Agent`]), each answer
//! (accepted, or rejected with the cloud's reason) awaited. No heap: the caller lends the
//! buffers.
//!
//! The figures come from fqp-net ([`collect`], feature `fqp-net`); a port with its own stack
//! fills [`Metrics`] itself.

#![no_std]

pub mod encode;

use fqp_iot::Text;
use fqp_mqtt::{Client, Mailbox, Message, QoS};
use fqp_transport::Transport;

/// What went wrong: [`fqp_iot::Error::Rejected`] carries the cloud's reason.
pub type Error = fqp_iot::Error<Refusal>;

/// The cloud's reason for refusing a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: Text<24>,
    pub message: Text<72>,
}

/// How a report is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Cbor,
}

/// Which field names a report uses (short ones make a smaller report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Long,
    Short,
}

/// Interface counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// An established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub remote: core::net::SocketAddrV4,
    pub local_port: u16,
}

/// What a report tells.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics<'a> {
    pub tcp_ports: &'a [u16],
    pub udp_ports: &'a [u16],
    pub stats: Option<Stats>,
    pub connections: &'a [Connection],
}

/// Room for what [`collect`] gathers: up to 8 of each list.
#[derive(Debug, Default)]
pub struct Gathered {
    tcp: [u16; 8],
    udp: [u16; 8],
    connections: [Connection; 8],
    /// How many of `tcp`, `udp`, `connections` are filled.
    lens: [usize; 3],
    stats: Option<Stats>,
}

impl Gathered {
    /// The metrics gathered.
    pub fn metrics(&self) -> Metrics<'_> {
        Metrics {
            tcp_ports: &self.tcp[..self.lens[0]],
            udp_ports: &self.udp[..self.lens[1]],
            stats: self.stats,
            connections: &self.connections[..self.lens[2]],
        }
    }
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            remote: core::net::SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0),
            local_port: 0,
        }
    }
}

/// Gathers the device's metrics from fqp-net into `into`.
#[cfg(feature = "fqp-net")]
pub fn collect(into: &mut Gathered) {
    into.lens[0] = fqp_net::listening_tcp(&mut into.tcp).min(8);
    into.lens[1] = fqp_net::listening_udp(&mut into.udp).min(8);
    let mut conns = [fqp_net::Connection {
        remote: core::net::SocketAddrV4::new(core::net::Ipv4Addr::UNSPECIFIED, 0),
        local_port: 0,
    }; 8];
    let n = fqp_net::connections(&mut conns).min(8);
    into.lens[2] = n;
    for (slot, c) in into.connections.iter_mut().zip(&conns[..n]) {
        *slot = Connection {
            remote: c.remote,
            local_port: c.local_port,
        };
    }
    into.stats = fqp_net::stats().map(|s| Stats {
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        packets_in: s.packets_in,
        packets_out: s.packets_out,
    });
}

/// Longest topic: a 128-byte thing name and `defender/metrics/json/accepted`.
pub const MAX_TOPIC: usize = 12 + 128 + 32;

/// Reports a thing's metrics on a period.
#[derive(Debug, Clone)]
pub struct Agent<'a> {
    pub thing: &'a str,
    pub encoding: Encoding,
    pub names: Names,
    /// How often to report.
    pub period_ms: u64,
    next_id: u64,
    last_ms: Option<u64>,
}

#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(rename = "reportId", default)]
    report_id: Option<u64>,
    #[serde(rename = "statusDetails", borrow, default)]
    details: Option<Details<'a>>,
}

#[derive(serde::Deserialize)]
struct Details<'a> {
    #[serde(rename = "ErrorCode", borrow)]
    code: &'a str,
    #[serde(rename = "ErrorMessage", borrow, default)]
    message: Option<&'a str>,
}

impl<'a> Agent<'a> {
    /// An agent for `thing` whose first report has id `first_id` (report ids must grow: a
    /// device that restarts should start from its clock or a stored counter).
    pub fn new(
        thing: &'a str,
        encoding: Encoding,
        names: Names,
        period_ms: u64,
        first_id: u64,
    ) -> Self {
        Agent {
            thing,
            encoding,
            names,
            period_ms,
            next_id: first_id,
            last_ms: None,
        }
    }

    fn word(&self) -> &'static str {
        match self.encoding {
            Encoding::Json => "json",
            Encoding::Cbor => "cbor",
        }
    }

    /// Subscribes (QoS 1) to the answers to this agent's reports.
    pub fn subscribe<T: Transport, H: FnMut(&Message<'_>)>(
        &self,
        mqtt: &mut Client<'_, T, H>,
    ) -> Result<(), Error> {
        let mut buf = [0u8; MAX_TOPIC];
        let f = fqp_iot::thing_topic(
            self.thing,
            &["defender", "metrics", self.word(), "+"],
            &mut buf,
        )?;
        fqp_iot::subscribe(mqtt, &[f])
    }

    /// Whether a report is due at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        self.last_ms
            .is_none_or(|l| now_ms.saturating_sub(l) >= self.period_ms)
    }

    /// Publishes `report` (bytes already encoded, e.g. by [`Self::encode`]) and waits up to
    /// `timeout_ms` for the cloud's answer.
    pub fn send<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        id: u64,
        report: &[u8],
        timeout_ms: u32,
    ) -> Result<u64, Error>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let mut buf = [0u8; MAX_TOPIC];
        let word = self.word();
        let topic = fqp_iot::thing_topic(self.thing, &["defender", "metrics", word], &mut buf)?;
        let tlen = topic.len();
        mqtt.publish(topic, report, QoS::AtMostOnce, false)?;
        self.last_ms = Some(mqtt.now_ms());
        let topic = core::str::from_utf8(&buf[..tlen]).unwrap_or("");
        let answer = mqtt.wait_for(mailbox, timeout_ms, |t, payload| {
            let accepted = match t.strip_prefix(topic)? {
                "/accepted" => true,
                "/rejected" => false,
                _ => return None,
            };
            let r = decode_answer(payload, self.encoding)?;
            (r.0.is_none_or(|rid| rid == id)).then_some((accepted, r.1))
        })?;
        match answer {
            None => Err(Error::Timeout),
            Some((true, _)) => Ok(id),
            Some((false, refusal)) => Err(Error::Rejected(refusal)),
        }
    }

    /// Encodes `metrics` as the next report into `buf`: its id and bytes.
    pub fn encode<'b>(
        &mut self,
        metrics: &Metrics<'_>,
        buf: &'b mut [u8],
    ) -> Result<(u64, &'b [u8]), Error> {
        let id = self.next_id;
        let n = encode::report(metrics, id, self.encoding, self.names, buf)?;
        self.next_id += 1;
        Ok((id, &buf[..n]))
    }

    /// Encodes and sends `metrics` as the next report: its id once accepted.
    pub fn report<T, H, const N: usize, const B: usize>(
        &mut self,
        mqtt: &mut Client<'_, T, H>,
        mailbox: &Mailbox<N, B>,
        metrics: &Metrics<'_>,
        buf: &mut [u8],
        timeout_ms: u32,
    ) -> Result<u64, Error>
    where
        T: Transport,
        H: FnMut(&Message<'_>),
    {
        let (id, bytes) = self.encode(metrics, buf)?;
        self.send(mqtt, mailbox, id, bytes, timeout_ms)
    }
}

/// An answer's report id and, for a refusal, the reason.
fn decode_answer(payload: &[u8], encoding: Encoding) -> Option<(Option<u64>, Refusal)> {
    match encoding {
        Encoding::Json => {
            let (a, _) = serde_json_core::from_slice::<Answer<'_>>(payload).ok()?;
            let (code, message) = a
                .details
                .map_or(("", ""), |d| (d.code, d.message.unwrap_or("")));
            Some((
                a.report_id,
                Refusal {
                    code: Text::new(code),
                    message: Text::new(message),
                },
            ))
        }
        Encoding::Cbor => decode_cbor_answer(payload),
    }
}

fn decode_cbor_answer(payload: &[u8]) -> Option<(Option<u64>, Refusal)> {
    let mut d = minicbor::Decoder::new(payload);
    let n = d.map().ok()??;
    let (mut id, mut code, mut message) = (None, "", "");
    for _ in 0..n {
        match d.str().ok()? {
            "reportId" => id = d.u64().ok(),
            "statusDetails" => {
                let m = d.map().ok()??;
                for _ in 0..m {
                    match d.str().ok()? {
                        "ErrorCode" => code = d.str().ok()?,
                        "ErrorMessage" => message = d.str().ok()?,
                        _ => d.skip().ok()?,
                    }
                }
            }
            _ => d.skip().ok()?,
        }
    }
    Some((
        id,
        Refusal {
            code: Text::new(code),
            message: Text::new(message),
        },
    ))
}
