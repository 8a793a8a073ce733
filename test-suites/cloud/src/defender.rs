//! Device Defender through fqp-defender: the device's metrics from fqp-net reported in JSON
//! and in CBOR with short names and accepted; the figures held against what the lab's cloud
//! saw of the connection (and a report that under-reports caught); bad reports rejected with
//! the cloud's reason; reports on the agent's period; a listening port a security profile
//! does not allow raising an alarm that clears once the port is closed; and a quarantining
//! profile cutting the device off and refusing it.

use crate::{ask_cloud, in_cloud_task, setting, Identity, Inbox, ANSWER_MS};
use alloc::format;
use alloc::string::String;
use fqp_defender::{Agent, Encoding, Error, Gathered, Metrics, Names, Stats};
use fqp_mqtt::{Client, Message};
use fqp_net::TcpStream;
use fqp_testkit::{check, check_eq, group, log, Failure, TestResult};

group!(pub DEFENDER, "defender", [
    json_report_is_accepted => 30_000,
    cbor_report_with_short_names_is_accepted => 30_000,
    reported_figures_match_what_the_lab_saw => 30_000,
    under_reporting_is_caught_by_the_lab => 30_000,
    bad_reports_are_rejected_with_the_reason => 30_000,
    reports_follow_the_agents_period => 30_000,
    a_listening_port_not_allowed_raises_an_alarm => 30_000,
    a_quarantined_device_is_cut_off_and_refused => 30_000,
]);

/// A report id no earlier report of this thing used: the device's clock in microseconds.
fn fresh_id() -> u64 {
    fqp_kernel::time::uptime_us()
}

/// Sends the device's metrics as collected now; the accepted report's id.
fn report_now<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    agent: &mut Agent<'_>,
) -> Result<u64, Error> {
    let mut g = Gathered::default();
    fqp_defender::collect(&mut g);
    let mut buf = [0u8; 1024];
    agent.report(c, inbox, &g.metrics(), &mut buf, ANSWER_MS)
}

/// Runs the block with a connection of this device's thing and an agent subscribed to its
/// answers: `$c` the client, `$inbox`, `$agent`, `$me`.
macro_rules! with_agent {
    ($encoding:expr, $names:expr, |$c:ident, $inbox:ident, $agent:ident, $me:ident| $body:block) => {{
        let $me = Identity::provisioned()?;
        let $inbox = Inbox::new();
        let (mut tx, mut rx) = (alloc::vec![0u8; 2048], alloc::vec![0u8; 2048]);
        let mut $c = crate::client(&mut tx, &mut rx, &$inbox);
        crate::connect(&mut $c, &$me)?;
        let mut $agent = Agent::new(&$me.thing, $encoding, $names, 500, fresh_id());
        $agent
            .subscribe(&mut $c)
            .map_err(|e| fqp_testkit::fail!("subscribe to the report answers: {:?}", e))?;
        $body
    }};
}

fn accepted(r: Result<u64, Error>, what: &str) -> Result<u64, Failure> {
    r.map_err(|e| fqp_testkit::fail!("{}: {:?}", what, e))
}

fn json_report_is_accepted() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Json, Names::Long, |c, inbox, agent, _me| {
            let id = accepted(report_now(&mut c, &inbox, &mut agent), "the report")?;
            log!("report {} accepted", id);
            Ok(())
        })
    })
}

fn cbor_report_with_short_names_is_accepted() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Cbor, Names::Short, |c, inbox, agent, _me| {
            accepted(report_now(&mut c, &inbox, &mut agent), "the CBOR report")?;
            Ok(())
        })
    })
}

fn reported_figures_match_what_the_lab_saw() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Json, Names::Short, |c, inbox, agent, me| {
            let mut g = Gathered::default();
            fqp_defender::collect(&mut g);
            let m = g.metrics();
            check!(m.stats.is_some(), "fqp-net gave no interface counters");
            check!(
                !m.connections.is_empty(),
                "fqp-net lists no connection, yet one is open"
            );
            check!(
                m.udp_ports.contains(&68),
                "the DHCP client's port 68 is not listed"
            );
            let mut buf = [0u8; 1024];
            accepted(
                agent.report(&mut c, &inbox, &m, &mut buf, ANSWER_MS),
                "the report",
            )?;
            ask_cloud("cloud-defender-check", &[("thing", &me.thing)])
        })
    })
}

fn under_reporting_is_caught_by_the_lab() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Json, Names::Long, |c, inbox, agent, me| {
            // A report that claims almost nothing went out, and no connection.
            let m = Metrics {
                stats: Some(Stats {
                    bytes_in: 1,
                    bytes_out: 1,
                    packets_in: 1,
                    packets_out: 1,
                }),
                ..Default::default()
            };
            let mut buf = [0u8; 512];
            accepted(
                agent.report(&mut c, &inbox, &m, &mut buf, ANSWER_MS),
                "the report",
            )?;
            match fqp_testkit::ask("cloud-defender-check", &[("thing", &me.thing)], 5_000) {
                Err(f) => {
                    let why = format!("{:?}", f);
                    log!("the lab refused it: {}", why);
                    check!(
                        why.contains("under-reports") && why.contains("bytes out 1 <"),
                        "refused for another reason: {}",
                        why
                    );
                    Ok(())
                }
                Ok(()) => Err(fqp_testkit::fail!(
                    "the lab took a report that under-reports"
                )),
            }
        })
    })
}

/// Publishes `body` as a JSON report and returns the cloud's refusal code.
fn refusal_of<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    inbox: &Inbox,
    agent: &mut Agent<'_>,
    id: u64,
    body: &[u8],
) -> Result<String, Failure> {
    match agent.send(c, inbox, id, body, ANSWER_MS) {
        Err(Error::Rejected(r)) => {
            log!("{}: {}", r.code.as_str(), r.message.as_str());
            check!(
                !r.message.as_str().is_empty(),
                "a refusal without a message"
            );
            Ok(String::from(r.code.as_str()))
        }
        other => Err(fqp_testkit::fail!("expected a refusal, got {:?}", other)),
    }
}

fn bad_reports_are_rejected_with_the_reason() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Json, Names::Long, |c, inbox, agent, _me| {
            let id = accepted(report_now(&mut c, &inbox, &mut agent), "a good report")?;
            let next = id + 1000;
            let unknown = format!(
                r#"{{"header":{{"report_id":{next},"version":"1.0"}},"metrics":{{"cpu_load":{{"t":3}}}}}}"#
            );
            let version = format!(r#"{{"header":{{"report_id":{next},"version":"2.0"}}}}"#);
            let again = format!(r#"{{"header":{{"report_id":{id},"version":"1.0"}}}}"#);
            let cases: [(u64, &[u8], &str); 4] = [
                (0, b"{\"header\":{\"report_id\"", "MalformedPayload"),
                (next, unknown.as_bytes(), "InvalidPayload"),
                (next, version.as_bytes(), "InvalidPayload"),
                (id, again.as_bytes(), "DuplicateReportId"),
            ];
            for (rid, body, code) in cases {
                check_eq!(refusal_of(&mut c, &inbox, &mut agent, rid, body)?, code);
            }
            Ok(())
        })
    })
}

fn reports_follow_the_agents_period() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Cbor, Names::Short, |c, inbox, agent, _me| {
            let start = crate::ms();
            let mut sent: [(u64, u64); 3] = [(0, 0); 3];
            let mut n = 0;
            while n < 3 && crate::ms() - start < 5_000 {
                if agent.due(crate::ms()) {
                    let id = accepted(report_now(&mut c, &inbox, &mut agent), "a report")?;
                    sent[n] = (id, crate::ms());
                    n += 1;
                }
                c.poll(50)
                    .map_err(|e| fqp_testkit::fail!("poll: {:?}", e))?;
            }
            check_eq!(n, 3);
            check!(
                sent[1].0 == sent[0].0 + 1 && sent[2].0 == sent[1].0 + 1,
                "report ids {:?}",
                sent
            );
            for w in sent.windows(2) {
                let gap = w[1].1 - w[0].1;
                check!(
                    (500..2_000).contains(&gap),
                    "reports {} ms apart on a 500 ms period",
                    gap
                );
            }
            Ok(())
        })
    })
}

/// Puts this device's thing in a group of its own covered by a profile with `behaviors`
/// (JSON) quarantining or not; the group's name.
fn profiled(
    me: &Identity,
    tag: &str,
    behaviors: &str,
    quarantine: bool,
) -> Result<String, Failure> {
    let group = format!("{}-{tag}-{}", me.thing, fqp_kernel::time::uptime_us());
    ask_cloud(
        "cloud-group-join",
        &[("group", &group), ("thing", &me.thing)],
    )?;
    let body = format!(
        r#"{{"name":"{group}","targets":["{group}"],"quarantine":{quarantine},"behaviors":{behaviors}}}"#
    );
    ask_cloud("cloud-defender-profile", &[("body", &body)])?;
    Ok(group)
}

/// The alarms of this device's thing raised by profile `profile` (the host's JSON list).
fn alarms_of(me: &Identity, profile: &str) -> Result<String, Failure> {
    ask_cloud("cloud-defender-alarms", &[("thing", &me.thing)])?;
    let all = setting("alarms")?;
    Ok(all
        .split("},{")
        .filter(|a| a.contains(&format!(r#""profile":"{profile}""#)))
        .collect::<alloc::vec::Vec<_>>()
        .join("},{"))
}

fn a_listening_port_not_allowed_raises_an_alarm() -> TestResult {
    in_cloud_task(|| {
        with_agent!(Encoding::Json, Names::Long, |c, inbox, agent, me| {
            let behaviors =
                r#"[{"name":"no-listeners","metric":"listening_tcp_ports","allowed":[]}]"#;
            let group = profiled(&me, "ports", behaviors, false)?;
            let listener = fqp_net::TcpListener::bind(8080)
                .map_err(|e| fqp_testkit::fail!("listen on 8080: {:?}", e))?;
            accepted(report_now(&mut c, &inbox, &mut agent), "the report")?;
            let raised = alarms_of(&me, &group)?;
            drop(listener);
            accepted(report_now(&mut c, &inbox, &mut agent), "the next report")?;
            let after = alarms_of(&me, &group)?;
            ask_cloud(
                "cloud-group-leave",
                &[("group", &group), ("thing", &me.thing)],
            )?;
            check!(
                raised.contains(r#""behavior":"no-listeners""#) && raised.contains("[8080]"),
                "alarms while 8080 listened: {}",
                raised
            );
            check!(
                after.is_empty(),
                "the alarm stayed once 8080 closed: {}",
                after
            );
            Ok(())
        })
    })
}

fn a_quarantined_device_is_cut_off_and_refused() -> TestResult {
    in_cloud_task(|| {
        let me = Identity::provisioned()?;
        let behaviors = r#"[{"name":"silent","metric":"bytes_out","max":1}]"#;
        let group = profiled(&me, "quarantine", behaviors, true)?;
        let outcome = quarantine_outcome(&me);
        // Released whatever happened, so that the device can use the cloud again.
        ask_cloud("cloud-quarantine-release", &[("thing", &me.thing)])?;
        ask_cloud(
            "cloud-group-leave",
            &[("group", &group), ("thing", &me.thing)],
        )?;
        outcome
    })
}

/// Reports (breaking the profile), then checks the connection ends and a new one is refused.
fn quarantine_outcome(me: &Identity) -> TestResult {
    let inbox = Inbox::new();
    let (mut tx, mut rx) = (alloc::vec![0u8; 2048], alloc::vec![0u8; 2048]);
    let mut c = crate::client(&mut tx, &mut rx, &inbox);
    crate::connect(&mut c, me)?;
    let mut agent = Agent::new(&me.thing, Encoding::Json, Names::Short, 500, fresh_id());
    agent
        .subscribe(&mut c)
        .map_err(|e| fqp_testkit::fail!("subscribe: {:?}", e))?;
    accepted(report_now(&mut c, &inbox, &mut agent), "the report")?;
    let start = crate::ms();
    let cut = loop {
        match c.poll(100) {
            Err(_) => break true,
            Ok(()) if crate::ms() - start > 3_000 => break false,
            Ok(()) => {}
        }
    };
    check!(cut, "the quarantined device's connection stayed open");
    match crate::connect_as(&mut c, &me.thing, &me.thing, &me.token) {
        Err(Ok(fqp_mqtt::Error::Refused(code))) => check_eq!(code, 5),
        other => {
            return Err(fqp_testkit::fail!(
                "a quarantined device connecting: {:?}",
                other.map_err(|e| e.ok())
            ))
        }
    }
    Ok(())
}
