//! Defender against the contract's reports: both encodings and namings accepted, every
//! refusal with its code, behaviours raising and clearing alarms, quarantine.

use super::*;
use crate::store::Scratch;
use serde_json::{json, Value};

fn long(id: u64, bytes_out: u64, tcp: &[u16]) -> Value {
    let ports: Vec<Value> = tcp.iter().map(|p| json!({"port": p})).collect();
    json!({
        "header": {"report_id": id, "version": "1.0"},
        "metrics": {
            "listening_tcp_ports": {"ports": ports, "total": tcp.len()},
            "listening_udp_ports": {"ports": [{"port": 68, "interface": "eth0"}], "total": 1},
            "network_stats": {"bytes_in": 900, "bytes_out": bytes_out, "packets_in": 9, "packets_out": 7},
            "tcp_connections": {"established_connections": {
                "connections": [{"remote_addr": "10.0.2.2:8883", "local_port": 49152}], "total": 1}}
        }
    })
}

fn short(id: u64) -> Value {
    json!({
        "hed": {"rid": id, "v": "1.0"},
        "met": {
            "tp": {"pts": [], "t": 0},
            "ns": {"bi": 1, "bo": 2, "pi": 3, "po": 4},
            "tc": {"ec": {"cs": [{"rad": "10.0.2.2:1883", "lp": 49153}], "t": 1}}
        },
        "cmet": {"temperature": [{"number": 21}]}
    })
}

fn send(d: &Defender<'_>, format: Format, body: &[u8]) -> Vec<Message> {
    d.handle("lamp", format, body, 100).unwrap()
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

#[test]
fn reports_in_json_and_cbor_with_either_naming_are_accepted() {
    let s = Scratch::new("defender-accept");
    crate::registry::Registry::new(&s)
        .put_thing("lamp", None)
        .unwrap();
    let d = Defender::new(&s);
    let out = send(&d, Format::Json, long(1, 500, &[80]).to_string().as_bytes());
    assert_eq!(
        out[0].topic,
        "$aws/things/lamp/defender/metrics/json/accepted"
    );
    assert_eq!(
        out[0].payload,
        json!({"thingName": "lamp", "reportId": 1, "status": "ACCEPTED"})
    );
    let out = send(&d, Format::Cbor, &cbor(&short(2)));
    assert_eq!(
        out[0].topic,
        "$aws/things/lamp/defender/metrics/cbor/accepted"
    );
    // The answer to a CBOR report is CBOR.
    let back: Value = ciborium::de::from_reader(&out[0].bytes()[..]).unwrap();
    assert_eq!(back["status"], "ACCEPTED");
    let r = d.latest("lamp").unwrap().unwrap();
    assert_eq!(r.id, 2);
    assert_eq!(
        r.stats,
        Some(Stats {
            bytes_in: 1,
            bytes_out: 2,
            packets_in: 3,
            packets_out: 4
        })
    );
    assert_eq!(r.connections[0].0.to_string(), "10.0.2.2:1883");
    assert_eq!(r.custom["temperature"][0]["number"], 21);
}

#[test]
fn bad_reports_are_rejected_naming_the_reason() {
    let s = Scratch::new("defender-reject");
    crate::registry::Registry::new(&s)
        .put_thing("lamp", None)
        .unwrap();
    let d = Defender::new(&s);
    send(&d, Format::Json, long(7, 1, &[]).to_string().as_bytes());
    let mut unknown = long(8, 1, &[]);
    unknown["metrics"]["cpu"] = json!(5);
    let mut version = long(9, 1, &[]);
    version["header"]["version"] = json!("2.0");
    let mut total = long(10, 1, &[80, 443]);
    total["metrics"]["listening_tcp_ports"]["total"] = json!(3);
    let mut mixed = short(11);
    mixed["metrics"] = mixed["met"].take();
    let mut port = long(12, 1, &[]);
    port["metrics"]["listening_tcp_ports"]["ports"] = json!([{"port": 70000}]);
    let mut addr = long(13, 1, &[]);
    addr["metrics"]["tcp_connections"]["established_connections"]["connections"][0]
        ["remote_addr"] = json!("somewhere");
    let huge = json!({"header": {"report_id": 14, "version": "1.0"}, "custom_metrics": {"x": "y".repeat(6000)}});
    let cases: Vec<(Vec<u8>, Format, &str, &str)> = vec![
        (
            b"{\"header\":".to_vec(),
            Format::Json,
            "MalformedPayload",
            "not JSON",
        ),
        (
            vec![0xff, 0x00],
            Format::Cbor,
            "MalformedPayload",
            "not CBOR",
        ),
        (
            long(7, 2, &[]).to_string().into_bytes(),
            Format::Json,
            "DuplicateReportId",
            "accepted already",
        ),
        (
            unknown.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "unknown field \"cpu\"",
        ),
        (
            version.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "only \"1.0\"",
        ),
        (
            total.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "says 3, the list holds 2",
        ),
        (
            mixed.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "unknown field \"metrics\"",
        ),
        (
            port.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "not 1 to 65535",
        ),
        (
            addr.to_string().into_bytes(),
            Format::Json,
            "InvalidPayload",
            "not ipv4:port",
        ),
        (
            huge.to_string().into_bytes(),
            Format::Json,
            "PayloadTooLarge",
            "at most 5120",
        ),
    ];
    for (body, format, code, says) in cases {
        let out = send(&d, format, &body);
        assert!(out[0].topic.ends_with("/rejected"), "{code}: {:?}", out[0]);
        let details = &out[0].payload["statusDetails"];
        assert_eq!(details["ErrorCode"], code, "{details}");
        let message = details["ErrorMessage"].as_str().unwrap();
        assert!(message.contains(says), "{code}: {message}");
    }
    assert_eq!(
        d.latest("lamp").unwrap().unwrap().id,
        7,
        "nothing refused was kept"
    );
}

fn profile(quarantine: bool) -> Profile {
    serde_json::from_value(json!({
        "name": "lab", "targets": ["lamps"], "quarantine": quarantine,
        "behaviors": [
            {"name": "web-server", "metric": "listening_tcp_ports", "allowed": [443]},
            {"name": "chatty", "metric": "bytes_out", "max": 1000},
            {"name": "elsewhere", "metric": "remote_addresses", "allowed": ["10.0.2.2"]}
        ]
    }))
    .unwrap()
}

#[test]
fn behaviours_raise_alarms_and_later_reports_clear_them() {
    let s = Scratch::new("defender-detect");
    let r = crate::registry::Registry::new(&s);
    r.put_thing("lamp", None).unwrap();
    r.put_thing("meter", None).unwrap();
    r.create_group("lamps", None).unwrap();
    r.add_to_group("lamps", "lamp").unwrap();
    let d = Defender::new(&s);
    d.put_profile(&profile(false)).unwrap();
    send(
        &d,
        Format::Json,
        long(1, 500, &[443]).to_string().as_bytes(),
    );
    assert!(d.alarms(None).unwrap().is_empty());
    // Port 80 opened, and 1 500 bytes out since the last report (2 000 - 500).
    send(
        &d,
        Format::Json,
        long(2, 2_000, &[443, 80]).to_string().as_bytes(),
    );
    let alarms = d.alarms(Some("lamp")).unwrap();
    let named: Vec<(&str, &Value)> = alarms
        .iter()
        .map(|a| (a.behavior.as_str(), &a.observed))
        .collect();
    assert_eq!(
        named,
        [("chatty", &json!(1_500)), ("web-server", &json!([80]))]
    );
    // The next report keeps to both: the alarms clear.
    send(
        &d,
        Format::Json,
        long(3, 2_100, &[443]).to_string().as_bytes(),
    );
    assert!(d.alarms(None).unwrap().is_empty());
    // A restarted device's counters start again: all of them count.
    send(
        &d,
        Format::Json,
        long(4, 1_200, &[443]).to_string().as_bytes(),
    );
    assert_eq!(d.alarms(None).unwrap()[0].observed, json!(1_200));
    // The meter is not in the profile's group.
    d.handle(
        "meter",
        Format::Json,
        long(1, 99_999, &[1]).to_string().as_bytes(),
        1,
    )
    .unwrap();
    assert!(d.alarms(Some("meter")).unwrap().is_empty());
    assert!(
        !d.quarantined("lamp").unwrap(),
        "this profile does not quarantine"
    );
    let bad: Result<Profile, _> =
        serde_json::from_value(json!({"name": "x", "behaviors": [{"name": "y", "metric": "cpu"}]}));
    assert!(bad.is_err());
    let empty = Profile {
        name: "x".into(),
        targets: vec![],
        behaviors: vec![],
        quarantine: false,
    };
    assert!(matches!(
        d.put_profile(&empty),
        Err(DefenderError::BadProfile(..))
    ));
}

#[test]
fn an_alarm_of_a_quarantining_profile_puts_the_thing_in_quarantine() {
    let s = Scratch::new("defender-quarantine");
    let r = crate::registry::Registry::new(&s);
    r.put_thing("lamp", None).unwrap();
    r.create_group("lamps", None).unwrap();
    r.add_to_group("lamps", "lamp").unwrap();
    let d = Defender::new(&s);
    d.put_profile(&profile(true)).unwrap();
    send(&d, Format::Json, long(1, 10, &[443]).to_string().as_bytes());
    assert!(!d.quarantined("lamp").unwrap());
    send(&d, Format::Json, long(2, 10, &[22]).to_string().as_bytes());
    assert!(d.quarantined("lamp").unwrap());
    d.release("lamp").unwrap();
    assert!(!d.quarantined("lamp").unwrap());
}
