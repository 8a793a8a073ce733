//! Combining the results of partial runs (CI partitions, or runs repeated per group) into one.

use crate::model::Run;

/// Merges runs of one port and one firmware image into a single run: every test once, in the
/// device's listing order, infrastructure errors kept (each labelled with its part), verdict
/// recomputed. Refuses runs of different ports or images, and a test reported twice.
pub fn merge(runs: Vec<Run>) -> Result<Run, String> {
    let mut iter = runs.into_iter();
    let mut out = iter.next().ok_or("nothing to merge")?;
    let label = |r: &Run| match r.partition {
        Some(p) => format!("part {}/{}", p.index, p.count),
        None => "a run".to_string(),
    };
    let first_label = label(&out);
    for e in &mut out.infrastructure_errors {
        *e = format!("{first_label}: {e}");
    }
    let image = |r: &Run| r.firmware.as_ref().map(|f| f.sha256.clone());
    for r in iter {
        if r.port.name != out.port.name {
            return Err(format!(
                "cannot merge results of port {:?} with port {:?}",
                r.port.name, out.port.name
            ));
        }
        if let (Some(a), Some(b)) = (image(&out), image(&r)) {
            if a != b {
                return Err(format!(
                    "cannot merge results of different firmware images ({a} and {b})"
                ));
            }
        }
        if out.firmware.is_none() {
            out.firmware = r.firmware.clone();
        }
        let l = label(&r);
        out.infrastructure_errors
            .extend(r.infrastructure_errors.iter().map(|e| format!("{l}: {e}")));
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
                    return Err(format!(
                        "test {} appears in more than one of the results",
                        t.id
                    ));
                }
                out.push(&g.name, t);
            }
        }
    }
    out.partition = None;
    out.sort();
    out.verdict = out.decide();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn run(part: usize, tests: &[(usize, &str, Status)]) -> Run {
        let port = Port {
            name: "p".into(),
            board: "b".into(),
            vendor: None,
            description: None,
            capabilities: vec![],
            manifest: "m".into(),
        };
        let mut r = Run::new("0", port, &format!("2026-01-01T00:00:0{part}Z"));
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
        assert!(merge(vec![a.clone(), b]).unwrap_err().contains("port"));
        let dup = run(2, &[(0, "a/x", Status::Passed)]);
        assert!(merge(vec![a.clone(), dup]).unwrap_err().contains("a/x"));
        assert!(merge(vec![]).is_err());
    }

    #[test]
    fn infrastructure_errors_name_their_part() {
        let a = run(1, &[(0, "a/x", Status::Passed)]);
        let mut b = run(2, &[]);
        b.infrastructure_errors.push("no sync".into());
        let m = merge(vec![a, b]).unwrap();
        assert_eq!(m.infrastructure_errors, ["part 2/2: no sync"]);
        assert_eq!(m.verdict, Verdict::InfrastructureError);
    }
}
