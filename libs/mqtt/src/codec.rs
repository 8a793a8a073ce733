//! MQTT 3.1.1 packets: encoding into a caller's buffer, decoding in place (no copies, no heap).

use crate::Error;

/// Packet types (the high nibble of the first byte).
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// Largest remaining length MQTT can express.
pub const MAX_REMAINING: usize = 268_435_455;

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
}

impl QoS {
    fn from_bits(b: u8) -> Result<QoS, Error> {
        match b {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(Error::Protocol),
        }
    }
}

/// The last will: published by the broker if the client disappears.
#[derive(Debug, Clone, Copy)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
}

/// What CONNECT carries.
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    /// Start a new session (forget subscriptions and queued messages).
    pub clean_session: bool,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub will: Option<Will<'a>>,
}

/// A received PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// Present for QoS 1.
    pub id: Option<u16>,
}

/// A decoded packet (those a client receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    ConnAck { session_present: bool, code: u8 },
    Publish(Publish<'a>),
    PubAck { id: u16 },
    SubAck { id: u16, codes: &'a [u8] },
    UnsubAck { id: u16 },
    PingResp,
}

/// Writes into a buffer, failing with [`Error::BufferTooSmall`] instead of panicking.
struct Out<'b> {
    buf: &'b mut [u8],
    n: usize,
}

impl Out<'_> {
    fn byte(&mut self, b: u8) -> Result<(), Error> {
        *self.buf.get_mut(self.n).ok_or(Error::BufferTooSmall)? = b;
        self.n += 1;
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.n + b.len();
        self.buf
            .get_mut(self.n..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(b);
        self.n = end;
        Ok(())
    }

    fn u16(&mut self, v: u16) -> Result<(), Error> {
        self.bytes(&v.to_be_bytes())
    }

    /// A length-prefixed string or binary field.
    fn field(&mut self, b: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(b.len()).map_err(|_| Error::TooLong)?;
        self.u16(len)?;
        self.bytes(b)
    }

    fn remaining(&mut self, mut len: usize) -> Result<(), Error> {
        if len > MAX_REMAINING {
            return Err(Error::TooLong);
        }
        loop {
            let mut b = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                b |= 0x80;
            }
            self.byte(b)?;
            if len == 0 {
                return Ok(());
            }
        }
    }
}

/// Encodes a packet: fixed header byte, then the body `len` bytes long written by `body`.
fn packet(
    buf: &mut [u8],
    first: u8,
    len: usize,
    body: impl FnOnce(&mut Out<'_>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut o = Out { buf, n: 0 };
    o.byte(first)?;
    o.remaining(len)?;
    let start = o.n;
    body(&mut o)?;
    debug_assert_eq!(o.n - start, len, "body length");
    Ok(o.n)
}

fn field_len(b: &[u8]) -> usize {
    2 + b.len()
}

pub fn connect(buf: &mut [u8], c: &Connect<'_>) -> Result<usize, Error> {
    let mut flags = 0u8;
    let mut len = 10 + field_len(c.client_id.as_bytes());
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | if w.retain { 0x20 } else { 0 };
        len += field_len(w.topic.as_bytes()) + field_len(w.payload);
    }
    if let Some(u) = c.username {
        flags |= 0x80;
        len += field_len(u.as_bytes());
    }
    if let Some(p) = c.password {
        flags |= 0x40;
        len += field_len(p);
    }
    packet(buf, CONNECT << 4, len, |o| {
        o.field(b"MQTT")?;
        o.byte(4)?; // protocol level 3.1.1
        o.byte(flags)?;
        o.u16(c.keep_alive)?;
        o.field(c.client_id.as_bytes())?;
        if let Some(w) = &c.will {
            o.field(w.topic.as_bytes())?;
            o.field(w.payload)?;
        }
        if let Some(u) = c.username {
            o.field(u.as_bytes())?;
        }
        if let Some(p) = c.password {
            o.field(p)?;
        }
        Ok(())
    })
}

/// Encodes a PUBLISH; `id` is required for QoS 1.
pub fn publish(
    buf: &mut [u8],
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    dup: bool,
    id: Option<u16>,
) -> Result<usize, Error> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(Error::InvalidTopic);
    }
    let first = (PUBLISH << 4) | ((dup as u8) << 3) | ((qos as u8) << 1) | retain as u8;
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let len = field_len(topic.as_bytes()) + id_len + payload.len();
    packet(buf, first, len, |o| {
        o.field(topic.as_bytes())?;
        if qos != QoS::AtMostOnce {
            o.u16(id.ok_or(Error::Protocol)?)?;
        }
        o.bytes(payload)
    })
}

pub fn puback(buf: &mut [u8], id: u16) -> Result<usize, Error> {
    packet(buf, PUBACK << 4, 2, |o| o.u16(id))
}

pub fn subscribe(buf: &mut [u8], id: u16, filters: &[(&str, QoS)]) -> Result<usize, Error> {
    if filters.is_empty() {
        return Err(Error::InvalidTopic);
    }
    let mut len = 2;
    for (f, _) in filters {
        if !crate::topic::valid_filter(f) {
            return Err(Error::InvalidTopic);
        }
        len += field_len(f.as_bytes()) + 1;
    }
    packet(buf, (SUBSCRIBE << 4) | 0x02, len, |o| {
        o.u16(id)?;
        for (f, q) in filters {
            o.field(f.as_bytes())?;
            o.byte(*q as u8)?;
        }
        Ok(())
    })
}

pub fn unsubscribe(buf: &mut [u8], id: u16, filters: &[&str]) -> Result<usize, Error> {
    if filters.is_empty() {
        return Err(Error::InvalidTopic);
    }
    let len = 2 + filters
        .iter()
        .map(|f| field_len(f.as_bytes()))
        .sum::<usize>();
    packet(buf, (UNSUBSCRIBE << 4) | 0x02, len, |o| {
        o.u16(id)?;
        for f in filters {
            o.field(f.as_bytes())?;
        }
        Ok(())
    })
}

pub fn pingreq(buf: &mut [u8]) -> Result<usize, Error> {
    packet(buf, PINGREQ << 4, 0, |_| Ok(()))
}

pub fn disconnect(buf: &mut [u8]) -> Result<usize, Error> {
    packet(buf, DISCONNECT << 4, 0, |_| Ok(()))
}

/// The fixed header of the packet at the start of `buf`: (first byte, header length,
/// remaining length), or `None` when more bytes are needed.
pub fn header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, Error> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((first, 2 + i, len)));
        }
    }
    Err(Error::Protocol)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, Error> {
    let s = b.get(at..at + 2).ok_or(Error::Protocol)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// Decodes one complete packet (`first` byte and its body).
pub fn decode(first: u8, body: &[u8]) -> Result<Packet<'_>, Error> {
    match first >> 4 {
        CONNACK if body.len() == 2 => Ok(Packet::ConnAck {
            session_present: body[0] & 1 == 1,
            code: body[1],
        }),
        PUBLISH => {
            let qos = QoS::from_bits((first >> 1) & 3)?;
            let tlen = u16_at(body, 0)? as usize;
            let topic = body.get(2..2 + tlen).ok_or(Error::Protocol)?;
            let topic = core::str::from_utf8(topic).map_err(|_| Error::Protocol)?;
            let mut at = 2 + tlen;
            let id = if qos == QoS::AtMostOnce {
                None
            } else {
                at += 2;
                Some(u16_at(body, at - 2)?)
            };
            Ok(Packet::Publish(Publish {
                topic,
                payload: body.get(at..).ok_or(Error::Protocol)?,
                qos,
                retain: first & 1 == 1,
                dup: first & 0x08 != 0,
                id,
            }))
        }
        PUBACK if body.len() == 2 => Ok(Packet::PubAck {
            id: u16_at(body, 0)?,
        }),
        SUBACK if body.len() >= 3 => Ok(Packet::SubAck {
            id: u16_at(body, 0)?,
            codes: &body[2..],
        }),
        UNSUBACK if body.len() == 2 => Ok(Packet::UnsubAck {
            id: u16_at(body, 0)?,
        }),
        PINGRESP if body.is_empty() => Ok(Packet::PingResp),
        _ => Err(Error::Protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn whole(buf: &[u8]) -> Packet<'_> {
        let (first, h, len) = header(buf).unwrap().unwrap();
        assert_eq!(h + len, buf.len(), "one whole packet");
        decode(first, &buf[h..]).unwrap()
    }

    #[test]
    fn remaining_length_uses_one_to_four_bytes() {
        for (len, bytes) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_152, 4),
        ] {
            let mut o = Out {
                buf: &mut [0u8; 4],
                n: 0,
            };
            o.remaining(len).unwrap();
            assert_eq!(o.n, bytes, "{len}");
            let mut hdr = [0u8; 5];
            hdr[1..1 + bytes].copy_from_slice(&o.buf[..bytes]);
            assert_eq!(header(&hdr).unwrap(), Some((0, 1 + bytes, len)));
        }
        let mut o = Out {
            buf: &mut [0u8; 4],
            n: 0,
        };
        assert_eq!(o.remaining(MAX_REMAINING + 1), Err(Error::TooLong));
        assert_eq!(header(&[0x30, 0x80]), Ok(None), "needs more bytes");
        assert_eq!(
            header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Error::Protocol)
        );
    }

    #[test]
    fn connect_matches_the_spec_example_layout() {
        let mut buf = [0u8; 128];
        let n = connect(
            &mut buf,
            &Connect {
                client_id: "dev1",
                clean_session: true,
                keep_alive: 60,
                username: Some("u"),
                password: Some(b"p"),
                will: Some(Will {
                    topic: "w",
                    payload: b"gone",
                    qos: QoS::AtLeastOnce,
                    retain: true,
                }),
            },
        )
        .unwrap();
        let expected: &[u8] = &[
            0x10,
            31,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0b1110_1110,
            0,
            60,
            0,
            4,
            b'd',
            b'e',
            b'v',
            b'1',
            0,
            1,
            b'w',
            0,
            4,
            b'g',
            b'o',
            b'n',
            b'e',
            0,
            1,
            b'u',
            0,
            1,
            b'p',
        ];
        assert_eq!(&buf[..n], expected);
    }

    #[test]
    fn publish_round_trips_and_large_payloads_fit() {
        let mut buf = vec![0u8; 70 * 1024];
        let payload = vec![0x5A; 64 * 1024];
        let n = publish(
            &mut buf,
            "a/b",
            &payload,
            QoS::AtLeastOnce,
            true,
            true,
            Some(7),
        )
        .unwrap();
        match whole(&buf[..n]) {
            Packet::Publish(p) => {
                assert_eq!(
                    (p.topic, p.qos, p.retain, p.dup, p.id),
                    ("a/b", QoS::AtLeastOnce, true, true, Some(7))
                );
                assert_eq!(p.payload, &payload[..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            publish(
                &mut [0u8; 8],
                "a/b",
                b"too long for 8",
                QoS::AtMostOnce,
                false,
                false,
                None
            ),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            publish(&mut buf, "a/+", b"", QoS::AtMostOnce, false, false, None),
            Err(Error::InvalidTopic)
        );
    }

    #[test]
    fn acks_and_control_packets() {
        assert_eq!(
            decode(0x20, &[1, 0]),
            Ok(Packet::ConnAck {
                session_present: true,
                code: 0
            })
        );
        assert_eq!(decode(0x40, &[0, 9]), Ok(Packet::PubAck { id: 9 }));
        assert_eq!(
            decode(0x90, &[0, 3, 1, 0x80]),
            Ok(Packet::SubAck {
                id: 3,
                codes: &[1, 0x80]
            })
        );
        assert_eq!(decode(0xB0, &[0, 4]), Ok(Packet::UnsubAck { id: 4 }));
        assert_eq!(decode(0xD0, &[]), Ok(Packet::PingResp));
        assert_eq!(
            decode(0x36, &[0, 1, b'x']),
            Err(Error::Protocol),
            "QoS 3 is not a QoS"
        );
        let mut buf = [0u8; 64];
        let n = subscribe(
            &mut buf,
            5,
            &[("s/+/t", QoS::AtLeastOnce), ("all/#", QoS::AtMostOnce)],
        )
        .unwrap();
        assert_eq!(&buf[..4], &[0x82, (n - 2) as u8, 0, 5]);
        assert_eq!(
            subscribe(&mut buf, 5, &[("bad/#/x", QoS::AtMostOnce)]),
            Err(Error::InvalidTopic)
        );
        let n = unsubscribe(&mut buf, 6, &["s/+/t"]).unwrap();
        assert_eq!(
            &buf[..n],
            &[0xA2, 9, 0, 6, 0, 5, b's', b'/', b'+', b'/', b't']
        );
        assert_eq!(pingreq(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &[0xC0, 0]);
        let n = puback(&mut buf, 0x1234).unwrap();
        assert_eq!(&buf[..n], &[0x40, 2, 0x12, 0x34]);
        let n = disconnect(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0xE0, 0]);
    }

    /// Packets a broker sends: the corpus the fuzzer damages.
    fn seeds() -> std::vec::Vec<std::vec::Vec<u8>> {
        let mut buf = [0u8; 256];
        let mut seeds = std::vec![
            std::vec![0x20, 2, 1, 0],
            std::vec![0x40, 2, 0x12, 0x34],
            std::vec![0x90, 4, 0, 7, 1, 0x80],
            std::vec![0xB0, 2, 0, 9],
            std::vec![0xD0, 0],
        ];
        for (qos, id) in [(QoS::AtMostOnce, None), (QoS::AtLeastOnce, Some(77))] {
            let n = publish(
                &mut buf,
                "$aws/things/t/shadow/get",
                b"{\"state\":{}}",
                qos,
                true,
                false,
                id,
            )
            .unwrap();
            seeds.push(buf[..n].to_vec());
        }
        seeds
    }

    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        /// Whatever a broker (or a man in the middle) sends, framing and decoding never panic,
        /// and what decodes stays inside the bytes received.
        #[test]
        fn fuzz_header_and_decode(input in fqp_fuzzing::inputs(seeds(), 300)) {
            if let Ok(Some((first, h, len))) = header(&input) {
                proptest::prop_assert!((2..=5).contains(&h));
                if let Some(body) = input.get(h..h.saturating_add(len)) {
                    if let Ok(Packet::Publish(p)) = decode(first, body) {
                        proptest::prop_assert!(p.topic.len() + p.payload.len() <= body.len());
                    }
                }
            }
        }
    }
}
