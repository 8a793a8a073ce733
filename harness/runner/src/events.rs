//! What a run tells while it goes on. The runner does not print: it emits events — the plan,
//! each device starting and running a test, each result, each problem, the end — and whoever
//! watches consumes them: the command line's progress display, the live event log
//! (`events.jsonl`, for CI logs and the web console), a test that checks the order of things.

use fqp_reports::{Problem, Test};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Something that happened in a run.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The tests are chosen: `tests` results will follow (skipped ones included), from up to
    /// `devices` devices.
    Planned { tests: usize, devices: usize },
    /// A device is being started (flashed or reset, booted, synced, provisioned).
    Starting { device: &'a str, boot: u32 },
    /// A device runs a test (attempt 1, or a retry).
    Running {
        device: &'a str,
        test: &'a str,
        attempt: u32,
    },
    /// A test's result, its attempts combined (`device`: none for a test not run).
    Result {
        device: Option<&'a str>,
        test: &'a Test,
    },
    /// A problem outside the tests (a device that would not start, the emulator killed).
    Problem {
        device: Option<&'a str>,
        problem: &'a Problem,
    },
    /// A device has no more work.
    DeviceDone { device: &'a str },
    /// Every device is done; the reports come next.
    Finished,
}

/// Something that watches a run.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Where a run's events go: every observer, in the order given.
#[derive(Clone, Default)]
pub struct Observers(Vec<Arc<dyn Observer>>);

impl Observers {
    /// These observers and `o`.
    pub fn with(mut self, o: Arc<dyn Observer>) -> Self {
        self.0.push(o);
        self
    }

    /// Tells every observer.
    pub fn tell(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}

/// The live event log: each event as a line of JSON (with `at_ms` since the run's tests
/// began), written and flushed as it happens, so that a reader following the file sees the
/// run as it goes and a killed run leaves every line up to its end.
pub struct EventLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    start: Instant,
}

/// One line of the log.
#[derive(Serialize)]
struct Line<'a> {
    at_ms: u64,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

impl EventLog {
    /// The file name in a run's output directory.
    pub const FILE: &'static str = "events.jsonl";

    /// Starts the log in `out` (replacing an earlier run's).
    pub fn create(out: &Path) -> std::io::Result<EventLog> {
        let path = out.join(Self::FILE);
        Ok(EventLog {
            file: Mutex::new(std::fs::File::create(&path)?),
            path,
            start: Instant::now(),
        })
    }
}

impl Observer for EventLog {
    fn event(&self, event: &Event<'_>) {
        let line = Line {
            at_ms: self.start.elapsed().as_millis() as u64,
            event,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::warn!("cannot write {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fqp_reports::{Stage, Status};

    #[test]
    fn the_log_holds_one_json_line_per_event_in_order() {
        let dir = std::env::temp_dir().join(format!("fqp-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = Arc::new(EventLog::create(&dir).unwrap());
        let seen = Observers::default().with(log.clone());
        let t = Test::new("g/a", Status::Passed);
        let p = Problem::new(Stage::Boot, "no sync");
        seen.tell(&Event::Planned {
            tests: 1,
            devices: 1,
        });
        seen.tell(&Event::Running {
            device: "1",
            test: "g/a",
            attempt: 1,
        });
        seen.tell(&Event::Result {
            device: Some("1"),
            test: &t,
        });
        seen.tell(&Event::Problem {
            device: None,
            problem: &p,
        });
        seen.tell(&Event::Finished);
        let text = std::fs::read_to_string(dir.join(EventLog::FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["planned", "running", "result", "problem", "finished"]
        );
        assert_eq!(lines[2]["test"]["id"], "g/a");
        assert_eq!(lines[2]["test"]["status"], "passed");
        assert_eq!(lines[3]["problem"]["stage"], "boot");
        assert!(lines.iter().all(|l| l["at_ms"].is_u64()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
