//! `fqp bench`: the performance group's figures as a table, and the comparison with a saved
//! run that catches regressions.
//!
//! Which way is better depends on the unit: counts per second (`/s`) should not fall,
//! latencies in `instructions` should not rise; figures in other units are shown, not judged.

use fqp_reports::Run;
use std::path::Path;

/// The group `fqp bench` runs.
pub const GROUP: &str = "perf";

/// A saved run could not be read as a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline {}: {source}", .path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "baseline {}: not an fqp results.json: {source}\n  fix: give the results.json of an \
         earlier `fqp bench`",
        .path.display()
    )]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// A saved run's results.
pub fn load(path: &Path) -> Result<Run, BaselineError> {
    let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BaselineError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The table, and the figures that got worse beyond the tolerance.
pub struct Comparison {
    pub table: String,
    pub regressions: Vec<String>,
}

/// Every metric of the group's tests: `(test/metric, value, unit)`.
fn figures(run: &Run) -> Vec<(String, f64, String)> {
    run.groups
        .iter()
        .filter(|g| g.name == GROUP)
        .flat_map(|g| &g.tests)
        .flat_map(|t| {
            t.metrics.iter().map(move |m| {
                // `test`, or `test/metric` where the test reports several.
                let test = t.id.strip_prefix("perf/").unwrap_or(&t.id);
                let name = if m.name == test {
                    test.to_string()
                } else {
                    format!("{test}/{}", m.name)
                };
                (name, m.value, m.unit.clone())
            })
        })
        .collect()
}

/// Whether `ratio` (new / old) is worse than `tolerance` percent for a figure in `unit`.
fn worse(unit: &str, ratio: f64, tolerance: f64) -> bool {
    let t = tolerance / 100.0;
    match unit {
        "/s" => ratio < 1.0 - t,
        "instructions" => ratio > 1.0 + t,
        _ => false,
    }
}

/// Compares `run` with `baseline`. `selected` are the run's `--test` patterns (empty: every
/// benchmark ran): a baseline figure of a benchmark left out is not missing.
pub fn compare(
    run: &Run,
    baseline: Option<&Run>,
    tolerance: f64,
    selected: &[String],
) -> Comparison {
    let old = baseline.map(figures).unwrap_or_default();
    let mut table = String::new();
    let mut regressions = Vec::new();
    let header = match baseline {
        Some(_) => format!(
            "{:<50} {:>12} {:<13} {:>12} {:>7}\n",
            "figure", "value", "unit", "baseline", "ratio"
        ),
        None => format!("{:<50} {:>12} {:<13}\n", "figure", "value", "unit"),
    };
    table.push_str(header.trim_end());
    table.push('\n');
    for (name, value, unit) in figures(run) {
        let mut line = format!("{name:<50} {value:>12} {unit:<13}");
        if baseline.is_some() {
            match old.iter().find(|(n, ..)| *n == name) {
                Some((_, was, _)) if *was > 0.0 => {
                    let ratio = value / was;
                    let mark = if worse(&unit, ratio, tolerance) {
                        regressions.push(format!("{name} {ratio:.3}×"));
                        "  WORSE"
                    } else {
                        ""
                    };
                    line.push_str(&format!(" {was:>12} {ratio:>6.3}×{mark}"));
                }
                _ => line.push_str(&format!(" {:>12} {:>7}", "-", "new")),
            }
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    if baseline.is_some() {
        // Benchmarks left out of this run (`--test`) have no figures to miss.
        let ran = |figure: &str| {
            let id = format!("{GROUP}/{}", figure.split('/').next().unwrap_or(figure));
            selected.is_empty() || selected.iter().any(|p| id.contains(p.as_str()))
        };
        for (name, ..) in &old {
            if ran(name) && !figures(run).iter().any(|(n, ..)| n == name) {
                regressions.push(format!("{name} missing"));
                table.push_str(&format!("{name:<50} {:>12}  (in the baseline only)\n", "-"));
            }
        }
    }
    Comparison {
        table: table.trim_end().to_string(),
        regressions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fqp_reports::{Group, Metric, Status, Test};

    fn run_with(figures: &[(&str, &str, f64, &str)]) -> Run {
        let mut run = crate::qualify::test_run();
        let mut g = Group {
            name: GROUP.into(),
            tests: vec![],
        };
        for (test, metric, value, unit) in figures {
            let mut t = Test::new(&format!("{GROUP}/{test}"), Status::Passed);
            t.metrics.push(Metric {
                name: metric.to_string(),
                value: *value,
                unit: unit.to_string(),
            });
            g.tests.push(t);
        }
        run.groups.push(g);
        run
    }

    #[test]
    fn drops_beyond_the_tolerance_are_regressions_whichever_way_is_better() {
        let old = run_with(&[
            ("a", "a", 1000.0, "/s"),
            ("b", "b", 100.0, "instructions"),
            ("c", "c", 5.0, "B"),
            ("gone", "gone", 1.0, "/s"),
        ]);
        let new = run_with(&[
            ("a", "a", 970.0, "/s"),
            ("b", "b", 101.0, "instructions"),
            ("c", "c", 50.0, "B"),
        ]);
        let c = compare(&new, Some(&old), 2.0, &[]);
        assert_eq!(c.regressions, vec!["a 0.970×", "gone missing"]);
        // A run of some benchmarks only misses none of the others.
        let some = compare(&new, Some(&old), 2.0, &["perf/a".to_string()]);
        assert_eq!(some.regressions, vec!["a 0.970×"]);
        assert!(c.table.contains("0.970×  WORSE"), "{}", c.table);
        assert!(c.table.contains("1.010×"), "{}", c.table);
        let same = compare(&old, Some(&old), 0.0, &[]);
        assert!(same.regressions.is_empty());
        // Without a baseline: the figures only.
        let alone = compare(&new, None, 2.0, &[]);
        assert!(alone.regressions.is_empty() && !alone.table.contains("ratio"));
    }
}
