//! Boards flashed with the vendor's own tool (`flash.method = "command"`), reached over a TCP
//! console or a serial port. The "board" is an emulated MPS2-AN385 started by a fake flash
//! tool (`tests/ports/fake-board/flash-tool.sh`) that copies the image into the board's
//! "flash" and runs it, so everything the harness does with a real board runs for real:
//! the command template, flash once then reset, console by TCP or by path, restart after a
//! fault.

mod common;

use common::{qualify, repo};
use std::path::{Path, PathBuf};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port directory for the fake board; `console` is `tcp:PORT` or `pty`.
fn fake_board(name: &str, console: &str, image: &str) -> (PathBuf, PathBuf) {
    let dir = repo().join("target/fqp-tests").join(format!("{name}-port"));
    let state = dir.join("board");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tool = repo().join("harness/tests/ports/fake-board/flash-tool.sh");
    let tool = tool.display();
    let st = state.display();
    let serial = match console.strip_prefix("tcp:") {
        Some(port) => format!("tcp = \"127.0.0.1:{port}\""),
        None => "path = \"board/tty\"".to_string(),
    };
    let manifest = format!(
        r#"[port]
name = "{name}"
board = "MPS2-AN385 flashed by a vendor tool (emulated)"
capabilities = ["kernel"]

[build]
crate = {crate_dir:?}
target = "thumbv7m-none-eabi"
features = ["selftest"]

[flash]
method = "command"

[flash.command]
flash = ["sh", "{tool}", "write", "{image_arg}", "{st}", "{console}"]
reset = ["sh", "{tool}", "reset", "{st}", "{console}"]
timeout_ms = 20000

[serial]
{serial}

[timeouts]
boot_ms = 10000
grace_ms = 1000
"#,
        crate_dir = repo().join("reference-port"),
        image_arg = image,
    )
    .replace("capabilities = [\"kernel\"]\n", "");
    std::fs::write(dir.join("port.toml"), manifest).unwrap();
    (dir, state)
}

fn stop(state: &Path) {
    if let Ok(pid) = std::fs::read_to_string(state.join("qemu.pid")) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
}

#[test]
fn command_flashed_board_over_tcp_is_flashed_once_and_reset_after_a_fault() {
    let console = format!("tcp:{}", free_port());
    let (port, state) = fake_board("tcp-board", &console, "{bin}");
    let o = qualify(
        &port,
        "tcp-board",
        &[
            "--test",
            "selftest/passes",
            "--test",
            "selftest/hard_fault",
            "--test",
            "selftest/noisy_pass",
            "--retries",
            "0",
        ],
    );
    stop(&state);
    assert_eq!(o.code, 1, "{}", o.explain());
    assert_eq!(o.test("selftest/passes")["status"], "passed");
    assert_eq!(o.test("selftest/hard_fault")["error_kind"], "fault");
    assert_eq!(o.test("selftest/noisy_pass")["status"], "passed");
    let log = std::fs::read_to_string(o.out.join("flash.log")).unwrap();
    // The raw binary the harness made from the ELF is what the board ran.
    assert_eq!(log.matches("flash-tool.sh write ").count(), 1, "{log}");
    assert!(log.contains(".bin "), "{{bin}} was filled: {log}");
    assert!(
        log.contains("flash-tool: reset"),
        "restarted after the fault, not reflashed: {log}"
    );
    // (noisy_pass prints bytes that are not UTF-8.)
    let serial =
        String::from_utf8_lossy(&std::fs::read(o.out.join("serial.log")).unwrap()).into_owned();
    assert!(serial.contains("@FQP READY"), "the console came over TCP");
    o.junit();
}

#[test]
fn command_flashed_board_with_a_serial_console() {
    let (port, state) = fake_board("pty-board", "pty", "{image}");
    let o = qualify(&port, "pty-board", &["--test", "selftest/passes"]);
    stop(&state);
    assert_eq!(o.code, 0, "{}", o.explain());
    let log = std::fs::read_to_string(o.out.join("flash.log")).unwrap();
    assert!(
        log.contains("pty-board/firmware.elf "),
        "{{image}} is the ELF the run built: {log}"
    );
}

#[test]
fn a_failing_flash_tool_is_an_infrastructure_error_with_its_output() {
    let (port, _) = fake_board("broken-tool", "tcp:9", "{image}");
    let text = std::fs::read_to_string(port.join("port.toml")).unwrap();
    // The tool refuses an image that does not exist.
    std::fs::write(
        port.join("port.toml"),
        text.replacen("\"{image}\"", "\"/nonexistent/fw.elf\"", 1),
    )
    .unwrap();
    let o = qualify(&port, "broken-tool", &["--retries", "0"]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(
        err.contains("the flash command `sh ") && err.contains("failed (exit status: 3)"),
        "{err}"
    );
    assert!(
        err.contains("flash-tool: no image at /nonexistent/fw.elf"),
        "{err}"
    );
    // A tool that is not installed.
    std::fs::write(
        port.join("port.toml"),
        text.replace("[\"sh\", ", "[\"vendor-flash-not-installed\", "),
    )
    .unwrap();
    let o = qualify(&port, "missing-tool", &["--retries", "0"]);
    assert_eq!(o.code, 2, "{}", o.explain());
    let err = o.results["problems"][0]["message"].as_str().unwrap();
    assert!(
        err.contains("is vendor-flash-not-installed installed and on PATH?"),
        "{err}"
    );
}
