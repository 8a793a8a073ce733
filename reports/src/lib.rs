//! # fqp-reports: what a qualification run found, and how it is written down
//!
//! [`Run`] is the one result model; every output (`results.json`, `junit.xml`, and the human
//! report) is rendered from it, so they never disagree. `results.json` is the model itself,
//! versioned by [`SCHEMA_VERSION`].

mod junit;
mod merge;
mod model;
#[cfg(test)]
mod sample;

pub use junit::write_junit;
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
