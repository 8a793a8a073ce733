//! Device-side metrics reports as the contract has them, in JSON or CBOR, with long or short
//! names: decoded, checked field by field, and normalised. A refusal names its reason.

use serde_json::{Map, Value};
use std::net::SocketAddrV4;

/// Largest report taken.
pub const MAX_REPORT: usize = 5 * 1024;

/// How a report came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Cbor,
}

/// A report, normalised.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub id: u64,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub stats: Option<Stats>,
    /// Established connections: remote address, local port.
    pub connections: Vec<(SocketAddrV4, Option<u16>)>,
    /// Custom metrics, as sent.
    pub custom: Map<String, Value>,
}

/// Network statistics (counters since the device started, or since its last report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// Why a report was refused: the contract's error code and a message naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// The report's id, when it could be read.
    pub id: Option<u64>,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        code: "InvalidPayload",
        message: message.into(),
        id: None,
    }
}

/// The long and short name of every field, by where it sits.
const HEADER: (&str, &str) = ("header", "hed");
const METRICS: (&str, &str) = ("metrics", "met");
const CUSTOM: (&str, &str) = ("custom_metrics", "cmet");
const REPORT_ID: (&str, &str) = ("report_id", "rid");
const VERSION: (&str, &str) = ("version", "v");
const TCP_PORTS: (&str, &str) = ("listening_tcp_ports", "tp");
const UDP_PORTS: (&str, &str) = ("listening_udp_ports", "up");
const NET_STATS: (&str, &str) = ("network_stats", "ns");
const CONNECTIONS: (&str, &str) = ("tcp_connections", "tc");
const PORTS: (&str, &str) = ("ports", "pts");
const PORT: (&str, &str) = ("port", "pt");
const INTERFACE: (&str, &str) = ("interface", "if");
const TOTAL: (&str, &str) = ("total", "t");
const ESTABLISHED: (&str, &str) = ("established_connections", "ec");
const CONNS: (&str, &str) = ("connections", "cs");
const REMOTE: (&str, &str) = ("remote_addr", "rad");
const LOCAL_PORT: (&str, &str) = ("local_port", "lp");
const LOCAL_IF: (&str, &str) = ("local_interface", "li");
const STATS: [(&str, &str); 4] = [
    ("bytes_in", "bi"),
    ("bytes_out", "bo"),
    ("packets_in", "pi"),
    ("packets_out", "po"),
];

/// Reads a report's fields with one naming (long or short), refusing unknown fields.
struct Names {
    short: bool,
}

impl Names {
    fn name(&self, (long, short): (&'static str, &'static str)) -> &'static str {
        if self.short {
            short
        } else {
            long
        }
    }

    /// `obj` as a map whose keys are all among `allowed`.
    fn map<'v>(
        &self,
        v: &'v Value,
        what: &str,
        allowed: &[(&'static str, &'static str)],
    ) -> Result<&'v Map<String, Value>, Refusal> {
        let m = v
            .as_object()
            .ok_or_else(|| invalid(format!("{what} is not a map")))?;
        for k in m.keys() {
            if !allowed.iter().any(|a| self.name(*a) == k) {
                return Err(invalid(format!("unknown field {k:?} in {what}")));
            }
        }
        Ok(m)
    }

    fn get<'v>(
        &self,
        m: &'v Map<String, Value>,
        f: (&'static str, &'static str),
    ) -> Option<&'v Value> {
        m.get(self.name(f))
    }

    fn uint(
        &self,
        m: &Map<String, Value>,
        f: (&'static str, &'static str),
    ) -> Result<Option<u64>, Refusal> {
        match self.get(m, f) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(format!("{} is not a whole number", self.name(f)))),
        }
    }
}

/// Decodes `payload` as `format` into a value.
fn decode(payload: &[u8], format: Format) -> Result<Value, Refusal> {
    let malformed = |e: String| Refusal {
        code: "MalformedPayload",
        message: e,
        id: None,
    };
    match format {
        Format::Json => {
            serde_json::from_slice(payload).map_err(|e| malformed(format!("not JSON: {e}")))
        }
        Format::Cbor => ciborium::de::from_reader::<Value, _>(payload)
            .map_err(|e| malformed(format!("not CBOR: {e}"))),
    }
}

/// Parses and checks a report.
pub fn parse(payload: &[u8], format: Format) -> Result<Report, Refusal> {
    if payload.len() > MAX_REPORT {
        return Err(Refusal {
            code: "PayloadTooLarge",
            message: format!(
                "the report is {} bytes; at most {MAX_REPORT}",
                payload.len()
            ),
            id: None,
        });
    }
    let v = decode(payload, format)?;
    let top = v
        .as_object()
        .ok_or_else(|| invalid("the report is not a map"))?;
    let short = top.contains_key("hed");
    let n = Names { short };
    let top = n.map(&v, "the report", &[HEADER, METRICS, CUSTOM])?;
    let header = n.get(top, HEADER).ok_or_else(|| {
        invalid(format!(
            "no {} (mixing long and short names?)",
            n.name(HEADER)
        ))
    })?;
    let header = n.map(header, "the header", &[REPORT_ID, VERSION])?;
    let id = n
        .uint(header, REPORT_ID)?
        .ok_or_else(|| invalid(format!("no {}", n.name(REPORT_ID))))?;
    let with_id = |mut r: Refusal| {
        r.id = Some(id);
        r
    };
    match n.get(header, VERSION).and_then(Value::as_str) {
        Some("1.0") => {}
        other => {
            return Err(with_id(invalid(format!(
                "version {other:?}: only \"1.0\" is known"
            ))))
        }
    }
    let metrics = match n.get(top, METRICS) {
        Some(m) => metrics(&n, m).map_err(with_id)?,
        None => (Vec::new(), Vec::new(), None, Vec::new()),
    };
    let custom = match n.get(top, CUSTOM) {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(with_id(invalid("custom metrics are not a map"))),
        None => Map::new(),
    };
    let (tcp_ports, udp_ports, stats, connections) = metrics;
    Ok(Report {
        id,
        tcp_ports,
        udp_ports,
        stats,
        connections,
        custom,
    })
}

type Metrics = (
    Vec<u16>,
    Vec<u16>,
    Option<Stats>,
    Vec<(SocketAddrV4, Option<u16>)>,
);

fn metrics(n: &Names, v: &Value) -> Result<Metrics, Refusal> {
    let m = n.map(
        v,
        "the metrics",
        &[TCP_PORTS, UDP_PORTS, NET_STATS, CONNECTIONS],
    )?;
    let tcp = n
        .get(m, TCP_PORTS)
        .map(|p| ports(n, p, "TCP"))
        .transpose()?;
    let udp = n
        .get(m, UDP_PORTS)
        .map(|p| ports(n, p, "UDP"))
        .transpose()?;
    let stats = match n.get(m, NET_STATS) {
        Some(s) => {
            let s = n.map(s, "the network statistics", &STATS)?;
            let f = |i: usize| n.uint(s, STATS[i]).map(Option::unwrap_or_default);
            Some(Stats {
                bytes_in: f(0)?,
                bytes_out: f(1)?,
                packets_in: f(2)?,
                packets_out: f(3)?,
            })
        }
        None => None,
    };
    let conns = n
        .get(m, CONNECTIONS)
        .map(|c| connections(n, c))
        .transpose()?;
    Ok((
        tcp.unwrap_or_default(),
        udp.unwrap_or_default(),
        stats,
        conns.unwrap_or_default(),
    ))
}

/// A port list (`{ports: [{port, interface}], total}`).
fn ports(n: &Names, v: &Value, kind: &str) -> Result<Vec<u16>, Refusal> {
    let what = format!("the listening {kind} ports");
    let m = n.map(v, &what, &[PORTS, TOTAL])?;
    let list = match n.get(m, PORTS) {
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(invalid(format!("{what}: {} is not a list", n.name(PORTS)))),
        None => &[],
    };
    let mut out = Vec::new();
    for p in list {
        let p = n.map(p, &format!("a port of {what}"), &[PORT, INTERFACE])?;
        let port = n
            .uint(p, PORT)?
            .filter(|x| (1..=65535).contains(x))
            .ok_or_else(|| invalid(format!("{what}: a port that is not 1 to 65535")))?;
        out.push(port as u16);
    }
    check_total(n, m, out.len(), &what)?;
    Ok(out)
}

fn check_total(n: &Names, m: &Map<String, Value>, len: usize, what: &str) -> Result<(), Refusal> {
    match n.uint(m, TOTAL)? {
        Some(t) if t != len as u64 => Err(invalid(format!(
            "{what}: {} says {t}, the list holds {len}",
            n.name(TOTAL)
        ))),
        _ => Ok(()),
    }
}

fn connections(n: &Names, v: &Value) -> Result<Vec<(SocketAddrV4, Option<u16>)>, Refusal> {
    let m = n.map(v, "the TCP connections", &[ESTABLISHED])?;
    let Some(e) = n.get(m, ESTABLISHED) else {
        return Ok(Vec::new());
    };
    let what = "the established connections";
    let e = n.map(e, what, &[CONNS, TOTAL])?;
    let list = match n.get(e, CONNS) {
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err(invalid(format!("{what}: {} is not a list", n.name(CONNS)))),
        None => &[],
    };
    let mut out = Vec::new();
    for c in list {
        let c = n.map(c, "a connection", &[REMOTE, LOCAL_PORT, LOCAL_IF])?;
        let remote = n
            .get(c, REMOTE)
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<SocketAddrV4>().ok())
            .ok_or_else(|| {
                invalid(format!(
                    "a connection's {} is not ipv4:port",
                    n.name(REMOTE)
                ))
            })?;
        let local = n.uint(c, LOCAL_PORT)?.map(|p| p as u16);
        out.push((remote, local));
    }
    check_total(n, e, out.len(), what)?;
    Ok(out)
}
