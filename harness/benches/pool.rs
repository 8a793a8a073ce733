//! Pool scaling: wall time of a full qualification with 1, 2 and 4 QEMU devices, as the median
//! of several runs, and the speed-up against one device measured in the same process.
//!
//! `cargo bench -p fqp --bench pool` (the firmware is built once before timing starts).
//! Two workloads: the reference port's kernel suites (fast tests: boot time dominates), and the
//! self-test firmware (faults, resets and a timed-out test: restarts and waiting dominate).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 3;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn qualify(port: &Path, devices: usize, out: &Path) -> (f64, i32) {
    let t0 = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_fqp"))
        .env("FQP_LAB", repo().join("target/fqp-bench/lab"))
        .args(["-q", "qualify", "--port"])
        .arg(port)
        .arg("--out")
        .arg(out)
        .args(["--devices", &devices.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("fqp runs");
    (t0.elapsed().as_secs_f64(), status.code().unwrap_or(-1))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let out = repo().join("target/fqp-bench");
    for (name, port, expect) in [
        (
            "reference-port (104 kernel tests)",
            repo().join("reference-port"),
            0,
        ),
        (
            "selftest (faults, resets, a timeout)",
            repo().join("harness/tests/ports/selftest"),
            1,
        ),
    ] {
        let (_, code) = qualify(&port, 1, &out.join("warmup")); // builds the firmware
        assert_eq!(
            code, expect,
            "{name}: unexpected exit status in the warm-up run"
        );
        println!("\n{name}");
        println!("{:>8} {:>12} {:>10}", "devices", "median wall", "speed-up");
        let mut base = None;
        for devices in [1, 2, 4] {
            let times: Vec<f64> = (0..RUNS)
                .map(|_| {
                    let (t, code) = qualify(&port, devices, &out.join(format!("d{devices}")));
                    assert_eq!(
                        code, expect,
                        "{name} with {devices} devices: unexpected exit status"
                    );
                    t
                })
                .collect();
            let m = median(times);
            let b = *base.get_or_insert(m);
            println!("{devices:>8} {:>10.2} s {:>9.2}x", m, b / m);
        }
    }
}
