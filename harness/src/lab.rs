//! The lab's network services, run by the harness for the network tests: a TCP echo server,
//! a server that answers `bye` and closes, and an MQTT broker (rumqttd, in process, with a user
//! name and password required). Their addresses, as the device reaches this machine
//! (`network.host` in the manifest; QEMU's user network: 10.0.2.2), and the broker's
//! credentials are provisioned on the device after every boot: settings `echo`, `closer`,
//! `mqtt`, `mqtt_user`, `mqtt_password`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Services of one run (they live until the harness exits).
pub struct Lab {
    /// Settings to provision: `(key, value)`.
    pub settings: Vec<(String, String)>,
}

fn serve(listener: TcpListener, each: fn(TcpStream)) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || each(conn));
        }
    });
}

fn echo(mut c: TcpStream) {
    let _ = c.set_nodelay(true);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Answers the first thing it receives with `bye` and closes. (Waiting for the client first
/// keeps the close after the connection is fully set up: closing at once races an emulator's
/// user network, which may still be completing the guest's handshake.)
fn closer(mut c: TcpStream) {
    let mut buf = [0u8; 256];
    if matches!(c.read(&mut buf), Ok(n) if n > 0) {
        let _ = c.write_all(b"bye\n");
    }
    let _ = c.shutdown(std::net::Shutdown::Both);
}

impl Lab {
    /// Starts the services, listening where a device at `host` can reach them (loopback for
    /// an emulator's user network, every interface for boards).
    pub fn start(host: &str, emulated: bool) -> Result<Lab, String> {
        let bind = if emulated { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let mut settings = Vec::new();
        for (key, each) in [("echo", echo as fn(TcpStream)), ("closer", closer)] {
            let l = TcpListener::bind(bind)
                .map_err(|e| format!("cannot start the lab's {key} server: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            serve(l, each);
            settings.push((key.to_string(), format!("{host}:{port}")));
        }
        let mqtt = start_broker(if emulated { "127.0.0.1" } else { "0.0.0.0" })?;
        settings.push(("mqtt".into(), format!("{host}:{mqtt}")));
        settings.push(("mqtt_user".into(), BROKER_USER.into()));
        settings.push(("mqtt_password".into(), BROKER_PASSWORD.into()));
        Ok(Lab { settings })
    }
}

/// The broker's one account (tests also try a wrong password).
const BROKER_USER: &str = "fqp-device";
const BROKER_PASSWORD: &str = "lab-secret";

/// Starts rumqttd on a free port of `ip`; returns the port once it accepts connections.
fn start_broker(ip: &str) -> Result<u16, String> {
    let port = TcpListener::bind(format!("{ip}:0"))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a port for the MQTT broker: {e}"))?
        .port();
    let config = format!(
        r#"id = 0
[router]
id = 0
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 4194304
max_segment_count = 10

[v4.1]
name = "fqp-lab"
listen = "{ip}:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 10000
max_payload_size = 131072
max_inflight_count = 100
dynamic_filters = true
[v4.1.connections.auth]
{BROKER_USER} = "{BROKER_PASSWORD}"
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&config).map_err(|e| format!("MQTT broker configuration: {e}"))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("the lab's MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| format!("cannot start the MQTT broker: {e}"))?;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect((ip.replace("0.0.0.0", "127.0.0.1").as_str(), port)).is_err() {
        if std::time::Instant::now() > end {
            return Err(format!(
                "the lab's MQTT broker did not listen on port {port} within 5 s"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_closer_behave() {
        let lab = Lab::start("127.0.0.1", true).unwrap();
        let addr = |k: &str| {
            lab.settings
                .iter()
                .find(|(key, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
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

    /// fqp-mqtt's client over a host TCP socket.
    struct Tcp(TcpStream);

    impl fqp_transport::Transport for Tcp {
        fn send(&mut self, data: &[u8], _: u32) -> Result<usize, fqp_transport::Error> {
            self.0.write(data).map_err(|_| fqp_transport::Error::Closed)
        }

        fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
            let _ = self
                .0
                .set_read_timeout(Some(std::time::Duration::from_millis(
                    timeout_ms.max(1) as u64
                )));
            match self.0.read(buf) {
                Ok(n) => Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Err(fqp_transport::Error::Timeout)
                }
                Err(_) => Err(fqp_transport::Error::Closed),
            }
        }
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
        let lab = Lab::start("127.0.0.1", true).unwrap();
        let get = |k: &str| {
            lab.settings
                .iter()
                .find(|(key, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
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
            Tcp(TcpStream::connect(get("mqtt")).unwrap()),
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
            Tcp(TcpStream::connect(get("mqtt")).unwrap()),
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
