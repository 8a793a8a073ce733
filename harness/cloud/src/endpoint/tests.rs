//! The endpoint driven over real sockets by a bare MQTT client (rumqttc's codec, one packet
//! at a time, so that every CONNACK code, SUBACK refusal and dropped connection is seen).

use super::*;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Login, Packet, Publish, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SECRET: &[u8] = b"lab secret";

/// A cloud in a fresh database and its endpoint (plain only unless `tls` is given), with
/// the things `things` registered.
struct Lab {
    endpoint: Option<Endpoint>,
    path: std::path::PathBuf,
}

impl Lab {
    fn new(name: &str, things: &[(&str, Option<&str>)], tls: Option<Tls>) -> Lab {
        let path =
            std::env::temp_dir().join(format!("fqp-endpoint-{name}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cloud = Arc::new(Cloud::open(&path).unwrap());
        for (t, cert) in things {
            cloud.registry().put_thing(t, *cert).unwrap();
        }
        let endpoint = Endpoint::start(
            cloud,
            Settings {
                bind: "127.0.0.1".parse().unwrap(),
                port: 0,
                tls: tls.map(|t| (t, 0)),
                secret: SECRET.to_vec(),
                open_policy: false,
            },
        )
        .unwrap();
        Lab {
            endpoint: Some(endpoint),
            path,
        }
    }

    fn endpoint(&self) -> &Endpoint {
        self.endpoint.as_ref().unwrap()
    }

    /// A client of `thing` on the plain listener, connected with its token.
    fn client(&self, thing: &str) -> Raw<TcpStream> {
        let mut c = Raw::plain(self.endpoint().plain);
        assert_eq!(c.connect(thing, Some((thing, &token(SECRET, thing)))), 0);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.endpoint = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client that sends and reads single packets.
struct Raw<S> {
    s: S,
    buf: BytesMut,
    next_id: u16,
}

impl Raw<TcpStream> {
    fn plain(addr: SocketAddr) -> Raw<TcpStream> {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Raw::over(s)
    }
}

impl<S: Read + Write> Raw<S> {
    fn over(s: S) -> Raw<S> {
        Raw {
            s,
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    fn send(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        match p {
            Packet::Connect(c) => c.write(&mut b),
            Packet::Publish(p) => p.write(&mut b),
            Packet::Subscribe(s) => s.write(&mut b),
            _ => unreachable!("the tests send no other packet"),
        }
        .unwrap();
        let _ = self.s.write_all(&b);
    }

    /// The next packet within `wait`; `None` if none came, `Some(Err)` once the
    /// connection is closed.
    fn recv(&mut self, wait: Duration) -> Option<Result<Packet, ()>> {
        let end = std::time::Instant::now() + wait;
        loop {
            match rumqttc::mqttbytes::v4::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(Ok(p)),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(_) => return Some(Err(())),
            }
            if std::time::Instant::now() > end {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Some(Err(())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(Err(())),
            }
        }
    }

    /// CONNECTs; the CONNACK's return code.
    fn connect(&mut self, client_id: &str, login: Option<(&str, &str)>) -> u8 {
        let mut c = Connect::new(client_id);
        c.login = login.map(|(u, p)| Login::new(u, p));
        self.send(Packet::Connect(c));
        match self.recv(Duration::from_secs(5)) {
            Some(Ok(Packet::ConnAck(a))) => a.code as u8,
            other => panic!("no CONNACK: {other:?}"),
        }
    }

    /// SUBSCRIBEs to `filter` at QoS 1: whether it was granted.
    fn subscribe(&mut self, filter: &str) -> bool {
        let mut s = Subscribe::new(filter, QoS::AtLeastOnce);
        s.pkid = self.next_id;
        self.next_id += 1;
        self.send(Packet::Subscribe(s));
        match self.recv(Duration::from_secs(5)) {
            Some(Ok(Packet::SubAck(a))) => {
                matches!(a.return_codes[..], [SubscribeReasonCode::Success(_)])
            }
            other => panic!("no SUBACK: {other:?}"),
        }
    }

    fn publish(&mut self, topic: &str, payload: Value) {
        self.send(Packet::Publish(Publish::new(
            topic,
            QoS::AtMostOnce,
            payload.to_string(),
        )));
    }

    /// The next message (skipping acknowledgements): topic and JSON payload.
    fn message(&mut self) -> (String, Value) {
        loop {
            match self.recv(Duration::from_secs(5)) {
                Some(Ok(Packet::Publish(p))) => {
                    return (p.topic, serde_json::from_slice(&p.payload).unwrap())
                }
                Some(Ok(_)) => {}
                other => panic!("no message: {other:?}"),
            }
        }
    }

    /// Whether the endpoint closed the connection (within a few seconds).
    fn closed(&mut self) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Some(Err(())) = self.recv(Duration::from_millis(100)) {
                return true;
            }
        }
        false
    }
}

#[test]
fn a_thing_connects_with_its_token_and_the_shadow_answers_it() {
    let lab = Lab::new("shadow", &[("lamp", None)], None);
    let mut c = lab.client("lamp");
    assert!(c.subscribe("$aws/things/lamp/shadow/update/accepted"));
    assert!(c.subscribe("$aws/things/lamp/shadow/update/delta"));
    c.publish(
        "$aws/things/lamp/shadow/update",
        json!({"state": {"desired": {"on": true}}, "clientToken": "t1"}),
    );
    let (topic, doc) = c.message();
    assert_eq!(topic, "$aws/things/lamp/shadow/update/accepted");
    assert_eq!(
        (doc["version"].as_u64(), doc["clientToken"].as_str()),
        (Some(1), Some("t1"))
    );
    let (topic, delta) = c.message();
    assert_eq!(topic, "$aws/things/lamp/shadow/update/delta");
    assert_eq!(delta["state"], json!({"on": true}));
    let seen = lab.endpoint().traffic("lamp");
    assert_eq!(
        (seen.connections, seen.messages_in, seen.messages_out),
        (1, 1, 2)
    );
    assert!(seen.bytes_in > 60 && seen.bytes_out > 100, "{seen:?}");
    assert_eq!(lab.endpoint().connected(), [("lamp".into(), "lamp".into())]);
}

#[test]
fn the_policy_is_enforced_at_the_endpoint() {
    let lab = Lab::new("policy", &[("lamp", None), ("meter", None)], None);
    let addr = lab.endpoint().plain;
    let refused = |id: &str, login: Option<(&str, &str)>| Raw::plain(addr).connect(id, login);
    assert_eq!(refused("lamp", Some(("lamp", "wrong"))), 4, "a wrong token");
    assert_eq!(refused("lamp", None), 4, "no credentials");
    assert_eq!(
        refused("ghost", Some(("ghost", &token(SECRET, "ghost")))),
        5,
        "not a thing"
    );
    assert_eq!(
        refused("meter", Some(("lamp", &token(SECRET, "lamp")))),
        5,
        "another client id"
    );
    assert_eq!(
        refused("", Some(("lamp", &token(SECRET, "lamp")))),
        2,
        "no client id"
    );

    let mut c = lab.client("lamp");
    assert!(!c.subscribe("$aws/things/meter/shadow/update/accepted"));
    assert!(!c.subscribe("$aws/things/+/shadow/update/accepted"));
    assert!(!c.subscribe("#"));
    assert!(!c.subscribe("$aws/things/lamp/a#"), "an invalid filter");
    assert!(c.subscribe("$aws/things/lamp/shadow/#"));
    // Another thing's shadow: the connection ends, nothing changes.
    c.publish(
        "$aws/things/meter/shadow/update",
        json!({"state": {"reported": {"x": 1}}}),
    );
    assert!(c.closed());
    let mut m = lab.client("meter");
    assert!(m.subscribe("$aws/things/meter/shadow/get/+"));
    m.publish("$aws/things/meter/shadow/get", json!({}));
    let (topic, doc) = m.message();
    assert_eq!(topic, "$aws/things/meter/shadow/get/rejected");
    assert_eq!(doc["code"], 404);
    let refusals = lab.endpoint().traffic("lamp").refused;
    assert_eq!(refusals, 3, "the wrong token, no credentials, the publish");
}

#[test]
fn a_second_connection_with_a_client_id_ends_the_first() {
    let lab = Lab::new("takeover", &[("lamp", None)], None);
    let mut first = lab.client("lamp");
    let _second = lab.client("lamp");
    assert!(first.closed());
    assert_eq!(lab.endpoint().disconnect("lamp"), 1);
}

#[test]
fn requests_beyond_ten_in_flight_are_refused_at_once() {
    let lab = Lab::new("throttle", &[("lamp", None)], None);
    let mut c = lab.client("lamp");
    assert!(c.subscribe("$aws/things/lamp/shadow/update/accepted"));
    assert!(c.subscribe("$aws/things/lamp/shadow/update/rejected"));
    lab.endpoint().hold("lamp");
    for i in 0..12 {
        let body = json!({"state": {"reported": {"n": i}}, "clientToken": format!("t{i}")});
        c.publish("$aws/things/lamp/shadow/update", body);
    }
    for i in [10, 11] {
        let (topic, doc) = c.message();
        assert_eq!(topic, "$aws/things/lamp/shadow/update/rejected");
        assert_eq!(
            (doc["code"].as_u64(), doc["clientToken"].as_str()),
            (Some(429), Some(&*format!("t{i}")))
        );
    }
    lab.endpoint().release("lamp");
    for i in 0..10 {
        let (topic, doc) = c.message();
        assert_eq!(topic, "$aws/things/lamp/shadow/update/accepted", "{doc}");
        assert_eq!(doc["version"], i + 1);
    }
}

#[test]
fn what_was_acknowledged_survives_a_restart() {
    let mut lab = Lab::new("restart", &[("lamp", None)], None);
    let mut c = lab.client("lamp");
    assert!(c.subscribe("$aws/things/lamp/shadow/update/accepted"));
    c.publish(
        "$aws/things/lamp/shadow/update",
        json!({"state": {"reported": {"on": 1}}}),
    );
    assert_eq!(c.message().1["version"], 1);
    drop(c);
    lab.endpoint = None;
    let cloud = Cloud::open(&lab.path).unwrap();
    let doc = cloud
        .request("$aws/things/lamp/shadow/get", b"{}", 0)
        .unwrap()
        .remove(0);
    assert_eq!(doc.topic, "$aws/things/lamp/shadow/get/accepted");
    assert_eq!(
        (
            doc.payload["version"].as_u64(),
            &doc.payload["state"]["reported"]
        ),
        (Some(1), &json!({"on": 1}))
    );
}

/// A CA, a server certificate for 127.0.0.1 and two client certificates, all from rcgen.
struct Certs {
    tls: Tls,
    ca_der: Vec<u8>,
    clients: Vec<(Vec<u8>, Vec<u8>)>,
}

fn certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.der().to_vec(), key.serialize_der())
    };
    let (server, server_key) = leaf(vec!["127.0.0.1".into()]);
    Certs {
        tls: Tls {
            chain: vec![server],
            key: server_key,
            client_cas: vec![ca.der().to_vec()],
        },
        ca_der: ca.der().to_vec(),
        clients: vec![leaf(vec![]), leaf(vec![])],
    }
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_client(lab: &Lab, ca: &[u8], (cert, key): &(Vec<u8>, Vec<u8>)) -> Raw<TlsStream> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
        )
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(lab.endpoint().tls.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    Raw::over(rustls::StreamOwned::new(conn, tcp))
}

#[test]
fn over_mutual_tls_the_thing_is_whoever_holds_the_certificate() {
    let c = certs();
    let lamp_cert = crate::registry::fingerprint(&c.clients[0].0);
    let lab = Lab::new(
        "mtls",
        &[("lamp", Some(&lamp_cert)), ("meter", None)],
        Some(c.tls.clone()),
    );
    let mut lamp = tls_client(&lab, &c.ca_der, &c.clients[0]);
    assert_eq!(
        lamp.connect("lamp", None),
        0,
        "its own certificate, no password"
    );
    assert!(lamp.subscribe("$aws/things/lamp/shadow/get/+"));
    lamp.publish("$aws/things/lamp/shadow/get", json!({}));
    assert_eq!(lamp.message().0, "$aws/things/lamp/shadow/get/rejected");
    assert_eq!(
        tls_client(&lab, &c.ca_der, &c.clients[0]).connect("meter", None),
        5,
        "the lamp's certificate claiming the meter"
    );
    assert_eq!(
        tls_client(&lab, &c.ca_der, &c.clients[1]).connect("lamp", None),
        5,
        "a certificate of the CA that no thing holds"
    );
}

#[test]
fn a_thing_quarantined_by_its_report_is_cut_off_and_refused() {
    let lab = Lab::new("quarantine", &[("lamp", None)], None);
    let cloud = lab.endpoint().cloud();
    cloud.registry().create_group("lamps", None).unwrap();
    cloud.registry().add_to_group("lamps", "lamp").unwrap();
    let profile = serde_json::from_value(json!({
        "name": "no-listeners", "targets": ["lamps"], "quarantine": true,
        "behaviors": [{"name": "no-ports", "metric": "listening_tcp_ports", "allowed": []}]
    }))
    .unwrap();
    cloud.defender().put_profile(&profile).unwrap();
    let mut c = lab.client("lamp");
    assert!(c.subscribe("$aws/things/lamp/defender/metrics/json/+"));
    let report = json!({
        "header": {"report_id": 1, "version": "1.0"},
        "metrics": {"listening_tcp_ports": {"ports": [{"port": 23}]},
                    "network_stats": {"bytes_in": 5000, "bytes_out": 4000, "packets_in": 9, "packets_out": 9}}
    });
    c.publish("$aws/things/lamp/defender/metrics/json", report);
    let (topic, answer) = c.message();
    assert_eq!(
        (topic.as_str(), &answer["status"]),
        (
            "$aws/things/lamp/defender/metrics/json/accepted",
            &json!("ACCEPTED")
        )
    );
    assert!(c.closed(), "the quarantined thing's connection ends");
    let mut again = Raw::plain(lab.endpoint().plain);
    assert_eq!(
        again.connect("lamp", Some(("lamp", &token(SECRET, "lamp")))),
        5
    );
    // What the connection had carried before the report: CONNECT, SUBSCRIBE in; CONNACK, SUBACK out.
    let seen = lab.endpoint().before_report("lamp").unwrap();
    assert!(seen.bytes_in > 14 && seen.bytes_in < 120, "{seen:?}");
    assert_eq!(seen.bytes_out, 4 + 5, "CONNACK and a one-filter SUBACK");
    cloud.defender().release("lamp").unwrap();
    assert_eq!(
        Raw::plain(lab.endpoint().plain).connect("lamp", Some(("lamp", &token(SECRET, "lamp")))),
        0
    );
}

#[test]
fn a_policy_attached_to_a_thing_grants_what_the_rule_does_not() {
    use crate::registry::{Policy, Statement};
    let lab = Lab::new("policy-grants", &[("lamp", None), ("meter", None)], None);
    let grant = Policy {
        name: "broadcast".into(),
        statements: vec![Statement {
            actions: vec!["publish".into(), "subscribe".into()],
            resources: vec!["lab/broadcast/#".into()],
        }],
        things: vec!["lamp".into()],
    };
    lab.endpoint()
        .cloud()
        .registry()
        .put_policy(&grant)
        .unwrap();
    let mut lamp = lab.client("lamp");
    assert!(lamp.subscribe("lab/broadcast/+"));
    assert!(!lamp.subscribe("lab/#"), "wider than the grant");
    lamp.publish("lab/broadcast/hello", json!({"hi": 1}));
    assert_eq!(lamp.message().0, "lab/broadcast/hello");
    let mut meter = lab.client("meter");
    assert!(
        !meter.subscribe("lab/broadcast/+"),
        "the policy is the lamp's"
    );
}
