//! One connection's life: the listeners' accept loops, the CONNECT and who the client is,
//! then its packets read in one task, written in another, and its requests answered in a
//! third, in order.

use super::{lock, token, EndpointError, Out, Shared, Tls, MAX_IN_FLIGHT, MAX_PACKET};
use crate::registry::{allowed, Access, Policy};
use crate::service::Cloud;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    self, ConnAck, Connect, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::QoS;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// How long a new connection has to finish TLS and send its CONNECT.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Who the transport says the client is.
enum Identity {
    /// Plain TCP: whoever the user name and token say.
    Token,
    /// Mutual TLS: the SHA-256 of the client's certificate (hex).
    Certificate(String),
}

/// The TLS acceptor of `tls`.
pub(super) fn acceptor(tls: &Tls) -> Result<TlsAcceptor, EndpointError> {
    Ok(TlsAcceptor::from(Arc::new(super::server_config(tls)?)))
}

pub(super) async fn accept_plain(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, Identity::Token, shared.clone()));
    }
}

pub(super) async fn accept_tls(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(CONNECT_WAIT, acceptor.accept(stream)).await
            else {
                return;
            };
            let fingerprint = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|der| crate::registry::fingerprint(der));
            if let Some(f) = fingerprint {
                serve(tls, Identity::Certificate(f), shared).await;
            }
        });
    }
}

/// Seconds since the Unix epoch: the cloud's clock.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the next packet into `buf`; with its size on the wire. `None` when the stream ends
/// or breaks, or sends what is not MQTT 3.1.1 or is larger than [`MAX_PACKET`]. Cancel-safe:
/// bytes read stay in `buf`.
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Option<(Packet, usize)> {
    loop {
        let before = buf.len();
        match v4::read(buf, MAX_PACKET) {
            Ok(p) => return Some((p, before - buf.len())),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(_) => return None,
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Who the client of `connect` is: its thing and the policies attached to it, or the CONNACK
/// code refusing it.
fn authenticate(
    cloud: &Cloud,
    secret: &[u8],
    connect: &Connect,
    identity: &Identity,
) -> Result<(String, Vec<Policy>), ConnectReturnCode> {
    let id = &connect.client_id;
    if id.is_empty() {
        return Err(ConnectReturnCode::BadClientId);
    }
    let registry = cloud.registry();
    let thing = match identity {
        Identity::Certificate(fingerprint) => {
            let things = registry
                .things_with_certificate(fingerprint)
                .map_err(|_| ConnectReturnCode::ServiceUnavailable)?;
            match things.contains(id) {
                true => id.clone(),
                false => return Err(ConnectReturnCode::NotAuthorized),
            }
        }
        Identity::Token => {
            let login = connect
                .login
                .as_ref()
                .filter(|l| l.password == token(secret, &l.username))
                .ok_or(ConnectReturnCode::BadUserNamePassword)?;
            let known = registry
                .thing(&login.username)
                .map_err(|_| ConnectReturnCode::ServiceUnavailable)?;
            match known.is_some() && login.username == *id {
                true => id.clone(),
                false => return Err(ConnectReturnCode::NotAuthorized),
            }
        }
    };
    // Quarantine (Device Defender's mitigation) denies the thing everything.
    match cloud.defender().quarantined(&thing) {
        Ok(false) => {}
        Ok(true) => return Err(ConnectReturnCode::NotAuthorized),
        Err(_) => return Err(ConnectReturnCode::ServiceUnavailable),
    }
    let grants = registry
        .policies_of(&thing)
        .map_err(|_| ConnectReturnCode::ServiceUnavailable)?;
    Ok((thing, grants))
}

fn connack(code: ConnectReturnCode) -> Out {
    Out::Packet(Packet::ConnAck(ConnAck {
        session_present: false,
        code,
    }))
}

/// Serves one connection from its CONNECT to its end.
async fn serve<S>(stream: S, identity: Identity, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let Ok(Some((Packet::Connect(connect), size))) =
        tokio::time::timeout(CONNECT_WAIT, read_packet(&mut rd, &mut buf)).await
    else {
        return;
    };
    let (cloud, secret) = (shared.cloud.clone(), shared.secret.clone());
    let c = connect.clone();
    let who = tokio::task::spawn_blocking(move || authenticate(&cloud, &secret, &c, &identity))
        .await
        .unwrap_or(Err(ConnectReturnCode::ServiceUnavailable));
    let (tx, rx) = mpsc::unbounded_channel();
    let (thing, grants) = match who {
        Ok(who) => who,
        Err(code) => {
            shared.count(&connect.client_id, |t| t.refused += 1);
            let _ = tx.send(connack(code));
            drop(tx);
            write_loop(wr, rx, shared, String::new(), Arc::default()).await;
            return;
        }
    };
    let id = shared
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    {
        let mut clients = lock(&shared.clients);
        // The connection that had this client id ends; it is no longer the client's (nothing
        // more is delivered to it) from now on, whenever its task finishes.
        clients.retain(|_, other| {
            let taken = other.client_id == connect.client_id;
            if taken {
                let _ = other.tx.send(Out::Close);
            }
            !taken
        });
        clients.insert(
            id,
            super::Client {
                thing: thing.clone(),
                client_id: connect.client_id.clone(),
                filters: Vec::new(),
                tx: tx.clone(),
            },
        );
    }
    shared.count(&thing, |t| {
        t.connections += 1;
        t.bytes_in += size as u64;
    });
    let _ = tx.send(connack(ConnectReturnCode::Success));
    let wire = Arc::new(Wire::default());
    wire.bytes_in.store(size as u64, Ordering::Relaxed);
    let writer = tokio::spawn(write_loop(
        wr,
        rx,
        shared.clone(),
        thing.clone(),
        wire.clone(),
    ));
    let conn = Connection {
        id,
        thing,
        client_id: connect.client_id,
        keep_alive: connect.keep_alive,
        tx,
        shared: shared.clone(),
        in_flight: Arc::new(AtomicUsize::new(0)),
        wire,
        grants,
    };
    conn.run(rd, buf, writer).await;
    lock(&shared.clients).remove(&id);
}

/// Bytes through one connection so far.
#[derive(Default)]
struct Wire {
    bytes_in: std::sync::atomic::AtomicU64,
    bytes_out: std::sync::atomic::AtomicU64,
}

/// Writes what the connection is told to, until told to close or the client is gone.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<Shared>,
    thing: String,
    wire: Arc<Wire>,
) {
    let mut pkid = 0u16;
    let mut buf = BytesMut::with_capacity(4096);
    while let Some(out) = rx.recv().await {
        buf.clear();
        let written = match out {
            Out::Close => break,
            Out::Packet(p) => encode(&p, &mut buf),
            Out::Publish(topic, payload, qos) => {
                if shared.cut_before(&thing, &topic) {
                    break;
                }
                pkid = pkid.checked_add(1).unwrap_or(1);
                let mut p = Publish::from_bytes(topic, qos_of(qos), payload);
                p.pkid = if qos == 0 { 0 } else { pkid };
                shared.count(&thing, |t| t.messages_out += 1);
                p.write(&mut buf).is_ok()
            }
        };
        if !written {
            break;
        }
        // Counted as it is handed to the socket: the client can answer a packet (and its
        // report count it) before this task would run again after the write.
        wire.bytes_out
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if !thing.is_empty() {
            shared.count(&thing, |t| t.bytes_out += buf.len() as u64);
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

fn encode(p: &Packet, buf: &mut BytesMut) -> bool {
    match p {
        Packet::ConnAck(a) => a.write(buf),
        Packet::PubAck(a) => a.write(buf),
        Packet::SubAck(a) => a.write(buf),
        Packet::UnsubAck(a) => a.write(buf),
        Packet::PingResp => v4::PingResp.write(buf),
        _ => return false,
    }
    .is_ok()
}

fn qos_of(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// An accepted connection.
struct Connection {
    id: u64,
    thing: String,
    client_id: String,
    keep_alive: u16,
    tx: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    in_flight: Arc<AtomicUsize>,
    wire: Arc<Wire>,
    /// The policies attached to the thing when it connected: grants beyond the rule.
    grants: Vec<Policy>,
}

impl Connection {
    /// Whether the contract's rule or one of the thing's policies allows `access` on `topic`.
    fn may(&self, topic: &str, access: Access) -> bool {
        self.shared.open_policy
            || allowed(&self.thing, &self.client_id, topic, access)
            || self
                .grants
                .iter()
                .any(|p| p.allows(&self.thing, topic, access))
    }

    /// Reads and handles packets until the client leaves, breaks the protocol or the policy,
    /// stays silent past 1.5 keep-alive periods, or the writer ends.
    async fn run<R: AsyncRead + Unpin>(
        self,
        mut rd: R,
        mut buf: BytesMut,
        mut writer: tokio::task::JoinHandle<()>,
    ) {
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        tokio::spawn(answer(
            req_rx,
            self.in_flight.clone(),
            self.shared.clone(),
            self.thing.clone(),
        ));
        let silence = match self.keep_alive {
            0 => Duration::from_secs(24 * 3600),
            k => Duration::from_millis(u64::from(k) * 1500),
        };
        loop {
            let packet = tokio::select! {
                p = tokio::time::timeout(silence, read_packet(&mut rd, &mut buf)) => p,
                _ = &mut writer => return,
            };
            let Ok(Some((packet, size))) = packet else {
                break;
            };
            self.shared
                .count(&self.thing, |t| t.bytes_in += size as u64);
            // Counted on the wire after it is handled: a report sees what came before it.
            let handled = self.handle(packet, &req_tx);
            self.wire.bytes_in.fetch_add(size as u64, Ordering::Relaxed);
            if !handled {
                break;
            }
        }
        let _ = self.tx.send(Out::Close);
        let _ = writer.await;
    }

    /// Handles one packet; false when the connection must end.
    fn handle(&self, packet: Packet, requests: &mpsc::UnboundedSender<(String, Bytes)>) -> bool {
        let send = |p| self.tx.send(Out::Packet(p)).is_ok();
        match packet {
            Packet::Publish(p) => self.publish(p, requests),
            Packet::Subscribe(s) => {
                let ack = self.subscribe(s);
                send(Packet::SubAck(ack))
            }
            Packet::Unsubscribe(u) => {
                if let Some(c) = lock(&self.shared.clients).get_mut(&self.id) {
                    c.filters.retain(|(f, _)| !u.topics.contains(f));
                }
                send(Packet::UnsubAck(UnsubAck { pkid: u.pkid }))
            }
            Packet::PingReq => send(Packet::PingResp),
            Packet::PubAck(_) => true,
            // DISCONNECT, a second CONNECT, QoS 2's packets (AWS IoT has no QoS 2).
            _ => false,
        }
    }

    fn publish(&self, p: Publish, requests: &mpsc::UnboundedSender<(String, Bytes)>) -> bool {
        self.shared.count(&self.thing, |t| t.messages_in += 1);
        if p.qos == QoS::ExactlyOnce || !self.may(&p.topic, Access::Publish) {
            self.shared.count(&self.thing, |t| t.refused += 1);
            return false;
        }
        if p.qos == QoS::AtLeastOnce {
            let ack = Packet::PubAck(PubAck { pkid: p.pkid });
            if self.tx.send(Out::Packet(ack)).is_err() {
                return false;
            }
        }
        self.shared.publish_raw(&p.topic, &p.payload);
        if !Cloud::is_request(&p.topic) {
            return true;
        }
        if p.topic.contains("/defender/metrics/") {
            let seen = super::Traffic {
                bytes_in: self.wire.bytes_in.load(Ordering::Relaxed),
                bytes_out: self.wire.bytes_out.load(Ordering::Relaxed),
                ..Default::default()
            };
            lock(&self.shared.before_report).insert(self.thing.clone(), seen);
        }
        if self.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
            if let Some(refusal) = Cloud::throttled(&p.topic, &p.payload, now()) {
                self.shared.publish(&refusal);
            }
            return true;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        requests.send((p.topic, p.payload)).is_ok()
    }

    /// Grants each filter the policy allows (at most QoS 1) and records it.
    fn subscribe(&self, s: Subscribe) -> SubAck {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut clients = lock(&self.shared.clients);
        let Some(me) = clients.get_mut(&self.id) else {
            return SubAck::new(s.pkid, vec![SubscribeReasonCode::Failure; s.filters.len()]);
        };
        for f in s.filters {
            let ok = super::valid(&f.path) && self.may(&f.path, Access::Subscribe);
            if !ok {
                codes.push(SubscribeReasonCode::Failure);
                continue;
            }
            let qos = u8::from(f.qos != QoS::AtMostOnce);
            me.filters.retain(|(have, _)| *have != f.path);
            me.filters.push((f.path, qos));
            codes.push(SubscribeReasonCode::Success(qos_of(qos)));
        }
        SubAck::new(s.pkid, codes)
    }
}

/// Answers a connection's requests in order (after any hold), each by the services on a
/// blocking thread (the store commits to disk), the answers published to their subscribers.
async fn answer(
    mut requests: mpsc::UnboundedReceiver<(String, Bytes)>,
    in_flight: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    thing: String,
) {
    while let Some((topic, payload)) = requests.recv().await {
        shared.unheld(&thing).await;
        let cloud = shared.cloud.clone();
        let t = topic.clone();
        let answers = tokio::task::spawn_blocking(move || cloud.request(&t, &payload, now())).await;
        match answers {
            Ok(Ok(messages)) => {
                messages.iter().for_each(|m| shared.publish(m));
                if topic.contains("/defender/metrics/") {
                    end_if_quarantined(&shared, &thing).await;
                }
            }
            // The store failed: the services' own refusal (500, InternalError) says so.
            _ => {
                if let Some(m) = Cloud::failed(&topic, now()) {
                    shared.publish(&m);
                }
            }
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends the connections of `thing` if a report put it in quarantine.
async fn end_if_quarantined(shared: &Arc<Shared>, thing: &str) {
    let cloud = shared.cloud.clone();
    let t = thing.to_string();
    let quarantined = tokio::task::spawn_blocking(move || cloud.defender().quarantined(&t))
        .await
        .ok()
        .and_then(Result::ok);
    if quarantined == Some(true) {
        for c in lock(&shared.clients).values().filter(|c| c.thing == thing) {
            let _ = c.tx.send(Out::Close);
        }
    }
}
