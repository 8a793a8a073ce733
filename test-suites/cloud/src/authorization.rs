//! The policy, as the device meets it: a connection is its own thing's, by client id and
//! credentials; it may subscribe and publish only under its own `$aws/things/<thing>/`. Each
//! test reaches for the neighbour's shadow, jobs or streams (a thing the host keeps, whose
//! shadow holds a secret) and must be refused — a subscription with SUBACK 0x80, a publish by
//! the connection's end — and the host confirms that nothing of the neighbour's changed.

use crate::{ask_cloud, client, connect_as, in_cloud_task, setting, Identity, Inbox, NEIGHBOUR};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use fqp_mqtt::{Client, Error, Message, QoS};
use fqp_net::TcpStream;
use fqp_testkit::{check, check_eq, group, Failure, TestResult};

group!(pub AUTHORIZATION, "authorization", [
    another_things_shadow_cannot_be_read => 30_000,
    another_things_shadow_cannot_be_changed => 30_000,
    another_things_jobs_cannot_be_reached => 30_000,
    another_things_streams_cannot_be_reached => 30_000,
    wildcards_reaching_other_things_are_refused => 30_000,
    another_things_client_id_is_refused => 30_000,
    a_wrong_token_is_refused => 30_000,
]);

/// Whether the cloud refuses a subscription to `filter`.
fn subscription_refused<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    filter: &str,
) -> Result<bool, Failure> {
    match c.subscribe(&[(filter, QoS::AtLeastOnce)]) {
        Err(Error::SubscriptionRefused) => Ok(true),
        Ok(g) if g[0].is_some() => Ok(false),
        other => Err(fqp_testkit::fail!("SUBSCRIBE {}: {:?}", filter, other)),
    }
}

/// Publishes on `topic` and checks that the cloud ends the connection for it.
fn publish_ends_the_connection<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    topic: &str,
    payload: &[u8],
) -> TestResult {
    c.publish(topic, payload, QoS::AtMostOnce, false)
        .map_err(|e| fqp_testkit::fail!("publish {}: {:?}", topic, e))?;
    let start = crate::ms();
    while crate::ms() - start < 3_000 {
        match c.poll(200) {
            Ok(()) => {}
            Err(Error::Transport(fqp_transport::Error::Closed)) => return Ok(()),
            Err(e) => return Err(fqp_testkit::fail!("after publishing {}: {:?}", topic, e)),
        }
    }
    Err(fqp_testkit::fail!(
        "the cloud kept the connection after a publish on {}",
        topic
    ))
}

/// The neighbour's shadow as the cloud holds it: unchanged, its secret still 42.
fn neighbour_untouched() -> TestResult {
    ask_cloud("cloud-shadow-get", &[("thing", NEIGHBOUR)])?;
    let held = setting("shadow_document")?;
    check!(
        held.contains(r#""reported":{"secret":42}"#) && held.contains(r#""version":1"#),
        "the neighbour's shadow changed: {}",
        held
    );
    Ok(())
}

fn another_things_shadow_cannot_be_read() -> TestResult {
    in_cloud_task(|| {
        with_connection!(|c, _inbox, _me| {
            let base = format!("$aws/things/{NEIGHBOUR}/shadow");
            for answer in ["get/accepted", "update/delta", "update/documents", "get/+"] {
                let filter = format!("{base}/{answer}");
                check!(
                    subscription_refused(&mut c, &filter)?,
                    "{} was granted",
                    filter
                );
            }
            publish_ends_the_connection(&mut c, &format!("{base}/get"), b"{}")?;
            neighbour_untouched()
        })
    })
}

fn another_things_shadow_cannot_be_changed() -> TestResult {
    in_cloud_task(|| {
        let base = format!("$aws/things/{NEIGHBOUR}/shadow");
        let change: &[u8] = br#"{"state":{"reported":{"secret":0}}}"#;
        with_connection!(|c, _inbox, _me| {
            publish_ends_the_connection(&mut c, &format!("{base}/update"), change)?;
        });
        neighbour_untouched()?;
        with_connection!(|c, _inbox, _me| {
            publish_ends_the_connection(&mut c, &format!("{base}/delete"), b"{}")?;
        });
        neighbour_untouched()
    })
}

fn another_things_jobs_cannot_be_reached() -> TestResult {
    in_cloud_task(|| {
        with_connection!(|c, _inbox, _me| {
            let base = format!("$aws/things/{NEIGHBOUR}/jobs");
            for answer in ["notify", "notify-next", "start-next/accepted", "+/get/+"] {
                let filter = format!("{base}/{answer}");
                check!(
                    subscription_refused(&mut c, &filter)?,
                    "{} was granted",
                    filter
                );
            }
            publish_ends_the_connection(&mut c, &format!("{base}/start-next"), b"{}")
        })
    })
}

fn another_things_streams_cannot_be_reached() -> TestResult {
    in_cloud_task(|| {
        with_connection!(|c, _inbox, _me| {
            let base = format!("$aws/things/{NEIGHBOUR}/streams");
            for filter in ["+/data/cbor", "firmware/data/json", "#"] {
                let filter = format!("{base}/{filter}");
                check!(
                    subscription_refused(&mut c, &filter)?,
                    "{} was granted",
                    filter
                );
            }
            publish_ends_the_connection(&mut c, &format!("{base}/firmware/get/cbor"), &[0xa0])
        })
    })
}

fn wildcards_reaching_other_things_are_refused() -> TestResult {
    in_cloud_task(|| {
        with_connection!(|c, _inbox, me| {
            for filter in ["#", "$aws/#", "$aws/things/+/shadow/get/accepted", "+/+"] {
                check!(
                    subscription_refused(&mut c, filter)?,
                    "{} was granted",
                    filter
                );
            }
            let own: String = format!("$aws/things/{}/shadow/#", me.thing);
            check!(
                !subscription_refused(&mut c, &own)?,
                "its own {} was refused",
                own
            );
            Ok(())
        })
    })
}

/// How many connections of this device's thing the cloud refused so far.
fn refusals(thing: &str) -> Result<u64, Failure> {
    ask_cloud("cloud-traffic", &[("thing", thing)])?;
    let traffic = setting("traffic")?;
    traffic
        .split_once("\"refused\":")
        .and_then(|(_, rest)| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| fqp_testkit::fail!("no refused count in {}", traffic))
}

fn another_things_client_id_is_refused() -> TestResult {
    in_cloud_task(|| {
        let me = Identity::provisioned()?;
        let inbox = Inbox::new();
        let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
        let mut c = client(&mut tx, &mut rx, &inbox);
        let before = refusals(NEIGHBOUR)?;
        match connect_as(&mut c, NEIGHBOUR, &me.thing, &me.token) {
            Err(Ok(Error::Refused(code))) => check_eq!(code, 5),
            other => {
                return Err(fqp_testkit::fail!(
                    "connecting as the neighbour: {:?}",
                    other.map_err(|e| e.ok())
                ))
            }
        }
        check_eq!(refusals(NEIGHBOUR)?, before + 1);
        Ok(())
    })
}

fn a_wrong_token_is_refused() -> TestResult {
    in_cloud_task(|| {
        let me = Identity::provisioned()?;
        let inbox = Inbox::new();
        let (mut tx, mut rx) = (vec![0u8; 1024], vec![0u8; 1024]);
        let mut c = client(&mut tx, &mut rx, &inbox);
        let before = refusals(&me.thing)?;
        let wrong: String = me.token.chars().rev().collect();
        match connect_as(&mut c, &me.thing, &me.thing, &wrong) {
            Err(Ok(Error::Refused(code))) => check_eq!(code, 4),
            other => {
                return Err(fqp_testkit::fail!(
                    "a wrong token: {:?}",
                    other.map_err(|e| e.ok())
                ))
            }
        }
        check_eq!(refusals(&me.thing)?, before + 1);
        Ok(())
    })
}
