//! Device Shadow through fqp-shadow: a shadow that does not exist, state reported and read
//! back (and confirmed on the cloud's side), a delta heard while connected and one found on
//! reconnecting after it was missed, optimistic locking, named shadows, the documents
//! message, versions across a delete, and each refusal: 400 for every malformed request, 413
//! for a document over 8 KiB, 429 past ten requests in flight.

use crate::{ask_cloud, client, connect, in_cloud_task, Identity, Inbox, ANSWER_MS};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use fqp_mqtt::{Client, Message, QoS};
use fqp_net::TcpStream;
use fqp_shadow::{doc, Answer, Op, Rejection, Shadow, State, MAX_TOPIC};
use fqp_testkit::{check, check_eq, group, log, Failure, TestResult};
use serde::{Deserialize, Serialize};

group!(pub SHADOW, "shadow", [
    get_of_a_missing_shadow_is_rejected_404 => 30_000,
    reported_state_reaches_the_cloud => 30_000,
    delta_reaches_a_connected_device => 30_000,
    delta_missed_while_offline_is_found_on_reconnect => 30_000,
    stale_version_is_rejected_409 => 30_000,
    named_shadows_are_separate_documents => 30_000,
    documents_tell_previous_and_current => 30_000,
    delete_keeps_the_version_counting => 30_000,
    malformed_requests_are_rejected_400 => 30_000,
    oversized_document_is_rejected_413 => 30_000,
    requests_beyond_ten_in_flight_are_rejected_429 => 30_000,
]);

/// The state the tests keep: a lamp. An absent field is left out of an update (so the
/// update leaves that key alone).
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy, Default)]
struct Lamp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
}

const ON: Lamp = Lamp {
    on: Some(true),
    level: None,
};
const OFF: Lamp = Lamp {
    on: Some(false),
    level: None,
};

/// What a request came to: the cloud's answer, or its refusal.
type Outcome<T> = Result<Result<T, Rejection>, Failure>;

fn outcome<T>(r: Result<T, fqp_shadow::Error>, what: &str) -> Outcome<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(fqp_shadow::Error::Rejected(why)) => Ok(Err(why)),
        Err(e) => Err(fqp_testkit::fail!("{}: {:?}", what, e)),
    }
}

/// Runs the block with a connection of this device's thing subscribed to its classic
/// shadow's answers: `$c`, `$inbox`, `$me` as `with_connection!`, `$s` the shadow.
macro_rules! with_shadow {
    (|$c:ident, $inbox:ident, $me:ident, $s:ident| $body:block) => {
        with_connection!(|$c, $inbox, $me| {
            let $s = Shadow::classic(&$me.thing);
            subscribe(&mut $c, &$s)?;
            $body
        })
    };
}

/// Gets `s`: its version and sections.
fn get<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
) -> Outcome<(u64, State<Lamp>)> {
    let mut body = [0u8; 64];
    let n = doc::request(&mut body, "get").map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    let r = s.request(c, inbox, Op::Get, &body[..n], ANSWER_MS, |p| {
        doc::document::<Lamp>(p)
    });
    match outcome(r, "get")? {
        Ok(Ok(d)) => Ok(Ok(d)),
        Ok(Err(e)) => Err(fqp_testkit::fail!("the get's answer: {:?}", e)),
        Err(why) => Ok(Err(why)),
    }
}

fn update<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
    (desired, reported): (Option<&Lamp>, Option<&Lamp>),
    version: Option<u64>,
) -> Outcome<u64> {
    let mut body = [0u8; 160];
    let n = doc::update(&mut body, desired, reported, version, "update")
        .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    let r = s.request(c, inbox, Op::Update, &body[..n], ANSWER_MS, doc::version);
    match outcome(r, "update")? {
        Ok(Some(v)) => Ok(Ok(v)),
        Ok(None) => Err(fqp_testkit::fail!("the update's answer has no version")),
        Err(why) => Ok(Err(why)),
    }
}

fn delete<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
) -> Outcome<()> {
    let mut body = [0u8; 64];
    let n = doc::request(&mut body, "delete").map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    outcome(
        s.request(c, inbox, Op::Delete, &body[..n], ANSWER_MS, |_| ()),
        "delete",
    )
}

fn subscribe<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    s: &Shadow<'_>,
) -> TestResult {
    s.subscribe(c)
        .map_err(|e| fqp_testkit::fail!("subscribe to the shadow's answers: {:?}", e))
}

/// Starts from no shadow (a leftover of an earlier attempt is deleted).
fn fresh<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
) -> TestResult {
    match delete(c, inbox, s)? {
        Ok(()) => Ok(()),
        Err(r) if r.code == 404 => Ok(()),
        Err(r) => Err(fqp_testkit::fail!("delete: {:?}", r)),
    }
}

/// Fails unless `o` is a refusal with `code`; its message.
fn refused<T: core::fmt::Debug>(o: Outcome<T>, code: u16) -> Result<Rejection, Failure> {
    match o? {
        Err(r) if r.code == code => Ok(r),
        other => Err(fqp_testkit::fail!(
            "expected a {} refusal, got {:?}",
            code,
            other
        )),
    }
}

fn accepted<T: core::fmt::Debug>(o: Outcome<T>, what: &str) -> Result<T, Failure> {
    o?.map_err(|r| fqp_testkit::fail!("{} was refused: {:?}", what, r))
}

fn get_of_a_missing_shadow_is_rejected_404() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            let r = refused(get(&mut c, &inbox, &s), 404)?;
            log!("404: {}", r.message());
            check!(
                r.message().contains("No shadow"),
                "message {:?}",
                r.message()
            );
            Ok(())
        })
    })
}

fn reported_state_reaches_the_cloud() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            let lamp = Lamp {
                on: Some(false),
                level: Some(7),
            };
            let t0 = crate::ms();
            let v = accepted(
                update(&mut c, &inbox, &s, (None, Some(&lamp)), None),
                "update",
            )?;
            fqp_testkit::metric("shadow_update_round_trip", crate::ms() - t0, "ms");
            let (got_v, state) = accepted(get(&mut c, &inbox, &s), "get")?;
            check_eq!(got_v, v);
            check_eq!(state.reported, Some(lamp));
            check_eq!(state.desired, None);
            // The cloud's own view, from the host.
            ask_cloud("cloud-shadow-get", &[("thing", &me.thing)])?;
            let held = crate::setting("shadow_document")?;
            check!(
                held.contains(r#""reported":{"level":7,"on":false}"#)
                    || held.contains(r#""reported":{"on":false,"level":7}"#),
                "the cloud holds {}",
                held
            );
            Ok(())
        })
    })
}

/// Polls `c` until a delta for `s` arrives (up to `ANSWER_MS`): its version and state.
fn wait_delta<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
) -> Result<(u64, Lamp), Failure> {
    s.wait(c, inbox, Answer::Delta, ANSWER_MS, |p| {
        doc::delta::<Lamp>(p)
    })
    .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?
    .ok_or_else(|| fqp_testkit::fail!("no delta within {} ms", ANSWER_MS))?
    .map_err(|e| fqp_testkit::fail!("the delta: {:?}", e))
}

/// The next documents message for `s` (up to `ANSWER_MS`): the previous document's version
/// and reported section, and the current one's.
#[allow(clippy::type_complexity)] // two documents, each a version and a section
fn next_documents<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
) -> Result<(Option<(u64, Option<Lamp>)>, (u64, Option<Lamp>)), Failure> {
    let read = |p: &[u8]| {
        doc::documents::<Lamp>(p)
            .map(|(p, (v, now))| (p.map(|(pv, ps)| (pv, ps.reported)), (v, now.reported)))
    };
    s.wait(c, inbox, Answer::Documents, ANSWER_MS, read)
        .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?
        .ok_or_else(|| fqp_testkit::fail!("no documents message within {} ms", ANSWER_MS))?
        .map_err(|e| fqp_testkit::fail!("documents: {:?}", e))
}

fn delta_reaches_a_connected_device() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            accepted(
                update(&mut c, &inbox, &s, (None, Some(&OFF)), None),
                "report",
            )?;
            let body = r#"{"state":{"desired":{"on":true}}}"#;
            ask_cloud(
                "cloud-shadow-update",
                &[("thing", &me.thing), ("body", body)],
            )?;
            let (v, wanted) = wait_delta(&mut c, &inbox, &s)?;
            check_eq!(wanted, ON);
            // The device does what is asked and says so: nothing is left to do.
            let now = accepted(
                update(&mut c, &inbox, &s, (None, Some(&ON)), None),
                "report",
            )?;
            check_eq!(now, v + 1);
            let (_, state) = accepted(get(&mut c, &inbox, &s), "get")?;
            check_eq!(state.delta, None);
            Ok(())
        })
    })
}

fn delta_missed_while_offline_is_found_on_reconnect() -> TestResult {
    in_cloud_task(|| {
        let me = Identity::provisioned()?;
        {
            with_shadow!(|c, inbox, me, s| {
                fresh(&mut c, &inbox, &s)?;
                accepted(
                    update(&mut c, &inbox, &s, (None, Some(&OFF)), None),
                    "report",
                )?;
                c.disconnect()
                    .map_err(|e| fqp_testkit::fail!("disconnect: {:?}", e))?;
            })
        }
        // Offline: the operator wants the lamp on and dimmed.
        let body = r#"{"state":{"desired":{"on":true,"level":3}}}"#;
        ask_cloud(
            "cloud-shadow-update",
            &[("thing", &me.thing), ("body", body)],
        )?;
        with_shadow!(|c, inbox, me, s| {
            let (_, state) = accepted(get(&mut c, &inbox, &s), "get after reconnecting")?;
            let missed = Lamp {
                on: Some(true),
                level: Some(3),
            };
            check_eq!(state.delta, Some(missed));
            accepted(
                update(&mut c, &inbox, &s, (None, Some(&missed)), None),
                "report",
            )?;
            let (_, state) = accepted(get(&mut c, &inbox, &s), "get")?;
            check_eq!(state.delta, None);
            Ok(())
        })
    })
}

fn stale_version_is_rejected_409() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            let v = accepted(
                update(&mut c, &inbox, &s, (None, Some(&OFF)), None),
                "report",
            )?;
            let stale = update(&mut c, &inbox, &s, (None, Some(&ON)), Some(v + 5));
            let r = refused(stale, 409)?;
            check!(
                r.message().contains("conflict"),
                "message {:?}",
                r.message()
            );
            let (still, state) = accepted(get(&mut c, &inbox, &s), "get")?;
            check_eq!((still, state.reported), (v, Some(OFF)));
            let next = update(&mut c, &inbox, &s, (None, Some(&ON)), Some(v));
            check_eq!(accepted(next, "the update at the current version")?, v + 1);
            Ok(())
        })
    })
}

fn named_shadows_are_separate_documents() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            let cfg = Shadow::named(&me.thing, "config");
            cfg.subscribe(&mut c)
                .map_err(|e| fqp_testkit::fail!("subscribe: {:?}", e))?;
            fresh(&mut c, &inbox, &s)?;
            fresh(&mut c, &inbox, &cfg)?;
            let dim = Lamp {
                on: None,
                level: Some(2),
            };
            check_eq!(
                accepted(
                    update(&mut c, &inbox, &cfg, (None, Some(&dim)), None),
                    "named"
                )?,
                1
            );
            refused(get(&mut c, &inbox, &s), 404)?;
            let (_, state) = accepted(get(&mut c, &inbox, &cfg), "get named")?;
            check_eq!(state.reported, Some(dim));
            accepted(delete(&mut c, &inbox, &cfg), "delete named")?;
            refused(get(&mut c, &inbox, &cfg), 404)?;
            Ok(())
        })
    })
}

fn documents_tell_previous_and_current() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            s.subscribe_documents(&mut c)
                .map_err(|e| fqp_testkit::fail!("subscribe to documents: {:?}", e))?;
            fresh(&mut c, &inbox, &s)?;
            let first = accepted(update(&mut c, &inbox, &s, (None, Some(&OFF)), None), "1")?;
            // The first update's documents message: no previous document.
            check_eq!(
                next_documents(&mut c, &inbox, &s)?,
                (None, (first, Some(OFF)))
            );
            let second = accepted(update(&mut c, &inbox, &s, (None, Some(&ON)), None), "2")?;
            check_eq!(
                next_documents(&mut c, &inbox, &s)?,
                (Some((first, Some(OFF))), (second, Some(ON)))
            );
            Ok(())
        })
    })
}

fn delete_keeps_the_version_counting() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            let v = accepted(
                update(&mut c, &inbox, &s, (None, Some(&OFF)), None),
                "report",
            )?;
            accepted(delete(&mut c, &inbox, &s), "delete")?;
            refused(get(&mut c, &inbox, &s), 404)?;
            refused(delete(&mut c, &inbox, &s), 404)?;
            let again = accepted(update(&mut c, &inbox, &s, (None, Some(&ON)), None), "again")?;
            check!(again > v, "version {} after {} and a delete", again, v);
            Ok(())
        })
    })
}

/// Publishes `body` on the update topic and waits for any rejection there (a malformed
/// request may carry no token to match): its code and message.
fn raw_update<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    s: &Shadow<'_>,
    body: &[u8],
) -> Result<Rejection, Failure> {
    let mut topic = [0u8; MAX_TOPIC];
    let t = s
        .topic(Op::Update, None, &mut topic)
        .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    c.publish(t, body, QoS::AtMostOnce, false)
        .map_err(|e| fqp_testkit::fail!("publish: {:?}", e))?;
    let got = c
        .wait_for(inbox, ANSWER_MS, |topic, p| match Shadow::parse(topic)? {
            (_, Op::Update, Some(Answer::Rejected)) => Some(doc::rejection(p)),
            (_, Op::Update, Some(Answer::Accepted)) => Some(None),
            _ => None,
        })
        .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
    match got {
        Some(Some(r)) => Ok(r),
        Some(None) => Err(fqp_testkit::fail!("the cloud accepted a bad update")),
        None => Err(fqp_testkit::fail!("no answer to a bad update")),
    }
}

fn malformed_requests_are_rejected_400() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            let long_token = format!(
                r#"{{"state":{{"reported":{{}}}},"clientToken":"{}"}}"#,
                "t".repeat(65)
            );
            let cases: [(&[u8], &str); 5] = [
                (b"{\"state\":", "bad JSON"),
                (b"[1,2]", "not an object"),
                (br#"{"clientToken":"no-state"}"#, "no state"),
                (
                    br#"{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#,
                    "nested deeper than 6",
                ),
                (long_token.as_bytes(), "clientToken over 64 bytes"),
            ];
            for (body, what) in cases {
                let r = raw_update(&mut c, &inbox, &s, body)?;
                log!("{}: {:?}", what, r);
                check!(r.code == 400, "{}: {:?}", what, r);
                check!(!r.message().is_empty(), "{}: no message", what);
            }
            Ok(())
        })
    })
}

fn oversized_document_is_rejected_413() -> TestResult {
    in_cloud_task(|| {
        let me = Identity::provisioned()?;
        let inbox = Inbox::new();
        let (mut tx, mut rx) = (vec![0u8; 10 * 1024], vec![0u8; 2048]);
        let mut c = client(&mut tx, &mut rx, &inbox);
        connect(&mut c, &me)?;
        let s = Shadow::classic(&me.thing);
        s.subscribe(&mut c)
            .map_err(|e| fqp_testkit::fail!("subscribe: {:?}", e))?;
        let mut body: Vec<u8> = Vec::with_capacity(9 * 1024);
        body.extend_from_slice(br#"{"state":{"reported":{"blob":""#);
        body.resize(body.len() + 8 * 1024 + 100, b'x');
        body.extend_from_slice(br#""}},"clientToken":"big"}"#);
        let r = outcome(
            s.request(&mut c, &inbox, Op::Update, &body, ANSWER_MS, |_| ()),
            "update",
        );
        let r = refused(r, 413)?;
        log!("413: {}", r.message());
        Ok(())
    })
}

fn requests_beyond_ten_in_flight_are_rejected_429() -> TestResult {
    in_cloud_task(|| {
        with_shadow!(|c, inbox, me, s| {
            fresh(&mut c, &inbox, &s)?;
            ask_cloud("cloud-hold", &[("thing", &me.thing)])?;
            let sent = send_twelve(&mut c, &s);
            let early = sent.and_then(|()| update_answers(&mut c, &inbox, 2));
            // Released whatever happened, so that the cloud answers the next tests.
            ask_cloud("cloud-release", &[("thing", &me.thing)])?;
            check_eq!(early?, [(false, 429, Some(10)), (false, 429, Some(11))]);
            let answers = update_answers(&mut c, &inbox, 10)?;
            check_eq!(answers.len(), 10);
            check!(
                answers.iter().all(|(ok, _, _)| *ok) && answers.windows(2).all(|w| w[1].1 > w[0].1),
                "after the release: {:?}",
                answers
            );
            Ok(())
        })
    })
}

/// Publishes twelve updates at once, tokens `n0` to `n11`.
fn send_twelve<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    s: &Shadow<'_>,
) -> TestResult {
    let mut topic = [0u8; MAX_TOPIC];
    let t = s
        .topic(Op::Update, None, &mut topic)
        .map_err(|e| fqp_testkit::fail!("{:?}", e))?;
    for i in 0..12u8 {
        let body = format!(r#"{{"state":{{"reported":{{"level":{i}}}}},"clientToken":"n{i}"}}"#);
        c.publish(t, body.as_bytes(), QoS::AtMostOnce, false)
            .map_err(|e| fqp_testkit::fail!("publish {}: {:?}", i, e))?;
    }
    Ok(())
}

/// The next `n` answers to updates (each within `ANSWER_MS`): accepted or not, the version
/// or the refusal's code, and the number in the request's token (`n<i>`).
fn update_answers<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    n: usize,
) -> Result<Vec<(bool, u64, Option<u8>)>, Failure> {
    let mut out = Vec::new();
    while out.len() < n {
        let got = c
            .wait_for(inbox, ANSWER_MS, |topic, p| {
                let (_, Op::Update, Some(answer)) = Shadow::parse(topic)? else {
                    return None;
                };
                let token =
                    doc::client_token(p).and_then(|t| t.strip_prefix('n')?.parse::<u8>().ok());
                match answer {
                    Answer::Accepted => Some((true, doc::version(p)?, token)),
                    Answer::Rejected => Some((false, u64::from(doc::rejection(p)?.code), token)),
                    _ => None,
                }
            })
            .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
        match got {
            Some(a) => out.push(a),
            None => break,
        }
    }
    Ok(out)
}
