//! The device's cloud libraries (fqp-shadow and fqp-jobs over fqp-mqtt, as the firmware uses
//! them) against the cloud's endpoint on the host: every document they write is one the cloud
//! takes, every answer the cloud gives is one they read.

use fqp_cloud::endpoint::{token, Settings};
use fqp_cloud::{Cloud, Endpoint};
use fqp_mqtt::{Client, Connect, Mailbox, Message};
use fqp_shadow::{doc, Answer, Error, Op, Shadow};
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::sync::Arc;

const SECRET: &[u8] = b"device-libraries";

fn ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
struct Lamp {
    #[serde(default)]
    on: Option<bool>,
    #[serde(default)]
    level: Option<u8>,
}

struct Lab {
    endpoint: Endpoint,
    path: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lab(name: &str) -> Lab {
    let path = std::env::temp_dir().join(format!("fqp-devlibs-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let cloud = Arc::new(Cloud::open(&path).unwrap());
    cloud.registry().put_thing("lamp", None).unwrap();
    let settings = Settings {
        bind: "127.0.0.1".parse().unwrap(),
        port: 0,
        tls: None,
        secret: SECRET.to_vec(),
        open_policy: false,
    };
    let endpoint = Endpoint::start(cloud, settings).unwrap();
    Lab { endpoint, path }
}

type Box8 = Mailbox<8, 2048>;

/// Runs `body` with a client connected as the lamp, its messages going to a mailbox.
fn as_lamp(
    lab: &Lab,
    body: impl FnOnce(&mut Client<'_, TcpStream, Box<dyn FnMut(&Message<'_>) + '_>>, &Box8),
) {
    as_thing(lab, "lamp", body)
}

/// Runs `body` with a client connected as `thing` (registered in the lab's cloud).
fn as_thing(
    lab: &Lab,
    thing: &str,
    body: impl FnOnce(&mut Client<'_, TcpStream, Box<dyn FnMut(&Message<'_>) + '_>>, &Box8),
) {
    let mailbox = Box8::new();
    let (mut tx, mut rx) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let handler: Box<dyn FnMut(&Message<'_>)> = Box::new(|m| {
        mailbox.offer(m);
    });
    let mut c = Client::new(&mut tx, &mut rx, ms, handler);
    let password = token(SECRET, thing);
    let connect = Connect {
        client_id: thing,
        clean_session: true,
        keep_alive: 30,
        username: Some(thing),
        password: Some(password.as_bytes()),
        will: None,
    };
    c.connect(
        TcpStream::connect(lab.endpoint.plain).unwrap(),
        &connect,
        5_000,
    )
    .unwrap();
    body(&mut c, &mailbox);
}

#[test]
fn the_shadow_library_round_trips_with_the_cloud() {
    let lab = lab("round-trip");
    as_lamp(&lab, |c, mailbox| {
        let lamp = Shadow::classic("lamp");
        lamp.subscribe(c).unwrap();
        let mut body = [0u8; 512];
        let n = doc::request(&mut body, "g1").unwrap();
        let missing = lamp.request(c, mailbox, Op::Get, &body[..n], 5_000, |_| ());
        assert!(
            matches!(missing, Err(Error::Rejected(r)) if r.code == 404),
            "{missing:?}"
        );

        let reported = Lamp {
            on: Some(false),
            level: Some(3),
        };
        let n = doc::update(&mut body, None::<&()>, Some(&reported), None, "u1").unwrap();
        let v = lamp
            .request(c, mailbox, Op::Update, &body[..n], 5_000, doc::version)
            .unwrap();
        assert_eq!(v, Some(1));

        // The operator wants it on: the device hears the delta.
        let desired = br#"{"state":{"desired":{"on":true}}}"#;
        lab.endpoint
            .operate("$aws/things/lamp/shadow/update", desired)
            .unwrap();
        let mut delta = None;
        for _ in 0..50 {
            c.poll(100).unwrap();
            delta = lamp.take(mailbox, Answer::Delta, |p| doc::delta::<Lamp>(p).unwrap());
            if delta.is_some() {
                break;
            }
        }
        assert_eq!(
            delta,
            Some((
                2,
                Lamp {
                    on: Some(true),
                    level: None
                }
            ))
        );

        // A stale version is refused; the current one is taken.
        let on = Lamp {
            on: Some(true),
            level: None,
        };
        let n = doc::update(&mut body, None::<&()>, Some(&on), Some(1), "u2").unwrap();
        let stale = lamp.request(c, mailbox, Op::Update, &body[..n], 5_000, |_| ());
        assert!(
            matches!(stale, Err(Error::Rejected(r)) if r.code == 409),
            "{stale:?}"
        );
        let n = doc::update(&mut body, None::<&()>, Some(&on), Some(2), "u3").unwrap();
        assert!(lamp
            .request(c, mailbox, Op::Update, &body[..n], 5_000, |_| ())
            .is_ok());

        let n = doc::request(&mut body, "g2").unwrap();
        let (v, state) = lamp
            .request(c, mailbox, Op::Get, &body[..n], 5_000, |p| {
                let (v, s) = doc::document::<Lamp>(p).unwrap();
                (v, s)
            })
            .unwrap();
        assert_eq!(v, 3);
        // `level: None` went as `null`: the contract deletes that key.
        assert_eq!(
            state.reported,
            Some(Lamp {
                on: Some(true),
                level: None
            })
        );
        assert_eq!(state.delta, None, "reported caught up with desired");

        // A named shadow is its own document.
        let cfg = Shadow::named("lamp", "cfg");
        cfg.subscribe(c).unwrap();
        let n = doc::update(&mut body, None::<&()>, Some(&reported), None, "n1").unwrap();
        let v = cfg
            .request(c, mailbox, Op::Update, &body[..n], 5_000, doc::version)
            .unwrap();
        assert_eq!(v, Some(1));
        let n = doc::request(&mut body, "d1").unwrap();
        assert!(cfg
            .request(c, mailbox, Op::Delete, &body[..n], 5_000, |_| ())
            .is_ok());
        let gone = cfg.request(c, mailbox, Op::Get, &body[..n], 5_000, |_| ());
        assert!(
            matches!(gone, Err(Error::Rejected(r)) if r.code == 404),
            "{gone:?}"
        );
    });
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order<'a> {
    #[serde(borrow)]
    operation: &'a str,
}

#[test]
fn the_jobs_library_drives_executions_in_the_cloud() {
    use fqp_jobs::{doc as jdoc, Jobs, Request, Status};
    let lab = lab("jobs");
    let cloud = lab.endpoint.cloud();
    for (id, op) in [("j1", "blink"), ("j2", "reboot")] {
        let job = fqp_cloud::jobs::NewJob {
            id,
            document: serde_json::json!({ "operation": op }),
            things: vec!["lamp"],
            ..Default::default()
        };
        cloud.jobs().create(&job, 1).unwrap();
    }
    as_lamp(&lab, |c, mailbox| {
        let jobs = Jobs::new("lamp");
        jobs.subscribe(c).unwrap();
        let mut body = [0u8; 256];
        let n = jdoc::start_next(&mut body, None::<&()>, "s1").unwrap();
        let (id, version, op) = jobs
            .request(c, mailbox, Request::StartNext, &body[..n], 5_000, |p| {
                let e = jdoc::execution::<Order<'_>, fqp_jobs::Ignored>(p)
                    .unwrap()
                    .unwrap();
                (
                    e.job_id.to_string(),
                    e.version,
                    e.document.unwrap().operation.to_string(),
                )
            })
            .unwrap();
        assert_eq!((id.as_str(), op.as_str()), ("j1", "blink"));
        let n = jdoc::update(
            &mut body,
            Status::Succeeded,
            Some(version + 1),
            None::<&()>,
            "u1",
        )
        .unwrap();
        let stale = jobs.request(c, mailbox, Request::Update("j1"), &body[..n], 5_000, |_| ());
        match stale {
            Err(fqp_jobs::Error::Rejected(r)) => {
                assert_eq!(r.code, fqp_jobs::Code::VersionMismatch)
            }
            other => panic!("{other:?}"),
        }
        let n = jdoc::update(
            &mut body,
            Status::Succeeded,
            Some(version),
            None::<&()>,
            "u2",
        )
        .unwrap();
        let state = jobs
            .request(c, mailbox, Request::Update("j1"), &body[..n], 5_000, |p| {
                jdoc::state::<fqp_jobs::Ignored>(p).map(|s| (s.status, s.version))
            })
            .unwrap()
            .unwrap();
        assert_eq!(state, (Status::Succeeded, version + 1));
        let n = jdoc::request(&mut body, "l1").unwrap();
        let queued = jobs
            .request(c, mailbox, Request::List, &body[..n], 5_000, |p| {
                let l = jdoc::pending::<4>(p).unwrap();
                (
                    l.in_progress.len(),
                    l.queued
                        .iter()
                        .map(|s| s.job_id.to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap();
        assert_eq!(queued, (0, vec!["j2".to_string()]));
    });
    let e = cloud.jobs().execution("lamp", "j1").unwrap().unwrap();
    assert_eq!(e["status"], "SUCCEEDED");
}

#[test]
fn the_defender_agent_reports_in_every_encoding_and_naming() {
    use fqp_defender::{Agent, Connection, Encoding, Metrics, Names, Stats};
    let lab = lab("defender");
    let conns = [Connection {
        remote: "10.0.2.2:8883".parse().unwrap(),
        local_port: 49152,
    }];
    let metrics = Metrics {
        tcp_ports: &[8080],
        udp_ports: &[68],
        stats: Some(Stats {
            bytes_in: 1_000,
            bytes_out: 2_000,
            packets_in: 10,
            packets_out: 20,
        }),
        connections: &conns,
    };
    as_lamp(&lab, |c, mailbox| {
        let mut sizes = Vec::new();
        let mut first_id = 100;
        for encoding in [Encoding::Json, Encoding::Cbor] {
            for names in [Names::Long, Names::Short] {
                let mut agent = Agent::new("lamp", encoding, names, 1_000, first_id);
                first_id += 10;
                agent.subscribe(c).unwrap();
                let mut buf = [0u8; 1024];
                let (id, bytes) = agent.encode(&metrics, &mut buf).unwrap();
                sizes.push(bytes.len());
                let bytes = bytes.to_vec();
                assert_eq!(
                    agent.send(c, mailbox, id, &bytes, 5_000),
                    Ok(id),
                    "{encoding:?} {names:?}"
                );
                let kept = lab
                    .endpoint
                    .cloud()
                    .defender()
                    .latest("lamp")
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    (
                        kept.id,
                        kept.tcp_ports.as_slice(),
                        kept.udp_ports.as_slice()
                    ),
                    (id, &[8080][..], &[68][..])
                );
                assert_eq!(kept.stats.unwrap().bytes_out, 2_000);
                assert_eq!(kept.connections[0].0.to_string(), "10.0.2.2:8883");
                // The same id again is a duplicate, refused with the cloud's reason.
                match agent.send(c, mailbox, id, &bytes, 5_000) {
                    Err(fqp_defender::Error::Rejected(r)) => {
                        assert_eq!(r.code.as_str(), "DuplicateReportId")
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        // JSON long, JSON short, CBOR long, CBOR short: CBOR smaller than JSON, short
        // names smaller than long.
        let [jl, js, cl, cs] = sizes[..] else {
            panic!()
        };
        assert!(cl < jl && cs < js && js < jl && cs < cl, "{sizes:?}");
        eprintln!(
            "report sizes (bytes): JSON long {}, JSON short {}, CBOR long {}, CBOR short {}",
            sizes[0], sizes[1], sizes[2], sizes[3]
        );
    });
}

#[test]
fn the_greengrass_library_reads_what_discovery_answers() {
    use fqp_cloud::greengrass::{Connectivity, Core, Group};
    let lab = lab("greengrass");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&key).unwrap();
    let gg = lab.endpoint.cloud().greengrass();
    let entry = |id: &str, port| Connectivity {
        id: id.into(),
        host: "10.0.2.2".into(),
        port,
        metadata: String::new(),
    };
    gg.put_group(&Group {
        id: "gg-fqp-device-1".into(),
        cores: vec![Core {
            thing_arn: "arn:aws:iot:local:000000000000:thing/fqp-core".into(),
            connectivity: vec![entry("dead", 1), entry("core", 8883)],
        }],
        cas: vec![ca.pem()],
        members: vec!["lamp".into()],
    })
    .unwrap();
    let body = gg.discover("lamp").unwrap().unwrap().to_string();
    let d = fqp_greengrass::parse(body.as_bytes()).unwrap();
    assert_eq!(d.groups[0].id, "gg-fqp-device-1");
    let mut der = [0u8; 1024];
    let n = d.groups[0].cas[0].der(&mut der).unwrap();
    assert_eq!(
        &der[..n],
        ca.der().as_ref(),
        "the PEM decodes to the CA's DER"
    );
    assert_eq!(d.groups[0].cores[0].connectivity[1].port, 8883);
}

/// A board of the OTA test: a simulated flash whose primary slot holds v1, signed by the
/// test signer.
fn ota_board(board: &str) -> (fqp_boot::sim::Sim, fqp_boot::Layout) {
    use fqp_ota::test_signer;
    let sim = fqp_boot::sim::Sim::new(40, 4096, 8);
    let layout = fqp_boot::Layout::whole(&sim).unwrap();
    let v1 = test_signer::sign(
        fqp_boot::Version::new(1, 0, 0),
        1,
        board,
        5_000,
        ota_payload(1),
    )
    .unwrap();
    let mut image = ota_file(&v1, 1);
    image.resize(image.len().next_multiple_of(8), 0xff);
    fqp_port::Flash::program(&sim, layout.primary.offset, &image).unwrap();
    (sim, layout)
}

fn ota_payload(seed: u32) -> impl Fn(u32) -> u8 {
    move |i| (i.wrapping_mul(13) ^ seed) as u8
}

/// The whole file of a test-signed image.
fn ota_file(f: &fqp_ota::test_signer::TestFile, seed: u32) -> Vec<u8> {
    let mut out = f.header.to_vec();
    out.extend((0..f.len - 256).map(ota_payload(seed)));
    out
}

/// The boot loader's keys on the simulated boards: the test signer's.
fn trusted() -> [fqp_boot::TrustedKey; 1] {
    let key = p256::ecdsa::SigningKey::from_bytes(&fqp_ota::test_signer::KEY.into()).unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    [fqp_boot::TrustedKey::new(
        point.as_bytes().try_into().unwrap(),
    )]
}

/// How the agents of these tests fetch: 1 KiB blocks (the mailbox's slots hold one), four
/// at a time, a request sent again after 2 s.
fn agent_config() -> fqp_ota::Config {
    fqp_ota::Config {
        block_size: 1024,
        blocks_per_request: 4,
        request_timeout_ms: 2_000,
        ..fqp_ota::Config::default()
    }
}

/// Update `id` of the lamp to v2 (19 000 bytes), created in `lab`'s cloud and announced.
fn offer_v2(lab: &Lab, id: &str, board: &str) {
    use fqp_ota::test_signer;
    let v2 = test_signer::sign(
        fqp_boot::Version::new(2, 0, 0),
        1,
        board,
        19_000,
        ota_payload(2),
    )
    .unwrap();
    let file = ota_file(&v2, 2);
    let update = fqp_cloud::ota::NewUpdate::to_things(id, &file, v2.signature(), vec!["lamp"]);
    let cloud = lab.endpoint.cloud();
    lab.endpoint
        .publish(&cloud.create_update(&update, 1).unwrap());
}

/// The OTA agent (fqp-ota) against the cloud's update service: a v2 image fetched over the
/// stream into a simulated flash running v1, checked, activated; the boot loader installs it
/// on trial; after the "reset" its self test decides — accepted, the job succeeds; rejected,
/// the job fails with the reason and the boot loader brings v1 back. A file checked against
/// another signer's certificate, or with no certificate of the name the job gives, fails its
/// job with the reason and asks nothing of the boot loader.
#[test]
fn the_ota_agent_updates_through_the_clouds_stream() {
    use fqp_boot::{boot, Event, Version};
    use fqp_ota::test_signer::{CERT, OTHER_CERT};
    use fqp_ota::{Agent, Pal, Step};
    const BOARD: &str = "sim-board";
    let config = agent_config();
    for self_test_passes in [true, false] {
        let lab = lab(if self_test_passes {
            "ota-accept"
        } else {
            "ota-reject"
        });
        let cloud = lab.endpoint.cloud();
        let (sim, layout) = ota_board(BOARD);
        offer_v2(&lab, "1", BOARD);
        as_lamp(&lab, |c, mailbox| {
            let mut pal = Pal::new(&sim, BOARD).unwrap();
            let mut agent = Agent::new("lamp", &mut pal, config);
            let step = agent.update(c, mailbox, &[("code-signing", CERT)]).unwrap();
            assert!(
                matches!(step, Step::Activated { ref job } if job == "ota-1"),
                "{step:?}"
            );
        });
        let e = cloud.jobs().execution("lamp", "ota-1").unwrap().unwrap();
        assert_eq!(e["status"], "IN_PROGRESS", "{e}");
        assert_eq!(e["statusDetails"]["self_test"], "ready", "{e}");
        assert_eq!(e["statusDetails"]["updatedBy"], "0x02000000", "{e}");
        // The reset: the boot loader installs v2 on trial.
        let b = boot(&sim, &layout, &trusted(), BOARD).unwrap();
        assert_eq!(
            (b.header.version, b.event, b.trial),
            (Version::new(2, 0, 0), Event::Installed, true)
        );
        as_lamp(&lab, |c, mailbox| {
            let mut pal = Pal::new(&sim, BOARD).unwrap();
            let mut agent = Agent::new("lamp", &mut pal, config);
            let step = agent.after_boot(c, mailbox, || self_test_passes).unwrap();
            match step {
                Some(Step::Accepted { job }) => assert!(self_test_passes && job == "ota-1"),
                Some(Step::Failed { reason, .. }) => {
                    assert!(!self_test_passes);
                    assert_eq!(reason, "self test failed");
                }
                other => panic!("{other:?}"),
            }
        });
        let e = cloud.jobs().execution("lamp", "ota-1").unwrap().unwrap();
        let b = boot(&sim, &layout, &trusted(), BOARD).unwrap();
        if self_test_passes {
            assert_eq!(e["status"], "SUCCEEDED", "{e}");
            assert_eq!(e["statusDetails"]["self_test"], "accepted", "{e}");
            assert_eq!(
                (b.header.version, b.event),
                (Version::new(2, 0, 0), Event::Unchanged)
            );
        } else {
            assert_eq!(e["status"], "FAILED", "{e}");
            assert_eq!(e["statusDetails"]["reason"], "self test failed", "{e}");
            assert_eq!(b.header.version, Version::new(1, 0, 0));
            assert_eq!(b.event, Event::RolledBack { rejected: true });
        }
    }
    // The certificates the device holds (name, DER), and the reason the job fails with.
    type Held<'c> = &'c [(&'c str, &'c [u8])];
    let cases: [(Held<'_>, &str); 2] = [
        // Found out from the header, at the first block.
        (&[("code-signing", OTHER_CERT)], "untrusted signer"),
        (
            &[("another-name", CERT)],
            "no such signer certificate on the device",
        ),
    ];
    for (certificates, why) in cases {
        let lab = lab("ota-refused");
        let (sim, layout) = ota_board(BOARD);
        offer_v2(&lab, "2", BOARD);
        as_lamp(&lab, |c, mailbox| {
            let mut pal = Pal::new(&sim, BOARD).unwrap();
            let mut agent = Agent::new("lamp", &mut pal, config);
            let step = agent.update(c, mailbox, certificates).unwrap();
            assert!(
                matches!(step, Step::Failed { reason, .. } if reason == why),
                "{step:?}"
            );
            // Nothing else pending.
            assert_eq!(agent.update(c, mailbox, certificates).unwrap(), Step::NoJob);
        });
        let e = lab
            .endpoint
            .cloud()
            .jobs()
            .execution("lamp", "ota-2")
            .unwrap()
            .unwrap();
        assert_eq!(e["status"], "FAILED", "{e}");
        assert_eq!(e["statusDetails"]["reason"], why, "{e}");
        // What the device did around the failure, for whoever debugs it from the cloud.
        let log = e["statusDetails"]["log"].as_str().unwrap_or_default();
        assert!(log.starts_with("took ota-2: file "), "{e}");
        assert!(log.ends_with(&format!("failed: {why}")), "{e}");
        let b = boot(&sim, &layout, &trusted(), BOARD).unwrap();
        assert_eq!(
            (b.header.version, b.event),
            (Version::new(1, 0, 0), Event::Unchanged)
        );
    }
}

/// A download the cloud cuts off (`Endpoint::cut_after`) goes on over the next connection
/// from the blocks already written: the agent takes the same job again, fetches only what is
/// missing, and the file passes its checks.
#[test]
fn the_ota_agent_resumes_a_download_after_a_lost_connection() {
    use fqp_ota::test_signer::CERT;
    use fqp_ota::{Agent, AgentError, Config, Pal, Step};
    const BOARD: &str = "sim-board";
    let config = Config {
        block_size: 1024,
        blocks_per_request: 2,
        request_timeout_ms: 2_000,
        ..Config::default()
    };
    let lab = lab("ota-resume");
    let (sim, _layout) = ota_board(BOARD);
    offer_v2(&lab, "3", BOARD);
    let mut pal = Pal::new(&sim, BOARD).unwrap();
    let mut agent = Agent::new("lamp", &mut pal, config);
    lab.endpoint.cut_after("lamp", 7);
    as_lamp(&lab, |c, mailbox| {
        let r = agent.update(c, mailbox, &[("code-signing", CERT)]);
        assert!(matches!(r, Err(AgentError::Mqtt(_))), "{r:?}");
    });
    let (first, blocks) = (agent.fetched().blocks, agent.fetched().of);
    assert!(first >= 7 && first < blocks, "{first} of {blocks}");
    as_lamp(&lab, |c, mailbox| {
        let step = agent.update(c, mailbox, &[("code-signing", CERT)]).unwrap();
        assert!(
            matches!(step, Step::Activated { ref job } if job == "ota-3"),
            "{step:?}"
        );
    });
    let f = agent.fetched();
    let (second, all) = (f.blocks, f.of);
    // The file is 19 000 bytes and its header: what the first call did not fetch.
    assert_eq!(f.bytes, 19_256 - u64::from(first) * 1024);
    assert_eq!(all, blocks);
    assert_eq!(first + second, blocks, "every block fetched once");
    let e = lab
        .endpoint
        .cloud()
        .jobs()
        .execution("lamp", "ota-3")
        .unwrap()
        .unwrap();
    assert_eq!(e["statusDetails"]["self_test"], "ready", "{e}");
}

/// A reset in the middle of a download (the agent and its platform layer made anew over the
/// same flash, as after a power cut): the agent takes the job again and goes on from the
/// blocks it recorded in the job as written (`written`, on a sector boundary), fetching only
/// the rest; the file passes its checks. When the slot no longer holds what was recorded,
/// the download starts over rather than trusting it.
#[test]
fn the_ota_agent_resumes_a_download_after_a_reset() {
    use fqp_ota::test_signer::CERT;
    use fqp_ota::{Agent, AgentError, Config, Pal, Step};
    const BOARD: &str = "sim-board";
    let config = Config {
        progress_every: 2,
        ..agent_config()
    };
    let cut_then_reset = |lab: &Lab, sim: &fqp_boot::sim::Sim, job: &str| {
        lab.endpoint.cut_after("lamp", 9);
        let mut pal = Pal::new(sim, BOARD).unwrap();
        let mut agent = Agent::new("lamp", &mut pal, config);
        as_lamp(lab, |c, mailbox| {
            let r = agent.update(c, mailbox, &[("code-signing", CERT)]);
            assert!(matches!(r, Err(AgentError::Mqtt(_))), "{r:?}");
        });
        let e = lab.endpoint.cloud().jobs().execution("lamp", job);
        let e = e.unwrap().unwrap();
        let written = e["statusDetails"]["written"].as_str().unwrap().to_string();
        let kept: u32 = written
            .strip_suffix(" blocks of 1024")
            .unwrap()
            .parse()
            .unwrap();
        // Reports every 2 blocks, 9 before the cut; 1 KiB blocks, 4 KiB sectors.
        assert!(kept >= 4 && kept.is_multiple_of(4), "{e}");
        kept
    };
    let resumed = |lab: &Lab, sim: &fqp_boot::sim::Sim, job: &str| {
        let mut pal = Pal::new(sim, BOARD).unwrap();
        let mut agent = Agent::new("lamp", &mut pal, config);
        as_lamp(lab, |c, mailbox| {
            let step = agent.update(c, mailbox, &[("code-signing", CERT)]).unwrap();
            assert!(
                matches!(step, Step::Activated { job: ref j } if j == job),
                "{step:?}"
            );
        });
        agent.fetched()
    };

    let cloud = lab("ota-reset");
    let (sim, layout) = ota_board(BOARD);
    offer_v2(&cloud, "4", BOARD);
    let kept = cut_then_reset(&cloud, &sim, "ota-4");
    let f = resumed(&cloud, &sim, "ota-4");
    assert_eq!(
        f.blocks,
        f.of - kept,
        "only the blocks not recorded as written"
    );
    assert_eq!(f.bytes, 19_256 - u64::from(kept) * 1024);
    let e = cloud.endpoint.cloud().jobs().execution("lamp", "ota-4");
    let e = e.unwrap().unwrap();
    assert_eq!(
        e["statusDetails"]["retries"], "1",
        "the download gone on with: {e}"
    );

    // The slot's first sector lost (what was recorded is not there): from the start.
    let cloud = lab("ota-reset-lost");
    let (sim, _) = ota_board(BOARD);
    offer_v2(&cloud, "5", BOARD);
    cut_then_reset(&cloud, &sim, "ota-5");
    fqp_port::Flash::erase(&sim, layout.secondary.offset, layout.sector).unwrap();
    let f = resumed(&cloud, &sim, "ota-5");
    assert_eq!((f.blocks, f.bytes), (f.of, 19_256), "every block again");
}

/// A continuous update for a group, deployed to a fleet of three boards (each its own flash
/// and agent): the two in the group when it is created and the one that joins it later all
/// take it, install it on trial, pass their self test and end SUCCEEDED; a thing outside the
/// group is offered nothing.
#[test]
fn a_group_update_reaches_every_member_and_those_that_join_later() {
    use fqp_boot::{boot, Event, Version};
    use fqp_ota::test_signer::{self, CERT};
    use fqp_ota::{Agent, Config, Pal, Step};
    const BOARD: &str = "sim-board";
    let config = agent_config();
    let lab = lab("ota-group");
    let cloud = lab.endpoint.cloud();
    let (members, late, outsider) = (["lamp-1", "lamp-2"], "lamp-3", "lamp-4");
    cloud.registry().create_group("kitchen", None).unwrap();
    for t in members.iter().chain([&late, &outsider]) {
        cloud.registry().put_thing(t, None).unwrap();
    }
    for t in members {
        cloud.registry().add_to_group("kitchen", t).unwrap();
    }
    let v2 = test_signer::sign(Version::new(2, 0, 0), 1, BOARD, 19_000, ota_payload(2)).unwrap();
    let file = ota_file(&v2, 2);
    let mut update =
        fqp_cloud::ota::NewUpdate::to_things("kitchen-v2", &file, v2.signature(), vec![]);
    update.groups = vec!["kitchen"];
    update.continuous = true;
    lab.endpoint
        .publish(&cloud.create_update(&update, 1).unwrap());
    lab.endpoint
        .publish(&cloud.jobs().join_group("kitchen", late, 2).unwrap());
    for thing in members.iter().chain([&late]) {
        let (sim, layout) = ota_board(BOARD);
        as_thing(&lab, thing, |c, mailbox| {
            let mut pal = Pal::new(&sim, BOARD).unwrap();
            let mut agent = Agent::new(thing, &mut pal, config);
            let step = agent.update(c, mailbox, &[("code-signing", CERT)]).unwrap();
            assert!(
                matches!(step, Step::Activated { ref job } if job == "ota-kitchen-v2"),
                "{thing}: {step:?}"
            );
        });
        let b = boot(&sim, &layout, &trusted(), BOARD).unwrap();
        assert_eq!(
            (b.header.version, b.event),
            (Version::new(2, 0, 0), Event::Installed)
        );
        as_thing(&lab, thing, |c, mailbox| {
            let mut pal = Pal::new(&sim, BOARD).unwrap();
            let mut agent = Agent::new(thing, &mut pal, config);
            let step = agent.after_boot(c, mailbox, || true).unwrap();
            assert!(
                matches!(step, Some(Step::Accepted { .. })),
                "{thing}: {step:?}"
            );
        });
        let e = cloud
            .jobs()
            .execution(thing, "ota-kitchen-v2")
            .unwrap()
            .unwrap();
        assert_eq!(e["status"], "SUCCEEDED", "{thing}: {e}");
    }
    let (sim, _) = ota_board(BOARD);
    // Blocks the mailbox's slots cannot hold: said before any job is taken.
    as_thing(&lab, outsider, |c, mailbox| {
        let mut pal = Pal::new(&sim, BOARD).unwrap();
        let big = Config {
            block_size: 2048,
            ..config
        };
        let mut agent = Agent::new(outsider, &mut pal, big);
        assert_eq!(
            agent.update(c, mailbox, &[("code-signing", CERT)]),
            Err(fqp_ota::AgentError::Buffers {
                block: 2048,
                slot: 2048
            })
        );
    });
    as_thing(&lab, outsider, |c, mailbox| {
        let mut pal = Pal::new(&sim, BOARD).unwrap();
        let mut agent = Agent::new(outsider, &mut pal, config);
        assert_eq!(
            agent.update(c, mailbox, &[("code-signing", CERT)]).unwrap(),
            Step::NoJob
        );
    });
    assert_eq!(
        cloud.jobs().executions_of("ota-kitchen-v2").unwrap().len(),
        3
    );
}
