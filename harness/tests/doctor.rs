//! `fqp doctor` and `fqp devices` on this machine: what is there is reported, what is missing
//! is named with its fix, and the exit status says which.

mod common;

use common::{fqp, repo};

fn run(args: &[&str]) -> (i32, String) {
    let o = fqp().args(args).output().expect("fqp runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
    )
}

#[test]
fn doctor_passes_the_reference_port() {
    let port = repo().join("reference-port");
    let (code, out) = run(&["doctor", "--port", port.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    for what in ["manifest", "toolchain", "emulator", "signing key"] {
        assert!(out.contains(&format!("ok    {what}")), "{what}: {out}");
    }
}

#[test]
fn doctor_names_what_a_probe_port_lacks() {
    let dir = repo().join("target/fqp-tests/doctor-probe-port");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("port.toml"),
        format!(
            r#"capabilities = ["kernel", "fpu"]

[port]
name = "nucleo"
board = "NUCLEO-F411RE"

[build]
crate = {:?}
target = "thumbv7em-none-eabihf"

[flash]
method = "probe-rs"

[flash.probe-rs]
chip = "STM32F411RTEx"

[serial]
usb = {{ vid = "0483", pid = "374b" }}
"#,
            repo().join("reference-port")
        ),
    )
    .unwrap();
    let (code, out) = run(&["doctor", "--port", dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok    manifest"), "{out}");
    assert!(
        out.contains("FAIL  chip") && out.contains("did you mean STM32F411RE"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  probe") && out.contains("no debug probe found"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  console") && out.contains("no serial port is USB 0483:374b"),
        "{out}"
    );
}

#[test]
fn devices_lists_probes_and_ports_and_searches_chips() {
    let (code, out) = run(&["devices"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("debug probes (") && out.contains("serial ports ("),
        "{out}"
    );
    let (code, out) = run(&["devices", "--chips", "nRF52840"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "nRF52840_xxAA"), "{out}");
    let (code, _) = run(&["devices", "--chips", "NoSuchChip"]);
    assert_eq!(code, 1);
}
