//! Greengrass discovery through fqp-greengrass over fqp-tls: the device, with a key made in
//! its keystore and a certificate the lab issued and the cloud attached to its thing, asks
//! the discovery endpoint (mutual TLS) for its groups, then connects to the core's broker
//! trusting only the group's CA, trying the connectivity entries in order. The host sets the
//! thing's group up for each case (`ASK cloud-greengrass-setup mode=…`): a good core, a dead
//! first entry, a core whose certificate is not from the group's CA, no group at all.

use crate::{ask_cloud, Identity, NEIGHBOUR};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use fqp_greengrass::{http, Discovery};
use fqp_keystore::Keystore;
use fqp_mqtt::{Connect, QoS};
use fqp_net::TcpStream;
use fqp_suite_security::client_session;
use fqp_testkit::{check, check_eq, group, log, Failure, TestResult};
use fqp_tls::{Buffers, RECORD_BUFFER};

group!(pub GREENGRASS, "greengrass", [
    discovery_returns_the_group_its_core_and_ca => 30_000,
    connects_to_the_core_with_the_discovered_ca => 30_000,
    falls_back_to_the_next_entry_when_the_first_is_dead => 30_000,
    a_core_not_from_the_group_ca_is_refused => 30_000,
    a_thing_in_no_group_gets_404 => 30_000,
    another_things_discovery_is_forbidden_403 => 30_000,
]);

/// Runs `body` in the crypto task (TLS's stack).
fn in_tls_task(body: fn() -> TestResult) -> TestResult {
    fqp_suite_security::with_crypto_stack(fqp_suite_security::TLS_STACK_WORDS, body)
}

/// This device's credentials: a keystore with the lab root, a key and its certificate, the
/// certificate attached to the device's thing in the cloud.
fn credentials<'a>(arena: &'a mut [u8], me: &Identity) -> Result<Keystore<'a>, Failure> {
    let ks = fqp_suite_security::lab_identity(arena)?;
    let cert = ks
        .certificate("device-cert")
        .map_err(|e| fqp_testkit::fail!("the device certificate: {:?}", e))?;
    let hex: String = fqp_keystore::sha256(cert)
        .iter()
        .map(|b| alloc::format!("{b:02x}"))
        .collect();
    ask_cloud(
        "cloud-attach-certificate",
        &[("thing", &me.thing), ("sha256", &hex)],
    )?;
    Ok(ks)
}

/// Asks the discovery endpoint for `thing`'s groups: the answer's body, or its error.
fn discover(
    ks: &mut Keystore<'_>,
    thing: &str,
) -> Result<Result<Vec<u8>, fqp_greengrass::Error>, Failure> {
    fqp_suite_net::up()?;
    let (ip, port) = fqp_suite_net::service("greengrass")?;
    let t = TcpStream::connect(ip, port, 3_000)
        .map_err(|e| fqp_testkit::fail!("connect to discovery at {}:{}: {:?}", ip, port, e))?;
    let root = ks
        .certificate("root-ca")
        .map_err(|e| fqp_testkit::fail!("root CA: {:?}", e))?
        .to_vec();
    let (mut r, mut w) = (vec![0u8; RECORD_BUFFER], vec![0u8; 4096]);
    let mut bufs = Buffers::new(&mut r, &mut w);
    let host = alloc::format!("{ip}");
    let mut s = client_session(ks, &root, &host, t, &mut bufs)
        .map_err(|e| fqp_testkit::fail!("TLS to the discovery endpoint: {:?}", e))?;
    let mut buf = vec![0u8; 4096];
    Ok(http::discover(&mut s, &host, thing, &mut buf, 5_000).map(<[u8]>::to_vec))
}

/// Sets this thing's Greengrass group up as `mode`, makes its credentials, and discovers:
/// the keystore's arena is `arena`; `f` gets the keystore and the answer.
fn discovered<R>(
    mode: &str,
    f: impl FnOnce(
        &mut Keystore<'_>,
        &Identity,
        Result<Vec<u8>, fqp_greengrass::Error>,
    ) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let me = Identity::provisioned()?;
    ask_cloud(
        "cloud-greengrass-setup",
        &[("thing", &me.thing), ("mode", mode)],
    )?;
    let mut arena = vec![0u8; 4096];
    let mut ks = credentials(&mut arena, &me)?;
    let t0 = crate::ms();
    let answer = discover(&mut ks, &me.thing)?;
    fqp_testkit::metric("discovery", crate::ms() - t0, "ms");
    f(&mut ks, &me, answer)
}

fn parsed(body: &[u8]) -> Result<Discovery<'_>, Failure> {
    fqp_greengrass::parse(body).map_err(|e| fqp_testkit::fail!("the discovery answer: {:?}", e))
}

/// Connects to the cores of `d` in order, each with its group's CA, as `me`; on the first
/// that takes the connection, a QoS 1 publish under the thing's own topics. The entry's id
/// and its number, or why the last failed and how many were tried.
fn connect_core(
    ks: &mut Keystore<'_>,
    me: &Identity,
    d: &Discovery<'_>,
) -> Result<(String, usize), (Option<String>, usize)> {
    let (mut r, mut w) = (vec![0u8; RECORD_BUFFER], vec![0u8; 4096]);
    let mut der = vec![0u8; 2048];
    fqp_greengrass::connect(d, |entry, cas| {
        let ip: Ipv4Addr = entry
            .host
            .parse()
            .map_err(|_| String::from("not an IPv4 address"))?;
        let t =
            TcpStream::connect(ip, entry.port, 3_000).map_err(|e| alloc::format!("TCP: {e:?}"))?;
        let ca = cas
            .first()
            .ok_or_else(|| String::from("the group has no CA"))?;
        let n = ca
            .der(&mut der)
            .ok_or_else(|| String::from("the group's CA is not PEM"))?;
        let mut bufs = Buffers::new(&mut r, &mut w);
        let session = client_session(ks, &der[..n], entry.host, t, &mut bufs)
            .map_err(|e| alloc::format!("TLS: {e:?}"))?;
        let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
        let mut c =
            fqp_mqtt::Client::new(&mut tx, &mut rx, crate::ms, |_: &fqp_mqtt::Message<'_>| {});
        let options = Connect {
            client_id: &me.thing,
            clean_session: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
        };
        c.connect(session, &options, 5_000)
            .map_err(|e| alloc::format!("MQTT: {e:?}"))?;
        let topic = alloc::format!("$aws/things/{}/greengrass/hello", me.thing);
        c.publish(&topic, b"hello core", QoS::AtLeastOnce, false)
            .map_err(|e| alloc::format!("publish: {e:?}"))?;
        Ok(entry.id.to_string())
    })
}

fn discovery_returns_the_group_its_core_and_ca() -> TestResult {
    in_tls_task(|| {
        discovered("good", |_, me, answer| {
            let body = answer.map_err(|e| fqp_testkit::fail!("discovery: {:?}", e))?;
            let d = parsed(&body)?;
            check_eq!(d.groups.len(), 1);
            let g = &d.groups[0];
            check_eq!(g.id, alloc::format!("gg-{}", me.thing).as_str());
            check_eq!(g.cores.len(), 1);
            check!(
                g.cores[0].thing_arn.ends_with(":thing/fqp-core"),
                "core {}",
                g.cores[0].thing_arn
            );
            check_eq!(g.cores[0].connectivity.len(), 1);
            check_eq!(g.cas.len(), 1);
            let mut der = vec![0u8; 2048];
            let n = g.cas[0]
                .der(&mut der)
                .ok_or_else(|| fqp_testkit::fail!("the CA is not PEM"))?;
            check!(
                n > 100 && der[0] == 0x30,
                "the CA decodes to {} bytes starting {:02x}",
                n,
                der[0]
            );
            Ok(())
        })
    })
}

fn connects_to_the_core_with_the_discovered_ca() -> TestResult {
    in_tls_task(|| {
        discovered("good", |ks, me, answer| {
            let body = answer.map_err(|e| fqp_testkit::fail!("discovery: {:?}", e))?;
            let d = parsed(&body)?;
            let t0 = crate::ms();
            let (id, n) = connect_core(ks, me, &d)
                .map_err(|(e, n)| fqp_testkit::fail!("no core after {} entries: {:?}", n, e))?;
            fqp_testkit::metric("core_connect", crate::ms() - t0, "ms");
            check_eq!((id.as_str(), n), ("core", 0));
            Ok(())
        })
    })
}

fn falls_back_to_the_next_entry_when_the_first_is_dead() -> TestResult {
    in_tls_task(|| {
        discovered("dead-first", |ks, me, answer| {
            let body = answer.map_err(|e| fqp_testkit::fail!("discovery: {:?}", e))?;
            let d = parsed(&body)?;
            check_eq!(d.groups[0].cores[0].connectivity[0].id, "dead");
            let (id, n) = connect_core(ks, me, &d)
                .map_err(|(e, n)| fqp_testkit::fail!("no core after {} entries: {:?}", n, e))?;
            check_eq!((id.as_str(), n), ("core", 1));
            Ok(())
        })
    })
}

fn a_core_not_from_the_group_ca_is_refused() -> TestResult {
    in_tls_task(|| {
        discovered("wrong-ca", |ks, me, answer| {
            let body = answer.map_err(|e| fqp_testkit::fail!("discovery: {:?}", e))?;
            let d = parsed(&body)?;
            match connect_core(ks, me, &d) {
                Ok(c) => Err(fqp_testkit::fail!("connected to an impostor core: {:?}", c)),
                Err((Some(why), 1)) => {
                    log!("refused: {}", why);
                    check!(
                        why.contains("TLS: Certificate"),
                        "refused for another reason: {}",
                        why
                    );
                    Ok(())
                }
                Err(other) => Err(fqp_testkit::fail!("{:?}", other)),
            }
        })
    })
}

fn a_thing_in_no_group_gets_404() -> TestResult {
    in_tls_task(|| {
        discovered("none", |_, _, answer| {
            check_eq!(answer.map(|_| ()), Err(fqp_greengrass::Error::Status(404)));
            Ok(())
        })
    })
}

fn another_things_discovery_is_forbidden_403() -> TestResult {
    in_tls_task(|| {
        discovered("good", |ks, _, _| {
            let answer = discover(ks, NEIGHBOUR)?;
            check_eq!(answer.map(|_| ()), Err(fqp_greengrass::Error::Status(403)));
            Ok(())
        })
    })
}
