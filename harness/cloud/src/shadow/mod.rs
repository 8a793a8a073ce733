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
//! 404 for a shadow that does not exist; 413 when the state would exceed 8 KiB; 500 for a
//! stored document that does not read back. A deleted shadow keeps its version: the next
//! update continues from it.

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

impl Message {
    /// The payload as published: CBOR on the topics the contract answers in CBOR (a
    /// Defender report's, a stream's), JSON everywhere else.
    pub fn bytes(&self) -> Vec<u8> {
        if self.topic.ends_with("/cbor") || self.topic.contains("/cbor/") {
            let mut out = Vec::new();
            let cbor = crate::streams::to_cbor(&self.payload);
            if ciborium::ser::into_writer(&cbor, &mut out).is_ok() {
                return out;
            }
        }
        self.payload.to_string().into_bytes()
    }
}

/// One shadow: its thing, and its name for a named shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    /// The record `encode` wrote; a record that does not read back is refused 500 (never
    /// taken for an empty shadow, which the next update would write over).
    fn decode(bytes: &[u8]) -> Result<Record, Rejection> {
        let broken = || reject(500, "the shadow's stored document cannot be read");
        let v: Value = serde_json::from_slice(bytes).map_err(|_| broken())?;
        let obj = |k: &str| v[k].as_object().cloned().ok_or_else(broken);
        Ok(Record {
            state: obj("state")?,
            metadata: obj("metadata")?,
            version: v["version"].as_u64().ok_or_else(broken)?,
            exists: v["exists"].as_bool().ok_or_else(broken)?,
        })
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
        let record = stored.map_or_else(|| Ok(Record::empty()), Record::decode);
        let outcome = record.and_then(|record| match op {
            Op::Get => get(&record, shadow, now).map(|a| (None, vec![a])),
            Op::Delete => delete(&record, shadow, now),
            Op::Update => update(&record, &body, now),
        });
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

/// The refusal of a request the service did not handle: `code` 429 (its connection has too
/// many requests in flight) or 500 (the store failed).
pub fn refusal(shadow: ShadowId<'_>, op: Op, payload: &[u8], code: u16, now: u64) -> Message {
    let token = body(payload).ok().and_then(|(_, t)| t);
    let message = match code {
        429 => "Too Many Requests",
        _ => "Internal service failure",
    };
    let r = reject(code, message);
    rejected(&format!("{}/{}", shadow.topic(), op.word()), r, token, now)
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
mod tests;
