//! The lab's network services, run by the harness for the network tests: a TCP echo server,
//! a server that answers `bye` and closes, and an MQTT broker (rumqttd, in process, with a user
//! name and password required). Their addresses, as the device reaches this machine
//! (`network.host` in the manifest; QEMU's user network: 10.0.2.2), and the broker's
//! credentials are provisioned on the device after every boot: settings `echo`, `closer`,
//! `mqtt`, `mqtt_user`, `mqtt_password`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Services of one run (threads live until the harness exits; a broker process until the
/// `Lab` is dropped).
pub struct Lab {
    /// Settings to provision: `(key, value)`.
    pub settings: Vec<(String, String)>,
    broker: Running,
    /// How the TLS echo server (client certificates required) ended each connection.
    tls_endings: Endings,
}

/// Connection endings of a TLS server, newest last: `closed`, or why it refused the client.
type Endings = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The broker as the lab runs it, for restarts.
enum Running {
    /// rumqttd cannot be stopped in process: it sits behind a proxy that can cut every
    /// connection and turn new ones away for a while, which is what clients see of a restart.
    Embedded(std::sync::Arc<Proxy>),
    /// A mosquitto process and its configuration, restarted for real.
    Mosquitto(
        std::sync::Mutex<crate::interrupt::Guarded>,
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
    /// Carries out what a test asks (`ASK action=…`).
    pub fn act(&self, action: &str, fields: &[(String, String)]) -> Result<(), String> {
        match action {
            "restart-broker" => self.restart_broker(),
            "tls-refusal" => self.tls_refusal(field(fields, "expect")?),
            other => Err(format!("unknown lab action {other:?}")),
        }
    }

    /// Whether the TLS echo server's latest connection ended refusing the client for a reason
    /// that contains `expect` (rustls's words, e.g. `UnknownIssuer`, `no certificates`).
    fn tls_refusal(&self, expect: &str) -> Result<(), String> {
        // The device may see the refusal a moment before the server thread records it.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let last = self.tls_endings.lock().ok().and_then(|e| e.last().cloned());
            match last {
                Some(why) if why.contains(expect) => return Ok(()),
                Some(why) if std::time::Instant::now() > end => {
                    return Err(format!("the TLS server's last connection ended: {why}"))
                }
                None if std::time::Instant::now() > end => {
                    return Err("the TLS server had no connection".into())
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    fn restart_broker(&self) -> Result<(), String> {
        match &self.broker {
            Running::Embedded(proxy) => {
                proxy.restart(std::time::Duration::from_secs(1));
                Ok(())
            }
            Running::Mosquitto(child, conf, port) => {
                let mut c = child.lock().map_err(|_| "broker lock poisoned")?;
                c.kill();
                *c = spawn_mosquitto(conf, *port)?;
                Ok(())
            }
            Running::External => Err("fqp does not restart a broker it does not run".into()),
        }
    }
}

/// A TCP proxy in front of the embedded broker.
struct Proxy {
    /// Both ends of every proxied connection, to cut them.
    conns: std::sync::Mutex<Vec<TcpStream>>,
    /// New connections are closed at once until then.
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Proxy {
    /// Listens on `ip`, forwarding to `127.0.0.1:target`; returns the port.
    fn start(ip: &str, target: u16) -> Result<(std::sync::Arc<Proxy>, u16), String> {
        let l = TcpListener::bind(format!("{ip}:0")).map_err(|e| format!("MQTT proxy: {e}"))?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        let proxy = std::sync::Arc::new(Proxy {
            conns: Default::default(),
            down_until: Default::default(),
        });
        let p = proxy.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let down = p
                    .down_until
                    .lock()
                    .ok()
                    .and_then(|d| *d)
                    .is_some_and(|t| std::time::Instant::now() < t);
                if down {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = (conn.set_nodelay(true), up.set_nodelay(true));
                if let (Ok(mut list), Ok(a), Ok(b)) =
                    (p.conns.lock(), conn.try_clone(), up.try_clone())
                {
                    list.push(a);
                    list.push(b);
                }
                for (mut from, mut to) in [
                    (conn.try_clone(), up.try_clone()),
                    (up.try_clone(), conn.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Ok((proxy, port))
    }

    fn restart(&self, down: std::time::Duration) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = Some(std::time::Instant::now() + down);
        }
        if let Ok(mut list) = self.conns.lock() {
            for c in list.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Which MQTT broker the tests use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Broker {
    /// rumqttd, in the harness's process.
    #[default]
    Embedded,
    /// Debian's mosquitto, started with a generated configuration.
    Mosquitto,
    /// A broker somebody else runs: `mqtt://[user:password@]host:port`, or `mqtts://…` for
    /// TLS.
    External {
        host: String,
        port: u16,
        user: String,
        password: String,
        tls: bool,
    },
}

impl std::str::FromStr for Broker {
    type Err = String;

    fn from_str(s: &str) -> Result<Broker, String> {
        match s {
            "embedded" => return Ok(Broker::Embedded),
            "mosquitto" => return Ok(Broker::Mosquitto),
            _ => {}
        }
        let bad = || {
            format!("{s:?} is not a broker: write embedded, mosquitto, mqtt://[user:password@]host:port or mqtts://[user:password@]host:port")
        };
        let (tls, rest) = match (s.strip_prefix("mqtt://"), s.strip_prefix("mqtts://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let (cred, addr) = match rest.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, rest),
        };
        let (user, password) = match cred {
            Some(c) => {
                let (u, p) = c.split_once(':').ok_or_else(bad)?;
                (u.to_string(), p.to_string())
            }
            None => (String::new(), String::new()),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Broker::External {
            host: host.to_string(),
            port,
            user,
            password,
            tls,
        })
    }
}

/// A CA certificate file, PEM or DER; its DER.
fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--broker-ca {}: {e}", path.display()))?;
    let der = match x509_parser::pem::parse_x509_pem(&bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes,
    };
    x509_parser::parse_x509_certificate(&der).map_err(|e| {
        format!(
            "--broker-ca {}: not an X.509 certificate (PEM or DER): {e}",
            path.display()
        )
    })?;
    Ok(der)
}

/// The value of a field of an `ASK`.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Result<&'a str, String> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| format!("the request needs the field {key}"))
}

/// A TLS 1.3 echo server presenting `server` (its certificate DER, as is — a malformed one
/// too — and key), requiring client certificates from `client_root` when given; returns the
/// port. How each connection ended goes to `endings`.
fn tls_echo(
    bind: &str,
    server: &crate::pki::Pair,
    client_root: Option<&[u8]>,
    endings: Endings,
) -> Result<u16, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]);
    let builder = match client_root {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(root.to_vec()))
                .map_err(|e| format!("lab TLS server: root CA: {e}"))?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
                    .build()
                    .map_err(|e| format!("lab TLS server: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from(server.der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone())),
        )
        .map_err(|e| format!("lab TLS server: {e}"))?;
    let config = std::sync::Arc::new(config);
    let l = TcpListener::bind(bind).map_err(|e| format!("cannot start a lab TLS server: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let (config, endings) = (config.clone(), endings.clone());
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, c);
                let mut buf = [0u8; 16 * 1024];
                let ending = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break "closed".to_string(),
                        Ok(n) => {
                            if let Err(e) = s.write_all(&buf[..n]) {
                                break format!("refused: {e}");
                            }
                        }
                        Err(e) => break format!("refused: {e}"),
                    }
                };
                if let Ok(mut e) = endings.lock() {
                    e.push(ending);
                }
            });
        }
    });
    Ok(port)
}

/// A DNS server (UDP) answering the A query for [`crate::pki::BROKER_NAME`] with `address`
/// and NXDOMAIN for every other name; returns its port.
fn name_server(bind: &str, address: std::net::Ipv4Addr) -> Result<u16, String> {
    let sock = std::net::UdpSocket::bind(bind)
        .map_err(|e| format!("cannot start the lab's name server: {e}"))?;
    let port = sock.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n], address) {
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    Ok(port)
}

/// The reply to DNS query `q`, or `None` for what is not a standard query of one question.
fn dns_reply(q: &[u8], address: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0xf8 != 0 || q[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut at = 12;
    let mut name = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        name.push(String::from_utf8_lossy(q.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    let question = q.get(12..at + 5)?;
    let (kind, class) = (&q[at + 1..at + 3], &q[at + 3..at + 5]);
    let known = name.join(".") == crate::pki::BROKER_NAME;
    let answer = known && kind == [0, 1] && class == [0, 1];
    let mut r = Vec::with_capacity(question.len() + 28);
    r.extend_from_slice(&q[..2]);
    // QR, RD as asked, RA; NXDOMAIN for names the lab does not have.
    r.extend_from_slice(&[0x80 | (q[2] & 0x01), 0x80 | if known { 0 } else { 3 }]);
    r.extend_from_slice(&[0, 1, 0, answer as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&address.octets());
    }
    Some(r)
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
    /// `pki` is the run's lab PKI, written to `pki_dir`; `broker_ca` the CA certificate an
    /// external TLS broker's certificate chains to.
    pub fn start(
        host: &str,
        emulated: bool,
        broker: &Broker,
        broker_ca: Option<&std::path::Path>,
        dir: &std::path::Path,
        pki: &crate::pki::Pki,
        pki_dir: &std::path::Path,
    ) -> Result<Lab, String> {
        let bind = if emulated { "127.0.0.1:0" } else { "0.0.0.0:0" };
        let mut settings = Vec::new();
        for (key, each) in [("echo", echo as fn(TcpStream)), ("closer", closer)] {
            let l = TcpListener::bind(bind)
                .map_err(|e| format!("cannot start the lab's {key} server: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            serve(l, each);
            settings.push((key.to_string(), format!("{host}:{port}")));
        }
        // TLS: the good server (client certificates from the lab root required) and one
        // server per way a server certificate can be bad.
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
        let ip = if emulated { "127.0.0.1" } else { "0.0.0.0" };
        let running;
        let (addr, user, password) = match broker {
            Broker::Embedded => {
                let (plain, tls) = start_broker("127.0.0.1", ip, pki_dir)?;
                let (proxy, port) = Proxy::start(ip, plain)?;
                running = Running::Embedded(proxy);
                settings.push(("mqtts".into(), format!("{host}:{tls}")));
                (
                    format!("{host}:{port}"),
                    BROKER_USER.to_string(),
                    BROKER_PASSWORD.to_string(),
                )
            }
            Broker::Mosquitto => {
                let (child, conf, port, tls) = start_mosquitto(ip, dir, pki_dir)?;
                running = Running::Mosquitto(std::sync::Mutex::new(child), conf, port);
                settings.push(("mqtts".into(), format!("{host}:{tls}")));
                (
                    format!("{host}:{port}"),
                    BROKER_USER.to_string(),
                    BROKER_PASSWORD.to_string(),
                )
            }
            Broker::External {
                host: h,
                port,
                user,
                password,
                tls,
            } => {
                use std::net::ToSocketAddrs;
                // The device has no name service of the lab's: give it the address. A broker
                // on this machine is reached where the device reaches this machine.
                let v4 = (h.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("broker {h}: {e}"))?
                    .find(|a| a.is_ipv4())
                    .ok_or_else(|| format!("broker {h} has no IPv4 address"))?;
                let ip = if v4.ip().is_loopback() {
                    host.to_string()
                } else {
                    v4.ip().to_string()
                };
                running = Running::External;
                if *tls {
                    // The name its certificate is checked against: as given, unless it is
                    // this machine, which the device knows by its own address for it.
                    let name = if v4.ip().is_loopback() {
                        host
                    } else {
                        h.as_str()
                    };
                    settings.push(("mqtts".into(), format!("{ip}:{port}")));
                    settings.push(("mqtts_name".into(), name.to_string()));
                    if let Some(ca) = broker_ca {
                        settings.push(("mqtts_ca".into(), hex::encode(read_ca(ca)?)));
                    }
                    settings.push(("mqtt_user".into(), user.clone()));
                    settings.push(("mqtt_password".into(), password.clone()));
                    return Ok(Lab {
                        settings,
                        broker: running,
                        tls_endings,
                    });
                }
                (format!("{ip}:{port}"), user.clone(), password.clone())
            }
        };
        if broker_ca.is_some() {
            return Err(
                "--broker-ca is for an mqtts:// broker; the lab's own brokers use the lab root"
                    .into(),
            );
        }
        settings.push(("mqtt".into(), addr));
        settings.push(("mqtt_user".into(), user));
        settings.push(("mqtt_password".into(), password));
        Ok(Lab {
            settings,
            broker: running,
            tls_endings,
        })
    }
}

/// Starts mosquitto on free ports (plain and TLS with client certificates required) with a
/// password file and a configuration in `dir`; the TLS listener uses the PKI in `pki_dir`.
fn start_mosquitto(
    ip: &str,
    dir: &std::path::Path,
    pki_dir: &std::path::Path,
) -> Result<(crate::interrupt::Guarded, std::path::PathBuf, u16, u16), String> {
    use std::process::Command;
    let dir = dir.join("mosquitto");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let passwd = dir.join("passwd");
    let _ = std::fs::remove_file(&passwd);
    let made = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwd)
        .args([BROKER_USER, BROKER_PASSWORD])
        .output()
        .map_err(|e| {
            format!("cannot run mosquitto_passwd: {e}\n  fix: apt-get install mosquitto (or scripts/setup.sh --test)")
        })?;
    if !made.status.success() {
        return Err(format!(
            "mosquitto_passwd failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let port = free_port(ip, "mosquitto")?;
    let tls = free_port(ip, "mosquitto's TLS listener")?;
    let conf = dir.join("mosquitto.conf");
    let log = dir.join("mosquitto.log");
    let pki = |name: &str| pki_dir.join(name).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "# written by fqp for one qualification run\n\
             {}allow_anonymous false\npassword_file {}\npersistence false\n\
             log_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\n\
             listener {port} {ip}\n\
             listener {tls} {ip}\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            // Started as root, mosquitto would become user `mosquitto`, who cannot read the
            // run's private files: stay who we are.
            if running_as_root() { "user root\n" } else { "" },
            passwd.display(),
            log.display(),
            pki("root-ca.crt"),
            pki("broker.crt"),
            pki("broker.key"),
        ),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let child = spawn_mosquitto(&conf, port)?;
    Ok((child, conf, port, tls))
}

/// Whether fqp runs as root (the owner of its own /proc entry).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Starts mosquitto with `conf` and waits until it listens on `port`.
fn spawn_mosquitto(conf: &std::path::Path, port: u16) -> Result<crate::interrupt::Guarded, String> {
    use std::process::{Command, Stdio};
    // Debian installs it in /usr/sbin, which a user's PATH may not hold.
    let program = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    // What mosquitto says before its log is open (a file it cannot read, say) goes to its
    // standard error: keep it.
    let stderr_path = conf.with_file_name("mosquitto.stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| format!("{}: {e}", stderr_path.display()))?;
    let child = Command::new(program)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            format!("cannot start mosquitto: {e}\n  fix: apt-get install mosquitto (or scripts/setup.sh --test)")
        })?;
    let mut child = crate::interrupt::Guarded::new(child);
    let log = conf.with_file_name("mosquitto.log");
    let listening = wait_listening(port, "mosquitto", || {
        child.try_wait().map(|status| {
            let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
            format!(
                "mosquitto exited ({status}); what it said ({}, {}):\n{}{}",
                stderr_path.display(),
                log.display(),
                read(&stderr_path),
                read(&log)
            )
        })
    });
    if let Err(e) = listening {
        child.kill();
        return Err(e);
    }
    Ok(child)
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
pub fn verify_signature(fields: &[(String, String)]) -> Result<(), String> {
    let get = |k: &str| field(fields, k);
    let public = hex::decode(get("public")?).map_err(|_| "public is not hex")?;
    let sig = hex::decode(get("sig")?).map_err(|_| "sig is not hex")?;
    let msg = get("msg")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(msg.as_bytes(), &sig)
        .map_err(|_| "the signature does not verify with that public key".to_string())
}

/// The broker's one account (tests also try a wrong password).
const BROKER_USER: &str = "fqp-device";
const BROKER_PASSWORD: &str = "lab-secret";

/// Starts rumqttd on a free port of `ip` and a TLS listener (client certificates from the
/// lab root required, the PKI in `pki_dir`) on `tls_ip`; returns both ports once they accept
/// connections.
fn start_broker(ip: &str, tls_ip: &str, pki_dir: &std::path::Path) -> Result<(u16, u16), String> {
    let port = free_port(ip, "the MQTT broker")?;
    let tls = free_port(tls_ip, "the MQTT broker's TLS listener")?;
    let pki = |name: &str| pki_dir.join(name).display().to_string().replace('\\', "/");
    let (ca, cert, key) = (pki("root-ca.crt"), pki("broker.crt"), pki("broker.key"));
    // The same connection settings and account on both listeners.
    let connections = |listener: &str| {
        format!(
            r#"[{listener}.connections]
connection_timeout_ms = 10000
max_payload_size = 131072
max_inflight_count = 100
dynamic_filters = true
[{listener}.connections.auth]
{BROKER_USER} = "{BROKER_PASSWORD}"
"#
        )
    };
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
{}
[v4.2]
name = "fqp-lab-tls"
listen = "{tls_ip}:{tls}"
next_connection_delay_ms = 1
[v4.2.tls]
capath = "{ca}"
certpath = "{cert}"
keypath = "{key}"
{}"#,
        connections("v4.1"),
        connections("v4.2"),
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
    wait_listening(port, "the lab's MQTT broker", || None)?;
    wait_listening(tls, "the lab's MQTT broker (TLS)", || None)?;
    Ok((port, tls))
}

/// A port nothing listens on now, on `ip` (for `what`, named in the error).
fn free_port(ip: &str, what: &str) -> Result<u16, String> {
    TcpListener::bind(format!("{ip}:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on {ip} for {what}: {e}"))
}

/// Waits up to 5 s for `what` to accept connections on `port` of this machine; `gone` says
/// why, if the server ended meanwhile.
fn wait_listening(
    port: u16,
    what: &str,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(why) = gone() {
            return Err(why);
        }
        if std::time::Instant::now() > end {
            return Err(format!(
                "{what} did not listen on port {port} within 5 s: the machine may be overloaded, or something blocks connections to 127.0.0.1"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A lab for an emulator on this machine, with its PKI in a temporary directory.
    fn test_lab() -> Lab {
        let dir = std::env::temp_dir().join(format!("fqp-lab-{}", std::process::id()));
        let pki = crate::pki::Pki::make("127.0.0.1", &["1".into()], None).unwrap();
        pki.write_with_keys(&dir.join("pki")).unwrap();
        Lab::start(
            "127.0.0.1",
            true,
            &Broker::Embedded,
            None,
            &dir,
            &pki,
            &dir.join("pki"),
        )
        .unwrap()
    }

    use super::*;

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
        assert_eq!(verify_signature(&fields("fqp")), Ok(()));
        assert!(verify_signature(&fields("tampered")).is_err());
        assert!(verify_signature(&fields("fqp")[..2])
            .unwrap_err()
            .contains("sig"));
        assert_eq!(entropy_hex().len(), 64);
        assert_ne!(entropy_hex(), entropy_hex());
    }

    #[test]
    fn broker_choices_parse() {
        assert_eq!("embedded".parse(), Ok(Broker::Embedded));
        assert_eq!("mosquitto".parse(), Ok(Broker::Mosquitto));
        assert_eq!(
            "mqtt://dev:s3cr@t@broker.lab:1883".parse(),
            Ok(Broker::External {
                host: "broker.lab".into(),
                port: 1883,
                user: "dev".into(),
                password: "s3cr@t".into(),
                tls: false,
            })
        );
        assert_eq!(
            "mqtts://a.iot.example:8883".parse(),
            Ok(Broker::External {
                host: "a.iot.example".into(),
                port: 8883,
                user: String::new(),
                password: String::new(),
                tls: true,
            })
        );
        let e = "tcp://x:1".parse::<Broker>().unwrap_err();
        assert!(e.contains("mqtt://[user:password@]host:port"), "{e}");
        assert!("mqtt://x".parse::<Broker>().is_err());
    }

    #[test]
    fn echo_and_closer_behave() {
        let lab = test_lab();
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

    #[test]
    fn the_name_server_knows_the_lab_names_only() {
        let lab = test_lab();
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
        let lab = test_lab();
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
