//! # fqp-reports: what a qualification run found, and how it is written down
//!
//! [`Run`] is the one result model; every output (`results.json`, `junit.xml`, the HTML
//! certification report and the Markdown summary) is rendered from it, so they never
//! disagree. `results.json` is the model itself, versioned by [`SCHEMA_VERSION`] and
//! documented in `docs/results.md`.

mod html;
mod junit;
mod markdown;
mod merge;
mod model;
#[cfg(test)]
mod sample;
pub mod sign;

pub use html::render_html;
pub use junit::write_junit;
pub use markdown::render_markdown;
pub use merge::merge;
pub use model::*;

use std::path::Path;

/// Writes `results.json` (pretty, stable field order) to `path`.
pub fn write_json(run: &Run, path: &Path) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(run).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Reads a `results.json`, checking its schema version.
pub fn read_json(path: &Path) -> Result<Run, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let run: Run = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a results file: {e}", path.display()))?;
    if run.schema != SCHEMA_VERSION {
        return Err(format!(
            "{}: schema version {} (this fqp reads {SCHEMA_VERSION})",
            path.display(),
            run.schema
        ));
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
