//! Tests every device of a run runs at once (`pool = true` in test-suites/suites.toml): a
//! group deployment that must reach each device of the pool, say. They are kept out of the
//! shared queue; each device, once the queue is empty, waits at a meeting point until every
//! device still working is there, then runs them — so they start together — and their
//! results, one per device, become one: passed only if it passed on each device.

use fqp_reports::{Status, Test};
use std::sync::{Condvar, Mutex};

/// The pooled tests of a run and the devices' meeting point before them.
pub(super) struct Together {
    pub(super) tests: Vec<crate::session::Listed>,
    /// Devices still expected at the meeting, and devices there.
    seats: Mutex<(usize, usize)>,
    all_there: Condvar,
}

impl Together {
    pub(super) fn new(tests: Vec<crate::session::Listed>, devices: usize) -> Together {
        Together {
            tests,
            seats: Mutex::new((devices, 0)),
            all_there: Condvar::new(),
        }
    }

    /// A device's place at the meeting: it leaves it when dropped without having met (its
    /// device was lost, its worker panicked), so that the others do not wait for it.
    pub(super) fn seat(&self) -> Seat<'_> {
        Seat {
            together: self,
            met: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// See [`Together::seat`].
pub(super) struct Seat<'t> {
    together: &'t Together,
    met: bool,
}

impl Seat<'_> {
    /// Waits until every device still working has come (the last to come wakes the rest).
    pub(super) fn meet(&mut self) {
        let t = self.together;
        let mut s = t.lock();
        s.1 += 1;
        self.met = true;
        t.all_there.notify_all();
        while s.1 < s.0 {
            s = t.all_there.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if !self.met {
            let t = self.together;
            let mut s = t.lock();
            s.0 = s.0.saturating_sub(1);
            t.all_there.notify_all();
        }
    }
}

/// The order of badness of outcomes, for the one result of several devices'.
fn rank(s: Status) -> u8 {
    match s {
        Status::Passed => 0,
        Status::Skipped => 1,
        Status::Flaky => 2,
        Status::Failed => 3,
        Status::Error => 4,
    }
}

/// One result of a pooled test from each device's (`(device, result)`, at least one): the
/// worst outcome, each device's message and output marked with its name, the figures of the
/// first device, the longest time.
pub(super) fn merge(mut each: Vec<(String, Test)>) -> Option<Test> {
    each.sort_by(|a, b| a.0.cmp(&b.0));
    let worst = each
        .iter()
        .map(|(_, t)| t.status)
        .max_by_key(|&s| rank(s))?;
    let devices: Vec<&str> = each.iter().map(|(d, _)| d.as_str()).collect();
    let mut one = each
        .iter()
        .find(|(_, t)| t.status == worst)
        .map(|(_, t)| t.clone())?;
    one.status = worst;
    let said: Vec<String> = each
        .iter()
        .filter_map(|(d, t)| Some(format!("on {d}: {}", t.message.as_deref()?)))
        .collect();
    one.message = (!said.is_empty()).then(|| said.join("; "));
    one.output = each
        .iter()
        .flat_map(|(d, t)| t.output.iter().map(move |l| format!("[{d}] {l}")))
        .collect();
    one.metrics = each[0].1.metrics.clone();
    one.wall_ms = each.iter().map(|(_, t)| t.wall_ms).max().unwrap_or(0);
    one.device_us = each.iter().filter_map(|(_, t)| t.device_us).max();
    one.details.insert("devices".into(), devices.join(", "));
    Some(one)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn result(status: Status, message: Option<&str>, line: &str) -> Test {
        let mut t = Test::new("ota/pooled", status);
        t.message = message.map(str::to_string);
        t.output = vec![line.into()];
        t.wall_ms = 10;
        t
    }

    #[test]
    fn one_result_is_the_worst_with_each_devices_words() {
        let one = merge(vec![
            ("2".into(), result(Status::Failed, Some("no"), "b")),
            ("1".into(), result(Status::Passed, None, "a")),
        ])
        .unwrap();
        assert_eq!(one.status, Status::Failed);
        assert_eq!(one.message.as_deref(), Some("on 2: no"));
        assert_eq!(one.output, ["[1] a", "[2] b"]);
        assert_eq!(one.details["devices"], "1, 2");
        let all = merge(vec![("1".into(), result(Status::Passed, None, "a"))]).unwrap();
        assert_eq!((all.status, all.message), (Status::Passed, None));
        assert!(merge(Vec::new()).is_none());
    }

    #[test]
    fn devices_meet_and_a_lost_one_is_not_waited_for() {
        let together = Together::new(Vec::new(), 3);
        let there = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut seat = together.seat();
                    seat.meet();
                    there.fetch_add(1, Ordering::SeqCst);
                });
            }
            // The third device is lost before the meeting: its seat is given up.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(
                there.load(Ordering::SeqCst),
                0,
                "nobody goes on before all came"
            );
            drop(together.seat());
        });
        assert_eq!(there.load(Ordering::SeqCst), 2);
    }
}
