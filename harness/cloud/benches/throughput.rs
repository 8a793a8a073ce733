//! The cloud's throughput: N things (rumqttc clients, each on its own connection) update
//! their shadows concurrently, each waiting for its update's `accepted` before the next, as a
//! device does. Prints updates per second and the round trip's percentiles; every update is a
//! committed (durable) transaction of the store.
//!
//!     cargo bench -p fqp-cloud --bench throughput -- [THINGS] [UPDATES_EACH]
//!
//! (defaults: 1000 things, 5 updates each).

use fqp_cloud::endpoint::{token, Settings};
use fqp_cloud::{Cloud, Endpoint};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"throughput";

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let things = args.first().copied().unwrap_or(1000) as usize;
    let updates = args.get(1).copied().unwrap_or(5) as usize;
    let path = std::env::temp_dir().join(format!("fqp-throughput-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let cloud = Arc::new(Cloud::open(&path).expect("a database"));
    for i in 0..things {
        cloud
            .registry()
            .put_thing(&format!("t{i}"), None)
            .expect("a thing");
    }
    let settings = Settings {
        bind: "127.0.0.1".parse().expect("an address"),
        port: 0,
        tls: None,
        secret: SECRET.to_vec(),
        open_policy: false,
    };
    let endpoint = Endpoint::start(cloud, settings).expect("the endpoint");
    let port = endpoint.plain.port();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let mut latencies: Vec<Duration> = rt.block_on(async move {
        let tasks: Vec<_> = (0..things)
            .map(|i| tokio::spawn(thing(format!("t{i}"), port, updates)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("a client task"));
        }
        all
    });
    let took = started.elapsed();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "{things} things × {updates} shadow updates: {} accepted in {:.2} s = {:.0} updates/s; round trip p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        took.as_secs_f64(),
        latencies.len() as f64 / took.as_secs_f64(),
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    drop(endpoint);
    let _ = std::fs::remove_file(&path);
}

/// One thing: connects, subscribes to its update answers, updates `n` times in turn; each
/// update's round trip.
async fn thing(name: String, port: u16, n: usize) -> Vec<Duration> {
    let mut o = MqttOptions::new(&name, "127.0.0.1", port);
    o.set_credentials(&name, token(SECRET, &name));
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut events) = AsyncClient::new(o, 10);
    let accepted = format!("$aws/things/{name}/shadow/update/accepted");
    client
        .subscribe(&accepted, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let mut out = Vec::with_capacity(n);
    let mut sent: Option<Instant> = None;
    let mut next = 0;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) | Ok(Event::Incoming(Packet::Publish(_))) => {
                if let Some(t) = sent.take() {
                    out.push(t.elapsed());
                }
                if next == n {
                    return out;
                }
                let body = format!(r#"{{"state":{{"reported":{{"n":{next}}}}}}}"#);
                client
                    .publish(
                        format!("$aws/things/{name}/shadow/update"),
                        QoS::AtMostOnce,
                        false,
                        body,
                    )
                    .await
                    .expect("publish");
                sent = Some(Instant::now());
                next += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
}
