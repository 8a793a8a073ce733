//! The crate graph points down only (docs/architecture.md, "Crates and layers"): every path
//! dependency of every crate of the tree, dev- and build-dependencies included, is in the
//! crate's own layer or below.

mod common;

use common::{cargo_manifest, repo};
use std::path::{Component, Path, PathBuf};

/// The layer of the crate in `dir` (relative to the tree's root), as architecture.md draws it.
fn layer(dir: &str) -> u8 {
    match dir {
        "kernel" => 0,
        d if d.starts_with("libs/") => 1,
        "reports" | "test-suites/protocol" => 2,
        d if d.starts_with("test-suites/") => 3,
        "harness" | "reference-port" | "port-template" => 4,
        d if d.starts_with("harness/") => 4,
        other => panic!("{other}: a crate docs/architecture.md does not place in a layer"),
    }
}

/// `path` made relative to the tree's root, `..` resolved.
fn tidy(path: &Path) -> String {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out.to_string_lossy().replace('\\', "/")
}

/// The path dependencies of the crate in `dir`, as directories relative to the root.
fn path_dependencies(dir: &str) -> Vec<String> {
    let manifest = cargo_manifest(dir);
    let mut deps = Vec::new();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(table) = manifest.get(section).and_then(|t| t.as_table()) else {
            continue;
        };
        for spec in table.values() {
            if let Some(path) = spec.get("path").and_then(|p| p.as_str()) {
                deps.push(tidy(&Path::new(dir).join(path)));
            }
        }
    }
    deps
}

#[test]
fn no_crate_depends_on_a_layer_above_its_own() {
    let root = cargo_manifest(".");
    let workspace = root["workspace"].as_table().unwrap();
    let crates: Vec<&str> = ["members", "exclude"]
        .iter()
        .flat_map(|k| workspace[*k].as_array().unwrap())
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(crates.len() > 20, "{crates:?}");
    let mut upward = Vec::new();
    for dir in &crates {
        for dep in path_dependencies(dir) {
            if layer(&dep) > layer(dir) {
                upward.push(format!(
                    "{dir} (layer {}) -> {dep} (layer {})",
                    layer(dir),
                    layer(&dep)
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "arrows pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_layers_are_the_architecture_pages() {
    // A crate moved to another layer is moved in the page too.
    let page = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    for (dir, n) in [
        ("kernel/", 0),
        ("libs/port", 1),
        ("test-suites/protocol", 2),
        ("test-suites/testkit", 3),
        ("harness/", 4),
    ] {
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_else(|| panic!("no row for layer {n}"));
        assert!(row.contains(dir), "layer {n} should list {dir}: {row}");
        assert_eq!(layer(dir.trim_end_matches('/')), n);
    }
}
