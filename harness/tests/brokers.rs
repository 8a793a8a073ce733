//! The MQTT group against a second broker: Debian's mosquitto, started by `fqp` with a
//! generated configuration (`--broker mosquitto`). Same tests, same verdict as with the
//! embedded broker; a wrong password is refused with CONNACK 5 here.

mod common;

use common::{qualify, repo};

#[test]
fn the_mqtt_group_passes_against_mosquitto() {
    let o = qualify(
        &repo().join("reference-port"),
        "mosquitto",
        &["--group", "mqtt", "--broker", "mosquitto", "--retries", "0"],
    );
    assert_eq!(o.code, 0, "{}", o.explain());
    let tests = o.results["groups"][0]["tests"].as_array().unwrap();
    assert!(tests.len() >= 8, "{}", o.stdout);
    let refused = o.test("mqtt/wrong_password_is_refused");
    let log = refused["output"].to_string();
    assert!(
        log.contains("Refused(5)"),
        "mosquitto answers CONNACK 5: {log}"
    );
    assert!(o.out.join("mosquitto/mosquitto.conf").exists());
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
