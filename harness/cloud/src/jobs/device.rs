//! A device's requests on `$aws/things/<t>/jobs/…`, answered on `/accepted` or `/rejected`.

use super::{next_of, Execution, Jobs, Status};
use crate::shadow::Message;
use crate::store::StoreError;
use serde_json::{json, Map, Value};

/// A refusal: the contract's error code, what was wrong, and the execution's state when the
/// refusal concerns it.
struct Refusal {
    code: &'static str,
    message: String,
    state: Option<Value>,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        state: None,
    }
}

/// An accepted answer, and the notifications it causes.
type Answer = (Value, Vec<Message>);

/// An answer that changes nothing, so notifies nobody.
fn quiet(r: Result<Value, Refusal>) -> Result<Answer, Refusal> {
    r.map(|a| (a, Vec::new()))
}

fn execution_state(e: &Execution) -> Value {
    json!({
        "status": e.status.word(),
        "statusDetails": e.status_details,
        "versionNumber": e.version,
    })
}

impl Jobs<'_> {
    /// Handles a device's request `request` (the topic after `$aws/things/<thing>/jobs/`):
    /// the messages to publish, the answer first.
    pub fn handle(
        &self,
        thing: &str,
        request: &str,
        payload: &[u8],
        now: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let topic = format!("$aws/things/{thing}/jobs/{request}");
        let body: Map<String, Value> = if payload.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice(payload) {
                Ok(Value::Object(m)) => m,
                _ => {
                    let r = refuse("InvalidJson", "the request is not a JSON object");
                    return Ok(vec![rejected(&topic, r, None, now)]);
                }
            }
        };
        let token = body
            .get("clientToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        let _serial = super::SERIAL.lock();
        let parts: Vec<&str> = request.split('/').collect();
        let result = match parts[..] {
            ["get"] => self.list(thing).map(quiet),
            ["start-next"] => self.start_next(thing, &body, now),
            ["$next", "get"] => self.describe(thing, None).map(quiet),
            [job, "get"] => self.describe(thing, Some(job)).map(quiet),
            [job, "update"] => self.update(thing, job, &body, now),
            _ => Ok(Err(refuse(
                "InvalidTopic",
                format!("no jobs request {request:?}"),
            ))),
        }?;
        Ok(match result {
            Ok((mut answer, notes)) => {
                answer["timestamp"] = json!(now);
                if let Some(t) = &token {
                    answer["clientToken"] = json!(t);
                }
                let mut out = vec![Message {
                    topic: format!("{topic}/accepted"),
                    payload: answer,
                }];
                out.extend(notes);
                out
            }
            Err(r) => vec![rejected(&topic, r, token, now)],
        })
    }

    fn list(&self, thing: &str) -> Result<Result<Value, Refusal>, StoreError> {
        let pending = self.executions(thing)?;
        let of = |s: Status| -> Vec<Value> {
            pending
                .iter()
                .filter(|e| e.status == s)
                .map(Execution::summary)
                .collect()
        };
        Ok(Ok(json!({
            "inProgressJobs": of(Status::InProgress),
            "queuedJobs": of(Status::Queued),
        })))
    }

    fn document(&self, job: &str) -> Result<Value, StoreError> {
        Ok(self
            .job(job)?
            .map(|j| j["document"].clone())
            .unwrap_or_default())
    }

    fn describe(
        &self,
        thing: &str,
        job: Option<&str>,
    ) -> Result<Result<Value, Refusal>, StoreError> {
        let pending = self.executions(thing)?;
        let found = match job {
            Some(id) => match pending.iter().find(|e| e.job == id) {
                Some(e) if e.status.terminal() => {
                    let mut r = refuse(
                        "TerminalStateReached",
                        format!("the execution of job {id:?} is {}", e.status.word()),
                    );
                    r.state = Some(execution_state(e));
                    return Ok(Err(r));
                }
                Some(e) => Some(e),
                None => {
                    return Ok(Err(refuse(
                        "ResourceNotFound",
                        format!("no execution of job {id:?} on thing {thing:?}"),
                    )))
                }
            },
            None => next_of(&pending),
        };
        Ok(Ok(match found {
            Some(e) => json!({ "execution": e.full(&self.document(&e.job)?) }),
            None => json!({}),
        }))
    }

    fn start_next(
        &self,
        thing: &str,
        body: &Map<String, Value>,
        now: u64,
    ) -> Result<Result<Answer, Refusal>, StoreError> {
        let pending = self.executions(thing)?;
        let Some(next) = next_of(&pending) else {
            return Ok(Ok((json!({}), Vec::new())));
        };
        let mut e = next.clone();
        let mut notes = Vec::new();
        if e.status == Status::Queued {
            e.status = Status::InProgress;
            e.started_at = Some(now);
            e.version += 1;
            e.updated_at = now;
            if let Some(Value::Object(d)) = body.get("statusDetails") {
                e.status_details = d.clone();
            }
            self.save(&e)?;
            notes = self.notify(thing, now)?;
        }
        let doc = self.document(&e.job)?;
        Ok(Ok((json!({ "execution": e.full(&doc) }), notes)))
    }

    fn update(
        &self,
        thing: &str,
        job: &str,
        body: &Map<String, Value>,
        now: u64,
    ) -> Result<Result<Answer, Refusal>, StoreError> {
        let pending = self.executions(thing)?;
        let Some(found) = pending.iter().find(|e| e.job == job) else {
            return Ok(Err(refuse(
                "ResourceNotFound",
                format!("no execution of job {job:?} on thing {thing:?}"),
            )));
        };
        let mut e = found.clone();
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .and_then(Status::parse);
        let Some(status) = status.filter(|s| {
            matches!(
                s,
                Status::InProgress | Status::Succeeded | Status::Failed | Status::Rejected
            )
        }) else {
            return Ok(Err(refuse(
                "InvalidRequest",
                "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED",
            )));
        };
        let with_state = |mut r: Refusal| {
            r.state = Some(execution_state(&e));
            r
        };
        if e.status.terminal() {
            return Ok(Err(with_state(refuse(
                "InvalidStateTransition",
                format!(
                    "the execution is {} already, a terminal state",
                    e.status.word()
                ),
            ))));
        }
        if let Some(expected) = body.get("expectedVersion") {
            if expected.as_u64() != Some(e.version) {
                return Ok(Err(with_state(refuse(
                    "VersionMismatch",
                    format!("the execution's version is {}", e.version),
                ))));
            }
        }
        let changed = e.status != status;
        if status == Status::InProgress && e.started_at.is_none() {
            e.started_at = Some(now);
        }
        e.status = status;
        if let Some(Value::Object(d)) = body.get("statusDetails") {
            e.status_details = d.clone();
        }
        e.version += 1;
        e.updated_at = now;
        self.save(&e)?;
        let notes = if changed {
            self.notify(thing, now)?
        } else {
            Vec::new()
        };
        Ok(Ok((
            json!({ "executionState": execution_state(&e) }),
            notes,
        )))
    }
}

/// The refusal of a request the service did not handle: `code` RequestThrottled (its
/// connection has too many requests in flight) or InternalError (the store failed).
pub fn refusal(
    thing: &str,
    request: &str,
    payload: &[u8],
    code: &'static str,
    now: u64,
) -> Message {
    let token = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("clientToken")?.as_str().map(str::to_string));
    let message = match code {
        "RequestThrottled" => "too many requests in flight on this connection",
        _ => "the service failed to handle the request",
    };
    let r = refuse(code, message);
    rejected(
        &format!("$aws/things/{thing}/jobs/{request}"),
        r,
        token,
        now,
    )
}

fn rejected(topic: &str, r: Refusal, token: Option<String>, now: u64) -> Message {
    let mut payload = json!({"code": r.code, "message": r.message, "timestamp": now});
    if let Some(t) = token {
        payload["clientToken"] = json!(t);
    }
    if let Some(s) = r.state {
        payload["executionState"] = s;
    }
    Message {
        topic: format!("{topic}/rejected"),
        payload,
    }
}
