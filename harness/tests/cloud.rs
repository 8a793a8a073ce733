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
