//! Jobs, as the contract has it: a job (a document for devices) targets things and thing
//! groups; each targeted thing gets an *execution* of it, which the device drives over
//! `$aws/things/<t>/jobs/…`: `get` (its pending executions), `start-next`, `$next/get`,
//! `<jobId>/get`, `<jobId>/update`, each answered on `/accepted` or `/rejected`; the cloud
//! pushes `notify` (the pending list changed) and `notify-next` (the next execution changed).
//!
//! Kept: a *continuous* job also reaches things that join a target group later; an execution
//! left IN_PROGRESS past its job's in-progress timeout becomes TIMED_OUT; cancelling a job
//! cancels its pending executions; every update bumps the execution's version, and one naming
//! another `expectedVersion` is refused (VersionMismatch); a device may set IN_PROGRESS,
//! SUCCEEDED, FAILED or REJECTED (else InvalidRequest), never leave a terminal state
//! (InvalidStateTransition, with the execution's state); describing an execution that
//! reached a terminal state is TerminalStateReached (the device API's error table). The
//! operator sees every execution ([`Jobs::execution`]). The service's read-modify-writes are serialised (one lock for
//! the process: a cloud is one process, and a store is open in one place); each is one
//! committed transaction of the store.

use crate::registry::{Registry, RegistryError};
use crate::shadow::Message;
use crate::store::{Store, StoreError, Table};
use serde_json::{json, Map, Value};
use std::sync::Mutex;

/// An execution's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::InProgress => "IN_PROGRESS",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Rejected => "REJECTED",
            Status::Removed => "REMOVED",
            Status::Canceled => "CANCELED",
        }
    }

    fn parse(word: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::InProgress,
            Status::Succeeded,
            Status::Failed,
            Status::TimedOut,
            Status::Rejected,
            Status::Removed,
            Status::Canceled,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }

    pub fn terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::InProgress)
    }
}

/// A job to create.
#[derive(Clone, Debug, Default)]
pub struct NewJob<'a> {
    pub id: &'a str,
    pub document: Value,
    pub things: Vec<&'a str>,
    pub groups: Vec<&'a str>,
    /// Every thing of the registry (with `continuous`, also things registered later).
    pub fleet: bool,
    /// Reaches things that join one of `groups` later (or, for the fleet, that are added).
    pub continuous: bool,
    /// An execution IN_PROGRESS longer than this becomes TIMED_OUT.
    pub in_progress_timeout_s: Option<u64>,
}

/// A jobs request could not be carried out (an operator's request; a device's is answered
/// on its `rejected` topic instead).
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job {0:?} exists already\n  fix: choose another job id")]
    Exists(String),
    #[error("there is no job {0:?}\n  fix: list the jobs (fqp cloud jobs) for its id")]
    NoJob(String),
    #[error("job {0:?} targets nothing\n  fix: name at least one thing or thing group")]
    NoTarget(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An execution as stored.
#[derive(Clone, Debug, PartialEq)]
struct Execution {
    job: String,
    thing: String,
    status: Status,
    status_details: Map<String, Value>,
    version: u64,
    queued_at: u64,
    started_at: Option<u64>,
    updated_at: u64,
}

impl Execution {
    /// As the operator sees it: status, version, status details, times.
    fn seen(&self) -> Value {
        json!({
            "jobId": self.job, "thingName": self.thing, "status": self.status.word(),
            "statusDetails": self.status_details, "versionNumber": self.version,
            "queuedAt": self.queued_at, "startedAt": self.started_at,
            "lastUpdatedAt": self.updated_at,
        })
    }

    fn key(&self) -> String {
        format!("{}\0{}", self.thing, self.job)
    }

    fn decode(bytes: &[u8]) -> Option<Execution> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Execution {
            job: v["job"].as_str()?.to_string(),
            thing: v["thing"].as_str()?.to_string(),
            status: Status::parse(v["status"].as_str()?)?,
            status_details: v["statusDetails"].as_object().cloned().unwrap_or_default(),
            version: v["version"].as_u64()?,
            queued_at: v["queuedAt"].as_u64()?,
            started_at: v["startedAt"].as_u64(),
            updated_at: v["lastUpdatedAt"].as_u64()?,
        })
    }

    fn encode(&self) -> Vec<u8> {
        json!({
            "job": self.job, "thing": self.thing, "status": self.status.word(),
            "statusDetails": self.status_details, "version": self.version,
            "queuedAt": self.queued_at, "startedAt": self.started_at,
            "lastUpdatedAt": self.updated_at,
        })
        .to_string()
        .into_bytes()
    }

    /// The job execution summary of the contract's lists.
    fn summary(&self) -> Value {
        let mut v = json!({
            "jobId": self.job, "queuedAt": self.queued_at, "lastUpdatedAt": self.updated_at,
            // A job runs once on a thing here: its execution is always the first.
            "versionNumber": self.version, "executionNumber": 1,
        });
        if let Some(s) = self.started_at {
            v["startedAt"] = json!(s);
        }
        v
    }

    /// The full execution, with its job's document.
    fn full(&self, document: &Value) -> Value {
        let mut v = self.summary();
        v["thingName"] = json!(self.thing);
        v["status"] = json!(self.status.word());
        v["statusDetails"] = Value::Object(self.status_details.clone());
        v["jobDocument"] = document.clone();
        v
    }
}

/// The Jobs service over the cloud's store.
#[derive(Debug)]
pub struct Jobs<'a> {
    store: &'a Store,
}

/// Held across each read-modify-write of the service (a job's reads, then its commit).
static SERIAL: Mutex<()> = Mutex::new(());

mod device;
pub use device::refusal;
#[cfg(test)]
mod tests;

impl<'a> Jobs<'a> {
    pub fn new(store: &'a Store) -> Jobs<'a> {
        Jobs { store }
    }

    pub fn job(&self, id: &str) -> Result<Option<Value>, StoreError> {
        Ok(self
            .store
            .get(Table::Jobs, id)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The executions of `thing`, oldest first (queued time, then job id).
    fn executions(&self, thing: &str) -> Result<Vec<Execution>, StoreError> {
        let mut all: Vec<Execution> = self
            .store
            .scan(Table::Executions, &format!("{thing}\0"))?
            .into_iter()
            .filter_map(|(_, b)| Execution::decode(&b))
            .collect();
        all.sort_by(|a, b| (a.queued_at, &a.job).cmp(&(b.queued_at, &b.job)));
        Ok(all)
    }

    /// Creates a job and queues its execution on every thing it targets now; the notify
    /// messages to publish.
    pub fn create(&self, job: &NewJob<'_>, now: u64) -> Result<Vec<Message>, JobsError> {
        let _serial = SERIAL.lock();
        if self.job(job.id)?.is_some() {
            return Err(JobsError::Exists(job.id.to_string()));
        }
        if job.things.is_empty() && job.groups.is_empty() && !job.fleet {
            return Err(JobsError::NoTarget(job.id.to_string()));
        }
        let registry = Registry::new(self.store);
        let mut things: Vec<String> = Vec::new();
        if job.fleet {
            things.extend(registry.things()?.into_iter().map(|t| t.name));
        }
        for t in &job.things {
            if registry.thing(t)?.is_none() {
                return Err(RegistryError::NoThing(t.to_string()).into());
            }
            things.push(t.to_string());
        }
        for g in &job.groups {
            things.extend(registry.things_in(g)?);
        }
        things.sort();
        things.dedup();
        let record = json!({
            "document": job.document, "groups": job.groups, "fleet": job.fleet,
            "continuous": job.continuous,
            "timeout": job.in_progress_timeout_s, "status": "IN_PROGRESS", "createdAt": now,
        })
        .to_string();
        self.store
            .apply(&[(Table::Jobs, job.id, Some(record.as_bytes()))])?;
        self.queue(job.id, &things, now)
    }

    /// Queues an execution of job `id` on each of `things` that has none; notifies them.
    fn queue(&self, id: &str, things: &[String], now: u64) -> Result<Vec<Message>, JobsError> {
        let mut out = Vec::new();
        for thing in things {
            let key = format!("{thing}\0{id}");
            if self.store.get(Table::Executions, &key)?.is_some() {
                continue;
            }
            let e = Execution {
                job: id.to_string(),
                thing: thing.clone(),
                status: Status::Queued,
                status_details: Map::new(),
                version: 1,
                queued_at: now,
                started_at: None,
                updated_at: now,
            };
            self.save(&e)?;
            out.extend(self.notify(thing, now)?);
        }
        Ok(out)
    }

    /// Puts `thing` in `group` and queues the group's continuous jobs on it.
    pub fn join_group(
        &self,
        group: &str,
        thing: &str,
        now: u64,
    ) -> Result<Vec<Message>, JobsError> {
        Registry::new(self.store).add_to_group(group, thing)?;
        let _serial = SERIAL.lock();
        let groups = Registry::new(self.store).groups_of(thing)?;
        let mut out = Vec::new();
        for (id, bytes) in self.store.scan(Table::Jobs, "")? {
            let job: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let targets_it = job["groups"]
                .as_array()
                .is_some_and(|gs| gs.iter().any(|g| groups.iter().any(|x| g == x)));
            if job["continuous"] == true && job["status"] == "IN_PROGRESS" && targets_it {
                out.extend(self.queue(&id, &[thing.to_string()], now)?);
            }
        }
        Ok(out)
    }

    /// Queues the fleet's continuous jobs on `thing`, newly registered.
    pub fn thing_added(&self, thing: &str, now: u64) -> Result<Vec<Message>, JobsError> {
        let _serial = SERIAL.lock();
        let mut out = Vec::new();
        for (id, bytes) in self.store.scan(Table::Jobs, "")? {
            let job: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if job["fleet"] == true && job["continuous"] == true && job["status"] == "IN_PROGRESS" {
                out.extend(self.queue(&id, &[thing.to_string()], now)?);
            }
        }
        Ok(out)
    }

    /// Cancels job `id`: its queued and in-progress executions become CANCELED.
    pub fn cancel(&self, id: &str, now: u64) -> Result<Vec<Message>, JobsError> {
        let _serial = SERIAL.lock();
        let mut job = self
            .job(id)?
            .ok_or_else(|| JobsError::NoJob(id.to_string()))?;
        job["status"] = json!("CANCELED");
        let record = job.to_string();
        self.store
            .apply(&[(Table::Jobs, id, Some(record.as_bytes()))])?;
        let mut out = Vec::new();
        for e in self.all_executions()? {
            if e.job == id && !e.status.terminal() {
                out.extend(self.end(e, Status::Canceled, now)?);
            }
        }
        Ok(out)
    }

    /// Every job: its id, status, targets and how its executions stand (counts by status).
    pub fn all(&self) -> Result<Vec<Value>, StoreError> {
        let executions = self.all_executions()?;
        let mut out = Vec::new();
        for (id, bytes) in self.store.scan(Table::Jobs, "")? {
            let job: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let mut counts = Map::new();
            for e in executions.iter().filter(|e| e.job == id) {
                let n = counts.entry(e.status.word()).or_insert(json!(0));
                *n = json!(n.as_u64().unwrap_or(0) + 1);
            }
            out.push(json!({
                "jobId": id, "status": job["status"], "groups": job["groups"], "fleet": job["fleet"],
                "continuous": job["continuous"], "inProgressTimeout": job["timeout"],
                "document": job["document"], "executions": counts,
            }));
        }
        Ok(out)
    }

    /// Cancels every pending (queued or in-progress) execution of `thing`, as an operator
    /// clearing a device's queue does.
    pub fn cancel_pending_of(&self, thing: &str, now: u64) -> Result<Vec<Message>, JobsError> {
        let _serial = SERIAL.lock();
        let mut out = Vec::new();
        for e in self.executions(thing)? {
            if !e.status.terminal() {
                out.extend(self.end(e, Status::Canceled, now)?);
            }
        }
        Ok(out)
    }

    /// The execution of job `job` on `thing` as the operator sees it: status, version,
    /// status details, times.
    pub fn execution(&self, thing: &str, job: &str) -> Result<Option<Value>, StoreError> {
        let key = format!("{thing}\0{job}");
        Ok(self
            .store
            .get(Table::Executions, &key)?
            .as_deref()
            .and_then(Execution::decode)
            .map(|e| e.seen()))
    }

    /// Every execution of job `job`, as [`Jobs::execution`] shows each, by thing.
    pub fn executions_of(&self, job: &str) -> Result<Vec<Value>, StoreError> {
        let mut all: Vec<Execution> = self
            .all_executions()?
            .into_iter()
            .filter(|e| e.job == job)
            .collect();
        all.sort_by(|a, b| a.thing.cmp(&b.thing));
        Ok(all.iter().map(Execution::seen).collect())
    }

    /// Executions IN_PROGRESS past their job's timeout become TIMED_OUT; their things are
    /// notified.
    pub fn expire(&self, now: u64) -> Result<Vec<Message>, JobsError> {
        let _serial = SERIAL.lock();
        let mut out = Vec::new();
        for e in self.all_executions()? {
            let timeout = self.job(&e.job)?.and_then(|j| j["timeout"].as_u64());
            let (Status::InProgress, Some(t), Some(started)) = (e.status, timeout, e.started_at)
            else {
                continue;
            };
            if now >= started + t {
                out.extend(self.end(e, Status::TimedOut, now)?);
            }
        }
        Ok(out)
    }

    /// Every execution on every thing.
    fn all_executions(&self) -> Result<Vec<Execution>, StoreError> {
        Ok(self
            .store
            .scan(Table::Executions, "")?
            .into_iter()
            .filter_map(|(_, b)| Execution::decode(&b))
            .collect())
    }

    /// Ends execution `e` in `status` (the operator's doing: a new version), saves it, and
    /// notifies its thing.
    fn end(&self, mut e: Execution, status: Status, now: u64) -> Result<Vec<Message>, StoreError> {
        e.status = status;
        e.version += 1;
        e.updated_at = now;
        self.save(&e)?;
        self.notify(&e.thing, now)
    }

    /// Stores execution `e` (one transaction).
    fn save(&self, e: &Execution) -> Result<(), StoreError> {
        self.store
            .apply(&[(Table::Executions, &e.key(), Some(&e.encode()))])
    }

    /// `notify` (the pending lists) and `notify-next` (the next execution) for `thing`.
    fn notify(&self, thing: &str, now: u64) -> Result<Vec<Message>, StoreError> {
        let pending = self.executions(thing)?;
        let list = |s: Status| -> Vec<Value> {
            pending
                .iter()
                .filter(|e| e.status == s)
                .map(Execution::summary)
                .collect()
        };
        let mut jobs = Map::new();
        for s in [Status::InProgress, Status::Queued] {
            let l = list(s);
            if !l.is_empty() {
                jobs.insert(s.word().into(), Value::Array(l));
            }
        }
        let base = format!("$aws/things/{thing}/jobs");
        let mut next = json!({ "timestamp": now });
        if let Some(e) = next_of(&pending) {
            let doc = self
                .job(&e.job)?
                .map(|j| j["document"].clone())
                .unwrap_or_default();
            next["execution"] = e.full(&doc);
        }
        Ok(vec![
            Message {
                topic: format!("{base}/notify"),
                payload: json!({ "timestamp": now, "jobs": jobs }),
            },
            Message {
                topic: format!("{base}/notify-next"),
                payload: next,
            },
        ])
    }
}

/// The execution a device should work on next: the oldest IN_PROGRESS, else the oldest
/// QUEUED.
fn next_of(pending: &[Execution]) -> Option<&Execution> {
    pending
        .iter()
        .find(|e| e.status == Status::InProgress)
        .or_else(|| pending.iter().find(|e| e.status == Status::Queued))
}
