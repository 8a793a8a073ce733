//! A run with one test of every kind, for the renderers' tests.

use crate::model::*;

/// A made-up port declaring no capabilities.
pub fn port() -> Port {
    Port {
        name: "p".into(),
        board: "b".into(),
        vendor: None,
        description: None,
        capabilities: vec![],
        manifest: "m".into(),
    }
}

pub fn run() -> Run {
    let mut run = Run {
        schema: SCHEMA_VERSION,
        harness: "0.1.0".into(),
        port: Port {
            name: "demo".into(),
            board: "b".into(),
            vendor: Some("Acme <Chips>".into()),
            description: None,
            capabilities: vec!["kernel".into()],
            manifest: "port.toml".into(),
        },
        firmware: Some(Firmware {
            image: "target/fw.elf".into(),
            sha256: "ab".repeat(32),
            size_bytes: 4096,
            toolchain: "rustc 1.96".into(),
            version: Some("0.1.0".into()),
            kernel: Some("fqp-kernel 0.1.0".into()),
            kernel_size: Some(crate::Sections {
                text: 14_000,
                data: 8,
                bss: 5_600,
            }),
            kernel_text_by_module: vec![
                crate::ModuleBytes {
                    module: "task".into(),
                    bytes: 9_000,
                },
                crate::ModuleBytes {
                    module: "queue".into(),
                    bytes: 5_000,
                },
            ],
            boot: Some(crate::BootImage {
                loader: "target/boot.elf".into(),
                loader_sha256: "cd".repeat(32),
                signed_image: "target/firmware.fqpimg".into(),
                signed_sha256: "ef".repeat(32),
                version: "0.1.0".into(),
            }),
        }),
        started: "2026-11-24T06:00:00Z".into(),
        duration_ms: 1234,
        verdict: Verdict::Failed,
        problems: vec![],
        findings: vec![],
        partition: None,
        selection: None,
        suites: Some(crate::SuitesRef {
            version: 2,
            sha256: "5e".repeat(32),
        }),
        interrupted: None,
        qualification: Some(Qualification {
            qualified: false,
            capabilities: vec!["kernel".into()],
            reasons: vec!["required group queue: queue/timeout failed".into()],
        }),
        groups: vec![],
    };
    let mut pass = Test::new("queue/fifo", Status::Passed);
    pass.device_us = Some(1500);
    pass.metrics.push(Metric {
        name: "msgs_per_s".into(),
        value: 125000.0,
        unit: "1/s".into(),
    });
    run.push("queue", pass);
    let mut fail = Test::new("queue/timeout", Status::Failed);
    fail.message = Some("left 1, right <2> & \"3\"".into());
    fail.location = Some("src/queue.rs:42".into());
    fail.output = vec!["log line <script>alert(1)</script>".into()];
    fail.retried.push(Attempt {
        status: Status::Failed,
        error_kind: None,
        message: Some("left 1, right 2".into()),
        location: Some("src/queue.rs:42".into()),
        device_us: Some(900),
        wall_ms: 3,
        output: vec![],
    });
    run.push("queue", fail);
    let mut err = Test::new("sem/isr", Status::Error);
    err.error_kind = Some(ErrorKind::Fault);
    err.message = Some("HardFault at pc=0x00001234".into());
    err.details.insert("pc".into(), "0x00001234".into());
    run.push("sem", err);
    let mut flaky = Test::new("sem/flaky", Status::Flaky);
    flaky.retried.push(Attempt {
        status: Status::Error,
        error_kind: Some(ErrorKind::Timeout),
        message: Some("no result within 1.5 s".into()),
        location: None,
        device_us: None,
        wall_ms: 1500,
        output: vec!["stuck".into()],
    });
    flaky.message = Some("passed on attempt 2 after: error [timeout]: no result".into());
    run.push("sem", flaky);
    let mut skip = Test::new("sem/hw", Status::Skipped);
    skip.message = Some("no timer".into());
    run.push("sem", skip);
    run.findings = run.classify();
    run
}
