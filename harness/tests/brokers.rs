//! The MQTT and TLS groups against a second broker: Debian's mosquitto, started by `fqp`
//! with a generated configuration (`--broker mosquitto`): a password listener and a TLS
//! listener requiring client certificates from the run's lab PKI. Same tests, same verdict as
//! with the embedded broker; a wrong password is refused with CONNACK 5 here.

mod common;

use common::{qualify, repo};

#[test]
fn the_mqtt_and_tls_groups_pass_against_mosquitto() {
    let o = qualify(
        &repo().join("reference-port"),
        "mosquitto",
        &[
            "--group",
            "mqtt",
            "--group",
            "tls",
            "--broker",
            "mosquitto",
            "--retries",
            "0",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.explain());
    let groups = o.results["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{}", o.stdout);
    let refused = o.test("mqtt/wrong_password_is_refused");
    let log = refused["output"].to_string();
    assert!(
        log.contains("Refused(5)"),
        "mosquitto answers CONNACK 5: {log}"
    );
    for t in [
        "tls/mqtt_over_tls_with_client_certificate",
        "tls/broker_refuses_a_client_certificate_from_another_ca",
    ] {
        assert_eq!(o.test(t)["status"], "passed", "{t}");
    }
    let conf = std::fs::read_to_string(o.out.join("mosquitto/mosquitto.conf")).unwrap();
    assert!(conf.contains("require_certificate true"), "{conf}");
}

#[test]
fn a_bad_broker_choice_is_refused_with_the_forms_allowed() {
    let o = common::fqp()
        .args(["qualify", "--port"])
        .arg(repo().join("reference-port"))
        .args(["--broker", "tcp://somewhere:1883"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mqtt://[user:password@]host:port"), "{err}");
}

/// A broker someone else runs (here a mosquitto this test starts on loopback): `fqp` only
/// provisions its address (loopback becomes the address the device reaches this machine at)
/// and credentials, and refuses to restart it.
/// A broker somebody else runs: mosquitto with the account someone/their-password, listening
/// on 127.0.0.1 with `extra` configuration lines; its directory is `dir` (emptied first).
struct Mosquitto {
    child: std::process::Child,
    port: u16,
}

impl Mosquitto {
    fn start(dir: &std::path::Path, extra: &str) -> Mosquitto {
        use std::process::{Command, Stdio};
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let passwd = dir.join("passwd");
        let made = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg("-c")
            .arg(&passwd)
            .args(["someone", "their-password"])
            .status()
            .expect("mosquitto_passwd runs (scripts/setup.sh --test installs mosquitto)");
        assert!(made.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        // `fqp pki` writes keys only their owner may read: a broker started by root must stay
        // root to read them (its operator's choice; one run as a user is given the files).
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        std::fs::write(
            &conf,
            format!(
                "{}listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n{extra}",
                if root { "user root\n" } else { "" },
                passwd.display()
            ),
        )
        .unwrap();
        let program = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(program)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < end, "mosquitto did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Mosquitto { child, port }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_external_broker_is_used_as_given() {
    let broker = Mosquitto::start(&repo().join("target/fqp-tests/external-broker"), "");
    let port = broker.port;
    let url = format!("mqtt://someone:their-password@127.0.0.1:{port}");
    let o = qualify(
        &repo().join("reference-port"),
        "external-broker",
        &[
            "--group",
            "mqtt",
            "--test",
            "round_trip_at_qos0",
            "--test",
            "reconnects",
            "--broker",
            &url,
            "--retries",
            "0",
        ],
    );
    drop(broker);
    assert_eq!(
        o.test("mqtt/round_trip_at_qos0_and_qos1")["status"],
        "passed",
        "{}",
        o.explain()
    );
    // fqp does not restart what it does not run: the test asking for it fails, saying so.
    let r = o.test("mqtt/reconnects_after_the_broker_restarts");
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("does not restart a broker it does not run"),
        "{r}"
    );
}

#[test]
fn an_external_tls_broker_trusts_the_lab_root_and_is_checked_against_its_ca() {
    // The broker is set up once with the lab's files: its certificate from `fqp pki`, and the
    // lab root (kept in the lab directory) as the CA of its clients.
    let dir = repo().join("target/fqp-tests/external-tls-broker");
    let pki = repo().join("target/fqp-tests/external-tls-pki");
    let made = common::fqp()
        .args(["pki", "--broker-ip", "10.0.2.2", "--out"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let f = |n: &str| pki.join(n).display().to_string();
    let broker = Mosquitto::start(
        &dir,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            f("root-ca.crt"),
            f("broker.crt"),
            f("broker.key")
        ),
    );
    let url = format!("mqtts://someone:their-password@127.0.0.1:{}", broker.port);
    let o = qualify(
        &repo().join("reference-port"),
        "external-tls-broker",
        &[
            "--group",
            "tls",
            "--test",
            "mqtt_over_tls",
            "--test",
            "broker_refuses",
            "--broker",
            &url,
            "--broker-ca",
            &f("root-ca.crt"),
            "--retries",
            "0",
        ],
    );
    drop(broker);
    for t in [
        "tls/mqtt_over_tls_with_client_certificate",
        "tls/broker_refuses_a_client_certificate_from_another_ca",
    ] {
        assert_eq!(o.test(t)["status"], "passed", "{t}: {}", o.explain());
    }
    // --broker-ca belongs to an mqtts:// broker only.
    let wrong = common::fqp()
        .args(["qualify", "--port"])
        .arg(repo().join("reference-port"))
        .args(["--group", "tls", "--broker-ca"])
        .arg(f("root-ca.crt"))
        .arg("--out")
        .arg(dir.join("refused"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&wrong.stdout).to_string()
        + &String::from_utf8_lossy(&wrong.stderr);
    assert!(
        text.contains("--broker-ca is for an mqtts:// broker"),
        "{text}"
    );
}
