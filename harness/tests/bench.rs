//! `fqp bench` on the reference port: the performance group under the baseline's conditions.
//! Its figures repeat exactly (a second run compares 1.000× with the first in every figure),
//! and a figure worse than the baseline by more than the tolerance fails the run.

mod common;

use common::repo;

fn bench(out: &str, args: &[&str]) -> (i32, String) {
    let o = common::fqp()
        .args(["bench", "--port"])
        .arg(repo().join("reference-port"))
        .arg("--out")
        .arg(repo().join("target/fqp-tests").join(out))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn figures_repeat_exactly_and_a_drop_beyond_the_tolerance_fails() {
    let (code, first) = bench("bench-1", &[]);
    assert_eq!(code, 0, "{first}");
    for figure in [
        "basic_processing",
        "cooperative_scheduling",
        "preemptive_scheduling",
        "interrupt_processing",
        "interrupt_preemption_processing",
        "message_processing",
        "synchronization_processing",
        "memory_allocation",
        "context_switch_instructions",
        "interrupt_to_task_instructions",
    ] {
        assert!(first.contains(figure), "{figure} missing:\n{first}");
    }
    assert!(first.contains("kernel in this image: text "), "{first}");
    let results = repo().join("target/fqp-tests/bench-1/results.json");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    // The kernel's code, by module, adds up to its text; the image holds the benchmarks'
    // kernel (`bench_features`): no software timers (the service task comes with a timer).
    let text = run["firmware"]["kernel_size"]["text"].as_u64().unwrap();
    assert!(text > 1000);
    let modules = run["firmware"]["kernel_text_by_module"].as_array().unwrap();
    let named = |m: &str| modules.iter().any(|x| x["module"] == m);
    for m in ["task", "sched", "queue", "semaphore", "heap", "arch"] {
        assert!(named(m), "no {m} in {modules:?}");
    }
    assert!(
        !named("timer") && !named("event_group") && !named("stream"),
        "{modules:?}"
    );
    let sum: u64 = modules.iter().map(|m| m["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sum, text);

    // A baseline whose cooperative score is twice this build's.
    let mut doctored = run.clone();
    for t in doctored["groups"][0]["tests"].as_array_mut().unwrap() {
        for m in t["metrics"].as_array_mut().unwrap() {
            if m["name"] == "cooperative_scheduling" {
                m["value"] = serde_json::json!(m["value"].as_f64().unwrap() * 2.0);
            }
        }
    }
    let baseline = repo().join("target/fqp-tests/bench-doctored.json");
    std::fs::write(&baseline, doctored.to_string()).unwrap();
    let (code, second) = bench("bench-2", &["--baseline", baseline.to_str().unwrap()]);
    assert_eq!(code, 1, "{second}");
    assert!(
        second.contains("REGRESSION beyond 2%: cooperative_scheduling 0.500×"),
        "{second}"
    );
    // Every other figure is exactly the first run's.
    let ratios: Vec<&str> = second
        .lines()
        .filter(|l| l.contains('×') && !l.contains("REGRESSION"))
        .collect();
    assert_eq!(ratios.len(), 11, "{second}");
    for l in ratios {
        assert!(
            l.contains(" 1.000×") || l.starts_with("cooperative_scheduling"),
            "{l}"
        );
    }
}

#[test]
fn a_baseline_that_is_not_a_result_file_is_refused() {
    let bad = repo().join("target/fqp-tests/not-results.json");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    let (code, text) = bench("bench-bad", &["--baseline", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not an fqp results.json"), "{text}");
}

#[test]
fn a_profiled_benchmark_names_where_its_instructions_went_and_keeps_its_figure() {
    let figure = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("interrupt_to_task/interrupt_to_task_instructions"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no figure in:\n{text}"))
    };
    let (code, plain) = bench("bench-plain", &["--test", "interrupt_to_task"]);
    assert_eq!(code, 0, "{plain}");
    let (code, profiled) = bench(
        "bench-profile",
        &["--test", "interrupt_to_task", "--profile"],
    );
    assert_eq!(code, 0, "{profiled}");
    // Virtual time follows the instructions: one instruction per block changes no figure.
    assert_eq!(figure(&plain), figure(&profiled));
    // The switch handler and the semaphore's waiting path are where an interrupt wakes a task.
    let table = profiled
        .split("instructions executed by function")
        .nth(1)
        .unwrap_or_else(|| panic!("no profile in:\n{profiled}"));
    // (PendSV is an alias of the kernel's fqp_kernel_pendsv: QEMU names either.)
    assert!(
        table.contains(" PendSV\n") || table.contains("fqp_kernel_pendsv"),
        "no PendSV in:\n{table}"
    );
    let waiting = "fqp_kernel::semaphore::Semaphore>::take_waiting";
    assert!(table.contains(waiting), "{waiting} not in:\n{table}");
    let whole =
        std::fs::read_to_string(repo().join("target/fqp-tests/bench-profile/profile.txt")).unwrap();
    assert!(
        whole.lines().last().unwrap().contains("100.00%  (all, "),
        "{whole}"
    );
}

#[test]
fn profiling_a_board_that_is_not_emulated_is_refused_with_the_fix() {
    let dir = repo().join("target/fqp-tests/bench-board-port");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        "[port]\nname = \"board\"\nboard = \"a board on the bench\"\n\n[build]\ncrate = {:?}\ntarget = \"thumbv7m-none-eabi\"\n\n\
         [flash]\nmethod = \"command\"\n\n[flash.command]\nflash = [\"true\"]\n\n[serial]\npath = \"tty\"\n",
        repo().join("reference-port")
    );
    std::fs::write(dir.join("port.toml"), manifest).unwrap();
    let o = common::fqp()
        .args(["bench", "--profile", "--port"])
        .arg(&dir)
        .arg("--out")
        .arg(repo().join("target/fqp-tests/bench-profile-board"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--profile counts an emulator's instructions"),
        "{text}"
    );
    assert!(text.contains("fix: profile on an emulated board"), "{text}");
    assert!(
        !text.contains("instructions executed by function"),
        "{text}"
    );
}
