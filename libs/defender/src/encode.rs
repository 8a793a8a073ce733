//! A metrics report written as the contract has it: JSON or CBOR, long or short names.

use crate::{Encoding, Error, Metrics, Names};
use core::fmt::Write;

/// A field's long and short name.
type Name = (&'static str, &'static str);

const HEADER: Name = ("header", "hed");
const REPORT_ID: Name = ("report_id", "rid");
const VERSION: Name = ("version", "v");
const METRICS: Name = ("metrics", "met");
const TCP_PORTS: Name = ("listening_tcp_ports", "tp");
const UDP_PORTS: Name = ("listening_udp_ports", "up");
const PORTS: Name = ("ports", "pts");
const PORT: Name = ("port", "pt");
const TOTAL: Name = ("total", "t");
const NET_STATS: Name = ("network_stats", "ns");
const STATS: [Name; 4] = [
    ("bytes_in", "bi"),
    ("bytes_out", "bo"),
    ("packets_in", "pi"),
    ("packets_out", "po"),
];
const CONNECTIONS: Name = ("tcp_connections", "tc");
const ESTABLISHED: Name = ("established_connections", "ec");
const CONNS: Name = ("connections", "cs");
const REMOTE: Name = ("remote_addr", "rad");
const LOCAL_PORT: Name = ("local_port", "lp");

fn pick(n: Name, names: Names) -> &'static str {
    match names {
        Names::Long => n.0,
        Names::Short => n.1,
    }
}

/// Writes `m` as report `id` into `buf`; the bytes written.
pub fn report(
    m: &Metrics<'_>,
    id: u64,
    encoding: Encoding,
    names: Names,
    buf: &mut [u8],
) -> Result<usize, Error> {
    match encoding {
        Encoding::Json => json(m, id, names, buf),
        Encoding::Cbor => cbor(m, id, names, buf).map_err(|_| Error::TooLong),
    }
}

/// A `fmt::Write` over a byte slice.
struct Slice<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Write for Slice<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.at + s.len();
        self.buf
            .get_mut(self.at..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

fn json(m: &Metrics<'_>, id: u64, names: Names, buf: &mut [u8]) -> Result<usize, Error> {
    let n = |x: Name| pick(x, names);
    let mut w = Slice { buf, at: 0 };
    let ports = |w: &mut Slice<'_>, key: Name, list: &[u16]| -> core::fmt::Result {
        write!(w, "\"{}\":{{\"{}\":[", n(key), n(PORTS))?;
        for (i, p) in list.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            write!(w, "{comma}{{\"{}\":{p}}}", n(PORT))?;
        }
        write!(w, "],\"{}\":{}}}", n(TOTAL), list.len())
    };
    let body = |w: &mut Slice<'_>| -> core::fmt::Result {
        write!(
            w,
            "{{\"{}\":{{\"{}\":{id},\"{}\":\"1.0\"}}",
            n(HEADER),
            n(REPORT_ID),
            n(VERSION)
        )?;
        write!(w, ",\"{}\":{{", n(METRICS))?;
        ports(w, TCP_PORTS, m.tcp_ports)?;
        w.write_char(',')?;
        ports(w, UDP_PORTS, m.udp_ports)?;
        if let Some(s) = m.stats {
            let v = [s.bytes_in, s.bytes_out, s.packets_in, s.packets_out];
            write!(w, ",\"{}\":{{", n(NET_STATS))?;
            for (i, (k, v)) in STATS.iter().zip(v).enumerate() {
                let comma = if i > 0 { "," } else { "" };
                write!(w, "{comma}\"{}\":{v}", n(*k))?;
            }
            w.write_char('}')?;
        }
        write!(
            w,
            ",\"{}\":{{\"{}\":{{\"{}\":[",
            n(CONNECTIONS),
            n(ESTABLISHED),
            n(CONNS)
        )?;
        for (i, c) in m.connections.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            write!(
                w,
                "{comma}{{\"{}\":\"{}\",\"{}\":{}}}",
                n(REMOTE),
                c.remote,
                n(LOCAL_PORT),
                c.local_port
            )?;
        }
        write!(w, "],\"{}\":{}}}}}}}}}", n(TOTAL), m.connections.len())
    };
    body(&mut w).map_err(|_| Error::TooLong)?;
    Ok(w.at)
}

type Enc<'b> = minicbor::Encoder<minicbor::encode::write::Cursor<&'b mut [u8]>>;
type CborResult = Result<(), minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>;

fn cbor_ports(e: &mut Enc<'_>, names: Names, list: &[u16]) -> CborResult {
    e.map(2)?
        .str(pick(PORTS, names))?
        .array(list.len() as u64)?;
    for p in list {
        e.map(1)?.str(pick(PORT, names))?.u16(*p)?;
    }
    e.str(pick(TOTAL, names))?.u64(list.len() as u64)?;
    Ok(())
}

fn cbor(
    m: &Metrics<'_>,
    id: u64,
    names: Names,
    buf: &mut [u8],
) -> Result<usize, minicbor::encode::Error<minicbor::encode::write::EndOfSlice>> {
    let n = |x: Name| pick(x, names);
    let mut e = minicbor::Encoder::new(minicbor::encode::write::Cursor::new(buf));
    e.map(2)?;
    e.str(n(HEADER))?
        .map(2)?
        .str(n(REPORT_ID))?
        .u64(id)?
        .str(n(VERSION))?
        .str("1.0")?;
    let sections = 3 + u64::from(m.stats.is_some());
    e.str(n(METRICS))?.map(sections)?;
    e.str(n(TCP_PORTS))?;
    cbor_ports(&mut e, names, m.tcp_ports)?;
    e.str(n(UDP_PORTS))?;
    cbor_ports(&mut e, names, m.udp_ports)?;
    if let Some(s) = m.stats {
        e.str(n(NET_STATS))?.map(4)?;
        for (k, v) in STATS
            .iter()
            .zip([s.bytes_in, s.bytes_out, s.packets_in, s.packets_out])
        {
            e.str(n(*k))?.u64(v)?;
        }
    }
    e.str(n(CONNECTIONS))?.map(1)?.str(n(ESTABLISHED))?.map(2)?;
    e.str(n(CONNS))?.array(m.connections.len() as u64)?;
    for c in m.connections {
        let mut addr = [0u8; 24];
        let mut w = Slice {
            buf: &mut addr,
            at: 0,
        };
        // An IPv4 address and port always fit 21 bytes.
        let _ = write!(w, "{}", c.remote);
        let at = w.at;
        let text = core::str::from_utf8(&addr[..at]).unwrap_or("");
        e.map(2)?
            .str(n(REMOTE))?
            .str(text)?
            .str(n(LOCAL_PORT))?
            .u16(c.local_port)?;
    }
    e.str(n(TOTAL))?.u64(m.connections.len() as u64)?;
    Ok(e.writer().position())
}
