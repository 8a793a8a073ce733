//! Device Shadow, as the contract has it: a JSON document per thing (the classic shadow) or
//! per thing and name (named shadows) with `desired` and `reported` state, per-leaf metadata
//! timestamps and a version. A request arrives on `…/shadow[/name/<n>]/{get,update,delete}`
//! and is answered on `…/accepted` or `…/rejected`; an accepted update also publishes the
//! `…/update/documents` (previous and current) and, when it set `desired` and desired still
//! differs from reported, `…/update/delta`.
//!
//! Rules kept: a `null` leaf deletes that key, a `null` section the whole section; objects
//! merge, anything else replaces; an update naming a `version` other than the shadow's is
//! rejected 409; 400 for a body that is not JSON, has no `state`, names a section other than
//! `desired`/`reported`, nests deeper than 6 levels or carries a `clientToken` over 64 bytes;
//! 404 for a shadow that does not exist; 413 when the state would exceed 8 KiB. A deleted
//! shadow keeps its version: the next update continues from it.

use crate::store::{Store, StoreError};
use serde_json::{json, Map, Value};

/// Largest state document of a shadow (desired and reported, as JSON).
pub const MAX_STATE_BYTES: usize = 8 * 1024;
/// Deepest nesting of a `desired` or `reported` section.
pub const MAX_DEPTH: usize = 6;
/// Longest `clientToken`.
pub const MAX_CLIENT_TOKEN: usize = 64;

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    fn word(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A message the cloud publishes in answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Value,
}

/// One shadow: its thing, and its name for a named shadow.
#[derive(Clone, Copy, Debug)]
pub struct ShadowId<'a> {
    pub thing: &'a str,
    pub name: Option<&'a str>,
}

impl ShadowId<'_> {
    /// `$aws/things/<t>/shadow`, with `/name/<n>` for a named shadow.
    pub fn topic(&self) -> String {
        match self.name {
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", self.thing),
            None => format!("$aws/things/{}/shadow", self.thing),
        }
    }

    fn key(&self) -> String {
        format!("{}\0{}", self.thing, self.name.unwrap_or(""))
    }
}

/// A refusal: the contract's code and a message saying what was wrong.
#[derive(Debug, PartialEq)]
struct Rejection {
    code: u16,
    message: String,
}

fn reject(code: u16, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

/// The stored shadow: state and metadata (`desired`, `reported`), version, and whether it
/// exists now (a deleted one keeps its version).
#[derive(Clone, Debug, PartialEq)]
struct Record {
    state: Map<String, Value>,
    metadata: Map<String, Value>,
    version: u64,
    exists: bool,
}

impl Record {
    fn empty() -> Record {
        Record {
            state: Map::new(),
            metadata: Map::new(),
            version: 0,
            exists: false,
        }
    }

    fn decode(bytes: &[u8]) -> Record {
        let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let obj = |k: &str| v[k].as_object().cloned().unwrap_or_default();
        Record {
            state: obj("state"),
            metadata: obj("metadata"),
            version: v["version"].as_u64().unwrap_or(0),
            exists: v["exists"].as_bool().unwrap_or(false),
        }
    }

    fn encode(&self) -> Vec<u8> {
        json!({
            "state": self.state,
            "metadata": self.metadata,
            "version": self.version,
            "exists": self.exists,
        })
        .to_string()
        .into_bytes()
    }

    /// `{state, metadata, version}` as the documents message shows a shadow.
    fn document(&self) -> Value {
        json!({"state": self.state, "metadata": self.metadata, "version": self.version})
    }

    /// What desired asks that reported does not say.
    fn delta(&self) -> Option<Value> {
        let desired = self.state.get("desired")?;
        difference(desired, self.state.get("reported").unwrap_or(&Value::Null))
    }
}

/// The leaves of `desired` that `reported` lacks or holds otherwise (objects compared key
/// by key), or `None` when there are none.
fn difference(desired: &Value, reported: &Value) -> Option<Value> {
    match (desired, reported) {
        (Value::Object(d), Value::Object(r)) => {
            let m: Map<String, Value> = d
                .iter()
                .filter_map(|(k, v)| {
                    difference(v, r.get(k).unwrap_or(&Value::Null)).map(|x| (k.clone(), x))
                })
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        (d, r) if d == r => None,
        (d, _) => Some(d.clone()),
    }
}

/// The metadata of `value`: the same shape, each leaf `{"timestamp": now}`.
fn stamps(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), stamps(v, now))).collect())
        }
        _ => json!({ "timestamp": now }),
    }
}

/// Merges `update` into `into` (and its metadata into `meta`): a `null` deletes the key,
/// objects merge, anything else replaces.
fn merge(
    into: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    update: &Map<String, Value>,
    now: u64,
) {
    for (k, v) in update {
        match v {
            Value::Null => {
                into.remove(k);
                meta.remove(k);
            }
            Value::Object(u) => {
                if !into.get(k).is_some_and(Value::is_object) {
                    into.insert(k.clone(), Value::Object(Map::new()));
                }
                if !meta
                    .get(k)
                    .is_some_and(|m| m.get("timestamp").is_none() && m.is_object())
                {
                    meta.insert(k.clone(), Value::Object(Map::new()));
                }
                if let (Some(Value::Object(i)), Some(Value::Object(m))) =
                    (into.get_mut(k), meta.get_mut(k))
                {
                    merge(i, m, u, now);
                }
            }
            other => {
                into.insert(k.clone(), other.clone());
                meta.insert(k.clone(), stamps(other, now));
            }
        }
    }
}

/// Levels of objects in `v` (a scalar is 0, `{"a":1}` is 1).
fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The request's body: an object (an empty body is an empty object), and its client token.
fn body(payload: &[u8]) -> Result<(Map<String, Value>, Option<String>), Rejection> {
    let v: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(payload).map_err(|e| reject(400, format!("Invalid JSON: {e}")))?
    };
    let Value::Object(m) = v else {
        return Err(reject(400, "Invalid JSON: the document is not an object"));
    };
    let token = match m.get("clientToken") {
        None => None,
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN => Some(t.clone()),
        Some(Value::String(_)) => {
            return Err(reject(
                400,
                format!("clientToken is longer than {MAX_CLIENT_TOKEN} bytes"),
            ))
        }
        Some(_) => return Err(reject(400, "clientToken must be a string")),
    };
    Ok((m, token))
}

/// Handles one request on `shadow` at time `now` (seconds since the epoch): the messages to
/// publish, the answer first. The store changes only when the request is accepted.
pub fn handle(
    store: &Store,
    shadow: ShadowId<'_>,
    op: Op,
    payload: &[u8],
    now: u64,
) -> Result<Vec<Message>, StoreError> {
    let base = shadow.topic();
    let topic = |suffix: &str| format!("{base}/{suffix}");
    let (body, token) = match body(payload) {
        Ok(b) => b,
        Err(r) => return Ok(vec![rejected(&topic(op.word()), r, None, now)]),
    };
    let with_token = |mut v: Value| {
        if let Some(t) = &token {
            v["clientToken"] = json!(t);
        }
        v
    };
    store.update_shadow(&shadow.key(), |stored| {
        let record = stored.map_or_else(Record::empty, Record::decode);
        let outcome = match op {
            Op::Get => get(&record, shadow, now).map(|a| (None, vec![a])),
            Op::Delete => delete(&record, shadow, now),
            Op::Update => update(&record, &body, now),
        };
        match outcome {
            Ok((new, answers)) => {
                let accepted = topic(&format!("{}/accepted", op.word()));
                let mut out: Vec<Message> = Vec::new();
                for (i, a) in answers.into_iter().enumerate() {
                    let t = match i {
                        0 => accepted.clone(),
                        1 => topic("update/documents"),
                        _ => topic("update/delta"),
                    };
                    out.push(Message {
                        topic: t,
                        payload: with_token(a),
                    });
                }
                (new.map(|r| r.encode()), out)
            }
            Err(r) => (
                None,
                vec![rejected(&topic(op.word()), r, token.clone(), now)],
            ),
        }
    })
}

fn rejected(op_topic: &str, r: Rejection, token: Option<String>, now: u64) -> Message {
    let mut payload = json!({"code": r.code, "message": r.message, "timestamp": now});
    if let Some(t) = token {
        payload["clientToken"] = json!(t);
    }
    Message {
        topic: format!("{op_topic}/rejected"),
        payload,
    }
}

fn missing(shadow: ShadowId<'_>) -> Rejection {
    let name = match shadow.name {
        Some(n) => format!("{}~{n}", shadow.thing),
        None => shadow.thing.to_string(),
    };
    reject(404, format!("No shadow exists with name: '{name}'"))
}

fn get(record: &Record, shadow: ShadowId<'_>, now: u64) -> Result<Value, Rejection> {
    if !record.exists {
        return Err(missing(shadow));
    }
    let mut state = Value::Object(record.state.clone());
    if let Some(delta) = record.delta() {
        state["delta"] = delta;
    }
    Ok(json!({
        "state": state,
        "metadata": record.metadata,
        "version": record.version,
        "timestamp": now,
    }))
}

type Accepted = (Option<Record>, Vec<Value>);

fn delete(record: &Record, shadow: ShadowId<'_>, now: u64) -> Result<Accepted, Rejection> {
    if !record.exists {
        return Err(missing(shadow));
    }
    let gone = Record {
        version: record.version,
        ..Record::empty()
    };
    Ok((
        Some(gone),
        vec![json!({"version": record.version, "timestamp": now})],
    ))
}

fn update(record: &Record, body: &Map<String, Value>, now: u64) -> Result<Accepted, Rejection> {
    let Some(Value::Object(state)) = body.get("state") else {
        return Err(reject(400, "Missing required node: state"));
    };
    for (section, value) in state {
        if section != "desired" && section != "reported" {
            return Err(reject(
                400,
                format!("State contains an invalid node: '{section}'"),
            ));
        }
        if depth(value) > MAX_DEPTH {
            return Err(reject(
                400,
                format!("JSON contains too many levels of nesting; maximum is {MAX_DEPTH}"),
            ));
        }
    }
    if let Some(v) = body.get("version") {
        if v.as_u64() != Some(record.version) {
            return Err(reject(409, "Version conflict"));
        }
    }
    let mut next = record.clone();
    if !next.exists {
        next.state.clear();
        next.metadata.clear();
    }
    for (section, value) in state {
        match value {
            Value::Null => {
                next.state.remove(section);
                next.metadata.remove(section);
            }
            Value::Object(u) => {
                let s = next
                    .state
                    .entry(section.clone())
                    .or_insert_with(|| json!({}));
                let m = next
                    .metadata
                    .entry(section.clone())
                    .or_insert_with(|| json!({}));
                if let (Value::Object(s), Value::Object(m)) = (s, m) {
                    merge(s, m, u, now);
                }
            }
            _ => {
                return Err(reject(
                    400,
                    format!("'{section}' must be an object or null"),
                ))
            }
        }
    }
    if Value::Object(next.state.clone()).to_string().len() > MAX_STATE_BYTES {
        return Err(reject(413, "The payload exceeds the maximum size allowed"));
    }
    next.version = record.version + 1;
    next.exists = true;
    let accepted = json!({
        "state": state,
        "metadata": stamps(&Value::Object(state.clone()), now),
        "version": next.version,
        "timestamp": now,
    });
    let previous = if record.exists {
        record.document()
    } else {
        Value::Null
    };
    let documents = json!({"previous": previous, "current": next.document(), "timestamp": now});
    let mut answers = vec![accepted, documents];
    if state.contains_key("desired") {
        if let Some(delta) = next.delta() {
            let metadata = next
                .metadata
                .get("desired")
                .map(|m| only(m, &delta))
                .unwrap_or(Value::Null);
            answers.push(json!({
                "state": delta,
                "metadata": metadata,
                "version": next.version,
                "timestamp": now,
            }));
        }
    }
    Ok((Some(next), answers))
}

/// The parts of `meta` whose keys `shape` has.
fn only(meta: &Value, shape: &Value) -> Value {
    match (meta, shape) {
        (Value::Object(m), Value::Object(s)) if m.get("timestamp").is_none() => Value::Object(
            s.iter()
                .filter_map(|(k, v)| m.get(k).map(|mv| (k.clone(), only(mv, v))))
                .collect(),
        ),
        (m, _) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh database, removed when dropped.
    struct Db(PathBuf, Store);

    impl Db {
        fn new(name: &str) -> Db {
            let path =
                std::env::temp_dir().join(format!("fqp-cloud-{name}-{}.redb", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let store = Store::open(&path).unwrap();
            Db(path, store)
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const LAMP: ShadowId = ShadowId {
        thing: "lamp",
        name: None,
    };

    fn call(db: &Db, op: Op, body: &str, now: u64) -> Vec<Message> {
        handle(&db.1, LAMP, op, body.as_bytes(), now).unwrap()
    }

    fn topics(m: &[Message]) -> Vec<&str> {
        m.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn an_update_creates_the_shadow_and_says_what_desired_still_asks() {
        let db = Db::new("create");
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
        let db = Db::new("meet");
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
        let db = Db::new("version");
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
        let db = Db::new("bad");
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
        let db = Db::new("large");
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
        let db = Db::new("delete");
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
        let path =
            std::env::temp_dir().join(format!("fqp-cloud-named-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = Store::open(&path).unwrap();
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
        drop(store);
        let store = Store::open(&path).unwrap();
        let out = handle(&store, config, Op::Get, b"", 3).unwrap();
        assert_eq!(out[0].payload["state"]["desired"], json!({"x": 1}));
        assert_eq!(out[0].payload["version"], 1);
        drop(store);
        let _ = std::fs::remove_file(&path);
    }
}
