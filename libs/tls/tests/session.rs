//! fqp-tls against rustls over real TCP on this machine: the handshake with mutual
//! authentication, data both ways in many records, timeouts between records, and each way
//! a server or a client certificate is refused, seen from both ends.

use fqp_tls::{Buffers, CertError, ClientAuth, Config, Error, Session, RECORD_BUFFER};
use fqp_transport::Transport;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const HOST: &str = "broker.fqp.lab";

struct Tcp(TcpStream);

impl Transport for Tcp {
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
        let t = Duration::from_millis(timeout_ms.max(1).into());
        self.0.set_write_timeout(Some(t)).unwrap();
        self.0.write(data).map_err(|_| fqp_transport::Error::Closed)
    }

    fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
        let t = Duration::from_millis(timeout_ms.max(1).into());
        self.0.set_read_timeout(Some(t)).unwrap();
        match self.0.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(fqp_transport::Error::Timeout)
            }
            Err(_) => Err(fqp_transport::Error::Closed),
        }
    }
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let der = p.self_signed(&key).unwrap().der().to_vec();
    Ca {
        params: p,
        key,
        der,
    }
}

/// A certificate from `ca` for `key`.
fn issue(ca: &Ca, key: &KeyPair, name: &str, server: bool) -> Vec<u8> {
    let mut p = CertificateParams::new(if server {
        vec![name.to_string()]
    } else {
        vec![]
    })
    .unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    p.signed_by(key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap()
        .der()
        .to_vec()
}

/// A TLS 1.3 echo server requiring a client certificate from `client_ca`; each connection's
/// ending (rustls's error, or "closed") is sent on the channel.
fn server(cert: Vec<u8>, key: &KeyPair, client_ca: &[u8]) -> (u16, mpsc::Receiver<String>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(client_ca.to_vec())).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, c);
            let mut buf = [0u8; 8192];
            let end = loop {
                match s.read(&mut buf) {
                    Ok(0) => break "closed".to_string(),
                    Ok(n) if &buf[..n] == b"close please" => {
                        s.conn.send_close_notify();
                        let _ = s.flush();
                        break "closed by the server".to_string();
                    }
                    Ok(n) => {
                        if let Err(e) = s.write_all(&buf[..n]) {
                            break e.to_string();
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            let _ = tx.send(end);
        }
    });
    (port, rx)
}

struct Lab {
    root: Ca,
    client_key: KeyPair,
    client_cert: Vec<u8>,
}

impl Lab {
    fn new() -> Lab {
        let root = ca("fqp test root");
        let client_key = KeyPair::generate().unwrap();
        let client_cert = issue(&root, &client_key, "device", false);
        Lab {
            root,
            client_key,
            client_cert,
        }
    }

    /// A server whose certificate comes from `issuer` (the lab root when `None`).
    fn server(&self, issuer: Option<&Ca>) -> (u16, mpsc::Receiver<String>) {
        let key = KeyPair::generate().unwrap();
        let cert = issue(issuer.unwrap_or(&self.root), &key, HOST, true);
        server(cert, &key, &self.root.der)
    }
}

/// The client's key as a `signature::Signer`, as a keystore lends it.
fn signer(key: &KeyPair) -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey;
    p256::ecdsa::SigningKey::from_pkcs8_der(&key.serialize_der()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn open<'b>(
    port: u16,
    bufs: &'b mut Buffers<'_>,
    root: &[u8],
    client: Option<ClientAuth<'_>>,
) -> Result<Session<'b, Tcp>, Error> {
    let tcp = Tcp(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let config = Config {
        server_name: HOST,
        root_ca: root,
        now: Some(now()),
        seed: [7; 32],
        client,
        handshake_timeout_ms: 5_000,
        io_timeout_ms: 5_000,
    };
    Session::open(tcp, bufs, &config)
}

fn buffers() -> (Vec<u8>, Vec<u8>) {
    (vec![0; RECORD_BUFFER], vec![0; 4096])
}

#[test]
fn mutual_authentication_and_data_both_ways() {
    let lab = Lab::new();
    let (port, ends) = lab.server(None);
    let key = signer(&lab.client_key);
    let (mut r, mut w) = buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let client = ClientAuth {
        certificate: &lab.client_cert,
        signer: &key,
    };
    let mut s = open(port, &mut bufs, &lab.root.der, Some(client)).expect("handshake");

    // Nothing sent yet: a wait between records times out and the session goes on.
    let mut buf = vec![0u8; 70_000];
    assert_eq!(
        s.read(&mut buf, 50),
        Err(Error::Transport(fqp_transport::Error::Timeout))
    );
    assert_eq!(s.ended(), None);

    // 64 KiB in many records each way.
    let data: Vec<u8> = (0..65_536u32).map(|i| (i * 7 + i / 251) as u8).collect();
    s.send_all(&data, 5_000).unwrap();
    s.recv_exact(&mut buf[..data.len()], 5_000).unwrap();
    assert!(buf[..data.len()] == data[..], "echo differs");

    // The server's close_notify reads as the end of the stream.
    s.send_all(b"close please", 5_000).unwrap();
    assert_eq!(s.read(&mut buf, 5_000), Ok(0));
    assert_eq!(
        ends.recv_timeout(Duration::from_secs(5)).unwrap(),
        "closed by the server"
    );
}

#[test]
fn a_server_from_another_ca_is_refused_as_unknown_issuer() {
    let lab = Lab::new();
    let rogue = ca("rogue");
    let (port, ends) = lab.server(Some(&rogue));
    let (mut r, mut w) = buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let err = open(port, &mut bufs, &lab.root.der, None).err();
    assert_eq!(err, Some(Error::Certificate(CertError::UnknownIssuer)));
    // The client hung up inside the handshake.
    let why = ends.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(why, "closed", "the server saw a clean end");
}

/// How a client sees a server refusing its certificate.
fn refused(got: &Result<usize, Error>) -> bool {
    matches!(
        got,
        Err(Error::PeerAborted | Error::Transport(fqp_transport::Error::Closed))
    )
}

#[test]
fn the_server_refuses_a_client_certificate_from_another_ca() {
    let lab = Lab::new();
    let (port, ends) = lab.server(None);
    let rogue = ca("rogue");
    let foreign = issue(&rogue, &lab.client_key, "device", false);
    let key = signer(&lab.client_key);
    let (mut r, mut w) = buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let client = ClientAuth {
        certificate: &foreign,
        signer: &key,
    };
    // TLS 1.3: the client's side of the handshake completes; the refusal comes next, as an
    // alert, or as a reset when the server closed before reading all the client sent.
    let got = open(port, &mut bufs, &lab.root.der, Some(client)).and_then(|mut s| {
        let mut buf = [0u8; 16];
        s.read(&mut buf, 5_000)
    });
    assert!(refused(&got), "{got:?}");
    let why = ends.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(why.contains("UnknownIssuer"), "server saw: {why}");
}

#[test]
fn the_server_refuses_a_client_without_a_certificate() {
    let lab = Lab::new();
    let (port, ends) = lab.server(None);
    let (mut r, mut w) = buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let got = open(port, &mut bufs, &lab.root.der, None).and_then(|mut s| {
        let mut buf = [0u8; 16];
        s.read(&mut buf, 5_000)
    });
    assert!(refused(&got), "{got:?}");
    let why = ends.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(why.contains("no certificates"), "server saw: {why}");
}

#[test]
fn a_silent_server_times_the_handshake_out() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || l.accept().map(|(c, _)| c));
    let tcp = Tcp(TcpStream::connect(("127.0.0.1", port)).unwrap());
    let (mut r, mut w) = buffers();
    let mut bufs = Buffers::new(&mut r, &mut w);
    let root = ca("root").der;
    let config = Config {
        server_name: HOST,
        root_ca: &root,
        now: None,
        seed: [1; 32],
        client: None,
        handshake_timeout_ms: 200,
        io_timeout_ms: 200,
    };
    let err = Session::open(tcp, &mut bufs, &config).err();
    assert_eq!(err, Some(Error::Transport(fqp_transport::Error::Timeout)));
    drop(hold.join());
}
