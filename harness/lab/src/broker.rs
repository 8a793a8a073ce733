//! The MQTT broker the lab runs: rumqttd in process (behind a [`Proxy`] that can cut every
//! connection, which is what clients see of a restart), mosquitto as a process, or none (the
//! user's own, given as `--broker mqtt://…`).

use crate::services::{free_port, wait_listening};
use crate::LabError;
use std::net::{TcpListener, TcpStream};

/// A TCP proxy in front of the embedded broker.
pub(crate) struct Proxy {
    /// Both ends of every proxied connection, to cut them.
    conns: std::sync::Mutex<Vec<TcpStream>>,
    /// New connections are closed at once until then.
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Proxy {
    /// Listens on `ip`, forwarding to `127.0.0.1:target`; returns the port.
    pub(crate) fn start(ip: &str, target: u16) -> Result<(std::sync::Arc<Proxy>, u16), LabError> {
        let start = || LabError::start("the MQTT broker's proxy");
        let l = TcpListener::bind(format!("{ip}:0")).map_err(start())?;
        let port = l.local_addr().map_err(start())?.port();
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

    pub(crate) fn restart(&self, down: std::time::Duration) {
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

/// A broker somebody else runs, as `--broker` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `mqtts://`: the devices connect with TLS and present lab client certificates.
    pub tls: bool,
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
    External(External),
}

impl std::str::FromStr for Broker {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Broker, LabError> {
        match s {
            "embedded" => return Ok(Broker::Embedded),
            "mosquitto" => return Ok(Broker::Mosquitto),
            _ => {}
        }
        let bad = || {
            LabError::Option {
            problem: format!("{s:?} is not a broker"),
            fix: "write embedded, mosquitto, mqtt://[user:password@]host:port or mqtts://[user:password@]host:port".into(),
        }
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
        Ok(Broker::External(External {
            host: host.to_string(),
            port,
            user,
            password,
            tls,
        }))
    }
}

/// A CA certificate file, PEM or DER; its DER.
pub(crate) fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, LabError> {
    let bytes = std::fs::read(path).map_err(LabError::file(path))?;
    let der = match x509_parser::pem::parse_x509_pem(&bytes) {
        Ok((_, pem)) => pem.contents,
        Err(_) => bytes,
    };
    x509_parser::parse_x509_certificate(&der).map_err(|e| LabError::Option {
        problem: format!(
            "--broker-ca {}: not an X.509 certificate: {e}",
            path.display()
        ),
        fix: "give the broker's CA certificate, PEM or DER".into(),
    })?;
    Ok(der)
}

/// Starts mosquitto on free ports (plain and TLS with client certificates required) with a
/// password file and a configuration in `dir`; the TLS listener uses the PKI in `pki_dir`.
pub(crate) fn start_mosquitto(
    ip: &str,
    dir: &std::path::Path,
    pki_dir: &std::path::Path,
) -> Result<(fqp_process::Guarded, std::path::PathBuf, u16, u16), LabError> {
    use std::process::Command;
    let dir = dir.join("mosquitto");
    std::fs::create_dir_all(&dir).map_err(LabError::file(&dir))?;
    let passwd = dir.join("passwd");
    let _ = std::fs::remove_file(&passwd);
    let made = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwd)
        .args([BROKER_USER, BROKER_PASSWORD])
        .output()
        .map_err(|e| LabError::Broker {
            problem: format!("cannot run mosquitto_passwd: {e}"),
            fix: "apt-get install mosquitto (or scripts/setup.sh --test)".into(),
        })?;
    if !made.status.success() {
        return Err(LabError::Broker {
            problem: format!(
                "mosquitto_passwd failed: {}",
                String::from_utf8_lossy(&made.stderr)
            ),
            fix: format!("check that {} is writable", dir.display()),
        });
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
    .map_err(LabError::file(&conf))?;
    let child = spawn_mosquitto(&conf, port)?;
    Ok((child, conf, port, tls))
}

/// Whether fqp runs as root (the owner of its own /proc entry).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Starts mosquitto with `conf` and waits until it listens on `port`.
pub(crate) fn spawn_mosquitto(
    conf: &std::path::Path,
    port: u16,
) -> Result<fqp_process::Guarded, LabError> {
    use std::process::{Command, Stdio};
    // Debian installs it in /usr/sbin, which a user's PATH may not hold.
    let program = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mosquitto");
    // What mosquitto says before its log is open (a file it cannot read, say) goes to its
    // standard error: keep it.
    let stderr_path = conf.with_file_name("mosquitto.stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(LabError::file(&stderr_path))?;
    let child = Command::new(program)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| LabError::Broker {
            problem: format!("cannot start mosquitto: {e}"),
            fix: "apt-get install mosquitto (or scripts/setup.sh --test)".into(),
        })?;
    let mut child = fqp_process::Guarded::new(child);
    let log = conf.with_file_name("mosquitto.log");
    let listening = wait_listening(port, "mosquitto", || {
        child.try_wait().map(|status| {
            let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
            LabError::Broker {
                problem: format!(
                    "mosquitto exited ({status}); what it said ({}, {}):\n{}{}",
                    stderr_path.display(),
                    log.display(),
                    read(&stderr_path),
                    read(&log)
                ),
                fix: "correct what mosquitto says above (its configuration is fqp's: report it)"
                    .into(),
            }
        })
    });
    if let Err(e) = listening {
        child.kill();
        return Err(e);
    }
    Ok(child)
}

/// The broker's one account (tests also try a wrong password).
pub(crate) const BROKER_USER: &str = "fqp-device";
pub(crate) const BROKER_PASSWORD: &str = "lab-secret";

/// Starts rumqttd on a free port of `ip` and a TLS listener (client certificates from the
/// lab root required, the PKI in `pki_dir`) on `tls_ip`; returns both ports once they accept
/// connections.
pub(crate) fn start_broker(
    ip: &str,
    tls_ip: &str,
    pki_dir: &std::path::Path,
) -> Result<(u16, u16), LabError> {
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
    let config: rumqttd::Config = toml::from_str(&config).map_err(|e| LabError::Broker {
        problem: format!("the embedded MQTT broker's configuration: {e}"),
        fix: "this is fqp's own configuration: report it".into(),
    })?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("the lab's MQTT broker stopped: {e}");
            }
        })
        .map_err(LabError::start("the MQTT broker"))?;
    wait_listening(port, "the lab's MQTT broker", || None)?;
    wait_listening(tls, "the lab's MQTT broker (TLS)", || None)?;
    Ok((port, tls))
}
