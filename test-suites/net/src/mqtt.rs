//! MQTT through the lab's broker (address and credentials provisioned by the host as `mqtt`,
//! `mqtt_user`, `mqtt_password`), with fqp-mqtt over fqp-net: connect, round trips at QoS 0
//! and 1, a 64 KiB payload, an idle connection kept alive by pings, wrong credentials refused.

use crate::{service, up};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use fqp_mqtt::{Client, Connect, Error, QoS};
use fqp_net::TcpStream;
use fqp_testkit::{check, check_eq, group, log, TestResult};

group!(pub MQTT, "mqtt", [
    connects_with_the_lab_credentials => 15_000,
    round_trip_at_qos0_and_qos1 => 15_000,
    payload_of_64_kib_round_trips => 30_000,
    idle_connection_is_kept_alive => 30_000,
    will_is_published_when_a_client_vanishes => 20_000,
    persistent_session_gets_what_it_missed => 20_000,
    round_trips_per_second => 60_000,
    reconnects_after_the_broker_restarts => 60_000,
    wrong_password_is_refused => 15_000,
]);

fn ms() -> u64 {
    fqp_kernel::time::uptime_us() / 1000
}

fn setting(key: &str) -> Result<String, fqp_testkit::Failure> {
    match fqp_testkit::config::get_str(key) {
        Some(v) => Ok(v),
        None => fqp_testkit::skip!("the host provisioned no {} setting", key),
    }
}

fn transport() -> Result<TcpStream, fqp_testkit::Failure> {
    up()?;
    let (ip, port) = service("mqtt")?;
    TcpStream::connect(ip, port, 3_000)
        .map_err(|e| fqp_testkit::fail!("connect to the broker at {}:{}: {:?}", ip, port, e))
}

type Inbox = RefCell<Vec<(String, Vec<u8>, QoS)>>;

/// The broker account the host provisioned: user name and password.
struct Credentials(String, String);

impl Credentials {
    fn provisioned() -> Result<Credentials, fqp_testkit::Failure> {
        Ok(Credentials(
            setting("mqtt_user")?,
            setting("mqtt_password")?,
        ))
    }

    /// CONNECT options with these credentials (the password replaced by `password` if given).
    fn options<'a>(
        &'a self,
        client_id: &'a str,
        keep_alive: u16,
        clean_session: bool,
        will: Option<fqp_mqtt::Will<'a>>,
        password: Option<&'a [u8]>,
    ) -> Connect<'a> {
        Connect {
            client_id,
            clean_session,
            keep_alive,
            username: Some(&self.0),
            password: Some(password.unwrap_or(self.1.as_bytes())),
            will,
        }
    }
}

/// Connects a client with the lab's credentials, a clean session and `keep_alive` seconds.
fn session<'b>(
    tx: &'b mut [u8],
    rx: &'b mut [u8],
    inbox: &'b Inbox,
    client_id: &str,
    keep_alive: u16,
) -> Result<Client<'b, TcpStream, impl FnMut(&fqp_mqtt::Message<'_>) + 'b>, fqp_testkit::Failure> {
    session_with(tx, rx, inbox, client_id, keep_alive, true, None).map(|(c, _)| c)
}

/// A client connected with the lab's credentials, the given session and will; also whether
/// the broker had a session for it.
// The client's message handler is a closure, whose type has no name an alias could give.
#[allow(clippy::type_complexity)]
fn session_with<'b>(
    tx: &'b mut [u8],
    rx: &'b mut [u8],
    inbox: &'b Inbox,
    client_id: &str,
    keep_alive: u16,
    clean_session: bool,
    will: Option<fqp_mqtt::Will<'_>>,
) -> Result<
    (
        Client<'b, TcpStream, impl FnMut(&fqp_mqtt::Message<'_>) + 'b>,
        bool,
    ),
    fqp_testkit::Failure,
> {
    let creds = Credentials::provisioned()?;
    let mut c = Client::new(tx, rx, ms, move |m: &fqp_mqtt::Message<'_>| {
        inbox
            .borrow_mut()
            .push((String::from(m.topic), m.payload.to_vec(), m.qos))
    });
    let t = transport()?;
    let present = c
        .connect(
            t,
            &creds.options(client_id, keep_alive, clean_session, will, None),
            5_000,
        )
        .map_err(|e| fqp_testkit::fail!("CONNECT: {:?}", e))?;
    Ok((c, present))
}

/// Subscribes to `filter` at QoS 1 and checks the broker granted it.
fn subscribe_to<T: fqp_transport::Transport, H: FnMut(&fqp_mqtt::Message<'_>)>(
    c: &mut Client<'_, T, H>,
    filter: &str,
) -> TestResult {
    let granted = c
        .subscribe(&[(filter, QoS::AtLeastOnce)])
        .map_err(|e| fqp_testkit::fail!("SUBSCRIBE {}: {:?}", filter, e))?;
    check_eq!(granted[0], Some(QoS::AtLeastOnce));
    Ok(())
}

/// Publishes (not retained), failing the test with the topic and the error.
fn publish<T: fqp_transport::Transport, H: FnMut(&fqp_mqtt::Message<'_>)>(
    c: &mut Client<'_, T, H>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
) -> TestResult {
    c.publish(topic, payload, qos, false)
        .map_err(|e| fqp_testkit::fail!("PUBLISH to {} at {:?}: {:?}", topic, qos, e))
}

/// Polls until `n` messages are in `inbox` or `ms` pass.
fn await_messages<T: fqp_transport::Transport, H: FnMut(&fqp_mqtt::Message<'_>)>(
    c: &mut Client<'_, T, H>,
    inbox: &Inbox,
    n: usize,
    within_ms: u64,
) -> TestResult {
    let end = ms() + within_ms;
    while inbox.borrow().len() < n {
        check!(
            ms() < end,
            "{} of {} messages within {} ms",
            inbox.borrow().len(),
            n,
            within_ms
        );
        c.poll(100)
            .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
    }
    Ok(())
}

fn connects_with_the_lab_credentials() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-connect", 30)?;
    check!(c.is_connected());
    c.disconnect()
        .map_err(|e| fqp_testkit::fail!("DISCONNECT: {:?}", e))?;
    Ok(())
}

fn round_trip_at_qos0_and_qos1() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-round-trip", 30)?;
    subscribe_to(&mut c, "fqp/round-trip/+")?;
    let t0 = ms();
    publish(
        &mut c,
        "fqp/round-trip/zero",
        b"at most once",
        QoS::AtMostOnce,
    )?;
    publish(
        &mut c,
        "fqp/round-trip/one",
        b"at least once",
        QoS::AtLeastOnce,
    )?;
    await_messages(&mut c, &inbox, 2, 5_000)?;
    fqp_testkit::metric("round_trip_2_messages", ms() - t0, "ms");
    let got = inbox.borrow();
    check!(
        got.iter()
            .any(|(t, p, _)| t == "fqp/round-trip/zero" && p == b"at most once"),
        "the QoS 0 message did not come back: {:?}",
        got.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    check!(
        got.iter().any(|(t, p, q)| t == "fqp/round-trip/one"
            && p == b"at least once"
            && *q == QoS::AtLeastOnce),
        "the QoS 1 message did not come back at QoS 1"
    );
    Ok(())
}

fn payload_of_64_kib_round_trips() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 66 * 1024], vec![0u8; 66 * 1024]);
    let inbox = Inbox::default();
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-large", 30)?;
    subscribe_to(&mut c, "fqp/large")?;
    let payload: Vec<u8> = (0..64 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    publish(&mut c, "fqp/large", &payload, QoS::AtLeastOnce)?;
    await_messages(&mut c, &inbox, 1, 10_000)?;
    check!(
        inbox.borrow()[0].1 == payload,
        "the 64 KiB payload came back changed"
    );
    Ok(())
}

fn idle_connection_is_kept_alive() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    // Keep-alive 1 s: idle for 3 keep-alive periods, the client's pings must hold it (the
    // broker drops a client silent for 1.5 keep-alive periods).
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-idle", 1)?;
    subscribe_to(&mut c, "fqp/idle")?;
    let end = ms() + 3_000;
    while ms() < end {
        c.poll(250)
            .map_err(|e| fqp_testkit::fail!("the idle connection failed: {:?}", e))?;
    }
    publish(&mut c, "fqp/idle", b"still here", QoS::AtLeastOnce)?;
    await_messages(&mut c, &inbox, 1, 5_000)?;
    log!("idle 3 s with keep-alive 1 s: connection held");
    Ok(())
}

fn will_is_published_when_a_client_vanishes() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    let mut watcher = session(&mut tx, &mut rx, &inbox, "fqp-watcher", 30)?;
    subscribe_to(&mut watcher, "fqp/will/+")?;
    {
        let (mut tx2, mut rx2) = (vec![0u8; 512], vec![0u8; 512]);
        let other = Inbox::default();
        let will = fqp_mqtt::Will {
            topic: "fqp/will/gone",
            payload: b"device vanished",
            qos: QoS::AtLeastOnce,
            retain: false,
        };
        let (c, _) = session_with(
            &mut tx2,
            &mut rx2,
            &other,
            "fqp-mortal",
            30,
            true,
            Some(will),
        )?;
        // Dropped without DISCONNECT: the connection just closes.
        drop(c);
    }
    await_messages(&mut watcher, &inbox, 1, 10_000)?;
    let got = inbox.borrow();
    check!(
        got[0].0 == "fqp/will/gone" && got[0].1 == b"device vanished",
        "expected the will, got {:?}",
        got[0].0
    );
    Ok(())
}

fn persistent_session_gets_what_it_missed() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    // First visit: subscribe in a persistent session, then leave properly.
    {
        let (mut c, _) = session_with(&mut tx, &mut rx, &inbox, "fqp-persistent", 30, false, None)?;
        subscribe_to(&mut c, "fqp/persistent")?;
        c.disconnect()
            .map_err(|e| fqp_testkit::fail!("DISCONNECT: {:?}", e))?;
    }
    // Meanwhile, another client publishes at QoS 1.
    {
        let (mut tx2, mut rx2) = (vec![0u8; 512], vec![0u8; 512]);
        let other = Inbox::default();
        let mut p = session(&mut tx2, &mut rx2, &other, "fqp-publisher", 30)?;
        publish(
            &mut p,
            "fqp/persistent",
            b"while you were away",
            QoS::AtLeastOnce,
        )?;
        p.disconnect()
            .map_err(|e| fqp_testkit::fail!("DISCONNECT: {:?}", e))?;
    }
    // Back in the same session: the broker kept it and delivers what was missed.
    let (mut c, present) =
        session_with(&mut tx, &mut rx, &inbox, "fqp-persistent", 30, false, None)?;
    check!(present, "the broker kept no session for the client");
    await_messages(&mut c, &inbox, 1, 10_000)?;
    check!(
        inbox.borrow()[0].1 == b"while you were away",
        "got {:?}",
        inbox.borrow()[0].0
    );
    // Leave a clean slate for the next run.
    drop(c);
    let (mut c, _) = session_with(&mut tx, &mut rx, &inbox, "fqp-persistent", 30, true, None)?;
    let _ = c.disconnect();
    Ok(())
}

fn round_trips_per_second() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-rate", 30)?;
    subscribe_to(&mut c, "fqp/rate")?;
    let n = 200;
    let t0 = fqp_kernel::time::uptime_us();
    for i in 0..n {
        let before = inbox.borrow().len();
        publish(
            &mut c,
            "fqp/rate",
            &(i as u32).to_le_bytes(),
            QoS::AtLeastOnce,
        )?;
        await_messages(&mut c, &inbox, before + 1, 5_000)?;
    }
    let us = (fqp_kernel::time::uptime_us() - t0).max(1);
    check_eq!(inbox.borrow().len(), n);
    let rate = n as u64 * 1_000_000 / us;
    fqp_testkit::metric("qos1_round_trips_per_s", rate, "1/s");
    log!("{} QoS 1 publish-and-receive round trips in {} us", n, us);
    Ok(())
}

fn reconnects_after_the_broker_restarts() -> TestResult {
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let inbox = Inbox::default();
    let mut c = session(&mut tx, &mut rx, &inbox, "fqp-reconnect", 30)?;
    fqp_testkit::ask("restart-broker", &[], 20_000)?;
    // The connection breaks: the next packet exchange fails.
    let broke = (0..50).any(|_| c.poll(100).is_err() || !c.is_connected());
    check!(broke, "the connection survived the broker's restart");
    // Back off and retry until the broker takes us again.
    let creds = Credentials::provisioned()?;
    let seed = fqp_kernel::time::uptime_us() as u32;
    let mut backoff = fqp_mqtt::Backoff::new(100, 2_000, seed);
    let t0 = ms();
    let mut attempts = 0;
    loop {
        attempts += 1;
        check!(
            attempts <= 12,
            "no reconnection after {} attempts",
            attempts - 1
        );
        fqp_kernel::task::delay(fqp_kernel::time::ms_to_ticks(backoff.next_delay_ms()));
        let Ok(t) = transport() else { continue };
        let r = c.connect(
            t,
            &creds.options("fqp-reconnect", 30, true, None, None),
            3_000,
        );
        match r {
            Ok(_) => break,
            Err(e) => log!("attempt {}: {:?}", attempts, e),
        }
    }
    backoff.reset();
    fqp_testkit::metric("reconnect_ms", ms() - t0, "ms");
    fqp_testkit::metric("reconnect_attempts", attempts, "");
    // The new connection works end to end.
    subscribe_to(&mut c, "fqp/reconnect")?;
    publish(&mut c, "fqp/reconnect", b"back", QoS::AtLeastOnce)?;
    await_messages(&mut c, &inbox, 1, 5_000)?;
    Ok(())
}

fn wrong_password_is_refused() -> TestResult {
    let creds = Credentials::provisioned()?;
    let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
    let mut c = Client::new(&mut tx, &mut rx, ms, |_: &fqp_mqtt::Message<'_>| {});
    let r = c.connect(
        transport()?,
        &creds.options("fqp-intruder", 30, true, None, Some(b"wrong-password")),
        5_000,
    );
    // The broker refuses: CONNACK 4 (bad user name or password) or 5 (not authorized), or,
    // as rumqttd does, by closing the connection before any CONNACK (the same connection
    // with the right password succeeds: see connects_with_the_lab_credentials).
    check!(
        matches!(
            r,
            Err(Error::Refused(4 | 5)) | Err(Error::Transport(fqp_transport::Error::Closed))
        ),
        "expected a refusal (CONNACK 4/5 or the connection closed), got {:?}",
        r
    );
    log!("refused with {:?}", r);
    check!(!c.is_connected());
    Ok(())
}
