use super::*;
use fqp_reports::{ErrorKind, Status};

/// How the fake device answers a command (its kind and full text).
type Answer = Box<dyn FnMut(Kind, &str) -> Vec<Recv>>;

/// A device simulated by a function from each command to the lines it answers.
struct Fake {
    queue: VecDeque<Recv>,
    answer: Answer,
    sent: Vec<String>,
}

impl Link for Fake {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(bytes).to_string();
        let f = fqp_protocol::parse(&text).unwrap().unwrap();
        self.sent.push(f.kind.as_str().to_string());
        let lines = (self.answer)(f.kind, &text);
        self.queue.extend(lines);
        Ok(())
    }
    fn recv(&mut self, deadline: Instant) -> Recv {
        match self.queue.pop_front() {
            Some(r) => r,
            None => {
                std::thread::sleep(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(5)),
                );
                Recv::Timeout
            }
        }
    }
}

fn dev(kind: Kind, fields: &[(&str, &str)]) -> Recv {
    let mut l = LineBuf::<320>::new(kind);
    for (k, v) in fields {
        l = l.field(k, v);
    }
    Recv::Line(
        String::from_utf8(l.finish().to_vec())
            .unwrap()
            .trim_end()
            .to_string(),
    )
}

fn fake(answer: impl FnMut(Kind, &str) -> Vec<Recv> + 'static) -> Session<Fake> {
    Session::new(Fake {
        queue: VecDeque::new(),
        answer: Box::new(answer),
        sent: vec![],
    })
}

fn nonce_of(cmd: &str) -> String {
    fqp_protocol::parse(cmd)
        .unwrap()
        .unwrap()
        .get("nonce")
        .unwrap()
}

#[test]
fn sync_retries_until_answered_and_ignores_noise() {
    let mut calls = 0;
    let mut s = fake(move |k, cmd| {
        assert_eq!(k, Kind::Sync);
        calls += 1;
        if calls < 3 {
            return vec![Recv::Line("booting...".into())];
        }
        let n = nonce_of(cmd);
        vec![
            Recv::Line("@FQP READY garbage *0000".into()),
            dev(
                Kind::Ready,
                &[("proto", "1"), ("nonce", "1"), ("port", "x")],
            ),
            dev(
                Kind::Ready,
                &[
                    ("proto", "1"),
                    ("nonce", &n),
                    ("port", "demo"),
                    ("fw", "9"),
                    ("kernel", "1.0"),
                    ("tests", "4"),
                    ("devices", "ethernet,entropy"),
                ],
            ),
        ]
    });
    let info = s.sync(Duration::from_secs(5)).unwrap();
    assert_eq!(
        info,
        DeviceInfo {
            port: "demo".into(),
            fw: "9".into(),
            kernel: "1.0".into(),
            tests: 4,
            devices: Some(vec!["ethernet".into(), "entropy".into()]),
            fpu: None,
            irqs: None,
            tick_loops: None,
        }
    );
    assert_eq!(s.corrupt_lines, 1);
    assert_eq!(s.link.sent.len(), 3);
}

#[test]
fn a_piece_answered_late_and_taken_twice_leaves_the_value_as_sent() {
    // A device that applies `at` as the test kit does; it takes the second piece but its
    // answer comes only after the host gave up on it and sent the piece again.
    let value: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::<u8>::new()));
    let device = held.clone();
    let mut pieces = 0;
    let mut late: Option<Recv> = None;
    let mut s = fake(move |k, cmd| {
        assert_eq!(k, Kind::Set);
        let f = fqp_protocol::parse(cmd).unwrap().unwrap();
        let at = f.num("at").unwrap() as usize;
        let mut v = device.borrow_mut();
        assert!(at <= v.len());
        v.truncate(at);
        v.extend_from_slice(f.get("value").unwrap().as_bytes());
        let ok = dev(Kind::Ok, &[("key", "ca"), ("len", &v.len().to_string())]);
        pieces += 1;
        if pieces == 2 {
            late = Some(ok);
            return vec![Recv::Timeout];
        }
        late.take().into_iter().chain([ok]).collect()
    });
    s.set("ca", &value, Duration::from_millis(50)).unwrap();
    assert_eq!(*held.borrow(), value);
    assert_eq!(s.link.sent.len(), 5, "4 pieces, the second sent twice");
}

#[test]
fn a_declared_capability_without_its_device_is_named_with_the_accessor() {
    let info = |devices: Option<&str>| DeviceInfo {
        port: "demo".into(),
        devices: devices.map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        }),
        ..DeviceInfo::default()
    };
    let caps: Vec<String> = ["kernel", "network", "storage", "keystore"]
        .map(String::from)
        .to_vec();
    assert_eq!(info(Some("ethernet,storage")).lacking(&caps), None);
    let e = info(Some("storage")).lacking(&caps).unwrap();
    assert!(
        e.contains("capability \"network\" but board \"demo\" provides no ethernet device (Board::ethernet returned None"),
        "{e}"
    );
    assert!(!e.contains("Board::storage"), "{e}");
    let e = info(Some("")).lacking(&caps).unwrap();
    assert!(
        e.contains("Board::ethernet") && e.contains("Board::storage") && e.contains("fix: "),
        "{e}"
    );
    // Capabilities that need no device, and firmware that does not report devices.
    assert_eq!(
        info(Some("")).lacking(&["kernel".into(), "keystore".into()]),
        None
    );
    assert_eq!(info(None).lacking(&caps), None);
}

#[test]
fn sync_timeout_shows_last_output() {
    let mut s = fake(|_, _| vec![Recv::Line("U-Boot 2024.01".into())]);
    let e = s.sync(Duration::from_millis(400)).unwrap_err().to_string();
    assert!(
        e.contains("did not answer SYNC") && e.contains("U-Boot 2024.01"),
        "{e}"
    );
}

#[test]
fn a_device_that_says_hello_but_never_hears_is_told_to_check_its_receive_path() {
    let mut first = true;
    let mut s = fake(move |_, _| {
        if std::mem::take(&mut first) {
            vec![dev(
                Kind::Hello,
                &[("proto", "1"), ("port", "acme"), ("tests", "3")],
            )]
        } else {
            vec![]
        }
    });
    let e = s.sync(Duration::from_millis(400)).unwrap_err().to_string();
    assert!(
        e.contains("printed HELLO, port \"acme\"")
            && e.contains("fqp_testkit::console::rx_byte")
            && e.contains("@FQP HELLO"),
        "{e}"
    );
}

#[test]
fn sync_rejects_other_protocol_versions() {
    let mut s = fake(|_, cmd| {
        vec![dev(
            Kind::Ready,
            &[("proto", "2"), ("nonce", &nonce_of(cmd))],
        )]
    });
    assert!(s
        .sync(Duration::from_secs(1))
        .unwrap_err()
        .to_string()
        .contains("protocol version 2"));
}

#[test]
fn list_retries_when_a_line_was_lost() {
    let mut n = 0;
    let mut s = fake(move |_, _| {
        n += 1;
        let mut v = vec![dev(Kind::Test, &[("id", "a/x"), ("timeout_ms", "100")])];
        if n > 1 {
            v.push(dev(Kind::Test, &[("id", "a/y")]));
        }
        v.push(dev(Kind::Listed, &[("count", "2")]));
        v
    });
    let l = s.list(Duration::from_secs(1)).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(
        l[0],
        Listed {
            id: "a/x".into(),
            index: 0,
            timeout_ms: 100
        }
    );
    assert_eq!((l[1].index, l[1].timeout_ms), (1, 5000));
}

fn run_with(lines: Vec<Recv>) -> Outcome {
    let mut lines = Some(lines);
    let mut s = fake(move |_, _| lines.take().unwrap_or_default());
    s.run("g/t", Duration::from_millis(300))
}

#[test]
fn passing_test_with_output_and_metrics() {
    let o = run_with(vec![
        dev(Kind::Start, &[("id", "g/t")]),
        Recv::Line("plain print".into()),
        dev(Kind::Log, &[("id", "g/t"), ("msg", "hello world")]),
        dev(
            Kind::Metric,
            &[
                ("id", "g/t"),
                ("name", "switch"),
                ("value", "42.5"),
                ("unit", "cycles"),
            ],
        ),
        dev(
            Kind::End,
            &[("id", "g/t"), ("status", "pass"), ("us", "1200")],
        ),
    ]);
    assert!(!o.restart);
    assert_eq!(o.test.status, Status::Passed);
    assert_eq!(o.test.device_us, Some(1200));
    assert_eq!(o.test.output, ["plain print", "hello world"]);
    assert_eq!(o.test.metrics[0].value, 42.5);
}

#[test]
fn failed_check_carries_location() {
    let o = run_with(vec![
        dev(
            Kind::Fail,
            &[
                ("id", "g/t"),
                ("file", "src/q.rs"),
                ("line", "17"),
                ("msg", "left 1 right 2"),
            ],
        ),
        dev(Kind::End, &[("id", "g/t"), ("status", "fail"), ("us", "5")]),
    ]);
    assert_eq!(o.test.status, Status::Failed);
    assert_eq!(o.test.location.as_deref(), Some("src/q.rs:17"));
    assert_eq!(o.test.message.as_deref(), Some("left 1 right 2"));
    assert!(!o.restart);
}

/// What a misbehaving device claims never becomes a pass it did not earn, nor a report
/// that cannot be read back.
/// The device's `END` of test g/t, passed.
fn end_pass() -> Recv {
    dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "1")])
}

/// The device's figure `name` = `value` for test g/t.
fn metric(name: &str, value: &str) -> Recv {
    dev(
        Kind::Metric,
        &[
            ("id", "g/t"),
            ("name", name),
            ("value", value),
            ("unit", "u"),
        ],
    )
}

#[test]
fn a_device_is_held_to_the_protocols_meaning() {
    for (value, why) in [
        ("NaN", "not a finite number"),
        ("inf", "not a finite number"),
        ("-infinity", "not a finite number"),
        ("12abc", "not a number"),
    ] {
        let o = run_with(vec![metric("m", value), end_pass()]);
        assert_eq!(o.test.status, Status::Error, "{value}");
        assert_eq!(o.test.error_kind, Some(ErrorKind::Protocol));
        assert!(
            o.test.message.as_deref().unwrap().contains(why),
            "{:?}",
            o.test.message
        );
        assert!(o.restart);
    }
    let o = run_with(vec![metric("m", "1"), metric("m", "2"), end_pass()]);
    assert!(o
        .test
        .message
        .as_deref()
        .unwrap()
        .contains("figure m reported twice"));
    let o = run_with(vec![metric("", "1"), end_pass()]);
    assert_eq!(o.test.status, Status::Error);
    let many: Vec<Recv> = (0..=MAX_METRICS)
        .map(|i| metric(&format!("m{i}"), "1"))
        .chain([end_pass()])
        .collect();
    assert_eq!(run_with(many).test.status, Status::Error);
    // A failed check, then "pass": not a pass.
    let o = run_with(vec![
        dev(
            Kind::Fail,
            &[
                ("id", "g/t"),
                ("file", "a.rs"),
                ("line", "1"),
                ("msg", "no"),
            ],
        ),
        end_pass(),
    ]);
    assert_eq!(
        (o.test.status, o.test.error_kind),
        (Status::Error, Some(ErrorKind::Protocol))
    );
}

#[test]
fn a_tests_output_is_bounded_and_says_so() {
    let flood: Vec<Recv> = (0..MAX_OUTPUT_LINES + 500)
        .map(|i| Recv::Line(format!("line {i}")))
        .chain([end_pass()])
        .collect();
    let o = run_with(flood);
    assert_eq!(o.test.status, Status::Passed);
    assert_eq!(o.test.output.len(), MAX_OUTPUT_LINES + 1);
    assert!(
        o.test.output.last().unwrap().contains("500 more lines"),
        "{:?}",
        o.test.output.last()
    );
    let big = "x".repeat(60_000);
    let o = run_with(
        (0..10)
            .map(|_| Recv::Line(big.clone()))
            .chain([end_pass()])
            .collect(),
    );
    assert!(o.test.output.iter().map(String::len).sum::<usize>() <= MAX_OUTPUT_BYTES + 200);
}

proptest::proptest! {
    #![proptest_config(fqp_fuzzing::config())]

    /// Whatever a device sends during a test, the session never panics, and records a
    /// pass only when the device sent an intact END for this very test with status pass
    /// and no failed check before it.
    #[test]
    fn fuzz_a_test_never_passes_unearned(lines in proptest::collection::vec(fqp_fuzzing::mutated(device_lines()), 0..12)) {
        let text: Vec<String> = lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let mut queue = Some(text.iter().map(|l| Recv::Line(l.clone())).collect::<Vec<_>>());
        let mut s = fake(move |_, _| queue.take().unwrap_or_default());
        let o = s.run("g/t", Duration::ZERO);
        if o.test.status == Status::Passed {
            let ends = text.iter().filter_map(|l| fqp_protocol::parse(l).ok().flatten()).filter(|f| f.kind == Kind::End && f.get("id").as_deref() == Some("g/t"));
            proptest::prop_assert!(ends.clone().any(|f| f.raw("status") == Some("pass")), "{text:?}");
        }
        proptest::prop_assert!(o.test.output.len() <= MAX_OUTPUT_LINES + 1);
    }
}

/// What a device says during a test: the corpus the fuzzer damages.
fn device_lines() -> Vec<Vec<u8>> {
    let line = |r: Recv| match r {
        Recv::Line(l) => l.into_bytes(),
        _ => unreachable!(),
    };
    vec![
        line(dev(Kind::Start, &[("id", "g/t")])),
        line(dev(Kind::Log, &[("id", "g/t"), ("msg", "hello")])),
        line(dev(
            Kind::Metric,
            &[
                ("id", "g/t"),
                ("name", "m"),
                ("value", "1.5"),
                ("unit", "u"),
            ],
        )),
        line(dev(
            Kind::Fail,
            &[
                ("id", "g/t"),
                ("file", "a.rs"),
                ("line", "3"),
                ("msg", "no"),
            ],
        )),
        line(dev(
            Kind::End,
            &[("id", "g/t"), ("status", "pass"), ("us", "10")],
        )),
        line(dev(
            Kind::End,
            &[("id", "g/t"), ("status", "fail"), ("us", "10")],
        )),
        line(dev(Kind::Fault, &[("kind", "HardFault"), ("pc", "0x10")])),
        line(dev(
            Kind::Ask,
            &[("id", "g/t"), ("action", "restart-broker")],
        )),
        b"plain output".to_vec(),
    ]
}

#[test]
fn a_listing_is_checked() {
    let listing = |tests: Vec<Vec<(&'static str, &'static str)>>| {
        let mut s = fake(move |_, _| {
            let mut v: Vec<Recv> = tests.iter().map(|f| dev(Kind::Test, f)).collect();
            v.push(dev(Kind::Listed, &[("count", &tests.len().to_string())]));
            v
        });
        s.list(Duration::from_secs(1))
    };
    let e = listing(vec![vec![("id", "a/x")], vec![("id", "a/x")]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("listed test a/x twice"), "{e}");
    for bad in ["nogroup", "a/", "/x", "a/b/c", "a/x y", "a/<script>"] {
        let e = listing(vec![vec![("id", bad)]]).unwrap_err().to_string();
        assert!(e.contains("not group/name"), "{bad}: {e}");
    }
    let l = listing(vec![vec![
        ("id", "a/x"),
        ("timeout_ms", "18446744073709551615"),
    ]])
    .unwrap();
    assert_eq!(l[0].timeout_ms, MAX_TEST_TIMEOUT_MS);
}

#[test]
fn fault_reports_pc_and_asks_for_restart() {
    let o = run_with(vec![dev(
        Kind::Fault,
        &[
            ("kind", "HardFault"),
            ("pc", "0x00001234"),
            ("lr", "0x1"),
            ("cfsr", "0x00010000"),
        ],
    )]);
    assert_eq!(o.test.status, Status::Error);
    assert_eq!(o.test.error_kind, Some(ErrorKind::Fault));
    assert!(o
        .test
        .message
        .as_deref()
        .unwrap()
        .contains("HardFault at pc=0x00001234"));
    assert_eq!(o.test.details["pc"], "0x00001234");
    assert!(o.restart);
}

#[test]
fn panic_reset_timeout_and_loss() {
    let o = run_with(vec![dev(
        Kind::Panic,
        &[("file", "a.rs"), ("line", "3"), ("msg", "boom")],
    )]);
    assert_eq!(
        (o.test.error_kind, o.test.location.as_deref()),
        (Some(ErrorKind::Panic), Some("a.rs:3"))
    );
    let o = run_with(vec![dev(Kind::Hello, &[("proto", "1")])]);
    assert_eq!(o.test.error_kind, Some(ErrorKind::Reset));
    let o = run_with(vec![dev(Kind::Start, &[("id", "g/t")])]);
    assert_eq!(o.test.error_kind, Some(ErrorKind::Timeout));
    assert!(o.restart);
    let o = run_with(vec![Recv::Closed]);
    assert_eq!(o.test.error_kind, Some(ErrorKind::DeviceLost));
}

#[test]
fn damaged_end_is_asked_again() {
    let good = dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "9")]);
    let Recv::Line(text) = &good else {
        unreachable!()
    };
    let damaged = text.replace("pass", "pasS");
    let mut first = true;
    let mut s = fake(move |k, _| match k {
        Kind::Run if first => {
            first = false;
            vec![Recv::Line(damaged.clone())]
        }
        Kind::Again => vec![good_line()],
        _ => vec![],
    });
    fn good_line() -> Recv {
        dev(Kind::End, &[("id", "g/t"), ("status", "pass"), ("us", "9")])
    }
    let o = s.run("g/t", Duration::from_secs(1));
    assert_eq!(o.test.status, Status::Passed);
    assert_eq!(s.link.sent, ["RUN", "AGAIN"]);
    assert_eq!(s.corrupt_lines, 1);
}

#[test]
fn summary_returns_the_device_counts() {
    let mut s = fake(|k, _| {
        assert_eq!(k, Kind::Summary);
        let counts = [("passed", "3"), ("failed", "1"), ("skipped", "0")];
        vec![Recv::Line("noise".into()), dev(Kind::Summary, &counts)]
    });
    assert_eq!(s.summary(Duration::from_secs(1)), Some([3, 1, 0]));
    let mut silent = fake(|_, _| vec![]);
    assert_eq!(silent.summary(Duration::from_millis(50)), None);
}

#[test]
fn stale_end_of_another_test_is_ignored() {
    let o = run_with(vec![
        dev(Kind::End, &[("id", "g/old"), ("status", "fail")]),
        dev(
            Kind::End,
            &[("id", "g/t"), ("status", "skip"), ("reason", "no timer")],
        ),
    ]);
    assert_eq!(o.test.status, Status::Skipped);
    assert_eq!(o.test.message.as_deref(), Some("no timer"));
}

#[test]
fn a_hard_float_image_needs_the_fpu_capability_and_only_it_has_it() {
    let info = |fpu: Option<bool>| DeviceInfo {
        port: "m4f".into(),
        fpu,
        ..DeviceInfo::default()
    };
    let with = ["kernel".to_string(), "fpu".to_string()];
    let without = ["kernel".to_string()];
    let e = info(Some(true)).lacking(&without).unwrap();
    assert!(e.contains("hard-float") && e.contains("add \"fpu\""), "{e}");
    let e = info(Some(false)).lacking(&with).unwrap();
    assert!(
        e.contains("soft-float") && e.contains("thumbv7em-none-eabihf"),
        "{e}"
    );
    assert_eq!(info(Some(true)).lacking(&with), None);
    assert_eq!(info(Some(false)).lacking(&without), None);
    assert_eq!(
        info(None).lacking(&with),
        None,
        "a test kit that does not say"
    );
}

#[test]
fn test_interrupts_that_do_not_fire_are_named_with_the_function_to_fix() {
    let info = |lines: u64, fired: &[u64]| DeviceInfo {
        port: "b".into(),
        irqs: Some((lines, fired.to_vec())),
        ..DeviceInfo::default()
    };
    assert_eq!(info(2, &[0, 1]).irqs_blocked(), None);
    let e = info(2, &[0]).irqs_blocked().unwrap();
    assert!(
        e.contains("test interrupt 1")
            && e.contains("Board::pend_test_irq(1)")
            && e.contains("dispatch(1)"),
        "{e}"
    );
    let e = info(1, &[0]).irqs_blocked().unwrap();
    assert!(e.contains("offers 1 test interrupts"), "{e}");
    assert_eq!(
        DeviceInfo::default().irqs_blocked(),
        None,
        "a test kit that did not check"
    );
}

#[test]
fn a_device_clock_off_against_the_hosts_names_the_constant() {
    let info = DeviceInfo {
        port: "b".into(),
        ..DeviceInfo::default()
    };
    // (device µs, host ms): three long tests and short ones (the serial line's latency).
    let right = [(500_000, 510), (1_000_000, 1_004), (800_000, 805), (100, 3)];
    assert_eq!(info.clock_off(right), None);
    let slow = [(50_000, 500), (100_000, 1_000), (80_000, 800)];
    let msg = info.clock_off(slow).unwrap();
    assert!(
        msg.contains("10.0 times slower")
            && msg.contains("10.0 times higher")
            && msg.contains("CPU_HZ"),
        "{msg}"
    );
    let fast = [(5_000_000, 500), (10_000_000, 1_000), (8_000_000, 800)];
    assert!(info.clock_off(fast).unwrap().contains("times faster"));
    assert_eq!(
        info.clock_off([(50_000, 500), (100_000, 1_000)]),
        None,
        "under 2 s of long tests: not judged"
    );
    assert_eq!(
        info.clock_off([(1, 150); 40]),
        None,
        "short tests are the serial line's latency"
    );
}

#[test]
fn a_tick_off_by_ten_names_the_clock_constant_and_a_right_one_passes() {
    // 32 ns per instruction (QEMU -icount 5), 4 instructions per loop: a 1000 Hz tick is
    // 7812 loops.
    let info = |loops: u64| DeviceInfo {
        port: "b".into(),
        tick_loops: Some(loops),
        ..DeviceInfo::default()
    };
    assert_eq!(info(7812).tick_off(32.0, 1000), None);
    assert_eq!(
        info(7000).tick_off(32.0, 1000),
        None,
        "interrupts during the count"
    );
    let slow = info(78_120).tick_off(32.0, 1000).unwrap();
    assert!(
        slow.contains("about 100 Hz")
            && slow.contains("10.0 times higher")
            && slow.contains("CPU_HZ"),
        "{slow}"
    );
    let fast = info(781).tick_off(32.0, 1000).unwrap();
    assert!(fast.contains("times lower"), "{fast}");
    assert_eq!(
        DeviceInfo::default().tick_off(32.0, 1000),
        None,
        "not measured"
    );
}

#[test]
fn a_test_that_reboots_is_followed_and_gets_the_boot_loaders_swap_time() {
    let mut s = fake(|k, cmd| match k {
        Kind::Run if !cmd.contains("resumed") => vec![
            dev(Kind::Start, &[("id", "g/t")]),
            dev(Kind::Reboot, &[("id", "g/t"), ("us", "7000000")]),
        ],
        Kind::Sync => vec![
            Recv::Line("fqp-boot: installed the new image (swap 2345 ms)".into()),
            Recv::Line(
                "fqp-boot: starting 0.1.1 (trial), security counter 0 (boot 1500 ms)".into(),
            ),
            dev(
                Kind::Ready,
                &[
                    ("proto", "1"),
                    ("nonce", &nonce_of(cmd)),
                    ("port", "demo"),
                    ("fw", "9"),
                    ("kernel", "1.0"),
                    ("tests", "1"),
                ],
            ),
        ],
        Kind::Run => vec![
            dev(Kind::Start, &[("id", "g/t")]),
            dev(
                Kind::End,
                &[("id", "g/t"), ("status", "pass"), ("us", "2000000")],
            ),
        ],
        _ => vec![],
    });
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = steps.clone();
    s.on_reboot = Some(Box::new(move |step| seen.lock().unwrap().push(step)));
    let o = s.run("g/t", Duration::from_secs(5));
    assert_eq!(o.test.status, Status::Passed, "{:?}", o.test);
    assert!(o.rebooted);
    assert_eq!(
        *steps.lock().unwrap(),
        [RebootStep::Asked, RebootStep::Synced]
    );
    let swap = o.test.metrics.iter().find(|m| m.name == "swap_ms").unwrap();
    assert_eq!((swap.value, swap.unit.as_str()), (2345.0, "ms"));
    let boot = o.test.metrics.iter().find(|m| m.name == "boot_ms").unwrap();
    assert_eq!(boot.value, 1500.0);
    // The test's device time: before the reboot, the boot loader's, after it.
    assert_eq!(o.test.device_us, Some(7_000_000 + 1_500_000 + 2_000_000));
}

#[test]
fn the_boot_loaders_figures_are_read_from_its_lines_only() {
    use super::run::loader_figure;
    assert_eq!(
        loader_figure("fqp-boot: installed the new image (swap 2345 ms)"),
        Some(("swap_ms", 2345.0))
    );
    assert_eq!(
        loader_figure("fqp-boot: rolled back: the new image did not confirm itself (swap 80 ms)"),
        Some(("revert_ms", 80.0))
    );
    assert_eq!(
        loader_figure("fqp-boot: starting 0.1.1 (trial), security counter 0 (boot 1650 ms)"),
        Some(("boot_ms", 1650.0))
    );
    for other in [
        "fqp-boot: installed the new image",
        "fqp-boot: starting 0.1.1 (trial), security counter 0",
        "fqp-boot: installed the new image (boot 5 ms)",
        "fqp-boot: starting 0.1.1 (swap 5 ms)",
        "fqp-boot: refused the new image: bad signature (swap 1 ms)",
        "fqp-boot: installed the new image (swap NaN ms)",
        "installed the new image (swap 1 ms)",
    ] {
        assert_eq!(loader_figure(other), None, "{other}");
    }
}
