//! `fqp cloud`: a cloud served for a lab, the operator's commands reaching it through its
//! control socket (and what they change reaching a connected device at once), and its state
//! kept across a restart (read straight from the database when nothing serves it).

mod common;

use common::{fqp, succeeds};
use fqp_mqtt::{Client, Connect, Mailbox, Message, QoS};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Stdio};

fn ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// `fqp cloud serve` on a lab of its own, with its plain listener's port.
struct Serving {
    child: Child,
    port: u16,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(lab: &std::path::Path) -> Serving {
    let mut child = fqp()
        .args(["cloud", "--lab"])
        .arg(lab)
        .args([
            "serve",
            "--port",
            "0",
            "--tls-port",
            "0",
            "--discovery-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first
        .strip_prefix("mqtt 127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    for l in lines.by_ref() {
        if l.unwrap().starts_with("serving") {
            break;
        }
    }
    Serving { child, port }
}

fn operator(lab: &std::path::Path, args: &[&str]) -> String {
    let o = succeeds(fqp().args(["cloud", "--lab"]).arg(lab).args(args));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn an_operator_changes_a_served_cloud_and_the_device_hears_it_at_once() {
    let lab = common::repo().join("target/fqp-tests/cloud-serve");
    let _ = std::fs::remove_dir_all(&lab);
    let served = serve(&lab);
    operator(&lab, &["thing-add", "lamp"]);
    let token = operator(&lab, &["--json", "token", "lamp"]);
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    // A device connects and waits for its delta.
    let mailbox: Mailbox<4, 2048> = Mailbox::new();
    let (mut tx, mut rx) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut c = Client::new(&mut tx, &mut rx, ms, |m: &Message<'_>| {
        mailbox.offer(m);
    });
    let connect = Connect {
        client_id: "lamp",
        clean_session: true,
        keep_alive: 30,
        username: Some("lamp"),
        password: Some(token.as_bytes()),
        will: None,
    };
    c.connect(
        TcpStream::connect(("127.0.0.1", served.port)).unwrap(),
        &connect,
        5_000,
    )
    .unwrap();
    c.subscribe(&[("$aws/things/lamp/shadow/update/delta", QoS::AtLeastOnce)])
        .unwrap();
    operator(
        &lab,
        &[
            "shadow-update",
            "lamp",
            "--body",
            r#"{"state":{"desired":{"on":true}}}"#,
        ],
    );
    let delta = c
        .wait_for(&mailbox, 5_000, |_, p| {
            Some(String::from_utf8_lossy(p).to_string())
        })
        .unwrap()
        .expect("the delta reached the device");
    assert!(delta.contains(r#""on":true"#), "{delta}");

    let table = operator(&lab, &["things"]);
    assert!(
        table.starts_with("THING") && table.contains("lamp"),
        "{table}"
    );
    drop(served);
    // Nothing serves the lab now: the commands read the database itself.
    let shadow = operator(&lab, &["--json", "shadow-get", "lamp"]);
    assert!(shadow.contains(r#""version": 1"#), "{shadow}");
    let bad = fqp()
        .args(["cloud", "--lab"])
        .arg(&lab)
        .args(["shadow-update", "lamp", "--body", "{"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--body is not JSON"));
}

#[test]
fn the_authorization_group_fails_a_cloud_that_does_not_hold_to_the_policy() {
    let o = common::qualify_with_env(
        &common::repo().join("reference-port"),
        "open-policy",
        &["--group", "authorization"],
        &[("FQP_CLOUD_FAULT", "open-policy")],
    );
    assert_eq!(o.code, 1, "{}", o.explain());
    let tests = o.results["groups"][0]["tests"].as_array().unwrap();
    let status = |name: &str| {
        tests
            .iter()
            .find(|t| t["id"] == format!("authorization/{name}"))
            .map(|t| t["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    // Every topic the policy keeps from a thing is reached…
    for t in [
        "another_things_shadow_cannot_be_read",
        "another_things_shadow_cannot_be_changed",
        "another_things_jobs_cannot_be_reached",
        "another_things_streams_cannot_be_reached",
        "wildcards_reaching_other_things_are_refused",
    ] {
        assert_eq!(status(t), "failed", "{t}");
    }
    // …while the credentials are still checked.
    assert_eq!(status("another_things_client_id_is_refused"), "passed");
    assert_eq!(status("a_wrong_token_is_refused"), "passed");
}

/// A client of mosquitto at `port` as `user` (client id `id`) with `password`.
fn mosquitto_client<'b>(
    port: u16,
    id: &'b str,
    user: &'b str,
    password: &'b str,
    bufs: &'b mut (Vec<u8>, Vec<u8>),
    mailbox: &'b Mailbox<4, 2048>,
) -> Result<Client<'b, TcpStream, impl FnMut(&Message<'_>) + 'b>, fqp_mqtt::Error> {
    let mut c = Client::new(&mut bufs.0, &mut bufs.1, ms, move |m: &Message<'_>| {
        mailbox.offer(m);
    });
    let connect = Connect {
        client_id: id,
        clean_session: true,
        keep_alive: 30,
        username: Some(user),
        password: Some(password.as_bytes()),
        will: None,
    };
    c.connect(
        TcpStream::connect(("127.0.0.1", port)).unwrap(),
        &connect,
        5_000,
    )?;
    Ok(c)
}

#[test]
fn mosquitto_holds_to_the_cloud_policy_from_the_generated_files() {
    let lab = common::repo().join("target/fqp-tests/cloud-mosquitto");
    let _ = std::fs::remove_dir_all(&lab);
    for t in ["lamp", "meter"] {
        operator(&lab, &["thing-add", t]);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = lab.join("mosquitto");
    operator(
        &lab,
        &[
            "mosquitto-config",
            "--out",
            out.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ],
    );
    let mut broker = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(out.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let secret = std::fs::read_to_string(lab.join("cloud/secret")).unwrap();
    let secret: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).unwrap())
        .collect();
    let token = |t: &str| fqp_cloud::endpoint::token(&secret, t);
    let outcome = std::panic::catch_unwind(|| {
        assert!(up, "mosquitto did not come up");
        let (lamp_pw, meter_pw) = (token("lamp"), token("meter"));
        let (m1, m2) = (Mailbox::new(), Mailbox::new());
        let (mut b1, mut b2) = (
            (vec![0u8; 4096], vec![0u8; 4096]),
            (vec![0u8; 4096], vec![0u8; 4096]),
        );
        let mut meter = mosquitto_client(port, "meter", "meter", &meter_pw, &mut b2, &m2).unwrap();
        meter
            .subscribe(&[("$aws/things/meter/in", QoS::AtLeastOnce)])
            .unwrap();
        let mut lamp = mosquitto_client(port, "lamp", "lamp", &lamp_pw, &mut b1, &m1).unwrap();
        // Its own topics, yes; the meter's, no: mosquitto grants the subscription but never
        // delivers what its ACL denies, and drops a publish it denies.
        lamp.subscribe(&[("$aws/things/lamp/#", QoS::AtLeastOnce)])
            .unwrap();
        let _ = lamp.subscribe(&[("$aws/things/meter/#", QoS::AtLeastOnce)]);
        lamp.publish("$aws/things/meter/in", b"intruder", QoS::AtLeastOnce, false)
            .unwrap();
        lamp.publish("$aws/things/lamp/out", b"mine", QoS::AtLeastOnce, false)
            .unwrap();
        let own = lamp
            .wait_for(&m1, 3_000, |t, p| Some((t.to_string(), p.to_vec())))
            .unwrap();
        assert_eq!(
            own,
            Some(("$aws/things/lamp/out".to_string(), b"mine".to_vec()))
        );
        meter
            .publish("$aws/things/meter/in", b"secret", QoS::AtLeastOnce, false)
            .unwrap();
        let heard = meter.wait_for(&m2, 3_000, |_, p| Some(p.to_vec())).unwrap();
        assert_eq!(
            heard.as_deref(),
            Some(&b"secret"[..]),
            "the meter's own message, not the lamp's"
        );
        let overheard = lamp
            .wait_for(&m1, 1_000, |t, _| Some(t.to_string()))
            .unwrap();
        assert_eq!(overheard, None, "the lamp heard the meter's topic");
        // A wrong token is refused; the meter's client id does not make the lamp the meter.
        let (m3, mut b3) = (Mailbox::new(), (vec![0u8; 4096], vec![0u8; 4096]));
        let refused = mosquitto_client(port, "lamp", "lamp", "wrong", &mut b3, &m3).err();
        assert!(
            matches!(refused, Some(fqp_mqtt::Error::Refused(4 | 5))),
            "{refused:?}"
        );
        let (m4, mut b4) = (Mailbox::new(), (vec![0u8; 4096], vec![0u8; 4096]));
        let _posing = mosquitto_client(port, "meter", "lamp", &lamp_pw, &mut b4, &m4).unwrap();
        meter
            .publish(
                "$aws/things/meter/in",
                b"still here",
                QoS::AtLeastOnce,
                false,
            )
            .unwrap();
        let mine = meter.wait_for(&m2, 3_000, |_, p| Some(p.to_vec())).unwrap();
        assert_eq!(
            mine.as_deref(),
            Some(&b"still here"[..]),
            "the meter kept its session"
        );
    });
    let _ = broker.kill();
    let _ = broker.wait();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}
