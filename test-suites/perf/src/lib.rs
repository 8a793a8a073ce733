//! # fqp-suite-perf: Thread-Metric-class kernel benchmarks
//!
//! The eight benchmarks of Express Logic's Thread-Metric suite, written from its public
//! description, plus two latencies. Each benchmark's tasks run for two reporting periods of
//! one second of the device's time while the test task (above them all, like Thread-Metric's
//! reporter) sleeps; the score is Thread-Metric's "time period total" of the second period
//! (the first includes start-up) — the same rule as the FreeRTOS figures in `shared/baselines`.
//! A qualification run measures over shorter periods the host sets (`perf_period_ms`), scaled
//! to a second; `fqp bench` keeps Thread-Metric's.
//! That total is the sum of the tasks' counters, except in the two interrupt benchmarks, where
//! it is the interrupt handler's count alone; the other counters are checked to keep in lock
//! step with it, as Thread-Metric checks them.
//!
//! Conditions, chosen to match that baseline: Thread-Metric priority `p` (1 highest) is our
//! priority `11 - p` (below the test task's 10); counters are read and written through atomics
//! with relaxed order, which compile to plain loads and stores, as the baseline's `volatile`
//! counters do; the queue holds 10 messages of 16 bytes and calls block forever; the semaphore
//! is binary and given at creation; memory comes from the port's heap in 128-byte blocks; the
//! interrupt tests pend test interrupt 0 and its handler signals the task.
//!
//! Under QEMU with `-icount shift=5` virtual time follows the instruction count (32 ns each), so
//! every score repeats exactly from run to run; `fqp bench` runs this group on a fresh boot.

#![no_std]

extern crate alloc;

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use fqp_kernel::queue::Queue;
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::task::{self, TaskId};
use fqp_kernel::Timeout;
use fqp_testkit::{check, group, log, Failure, TestResult};

group!(pub PERF, "perf", [
    basic_processing => 10_000,
    cooperative_scheduling => 10_000,
    preemptive_scheduling => 10_000,
    interrupt_processing => 10_000,
    interrupt_preemption_processing => 10_000,
    message_processing => 10_000,
    synchronization_processing => 10_000,
    memory_allocation => 10_000,
    context_switch => 10_000,
    interrupt_to_task => 10_000,
]);

/// The reporting period in milliseconds: Thread-Metric's second, unless the host asks for a
/// shorter one (the setting `perf_period_ms`, 10 to 1000): `fqp qualify` measures over
/// 250 ms and scales the counts to a second, `fqp bench` keeps the baseline's second.
fn period_ms() -> u32 {
    fqp_testkit::config::get_str("perf_period_ms")
        .and_then(|v| v.parse().ok())
        .filter(|ms| (10..=1_000).contains(ms))
        .unwrap_or(1_000)
}

/// A reporting period, in ticks.
fn period() -> u32 {
    fqp_kernel::time::ms_to_ticks(period_ms())
}

/// The benchmarks' counters (reset before each test).
static COUNTERS: [AtomicU32; 6] = [const { AtomicU32::new(0) }; 6];

/// Counts one more on counter `i`: a load and a store, like `counter++` on a `volatile`.
#[inline(always)]
fn bump(i: usize) {
    COUNTERS[i].store(COUNTERS[i].load(Relaxed).wrapping_add(1), Relaxed);
}

fn count(i: usize) -> u32 {
    COUNTERS[i].load(Relaxed)
}

fn total() -> u32 {
    COUNTERS.iter().map(|c| c.load(Relaxed)).sum()
}

/// Our priority for Thread-Metric priority `p`.
fn prio(p: u8) -> u8 {
    11 - p
}

/// The benchmarks' tasks by Thread-Metric thread number, as its porting layer keeps them
/// ([`TaskId::into_raw`]): a task suspends itself by its number, as Thread-Metric's do.
static THREADS: [AtomicU32; 5] = [const { AtomicU32::new(u32::MAX) }; 5];

fn thread(i: usize) -> TaskId {
    TaskId::from_raw(THREADS[i].load(Relaxed))
}

/// Stack of each benchmark task, in words.
const STACK: usize = 256;

fn spawn(
    name: &'static str,
    tm_priority: u8,
    f: impl FnOnce() + Send + 'static,
) -> Result<TaskId, Failure> {
    fqp_testkit::spawn(name, prio(tm_priority), STACK, f)
        .map_err(|e| fqp_testkit::fail!("cannot start {}: {:?}", name, e))
}

/// Lets the tasks run two periods and reports the second one's count as `name`: the sum of
/// all counters, or, where Thread-Metric's "time period total" counts interrupts only, the
/// handler's counter alone.
/// Returns (the count of the second period, that count per second).
fn report(name: &str, counted: Counted) -> Result<(u32, u32), Failure> {
    let sample = || match counted {
        Counted::All => total(),
        Counted::Only(i) => count(i),
    };
    task::delay(period());
    let first = sample();
    task::delay(period());
    let counted = sample().wrapping_sub(first);
    check!(counted > 0, "nothing was counted in the second period");
    // Per second of the device's time, whatever the period.
    let score = (u64::from(counted) * 1_000 / u64::from(period_ms())) as u32;
    fqp_testkit::metric(name, score, "/s");
    Ok((counted, score))
}

/// Which counters a benchmark's score is made of.
#[derive(Clone, Copy)]
enum Counted {
    All,
    Only(usize),
}

/// Thread-Metric's own check of a benchmark that moves in lock step: each of the first `n`
/// counters is within one of their average (a kernel that skipped a task, or ran one twice,
/// fails here however fast it is).
fn check_lock_step(n: usize) -> TestResult {
    let counts: [u32; 6] = core::array::from_fn(count);
    let counts = &counts[..n];
    let average = counts.iter().sum::<u32>() / n as u32;
    check!(
        counts.iter().all(|&c| c + 1 >= average && c <= average + 1),
        "counters not in lock step: {:?} (average {})",
        counts,
        average
    );
    Ok(())
}

/// Zeroes the counters and waits for a tick: from there on the device's time follows its
/// instructions only (the wait for the host's command before it was idle, in real time), so
/// every figure repeats exactly.
fn reset() {
    for c in &COUNTERS {
        c.store(0, Relaxed);
    }
    task::delay(1);
}

fn basic_processing() -> TestResult {
    reset();
    spawn("basic", 10, || {
        let mut array = alloc::vec![0u32; 1024];
        loop {
            // Work that keeps the CPU busy: the counter is read anew for every element, as a
            // volatile is.
            for a in array.iter_mut() {
                *a ^= a.wrapping_add(count(0));
            }
            bump(0);
        }
    })?;
    report("basic_processing", Counted::All)?;
    Ok(())
}

fn cooperative_scheduling() -> TestResult {
    reset();
    for i in 0..5 {
        spawn("coop", 3, move || loop {
            bump(i);
            task::yield_now();
        })?;
    }
    report("cooperative_scheduling", Counted::All)?;
    // Equal tasks that yield take turns. (Time slicing moves a task to the back at a tick,
    // before it counted: `fqp bench` builds without it, as the baseline ran.)
    if fqp_kernel::config::TIME_SLICING {
        log!(
            "counters {:?} (time slicing on)",
            core::array::from_fn::<u32, 5, _>(count)
        );
        Ok(())
    } else {
        check_lock_step(5)
    }
}

fn preemptive_scheduling() -> TestResult {
    reset();
    // Thread i resumes thread i + 1 and suspends itself (thread 4 only suspends); thread 0,
    // the lowest, does not suspend. All but thread 0 start suspended (none has run yet: the
    // test task is above them).
    let body = |i: usize| {
        move || loop {
            if i < 4 {
                let _ = task::resume(thread(i + 1));
            }
            bump(i);
            if i > 0 {
                let _ = task::suspend(thread(i));
            }
        }
    };
    for i in (0..5).rev() {
        let names = ["pre0", "pre1", "pre2", "pre3", "pre4"];
        let id = spawn(names[i], 10 - i as u8, body(i))?;
        THREADS[i].store(id.into_raw(), Relaxed);
        if i > 0 {
            task::suspend(id).map_err(|_| fqp_testkit::fail!("a task ended early"))?;
        }
    }
    report("preemptive_scheduling", Counted::All)?;
    check_lock_step(5)
}

static SEM: Semaphore = Semaphore::binary();

/// Empties [`SEM`], then gives it once (the baseline's "given at creation").
fn sem_given() {
    while SEM.try_take().is_ok() {}
    let _ = SEM.give();
}

fn interrupt_processing() -> TestResult {
    reset();
    sem_given();
    fqp_testkit::irq::set_handler(
        0,
        Some(|| {
            bump(1);
            let _ = SEM.give();
        }),
    );
    spawn("irq", 10, || {
        let _ = SEM.take(Timeout::FOREVER);
        loop {
            fqp_testkit::irq::trigger(0);
            // Back here only once the handler has given the semaphore.
            let _ = SEM.take(Timeout::FOREVER);
            bump(0);
        }
    })?;
    // Thread-Metric's time period total counts the interrupts; the task's count must keep up.
    report("interrupt_processing", Counted::Only(1))?;
    check_lock_step(2)
}

fn interrupt_preemption_processing() -> TestResult {
    reset();
    // Thread 0, above, counts and suspends itself; the handler resumes it.
    let woken = spawn("irq-hi", 3, || loop {
        bump(1);
        let _ = task::suspend(thread(0));
    })?;
    THREADS[0].store(woken.into_raw(), Relaxed);
    task::suspend(woken).map_err(|_| fqp_testkit::fail!("the task ended early"))?;
    fqp_testkit::irq::set_handler(
        0,
        Some(|| {
            bump(2);
            let _ = task::resume(thread(0));
        }),
    );
    spawn("irq-lo", 10, || loop {
        fqp_testkit::irq::trigger(0);
        bump(0);
    })?;
    report("interrupt_preemption_processing", Counted::Only(2))?;
    check_lock_step(3)
}

static QUEUE: Queue<[u32; 4], 10> = Queue::new();

fn message_processing() -> TestResult {
    reset();
    while QUEUE.try_receive().is_ok() {}
    spawn("msg", 10, || {
        let mut sent = [0u32, 1, 2, 3];
        loop {
            let _ = QUEUE.send(sent, Timeout::FOREVER);
            // Thread-Metric checks the word that changes from message to message.
            match QUEUE.receive(Timeout::FOREVER) {
                Ok(got) if got[3] == sent[3] => {}
                _ => return, // a wrong message stops the count: the test then fails on it
            }
            sent[3] = sent[3].wrapping_add(1);
            bump(0);
        }
    })?;
    let (counted, _) = report("message_processing", Counted::All)?;
    check!(
        count(0) > counted,
        "the message task stopped: a message came back changed"
    );
    Ok(())
}

fn synchronization_processing() -> TestResult {
    reset();
    sem_given();
    spawn("sync", 10, || loop {
        if SEM.take(Timeout::FOREVER).is_ok() {
            let _ = SEM.give();
            bump(0);
        }
    })?;
    report("synchronization_processing", Counted::All)?;
    Ok(())
}

fn memory_allocation() -> TestResult {
    reset();
    spawn("mem", 10, || {
        let layout = core::alloc::Layout::from_size_align(128, 4).expect("a valid layout");
        loop {
            // SAFETY: the layout has a non-zero size; the block is freed with the same layout
            // and not used in between.
            unsafe {
                let block = alloc::alloc::alloc(layout);
                if block.is_null() {
                    return;
                }
                alloc::alloc::dealloc(core::hint::black_box(block), layout);
            }
            bump(0);
        }
    })?;
    report("memory_allocation", Counted::All)?;
    Ok(())
}

/// Nanoseconds of the device's time per instruction under `-icount shift=5`.
const NS_PER_INSTRUCTION: u64 = 32;

/// Instructions in `cycles` of the kernel's time base.
fn instructions(cycles: u64) -> u64 {
    let hz = u64::from(fqp_kernel::cpu_hz());
    cycles * 1_000_000_000 / hz / NS_PER_INSTRUCTION
}

fn context_switch() -> TestResult {
    reset();
    // Two equal tasks yielding to each other: every yield is one switch.
    for i in 0..2 {
        spawn("switch", 3, move || loop {
            bump(i);
            task::yield_now();
        })?;
    }
    let (_, switches) = report("context_switches", Counted::All)?;
    // A period is one second of instructions.
    let per = 1_000_000_000 / NS_PER_INSTRUCTION / u64::from(switches);
    fqp_testkit::metric("context_switch_instructions", per, "instructions");
    log!(
        "{} switches per second: {} instructions each (the yield call and loop included)",
        switches,
        per
    );
    Ok(())
}

/// When the interrupt was pended, and the sum of latencies so far, in time-base cycles.
static PENDED: AtomicU32 = AtomicU32::new(0);
static LATENCY_SUM: AtomicU32 = AtomicU32::new(0);
static WOKEN: Semaphore = Semaphore::binary();

fn interrupt_to_task() -> TestResult {
    const ROUNDS: u32 = 1_000;
    reset();
    while WOKEN.try_take().is_ok() {}
    LATENCY_SUM.store(0, Relaxed);
    fqp_testkit::irq::set_handler(
        0,
        Some(|| {
            let _ = WOKEN.give();
        }),
    );
    // The waiting task is above the one that raises the interrupt: the handler's give switches
    // to it on the way out of the interrupt.
    spawn("irq-wait", 9, || loop {
        if WOKEN.take(Timeout::FOREVER).is_ok() {
            let now = fqp_kernel::time::uptime_cycles() as u32;
            let latency = now.wrapping_sub(PENDED.load(Relaxed));
            LATENCY_SUM.store(LATENCY_SUM.load(Relaxed) + latency, Relaxed); // one writer
            bump(0);
        }
    })?;
    spawn("irq-raise", 10, || {
        for _ in 0..ROUNDS {
            PENDED.store(fqp_kernel::time::uptime_cycles() as u32, Relaxed);
            fqp_testkit::irq::trigger(0);
        }
    })?;
    task::delay(period());
    check!(count(0) == ROUNDS, "{} of {} wake-ups", count(0), ROUNDS);
    let per = instructions(u64::from(LATENCY_SUM.load(Relaxed)) / u64::from(ROUNDS));
    fqp_testkit::metric("interrupt_to_task_instructions", per, "instructions");
    Ok(())
}
