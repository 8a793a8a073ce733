//! The shadow topics (`$aws/things/<t>/shadow[/name/<n>]/<op>[/<answer>]`): written into a
//! caller's buffer, and read back from a message's topic.

use crate::Error;

/// Longest topic: a 128-byte thing name, a 64-byte shadow name, `update/documents`.
pub const MAX_TOPIC: usize = 12 + 128 + 13 + 64 + 17;

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Update,
    Delete,
}

/// What the cloud says on a topic under a request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Rejected,
    /// `update/delta`: desired differs from reported.
    Delta,
    /// `update/documents`: the previous and current documents after an update.
    Documents,
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

impl Answer {
    fn word(self) -> &'static str {
        match self {
            Answer::Accepted => "accepted",
            Answer::Rejected => "rejected",
            Answer::Delta => "delta",
            Answer::Documents => "documents",
        }
    }
}

/// One shadow of a thing: the classic one, or a named one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shadow<'a> {
    pub thing: &'a str,
    pub name: Option<&'a str>,
}

impl<'a> Shadow<'a> {
    pub const fn classic(thing: &'a str) -> Self {
        Shadow { thing, name: None }
    }

    pub const fn named(thing: &'a str, name: &'a str) -> Self {
        Shadow {
            thing,
            name: Some(name),
        }
    }

    /// Writes `$aws/things/<t>/shadow[/name/<n>]` then each of `rest` after a `/`.
    fn write<'b>(&self, rest: &[&str], buf: &'b mut [u8]) -> Result<&'b str, Error> {
        let mut parts = ["shadow", "", "", "", ""];
        let mut n = 1;
        if let Some(name) = self.name {
            parts[1] = "name";
            parts[2] = name;
            n = 3;
        }
        for r in rest.iter().take(parts.len() - n) {
            parts[n] = r;
            n += 1;
        }
        Ok(fqp_iot::thing_topic(self.thing, &parts[..n], buf)?)
    }

    /// The topic of `op`, or of one of its answers.
    pub fn topic<'b>(
        &self,
        op: Op,
        answer: Option<Answer>,
        buf: &'b mut [u8],
    ) -> Result<&'b str, Error> {
        match answer {
            Some(a) => self.write(&[op.word(), a.word()], buf),
            None => self.write(&[op.word()], buf),
        }
    }

    /// A filter under this shadow: `<shadow>/<op>/<last>` (`last` may be `+`).
    pub fn filter<'b>(&self, op: Op, last: &str, buf: &'b mut [u8]) -> Result<&'b str, Error> {
        self.write(&[op.word(), last], buf)
    }

    /// The shadow, request and answer a topic is about, if it is a shadow topic.
    pub fn parse(topic: &'a str) -> Option<(Shadow<'a>, Op, Option<Answer>)> {
        let (thing, rest) = fqp_iot::split_thing_topic(topic)?;
        let rest = rest.strip_prefix("shadow")?;
        let (name, rest) = match rest.strip_prefix("/name/") {
            Some(named) => {
                let (n, r) = named.split_once('/')?;
                (Some(n), r)
            }
            None => (None, rest.strip_prefix('/')?),
        };
        if name == Some("") {
            return None;
        }
        let (op, answer) = match rest.split_once('/') {
            Some((op, a)) => (op, Some(a)),
            None => (rest, None),
        };
        let op = match op {
            "get" => Op::Get,
            "update" => Op::Update,
            "delete" => Op::Delete,
            _ => return None,
        };
        let answer = match (op, answer) {
            (_, None) => None,
            (_, Some("accepted")) => Some(Answer::Accepted),
            (_, Some("rejected")) => Some(Answer::Rejected),
            (Op::Update, Some("delta")) => Some(Answer::Delta),
            (Op::Update, Some("documents")) => Some(Answer::Documents),
            _ => return None,
        };
        Some((Shadow { thing, name }, op, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_written_and_read_back() {
        let mut buf = [0u8; MAX_TOPIC];
        let lamp = Shadow::classic("lamp");
        assert_eq!(
            lamp.topic(Op::Update, None, &mut buf).unwrap(),
            "$aws/things/lamp/shadow/update"
        );
        let cfg = Shadow::named("lamp", "cfg");
        let t = cfg
            .topic(Op::Get, Some(Answer::Rejected), &mut buf)
            .unwrap();
        assert_eq!(t, "$aws/things/lamp/shadow/name/cfg/get/rejected");
        assert_eq!(
            Shadow::parse("$aws/things/lamp/shadow/name/cfg/get/rejected"),
            Some((cfg, Op::Get, Some(Answer::Rejected)))
        );
        assert_eq!(
            Shadow::parse("$aws/things/lamp/shadow/update/delta"),
            Some((lamp, Op::Update, Some(Answer::Delta)))
        );
        assert_eq!(
            lamp.filter(Op::Get, "+", &mut buf).unwrap(),
            "$aws/things/lamp/shadow/get/+"
        );
        for other in [
            "$aws/things/lamp/shadow/get/delta",
            "$aws/things/lamp/shadow/list",
            "$aws/things//shadow/get",
            "$aws/things/lamp/shadow/name//get",
            "$aws/things/lamp/jobs/get",
            "lamp/shadow/get",
        ] {
            assert_eq!(Shadow::parse(other), None, "{other}");
        }
        let mut small = [0u8; 20];
        assert_eq!(lamp.topic(Op::Get, None, &mut small), Err(Error::TooLong));
    }
}
