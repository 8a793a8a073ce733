//! Device Shadow against the contract's documents: golden answers for each request and
//! refusal.

use super::*;
use crate::store::Scratch;

const LAMP: ShadowId = ShadowId {
    thing: "lamp",
    name: None,
};

fn call(db: &Scratch, op: Op, body: &str, now: u64) -> Vec<Message> {
    handle(db, LAMP, op, body.as_bytes(), now).unwrap()
}

fn topics(m: &[Message]) -> Vec<&str> {
    m.iter().map(|m| m.topic.as_str()).collect()
}

#[test]
fn an_update_creates_the_shadow_and_says_what_desired_still_asks() {
    let db = Scratch::new("create");
    let out = call(
        &db,
        Op::Update,
        r#"{"state":{"desired":{"on":true,"colour":{"r":1}},"reported":{"on":false}},"clientToken":"t1"}"#,
        100,
    );
    assert_eq!(
        topics(&out),
        [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/documents",
            "$aws/things/lamp/shadow/update/delta"
        ]
    );
    assert_eq!(
        out[0].payload,
        json!({
            "state": {"desired": {"on": true, "colour": {"r": 1}}, "reported": {"on": false}},
            "metadata": {
                "desired": {"on": {"timestamp": 100}, "colour": {"r": {"timestamp": 100}}},
                "reported": {"on": {"timestamp": 100}}
            },
            "version": 1, "timestamp": 100, "clientToken": "t1"
        })
    );
    assert_eq!(out[1].payload["previous"], Value::Null);
    assert_eq!(out[1].payload["current"]["version"], 1);
    assert_eq!(
        out[2].payload,
        json!({
            "state": {"on": true, "colour": {"r": 1}},
            "metadata": {"on": {"timestamp": 100}, "colour": {"r": {"timestamp": 100}}},
            "version": 1, "timestamp": 100, "clientToken": "t1"
        })
    );
    let got = call(&db, Op::Get, r#"{"clientToken":"g"}"#, 101);
    assert_eq!(topics(&got), ["$aws/things/lamp/shadow/get/accepted"]);
    assert_eq!(
        got[0].payload["state"]["delta"],
        json!({"on": true, "colour": {"r": 1}})
    );
    assert_eq!(got[0].payload["version"], 1);
    assert_eq!(got[0].payload["clientToken"], "g");
}

#[test]
fn a_report_that_meets_desired_leaves_no_delta_and_null_deletes() {
    let db = Scratch::new("meet");
    call(
        &db,
        Op::Update,
        r#"{"state":{"desired":{"on":true,"level":3}}}"#,
        1,
    );
    let out = call(
        &db,
        Op::Update,
        r#"{"state":{"reported":{"on":true,"level":3}}}"#,
        2,
    );
    assert_eq!(out.len(), 2, "no delta: {:?}", topics(&out));
    assert_eq!(out[1].payload["previous"]["version"], 1);
    assert_eq!(out[1].payload["current"]["version"], 2);
    let got = call(&db, Op::Get, "", 3);
    assert_eq!(got[0].payload["state"].get("delta"), None);
    // A null leaf deletes the key and its metadata; a null section the section.
    call(
        &db,
        Op::Update,
        r#"{"state":{"desired":{"level":null}}}"#,
        4,
    );
    let got = call(&db, Op::Get, "", 5);
    assert_eq!(got[0].payload["state"]["desired"], json!({"on": true}));
    assert_eq!(
        got[0].payload["metadata"]["desired"],
        json!({"on": {"timestamp": 1}})
    );
    call(&db, Op::Update, r#"{"state":{"reported":null}}"#, 6);
    let got = call(&db, Op::Get, "", 7);
    assert_eq!(got[0].payload["state"].get("reported"), None);
    assert_eq!(got[0].payload["state"]["delta"], json!({"on": true}));
    assert_eq!(got[0].payload["version"], 4);
}

#[test]
fn an_update_of_another_version_is_refused_409() {
    let db = Scratch::new("version");
    call(&db, Op::Update, r#"{"state":{"reported":{"a":1}}}"#, 1);
    let out = call(
        &db,
        Op::Update,
        r#"{"state":{"reported":{"a":2}},"version":7,"clientToken":"c"}"#,
        2,
    );
    assert_eq!(topics(&out), ["$aws/things/lamp/shadow/update/rejected"]);
    assert_eq!(
        out[0].payload,
        json!({"code": 409, "message": "Version conflict", "timestamp": 2, "clientToken": "c"})
    );
    let out = call(
        &db,
        Op::Update,
        r#"{"state":{"reported":{"a":2}},"version":1}"#,
        3,
    );
    assert_eq!(out[0].payload["version"], 2);
}

#[test]
fn malformed_requests_are_refused_400_and_change_nothing() {
    let db = Scratch::new("bad");
    let deep = r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#;
    let long = format!(
        r#"{{"state":{{"desired":{{}}}},"clientToken":"{}"}}"#,
        "x".repeat(65)
    );
    for (body, says) in [
        ("{not json", "Invalid JSON"),
        ("[1,2]", "not an object"),
        (r#"{"desired":{}}"#, "Missing required node: state"),
        (r#"{"state":{"wanted":{}}}"#, "invalid node: 'wanted'"),
        (deep, "too many levels of nesting"),
        (long.as_str(), "clientToken is longer than 64 bytes"),
        (r#"{"state":{"desired":5}}"#, "must be an object or null"),
    ] {
        let out = call(&db, Op::Update, body, 1);
        assert_eq!(out.len(), 1, "{body}");
        assert_eq!(out[0].topic, "$aws/things/lamp/shadow/update/rejected");
        assert_eq!(out[0].payload["code"], 400, "{body}");
        let msg = out[0].payload["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    // Six levels are allowed.
    let six = r#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}"#;
    assert_eq!(call(&db, Op::Update, six, 2)[0].payload["version"], 1);
}

#[test]
fn a_state_over_8_kib_is_refused_413() {
    let db = Scratch::new("large");
    let big = format!(
        r#"{{"state":{{"reported":{{"blob":"{}"}}}}}}"#,
        "x".repeat(8200)
    );
    let out = call(&db, Op::Update, &big, 1);
    assert_eq!(out[0].payload["code"], 413);
    assert_eq!(call(&db, Op::Get, "", 2)[0].payload["code"], 404);
}

#[test]
fn a_deleted_shadow_is_gone_and_its_version_goes_on() {
    let db = Scratch::new("delete");
    let out = call(&db, Op::Get, "", 1);
    assert_eq!(topics(&out), ["$aws/things/lamp/shadow/get/rejected"]);
    assert_eq!(
        out[0].payload["message"],
        "No shadow exists with name: 'lamp'"
    );
    assert_eq!(call(&db, Op::Delete, "", 1)[0].payload["code"], 404);
    call(&db, Op::Update, r#"{"state":{"reported":{"a":1}}}"#, 2);
    call(&db, Op::Update, r#"{"state":{"reported":{"a":2}}}"#, 3);
    let out = call(&db, Op::Delete, r#"{"clientToken":"d"}"#, 4);
    assert_eq!(topics(&out), ["$aws/things/lamp/shadow/delete/accepted"]);
    assert_eq!(
        out[0].payload,
        json!({"version": 2, "timestamp": 4, "clientToken": "d"})
    );
    assert_eq!(call(&db, Op::Get, "", 5)[0].payload["code"], 404);
    let out = call(&db, Op::Update, r#"{"state":{"reported":{"b":1}}}"#, 6);
    assert_eq!(out[0].payload["version"], 3);
    assert_eq!(out[1].payload["previous"], Value::Null, "nothing before it");
    let got = call(&db, Op::Get, "", 7);
    assert_eq!(got[0].payload["state"], json!({"reported": {"b": 1}}));
}

#[test]
fn named_shadows_are_apart_from_the_classic_one_and_survive_a_restart() {
    let mut store = Scratch::new("named");
    let config = ShadowId {
        thing: "lamp",
        name: Some("config"),
    };
    let out = handle(
        &store,
        config,
        Op::Update,
        br#"{"state":{"desired":{"x":1}}}"#,
        1,
    )
    .unwrap();
    assert_eq!(
        out[0].topic,
        "$aws/things/lamp/shadow/name/config/update/accepted"
    );
    assert_eq!(
        out[2].topic,
        "$aws/things/lamp/shadow/name/config/update/delta"
    );
    let classic = handle(&store, LAMP, Op::Get, b"", 2).unwrap();
    assert_eq!(classic[0].payload["code"], 404);
    let other = ShadowId {
        thing: "lamp",
        name: Some("other"),
    };
    let out = handle(&store, other, Op::Get, b"", 2).unwrap();
    assert_eq!(
        out[0].payload["message"],
        "No shadow exists with name: 'lamp~other'"
    );
    // What was acknowledged is there after the cloud restarts.
    store.reopen();
    let out = handle(&store, config, Op::Get, b"", 3).unwrap();
    assert_eq!(out[0].payload["state"]["desired"], json!({"x": 1}));
    assert_eq!(out[0].payload["version"], 1);
}

#[test]
fn a_stored_document_that_does_not_read_back_is_refused_not_overwritten() {
    let db = Scratch::new("broken");
    db.update_shadow("lamp\0", |_| (Some(b"{truncated".to_vec()), ()))
        .unwrap();
    let out = call(&db, Op::Update, r#"{"state":{"reported":{"a":1}}}"#, 1);
    assert_eq!(out[0].topic, "$aws/things/lamp/shadow/update/rejected");
    assert_eq!(out[0].payload["code"], 500);
    assert_eq!(db.shadow("lamp\0").unwrap().unwrap(), b"{truncated");
}
