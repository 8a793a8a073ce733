use super::*;

const GOOD: &str = r#"
[port]
name = "demo"
board = "Demo board"

[build]
target = "thumbv7m-none-eabi"

[kernel]
tick_hz = 1000
time_slicing = false

[flash]
method = "qemu"

[flash.qemu]
machine = "mps2-an385"
"#;

fn load_str(name: &str, text: &str) -> Result<Manifest, ManifestError> {
    let dir = std::env::temp_dir().join(format!("fqp-manifest-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("port.toml"), text).unwrap();
    let r = load(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

#[test]
fn good_manifest_loads_with_defaults() {
    let m = load_str("good", GOOD).unwrap();
    assert_eq!(m.build.profile, "release");
    assert_eq!(m.timeouts.boot_ms, 10_000);
    assert_eq!(m.flash.qemu().unwrap().binary, "qemu-system-arm");
    assert_eq!(m.flash.method(), "qemu");
    let env = m.kernel_env();
    assert!(env.contains(&("FQP_TICK_HZ".into(), "1000".into())));
    assert!(env.contains(&("FQP_TIME_SLICING".into(), "0".into())));
}

#[test]
fn crate_dir_is_absolute_from_a_relative_port_path() {
    let dir = std::env::temp_dir().join(format!("fqp-manifest-{}-rel", std::process::id()));
    std::fs::create_dir_all(dir.join("fw")).unwrap();
    std::fs::write(
        dir.join("port.toml"),
        GOOD.replace("[build]", "[build]\ncrate = \"fw\""),
    )
    .unwrap();
    let cwd = std::env::current_dir().unwrap();
    let rel = relative(&dir, &cwd);
    let m = load(&rel).unwrap();
    assert!(m.path.is_absolute(), "{}", m.path.display());
    assert_eq!(m.crate_dir(), dir.join("fw").canonicalize().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_says_what_to_pass() {
    let e = load(Path::new("/nonexistent/port")).unwrap_err();
    assert!(e.to_string().contains("--port"), "{e}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = load_str("typo", &GOOD.replace("board = ", "bord = ")).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("bord"));
    assert!(e.problem.contains("line 4"), "{}", e.problem);
}

#[test]
fn missing_section_is_named() {
    let e = load_str(
        "nobuild",
        &GOOD.replace("[build]\ntarget = \"thumbv7m-none-eabi\"\n", ""),
    )
    .unwrap_err();
    assert!(e.problem.contains("build"), "{e}");
}

#[test]
fn bad_values_of_an_emulated_port_name_key_and_fix() {
    let cases = [
        (
            GOOD.replace("method = \"qemu\"", "method = \"jtag\""),
            "flash.method",
            "qemu",
        ),
        (
            GOOD.replace("[flash.qemu]\nmachine = \"mps2-an385\"\n", ""),
            "flash.qemu",
            "machine",
        ),
        (
            GOOD.replace("tick_hz = 1000", "tickhz = 1000"),
            "kernel",
            "docs/port-manifest.md",
        ),
        (
            GOOD.replace("tick_hz = 1000", "tick_hz = \"fast\""),
            "kernel",
            "tick_hz = 1000",
        ),
        (
            GOOD.replace("name = \"demo\"", "name = \"my port!\""),
            "port.name",
            "letters",
        ),
        (
            format!("{GOOD}\n[timeouts]\nfactor = 0.0\n"),
            "timeouts.factor",
            "between",
        ),
    ];
    assert_named(&cases);
}

#[test]
fn bad_values_of_a_board_name_key_and_fix() {
    let cases = [
        (
            GOOD.replace("method = \"qemu\"", "method = \"probe-rs\""),
            "flash.probe-rs",
            "chip",
        ),
        (
            board("[flash.probe-rs]\nchip = \"STM32F411RETx\"\nprobe = \"stlink\"\n")
                .replace("method = \"command\"", "method = \"probe-rs\""),
            "flash.probe-rs.probe",
            "VID:PID",
        ),
        (
            board("[flash.probe-rs]\nchip = \"STM32F411RETx\"\nprotocol = \"usb\"\n")
                .replace("method = \"command\"", "method = \"probe-rs\""),
            "flash.probe-rs.protocol",
            "docs/port-manifest.md",
        ),
        (
            board("[flash.command]\nflash = [\"st-flash\", \"write\", \"{elf}\"]\n"),
            "flash.command.flash",
            "{image}",
        ),
        (
            board("[flash.command]\nflash = []\n"),
            "flash.command.flash",
            "program",
        ),
        (
            board("[flash.command]\nflash = [\"x\"]\n").replace(
                "path = \"/dev/ttyACM0\"",
                "usb = { vid = \"ST\", pid = \"374b\" }",
            ),
            "serial.usb.vid",
            "hex",
        ),
        (
            board("[flash.command]\nflash = [\"x\"]\n").replace(
                "path = \"/dev/ttyACM0\"",
                "path = \"/dev/ttyACM0\"\ntcp = \"lab:4000\"",
            ),
            "serial",
            "one way",
        ),
        (
            board("[flash.command]\nflash = [\"x\"]\n").replace(
                "path = \"/dev/ttyACM0\"",
                "path = \"/dev/ttyACM0\"\nparity = \"mark\"",
            ),
            "serial.parity",
            "even",
        ),
        (
            board("[flash.command]\nflash = [\"x\"]\n").replace("path = \"/dev/ttyACM0\"\n", ""),
            "serial.path",
            "serial.tcp",
        ),
        (
            format!("{GOOD}\n[[devices]]\nid = \"a\"\n"),
            "devices",
            "--devices N",
        ),
    ];
    assert_named(&cases);
}

/// Each manifest text is refused naming its key, with a fix that mentions the text given.
fn assert_named(cases: &[(String, &str, &str)]) {
    for (text, key, fix) in cases {
        let e = load_str(key, text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(*key), "{e}");
        assert!(
            e.fix.contains(fix),
            "fix for {key} should mention {fix:?}: {e}"
        );
    }
}

/// A board port: method "command" with `flash` (the given tables), console on a path.
fn board(flash: &str) -> String {
    GOOD.replace("method = \"qemu\"", "method = \"command\"")
        .replace("[flash.qemu]\nmachine = \"mps2-an385\"\n", flash)
        .replace("[kernel]", "[serial]\npath = \"/dev/ttyACM0\"\n\n[kernel]")
}

#[test]
fn board_manifests_load() {
    let m = load_str(
        "board",
        &board("[flash.command]\nflash = [\"st-flash\", \"write\", \"{bin}\", \"0x8000000\"]\n\n[[devices]]\nid = \"b1\"\nserial = \"/dev/ttyACM1\"\n"),
    )
    .unwrap();
    let Flash::Command(c) = &m.flash else {
        panic!("a command-flashed board: {:?}", m.flash)
    };
    assert_eq!(c.timeout_ms, 120_000);
    assert_eq!(m.devices[0].serial.as_deref(), Some("/dev/ttyACM1"));
}

#[test]
fn syntax_error_has_position() {
    let e = load_str("syntax", "[port\nname=1").unwrap_err();
    assert!(e.problem.starts_with("line 1"), "{}", e.problem);
}

proptest::proptest! {
    #![proptest_config(fqp_fuzzing::config())]

    /// Whatever a port manifest holds, loading it never panics: it is a manifest, or an
    /// error naming the file and the fix.
    #[test]
    fn fuzz_manifest(input in fqp_fuzzing::inputs(manifest_seeds(), 400)) {
        let file = Path::new("/fuzz/port.toml");
        if let Err(e) = parse(&String::from_utf8_lossy(&input), file) {
            proptest::prop_assert!(e.to_string().contains("fix:"), "{e}");
        }
    }
}

/// The manifests of the tree's ports.
fn manifest_seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        "reference-port",
        "port-template",
        "harness/tests/ports/selftest",
    ]
    .iter()
    .map(|p| std::fs::read(root.join(p).join("port.toml")).unwrap())
    .collect()
}

#[test]
fn a_target_cargo_would_build_for_instead_is_named_with_both_files() {
    let dir = std::env::temp_dir().join(format!("fqp-manifest-{}-target", std::process::id()));
    std::fs::create_dir_all(dir.join(".cargo")).unwrap();
    std::fs::write(dir.join("port.toml"), GOOD).unwrap();
    let config = |target: &str| {
        std::fs::write(
            dir.join(".cargo/config.toml"),
            format!("[build]\ntarget = \"{target}\"\n"),
        )
        .unwrap()
    };
    config("thumbv7m-none-eabi");
    assert!(load(&dir).is_ok(), "the same target in both");
    config("thumbv7em-none-eabihf");
    let e = load(&dir).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("build.target"), "{e}");
    assert!(
        e.problem.contains("thumbv7em-none-eabihf") && e.problem.contains(".cargo/config.toml"),
        "{e}"
    );
    assert!(e.fix.contains("same target"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hard_float_target_and_the_fpu_capability_go_together() {
    let hard = GOOD.replace("thumbv7m-none-eabi", "thumbv7em-none-eabihf");
    let e = load_str("hf", &hard).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("capabilities"), "{e}");
    assert!(
        e.problem.contains("hard-float") && e.fix.contains("add \"fpu\""),
        "{e}"
    );
    let declared = format!("capabilities = [\"kernel\", \"fpu\"]\n{hard}");
    assert!(load_str("hf-fpu", &declared).is_ok());
    let soft = format!("capabilities = [\"kernel\", \"fpu\"]\n{GOOD}");
    let e = load_str("sf-fpu", &soft).unwrap_err();
    assert!(e.problem.contains("soft-float"), "{e}");
}

#[test]
fn a_boot_loader_section_is_checked() {
    let m = load_str("boot", &format!("{GOOD}\n[boot]\ncrate = \"boot\"\n")).unwrap();
    let b = m.boot.unwrap();
    assert_eq!(
        (b.flash_bytes, b.sector_bytes, b.version),
        (2 << 20, 4096, None)
    );
    let cases = [
        (
            board("[flash.command]\nflash = [\"true\"]\n") + "\n[boot]\ncrate = \"boot\"\n",
            "boot",
            "fqp ota sign",
        ),
        (
            format!("{GOOD}\n[boot]\ncrate = \"boot\"\nversion = \"1.2\"\n"),
            "boot.version",
            "1.0.0",
        ),
        (
            format!("{GOOD}\n[boot]\ncrate = \"boot\"\nflash_bytes = 16384\n"),
            "boot.flash_bytes",
            "at least 5",
        ),
        (
            format!("{GOOD}\n[boot]\ncrate = \"boot\"\nsector_bytes = 0\n"),
            "boot.flash_bytes",
            "whole number",
        ),
    ];
    assert_named(&cases);
}
