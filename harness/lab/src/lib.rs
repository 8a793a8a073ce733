//! # fqp-lab: the lab a qualification run needs on the host
//!
//! The network services the device's tests talk to, started for a run and stopped with it: a
//! TCP echo server, a server that answers `bye` and closes, a name server for the lab's names,
//! TLS echo servers with good and bad certificates, and an MQTT broker (rumqttd in process
//! behind a proxy that can cut connections, mosquitto, or the user's own) with a user name and
//! password required and a TLS listener requiring client certificates. Their addresses, as
//! the device reaches this machine (`network.host` in the manifest; QEMU's user network:
//! 10.0.2.2), and the broker's credentials are provisioned on the device after every boot.
//! The certificates come from the lab's PKI ([`Pki`]), whose root CA lives in the lab
//! directory. [`Lab::act`] carries out what a test asks of the host (`ASK action=…`).

mod broker;
mod cloud;
mod error;
mod ota;
mod pki;
mod served;
mod services;

pub use broker::{running_as_root, Broker, External};
pub use cloud::{thing_of, NEIGHBOUR};
pub use error::LabError;
pub use pki::{code_signing, Pair, Pki, PrivateRunDir};
pub use served::{cloud_dir, lasting_secret, serve as serve_cloud, Served};

use broker::{
    read_ca, spawn_mosquitto, start_broker, start_mosquitto, Proxy, BROKER_PASSWORD, BROKER_USER,
};
use services::{closer, echo, name_server, serve, tls_echo};
use std::net::{TcpListener, TcpStream};
pub struct Lab {
    /// Settings to provision: `(key, value)`.
    pub settings: Vec<(String, String)>,
    broker: Running,
    /// How the TLS echo server (client certificates required) ended each connection.
    tls_endings: Endings,
    /// The local IoT cloud.
    cloud: cloud::CloudLab,
}

/// Connection endings of a TLS server, newest last: `closed`, or why it refused the client.
pub(crate) type Endings = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The broker as the lab runs it, for restarts.
enum Running {
    /// rumqttd cannot be stopped in process: it sits behind a proxy that can cut every
    /// connection and turn new ones away for a while, which is what clients see of a restart.
    Embedded(std::sync::Arc<Proxy>),
    /// A mosquitto process and its configuration, restarted for real.
    Mosquitto(
        std::sync::Mutex<fqp_process::Guarded>,
        std::path::PathBuf,
        u16,
    ),
    External,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Running::Mosquitto(child, ..) = &self.broker {
            if let Ok(mut c) = child.lock() {
                c.kill();
            }
        }
    }
}

impl Lab {
    /// Carries out what a test asks (`ASK action=…`); what it answers, as settings.
    pub fn act(
        &self,
        action: &str,
        fields: &[(String, String)],
    ) -> Result<Vec<(String, String)>, LabError> {
        if let Some(answer) = self.cloud.act(action, fields) {
            return answer;
        }
        match action {
            "restart-broker" => self.restart_broker(),
            "tls-refusal" => self.tls_refusal(field(fields, "expect")?),
            other => Err(LabError::UnknownAction(other.to_string())),
        }
        .map(|()| Vec::new())
    }

    /// What device `id` alone is provisioned with (its thing in the cloud, and the thing's
    /// token), after the settings every device gets.
    pub fn device_settings(&self, id: &str) -> Vec<(String, String)> {
        self.cloud.device_settings(id)
    }

    /// Whether the TLS echo server's latest connection ended refusing the client for a reason
    /// that contains `expect` (rustls's words, e.g. `UnknownIssuer`, `no certificates`).
    fn tls_refusal(&self, expect: &str) -> Result<(), LabError> {
        // The device may see the refusal a moment before the server thread records it.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let last = self.tls_endings.lock().ok().and_then(|e| e.last().cloned());
            match last {
                Some(why) if why.contains(expect) => return Ok(()),
                Some(why) if std::time::Instant::now() > end => {
                    return Err(LabError::Refuted(format!(
                        "the TLS server's last connection ended: {why}"
                    )))
                }
                None if std::time::Instant::now() > end => {
                    return Err(LabError::Refuted("the TLS server had no connection".into()))
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    fn restart_broker(&self) -> Result<(), LabError> {
        match &self.broker {
            Running::Embedded(proxy) => {
                proxy.restart(std::time::Duration::from_secs(1));
                Ok(())
            }
            Running::Mosquitto(child, conf, port) => {
                // A poisoned lock only means a thread panicked holding it; the child is
                // still ours to restart.
                let mut c = child.lock().unwrap_or_else(|p| p.into_inner());
                c.kill();
                *c = spawn_mosquitto(conf, *port)?;
                Ok(())
            }
            Running::External => Err(LabError::Broker {
                problem: "the test asks to restart the broker, and fqp does not restart a broker it does not run".into(),
                fix: "run the tests that restart the broker with the embedded broker or mosquitto".into(),
            }),
        }
    }
}

/// What a lab is started with.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// Where a device reaches this machine (`network.host`).
    pub host: &'a str,
    /// The devices are emulators on this machine (the services listen on loopback), not
    /// boards (every interface).
    pub emulated: bool,
    pub broker: &'a Broker,
    /// The CA certificate an external TLS broker's certificate chains to.
    pub broker_ca: Option<&'a std::path::Path>,
    /// The run's output directory (logs, mosquitto's files, the cloud's state).
    pub dir: &'a std::path::Path,
    /// The run's lab PKI, written (with keys) to `pki_dir`.
    pub pki: &'a crate::pki::Pki,
    pub pki_dir: &'a std::path::Path,
    /// The run's devices, each a thing in the cloud.
    pub ids: &'a [String],
    /// The run's signed image and the key that signed it, for the updates tests offer
    /// (`cloud-ota-offer`); `None` for a port without a boot loader.
    pub ota: Option<Ota<'a>>,
}

/// What the lab makes updates of: the image a run's devices boot, signed for their boot
/// loader (`firmware.fqpimg`), and the lab's code-signing pair that signed it.
#[derive(Clone, Copy)]
pub struct Ota<'a> {
    pub image: &'a std::path::Path,
    pub signer: &'a Pair,
}

impl Lab {
    /// Starts the services of `setup`.
    pub fn start(setup: &Setup<'_>) -> Result<Lab, LabError> {
        let Setup {
            host,
            emulated,
            broker,
            broker_ca,
            dir,
            pki,
            pki_dir,
            ids,
            ota,
        } = *setup;
        if broker_ca.is_some() && !matches!(broker, Broker::External(External { tls: true, .. })) {
            return Err(LabError::Option {
                problem: "--broker-ca is for an mqtts:// broker".into(),
                fix: "leave --broker-ca out (the lab's own brokers use the lab root), or give the broker as mqtts://".into(),
            });
        }
        let bind = if emulated { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let mut settings = Vec::new();
        let tls_endings = start_services(host, bind, pki, &mut settings)?;
        let ip = if emulated { "127.0.0.1" } else { "0.0.0.0" };
        let broker = match broker {
            Broker::Embedded => {
                let (plain, tls) = start_broker("127.0.0.1", ip, pki_dir)?;
                let (proxy, port) = Proxy::start(ip, plain)?;
                own_broker(host, port, tls, &mut settings);
                Running::Embedded(proxy)
            }
            Broker::Mosquitto => {
                let (child, conf, port, tls) = start_mosquitto(ip, dir, pki_dir)?;
                own_broker(host, port, tls, &mut settings);
                Running::Mosquitto(std::sync::Mutex::new(child), conf, port)
            }
            Broker::External(external) => {
                external_broker(external, host, broker_ca, &mut settings)?;
                Running::External
            }
        };
        let mut cloud = cloud::CloudLab::start(host, ip, dir, pki, ids, &mut settings)?;
        if let Some(ota) = ota {
            cloud.offer_updates(ota::Offers::new(ota, pki, &mut settings)?);
        }
        Ok(Lab {
            settings,
            broker,
            tls_endings,
            cloud,
        })
    }
}

/// Starts the echo and closer servers, the TLS servers (the good one, requiring client
/// certificates from the lab root, and one per way a server certificate can be bad) and the
/// name server, on `bind`; adds their settings. How the good TLS server's connections ended.
fn start_services(
    host: &str,
    bind: &str,
    pki: &crate::pki::Pki,
    settings: &mut Vec<(String, String)>,
) -> Result<Endings, LabError> {
    for (key, each) in [("echo", echo as fn(TcpStream)), ("closer", closer)] {
        let start = || LabError::start(format!("the lab's {key} server"));
        let l = TcpListener::bind(bind).map_err(start())?;
        let port = l.local_addr().map_err(start())?.port();
        serve(l, each);
        settings.push((key.to_string(), format!("{host}:{port}")));
    }
    let tls_endings = Endings::default();
    let port = tls_echo(bind, &pki.server, Some(&pki.root_der), tls_endings.clone())?;
    settings.push(("tls_echo".into(), format!("{host}:{port}")));
    for (key, cert) in [
        ("tls_untrusted", &pki.untrusted_server),
        ("tls_expired", &pki.expired_server),
        ("tls_wrong_name", &pki.wrong_name_server),
        ("tls_malformed", &pki.malformed_server),
    ] {
        let port = tls_echo(bind, cert, None, Endings::default())?;
        settings.push((key.into(), format!("{host}:{port}")));
    }
    settings.push(("tls_server_name".into(), crate::pki::BROKER_NAME.into()));
    // A name server for the lab's names (a device's own, from DHCP, knows none of them).
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        let port = name_server(bind, ip)?;
        settings.push(("dns".into(), format!("{host}:{port}")));
    }
    Ok(tls_endings)
}

/// The settings of a broker the lab runs (plain `port`, TLS `tls`, the lab's account).
fn own_broker(host: &str, port: u16, tls: u16, settings: &mut Vec<(String, String)>) {
    settings.push(("mqtts".into(), format!("{host}:{tls}")));
    settings.push(("mqtt".into(), format!("{host}:{port}")));
    settings.push(("mqtt_user".into(), BROKER_USER.into()));
    settings.push(("mqtt_password".into(), BROKER_PASSWORD.into()));
}

/// The settings of the user's broker, by address: the device has no
/// name service of the lab's. A broker on this machine is reached where the device reaches
/// this machine (`host`).
fn external_broker(
    broker: &External,
    host: &str,
    broker_ca: Option<&std::path::Path>,
    settings: &mut Vec<(String, String)>,
) -> Result<(), LabError> {
    use std::net::ToSocketAddrs;
    let External {
        host: h,
        port,
        user,
        password,
        tls,
    } = broker;
    let v4 = (h.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| LabError::Option {
            problem: format!("broker {h}: {e}"),
            fix: "give --broker a host name this machine resolves".into(),
        })?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| LabError::Option {
            problem: format!("broker {h} has no IPv4 address"),
            fix: "the device's network stack speaks IPv4: give a broker it can reach".into(),
        })?;
    let (ip, name) = if v4.ip().is_loopback() {
        (host.to_string(), host)
    } else {
        (v4.ip().to_string(), h.as_str())
    };
    if *tls {
        // The name its certificate is checked against: as given, unless it is this machine,
        // which the device knows by its own address for it.
        settings.push(("mqtts".into(), format!("{ip}:{port}")));
        settings.push(("mqtts_name".into(), name.to_string()));
        if let Some(ca) = broker_ca {
            settings.push(("mqtts_ca".into(), hex::encode(read_ca(ca)?)));
        }
    } else {
        settings.push(("mqtt".into(), format!("{ip}:{port}")));
    }
    settings.push(("mqtt_user".into(), user.clone()));
    settings.push(("mqtt_password".into(), password.clone()));
    Ok(())
}

/// The bytes of a field of an `ASK` written in hex.
fn hex_field(fields: &[(String, String)], key: &str) -> Result<Vec<u8>, LabError> {
    hex::decode(field(fields, key)?).map_err(|_| LabError::Field {
        field: key.to_string(),
        problem: "not hex".into(),
    })
}

/// The value of a field of an `ASK`.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Result<&'a str, LabError> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| LabError::Field {
            field: key.to_string(),
            problem: "missing".into(),
        })
}

/// `issue-certificate`: a client certificate for the key a device made (fields `device`,
/// `public`: SEC1 hex, `ca`: `lab` or `foreign`), answered as the setting `device_cert` (DER,
/// hex).
pub fn issue_certificate(
    pki: &Pki,
    fields: &[(String, String)],
) -> Result<Vec<(String, String)>, LabError> {
    let public = hex_field(fields, "public")?;
    let foreign = match field(fields, "ca")? {
        "lab" => false,
        "foreign" => true,
        other => {
            return Err(LabError::Field {
                field: "ca".into(),
                problem: format!("{other:?}: write lab or foreign"),
            })
        }
    };
    let device = field(fields, "device").unwrap_or("device");
    let der = pki.issue_client(device, &public, foreign)?;
    Ok(vec![("device_cert".into(), hex::encode(der))])
}

/// 32 bytes from this machine's random source, hex: the seed of a device without entropy.
pub fn entropy_hex() -> String {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    // The system source does not fail on supported hosts; a zero seed would be caught by the
    // device's statistical tests.
    let _ = ring::rand::SystemRandom::new().fill(&mut seed);
    hex::encode(seed)
}

/// `verify-signature`: checks, on the host, an ECDSA P-256 signature made on the device:
/// fields `public` (SEC1, hex), `msg` (text) and `sig` (`r || s`, hex).
pub fn verify_signature(fields: &[(String, String)]) -> Result<(), LabError> {
    let public = hex_field(fields, "public")?;
    let sig = hex_field(fields, "sig")?;
    let msg = field(fields, "msg")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| LabError::Refuted("the signature does not verify with that public key".into()))
}

#[cfg(test)]
mod tests {
    /// A lab for an emulator on this machine, with its PKI in a temporary directory.
    /// The lab's setting `k` (what a device is provisioned with).
    fn setting(lab: &Lab, k: &str) -> String {
        let found = lab.settings.iter().find(|(key, _)| key == k);
        found.unwrap().1.clone()
    }

    /// A test's lab directory, removed with it (the lab's database and PKI are megabytes).
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn test_lab() -> (Lab, Scratch) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fqp-lab-{}-{n}", std::process::id()));
        let scratch = Scratch(dir.clone());
        let pki = crate::pki::Pki::make("127.0.0.1", &["1".into()], None).unwrap();
        pki.write_with_keys(&dir.join("pki")).unwrap();
        let lab = Lab::start(&Setup {
            host: "127.0.0.1",
            emulated: true,
            broker: &Broker::Embedded,
            broker_ca: None,
            dir: &dir,
            pki: &pki,
            pki_dir: &dir.join("pki"),
            ids: &["1".into()],
            ota: None,
        });
        (lab.unwrap(), scratch)
    }

    use super::*;
    use crate::services::dns_reply;
    use std::io::{Read, Write};

    #[test]
    fn signatures_made_elsewhere_are_checked() {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let sig = key.sign(&rng, b"fqp").unwrap();
        let fields = |msg: &str| {
            vec![
                ("public".to_string(), hex::encode(key.public_key())),
                ("msg".to_string(), msg.to_string()),
                ("sig".to_string(), hex::encode(sig)),
            ]
        };
        assert!(verify_signature(&fields("fqp")).is_ok());
        assert!(verify_signature(&fields("tampered")).is_err());
        assert!(verify_signature(&fields("fqp")[..2])
            .unwrap_err()
            .to_string()
            .contains("sig"));
        assert_eq!(entropy_hex().len(), 64);
        assert_ne!(entropy_hex(), entropy_hex());
    }

    #[test]
    fn broker_choices_parse() {
        assert_eq!("embedded".parse::<Broker>().unwrap(), Broker::Embedded);
        assert_eq!("mosquitto".parse::<Broker>().unwrap(), Broker::Mosquitto);
        assert_eq!(
            "mqtt://dev:s3cr@t@broker.lab:1883"
                .parse::<Broker>()
                .unwrap(),
            Broker::External(External {
                host: "broker.lab".into(),
                port: 1883,
                user: "dev".into(),
                password: "s3cr@t".into(),
                tls: false,
            })
        );
        assert_eq!(
            "mqtts://a.iot.example:8883".parse::<Broker>().unwrap(),
            Broker::External(External {
                host: "a.iot.example".into(),
                port: 8883,
                user: String::new(),
                password: String::new(),
                tls: true,
            })
        );
        let e = "tcp://x:1".parse::<Broker>().unwrap_err().to_string();
        assert!(e.contains("mqtt://[user:password@]host:port"), "{e}");
        assert!("mqtt://x".parse::<Broker>().is_err());
    }

    #[test]
    fn echo_and_closer_behave() {
        let (lab, _dir) = test_lab();
        let addr = |k: &str| setting(&lab, k);
        let mut c = TcpStream::connect(addr("echo")).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let mut c = TcpStream::connect(addr("closer")).unwrap();
        c.write_all(b"hello\n").unwrap();
        let mut all = Vec::new();
        c.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"bye\n");
    }

    #[test]
    fn the_name_server_knows_the_lab_names_only() {
        let (lab, _dir) = test_lab();
        let dns = &lab.settings.iter().find(|(k, _)| k == "dns").unwrap().1;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let ask = |name: &str| {
            let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            for l in name.split('.') {
                q.push(l.len() as u8);
                q.extend_from_slice(l.as_bytes());
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            sock.send_to(&q, dns).unwrap();
            let mut buf = [0u8; 512];
            let n = sock.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        let r = ask("Broker.fqp.lab");
        assert_eq!(&r[..4], &[0xab, 0xcd, 0x81, 0x80]); // our id, a reply, no error
        assert_eq!(&r[6..8], &[0, 1]); // one answer
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);
        let r = ask("elsewhere.fqp.lab");
        assert_eq!((r[3] & 0x0f, &r[6..8]), (3, &[0u8, 0][..])); // NXDOMAIN
                                                                 // Not a query: no answer.
        assert!(dns_reply(&[0xab, 0xcd, 0x81, 0x80], std::net::Ipv4Addr::LOCALHOST).is_none());
    }

    fn ms() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    #[test]
    fn our_mqtt_client_works_against_the_lab_broker() {
        use fqp_mqtt::{Client, Connect, QoS};
        let (lab, _dir) = test_lab();
        let get = |k: &str| setting(&lab, k);
        let connect = |password: &'static str| Connect {
            client_id: "host-test",
            clean_session: true,
            keep_alive: 30,
            username: Some(BROKER_USER),
            password: Some(password.as_bytes()),
            will: None,
        };
        let (mut tx, mut rx) = (vec![0u8; 80 * 1024], vec![0u8; 80 * 1024]);
        let got: std::cell::RefCell<Vec<(String, usize)>> = Default::default();
        let mut c = Client::new(&mut tx, &mut rx, ms, |m| {
            got.borrow_mut()
                .push((m.topic.to_string(), m.payload.len()))
        });
        let wrong = c.connect(
            TcpStream::connect(get("mqtt")).unwrap(),
            &connect("nope"),
            5_000,
        );
        assert!(
            matches!(
                wrong,
                Err(fqp_mqtt::Error::Refused(4 | 5)) | Err(fqp_mqtt::Error::Transport(_))
            ),
            "{wrong:?}"
        );
        c.connect(
            TcpStream::connect(get("mqtt")).unwrap(),
            &connect(BROKER_PASSWORD),
            5_000,
        )
        .unwrap();
        c.subscribe(&[("lab/+/echo", QoS::AtLeastOnce)]).unwrap();
        c.publish("lab/a/echo", b"zero", QoS::AtMostOnce, false)
            .unwrap();
        c.publish("lab/b/echo", &vec![7u8; 64 * 1024], QoS::AtLeastOnce, false)
            .unwrap();
        for _ in 0..50 {
            c.poll(100).unwrap();
            if got.borrow().len() >= 2 {
                break;
            }
        }
        drop(c);
        let got = got.into_inner();
        assert!(got.contains(&("lab/a/echo".to_string(), 4)), "{got:?}");
        assert!(
            got.contains(&("lab/b/echo".to_string(), 64 * 1024)),
            "{got:?}"
        );
    }
}
