//! The firmware crates carry the host workspace's lints: they are outside its workspace (built
//! for the device, in a port's workspace), so `[lints] workspace = true` cannot reach them, and
//! each states the same table. This test keeps them equal, the template's included (what a
//! vendor copies).

mod common;

use common::cargo_manifest as manifest;

#[test]
fn every_firmware_crate_has_the_workspace_lints() {
    let root = manifest(".");
    let workspace = root["workspace"].as_table().unwrap();
    let lints = &workspace["lints"];
    assert!(
        lints["clippy"].get("undocumented_unsafe_blocks").is_some(),
        "the workspace's lints: {lints}"
    );
    let excluded = workspace["exclude"].as_array().unwrap();
    assert!(excluded.len() >= 8, "{excluded:?}");
    for dir in excluded {
        let dir = dir.as_str().unwrap();
        let m = manifest(dir);
        if m.get("workspace").is_some() {
            // A port: its own workspace, whose members inherit.
            assert_eq!(&m["workspace"]["lints"], lints, "{dir}: [workspace.lints]");
            assert_eq!(
                m["lints"]["workspace"].as_bool(),
                Some(true),
                "{dir}: [lints] workspace = true"
            );
        } else {
            assert_eq!(m.get("lints"), Some(lints), "{dir}: [lints]");
        }
    }
}
