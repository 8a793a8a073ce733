//! Which service a message on the broker is for: the topics a device publishes its requests
//! on (`$aws/things/<t>/shadow[/name/<n>]/{get,update,delete}`, `$aws/things/<t>/jobs/…`,
//! `$aws/things/<t>/streams/<s>/get/cbor`),
//! told apart from the cloud's own answers and pushes on neighbouring topics (`…/accepted`,
//! `…/rejected`, `…/update/delta`, `…/update/documents`, `…/jobs/notify[-next]`), which a
//! cloud subscribed to `$aws/things/+/…/#` hears too and must not answer.

use crate::defender::Format;
use crate::shadow::{Op, ShadowId};

/// A request for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Shadow(ShadowId<'a>, Op),
    /// The thing, and its request after `jobs/`.
    Jobs(&'a str, &'a str),
    /// A Defender metrics report of the thing.
    Defender(&'a str, Format),
    /// A request for blocks of a stream's file: the thing, the stream.
    Stream(&'a str, &'a str),
}

/// The request `topic` carries, if it is one.
pub fn route(topic: &str) -> Option<Route<'_>> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once('/')?;
    if thing.is_empty() {
        return None;
    }
    if let Some(shadow) = rest.strip_prefix("shadow/") {
        let (name, op) = match shadow.strip_prefix("name/") {
            Some(named) => {
                let (name, op) = named.split_once('/')?;
                if name.is_empty() {
                    return None;
                }
                (Some(name), op)
            }
            None => (None, shadow),
        };
        let op = match op {
            "get" => Op::Get,
            "update" => Op::Update,
            "delete" => Op::Delete,
            _ => return None,
        };
        return Some(Route::Shadow(
            ShadowId {
                thing,
                name: Some(name).flatten(),
            },
            op,
        ));
    }
    if let Some(stream) = rest
        .strip_prefix("streams/")
        .and_then(|s| s.strip_suffix("/get/cbor"))
    {
        return (!stream.is_empty() && !stream.contains('/'))
            .then_some(Route::Stream(thing, stream));
    }
    match rest {
        "defender/metrics/json" => return Some(Route::Defender(thing, Format::Json)),
        "defender/metrics/cbor" => return Some(Route::Defender(thing, Format::Cbor)),
        _ => {}
    }
    let jobs = rest.strip_prefix("jobs/")?;
    let is_answer = jobs.ends_with("/accepted")
        || jobs.ends_with("/rejected")
        || jobs == "notify"
        || jobs == "notify-next";
    (!is_answer && !jobs.is_empty()).then_some(Route::Jobs(thing, jobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_and_answers_are_not() {
        let lamp = |name| ShadowId {
            thing: "lamp",
            name,
        };
        assert_eq!(
            route("$aws/things/lamp/shadow/update"),
            Some(Route::Shadow(lamp(None), Op::Update))
        );
        assert_eq!(
            route("$aws/things/lamp/shadow/name/cfg/delete"),
            Some(Route::Shadow(lamp(Some("cfg")), Op::Delete))
        );
        assert_eq!(
            route("$aws/things/lamp/streams/ota-1/get/cbor"),
            Some(Route::Stream("lamp", "ota-1"))
        );
        assert_eq!(
            route("$aws/things/lamp/jobs/start-next"),
            Some(Route::Jobs("lamp", "start-next"))
        );
        assert_eq!(
            route("$aws/things/lamp/jobs/j1/update"),
            Some(Route::Jobs("lamp", "j1/update"))
        );
        assert_eq!(
            route("$aws/things/lamp/defender/metrics/cbor"),
            Some(Route::Defender("lamp", Format::Cbor))
        );
        for answer in [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/get/rejected",
            "$aws/things/lamp/shadow/update/delta",
            "$aws/things/lamp/shadow/update/documents",
            "$aws/things/lamp/shadow/name/cfg/update/accepted",
            "$aws/things/lamp/jobs/notify",
            "$aws/things/lamp/jobs/notify-next",
            "$aws/things/lamp/jobs/start-next/accepted",
            "$aws/things/lamp/jobs/j1/update/rejected",
            "$aws/things/lamp/defender/metrics/json/accepted",
            "$aws/things/lamp/defender/metrics/xml",
            "$aws/things//shadow/get",
            "$aws/things/lamp/shadow/name//get",
            "$aws/things/lamp/streams/s/get",
            "$aws/things/lamp/streams/s/data/cbor",
            "$aws/things/lamp/streams/s/rejected/cbor",
            "$aws/things/lamp/streams//get/cbor",
            "lab/echo",
        ] {
            assert_eq!(route(answer), None, "{answer}");
        }
    }
}
