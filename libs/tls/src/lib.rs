//! # fqp-tls: TLS 1.3 over any fqp transport
//!
//! A [`Session`] is a TLS 1.3 client connection over a [`Transport`] (fqp-net's TCP, or a
//! vendor's own stack) and is itself a `Transport`, so MQTT runs over it unchanged.
//!
//! - The server's chain is checked against one provisioned root, for the host name connected
//!   to (and sent as SNI), at the time the device believes it is; a refusal says why
//!   ([`CertError`]).
//! - Mutual authentication signs with any `signature::Signer` of P-256 — a keystore key the
//!   client never sees (`fqp_keystore::Keystore::signer`), or a secure element's.
//! - No heap: the caller lends the record buffers ([`RECORD_BUFFER`] bytes to read; writes
//!   can use less).
//! - Timeouts: a receive waits the caller's timeout for a record to *start*; once one has
//!   started, every further piece has `io_timeout_ms` (a record cut in half cannot be
//!   resumed, so a silence then ends the session).
//!
//! The record layer and handshake are `embedded-tls` (no_std, no allocator, RustCrypto; TLS
//! 1.3 only, TLS_AES_128_GCM_SHA256, secp256r1 key exchange): what a device talking to a
//! modern broker needs, in far less flash than a full TLS 1.2 + 1.3 stack.

#![no_std]

mod x509;

pub use x509::{code_signing_key, verify_server, CertError};

use core::cell::Cell;
use embedded_tls::blocking::{
    Aes128GcmSha256, Certificate, CertificateRef, CertificateVerifyRef, CryptoProvider, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use embedded_tls::SignatureScheme;
use fqp_transport::Transport;
use p256::ecdsa::signature::Verifier as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::Digest;

/// Bytes a record buffer needs to take any record a server may send (16 KiB of data plus
/// the record's overhead).
pub const RECORD_BUFFER: usize = 16_384 + 256;

/// Why a session could not be opened, or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The transport failed (timeouts included).
    Transport(fqp_transport::Error),
    /// The server's certificate chain was refused.
    Certificate(CertError),
    /// The server's handshake signature does not verify with its certificate's key.
    BadServerSignature,
    /// The server ended the handshake with this alert (RFC 8446 §6: 40 handshake failure, 42
    /// bad certificate, 48 unknown CA, 116 certificate required, …).
    Alert(u8),
    /// The server sent a fatal alert after the handshake. TLS 1.3 ends the client's handshake
    /// before the server has judged the client's certificate, so this is how a server that
    /// refuses the client's certificate is seen.
    PeerAborted,
    /// The server broke the protocol (unexpected or undecodable messages).
    Protocol,
    /// A record did not fit the buffers lent.
    BufferTooSmall,
}

impl From<Error> for fqp_transport::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Transport(t) => t,
            _ => fqp_transport::Error::Security,
        }
    }
}

/// The client's certificate and the key that signs for it.
pub struct ClientAuth<'a> {
    /// DER.
    pub certificate: &'a [u8],
    pub signer: &'a dyn signature::Signer<p256::ecdsa::Signature>,
}

/// What a session is opened with.
pub struct Config<'a> {
    /// The name the server's certificate must carry: a DNS name (also sent as SNI) or an IPv4
    /// address.
    pub server_name: &'a str,
    /// The one root CA trusted (DER).
    pub root_ca: &'a [u8],
    /// Now, in Unix seconds; `None` when the device cannot know (validity is then not
    /// checked — provision a time instead where possible).
    pub now: Option<u64>,
    /// Seed for the handshake's randomness (from the keystore's DRBG or a TRNG).
    pub seed: [u8; 32],
    pub client: Option<ClientAuth<'a>>,
    /// Longest wait for the server during the handshake.
    pub handshake_timeout_ms: u32,
    /// Longest wait for each further piece of a record once it has started, and for the
    /// transport to take what is sent during the handshake.
    pub io_timeout_ms: u32,
}

/// Memory a session works in, lent by the caller (no heap needed).
pub struct Buffers<'b> {
    read: &'b mut [u8],
    write: &'b mut [u8],
    timeouts: Cell<Timeouts>,
}

impl<'b> Buffers<'b> {
    /// Record buffers: `read` should hold [`RECORD_BUFFER`] bytes (a server may send records
    /// that large), `write` at least 1 KiB (larger sends fewer records).
    pub fn new(read: &'b mut [u8], write: &'b mut [u8]) -> Self {
        Buffers {
            read,
            write,
            timeouts: Cell::new(Timeouts::default()),
        }
    }
}

/// The waits the transport is given, changed per call.
#[derive(Clone, Copy, Default)]
struct Timeouts {
    /// For the first byte of a record.
    record_start: u32,
    /// For every further piece of a record.
    io: u32,
    /// For the transport to take what is sent.
    send: u32,
}

/// The transport as `embedded-tls` reads and writes it, following record boundaries so that
/// a wait for a new record may time out harmlessly while one cut short is an error.
struct Io<'b, T> {
    t: T,
    timeouts: &'b Cell<Timeouts>,
    header: [u8; 5],
    header_got: usize,
    body_left: usize,
}

/// A transport error on its way through `embedded-tls`, which keeps only an
/// `embedded_io::ErrorKind`: each transport error has its own kind, and a timeout inside a
/// record (the session cannot go on) is told apart from one between records.
#[derive(Debug)]
struct IoError {
    error: fqp_transport::Error,
    inside_record: bool,
}

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "transport: {:?}", self.error)
    }
}

impl core::error::Error for IoError {}

use embedded_io::ErrorKind as Kind;
use fqp_transport::Error as TErr;

impl embedded_io::Error for IoError {
    fn kind(&self) -> Kind {
        match self.error {
            TErr::Timeout if self.inside_record => Kind::BrokenPipe,
            TErr::Timeout => Kind::TimedOut,
            TErr::Closed => Kind::ConnectionReset,
            TErr::Refused => Kind::ConnectionRefused,
            TErr::NoNetwork => Kind::NotConnected,
            TErr::Exhausted => Kind::OutOfMemory,
            TErr::Invalid => Kind::InvalidInput,
            TErr::NameNotFound => Kind::AddrNotAvailable,
            TErr::Security => Kind::PermissionDenied,
        }
    }
}

/// The transport error behind `kind`, and whether the session is over.
fn from_kind(kind: Kind) -> (TErr, bool) {
    match kind {
        Kind::TimedOut => (TErr::Timeout, false),
        Kind::BrokenPipe => (TErr::Timeout, true),
        Kind::ConnectionRefused => (TErr::Refused, true),
        Kind::NotConnected => (TErr::NoNetwork, true),
        Kind::OutOfMemory => (TErr::Exhausted, true),
        Kind::InvalidInput => (TErr::Invalid, true),
        Kind::AddrNotAvailable => (TErr::NameNotFound, true),
        Kind::PermissionDenied => (TErr::Security, true),
        _ => (TErr::Closed, true),
    }
}

impl<T: Transport> embedded_io::ErrorType for Io<'_, T> {
    type Error = IoError;
}

impl<T: Transport> embedded_io::Read for Io<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let at_start = self.header_got == 0 && self.body_left == 0;
        let t = self.timeouts.get();
        let (want, timeout) = if self.body_left > 0 {
            (self.body_left, t.io)
        } else if at_start {
            (5, t.record_start)
        } else {
            (5 - self.header_got, t.io)
        };
        let want = want.min(buf.len());
        let n = self
            .t
            .recv(&mut buf[..want], timeout)
            .map_err(|error| IoError {
                error,
                inside_record: !at_start,
            })?;
        if self.body_left > 0 {
            self.body_left -= n;
        } else {
            self.header[self.header_got..self.header_got + n].copy_from_slice(&buf[..n]);
            self.header_got += n;
            if self.header_got == 5 {
                self.header_got = 0;
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
        Ok(n) // 0: the peer closed; embedded-tls takes it as the end of the connection
    }
}

impl<T: Transport> embedded_io::Write for Io<'_, T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
        // A record partly sent cannot be taken back: every failure here is inside a record.
        self.t
            .send(buf, self.timeouts.get().send)
            .map_err(|error| IoError {
                error,
                inside_record: true,
            })
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// Checks the server for the handshake, remembering why it refused.
struct Verifier<'a> {
    root: &'a [u8],
    host: &'a str,
    now: Option<u64>,
    server_key: Option<[u8; 65]>,
    transcript: Option<sha2::Sha256>,
    refused: Option<Error>,
}

impl TlsVerifier<Aes128GcmSha256> for Verifier<'_> {
    fn set_hostname_verification(&mut self, _: &str) -> Result<(), TlsError> {
        Ok(()) // the name is ours already (also when it is an address, which SNI cannot carry)
    }

    fn verify_certificate(
        &mut self,
        transcript: &sha2::Sha256,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        let mut chain: heapless::Vec<&[u8], { x509::MAX_CHAIN }> = heapless::Vec::new();
        for entry in cert.entries.iter() {
            let refused = match entry {
                embedded_tls::blocking::CertificateEntryRef::X509(der) => {
                    chain.push(der).err().map(|_| CertError::BadChain)
                }
                embedded_tls::blocking::CertificateEntryRef::RawPublicKey(_) => {
                    Some(CertError::Unsupported)
                }
            };
            if let Some(why) = refused {
                return self.refuse(Error::Certificate(why));
            }
        }
        match verify_server(&chain, self.root, self.host, self.now) {
            Ok(key) => {
                self.server_key = Some(key);
                self.transcript = Some(transcript.clone());
                Ok(())
            }
            Err(why) => self.refuse(Error::Certificate(why)),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        let (Some(key), Some(transcript)) = (self.server_key, self.transcript.take()) else {
            return self.refuse(Error::Protocol);
        };
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return self.refuse(Error::Certificate(CertError::Unsupported));
        }
        // RFC 8446 §4.4.3: 64 spaces, the context string, the transcript hash.
        let mut msg = [0x20u8; 64 + 34 + 32];
        msg[64..98].copy_from_slice(b"TLS 1.3, server CertificateVerify\x00");
        msg[98..].copy_from_slice(&transcript.finalize());
        let ok = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key)
            .ok()
            .zip(p256::ecdsa::Signature::from_der(verify.signature).ok())
            .is_some_and(|(k, s)| k.verify(&msg, &s).is_ok());
        if ok {
            Ok(())
        } else {
            self.refuse(Error::BadServerSignature)
        }
    }
}

impl Verifier<'_> {
    fn refuse(&mut self, why: Error) -> Result<(), TlsError> {
        use embedded_tls::alert::AlertDescription as A;
        self.refused = Some(why);
        // The alert tells the server why the client hung up (RFC 8446 §6.2).
        let alert = match why {
            Error::Certificate(CertError::UnknownIssuer | CertError::NotCa) => A::UnknownCa,
            Error::Certificate(CertError::Expired | CertError::NotYetValid) => {
                A::CertificateExpired
            }
            Error::Certificate(CertError::Unsupported) => A::UnsupportedCertificate,
            Error::BadServerSignature => A::DecryptError,
            Error::Protocol => A::UnexpectedMessage,
            _ => A::BadCertificate,
        };
        Err(TlsError::AbortHandshake(
            embedded_tls::alert::AlertLevel::Fatal,
            alert,
        ))
    }
}

/// A signer of DER-encoded signatures, as TLS carries them.
struct DerSigner<'a>(&'a dyn signature::Signer<p256::ecdsa::Signature>);

impl signature::Signer<p256::ecdsa::DerSignature> for DerSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<p256::ecdsa::DerSignature, signature::Error> {
        self.0.try_sign(msg).map(|s| s.to_der())
    }
}

struct Provider<'a> {
    rng: ChaCha20Rng,
    verifier: Verifier<'a>,
    client: Option<&'a ClientAuth<'a>>,
}

impl CryptoProvider for Provider<'_> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = p256::ecdsa::DerSignature;

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }

    fn signer(
        &mut self,
    ) -> Result<(impl signature::SignerMut<Self::Signature>, SignatureScheme), TlsError> {
        match self.client {
            Some(c) => Ok((DerSigner(c.signer), SignatureScheme::EcdsaSecp256r1Sha256)),
            None => Err(TlsError::InvalidPrivateKey),
        }
    }

    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        self.client.map(|c| Certificate::X509(c.certificate))
    }
}

/// An open TLS session.
pub struct Session<'b, T: Transport> {
    tls: TlsConnection<'b, Io<'b, T>, Aes128GcmSha256>,
    timeouts: &'b Cell<Timeouts>,
    io_timeout: u32,
    /// Why the session ended, once it has.
    ended: Option<Error>,
    /// The server ended it with close_notify.
    closed_cleanly: bool,
}

/// What an `embedded-tls` error means here, and whether the session is over.
fn classify(e: TlsError) -> (Error, bool) {
    match e {
        TlsError::Io(kind) => {
            let (t, over) = from_kind(kind);
            (Error::Transport(t), over)
        }
        TlsError::IoError | TlsError::ConnectionClosed => (Error::Transport(TErr::Closed), true),
        TlsError::HandshakeAborted(_, d) => (Error::Alert(d as u8), true),
        // A fatal alert after the handshake (embedded-tls keeps close_notify apart).
        TlsError::InternalError => (Error::PeerAborted, true),
        TlsError::InsufficientSpace => (Error::BufferTooSmall, true),
        _ => (Error::Protocol, true),
    }
}

impl<'b, T: Transport> Session<'b, T> {
    /// Opens a session over `transport` (connected to the server), with the record buffers
    /// `read_buf` (at least [`RECORD_BUFFER`] bytes, or what the server is known to send) and
    /// `write_buf` (at least 1 KiB; larger sends fewer records).
    pub fn open(
        transport: T,
        buffers: &'b mut Buffers<'_>,
        config: &Config<'_>,
    ) -> Result<Self, Error> {
        let timeouts: &'b Cell<Timeouts> = &buffers.timeouts;
        timeouts.set(Timeouts {
            record_start: config.handshake_timeout_ms,
            io: config.io_timeout_ms,
            send: config.io_timeout_ms,
        });
        let io = Io {
            t: transport,
            timeouts,
            header: [0; 5],
            header_got: 0,
            body_left: 0,
        };
        let mut tls = TlsConnection::new(io, buffers.read, buffers.write);
        let is_ip = x509::parse_ipv4(config.server_name).is_some();
        let tls_config = if is_ip {
            TlsConfig::new() // SNI carries names only (RFC 6066 §3)
        } else {
            TlsConfig::new().with_server_name(config.server_name)
        };
        let mut provider = Provider {
            rng: ChaCha20Rng::from_seed(config.seed),
            verifier: Verifier {
                root: config.root_ca,
                host: config.server_name,
                now: config.now,
                server_key: None,
                transcript: None,
                refused: None,
            },
            client: config.client.as_ref(),
        };
        let opened = tls.open(TlsContext::new(&tls_config, &mut provider));
        match opened {
            Ok(()) => Ok(Session {
                tls,
                timeouts,
                io_timeout: config.io_timeout_ms,
                ended: None,
                closed_cleanly: false,
            }),
            Err(e) => Err(provider.verifier.refused.unwrap_or(classify(e).0)),
        }
    }

    /// Why the session ended (after a send or receive failed).
    pub fn ended(&self) -> Option<Error> {
        self.ended
    }

    /// Ends the session with a close_notify.
    pub fn close(self) -> Result<(), Error> {
        self.tls.close().map(drop).map_err(|(_, e)| classify(e).0)
    }

    fn set_timeouts(&self, record_start: Option<u32>, send: Option<u32>) {
        let mut t = self.timeouts.get();
        t.record_start = record_start.unwrap_or(t.record_start);
        t.send = send.unwrap_or(self.io_timeout);
        t.io = self.io_timeout;
        self.timeouts.set(t);
    }

    fn fail(&mut self, e: TlsError) -> Error {
        let (why, over) = classify(e);
        if over {
            self.ended = Some(why);
        }
        why
    }

    /// Sends `data` as application data (in records of at most the write buffer's size);
    /// how much was taken.
    pub fn write(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, Error> {
        if let Some(why) = self.ended {
            return Err(why);
        }
        self.set_timeouts(None, Some(timeout_ms));
        let n = self.tls.write(data).map_err(|e| self.fail(e))?;
        self.tls.flush().map_err(|e| self.fail(e))?;
        Ok(n)
    }

    /// Receives application data, waiting up to `timeout_ms` for a record to start; `Ok(0)`
    /// when the server closed the session (close_notify).
    pub fn read(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, Error> {
        if self.ended == Some(Error::Transport(TErr::Closed)) && self.closed_cleanly {
            return Ok(0);
        }
        if let Some(why) = self.ended {
            return Err(why);
        }
        self.set_timeouts(Some(timeout_ms), None);
        match self.tls.read(buf) {
            Ok(n) => Ok(n),
            Err(TlsError::ConnectionClosed) => {
                self.ended = Some(Error::Transport(TErr::Closed));
                self.closed_cleanly = true;
                Ok(0)
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl<T: Transport> Transport for Session<'_, T> {
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, TErr> {
        self.write(data, timeout_ms).map_err(Into::into)
    }

    fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, TErr> {
        self.read(buf, timeout_ms).map_err(Into::into)
    }
}
