//! The jobs topics (`$aws/things/<t>/jobs/…`): requests and their answers, written into a
//! caller's buffer, and read back from a message's topic.

use fqp_iot::{split_thing_topic, thing_topic, TooLong};

/// Longest topic: a 128-byte thing name, a 64-byte job id, `update/accepted`.
pub const MAX_TOPIC: usize = 12 + 128 + 6 + 64 + 16;

/// What a device asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`: the pending executions.
    List,
    /// `start-next`: take the next execution (QUEUED becomes IN_PROGRESS).
    StartNext,
    /// `$next/get`: the next execution, unchanged.
    DescribeNext,
    /// `<jobId>/get`.
    Describe(&'a str),
    /// `<jobId>/update`.
    Update(&'a str),
}

/// What a message on a jobs topic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    /// A request, or its answer (`true`: accepted, `false`: rejected).
    Request(Request<'a>, Option<bool>),
    /// `notify`: the pending lists changed.
    Notify,
    /// `notify-next`: the next execution changed.
    NotifyNext,
}

/// Writes the topic of `request` (with `/accepted` or `/rejected` for its answer).
pub fn write<'b>(
    thing: &str,
    request: Request<'_>,
    answer: Option<bool>,
    buf: &'b mut [u8],
) -> Result<&'b str, TooLong> {
    let last = match answer {
        None => None,
        Some(true) => Some("accepted"),
        Some(false) => Some("rejected"),
    };
    let parts: [&str; 3] = match request {
        Request::List => ["get", last.unwrap_or(""), ""],
        Request::StartNext => ["start-next", last.unwrap_or(""), ""],
        Request::DescribeNext => ["$next", "get", last.unwrap_or("")],
        Request::Describe(id) => [id, "get", last.unwrap_or("")],
        Request::Update(id) => [id, "update", last.unwrap_or("")],
    };
    let n = parts.iter().take_while(|p| !p.is_empty()).count();
    let mut all = ["jobs", "", "", ""];
    all[1..=n].copy_from_slice(&parts[..n]);
    thing_topic(thing, &all[..=n], buf)
}

/// Writes a filter under the thing's jobs: `jobs/<parts>`.
pub fn filter<'b>(thing: &str, parts: &[&str], buf: &'b mut [u8]) -> Result<&'b str, TooLong> {
    let mut all = ["jobs"; 5];
    let n = parts.len().min(4);
    all[1..=n].copy_from_slice(&parts[..n]);
    thing_topic(thing, &all[..=n], buf)
}

/// The thing and what a jobs topic is, if it is one.
pub fn parse(topic: &str) -> Option<(&str, Topic<'_>)> {
    let (thing, rest) = split_thing_topic(topic)?;
    let rest = rest.strip_prefix("jobs/")?;
    let (body, answer) = if let Some(r) = rest.strip_suffix("/accepted") {
        (r, Some(true))
    } else if let Some(r) = rest.strip_suffix("/rejected") {
        (r, Some(false))
    } else {
        (rest, None)
    };
    let what = match (body, answer) {
        ("notify", None) => Topic::Notify,
        ("notify-next", None) => Topic::NotifyNext,
        ("get", a) => Topic::Request(Request::List, a),
        ("start-next", a) => Topic::Request(Request::StartNext, a),
        ("$next/get", a) => Topic::Request(Request::DescribeNext, a),
        (other, a) => match other.split_once('/') {
            Some((id, "get")) if !id.is_empty() => Topic::Request(Request::Describe(id), a),
            Some((id, "update")) if !id.is_empty() => Topic::Request(Request::Update(id), a),
            _ => return None,
        },
    };
    Some((thing, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_written_and_read_back() {
        let mut buf = [0u8; MAX_TOPIC];
        let cases = [
            (Request::List, None, "$aws/things/lamp/jobs/get"),
            (
                Request::StartNext,
                Some(true),
                "$aws/things/lamp/jobs/start-next/accepted",
            ),
            (
                Request::DescribeNext,
                Some(false),
                "$aws/things/lamp/jobs/$next/get/rejected",
            ),
            (
                Request::Describe("j1"),
                None,
                "$aws/things/lamp/jobs/j1/get",
            ),
            (
                Request::Update("j1"),
                Some(true),
                "$aws/things/lamp/jobs/j1/update/accepted",
            ),
        ];
        for (r, a, want) in cases {
            assert_eq!(write("lamp", r, a, &mut buf).unwrap(), want);
            assert_eq!(parse(want), Some(("lamp", Topic::Request(r, a))), "{want}");
        }
        assert_eq!(
            parse("$aws/things/lamp/jobs/notify-next"),
            Some(("lamp", Topic::NotifyNext))
        );
        assert_eq!(
            parse("$aws/things/lamp/jobs/notify"),
            Some(("lamp", Topic::Notify))
        );
        assert_eq!(parse("$aws/things/lamp/jobs/j1/delete"), None);
        assert_eq!(parse("$aws/things/lamp/shadow/get"), None);
        assert_eq!(
            filter("lamp", &["+", "update", "+"], &mut buf).unwrap(),
            "$aws/things/lamp/jobs/+/update/+"
        );
    }
}
