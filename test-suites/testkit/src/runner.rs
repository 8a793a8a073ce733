//! The runner task: answers the host, runs one test at a time, cleans up after it.

use crate::board::{self, board, Board, Devices};
use crate::config::At;
use crate::console::{self, send_line, LINE};
use crate::{irq, running, Group, Test, TEST_PRIORITY};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use fqp_kernel::task;
use fqp_protocol::{Kind, LineBuf, VERSION};

struct Ctx {
    groups: &'static [&'static Group],
    fw: &'static str,
}

static CTX: AtomicPtr<Ctx> = AtomicPtr::new(core::ptr::null_mut());
/// Tests passed, failed and skipped since boot, reported in `BYE`.
static COUNTS: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

fn ctx() -> &'static Ctx {
    let p = CTX.load(Ordering::Acquire);
    assert!(!p.is_null(), "fqp_testkit::run has not been called");
    // SAFETY: set once by `run` to a leaked, never-freed Ctx.
    unsafe { &*p }
}

/// Starts the test runner on `board` with `groups` and hands the CPU to the kernel.
/// `fw` is the firmware version reported to the host; `cpu_hz` clocks the kernel tick.
pub fn run(
    board: &'static dyn Board,
    groups: &'static [&'static Group],
    fw: &'static str,
    cpu_hz: u32,
) -> ! {
    board::set_board(board);
    let ctx = alloc::boxed::Box::leak(alloc::boxed::Box::new(Ctx { groups, fw }));
    CTX.store(ctx, Ordering::Release);
    task::Builder::new("runner")
        .priority(TEST_PRIORITY)
        .stack_words(2048)
        .spawn_fn(runner_main, 0)
        .expect("cannot create the test runner task");
    fqp_kernel::start(cpu_hz)
}

fn test_count() -> usize {
    ctx().groups.iter().map(|g| g.tests.len()).sum()
}

fn hello(kind: Kind) -> LineBuf<LINE> {
    let c = ctx();
    LineBuf::new(kind)
        .field("proto", VERSION)
        .field("port", board().name())
        .field("fw", c.fw)
        .field("kernel", fqp_kernel::VERSION)
        .field("tests", test_count())
        .field("devices", Devices(board()))
        // A hard-float image keeps the FPU's registers in every task's context.
        .field("fpu", cfg!(target_abi = "eabihf") as u8)
        .field("tick_loops", TICK_LOOPS.load(Ordering::Relaxed))
        .field("irq_lines", board().test_irqs())
        .field("irq_fired", Fired(IRQS_FIRED.load(Ordering::Relaxed)))
}

/// The `resumed` of the `RUN` being run: the reboots its test asked for so far.
static RESUMED: AtomicU32 = AtomicU32::new(0);

/// The reboots the running test asked for so far.
pub(crate) fn resumed() -> u32 {
    RESUMED.load(Ordering::Relaxed)
}

/// Iterations of [`one_tick_loops`]' loop in one tick, measured at start-up (0: not measured).
static TICK_LOOPS: AtomicU32 = AtomicU32::new(0);

/// Ticks [`loops_per_tick`] counts over: interrupts during a tick (the console's, when the
/// host's SYNCs queued while a boot loader ran arrive at once) take instructions from its
/// count, so the least interrupted of several is the tick.
const TICKS_COUNTED: usize = 8;

/// The iterations of [`one_tick_loops`]' loop in the least interrupted of a few ticks.
fn loops_per_tick() -> u32 {
    (0..TICKS_COUNTED)
        .map(|_| one_tick_loops())
        .max()
        .unwrap_or(0)
}

/// Counts the iterations of a loop of [`fqp_protocol::TICK_LOOP_INSTRUCTIONS`] instructions
/// from one tick to the next: on an emulator that counts instructions (QEMU `-icount`), the
/// host turns it into the tick's real rate and names a clock constant that is off.
#[cfg(all(target_arch = "arm", target_os = "none"))]
fn one_tick_loops() -> u32 {
    let tick = fqp_kernel::time::tick_address();
    let n: u32;
    // SAFETY: reads the kernel's tick word (an aligned u32 the tick interrupt writes) in a
    // loop; touches nothing else.
    unsafe {
        core::arch::asm!(
            "ldr {t0}, [{a}]",
            "2:",
            "ldr {t1}, [{a}]", // wait for a tick
            "cmp {t1}, {t0}",
            "beq 2b",
            "movs {n}, #0",
            "3:",
            "adds {n}, {n}, #1", // count until the next
            "ldr {t0}, [{a}]",
            "cmp {t0}, {t1}",
            "beq 3b",
            a = in(reg) tick,
            t0 = out(reg) _,
            t1 = out(reg) _,
            n = out(reg) n,
            options(nostack, readonly),
        );
    }
    n
}

#[cfg(not(all(target_arch = "arm", target_os = "none")))]
fn one_tick_loops() -> u32 {
    0
}

/// The test interrupt lines that fired when pended once at start-up (bit n: line n).
static IRQS_FIRED: AtomicU32 = AtomicU32::new(0);

/// The interrupt lines the interrupt tests use.
const IRQ_LINES_USED: usize = 2;

/// Pends each test interrupt the tests use once, before HELLO, and records which fired: a
/// port whose interrupts do not work is then told once, naming the line, by the host.
fn check_test_irqs() {
    let mut fired = 0;
    for n in 0..board().test_irqs().min(IRQ_LINES_USED) {
        let before = irq::count(n);
        board().pend_test_irq(n);
        if irq::count(n) != before {
            fired |= 1 << n;
        }
    }
    IRQS_FIRED.store(fired, Ordering::Relaxed);
}

/// Lines of a bit set, comma-separated (`irq_fired=0,1`).
struct Fired(u32);

impl core::fmt::Display for Fired {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut sep = "";
        for n in (0..32).filter(|n| self.0 & (1 << n) != 0) {
            write!(f, "{sep}{n}")?;
            sep = ",";
        }
        Ok(())
    }
}

fn find(id: &[u8]) -> Option<(&'static Group, &'static Test)> {
    let id = core::str::from_utf8(id).ok()?;
    let (g, t) = id.split_once('/')?;
    let group = ctx().groups.iter().find(|x| x.name == g)?;
    let test = group.tests.iter().find(|x| x.name == t)?;
    Some((group, test))
}

fn runner_main(_: usize) {
    TICK_LOOPS.store(loops_per_tick(), Ordering::Relaxed);
    check_test_irqs();
    send_line(hello(Kind::Hello));
    let mut line = [0u8; 256];
    let mut last_end: Option<LineBuf<LINE>> = None;
    loop {
        let raw = console::read_line(&mut line);
        let Ok(text) = core::str::from_utf8(raw) else {
            send_line(LineBuf::new(Kind::Err).field("msg", "command is not UTF-8"));
            continue;
        };
        let frame = match fqp_protocol::parse(text) {
            Ok(Some(f)) => f,
            Ok(None) => continue, // stray text (a human typing, line noise)
            Err(e) => {
                send_line(LineBuf::new(Kind::Err).field("msg", format_args!("bad command: {e}")));
                continue;
            }
        };
        match frame.kind {
            Kind::Sync => {
                send_line(hello(Kind::Ready).field("nonce", frame.raw("nonce").unwrap_or("0")))
            }
            Kind::List => {
                for g in ctx().groups {
                    for t in g.tests {
                        send_line(
                            LineBuf::new(Kind::Test)
                                .field("id", format_args!("{}/{}", g.name, t.name))
                                .field("timeout_ms", t.timeout_ms),
                        );
                    }
                }
                send_line(LineBuf::new(Kind::Listed).field("count", test_count()));
            }
            Kind::Run => {
                let mut id = [0u8; 96];
                let id = frame.get_into("id", &mut id).unwrap_or(&[]);
                RESUMED.store(frame.num("resumed").unwrap_or(0) as u32, Ordering::Relaxed);
                match find(id) {
                    Some((g, t)) => {
                        let mut end = run_one(g, t);
                        console::send(end.finish());
                        last_end = Some(end);
                    }
                    None => send_line(
                        LineBuf::new(Kind::Err).field("msg", format_args!("no test {}", Lossy(id))),
                    ),
                }
            }
            Kind::Again => match last_end.as_mut() {
                Some(end) => console::send(end.finish()),
                None => send_line(LineBuf::new(Kind::Err).field("msg", "no test has run")),
            },
            Kind::Summary => send_line(counts(Kind::Summary)),
            Kind::Set => send_line(on_set(&frame)),
            Kind::Reset => {
                send_line(bye("reset"));
                board().reset();
            }
            Kind::Exit => {
                let code = frame.num("code").unwrap_or(0) as i32;
                send_line(bye("exit"));
                board().exit(code);
            }
            other => send_line(
                LineBuf::new(Kind::Err).field("msg", format_args!("unexpected {}", other.as_str())),
            ),
        }
    }
}

/// The device's count of tests since boot, in a line of `kind`.
fn counts(kind: Kind) -> LineBuf<LINE> {
    let [p, f, s] = &COUNTS;
    LineBuf::new(kind)
        .field("passed", p.load(Ordering::Relaxed))
        .field("failed", f.load(Ordering::Relaxed))
        .field("skipped", s.load(Ordering::Relaxed))
}

fn bye(reason: &str) -> LineBuf<LINE> {
    counts(Kind::Bye).field("reason", reason)
}

/// Stores what a `SET` carries; the answer (`OK key len`, or `ERR`).
pub(crate) fn on_set(frame: &fqp_protocol::Frame<'_>) -> LineBuf<LINE> {
    let mut key = [0u8; 48];
    let key = frame.get_into("key", &mut key).unwrap_or(&[]);
    let mut value = [0u8; 256];
    let value = frame.get_into("value", &mut value).unwrap_or(&[]);
    let at = match (frame.num("at"), frame.num("append")) {
        (Some(n), _) => At::Offset(n as usize),
        (None, Some(1)) => At::End,
        (None, _) => At::Offset(0),
    };
    let stored = core::str::from_utf8(key)
        .map_err(|_| "key is not UTF-8")
        .and_then(|k| {
            if k.is_empty() {
                Err("no key")
            } else {
                crate::config::set(k, value, at)
            }
        });
    match stored {
        Ok(len) => LineBuf::new(Kind::Ok)
            .field("key", Lossy(key))
            .field("len", len),
        Err(e) => LineBuf::new(Kind::Err).field("msg", format_args!("SET {}: {e}", Lossy(key))),
    }
}

struct Lossy<'a>(&'a [u8]);

impl core::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            core::fmt::Write::write_char(f, if b.is_ascii_graphic() { b as char } else { '?' })?;
        }
        Ok(())
    }
}

fn run_one(g: &'static Group, t: &'static Test) -> LineBuf<LINE> {
    let id = format_args!("{}/{}", g.name, t.name);
    send_line(LineBuf::new(Kind::Start).field("id", id));
    running::set_current(Some((g.name, t.name)));
    let start = fqp_kernel::time::uptime_us();
    let result = (t.run)();
    let us = fqp_kernel::time::uptime_us() - start;
    cleanup();
    running::set_current(None);
    let id = format_args!("{}/{}", g.name, t.name);
    let slot = match &result {
        Ok(()) => 0,
        Err(f) if f.skip => 2,
        Err(_) => 1,
    };
    // Only the runner task counts (a load and a store: Armv6-M has no atomic add).
    COUNTS[slot].store(COUNTS[slot].load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    match result {
        Ok(()) => LineBuf::new(Kind::End)
            .field("id", id)
            .field("status", "pass")
            .field("us", us),
        Err(f) if f.skip => LineBuf::new(Kind::End)
            .field("id", id)
            .field("status", "skip")
            .field("us", us)
            .field("reason", f.msg.as_str()),
        Err(f) => {
            send_line(
                LineBuf::new(Kind::Fail)
                    .field("id", id)
                    .field("file", f.file)
                    .field("line", f.line)
                    .field("msg", f.msg.as_str()),
            );
            let id = format_args!("{}/{}", g.name, t.name);
            LineBuf::new(Kind::End)
                .field("id", id)
                .field("status", "fail")
                .field("us", us)
        }
    }
}

/// Restores what a test may have changed: helper tasks, interrupt handlers, hooks, priority.
fn cleanup() {
    let helpers = running::take_helpers();
    for id in helpers {
        let _ = task::delete(id); // already gone is fine
    }
    irq::clear();
    fqp_kernel::hooks::set_idle_hook(None);
    fqp_kernel::hooks::set_tick_hook(None);
    fqp_kernel::hooks::set_alloc_failed_hook(None);
    fqp_kernel::hooks::set_stack_overflow_hook(None);
    let _ = task::set_priority(task::current(), TEST_PRIORITY);
    // Let the idle task free the stacks of helpers that ended by themselves.
    task::delay(2);
}
