//! TLS qualification: fqp-tls over fqp-net against the lab's TLS servers and MQTT broker.
//!
//! The device makes its key in the keystore and asks the host for a certificate
//! (`ASK issue-certificate`, answered by the run's lab PKI); the root CA the host provisions
//! is imported into the keystore, and the handshake signs with the keystore's key. Each bad
//! server (another CA, expired, another host's name, malformed) must be refused for its own
//! reason; a client certificate from another CA, or none, must be refused by the server —
//! which the host confirms from its side (`ASK tls-refusal`). The broker is reached by name,
//! resolved through the lab's name server.

use crate::{keystore, with_crypto_stack, TLS_STACK_WORDS};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use fqp_keystore::Keystore;
use fqp_net::TcpStream;
use fqp_testkit::{check, check_eq, group, log, Failure, TestResult};
use fqp_tls::{Buffers, CertError, ClientAuth, Config, Error, Session, RECORD_BUFFER};
use fqp_transport::Transport;

group!(pub TLS, "tls", [
    handshake_with_the_lab_credentials => 30_000,
    untrusted_server_is_refused => 30_000,
    expired_server_certificate_is_refused => 30_000,
    wrong_host_name_is_refused => 30_000,
    malformed_server_certificate_is_refused => 30_000,
    server_refuses_a_client_certificate_from_another_ca => 30_000,
    server_refuses_a_client_without_a_certificate => 30_000,
    mqtt_over_tls_with_client_certificate => 60_000,
    broker_refuses_a_client_certificate_from_another_ca => 30_000,
]);

fn ms() -> u64 {
    fqp_kernel::time::uptime_us() / 1000
}

fn setting(key: &str) -> Result<String, Failure> {
    match fqp_testkit::config::get_str(key) {
        Some(v) => Ok(v),
        None => fqp_testkit::skip!("the host provisioned no {} setting", key),
    }
}

/// Which CA the host is asked to issue the device's certificate from.
#[derive(Clone, Copy, PartialEq)]
enum Issuer {
    Lab,
    Foreign,
    /// No certificate at all.
    None,
}

/// A keystore holding the provisioned root CA and, unless `issuer` is `None`, a key made here
/// with a certificate for it from `issuer`.
fn identity(arena: &mut [u8], issuer: Issuer) -> Result<Keystore<'_>, Failure> {
    let mut ks = keystore(arena)?;
    let root =
        hex::decode(setting("root_ca")?).map_err(|_| fqp_testkit::fail!("root_ca is not hex"))?;
    ks.import_certificate("root-ca", &root)
        .map_err(|e| fqp_testkit::fail!("import the root CA: {:?}", e))?;
    if issuer == Issuer::None {
        return Ok(ks);
    }
    let public = ks
        .generate_p256("device")
        .map_err(|e| fqp_testkit::fail!("generate: {:?}", e))?;
    let ca = if issuer == Issuer::Lab {
        "lab"
    } else {
        "foreign"
    };
    fqp_testkit::ask(
        "issue-certificate",
        &[("public", &hex::encode(public)), ("ca", ca)],
        10_000,
    )?;
    let cert = hex::decode(setting("device_cert")?)
        .map_err(|_| fqp_testkit::fail!("device_cert is not hex"))?;
    ks.import_certificate("device-cert", &cert)
        .map_err(|e| fqp_testkit::fail!("import the device certificate: {:?}", e))?;
    Ok(ks)
}

/// A keystore holding the provisioned root CA (`root-ca`) and a key made here (`device`)
/// with a certificate the host issued for it from the lab root (`device-cert`): the
/// credentials of a device of the lab.
pub fn lab_identity(arena: &mut [u8]) -> Result<Keystore<'_>, Failure> {
    identity(arena, Issuer::Lab)
}

/// Now, as the host's provisioned time plus the time since boot (the host sets it at boot).
fn now() -> Option<u64> {
    let t: u64 = fqp_testkit::config::get_str("time")?.parse().ok()?;
    Some(t + fqp_kernel::time::uptime_us() / 1_000_000)
}

fn tcp(service: &str) -> Result<TcpStream, Failure> {
    fqp_suite_net::up()?;
    let (mut ip, port) = fqp_suite_net::service(service)?;
    // The lab's broker is reached by its name, through the lab's name server, as a device
    // reaches a real one (by address where the lab has no name server, or the broker is not
    // the lab's: `mqtts_name`).
    let external = fqp_testkit::config::get("mqtts_name").is_some();
    if service == "mqtts" && !external && fqp_testkit::config::get("dns").is_some() {
        let name = setting("tls_server_name")?;
        let dns = fqp_suite_net::service("dns")?;
        ip = fqp_net::resolve(&name, Some(dns), 3_000)
            .map_err(|e| fqp_testkit::fail!("resolve {}: {:?}", name, e))?;
    }
    TcpStream::connect(ip, port, 5_000)
        .map_err(|e| fqp_testkit::fail!("connect to {} at {}:{}: {:?}", service, ip, port, e))
}

/// Opens a session to the lab service `service` with the keystore's credentials; the result
/// and the handshake's duration in ms.
fn open<'b>(
    ks: &mut Keystore<'_>,
    service: &str,
    buffers: &'b mut Buffers<'_>,
) -> Result<(Result<Session<'b, TcpStream>, Error>, u64), Failure> {
    // A broker of someone else's has its own name and may chain to another CA.
    let external = service == "mqtts" && fqp_testkit::config::get("mqtts_name").is_some();
    let server_name = setting(if external {
        "mqtts_name"
    } else {
        "tls_server_name"
    })?;
    let mut root_label = "root-ca";
    if let (true, Some(ca)) = (external, fqp_testkit::config::get_str("mqtts_ca")) {
        let der = hex::decode(ca).map_err(|_| fqp_testkit::fail!("mqtts_ca is not hex"))?;
        if ks.certificate("broker-ca").is_err() {
            ks.import_certificate("broker-ca", &der)
                .map_err(|e| fqp_testkit::fail!("import the broker's CA: {:?}", e))?;
        }
        root_label = "broker-ca";
    }
    let t = tcp(service)?;
    let root = ks
        .certificate(root_label)
        .map_err(|e| fqp_testkit::fail!("root CA: {:?}", e))?
        .to_vec();
    let t0 = ms();
    let session = client_session(ks, &root, &server_name, t, buffers);
    Ok((session, ms() - t0))
}

/// Opens TLS over `t` to a server named `name` whose chain ends at `root`, with the
/// keystore's credentials (`device` and `device-cert`, when it holds them).
pub fn client_session<'b, T: fqp_transport::Transport>(
    ks: &mut Keystore<'_>,
    root: &[u8],
    name: &str,
    t: T,
    buffers: &'b mut Buffers<'_>,
) -> Result<Session<'b, T>, Error> {
    let mut seed = [0u8; 32];
    ks.random(&mut seed);
    let signer = ks.signer("device").ok();
    let certificate = ks.certificate("device-cert").ok();
    let client = match (&signer, certificate) {
        (Some(signer), Some(certificate)) => Some(ClientAuth {
            certificate,
            signer,
        }),
        _ => None,
    };
    let config = Config {
        server_name: name,
        root_ca: root,
        now: now(),
        seed,
        client,
        handshake_timeout_ms: 10_000,
        io_timeout_ms: 5_000,
    };
    Session::open(t, buffers, &config)
}

fn record_buffers() -> (Vec<u8>, Vec<u8>) {
    (vec![0u8; RECORD_BUFFER], vec![0u8; 4096])
}

/// Opens a session to `service` as a device with `issuer`'s certificate and gives `f` the
/// outcome and the handshake's duration in ms.
fn with_session<R>(
    issuer: Issuer,
    service: &str,
    f: impl for<'s> FnOnce(Result<Session<'s, TcpStream>, Error>, u64) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let mut arena = vec![0u8; 4096];
    let mut ks = identity(&mut arena, issuer)?;
    let (mut r, mut w) = record_buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let (session, took) = open(&mut ks, service, &mut bufs)?;
    f(session, took)
}

fn handshake_with_the_lab_credentials() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        with_session(Issuer::Lab, "tls_echo", |session, took| {
            let mut s = session.map_err(|e| fqp_testkit::fail!("handshake: {:?}", e))?;
            fqp_testkit::metric("tls_handshake", took, "ms");
            // 32 KiB each way, in several records.
            let data: Vec<u8> = (0..32 * 1024u32)
                .map(|i| (i * 31 + i / 253) as u8)
                .collect();
            let mut back = vec![0u8; data.len()];
            let t0 = ms();
            for (out, into) in data.chunks(4096).zip(back.chunks_mut(4096)) {
                s.send_all(out, 5_000)
                    .map_err(|e| fqp_testkit::fail!("send: {:?} ({:?})", e, s.ended()))?;
                s.recv_exact(into, 5_000)
                    .map_err(|e| fqp_testkit::fail!("receive: {:?} ({:?})", e, s.ended()))?;
            }
            check!(back == data, "the echo differs from what was sent");
            log!("handshake {} ms; 32 KiB echoed in {} ms", took, ms() - t0);
            s.close()
                .map_err(|e| fqp_testkit::fail!("close: {:?}", e))?;
            Ok(())
        })
    })
}

/// A session to the bad server `service` must fail with `want`.
fn refused_as(service: &'static str, want: CertError) -> TestResult {
    with_session(Issuer::None, service, |session, _| {
        check_eq!(session.err(), Some(Error::Certificate(want)));
        Ok(())
    })
}

fn untrusted_server_is_refused() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        refused_as("tls_untrusted", CertError::UnknownIssuer)
    })
}

fn expired_server_certificate_is_refused() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        check!(
            now().is_some(),
            "the host provisioned no time: expiry cannot be checked"
        );
        refused_as("tls_expired", CertError::Expired)
    })
}

fn wrong_host_name_is_refused() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        refused_as("tls_wrong_name", CertError::NameMismatch)
    })
}

fn malformed_server_certificate_is_refused() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        refused_as("tls_malformed", CertError::Malformed)
    })
}

/// How a client sees a server refuse its certificate: TLS 1.3 completes the client's side of
/// the handshake first, so the refusal comes as an alert on the first read — or as a reset,
/// when the server closed before reading all the client sent.
fn is_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::PeerAborted | Error::Alert(_) | Error::Transport(fqp_transport::Error::Closed)
    )
}

/// With the client certificate from `issuer`, the lab's TLS server must refuse the client,
/// and say (to the host) why: `reason`.
fn client_refused(issuer: Issuer, reason: &str) -> TestResult {
    let got = with_session(issuer, "tls_echo", |session, _| {
        Ok(session.and_then(|mut s| {
            s.write(b"hello", 5_000)?;
            let mut buf = [0u8; 16];
            s.read(&mut buf, 5_000)
        }))
    })?;
    match got {
        Err(e) if is_refusal(&e) => log!("refused: {:?}", e),
        other => return Err(fqp_testkit::fail!("the server did not refuse: {:?}", other)),
    }
    fqp_testkit::ask("tls-refusal", &[("expect", reason)], 5_000)
}

fn server_refuses_a_client_certificate_from_another_ca() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        client_refused(Issuer::Foreign, "UnknownIssuer")
    })
}

fn server_refuses_a_client_without_a_certificate() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        client_refused(Issuer::None, "no certificates")
    })
}

type Inbox = RefCell<Vec<(String, Vec<u8>)>>;

/// Connects MQTT over TLS to the broker's TLS listener with the credentials of `issuer`.
fn mqtts<'b>(
    ks: &mut Keystore<'_>,
    buffers: &'b mut Buffers<'_>,
    tx: &'b mut [u8],
    rx: &'b mut [u8],
    inbox: &'b Inbox,
    client_id: &str,
) -> Result<
    fqp_mqtt::Client<'b, Session<'b, TcpStream>, impl FnMut(&fqp_mqtt::Message<'_>) + 'b>,
    Failure,
> {
    let (user, password) = (setting("mqtt_user")?, setting("mqtt_password")?);
    let (session, took) = open(ks, "mqtts", buffers)?;
    let session = session.map_err(|e| fqp_testkit::fail!("TLS to the broker: {:?}", e))?;
    log!("TLS handshake with the broker: {} ms", took);
    let mut c = fqp_mqtt::Client::new(tx, rx, ms, move |m: &fqp_mqtt::Message<'_>| {
        inbox
            .borrow_mut()
            .push((String::from(m.topic), m.payload.to_vec()))
    });
    let connect = fqp_mqtt::Connect {
        client_id,
        clean_session: true,
        keep_alive: 30,
        username: Some(&user),
        password: Some(password.as_bytes()),
        will: None,
    };
    c.connect(session, &connect, 10_000)
        .map_err(|e| fqp_testkit::fail!("CONNECT over TLS: {:?}", e))?;
    Ok(c)
}

fn mqtt_over_tls_with_client_certificate() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        let mut arena = vec![0u8; 4096];
        let mut ks = identity(&mut arena, Issuer::Lab)?;
        let (mut r, mut w) = record_buffers();
        let mut bufs = Buffers::new(&mut r, &mut w);
        let (mut tx, mut rx) = (vec![0u8; 2048], vec![0u8; 2048]);
        let inbox = Inbox::default();
        let mut c = mqtts(&mut ks, &mut bufs, &mut tx, &mut rx, &inbox, "fqp-tls")?;
        let granted = c
            .subscribe(&[("fqp/tls/#", fqp_mqtt::QoS::AtLeastOnce)])
            .map_err(|e| fqp_testkit::fail!("SUBSCRIBE: {:?}", e))?;
        check_eq!(granted[0], Some(fqp_mqtt::QoS::AtLeastOnce));
        // Lock-step QoS 1 round trips through the broker, over TLS.
        const N: usize = 100;
        let t0 = ms();
        for i in 0..N {
            c.publish(
                "fqp/tls/echo",
                &[i as u8; 32],
                fqp_mqtt::QoS::AtLeastOnce,
                false,
            )
            .map_err(|e| fqp_testkit::fail!("PUBLISH {}: {:?}", i, e))?;
            let end = ms() + 5_000;
            while inbox.borrow().len() <= i {
                check!(ms() < end, "message {} did not come back within 5 s", i);
                c.poll(100)
                    .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
            }
        }
        let took = (ms() - t0).max(1);
        check!(
            inbox
                .borrow()
                .iter()
                .enumerate()
                .all(|(i, (t, p))| t == "fqp/tls/echo" && p[..] == [i as u8; 32]),
            "messages came back changed or out of order"
        );
        fqp_testkit::metric("mqtt_tls_round_trips_per_s", N as u64 * 1000 / took, "1/s");
        log!("{} QoS 1 round trips over TLS in {} ms", N, took);
        c.disconnect()
            .map_err(|e| fqp_testkit::fail!("DISCONNECT: {:?}", e))?;
        Ok(())
    })
}

fn broker_refuses_a_client_certificate_from_another_ca() -> TestResult {
    with_crypto_stack(TLS_STACK_WORDS, || {
        with_session(Issuer::Foreign, "mqtts", |session, _| {
            let mut s = match session {
                Ok(s) => s,
                Err(e) if is_refusal(&e) => {
                    log!("refused in the handshake: {:?}", e);
                    return Ok(());
                }
                Err(e) => return Err(fqp_testkit::fail!("handshake: {:?}", e)),
            };
            // An MQTT CONNECT must not be answered.
            let connect = [
                0x10, 0x12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 6, b'f', b'q', b'p',
                b'-', b'n', b'o',
            ];
            let got = s.write(&connect, 5_000).and_then(|_| {
                let mut buf = [0u8; 8];
                s.read(&mut buf, 5_000)
            });
            match got {
                Err(e) if is_refusal(&e) => {
                    log!("refused: {:?}", e);
                    Ok(())
                }
                other => Err(fqp_testkit::fail!(
                    "the broker did not refuse the foreign certificate: {:?}",
                    other
                )),
            }
        })
    })
}
