//! # fqp-reports: what a qualification run found, and how it is written down
//!
//! [`Run`] is the one result model; every output (`results.json`, `junit.xml`, the HTML
//! certification report and the Markdown summary) is rendered from it, so they never
//! disagree. `results.json` is the model itself, versioned by [`SCHEMA_VERSION`] and
//! documented in `docs/results.md`.

pub mod files;
mod html;
mod junit;
mod markdown;
mod merge;
mod model;
#[cfg(test)]
mod sample;
pub mod sign;

pub use html::render_html;
pub use junit::{write_junit, JunitError};
pub use markdown::render_markdown;
pub use merge::{merge, MergeError};
pub use model::*;

use std::path::{Path, PathBuf};

/// A `results.json` could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("results.json: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a results file: {0}")]
    NotResults(#[source] serde_json::Error),
    #[error("schema version {0} (this fqp reads {SCHEMA_VERSION})")]
    Schema(u32),
    /// What was wrong with the file at `path`.
    #[error("{}: {problem}", .path.display())]
    In {
        path: PathBuf,
        problem: Box<ResultsError>,
    },
}

/// `results.json`'s text: pretty, in a stable field order.
pub fn to_json(run: &Run) -> Result<String, ResultsError> {
    serde_json::to_string_pretty(run)
        .map(|t| t + "\n")
        .map_err(ResultsError::Encode)
}

/// Reads a `results.json`, checking its schema version.
pub fn read_json(path: &Path) -> Result<Run, ResultsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(&text).map_err(|problem| ResultsError::In {
        path: path.to_path_buf(),
        problem: Box::new(problem),
    })
}

/// Parses the text of a `results.json`, checking its schema version.
pub fn parse_json(text: &str) -> Result<Run, ResultsError> {
    let run: Run = serde_json::from_str(text).map_err(ResultsError::NotResults)?;
    if run.schema != SCHEMA_VERSION {
        return Err(ResultsError::Schema(run.schema));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    /// Every key `results.json` can hold, with the path that leads to it.
    fn keys(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    // `details` keys are the device's, not the model's.
                    if path.ends_with("details") {
                        continue;
                    }
                    out.push((k.clone(), format!("{path}.{k}")));
                    keys(v, &format!("{path}.{k}"), out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, path, out)),
            _ => {}
        }
    }

    #[test]
    fn the_reference_documents_every_field() {
        let doc = include_str!("../../docs/results.md");
        let mut run = crate::sample::run();
        run.partition = Some(crate::Partition { index: 1, count: 2 });
        let mut found = Vec::new();
        keys(&serde_json::to_value(&run).unwrap(), "", &mut found);
        for (key, path) in found {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/results.md does not document {path}"
            );
        }
        assert!(doc.contains(&format!("schema {}", crate::SCHEMA_VERSION)));
    }
}

/// Result files come from elsewhere (a vendor, another lab): reading one, whatever it holds,
/// never panics, and whatever reads renders.
#[cfg(test)]
mod fuzz {
    proptest::proptest! {
        #![proptest_config(fqp_fuzzing::config())]

        #[test]
        fn fuzz_results_file(input in fqp_fuzzing::inputs(seeds(), 400)) {
            if let Ok(run) = crate::parse_json(&String::from_utf8_lossy(&input)) {
                let _ = (run.summary(), run.exit_code(), run.decide(), run.headline());
                let _ = crate::render_html(&run);
                let _ = crate::render_markdown(&run);
                crate::write_junit(&run, std::io::sink()).unwrap();
            }
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut run = crate::sample::run();
        let mut seeds = vec![crate::to_json(&run).unwrap().into_bytes()];
        run.partition = Some(crate::Partition { index: 1, count: 2 });
        run.selection = Some(crate::Selection::default());
        seeds.push(serde_json::to_vec(&run).unwrap());
        seeds
    }
}

/// `docs/results.schema.json`: the JSON Schema of `results.json`, generated from the model.
#[cfg(test)]
mod schema {
    use std::path::Path;

    fn committed() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results.schema.json")
    }

    fn generated() -> String {
        let mut schema = serde_json::to_value(schemars::schema_for!(crate::Run)).unwrap();
        schema["title"] = "fqp results.json".into();
        schema["$comment"] = format!(
            "schema version {}; generated from fqp-reports' model by `FQP_BLESS=1 cargo test -p fqp-reports`",
            crate::SCHEMA_VERSION
        )
        .into();
        serde_json::to_string_pretty(&schema).unwrap() + "\n"
    }

    #[test]
    fn the_committed_schema_is_the_models() {
        let path = committed();
        if std::env::var_os("FQP_BLESS").is_some() {
            std::fs::write(&path, generated()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == generated(),
            "docs/results.schema.json is not the model's schema: run FQP_BLESS=1 cargo test -p fqp-reports, and review the change (an incompatible one needs a new SCHEMA_VERSION)"
        );
    }

    #[test]
    fn results_validate_against_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(&generated()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut run = crate::sample::run();
        run.partition = Some(crate::Partition { index: 1, count: 2 });
        let good = serde_json::to_value(&run).unwrap();
        assert!(validator.is_valid(&good));
        let mut bad = good.clone();
        bad["groups"][0]["tests"][0]["status"] = "sort of".into();
        assert!(!validator.is_valid(&bad), "an unknown status is caught");
    }
}
