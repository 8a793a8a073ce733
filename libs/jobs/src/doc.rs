//! The jobs documents the device writes and reads, with serde-json-core: `start-next` and
//! `update` bodies, an execution (with the job's document and status details as the
//! application's own types), an update's resulting state, the pending lists, a refusal's code
//! and message.

use crate::Error;
use fqp_iot::Text;
use serde::{Deserialize, Serialize};

/// An execution's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

#[derive(Serialize)]
struct StartNext<'t, D> {
    #[serde(rename = "statusDetails", skip_serializing_if = "Option::is_none")]
    details: Option<D>,
    #[serde(rename = "clientToken")]
    token: &'t str,
}

/// A `start-next` body: the status details the execution starts with, and the token.
pub fn start_next<D: Serialize>(
    buf: &mut [u8],
    details: Option<&D>,
    token: &str,
) -> Result<usize, Error> {
    serde_json_core::to_slice(&StartNext { details, token }, buf).map_err(|_| Error::TooLong)
}

#[derive(Serialize)]
struct Update<'t, D> {
    status: Status,
    #[serde(rename = "expectedVersion", skip_serializing_if = "Option::is_none")]
    expected_version: Option<u64>,
    #[serde(rename = "statusDetails", skip_serializing_if = "Option::is_none")]
    details: Option<D>,
    #[serde(rename = "clientToken")]
    token: &'t str,
}

/// An `update` body: the new status, the version the device believes the execution is at
/// (refused with VersionMismatch if it is not), status details, the token.
pub fn update<D: Serialize>(
    buf: &mut [u8],
    status: Status,
    expected_version: Option<u64>,
    details: Option<&D>,
    token: &str,
) -> Result<usize, Error> {
    let u = Update {
        status,
        expected_version,
        details,
        token,
    };
    serde_json_core::to_slice(&u, buf).map_err(|_| Error::TooLong)
}

#[derive(Serialize)]
struct Token<'t> {
    #[serde(rename = "clientToken")]
    token: &'t str,
}

/// A body with only a token (`get`, `$next/get`, `<jobId>/get`).
pub fn request(buf: &mut [u8], token: &str) -> Result<usize, Error> {
    serde_json_core::to_slice(&Token { token }, buf).map_err(|_| Error::TooLong)
}

/// One execution, with the job's document `J` and its status details `D`.
#[derive(Deserialize, Debug, PartialEq)]
pub struct Execution<'a, J, D> {
    #[serde(rename = "jobId", borrow)]
    pub job_id: &'a str,
    pub status: Status,
    #[serde(rename = "versionNumber")]
    pub version: u64,
    #[serde(rename = "jobDocument", default = "none")]
    pub document: Option<J>,
    #[serde(rename = "statusDetails", default = "none")]
    pub details: Option<D>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Deserialize)]
struct WithExecution<T> {
    #[serde(default = "none")]
    execution: Option<T>,
}

/// The execution an answer (`start-next`, `$next/get`, `<jobId>/get`) or a `notify-next`
/// carries: `None` when there is none (nothing pending).
pub fn execution<'a, J: Deserialize<'a>, D: Deserialize<'a>>(
    payload: &'a [u8],
) -> Result<Option<Execution<'a, J, D>>, Error> {
    serde_json_core::from_slice::<WithExecution<Execution<'a, J, D>>>(payload)
        .map(|(w, _)| w.execution)
        .map_err(|_| Error::BadAnswer)
}

/// An execution's state after an update.
#[derive(Deserialize, Debug, PartialEq)]
pub struct State<D> {
    pub status: Status,
    #[serde(rename = "versionNumber")]
    pub version: u64,
    #[serde(rename = "statusDetails", default = "none")]
    pub details: Option<D>,
}

#[derive(Deserialize)]
struct WithState<T> {
    #[serde(rename = "executionState")]
    state: T,
}

/// The state an accepted `update` answers with.
pub fn state<'a, D: Deserialize<'a>>(payload: &'a [u8]) -> Result<State<D>, Error> {
    serde_json_core::from_slice::<WithState<State<D>>>(payload)
        .map(|(w, _)| w.state)
        .map_err(|_| Error::BadAnswer)
}

/// A job in the pending lists.
#[derive(Deserialize, Debug, PartialEq, Clone, Copy)]
pub struct Summary<'a> {
    #[serde(rename = "jobId", borrow)]
    pub job_id: &'a str,
    #[serde(rename = "versionNumber")]
    pub version: u64,
}

/// The pending lists, at most `N` of each.
#[derive(Deserialize, Debug)]
pub struct Pending<'a, const N: usize> {
    #[serde(rename = "inProgressJobs", borrow, default)]
    pub in_progress: heapless::Vec<Summary<'a>, N>,
    #[serde(rename = "queuedJobs", borrow, default)]
    pub queued: heapless::Vec<Summary<'a>, N>,
}

/// The lists a `get` answers with (more than `N` in one list is [`Error::BadAnswer`]).
pub fn pending<'a, const N: usize>(payload: &'a [u8]) -> Result<Pending<'a, N>, Error> {
    serde_json_core::from_slice::<Pending<'a, N>>(payload)
        .map(|(p, _)| p)
        .map_err(|_| Error::BadAnswer)
}

/// The contract's error codes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Code {
    InvalidTopic,
    InvalidJson,
    InvalidRequest,
    InvalidStateTransition,
    ResourceNotFound,
    VersionMismatch,
    InternalError,
    RequestThrottled,
    TerminalStateReached,
    /// A code this library does not know.
    Other,
}

impl Code {
    fn parse(s: &str) -> Code {
        match s {
            "InvalidTopic" => Code::InvalidTopic,
            "InvalidJson" => Code::InvalidJson,
            "InvalidRequest" => Code::InvalidRequest,
            "InvalidStateTransition" => Code::InvalidStateTransition,
            "ResourceNotFound" => Code::ResourceNotFound,
            "VersionMismatch" => Code::VersionMismatch,
            "InternalError" => Code::InternalError,
            "RequestThrottled" => Code::RequestThrottled,
            "TerminalStateReached" => Code::TerminalStateReached,
            _ => Code::Other,
        }
    }
}

/// A refusal: the contract's error code and message, and the execution's state when the
/// refusal carries it (VersionMismatch, InvalidStateTransition, TerminalStateReached).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rejection {
    pub code: Code,
    pub message: Text<96>,
    pub state: Option<Status>,
}

#[derive(Deserialize)]
struct StatusOnly {
    status: Status,
}

#[derive(Deserialize)]
struct Refused<'a> {
    #[serde(borrow)]
    code: &'a str,
    #[serde(borrow, default)]
    message: Option<&'a str>,
    #[serde(rename = "executionState", default = "none")]
    state: Option<StatusOnly>,
}

/// Reads a refusal; `None` if the payload is not one.
pub fn rejection(payload: &[u8]) -> Option<Rejection> {
    let (r, _) = serde_json_core::from_slice::<Refused<'_>>(payload).ok()?;
    Some(Rejection {
        code: Code::parse(r.code),
        message: Text::new(r.message.unwrap_or("")),
        state: r.state.map(|s| s.status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize, Debug, PartialEq)]
    struct Doc<'a> {
        operation: &'a str,
    }

    #[derive(Deserialize, Serialize, Debug, PartialEq)]
    struct Progress<'a> {
        progress: &'a str,
    }

    #[test]
    fn bodies_are_written_as_the_contract_has_them() {
        let mut buf = [0u8; 160];
        let p = Progress { progress: "1/3" };
        let n = update(&mut buf, Status::InProgress, Some(2), Some(&p), "u1").unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            r#"{"status":"IN_PROGRESS","expectedVersion":2,"statusDetails":{"progress":"1/3"},"clientToken":"u1"}"#
        );
        let n = start_next(&mut buf, None::<&()>, "s1").unwrap();
        assert_eq!(&buf[..n], br#"{"clientToken":"s1"}"#);
    }

    #[test]
    fn answers_are_read() {
        let next = br#"{"timestamp":5,"execution":{"jobId":"j1","status":"IN_PROGRESS","statusDetails":{"progress":"0/3"},
            "queuedAt":1,"startedAt":2,"lastUpdatedAt":2,"versionNumber":2,"executionNumber":1,
            "thingName":"lamp","jobDocument":{"operation":"blink"}},"clientToken":"s1"}"#;
        let e = execution::<Doc<'_>, Progress<'_>>(next).unwrap().unwrap();
        assert_eq!(
            (e.job_id, e.status, e.version),
            ("j1", Status::InProgress, 2)
        );
        assert_eq!(e.document, Some(Doc { operation: "blink" }));
        assert_eq!(e.details, Some(Progress { progress: "0/3" }));
        let none = execution::<Doc<'_>, Progress<'_>>(br#"{"timestamp":5}"#).unwrap();
        assert!(none.is_none());
        let s = state::<Progress<'_>>(br#"{"executionState":{"status":"SUCCEEDED","statusDetails":{"progress":"3/3"},"versionNumber":4},"timestamp":1}"#).unwrap();
        assert_eq!((s.status, s.version), (Status::Succeeded, 4));
        let p = pending::<4>(br#"{"inProgressJobs":[{"jobId":"a","queuedAt":1,"lastUpdatedAt":1,"versionNumber":2,"executionNumber":1}],"queuedJobs":[],"timestamp":1}"#).unwrap();
        assert_eq!(p.in_progress.len(), 1);
        assert_eq!(p.in_progress[0].job_id, "a");
        assert!(p.queued.is_empty());
        let r = rejection(br#"{"code":"VersionMismatch","message":"the execution's version is 3","timestamp":1,"executionState":{"status":"IN_PROGRESS","versionNumber":3}}"#).unwrap();
        assert_eq!(
            (r.code, r.state),
            (Code::VersionMismatch, Some(Status::InProgress))
        );
        assert!(rejection(next).is_none());
    }
}
