//! Jobs through fqp-jobs: the operator (the host, `ASK cloud-job-*`) creates jobs for this
//! device's thing or a group, and the device hears of them (`notify-next`), takes them in
//! order (`start-next`), reports progress and outcome (`update`, with `expectedVersion`), and
//! meets each of the contract's refusals; an in-progress timeout, a cancel and a continuous
//! job reaching the thing when it joins the group are seen from the device. Each test starts
//! with the thing's queue cleared.

use crate::{ask_cloud, in_cloud_task, setting, Inbox, ANSWER_MS};
use alloc::format;
use alloc::string::{String, ToString};
use fqp_jobs::{doc, Code, Jobs, Rejection, Request, Status};
use fqp_mqtt::{Client, Message};
use fqp_net::TcpStream;
use fqp_testkit::{check, check_eq, group, log, Failure, TestResult};
use serde::{Deserialize, Serialize};

group!(pub JOBS, "jobs", [
    notify_next_announces_a_new_job => 30_000,
    start_next_takes_the_oldest_queued_job => 30_000,
    list_shows_in_progress_and_queued => 30_000,
    progress_details_reach_the_cloud => 30_000,
    a_finished_execution_cannot_change => 30_000,
    stale_expected_version_is_rejected => 30_000,
    in_progress_timeout_ends_in_timed_out => 30_000,
    canceled_job_leaves_the_queue => 30_000,
    continuous_job_reaches_a_thing_joining_its_group => 30_000,
    unknown_job_is_not_found => 30_000,
]);

/// The jobs' document: what to do.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Doc<'a> {
    #[serde(borrow, default)]
    operation: Option<&'a str>,
}

/// The status details the device reports.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Progress<'a> {
    #[serde(borrow, default)]
    progress: Option<&'a str>,
}

/// An execution as the device read it.
#[derive(Debug, PartialEq)]
struct Seen {
    id: String,
    status: Status,
    version: u64,
    operation: Option<String>,
}

fn seen(payload: &[u8]) -> Result<Option<Seen>, fqp_jobs::Error> {
    Ok(
        doc::execution::<Doc<'_>, Progress<'_>>(payload)?.map(|e| Seen {
            id: e.job_id.to_string(),
            status: e.status,
            version: e.version,
            operation: e.document.and_then(|d| d.operation.map(str::to_string)),
        }),
    )
}

/// What a request came to: the answer, or the contract's refusal.
type Outcome<T> = Result<Result<T, Rejection>, Failure>;

fn outcome<T>(r: Result<Result<T, fqp_jobs::Error>, fqp_jobs::Error>, what: &str) -> Outcome<T> {
    match r.and_then(|inner| inner) {
        Ok(v) => Ok(Ok(v)),
        Err(fqp_jobs::Error::Rejected(why)) => {
            log!("{} refused: {:?}", what, why);
            Ok(Err(why))
        }
        Err(e) => Err(fqp_testkit::fail!("{}: {:?}", what, e)),
    }
}

fn accepted<T>(o: Outcome<T>, what: &str) -> Result<T, Failure> {
    o?.map_err(|code| fqp_testkit::fail!("{} was refused: {:?}", what, code))
}

/// Fails unless `o` is a refusal with `code`; the refusal.
fn refused<T: core::fmt::Debug>(o: Outcome<T>, code: Code) -> Result<Rejection, Failure> {
    match o? {
        Err(r) if r.code == code => Ok(r),
        other => Err(fqp_testkit::fail!("expected {:?}, got {:?}", code, other)),
    }
}

/// A connection of this device's thing, with the jobs' answers subscribed to.
struct Device<'c, H: FnMut(&Message<'_>)> {
    c: Client<'c, TcpStream, H>,
    inbox: &'c Inbox,
    jobs: Jobs<'c>,
}

impl<H: FnMut(&Message<'_>)> Device<'_, H> {
    fn start_next(&mut self) -> Outcome<Option<Seen>> {
        let mut body = [0u8; 64];
        let n = doc::start_next(&mut body, None::<&()>, "start")
            .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
        let r = self.jobs.request(
            &mut self.c,
            self.inbox,
            Request::StartNext,
            &body[..n],
            ANSWER_MS,
            seen,
        );
        outcome(r, "start-next")
    }

    fn describe(&mut self, id: &str) -> Outcome<Option<Seen>> {
        let mut body = [0u8; 64];
        let n = doc::request(&mut body, "describe").map_err(|e| fqp_testkit::fail!("{:?}", e))?;
        let r = self.jobs.request(
            &mut self.c,
            self.inbox,
            Request::Describe(id),
            &body[..n],
            ANSWER_MS,
            seen,
        );
        outcome(r, "describe")
    }

    fn update(
        &mut self,
        id: &str,
        status: Status,
        expected: Option<u64>,
        progress: Option<&str>,
    ) -> Outcome<(Status, u64)> {
        let mut body = [0u8; 160];
        let details = Progress { progress };
        let n = doc::update(&mut body, status, expected, Some(&details), "update")
            .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
        let r = self.jobs.request(
            &mut self.c,
            self.inbox,
            Request::Update(id),
            &body[..n],
            ANSWER_MS,
            |p| doc::state::<Progress<'_>>(p).map(|s| (s.status, s.version)),
        );
        outcome(r, "update")
    }

    /// The job ids pending: in progress, then queued.
    fn list(&mut self) -> Outcome<(alloc::vec::Vec<String>, alloc::vec::Vec<String>)> {
        let mut body = [0u8; 64];
        let n = doc::request(&mut body, "list").map_err(|e| fqp_testkit::fail!("{:?}", e))?;
        let ids = |l: &[fqp_jobs::Summary<'_>]| l.iter().map(|s| s.job_id.to_string()).collect();
        let r = self.jobs.request(
            &mut self.c,
            self.inbox,
            Request::List,
            &body[..n],
            ANSWER_MS,
            |p| doc::pending::<8>(p).map(|l| (ids(&l.in_progress), ids(&l.queued))),
        );
        outcome(r, "get")
    }

    /// The next `notify-next` message's execution (up to `ANSWER_MS`).
    fn next_notified(&mut self) -> Result<Option<Seen>, Failure> {
        let jobs = self.jobs;
        let got = self
            .c
            .wait_for(self.inbox, ANSWER_MS, |t, p| {
                matches!(fqp_jobs::topic::parse(t), Some((th, fqp_jobs::Topic::NotifyNext)) if th == jobs.thing)
                    .then(|| seen(p))
            })
            .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
        got.ok_or_else(|| fqp_testkit::fail!("no notify-next within {} ms", ANSWER_MS))?
            .map_err(|e| fqp_testkit::fail!("notify-next: {:?}", e))
    }
}

/// Runs the block with this device's thing's queue cleared and a connection subscribed to
/// the jobs' answers (and to notify-next when `$next` is true): `$d` the device, `$me` its
/// identity.
macro_rules! with_jobs {
    ($next:expr, |$d:ident, $me:ident| $body:block) => {{
        let $me = $crate::Identity::provisioned()?;
        ask_cloud("cloud-jobs-clear", &[("thing", &$me.thing)])?;
        let inbox = Inbox::new();
        let (mut tx, mut rx) = (alloc::vec![0u8; 2048], alloc::vec![0u8; 2048]);
        let mut c = $crate::client(&mut tx, &mut rx, &inbox);
        $crate::connect(&mut c, &$me)?;
        let jobs = Jobs::new(&$me.thing);
        jobs.subscribe(&mut c)
            .map_err(|e| fqp_testkit::fail!("subscribe to the jobs' answers: {:?}", e))?;
        if $next {
            jobs.subscribe_next(&mut c)
                .map_err(|e| fqp_testkit::fail!("subscribe to notify-next: {:?}", e))?;
        }
        let mut $d = Device {
            c,
            inbox: &inbox,
            jobs,
        };
        $body
    }};
}

/// A job id of this device's thing, unique in the run.
fn job_id(thing: &str, tag: &str) -> String {
    format!("{thing}-{tag}-{}", fqp_kernel::time::uptime_us())
}

/// Asks the operator to create job `id` doing `operation` for `thing`, with `extra` fields.
fn create(id: &str, thing: &str, operation: &str, extra: &[(&str, &str)]) -> TestResult {
    let document = format!(r#"{{"operation":"{operation}"}}"#);
    let mut fields = alloc::vec![("job", id), ("document", document.as_str())];
    if !extra.iter().any(|(k, _)| *k == "group") {
        fields.push(("thing", thing));
    }
    fields.extend_from_slice(extra);
    ask_cloud("cloud-job-create", &fields)
}

fn notify_next_announces_a_new_job() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(true, |d, me| {
            let id = job_id(&me.thing, "new");
            create(&id, &me.thing, "blink", &[])?;
            let next = d.next_notified()?;
            let next = next.ok_or_else(|| fqp_testkit::fail!("notify-next named no execution"))?;
            check_eq!(next.id, id);
            check_eq!(next.status, Status::Queued);
            check_eq!(next.operation.as_deref(), Some("blink"));
            Ok(())
        })
    })
}

fn start_next_takes_the_oldest_queued_job() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let (first, second) = (job_id(&me.thing, "a"), job_id(&me.thing, "b"));
            create(&first, &me.thing, "first", &[])?;
            // Queued in the same second or later: the service orders by the time queued,
            // then by id (`…-a-…` before `…-b-…`).
            create(&second, &me.thing, "second", &[])?;
            let e = accepted(d.start_next(), "start-next")?
                .ok_or_else(|| fqp_testkit::fail!("start-next found nothing"))?;
            check_eq!(
                (e.id.as_str(), e.status),
                (first.as_str(), Status::InProgress)
            );
            check_eq!(e.operation.as_deref(), Some("first"));
            // Asked again, the one in progress is still the next.
            let again = accepted(d.start_next(), "start-next")?.map(|e| e.id);
            check_eq!(again.as_deref(), Some(first.as_str()));
            accepted(d.update(&first, Status::Succeeded, None, None), "update")?;
            let e = accepted(d.start_next(), "start-next")?.map(|e| e.id);
            check_eq!(e.as_deref(), Some(second.as_str()));
            accepted(d.update(&second, Status::Succeeded, None, None), "update")?;
            let none = accepted(d.start_next(), "start-next")?;
            check!(none.is_none(), "nothing left, yet {:?}", none);
            Ok(())
        })
    })
}

fn list_shows_in_progress_and_queued() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let (a, b) = (job_id(&me.thing, "la"), job_id(&me.thing, "lb"));
            create(&a, &me.thing, "x", &[])?;
            create(&b, &me.thing, "y", &[])?;
            accepted(d.start_next(), "start-next")?;
            let (in_progress, queued) = accepted(d.list(), "get")?;
            check_eq!(in_progress, [a]);
            check_eq!(queued, [b]);
            Ok(())
        })
    })
}

fn progress_details_reach_the_cloud() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let id = job_id(&me.thing, "progress");
            create(&id, &me.thing, "download", &[])?;
            let e = accepted(d.start_next(), "start-next")?
                .ok_or_else(|| fqp_testkit::fail!("start-next found nothing"))?;
            let (status, v) = accepted(
                d.update(&id, Status::InProgress, Some(e.version), Some("2/5")),
                "update",
            )?;
            check_eq!((status, v), (Status::InProgress, e.version + 1));
            ask_cloud("cloud-job-execution", &[("job", &id), ("thing", &me.thing)])?;
            let held = setting("execution")?;
            check!(
                held.contains(r#""progress":"2/5""#) && held.contains(r#""status":"IN_PROGRESS""#),
                "the cloud holds {}",
                held
            );
            Ok(())
        })
    })
}

fn a_finished_execution_cannot_change() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let id = job_id(&me.thing, "done");
            create(&id, &me.thing, "reboot", &[])?;
            accepted(d.start_next(), "start-next")?;
            refused(
                d.update(&id, Status::Queued, None, None),
                Code::InvalidRequest,
            )?;
            let (s, _) = accepted(
                d.update(&id, Status::Failed, None, Some("no space")),
                "fail",
            )?;
            check_eq!(s, Status::Failed);
            let r = refused(
                d.update(&id, Status::Succeeded, None, None),
                Code::InvalidStateTransition,
            )?;
            check_eq!(r.state, Some(Status::Failed));
            let r = refused(d.describe(&id), Code::TerminalStateReached)?;
            check_eq!(r.state, Some(Status::Failed));
            Ok(())
        })
    })
}

fn stale_expected_version_is_rejected() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let id = job_id(&me.thing, "locked");
            create(&id, &me.thing, "x", &[])?;
            let e = accepted(d.start_next(), "start-next")?
                .ok_or_else(|| fqp_testkit::fail!("start-next found nothing"))?;
            refused(
                d.update(&id, Status::Succeeded, Some(e.version + 3), None),
                Code::VersionMismatch,
            )?;
            let (s, _) = accepted(
                d.update(&id, Status::Succeeded, Some(e.version), None),
                "update at the current version",
            )?;
            check_eq!(s, Status::Succeeded);
            Ok(())
        })
    })
}

fn in_progress_timeout_ends_in_timed_out() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, me| {
            let id = job_id(&me.thing, "slow");
            create(&id, &me.thing, "x", &[("timeout", "2")])?;
            accepted(d.start_next(), "start-next")?;
            let start = crate::ms();
            loop {
                match d.describe(&id)? {
                    Err(r) if r.code == Code::TerminalStateReached => {
                        check_eq!(r.state, Some(Status::TimedOut));
                        log!("timed out after {} ms", crate::ms() - start);
                        break;
                    }
                    other => check!(
                        crate::ms() - start < 10_000,
                        "still {:?} 10 s into a 2 s timeout",
                        other
                    ),
                }
                fqp_kernel::task::delay(fqp_kernel::time::ms_to_ticks(250));
            }
            refused(
                d.update(&id, Status::Succeeded, None, None),
                Code::InvalidStateTransition,
            )
            .map(|_| ())
        })
    })
}

fn canceled_job_leaves_the_queue() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(true, |d, me| {
            let id = job_id(&me.thing, "cancel");
            create(&id, &me.thing, "x", &[])?;
            let queued = d.next_notified()?.map(|e| e.id);
            check_eq!(queued.as_deref(), Some(id.as_str()));
            ask_cloud("cloud-job-cancel", &[("job", &id)])?;
            let next = d.next_notified()?;
            check!(next.is_none(), "after the cancel, next is {:?}", next);
            let r = refused(d.describe(&id), Code::TerminalStateReached)?;
            check_eq!(r.state, Some(Status::Canceled));
            let nothing = accepted(d.start_next(), "start-next")?;
            check!(nothing.is_none(), "start-next took {:?}", nothing);
            Ok(())
        })
    })
}

fn continuous_job_reaches_a_thing_joining_its_group() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(true, |d, me| {
            let group = job_id(&me.thing, "group");
            let id = job_id(&me.thing, "fleet");
            // The group exists, empty, before the job.
            ask_cloud(
                "cloud-group-join",
                &[("group", &group), ("thing", crate::NEIGHBOUR)],
            )?;
            create(
                &id,
                &me.thing,
                "update",
                &[("group", &group), ("continuous", "1")],
            )?;
            let (in_progress, queued) = accepted(d.list(), "get")?;
            check!(
                in_progress.is_empty() && queued.is_empty(),
                "before joining: {:?} {:?}",
                in_progress,
                queued
            );
            ask_cloud(
                "cloud-group-join",
                &[("group", &group), ("thing", &me.thing)],
            )?;
            let next = d.next_notified()?.map(|e| (e.id, e.operation));
            check_eq!(next, Some((id, Some("update".to_string()))));
            Ok(())
        })
    })
}

fn unknown_job_is_not_found() -> TestResult {
    in_cloud_task(|| {
        with_jobs!(false, |d, _me| {
            refused(d.describe("no-such-job"), Code::ResourceNotFound)?;
            refused(
                d.update("no-such-job", Status::Succeeded, None, None),
                Code::ResourceNotFound,
            )
            .map(|_| ())
        })
    })
}
