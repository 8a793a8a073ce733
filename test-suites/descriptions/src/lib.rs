//! # fqp-suites: what the on-device test groups need, and what qualification requires
//!
//! The image knows its tests; this crate knows, for each group, which port capabilities its
//! tests need and whether the group is required for qualification. The descriptions live in
//! `test-suites/suites.toml` and are compiled into the harness, so a harness and the suites of
//! the same version always agree.
//!
//! A port *qualifies* for its declared capabilities (at least one, all known) when the run was
//! complete (no infrastructure error, not a partition), every required group whose
//! capabilities the port declares ran, and every test that ran passed or was skipped: an
//! optional group need not run, but if it ran it must pass. A flaky test does not pass.

use fqp_reports::{Qualification, Run, Status};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The descriptions shipped with this harness.
pub const BUILTIN: &str = include_str!("../../suites.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suites {
    /// Known capabilities and what they mean.
    pub capabilities: BTreeMap<String, String>,
    pub groups: BTreeMap<String, GroupDesc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDesc {
    pub suite: String,
    pub description: String,
    pub required: bool,
    #[serde(default)]
    pub requires: Vec<String>,
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
}

fn split(id: &str) -> (&str, &str) {
    id.split_once('/').unwrap_or((id, ""))
}

impl Suites {
    /// The descriptions compiled into this harness.
    pub fn builtin() -> Suites {
        Suites::parse(BUILTIN).expect("test-suites/suites.toml is checked by this crate's tests")
    }

    /// Parses and checks descriptions: every capability named must be declared.
    pub fn parse(text: &str) -> Result<Suites, String> {
        let s: Suites = toml::from_str(text).map_err(|e| format!("suite descriptions: {e}"))?;
        for (name, g) in &s.groups {
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

    /// Whether group `name` is required for qualification.
    pub fn required(&self, name: &str) -> bool {
        self.groups.get(name).is_some_and(|g| g.required)
    }

    /// The qualification statement for `run`.
    pub fn qualification(&self, run: &Run) -> Qualification {
        let caps = &run.port.capabilities;
        let mut reasons = Vec::new();
        if !run.infrastructure_errors.is_empty() {
            reasons.push("the run had infrastructure errors".to_string());
        }
        if let Some(p) = run.partition {
            reasons.push(format!(
                "this is part {} of {}: merge every part (fqp merge) to qualify",
                p.index, p.count
            ));
        }
        if caps.is_empty() {
            reasons.push(
                "the port declares no capabilities, so there is nothing to qualify for \
                 (`capabilities` in port.toml)"
                    .to_string(),
            );
        }
        for c in caps {
            if !self.capabilities.contains_key(c) {
                reasons.push(format!("the port declares unknown capability {c:?}"));
            }
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
        let mut absent = Vec::new();
        for (name, g) in &self.groups {
            if g.required
                && g.requires.iter().all(|c| caps.contains(c))
                && !run.groups.iter().any(|r| &r.name == name)
            {
                absent.push(name.as_str());
            }
        }
        if !absent.is_empty() {
            reasons.push(format!(
                "required groups did not run (not selected, or not in the image): {}",
                absent.join(", ")
            ));
        }
        Qualification {
            qualified: reasons.is_empty(),
            capabilities: caps.clone(),
            reasons,
        }
    }
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
            "[capabilities]\nk = \"\"\n[groups.perf]\nsuite = \"p\"\ndescription = \"d\"\nrequired = false\n\
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
            "[capabilities]\nk = \"\"\n[groups.perf]\nsuite = \"p\"\ndescription = \"d\"\nrequired = false\n\
             tests.speed.min_relative = { count = 2.0 }\n",
        )
        .unwrap_err();
        assert!(e.contains("perf/speed has relative floors"), "{e}");
    }

    #[test]
    fn undeclared_capability_is_an_error() {
        let text = "[capabilities]\na = \"\"\n[groups.g]\nsuite=\"s\"\ndescription=\"d\"\nrequired=true\nrequires=[\"b\"]\n";
        assert!(Suites::parse(text)
            .unwrap_err()
            .contains("undeclared capability \"b\""));
    }

    fn suites() -> Suites {
        Suites::parse(
            r#"
[capabilities]
kernel = ""
irq = ""
[groups.core]
suite = "k"
description = ""
required = true
requires = ["kernel"]
tests.from_isr.requires = ["irq"]
[groups.extra]
suite = "k"
description = ""
required = true
requires = ["kernel", "irq"]
[groups.nice]
suite = "k"
description = ""
required = false
"#,
        )
        .unwrap()
    }

    fn run(caps: &[&str], tests: &[(&str, Status)]) -> Run {
        let port = Port {
            name: "p".into(),
            board: "b".into(),
            vendor: None,
            description: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            manifest: "m".into(),
        };
        let mut r = Run::new("0", port, "");
        for (id, st) in tests {
            r.push(split(id).0, Test::new(id, *st));
        }
        r
    }

    #[test]
    fn qualification_follows_capabilities_and_required_groups() {
        let s = suites();
        // Without "irq", group "extra" is not required, and a skipped test is fine.
        let r = run(
            &["kernel"],
            &[
                ("core/a", Status::Passed),
                ("core/from_isr", Status::Skipped),
                ("nice/x", Status::Failed),
            ],
        );
        // …but a failure in an optional group that ran does disqualify.
        assert_eq!(s.qualification(&r).reasons, ["group nice: nice/x failed"]);
        let r = run(
            &["kernel"],
            &[
                ("core/a", Status::Passed),
                ("core/from_isr", Status::Skipped),
            ],
        );
        let q = s.qualification(&r);
        assert!(q.qualified, "{:?}", q.reasons);
        // No capabilities: nothing to qualify for.
        let r = run(&[], &[("core/a", Status::Passed)]);
        assert!(s.qualification(&r).reasons[0].contains("declares no capabilities"));
        // With "irq", "extra" must have run.
        let r = run(&["kernel", "irq"], &[("core/a", Status::Passed)]);
        assert_eq!(
            s.qualification(&r).reasons,
            ["required groups did not run (not selected, or not in the image): extra"]
        );
        // A failure in a required group disqualifies.
        let r = run(&["kernel"], &[("core/a", Status::Error)]);
        assert_eq!(
            s.qualification(&r).reasons,
            ["required group core: core/a error"]
        );
        // So does a flaky one: it passed only when retried.
        let r = run(&["kernel"], &[("core/a", Status::Flaky)]);
        assert_eq!(
            s.qualification(&r).reasons,
            ["required group core: core/a flaky"]
        );
        // Infrastructure errors and partitions cannot qualify.
        let mut r = run(&["kernel"], &[("core/a", Status::Passed)]);
        r.infrastructure_errors.push("x".into());
        r.partition = Some(fqp_reports::Partition { index: 1, count: 2 });
        assert_eq!(s.qualification(&r).reasons.len(), 2);
        // Unknown capabilities are not silently accepted.
        let r = run(&["kernel", "wifi"], &[("core/a", Status::Passed)]);
        assert!(s.qualification(&r).reasons[0].contains("unknown capability \"wifi\""));
    }
}
