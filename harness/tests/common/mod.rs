//! Running the `fqp` binary in integration tests.

#![allow(dead_code)] // each test binary uses part of this

use std::path::{Path, PathBuf};
use std::process::Command;

/// The self-test port: the reference board's firmware with tests that fail in every way.
pub fn selftest_port() -> PathBuf {
    repo().join("harness/tests/ports/selftest")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `fqp` binary, signing with a lab key kept under `target/` (not the user's own), and
/// building every port's firmware where `scripts/qualify-reference.sh` builds the reference
/// port's: the ports of the tests share one build of the target's core library.
pub fn fqp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fqp"));
    c.env("FQP_LAB", lab());
    c.env(
        "FQP_FIRMWARE_TARGET_DIR",
        repo().join("reference-port/target"),
    );
    c
}

/// Runs `cmd` (an `fqp` command) and returns its output, failing with its stderr unless it
/// exited 0.
pub fn succeeds(cmd: &mut Command) -> std::process::Output {
    let o = cmd.output().expect("fqp runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The `Cargo.toml` of the crate in `dir` (relative to the tree's root), parsed.
pub fn cargo_manifest(dir: &str) -> toml::Table {
    let path = repo().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.parse().unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The lab directory the tests sign with.
pub fn lab() -> PathBuf {
    repo().join("target/fqp-tests/lab")
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub out: PathBuf,
    pub results: serde_json::Value,
}

/// Runs `fqp qualify --port <port> --out <fresh dir>` plus `args`.
pub fn qualify(port: &Path, name: &str, args: &[&str]) -> Outcome {
    qualify_with_env(port, name, args, &[])
}

/// [`qualify`] with environment variables set for `fqp`.
pub fn qualify_with_env(port: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let out = repo().join("target/fqp-tests").join(name);
    let _ = std::fs::remove_dir_all(&out);
    let o = fqp()
        .envs(env.iter().copied())
        .arg("qualify")
        .arg("--port")
        .arg(port)
        .arg("--out")
        .arg(&out)
        .args(args)
        .output()
        .expect("fqp runs");
    let results_path = out.join("results.json");
    let results = std::fs::read_to_string(&results_path)
        .map(|t| serde_json::from_str(&t).expect("results.json is JSON"))
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}\nstderr: {}",
                results_path.display(),
                String::from_utf8_lossy(&o.stderr)
            )
        });
    Outcome {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        out,
        results,
    }
}

impl Outcome {
    /// The result of test `id`.
    pub fn test(&self, id: &str) -> &serde_json::Value {
        self.results["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["tests"].as_array().unwrap())
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| {
                panic!(
                    "no result for {id} in {}\n{}",
                    self.out.display(),
                    self.stdout
                )
            })
    }

    /// The JUnit report, parsed by an independent XML parser and validated against the
    /// common JUnit schema (junit-10.xsd, fetched by `scripts/setup.sh --test`); returns its
    /// text.
    pub fn junit(&self) -> String {
        let path = self.out.join("junit.xml");
        let text = std::fs::read_to_string(&path).expect("junit.xml written");
        roxmltree::Document::parse(&text).expect("junit.xml is well-formed XML");
        let xsd = repo().join("target/junit-xsd/junit-10.xsd");
        let lint = Command::new("xmllint")
            .args(["--noout", "--schema"])
            .args([&xsd, &path])
            .output()
            .expect("xmllint runs (scripts/setup.sh --test installs it and the schema)");
        assert!(
            lint.status.success(),
            "{} does not follow junit-10.xsd:\n{}",
            path.display(),
            String::from_utf8_lossy(&lint.stderr)
        );
        text
    }

    /// The HTML report as headless Chromium sees it once loaded (the DOM it built).
    pub fn rendered_report(&self) -> String {
        let page = self.out.join("report.html");
        assert!(page.exists(), "report.html written");
        let profile = self.out.join("chromium-profile");
        // The flags keep Chromium off the network (none here) and away from the user's profile.
        let o = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs (scripts/setup.sh --test installs it)");
        let _ = std::fs::remove_dir_all(&profile);
        assert!(
            o.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into()
    }

    pub fn explain(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
