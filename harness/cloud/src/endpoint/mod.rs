//! The cloud's MQTT endpoint: the broker devices connect to, as AWS IoT's data endpoint is —
//! a broker and the services in one, so that the policy is enforced where messages pass.
//!
//! Why our own broker: the contract's topics all start with `$aws/`, and rumqttd (the lab's
//! embedded broker) refuses filters that start with `$` and never routes such topics; the
//! policy (a connection's identity, its own client id and topics) must be checked on every
//! CONNECT, SUBSCRIBE and PUBLISH; and Device Defender's cross-check needs what each thing
//! really sent and received. The packets are rumqttc's MQTT 3.1.1 codec; the rest is here.
//!
//! - Two listeners: mutual TLS (the thing is whichever registered thing holds the client
//!   certificate, and the client id must be that thing) and plain TCP for a lab (user name =
//!   client id = the thing, password = its token, derived from the cloud's secret — the shape
//!   of AWS IoT's custom authentication).
//! - The policy ([`crate::registry::allowed`]): a refused CONNECT gets return code 5, a
//!   refused filter SUBACK 0x80, a publish outside the thing's topics ends the connection (as
//!   AWS IoT does). A second connection with a client id ends the first.
//! - Requests (`…/shadow/get`, `…/jobs/start-next`, …) are answered in order per connection
//!   by the services, off the network threads; more than [`MAX_IN_FLIGHT`] unanswered on one
//!   connection are refused at once (shadow 429, jobs RequestThrottled). A lab can hold a
//!   thing's requests ([`Endpoint::hold`]) to make that happen on purpose.
//! - Every session is clean (no queued messages for a client that is away), every delivery at
//!   most the QoS granted, at most 1.

mod filter;
mod session;
#[cfg(test)]
mod tests;

use crate::service::Cloud;
use crate::shadow::Message;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, watch};

pub use filter::{matches, valid};
pub use session::now;

/// Most requests one connection may have unanswered (the contract's figure).
pub const MAX_IN_FLIGHT: usize = 10;

/// Largest packet the endpoint takes (AWS IoT's limit for a message).
pub const MAX_PACKET: usize = 128 * 1024;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the cloud endpoint cannot listen on {addr}: {why}\n  fix: free the port or give another one")]
    Listen { addr: SocketAddr, why: String },
    #[error("the cloud endpoint's TLS: {0}\n  fix: give a server certificate and key in DER (PKCS#8) and the CA the devices' certificates chain to")]
    Tls(String),
    #[error("the cloud endpoint's threads: {0}")]
    Runtime(String),
}

/// The mutual-TLS listener's identity and trust.
#[derive(Clone)]
pub struct Tls {
    /// The server's certificate chain (DER), its own first.
    pub chain: Vec<Vec<u8>>,
    /// The server's key, PKCS#8 DER.
    pub key: Vec<u8>,
    /// The CAs devices' certificates must chain to (DER).
    pub client_cas: Vec<Vec<u8>>,
}

/// A TLS server configuration for `tls`: TLS 1.2 and 1.3, client certificates required from
/// its CAs (the endpoint's listener, the discovery endpoint); none asked when it names no CA
/// (the OTA data plane, whose URLs are the credential).
pub fn server_config(tls: &Tls) -> Result<rustls::ServerConfig, EndpointError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let chain: Vec<CertificateDer<'static>> = tls
        .chain
        .iter()
        .cloned()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls.key.clone()));
    if tls.client_cas.is_empty() {
        return rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| EndpointError::Tls(e.to_string()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in &tls.client_cas {
        roots
            .add(CertificateDer::from(ca.clone()))
            .map_err(|e| EndpointError::Tls(format!("a client CA: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| EndpointError::Tls(e.to_string()))?;
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| EndpointError::Tls(e.to_string()))
}

/// Where and how the endpoint listens.
#[derive(Clone)]
pub struct Settings {
    /// The address to listen on: loopback for an emulator's user network, every interface
    /// for boards.
    pub bind: IpAddr,
    /// The plain listener's port (0: any free port).
    pub port: u16,
    /// The TLS listener, if any, and its port (0: any free port).
    pub tls: Option<(Tls, u16)>,
    /// What the plain listener's tokens derive from.
    pub secret: Vec<u8>,
    /// The policy left out on topics (a connection still needs its credentials): only for
    /// the harness's own proof that the authorization group fails such a cloud.
    pub open_policy: bool,
}

/// What the endpoint saw of one thing, over all its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Connections accepted (CONNACK 0).
    pub connections: u64,
    /// Connections refused (a CONNACK other than 0, or ended for a refused publish).
    pub refused: u64,
    /// Bytes received from the thing and sent to it, MQTT packets whole.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// PUBLISH packets received from the thing and sent to it.
    pub messages_in: u64,
    pub messages_out: u64,
}

/// A running endpoint. Dropping it stops it: every connection ends, and the cloud is let go
/// once the requests being answered are (within two seconds).
pub struct Endpoint {
    /// Where the plain listener listens.
    pub plain: SocketAddr,
    /// Where the TLS listener listens, if there is one.
    pub tls: Option<SocketAddr>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// What a connection's writer is told.
#[derive(Debug)]
enum Out {
    /// A packet the endpoint answers with (CONNACK, PUBACK, SUBACK, UNSUBACK, PINGRESP).
    Packet(rumqttc::mqttbytes::v4::Packet),
    /// A message for the client: topic, payload, QoS.
    Publish(String, bytes::Bytes, u8),
    /// End the connection (another connection took its client id, or the cloud ends it).
    Close,
}

/// One connected client.
struct Client {
    thing: String,
    client_id: String,
    /// Its subscriptions: filter and granted QoS.
    filters: Vec<(String, u8)>,
    tx: mpsc::UnboundedSender<Out>,
}

/// What every connection shares.
struct Shared {
    cloud: Arc<Cloud>,
    secret: Vec<u8>,
    open_policy: bool,
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
    traffic: Mutex<HashMap<String, Traffic>>,
    held: Mutex<HashSet<String>>,
    /// For each thing, what its connection had carried when its latest Defender report came
    /// (bytes in and out, the report itself not counted).
    before_report: Mutex<HashMap<String, Traffic>>,
    /// Bumped whenever a hold is released.
    released: watch::Sender<u64>,
    /// For each thing, how many more blocks of a stream its connection carries before the
    /// cloud drops it ([`Endpoint::cut_after`]: a connection lost in the middle of a download).
    cut_after: Mutex<HashMap<String, u32>>,
}

/// Locks `m`; a panic elsewhere while it was held leaves the data usable (plain maps).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The plain listener's password for `thing`: the first 16 bytes of HMAC-SHA256(secret,
/// thing), hex.
pub fn token(secret: &[u8], thing: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, thing.as_bytes());
    tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Shared {
    fn count(&self, thing: &str, f: impl FnOnce(&mut Traffic)) {
        f(lock(&self.traffic).entry(thing.to_string()).or_default());
    }

    /// Delivers `message` to every client subscribed to its topic.
    fn publish(&self, message: &Message) {
        let payload = bytes::Bytes::from(message.bytes());
        self.publish_raw(&message.topic, &payload);
    }

    fn publish_raw(&self, topic: &str, payload: &bytes::Bytes) {
        let clients = lock(&self.clients);
        for c in clients.values() {
            let granted = c
                .filters
                .iter()
                .filter(|(f, _)| matches(f, topic))
                .map(|(_, q)| *q)
                .max();
            if let Some(qos) = granted {
                let _ =
                    c.tx.send(Out::Publish(topic.to_string(), payload.clone(), qos));
            }
        }
    }

    /// Whether `thing`'s connection must end before it carries this message to it: a
    /// stream's block, once the blocks it may still carry ([`Endpoint::cut_after`]) are used.
    fn cut_before(&self, thing: &str, topic: &str) -> bool {
        if !(topic.contains("/streams/") && topic.ends_with("/data/cbor")) {
            return false;
        }
        let mut cuts = lock(&self.cut_after);
        match cuts.get_mut(thing) {
            Some(0) => {
                cuts.remove(thing);
                true
            }
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        }
    }

    fn is_held(&self, thing: &str) -> bool {
        lock(&self.held).contains(thing)
    }

    /// Waits while `thing`'s requests are held.
    async fn unheld(&self, thing: &str) {
        let mut changes = self.released.subscribe();
        while self.is_held(thing) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Once a second, ends the executions past their in-progress timeout (TIMED_OUT) and tells
/// their things.
async fn expire_jobs(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let cloud = shared.cloud.clone();
        let ended = tokio::task::spawn_blocking(move || cloud.jobs().expire(session::now())).await;
        if let Ok(Ok(messages)) = ended {
            messages.iter().for_each(|m| shared.publish(m));
        }
    }
}

impl Endpoint {
    /// Starts listening; the endpoint runs on its own threads until dropped.
    pub fn start(cloud: Arc<Cloud>, settings: Settings) -> Result<Endpoint, EndpointError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fqp-cloud")
            .enable_all()
            .build()
            .map_err(|e| EndpointError::Runtime(e.to_string()))?;
        let shared = Arc::new(Shared {
            cloud,
            secret: settings.secret.clone(),
            open_policy: settings.open_policy,
            clients: Mutex::default(),
            next_id: AtomicU64::new(1),
            traffic: Mutex::default(),
            held: Mutex::default(),
            before_report: Mutex::default(),
            released: watch::channel(0).0,
            cut_after: Mutex::default(),
        });
        let bind = |port| {
            let addr = SocketAddr::new(settings.bind, port);
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| EndpointError::Listen {
                    addr,
                    why: e.to_string(),
                })?;
            let local = l.local_addr().map_err(|e| EndpointError::Listen {
                addr,
                why: e.to_string(),
            })?;
            Ok::<_, EndpointError>((l, local))
        };
        let (plain, plain_addr) = bind(settings.port)?;
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(plain)
            .map_err(|e| EndpointError::Runtime(e.to_string()))?;
        runtime.spawn(session::accept_plain(listener, shared.clone()));
        runtime.spawn(expire_jobs(shared.clone()));
        let tls = match &settings.tls {
            Some((tls, port)) => {
                let acceptor = session::acceptor(tls)?;
                let (l, addr) = bind(*port)?;
                let listener = tokio::net::TcpListener::from_std(l)
                    .map_err(|e| EndpointError::Runtime(e.to_string()))?;
                runtime.spawn(session::accept_tls(listener, acceptor, shared.clone()));
                Some(addr)
            }
            None => None,
        };
        Ok(Endpoint {
            plain: plain_addr,
            tls,
            shared,
            runtime: Some(runtime),
        })
    }

    pub fn cloud(&self) -> &Arc<Cloud> {
        &self.shared.cloud
    }

    /// What the plain listener's tokens derive from.
    pub fn secret(&self) -> &[u8] {
        &self.shared.secret
    }

    /// The plain listener's password for `thing`.
    pub fn token(&self, thing: &str) -> String {
        token(&self.shared.secret, thing)
    }

    /// What the endpoint saw of `thing` so far.
    pub fn traffic(&self, thing: &str) -> Traffic {
        lock(&self.shared.traffic)
            .get(thing)
            .copied()
            .unwrap_or_default()
    }

    /// What the connection that sent `thing`'s latest Defender report had carried before it
    /// (`bytes_in`: from the device, `bytes_out`: to it): what the report must not fall short
    /// of.
    pub fn before_report(&self, thing: &str) -> Option<Traffic> {
        lock(&self.shared.before_report).get(thing).copied()
    }

    /// Holds `thing`'s requests unanswered (they count as in flight) until [`Self::release`].
    pub fn hold(&self, thing: &str) {
        lock(&self.shared.held).insert(thing.to_string());
    }

    /// Drops `thing`'s connection when it has carried `blocks` more stream blocks to it, as a
    /// network that fails in the middle of a download would (once: its next connection is
    /// left alone).
    pub fn cut_after(&self, thing: &str, blocks: u32) {
        lock(&self.shared.cut_after).insert(thing.to_string(), blocks);
    }

    /// Answers `thing`'s held requests, in order, and those that follow.
    pub fn release(&self, thing: &str) {
        lock(&self.shared.held).remove(thing);
        self.shared.released.send_modify(|n| *n += 1);
    }

    /// Publishes the cloud's own messages (an operator's change: a job created, a shadow
    /// updated) to the clients subscribed to them.
    pub fn publish(&self, messages: &[Message]) {
        for m in messages {
            self.shared.publish(m);
        }
    }

    /// Makes a request as the operator (the cloud's other door: a console, a script) and
    /// publishes what it causes, the answer included, as AWS IoT does for a shadow changed
    /// through its HTTP API; returns the messages.
    pub fn operate(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Vec<Message>, crate::store::StoreError> {
        let messages = self.shared.cloud.request(topic, payload, session::now())?;
        self.publish(&messages);
        Ok(messages)
    }

    /// Ends every connection of `thing`; how many there were.
    pub fn disconnect(&self, thing: &str) -> usize {
        let clients = lock(&self.shared.clients);
        let mine: Vec<&Client> = clients.values().filter(|c| c.thing == thing).collect();
        for c in &mine {
            let _ = c.tx.send(Out::Close);
        }
        mine.len()
    }

    /// The client ids connected now, with their things.
    pub fn connected(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = lock(&self.shared.clients)
            .values()
            .map(|c| (c.client_id.clone(), c.thing.clone()))
            .collect();
        all.sort();
        all
    }
}
