//! `fqp init` makes a port that builds and qualifies as generated, and refuses to overwrite.

mod common;

use common::{fqp, qualify, repo, succeeds};

#[test]
fn a_generated_port_builds_and_qualifies_as_is() {
    let base = repo().join("target/fqp-tests/init");
    let _ = std::fs::remove_dir_all(&base);
    // As the README shows it: a directory next to the one fqp is run from, given relatively.
    let cwd = base.join("fqp");
    std::fs::create_dir_all(&cwd).unwrap();
    let dir = base.join("acme-m3");
    let o = succeeds(fqp().current_dir(&cwd).args(["init", "../acme-m3"]).args([
        "--board",
        "Acme \"M3\" devkit",
        "--vendor",
        "Acme",
        "--libs",
        "kernel",
    ]));
    // The next step it prints is a command that runs, from where it was run.
    let said = String::from_utf8_lossy(&o.stdout);
    let next = said
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_suffix("# builds and qualifies it (the template's emulated board)")
        })
        .unwrap_or_else(|| panic!("no next step in: {said}"));
    let mut words = next.split_whitespace();
    let program = words.next().unwrap();
    assert_eq!(
        words.collect::<Vec<_>>(),
        ["qualify", "--port", "../acme-m3"],
        "{said}"
    );
    let help = std::process::Command::new(program)
        .current_dir(&cwd)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{program} (from {said}) does not run: {e}"));
    assert!(help.status.success(), "{said}");
    assert!(
        dir.join(".gitignore").exists(),
        "the port ignores its build output"
    );
    let manifest = std::fs::read_to_string(dir.join("port.toml")).unwrap();
    assert!(manifest.contains("name = \"acme-m3\""), "{manifest}");
    assert!(
        manifest.contains("board = \"Acme \\\"M3\\\" devkit\""),
        "{manifest}"
    );
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"fqp-port-acme-m3\""), "{cargo}");
    assert!(dir.join("PORTING.md").exists());
    // It builds and runs on the template's emulated board, reporting its own name.
    let q = qualify(&dir, "init-acme", &["--group", "queue"]);
    assert_eq!(q.code, 0, "{}", q.explain());
    assert_eq!(q.results["port"]["name"], "acme-m3");
    let serial = std::fs::read_to_string(q.out.join("serial.log")).unwrap();
    assert!(
        serial.contains("port=acme-m3"),
        "the device names the new port"
    );

    // Never over an existing port.
    let again = fqp()
        .arg("init")
        .arg(&dir)
        .args(["--board", "x"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));
}

#[test]
fn libraries_are_wired_into_the_image_and_the_manifest() {
    let base = repo().join("target/fqp-tests/init-libs-port");
    let _ = std::fs::remove_dir_all(&base);
    let init = |name: &str, libs: &str| {
        let dir = base.join(name);
        succeeds(
            fqp()
                .arg("init")
                .arg(&dir)
                .args(["--board", "Acme", "--libs", libs]),
        );
        dir
    };
    // The keystore, kept in the host file the template's storage gives: its group passes on
    // the template's board.
    let dir = init("acme-ks", "keystore,storage");
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains("default = [\"keystore\", \"storage\"]"),
        "{cargo}"
    );
    let q = qualify(&dir, "init-libs-ks", &["--group", "keystore"]);
    assert_eq!(q.code, 0, "{}", q.explain());
    let tests = q.results["groups"][0]["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 5, "{tests:?}");
    // Every library: the manifest declares what they qualify. (Its image outgrows the
    // template board's 64 KiB of RAM, which the build names: regions_over's unit test.)
    let dir = init("acme-all", "net,mqtt,keystore,tls,storage");
    let manifest = std::fs::read_to_string(dir.join("port.toml")).unwrap();
    assert!(
        manifest.contains(
            "capabilities = [\"kernel\", \"test-irq\", \"heap\", \"network\", \"keystore\", \"storage\"]"
        ),
        "{manifest}"
    );
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains("default = [\"net\", \"mqtt\", \"keystore\", \"tls\", \"storage\"]"),
        "{cargo}"
    );
}
