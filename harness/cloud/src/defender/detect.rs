//! Security profiles and their behaviours: what a report is held to.

use super::{Report, Stats};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// A security profile: behaviours for the things of `targets` (every thing when empty).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub targets: Vec<String>,
    pub behaviors: Vec<Behavior>,
    /// Mitigation: a thing that raises an alarm goes into quarantine.
    #[serde(default)]
    pub quarantine: bool,
}

/// One behaviour: a name and what a report must keep to.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Behavior {
    pub name: String,
    #[serde(flatten)]
    pub criterion: Criterion,
}

/// What a report must keep to.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Criterion {
    /// Bytes out since the previous report at most `max`.
    BytesOut { max: u64 },
    /// Packets out since the previous report at most `max`.
    PacketsOut { max: u64 },
    /// Only these TCP ports listening.
    ListeningTcpPorts { allowed: Vec<u16> },
    /// Only these UDP ports listening.
    ListeningUdpPorts { allowed: Vec<u16> },
    /// Connections only to these addresses.
    RemoteAddresses { allowed: Vec<Ipv4Addr> },
    /// At most `max` established connections.
    Connections { max: u64 },
}

/// An alarm: a behaviour a thing's report broke, and what was seen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alarm {
    pub thing: String,
    pub profile: String,
    pub behavior: String,
    pub observed: Value,
    pub report_id: u64,
    pub raised_at: u64,
}

/// How much the counters grew since the previous report (all of a counter that went back:
/// the device restarted).
pub(super) fn growth(now: Option<Stats>, before: Option<Stats>) -> Option<Stats> {
    let now = now?;
    let Some(b) = before else {
        return Some(now);
    };
    let d = |n: u64, p: u64| if n >= p { n - p } else { n };
    Some(Stats {
        bytes_in: d(now.bytes_in, b.bytes_in),
        bytes_out: d(now.bytes_out, b.bytes_out),
        packets_in: d(now.packets_in, b.packets_in),
        packets_out: d(now.packets_out, b.packets_out),
    })
}

impl Criterion {
    /// What `report` (whose counters grew by `period`) shows that breaks this; `None` if it
    /// keeps to it (or does not report the metric).
    pub fn broken_by(&self, report: &Report, period: Option<Stats>) -> Option<Value> {
        let outside = |ports: &[u16], allowed: &[u16]| {
            let bad: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| !allowed.contains(p))
                .collect();
            (!bad.is_empty()).then(|| json!(bad))
        };
        match self {
            Criterion::BytesOut { max } => period
                .map(|p| p.bytes_out)
                .filter(|b| b > max)
                .map(|b| json!(b)),
            Criterion::PacketsOut { max } => period
                .map(|p| p.packets_out)
                .filter(|b| b > max)
                .map(|b| json!(b)),
            Criterion::ListeningTcpPorts { allowed } => outside(&report.tcp_ports, allowed),
            Criterion::ListeningUdpPorts { allowed } => outside(&report.udp_ports, allowed),
            Criterion::RemoteAddresses { allowed } => {
                let bad: Vec<String> = report
                    .connections
                    .iter()
                    .filter(|(r, _)| !allowed.contains(r.ip()))
                    .map(|(r, _)| r.to_string())
                    .collect();
                (!bad.is_empty()).then(|| json!(bad))
            }
            Criterion::Connections { max } => {
                let n = report.connections.len() as u64;
                (n > *max).then(|| json!(n))
            }
        }
    }
}
