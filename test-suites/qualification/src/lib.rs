//! # fqp-qualification: what the on-device test groups hold and need, and what qualification requires
//!
//! The image knows its tests, but a qualification cannot take the device's word for what it
//! must pass: this crate pins, for each group, every test it holds (its *cases*), the port
//! capabilities they need and whether the group is required. The descriptions live in
//! `test-suites/suites.toml`, are compiled into the harness (so a harness and the suites of the
//! same version agree) and are versioned: a result records their version and digest.
//!
//! A port *qualifies* for its declared capabilities (at least one, all known) when the run was
//! whole and complete (every test asked for, not a selection or a partition; no infrastructure
//! error; not interrupted), was judged against these very descriptions, every pinned case of
//! every required group that the port's capabilities call for ran and passed (a skip earns
//! nothing), every declared capability has at least one such case that passed, and every test
//! that ran passed or was skipped: an optional group need not run, but if it ran it must pass.
//! A flaky test does not pass.

use fqp_reports::{Qualification, Run, Status, SuitesRef};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The descriptions shipped with this harness.
pub const BUILTIN: &str = include_str!("../../suites.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suites {
    /// Raised whenever cases, requirements or thresholds change.
    pub version: u32,
    /// Known capabilities and what they mean.
    pub capabilities: BTreeMap<String, String>,
    pub groups: BTreeMap<String, GroupDesc>,
    /// SHA-256 of the text these were parsed from, hex.
    #[serde(skip)]
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDesc {
    pub suite: String,
    pub description: String,
    pub required: bool,
    #[serde(default)]
    pub requires: Vec<String>,
    /// Every test of the group, pinned: what a port must pass, whatever its image lists.
    #[serde(default)]
    pub cases: Vec<String>,
    /// The test of this group whose figure (the metric named as the test) the group's
    /// relative floors are multiples of: a figure of the port itself, so that the floors hold
    /// on a core of any speed.
    #[serde(default)]
    pub control: Option<String>,
    #[serde(default)]
    pub tests: BTreeMap<String, TestDesc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestDesc {
    #[serde(default)]
    pub requires: Vec<String>,
    /// Figures (metric name → bound) the test must reach: at least `min`, at most `max`.
    #[serde(default)]
    pub min: BTreeMap<String, f64>,
    #[serde(default)]
    pub max: BTreeMap<String, f64>,
    /// Floors as multiples of the group's control figure (metric name → multiple).
    #[serde(default)]
    pub min_relative: BTreeMap<String, f64>,
    /// Runs on every device of the run at once, after the other tests (the devices wait for
    /// each other); one result, passed only if it passed on each.
    #[serde(default)]
    pub pool: bool,
}

/// `a, b, c and 4 more`: a list that stays one readable line.
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

fn split(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or((id, ""))
}

impl Suites {
    /// The descriptions compiled into this harness.
    pub fn builtin() -> Suites {
        Suites::parse(BUILTIN).expect("test-suites/suites.toml is checked by this crate's tests")
    }

    /// Parses and checks descriptions: every capability named must be declared, every test
    /// described must be one of its group's cases, each case named once.
    pub fn parse(text: &str) -> Result<Suites, String> {
        use sha2::Digest;
        let mut s: Suites = toml::from_str(text).map_err(|e| format!("suite descriptions: {e}"))?;
        s.sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        for (name, g) in &s.groups {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = g.cases.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(format!(
                    "suite descriptions: group {name} names case {dup:?} twice"
                ));
            }
            let described = g.tests.keys().chain(g.control.iter());
            for t in described {
                if !g.cases.is_empty() && !g.cases.contains(t) {
                    return Err(format!(
                        "suite descriptions: {name}/{t} is described but is not one of group {name}'s cases"
                    ));
                }
            }
            if g.required && g.cases.is_empty() {
                return Err(format!(
                    "suite descriptions: required group {name} pins no cases: list them in `cases`"
                ));
            }
            let named = g
                .requires
                .iter()
                .chain(g.tests.values().flat_map(|t| &t.requires));
            for c in named {
                if !s.capabilities.contains_key(c) {
                    return Err(format!(
                        "suite descriptions: group {name} needs undeclared capability {c:?}"
                    ));
                }
            }
            let relative = g.tests.iter().find(|(_, t)| !t.min_relative.is_empty());
            if let (Some((test, _)), None) = (relative, &g.control) {
                return Err(format!(
                    "suite descriptions: {name}/{test} has relative floors (min_relative) but group {name} names no control test"
                ));
            }
        }
        Ok(s)
    }

    /// Capabilities test `id` (`group/name`) needs: its group's and its own.
    pub fn requirements(&self, id: &str) -> Vec<String> {
        let (group, test) = split(id);
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        let mut r = g.requires.clone();
        if let Some(t) = g.tests.get(test) {
            r.extend(t.requires.iter().cloned());
        }
        r
    }

    /// The capabilities test `id` needs that `port` does not declare.
    pub fn missing(&self, id: &str, port: &[String]) -> Vec<String> {
        self.requirements(id)
            .into_iter()
            .filter(|c| !port.contains(c))
            .collect()
    }

    /// Whether test `id` runs on every device of the run at once ([`TestDesc::pool`]).
    pub fn pooled(&self, id: &str) -> bool {
        let (group, test) = split(id);
        self.groups
            .get(group)
            .and_then(|g| g.tests.get(test))
            .is_some_and(|t| t.pool)
    }

    /// The control test of `group` (see [`GroupDesc::control`]), if it names one.
    pub fn control(&self, group: &str) -> Option<&str> {
        self.groups.get(group)?.control.as_deref()
    }

    /// Why test `id`, which passed on the device, misses its thresholds (a bound on one of
    /// its figures, or a bounded figure it did not report); `None` when it meets them.
    /// `control` is the figure of its group's control test in the same run: relative floors
    /// are not judged without it (the control did not run, or did not pass).
    pub fn missed_threshold(
        &self,
        id: &str,
        metrics: &[fqp_reports::Metric],
        control: Option<f64>,
    ) -> Option<String> {
        let (group, test) = split(id);
        let g = self.groups.get(group)?;
        let t = g.tests.get(test)?;
        let relative = control.into_iter().flat_map(|c| {
            t.min_relative.iter().map(move |(m, k)| {
                let why = format!(
                    " ({k} × {} = {c}, test-suites/suites.toml)",
                    g.control.as_deref().unwrap_or_default()
                );
                (m, k * c, true, why)
            })
        });
        let bounds = t
            .min
            .iter()
            .map(|(m, b)| (m, *b, true, " (test-suites/suites.toml)".to_string()))
            .chain(
                t.max
                    .iter()
                    .map(|(m, b)| (m, *b, false, " (test-suites/suites.toml)".to_string())),
            )
            .chain(relative);
        for (name, bound, at_least, source) in bounds {
            let Some(m) = metrics.iter().find(|m| &m.name == name) else {
                return Some(format!(
                    "the test reported no {name}, which has a threshold"
                ));
            };
            if at_least && m.value < bound {
                return Some(format!(
                    "{name} = {} {} is below the threshold {bound}{source}",
                    m.value, m.unit
                ));
            }
            if !at_least && m.value > bound {
                return Some(format!(
                    "{name} = {} {} is above the threshold {bound}{source}",
                    m.value, m.unit
                ));
            }
        }
        None
    }

    /// Which descriptions these are, as a result records them.
    pub fn reference(&self) -> SuitesRef {
        SuitesRef {
            version: self.version,
            sha256: self.sha256.clone(),
        }
    }

    /// The capabilities among `wanted` that these descriptions do not know.
    pub fn unknown_capabilities<'a>(&self, wanted: &'a [String]) -> Vec<&'a str> {
        wanted
            .iter()
            .filter(|c| !self.capabilities.contains_key(*c))
            .map(String::as_str)
            .collect()
    }

    /// Whether group `name` is required for qualification.
    pub fn required(&self, name: &str) -> bool {
        self.groups.get(name).is_some_and(|g| g.required)
    }

    /// The qualification statement for `run`: see the crate's documentation for the rule.
    /// Reasons come most telling first: what stopped the run, then what failed, then what
    /// was not earned.
    pub fn qualification(&self, run: &Run) -> Qualification {
        let caps = &run.port.capabilities;
        let mut reasons = Vec::new();
        let broken = run.interrupted.is_some() || !run.problems.is_empty();
        if let Some(signal) = &run.interrupted {
            reasons.push(format!(
                "the run was interrupted ({signal}) before it ended"
            ));
        }
        if let Some(p) = run.problems.first() {
            reasons.push(format!(
                "the run had {} problems (first, {}: {})",
                p.stage.category().as_str(),
                p.stage.as_str(),
                first_line(&p.message)
            ));
        }
        if let Some(p) = run.partition {
            reasons.push(format!(
                "this is part {} of {}: merge every part (fqp merge) to qualify",
                p.index, p.count
            ));
        }
        if let Some(sel) = &run.selection {
            reasons.push(format!(
                "only a selection of the tests ran ({}): qualification needs every test (leave out --group, --test and --capability)",
                sel.describe()
            ));
        }
        match &run.suites {
            Some(r) if *r == self.reference() => {}
            Some(r) => reasons.push(format!(
                "the run was judged against suite descriptions version {} (sha256 {}), this harness's are version {} (sha256 {}): qualify with one harness",
                r.version, r.sha256, self.version, self.sha256
            )),
            None => reasons.push("the results name no suite descriptions they were judged against".into()),
        }
        if caps.is_empty() {
            reasons.push(
                "the port declares no capabilities, so there is nothing to qualify for \
                 (`capabilities` in port.toml)"
                    .to_string(),
            );
        }
        for c in self.unknown_capabilities(caps) {
            reasons.push(format!(
                "the port declares unknown capability {c:?} (known: {})",
                self.capabilities
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Optional groups need not run, but what ran must pass.
        for r in &run.groups {
            let kind = if self.required(&r.name) {
                "required group"
            } else {
                "group"
            };
            for t in &r.tests {
                if matches!(t.status, Status::Failed | Status::Error | Status::Flaky) {
                    reasons.push(format!("{kind} {}: {} {}", r.name, t.id, t.status.as_str()));
                }
            }
        }
        let unearned = self.unearned(run);
        if broken {
            // The run's own failure is the news; what it left unrun follows from it.
            let count = unearned.absent.len() + unearned.missing.len() + unearned.skipped.len();
            if count > 0 {
                reasons.push(format!(
                    "{count} required tests did not run or pass because of it"
                ));
            }
        } else {
            reasons.extend(unearned.capability_reasons);
            if !unearned.absent.is_empty() {
                reasons.push(format!(
                    "required groups did not run (not selected, or not in the image): {}",
                    unearned.absent.join(", ")
                ));
            }
            if !unearned.missing.is_empty() {
                reasons.push(format!(
                    "{} required tests did not run (not in the image, or lost): {}",
                    unearned.missing.len(),
                    some_of(&unearned.missing)
                ));
            }
            if !unearned.skipped.is_empty() {
                reasons.push(format!(
                    "{} required tests were skipped, which earns nothing: {}",
                    unearned.skipped.len(),
                    some_of(&unearned.skipped)
                ));
            }
        }
        if !unearned.unpinned.is_empty() {
            reasons.push(format!(
                "the image has tests in required groups that the suite descriptions do not pin (a harness and suites of different versions?): {}",
                some_of(&unearned.unpinned)
            ));
        }
        Qualification {
            qualified: reasons.is_empty(),
            capabilities: caps.clone(),
            reasons,
        }
    }

    /// The required cases `run` did not earn, by why.
    fn unearned(&self, run: &Run) -> Unearned {
        let caps = &run.port.capabilities;
        let mut u = Unearned::default();
        let result = |id: &str| {
            run.groups
                .iter()
                .flat_map(|g| &g.tests)
                .find(|t| t.id == id)
        };
        // Per declared capability: its required cases, and how many of them passed.
        let mut per_cap: BTreeMap<String, (usize, usize, Option<String>)> = BTreeMap::new();
        for (name, g) in &self.groups {
            if !g.required {
                continue;
            }
            if let Some(r) = run.groups.iter().find(|r| &r.name == name) {
                u.unpinned.extend(
                    r.tests
                        .iter()
                        .filter(|t| !g.cases.contains(&t.name))
                        .map(|t| t.id.clone()),
                );
            }
            if !g.requires.iter().all(|c| caps.contains(c)) {
                continue;
            }
            let mut ran_any = false;
            let mut missing = Vec::new();
            for case in &g.cases {
                let id = format!("{name}/{case}");
                let needs = self.requirements(&id);
                if !needs.iter().all(|c| caps.contains(c)) {
                    continue;
                }
                let t = result(&id);
                ran_any |= t.is_some();
                let passed = t.is_some_and(|t| t.status == Status::Passed);
                for c in &needs {
                    let e = per_cap.entry(c.clone()).or_default();
                    e.0 += 1;
                    e.1 += usize::from(passed);
                    if e.2.is_none() && !passed {
                        e.2 = Some(match t {
                            None => format!("{id} did not run"),
                            Some(t) => format!(
                                "{id} {}{}",
                                t.status.as_str(),
                                t.message
                                    .as_deref()
                                    .map(|m| format!(": {}", first_line(m)))
                                    .unwrap_or_default()
                            ),
                        });
                    }
                }
                match t {
                    None => missing.push(id),
                    Some(t) if t.status == Status::Skipped => u.skipped.push(format!(
                        "{id} ({})",
                        first_line(t.message.as_deref().unwrap_or("no reason given"))
                    )),
                    Some(_) => {}
                }
            }
            if ran_any {
                u.missing.extend(missing);
            } else {
                u.absent.push(name.clone());
            }
        }
        for c in caps {
            if let Some(&(total, 0, ref example)) = per_cap.get(c.as_str()) {
                u.capability_reasons.push(format!(
                    "the port declares capability {c:?}, but none of its {total} required tests passed (for example {}): make them pass, or leave {c:?} out of `capabilities` in port.toml",
                    example.as_deref().unwrap_or("")
                ));
            }
        }
        u
    }
}

/// Required cases a run did not earn.
#[derive(Default)]
struct Unearned {
    /// Required groups none of whose cases ran.
    absent: Vec<String>,
    /// Cases of groups that ran, missing from the results.
    missing: Vec<String>,
    /// Cases reported skipped, with the reason.
    skipped: Vec<String>,
    /// Tests of required groups the descriptions do not pin.
    unpinned: Vec<String>,
    /// Declared capabilities none of whose required cases passed.
    capability_reasons: Vec<String>,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fqp_reports::{Port, Test};

    #[test]
    fn builtin_descriptions_parse_and_name_declared_capabilities() {
        let s = Suites::builtin();
        assert!(s.groups.len() >= 17);
        assert!(s.required("mutex"));
        assert!(!s.required("selftest"));
        assert_eq!(
            s.requirements("isr/anything"),
            ["kernel", "heap", "test-irq"]
        );
        assert_eq!(
            s.requirements("semaphore/give_from_interrupt_wakes_task"),
            ["kernel", "heap", "test-irq"]
        );
        assert_eq!(
            s.requirements("semaphore/binary_give_take"),
            ["kernel", "heap"]
        );
        assert!(s.requirements("nosuchgroup/x").is_empty());
    }

    #[test]
    fn figures_are_held_to_their_thresholds() {
        let s = Suites::parse(
            "version = 1\n[capabilities]\nk = \"\"\n[groups.perf]\nsuite = \"p\"\ndescription = \"d\"\nrequired = false\n\
             tests.speed.min = { count = 100.0 }\ntests.latency.max = { instructions = 50.0 }\n",
        )
        .unwrap();
        let m = |name: &str, value: f64| fqp_reports::Metric {
            name: name.into(),
            value,
            unit: "u".into(),
        };
        assert_eq!(
            s.missed_threshold("perf/speed", &[m("count", 100.0)], None),
            None
        );
        let low = s
            .missed_threshold("perf/speed", &[m("count", 99.0)], None)
            .unwrap();
        assert!(low.contains("below the threshold 100"), "{low}");
        let high = s
            .missed_threshold("perf/latency", &[m("instructions", 51.0)], None)
            .unwrap();
        assert!(high.contains("above the threshold 50"), "{high}");
        let none = s.missed_threshold("perf/speed", &[], None).unwrap();
        assert!(none.contains("reported no count"), "{none}");
        assert_eq!(s.missed_threshold("perf/other", &[], None), None);
        // A core twice as fast must do twice as much: floors relative to the control.
        let b = Suites::builtin();
        assert_eq!(b.control("perf"), Some("basic_processing"));
        let coop = |score: f64, basic: f64| {
            b.missed_threshold(
                "perf/cooperative_scheduling",
                &[m("cooperative_scheduling", score)],
                Some(basic),
            )
        };
        assert_eq!(coop(200_000.0, 3_000.0), None);
        let slow = coop(200_000.0, 6_000.0).unwrap();
        assert!(
            slow.contains("below the threshold") && slow.contains("× basic_processing = 6000"),
            "{slow}"
        );
        // Without the control's figure (not run), only absolute bounds are judged.
        assert_eq!(
            b.missed_threshold(
                "perf/cooperative_scheduling",
                &[m("cooperative_scheduling", 1.0)],
                None
            ),
            None
        );
    }

    #[test]
    fn relative_floors_need_a_control() {
        let e = Suites::parse(
            "version = 1\n[capabilities]\nk = \"\"\n[groups.perf]\nsuite = \"p\"\ndescription = \"d\"\nrequired = false\n\
             tests.speed.min_relative = { count = 2.0 }\n",
        )
        .unwrap_err();
        assert!(e.contains("perf/speed has relative floors"), "{e}");
    }

    #[test]
    fn undeclared_capability_is_an_error() {
        let text = "version = 1\n[capabilities]\na = \"\"\n[groups.g]\nsuite=\"s\"\ndescription=\"d\"\nrequired=true\nrequires=[\"b\"]\ncases=[\"x\"]\n";
        assert!(Suites::parse(text)
            .unwrap_err()
            .contains("undeclared capability \"b\""));
    }

    fn suites() -> Suites {
        Suites::parse(
            r#"
version = 1
[capabilities]
kernel = ""
irq = ""
net = ""
[groups.core]
suite = "k"
description = ""
required = true
requires = ["kernel"]
cases = ["a", "b", "from_isr"]
tests.from_isr.requires = ["irq"]
[groups.extra]
suite = "k"
description = ""
required = true
requires = ["kernel", "irq"]
cases = ["x"]
[groups.link]
suite = "n"
description = ""
required = true
requires = ["net"]
cases = ["up", "echo"]
[groups.nice]
suite = "k"
description = ""
required = false
"#,
        )
        .unwrap()
    }

    fn run(s: &Suites, caps: &[&str], tests: &[(&str, Status)]) -> Run {
        let port = Port {
            name: "p".into(),
            board: "b".into(),
            vendor: None,
            description: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            manifest: "m".into(),
        };
        let mut r = Run::new("0", port, "");
        r.suites = Some(s.reference());
        for (id, st) in tests {
            r.push(split(id).0, Test::new(id, *st));
        }
        r
    }

    const CORE: [(&str, Status); 2] = [("core/a", Status::Passed), ("core/b", Status::Passed)];

    fn with(extra: &[(&'static str, Status)]) -> Vec<(&'static str, Status)> {
        CORE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn qualification_follows_capabilities_and_pinned_cases() {
        let s = suites();
        // Without "irq", from_isr and group "extra" are not required.
        let r = run(
            &s,
            &["kernel"],
            &with(&[("core/from_isr", Status::Skipped)]),
        );
        let q = s.qualification(&r);
        assert!(q.qualified, "{:?}", q.reasons);
        // …but a failure in an optional group that ran does disqualify.
        let r = run(&s, &["kernel"], &with(&[("nice/x", Status::Failed)]));
        assert_eq!(s.qualification(&r).reasons, ["group nice: nice/x failed"]);
        // No capabilities: nothing to qualify for.
        let r = run(&s, &[], &CORE);
        assert!(s.qualification(&r).reasons[0].contains("declares no capabilities"));
        // With "irq", "extra" must have run, and so must core/from_isr.
        let r = run(&s, &["kernel", "irq"], &CORE);
        let q = s.qualification(&r).reasons;
        assert!(q.iter().any(|r| r.contains("capability \"irq\", but none of its 2 required tests passed (for example core/from_isr did not run)")), "{q:?}");
        assert!(
            q.contains(
                &"required groups did not run (not selected, or not in the image): extra"
                    .to_string()
            ),
            "{q:?}"
        );
        assert!(
            q.contains(
                &"1 required tests did not run (not in the image, or lost): core/from_isr"
                    .to_string()
            ),
            "{q:?}"
        );
        // A failure in a required group disqualifies; so does a flaky test.
        for (status, word) in [(Status::Error, "error"), (Status::Flaky, "flaky")] {
            let r = run(
                &s,
                &["kernel"],
                &[("core/a", status), ("core/b", Status::Passed)],
            );
            assert_eq!(
                s.qualification(&r).reasons,
                [format!("required group core: core/a {word}")]
            );
        }
        // Unknown capabilities are not silently accepted.
        let r = run(&s, &["kernel", "wifi"], &CORE);
        assert!(s.qualification(&r).reasons[0].contains("unknown capability \"wifi\""));
    }

    #[test]
    fn a_device_cannot_shrink_what_must_pass() {
        let s = suites();
        // The device lists one test of the group: the others are still required.
        let r = run(&s, &["kernel"], &[("core/a", Status::Passed)]);
        assert_eq!(
            s.qualification(&r).reasons,
            ["1 required tests did not run (not in the image, or lost): core/b"]
        );
        // Skips earn nothing: a declared capability whose tests all skipped does not qualify.
        let mut r = run(
            &s,
            &["kernel", "net"],
            &with(&[("link/up", Status::Skipped), ("link/echo", Status::Skipped)]),
        );
        r.groups[1].tests[0].message = Some("no network.host in port.toml".into());
        let q = s.qualification(&r);
        assert!(!q.qualified);
        assert!(q.reasons[0].starts_with("the port declares capability \"net\", but none of its 2 required tests passed (for example link/up skipped: no network.host in port.toml)"), "{:?}", q.reasons);
        assert!(q.reasons[1].starts_with("2 required tests were skipped, which earns nothing: link/up (no network.host in port.toml), link/echo"), "{:?}", q.reasons);
        // A test the descriptions do not pin, in a required group, is named.
        let r = run(&s, &["kernel"], &with(&[("core/new_one", Status::Passed)]));
        assert!(
            s.qualification(&r).reasons[0].contains("do not pin"),
            "{:?}",
            s.qualification(&r).reasons
        );
    }

    #[test]
    fn only_a_whole_run_judged_by_these_descriptions_qualifies() {
        let s = suites();
        let mut r = run(&s, &["kernel"], &CORE);
        r.selection = Some(fqp_reports::Selection {
            groups: vec!["core".into()],
            ..Default::default()
        });
        assert!(s.qualification(&r).reasons[0]
            .contains("only a selection of the tests ran (--group core)"));
        let mut r = run(&s, &["kernel"], &CORE);
        r.partition = Some(fqp_reports::Partition { index: 1, count: 2 });
        assert!(s.qualification(&r).reasons[0].contains("part 1 of 2"));
        let mut r = run(&s, &["kernel"], &CORE);
        r.suites = Some(SuitesRef {
            version: 1,
            sha256: "00".into(),
        });
        assert!(s.qualification(&r).reasons[0]
            .contains("judged against suite descriptions version 1 (sha256 00)"));
        r.suites = None;
        assert!(s.qualification(&r).reasons[0].contains("name no suite descriptions"));
        // An infrastructure error is the news: what it left unrun is one line after it.
        let mut r = run(&s, &["kernel", "irq"], &[("core/a", Status::Passed)]);
        r.problems.push(fqp_reports::Problem::new(
            fqp_reports::Stage::Boot,
            "the device could not be started\n  fix: …",
        ));
        assert_eq!(
            s.qualification(&r).reasons,
            [
                "the run had infrastructure problems (first, boot: the device could not be started)",
                "3 required tests did not run or pass because of it"
            ]
        );
        r.interrupted = Some("SIGINT".into());
        assert_eq!(
            s.qualification(&r).reasons[0],
            "the run was interrupted (SIGINT) before it ended"
        );
    }

    #[test]
    fn cases_are_checked() {
        let base = "version = 1\n[capabilities]\nk = \"\"\n[groups.g]\nsuite = \"s\"\ndescription = \"d\"\n";
        let e = Suites::parse(&format!("{base}required = true\n")).unwrap_err();
        assert!(e.contains("required group g pins no cases"), "{e}");
        let e = Suites::parse(&format!("{base}required = false\ncases = [\"a\", \"a\"]\n"))
            .unwrap_err();
        assert!(e.contains("names case \"a\" twice"), "{e}");
        let e = Suites::parse(&format!(
            "{base}required = false\ncases = [\"a\"]\ntests.b.requires = [\"k\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("g/b is described but is not one of group g's cases"),
            "{e}"
        );
    }

    /// The pinned cases are the groups the suites' sources declare (`group!(…, "name", [...])`):
    /// a test added to a suite must be pinned here too, or this fails.
    #[test]
    fn a_test_run_on_every_device_at_once_is_named() {
        let s = Suites::parse(
            "version = 1\n[capabilities]\n[groups.g]\nsuite = \"s\"\ndescription = \"d\"\n\
             required = false\ncases = [\"a\", \"b\"]\ntests.b.pool = true\n",
        )
        .unwrap();
        assert!(s.pooled("g/b"));
        assert!(!s.pooled("g/a") && !s.pooled("h/b"));
        assert!(Suites::builtin().pooled("ota/a_group_deployment_reaches_every_device_of_the_pool"));
    }

    #[test]
    fn pinned_cases_are_the_sources_tests() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir()
                    && !["target", "testkit", "qualification"]
                        .iter()
                        .any(|d| p.ends_with(d))
                {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (name, cases) in declared_groups(&text) {
                        found.insert(name, cases);
                    }
                }
            }
        }
        let s = Suites::builtin();
        assert!(found.len() >= 22, "{found:?}");
        for (name, cases) in &found {
            let g = s
                .groups
                .get(name)
                .unwrap_or_else(|| panic!("group {name} is not described in suites.toml"));
            assert_eq!(
                &g.cases, cases,
                "suites.toml's cases of group {name} are not its sources' tests"
            );
        }
        for (name, g) in &s.groups {
            if g.required {
                assert!(
                    found.contains_key(name),
                    "required group {name} has no sources"
                );
            }
        }
    }

    /// `(name, tests)` of each `group!(VIS IDENT, "name", [a, b => ms, …])` in `text`.
    fn declared_groups(text: &str) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("group!(") {
            rest = &rest[at + 7..];
            let Some(open) = rest.find('"') else { break };
            let after = &rest[open + 1..];
            let Some(close) = after.find('"') else { break };
            let name = &after[..close];
            let (Some(lb), Some(rb)) = (after.find('['), after.find(']')) else {
                break;
            };
            if name.contains(' ') || lb > rb {
                continue;
            }
            let tests = after[lb + 1..rb]
                .split(',')
                .map(|t| t.split("=>").next().unwrap_or("").trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            out.push((name.to_string(), tests));
            rest = &after[rb..];
        }
        out
    }
}
