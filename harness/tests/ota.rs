//! `fqp ota sign` and `fqp ota inspect` as a user runs them: the lab's code-signing key, the
//! exit statuses, and what a tampered image and a stranger's certificate are told.

mod common;

use common::{fqp, repo, succeeds};
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    let d = repo().join("target/fqp-tests/ota").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn an_image_signed_with_the_lab_key_inspects_clean_and_a_tampered_one_does_not() {
    let d = dir("sign");
    let raw = d.join("fw.bin");
    std::fs::write(&raw, (0..5000u32).map(|i| i as u8).collect::<Vec<u8>>()).unwrap();
    let img = d.join("fw.img");
    let sign = |args: &[&str]| {
        let mut c = fqp();
        c.args(["ota", "sign"])
            .arg(&raw)
            .arg("-o")
            .arg(&img)
            .args(args);
        c.output().unwrap()
    };
    let o = sign(&[
        "--board",
        "mps2-an385",
        "--version",
        "2.1.0",
        "--load-address",
        "0x10000",
        "--security-counter",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("image 2.1.0 for mps2-an385, 5000 bytes at 0x10000"));
    let o = succeeds(fqp().args(["ota", "inspect", "--json"]).arg(&img));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["signature"], "valid");
    assert_eq!(v["file_signature"], true);
    assert_eq!(v["security_counter"], 4);
    assert_eq!(v["load_address"], 0x10000);

    // One byte of the payload changed: both the payload and the file signature fail (1).
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[300] ^= 1;
    std::fs::write(&img, &bytes).unwrap();
    let o = fqp().args(["ota", "inspect"]).arg(&img).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("payload: ALTERED"), "{}", text(&o));
    assert!(text(&o).contains("file signature: REFUSED"), "{}", text(&o));

    // Checked against another certificate: the signer is not its key.
    bytes[300] ^= 1;
    std::fs::write(&img, &bytes).unwrap();
    let other = common::lab().join("pki-root.crt");
    let o = fqp()
        .args(["ota", "inspect", "--cert"])
        .arg(&other)
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("REFUSED: untrusted signer"),
        "{}",
        text(&o)
    );
}

#[test]
fn what_cannot_be_signed_is_refused_with_the_fix() {
    let d = dir("refused");
    let raw = d.join("fw.bin");
    std::fs::write(&raw, b"raw bytes").unwrap();
    let run = |args: &[&str]| {
        let mut c = fqp();
        c.args(["ota", "sign"])
            .arg(&raw)
            .args(["-o"])
            .arg(d.join("x.img"))
            .args(args);
        let o = c.output().unwrap();
        (o.status.code(), text(&o))
    };
    // A raw binary without its address.
    let (code, out) = run(&["--board", "b", "--version", "1.0.0"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("--load-address"), "{out}");
    // A version that is not major.minor.patch.
    let (code, out) = run(&["--board", "b", "--version", "1.0", "--load-address", "0"]);
    assert_eq!(code, Some(2));
    assert!(out.contains("major.minor.patch"), "{out}");
    // A key that is not one.
    let key = d.join("bad.key");
    std::fs::write(&key, "junk").unwrap();
    let (code, out) = run(&[
        "--board",
        "b",
        "--version",
        "1.0.0",
        "--load-address",
        "0",
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(out.contains("fix:"), "{out}");
    assert!(!d.join("x.img").exists(), "nothing written");
}

/// `fqp ota powercut`'s smoke (the campaign itself: docs/ota.md): the reference board's power
/// cut at a moment of an update, in a run of its own; the board boots a valid image after it
/// and completes the update; the report counts the cut by phase.
/// Runs `fqp ota powercut` on the reference port with `args` (one cut), into `dir`: it must
/// report nothing bricked and the update completed; its report.
fn powercut(name: &str, args: &[&str]) -> (PathBuf, serde_json::Value) {
    let d = dir(name);
    let o = succeeds(
        fqp()
            .args(["ota", "powercut"])
            .args(args)
            .arg("--port")
            .arg(repo().join("reference-port"))
            .arg("--out")
            .arg(&d),
    );
    let said = text(&o);
    assert!(
        said.contains("0 bricked, 1 of 1 updates completed"),
        "{said}"
    );
    let report = serde_json::from_str(&std::fs::read_to_string(d.join("powercut.json")).unwrap());
    (d, report.unwrap())
}

#[test]
fn power_cuts_in_the_middle_of_an_update_brick_nothing() {
    let (d, report) = powercut("powercut", &["--cuts", "1", "--seed", "3"]);
    assert_eq!(report["cuts"], 1, "{report}");
    assert_eq!(report["bricked"], 0, "{report}");
    assert_eq!(report["completed"], 1, "{report}");
    let each = report["each"].as_array().unwrap();
    assert!(
        each.iter()
            .all(|c| c["after"].as_array().is_some_and(|a| !a.is_empty())),
        "the boot loader spoke after every cut: {report}"
    );
    // The runs of cuts the board survived are not kept.
    assert!(!d.join("cut-1").exists() && !d.join("clean").exists());
}

/// `fqp ota powercut --every-op`'s smoke (the campaign: docs/ota.md): the update's flash
/// operations counted by phase, and the power cut torn half way through the middle operation
/// of the boot loader's swap; the boot loader finishes the swap on the next start and the
/// update completes.
#[test]
fn a_power_cut_torn_in_the_middle_of_the_swap_bricks_nothing() {
    let (_, report) = powercut(
        "powercut-op",
        &["--every-op", "--phase", "swap", "--sample", "1", "--torn"],
    );
    let ops = &report["flash_ops"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let (swap_from, swap_to) = (n(&ops["swap"][0]), n(&ops["swap"][1]));
    // A download of blocks, then a swap of three copies a sector, then the confirmation.
    assert!(n(&ops["download"][1]) > 100, "{report}");
    assert!(swap_to - swap_from > 1000, "{report}");
    assert_eq!(n(&ops["total"]), n(&ops["first_boot"][1]), "{report}");
    let cut = &report["each"][0];
    assert_eq!(
        cut["at"]["flash_op"],
        (swap_from + swap_to).div_ceil(2),
        "{report}"
    );
    assert_eq!(cut["at"]["torn"], true, "{report}");
    assert_eq!(cut["phase"], "swap", "{report}");
    let after = cut["after"][0].as_str().unwrap_or_default();
    assert!(
        after.starts_with("installed the new image (swap "),
        "{report}"
    );
    assert_eq!(report["bricked"], 0, "{report}");
}

/// A test every device of a pool runs at once (`pool = true` in suites.toml): with two
/// emulated boards, both wait for each other, then one group deployment reaches both; the
/// run has one result for it, naming both devices.
#[test]
fn a_group_deployment_reaches_both_devices_of_a_pool() {
    let d = dir("pool");
    let o = succeeds(
        fqp()
            .args(["qualify", "--devices", "2", "--test"])
            .arg("ota/a_group_deployment_reaches_every_device_of_the_pool")
            .arg("--port")
            .arg(repo().join("reference-port"))
            .arg("--out")
            .arg(&d),
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    let tests: Vec<&serde_json::Value> = results["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["tests"].as_array().unwrap())
        .collect();
    assert_eq!(tests.len(), 1, "one result for the pool: {}", text(&o));
    let t = tests[0];
    assert_eq!(t["status"], "passed", "{t}");
    assert_eq!(t["details"]["devices"], "1, 2", "{t}");
    let said = t["output"].to_string();
    assert!(
        said.contains("succeeded on all 2 devices of the pool"),
        "{t}"
    );
    for device in ["[1] ", "[2] "] {
        assert!(said.contains(device), "each device's output: {t}");
    }
    for serial in ["serial-1.log", "serial-2.log"] {
        let log = std::fs::read_to_string(d.join(serial)).unwrap();
        assert!(log.contains("every device of the run is here"), "{serial}");
    }
}
