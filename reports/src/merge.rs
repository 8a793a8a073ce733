//! Combining the parts of a partitioned run (CI shards) into one.

use crate::model::{Partition, Problem, Run};

/// The results given are not the parts of one partitioned run.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Nothing,
    #[error("cannot merge results of port {0:?} with port {1:?}")]
    Ports(String, String),
    #[error("cannot merge results of different firmware images ({0} and {1})")]
    Images(String, String),
    #[error("test {0} appears in more than one of the results")]
    TestTwice(String),
    #[error(
        "the first results are not a part of a partitioned run (--partition I/N): fqp merge \
         joins the parts of one"
    )]
    FirstNotAPart,
    #[error("results of {port} started {started} are not a part (--partition I/N)")]
    NotAPart { port: String, started: String },
    #[error(
        "part {}/{} and part {first}/{count} are of different partitionings",
        .part.index,
        .part.count
    )]
    Partitionings {
        part: Partition,
        first: usize,
        count: usize,
    },
    #[error("part {}/{} does not exist", .0.index, .0.count)]
    NoSuchPart(Partition),
    #[error("part {}/{} is given twice", .0.index, .0.count)]
    PartTwice(Partition),
    #[error("the parts were run with different selections (--group, --test, --capability)")]
    Selections,
    #[error("the parts were judged by different harnesses or suite descriptions ({0} and {1})")]
    Harnesses(String, String),
    #[error("part {}/{} was interrupted ({signal}): run it again", .part.index, .part.count)]
    Interrupted { part: Partition, signal: String },
    #[error("parts missing: {0}")]
    Missing(String),
}

/// Merges the parts of one partitioned run (`--partition I/N`, every I from 1 to N once, of
/// one port, image, selection and suite descriptions) into a single run: every test once, in
/// the device's listing order, infrastructure errors kept (each labelled with its part),
/// verdict recomputed. Refuses anything else: a missing, repeated or foreign part, a part that
/// is not one, a test reported twice. Whether each part is authentic (signed by a trusted
/// lab) is the caller's to check.
pub fn merge(runs: Vec<Run>) -> Result<Run, MergeError> {
    check_parts(&runs)?;
    let mut iter = runs.into_iter();
    let mut out = iter.next().ok_or(MergeError::Nothing)?;
    // Every run here is a part (check_parts).
    let label = |r: &Run| {
        r.partition
            .map(|p| format!("part {}/{}", p.index, p.count))
            .unwrap_or_default()
    };
    let first_label = label(&out);
    for p in &mut out.problems {
        p.message = format!("{first_label}: {}", p.message);
    }
    let image = |r: &Run| r.firmware.as_ref().map(|f| f.sha256.clone());
    for r in iter {
        if r.port.name != out.port.name {
            return Err(MergeError::Ports(r.port.name, out.port.name));
        }
        if let (Some(a), Some(b)) = (image(&out), image(&r)) {
            if a != b {
                return Err(MergeError::Images(a, b));
            }
        }
        if out.firmware.is_none() {
            out.firmware = r.firmware.clone();
        }
        let l = label(&r);
        out.problems.extend(
            r.problems
                .iter()
                .map(|p| Problem::new(p.stage, format!("{l}: {}", p.message))),
        );
        out.started = out.started.clone().min(r.started.clone());
        out.duration_ms = out.duration_ms.max(r.duration_ms);
        for g in r.groups {
            for t in g.tests {
                if out
                    .groups
                    .iter()
                    .flat_map(|g| &g.tests)
                    .any(|x| x.id == t.id)
                {
                    return Err(MergeError::TestTwice(t.id));
                }
                out.push(&g.name, t);
            }
        }
    }
    out.partition = None;
    out.sort();
    out.verdict = out.decide();
    out.findings = out.classify();
    Ok(out)
}

/// The parts form one whole: partitions `1..=N` of the same `N`, each once, of the same
/// selection, suite descriptions and harness.
fn check_parts(runs: &[Run]) -> Result<(), MergeError> {
    let first = runs.first().ok_or(MergeError::Nothing)?;
    let Some(count) = first.partition.map(|p| p.count) else {
        return Err(MergeError::FirstNotAPart);
    };
    let mut seen = vec![false; count];
    for r in runs {
        let p = r.partition.ok_or_else(|| MergeError::NotAPart {
            port: r.port.name.clone(),
            started: r.started.clone(),
        })?;
        if p.count != count {
            return Err(MergeError::Partitionings {
                part: p,
                first: first.partition.map_or(0, |f| f.index),
                count,
            });
        }
        if p.index == 0 || p.index > count {
            return Err(MergeError::NoSuchPart(p));
        }
        if std::mem::replace(&mut seen[p.index - 1], true) {
            return Err(MergeError::PartTwice(p));
        }
        if r.selection != first.selection {
            return Err(MergeError::Selections);
        }
        if r.suites != first.suites || r.harness != first.harness {
            return Err(MergeError::Harnesses(
                r.harness.clone(),
                first.harness.clone(),
            ));
        }
        if let Some(signal) = &r.interrupted {
            return Err(MergeError::Interrupted {
                part: p,
                signal: signal.clone(),
            });
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !seen[i - 1])
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing(missing.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn run(part: usize, tests: &[(usize, &str, Status)]) -> Run {
        let mut r = Run::new(
            "0",
            crate::sample::port(),
            &format!("2026-01-01T00:00:0{part}Z"),
        );
        r.duration_ms = 10 * part as u64;
        r.partition = Some(Partition {
            index: part,
            count: 2,
        });
        for &(i, id, status) in tests {
            let mut t = Test::new(id, status);
            t.index = Some(i);
            r.push(id.split('/').next().unwrap(), t);
        }
        r.verdict = r.decide();
        r
    }

    #[test]
    fn parts_merge_back_into_listing_order() {
        let a = run(1, &[(0, "a/x", Status::Passed), (2, "b/x", Status::Passed)]);
        let b = run(2, &[(1, "a/y", Status::Failed), (3, "b/y", Status::Passed)]);
        let m = merge(vec![b, a]).unwrap();
        let ids: Vec<&str> = m
            .groups
            .iter()
            .flat_map(|g| g.tests.iter().map(|t| t.id.as_str()))
            .collect();
        assert_eq!(ids, ["a/x", "a/y", "b/x", "b/y"]);
        assert_eq!(m.groups.len(), 2);
        assert_eq!(m.verdict, Verdict::Failed);
        assert_eq!(m.partition, None);
        assert_eq!(m.started, "2026-01-01T00:00:01Z");
        assert_eq!(m.duration_ms, 20);
    }

    #[test]
    fn refuses_mixed_ports_and_duplicates() {
        let a = run(1, &[(0, "a/x", Status::Passed)]);
        let mut b = run(2, &[(1, "a/y", Status::Passed)]);
        b.port.name = "other".into();
        assert!(merge(vec![a.clone(), b])
            .unwrap_err()
            .to_string()
            .contains("port"));
        let dup = run(2, &[(0, "a/x", Status::Passed)]);
        assert!(merge(vec![a.clone(), dup])
            .unwrap_err()
            .to_string()
            .contains("a/x"));
        assert!(merge(vec![]).is_err());
    }

    #[test]
    fn only_a_whole_set_of_parts_merges() {
        let a = run(1, &[(0, "a/x", Status::Passed)]);
        let b = run(2, &[(1, "a/y", Status::Passed)]);
        // One part of two is not the whole.
        let e = merge(vec![a.clone()]).unwrap_err().to_string();
        assert!(e.contains("parts missing: 2/2"), "{e}");
        // The same part twice.
        let e = merge(vec![a.clone(), a.clone()]).unwrap_err().to_string();
        assert!(e.contains("part 1/2 is given twice"), "{e}");
        // Parts of different partitionings.
        let mut c = b.clone();
        c.partition = Some(Partition { index: 2, count: 3 });
        let e = merge(vec![a.clone(), c]).unwrap_err().to_string();
        assert!(e.contains("different partitionings"), "{e}");
        // Not a part at all.
        let mut whole = b.clone();
        whole.partition = None;
        assert!(merge(vec![a.clone(), whole.clone()])
            .unwrap_err()
            .to_string()
            .contains("are not a part"));
        assert!(merge(vec![whole])
            .unwrap_err()
            .to_string()
            .contains("not a part of a partitioned run"));
        // Different selections or suite descriptions.
        let mut d = b.clone();
        d.selection = Some(Selection {
            groups: vec!["a".into()],
            ..Default::default()
        });
        assert!(merge(vec![a.clone(), d])
            .unwrap_err()
            .to_string()
            .contains("different selections"));
        let mut d = b.clone();
        d.suites = Some(SuitesRef {
            version: 9,
            sha256: "x".into(),
        });
        assert!(merge(vec![a.clone(), d])
            .unwrap_err()
            .to_string()
            .contains("different harnesses or suite"));
        let mut d = b.clone();
        d.interrupted = Some("SIGTERM".into());
        assert!(merge(vec![a.clone(), d])
            .unwrap_err()
            .to_string()
            .contains("interrupted"));
        assert!(merge(vec![a, b]).is_ok());
    }

    #[test]
    fn infrastructure_errors_name_their_part() {
        let a = run(1, &[(0, "a/x", Status::Passed)]);
        let mut b = run(2, &[]);
        b.problems.push(Problem::new(Stage::Boot, "no sync"));
        let m = merge(vec![a, b]).unwrap();
        assert_eq!(m.problems, [Problem::new(Stage::Boot, "part 2/2: no sync")]);
        assert_eq!(m.findings[0].category, Category::Infrastructure);
        assert_eq!(m.verdict, Verdict::InfrastructureError);
    }
}
