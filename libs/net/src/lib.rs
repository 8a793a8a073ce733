//! # fqp-net: TCP/IP over the port's Ethernet device
//!
//! The port's board provides an [`Ethernet`] device (`fqp-port`: send a frame, take a
//! received frame, its MAC address) and calls [`on_interrupt`] from its receive interrupt;
//! this crate does the rest with `smoltcp`: one kernel task owns the interface and polls it
//! whenever a frame arrives, a socket needs service, or a protocol timer is due. DHCP
//! configures the address;
//! [`resolve`] asks a name server (the lease's, or one given) for a host's address.
//! Applications use [`TcpStream`]: connect, write, read with timeouts, close; and
//! [`TcpListener`] to take one connection on a port. What a security agent reports of the
//! device (Device Defender's metrics) is here too: the interface's [`stats`], the
//! [`connections`] established, the ports listening ([`listening_tcp`], [`listening_udp`]).
//!
//! Memory is static: [`MAX_TCP`] sockets with fixed buffers, no heap.

#![no_std]

mod dns;
mod metrics;

pub use metrics::{connections, listening_tcp, listening_udp, stats, Connection, Stats};

use core::net::Ipv4Addr;
use fqp_kernel::mutex::Mutex;
use fqp_kernel::semaphore::Semaphore;
use fqp_kernel::task;
use fqp_kernel::time::ms_to_ticks;
use fqp_kernel::Timeout;
pub use fqp_port::Ethernet;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, IpEndpoint};

/// TCP sockets available at once.
pub const MAX_TCP: usize = 4;
/// Receive and send buffer of each TCP socket.
pub const TCP_BUFFER: usize = 8 * 1024;
const MTU: usize = 1514;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The stack is not started, or has no address yet.
    NotReady,
    /// Every socket is in use.
    NoSocket,
    /// The peer refused the connection (reset).
    Refused,
    /// Nothing happened within the time given.
    Timeout,
    /// The connection is closed (by the peer, or reset).
    Closed,
    /// The address or port is not usable (or the name is not a host name).
    Invalid,
    /// The name server says the name does not exist or has no IPv4 address.
    NameNotFound,
    /// The name server failed, refused, or answered garbage.
    NameServer,
}

/// The address DHCP gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,
}

/// The device, with one receive and one transmit frame buffer (kept here, in the stack's
/// static state, rather than on the network task's stack), and what went through it.
struct Nic {
    dev: &'static dyn Ethernet,
    rx: [u8; MTU],
    tx: [u8; MTU],
    stats: Stats,
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a>(&'static dyn Ethernet, &'a mut [u8; MTU], &'a mut Stats);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let frame = &mut self.1[..len];
        let r = f(frame);
        // A full transmit FIFO drops the frame; TCP retransmits, DHCP retries.
        if self.0.send(frame) {
            self.2.bytes_out += len as u64;
            self.2.packets_out += 1;
        }
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let n = self.dev.receive(&mut self.rx)?;
        self.stats.bytes_in += n as u64;
        self.stats.packets_in += 1;
        Some((
            Rx(&self.rx[..n]),
            Tx(self.dev, &mut self.tx, &mut self.stats),
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(self.dev, &mut self.tx, &mut self.stats))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

struct Stack {
    nic: Nic,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: SocketHandle,
    tcp: [SocketHandle; MAX_TCP],
    in_use: [bool; MAX_TCP],
    dns: SocketHandle,
    lease: Option<Lease>,
    next_port: u16,
}

static STACK: Mutex<Option<Stack>> = Mutex::new(None);
/// Given when the network task has work: a frame arrived, or a socket changed.
static WORK: Semaphore = Semaphore::binary();

fn now() -> Instant {
    Instant::from_micros(fqp_kernel::time::uptime_us() as i64)
}

/// The first of the local ports connections are given (IANA's dynamic range, to 65535).
const EPHEMERAL: u16 = 49152;

/// The local port after `port`, wrapping within the dynamic range.
fn next_port(port: u16) -> u16 {
    port.checked_add(1).unwrap_or(EPHEMERAL).max(EPHEMERAL)
}

/// Wakes the network task: a socket has work.
fn kick() {
    let _ = WORK.give();
}

/// Call from the Ethernet controller's receive interrupt (interrupt-safe).
pub fn on_interrupt() {
    let _ = WORK.give();
}

/// Starts the stack on `nic` (once; later calls do nothing) with its task at `priority`.
/// `seed` (from the board's entropy) makes this boot's TCP sequence numbers and the first
/// local port its own: a board that resets must not reuse the previous boot's connections'
/// port numbers, which the peer (or a NAT) may still hold (RFC 6056).
pub fn start(nic: &'static dyn Ethernet, priority: u8, seed: u64) -> Result<(), Error> {
    let mut stack = STACK.lock();
    if stack.is_some() {
        return Ok(());
    }
    static mut STORAGE: [SocketStorage<'static>; MAX_TCP + 2] = [SocketStorage::EMPTY; MAX_TCP + 2];
    static mut DNS_META: [[udp::PacketMetadata; 2]; 2] = [[udp::PacketMetadata::EMPTY; 2]; 2];
    static mut DNS_DATA: [[u8; 1024]; 2] = [[0; 1024]; 2];
    static mut BUFFERS: [[u8; TCP_BUFFER]; 2 * MAX_TCP] = [[0; TCP_BUFFER]; 2 * MAX_TCP];
    // SAFETY: reached once (the stack is created under the mutex, only while it is None), so
    // these are borrowed mutably exactly once, for the life of the program.
    let (storage, buffers, [dns_rx_meta, dns_tx_meta], [dns_rx, dns_tx]) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(STORAGE),
            &mut *core::ptr::addr_of_mut!(BUFFERS),
            &mut *core::ptr::addr_of_mut!(DNS_META),
            &mut *core::ptr::addr_of_mut!(DNS_DATA),
        )
    };
    let mut nic = Nic {
        dev: nic,
        rx: [0; MTU],
        tx: [0; MTU],
        stats: Stats::default(),
    };
    let mac = EthernetAddress(nic.dev.mac());
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut nic, now());
    iface.update_ip_addrs(|a| a.clear());
    let mut sockets = SocketSet::new(&mut storage[..]);
    let dhcp = sockets.add(dhcpv4::Socket::new());
    let mut bufs = buffers.iter_mut();
    let tcp = core::array::from_fn(|_| {
        let rx = bufs.next().expect("two buffers per socket");
        let tx = bufs.next().expect("two buffers per socket");
        sockets.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        ))
    });
    let dns = sockets.add(udp::Socket::new(
        udp::PacketBuffer::new(&mut dns_rx_meta[..], &mut dns_rx[..]),
        udp::PacketBuffer::new(&mut dns_tx_meta[..], &mut dns_tx[..]),
    ));
    *stack = Some(Stack {
        nic,
        iface,
        sockets,
        dhcp,
        tcp,
        in_use: [false; MAX_TCP],
        dns,
        lease: None,
        next_port: EPHEMERAL + (seed % u64::from(u16::MAX - EPHEMERAL + 1)) as u16,
    });
    drop(stack);
    task::Builder::new("net")
        .priority(priority)
        .stack_words(2048)
        .spawn_fn(net_task, 0)
        .map_err(|_| Error::NotReady)?;
    Ok(())
}

fn net_task(_: usize) {
    loop {
        let wait = {
            let mut guard = STACK.lock();
            let s = guard.as_mut().expect("started before the task");
            let t = now();
            s.iface.poll(t, &mut s.nic, &mut s.sockets);
            let event = s.sockets.get_mut::<dhcpv4::Socket>(s.dhcp).poll();
            match event {
                Some(dhcpv4::Event::Configured(c)) => {
                    s.iface.update_ip_addrs(|a| {
                        a.clear();
                        let _ = a.push(IpCidr::Ipv4(c.address));
                    });
                    match c.router {
                        Some(r) => {
                            let _ = s.iface.routes_mut().add_default_ipv4_route(r);
                        }
                        None => {
                            s.iface.routes_mut().remove_default_ipv4_route();
                        }
                    }
                    s.lease = Some(Lease {
                        address: c.address.address(),
                        prefix: c.address.prefix_len(),
                        router: c.router,
                        dns: c.dns_servers.first().copied(),
                    });
                }
                Some(dhcpv4::Event::Deconfigured) => {
                    s.iface.update_ip_addrs(|a| a.clear());
                    s.iface.routes_mut().remove_default_ipv4_route();
                    s.lease = None;
                }
                None => {}
            }
            s.iface
                .poll_delay(now(), &s.sockets)
                .map_or(100, |d| d.total_millis().clamp(1, 100) as u32)
        };
        let _ = WORK.take(Timeout::ticks(ms_to_ticks(wait)));
    }
}

/// The DHCP lease, waiting up to `timeout_ms` for one.
pub fn lease(timeout_ms: u32) -> Option<Lease> {
    let end = fqp_kernel::time::now().wrapping_add(ms_to_ticks(timeout_ms));
    loop {
        if let Some(l) = STACK.lock().as_ref().and_then(|s| s.lease) {
            return Some(l);
        }
        if deadline_passed(end) {
            return None;
        }
        task::delay(1);
    }
}

fn deadline_passed(end: u32) -> bool {
    (fqp_kernel::time::now().wrapping_sub(end) as i32) >= 0
}

/// One name query at a time (there is one DNS socket); holds the last query id.
static RESOLVING: Mutex<u16> = Mutex::new(0);

/// Resolves `name` to an IPv4 address (an address in dotted form is returned as it is),
/// asking `server` — the DHCP lease's name server on port 53 when `None` — and waiting up to
/// `timeout_ms` in all; the query is sent again halfway, as UDP may lose it.
pub fn resolve(
    name: &str,
    server: Option<(Ipv4Addr, u16)>,
    timeout_ms: u32,
) -> Result<Ipv4Addr, Error> {
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let mut last_id = RESOLVING.lock();
    // Query ids differ between queries and boots (the cycle counter), so a late answer to an
    // earlier query is not taken for this one's.
    let id = (*last_id ^ fqp_kernel::time::uptime_cycles() as u16).wrapping_add(1);
    *last_id = id;
    let mut q = [0u8; dns::MAX_QUERY];
    let len = dns::query(id, name, &mut q).map_err(|_| Error::Invalid)?;
    let server = match server {
        Some(s) => s,
        None => (lease(0).and_then(|l| l.dns).ok_or(Error::NotReady)?, 53),
    };
    let to = IpEndpoint::new(server.0.into(), server.1);
    let send = || -> Result<(), Error> {
        let mut guard = STACK.lock();
        let s = guard.as_mut().ok_or(Error::NotReady)?;
        if s.lease.is_none() {
            return Err(Error::NotReady);
        }
        let local = s.next_port;
        s.next_port = next_port(local);
        let sock = s.sockets.get_mut::<udp::Socket>(s.dns);
        if !sock.is_open() {
            sock.bind(local).map_err(|_| Error::Invalid)?;
        }
        while sock.recv().is_ok() {} // what came late for earlier queries
        sock.send_slice(&q[..len], to)
            .map_err(|_| Error::NoSocket)?;
        drop(guard);
        kick();
        Ok(())
    };
    send()?;
    let start = fqp_kernel::time::now();
    let end = start.wrapping_add(ms_to_ticks(timeout_ms));
    let resend = start.wrapping_add(ms_to_ticks(timeout_ms / 2));
    let mut resent = false;
    loop {
        let got = {
            let mut guard = STACK.lock();
            let s = guard.as_mut().ok_or(Error::NotReady)?;
            let sock = s.sockets.get_mut::<udp::Socket>(s.dns);
            let mut got = None;
            while let Ok((data, meta)) = sock.recv() {
                if meta.endpoint != to {
                    continue;
                }
                got = match dns::answer(id, data) {
                    Ok(None) => continue,
                    Ok(Some(ip)) => Some(Ok(ip)),
                    Err(dns::DnsError::NotFound) => Some(Err(Error::NameNotFound)),
                    Err(dns::DnsError::BadName) => Some(Err(Error::Invalid)),
                    Err(_) => Some(Err(Error::NameServer)),
                };
                break;
            }
            got
        };
        if let Some(r) = got {
            return r;
        }
        if deadline_passed(end) {
            return Err(Error::Timeout);
        }
        if !resent && deadline_passed(resend) {
            resent = true;
            send()?;
        }
        task::delay(1);
    }
}

/// A TCP port listening for one connection.
pub struct TcpListener {
    slot: usize,
}

impl TcpListener {
    /// Listens on `port` (taking one of the [`MAX_TCP`] sockets until accepted or dropped).
    pub fn bind(port: u16) -> Result<TcpListener, Error> {
        if port == 0 {
            return Err(Error::Invalid);
        }
        let mut guard = STACK.lock();
        let s = guard.as_mut().ok_or(Error::NotReady)?;
        let slot = s.in_use.iter().position(|u| !u).ok_or(Error::NoSocket)?;
        let sock = s.sockets.get_mut::<tcp::Socket>(s.tcp[slot]);
        sock.abort();
        sock.listen(port).map_err(|_| Error::Invalid)?;
        s.in_use[slot] = true;
        drop(guard);
        kick();
        Ok(TcpListener { slot })
    }

    /// Waits up to `timeout_ms` for a peer to connect: the connection.
    pub fn accept(self, timeout_ms: u32) -> Result<TcpStream, Error> {
        let stream = TcpStream { slot: self.slot };
        core::mem::forget(self);
        stream.wait(timeout_ms, |sock| match sock.state() {
            tcp::State::Listen | tcp::State::SynReceived => None,
            _ => Some(Ok(())),
        })?;
        Ok(stream)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        release(self.slot);
    }
}

/// Closes the socket in `slot` and frees it.
fn release(slot: usize) {
    let mut guard = STACK.lock();
    if let Some(s) = guard.as_mut() {
        let h = s.tcp[slot];
        s.sockets.get_mut::<tcp::Socket>(h).close();
        s.in_use[slot] = false;
    }
    drop(guard);
    kick();
}

/// A TCP connection.
pub struct TcpStream {
    slot: usize,
}

impl TcpStream {
    /// Connects to `addr:port`, waiting up to `timeout_ms` for the handshake.
    pub fn connect(addr: Ipv4Addr, port: u16, timeout_ms: u32) -> Result<TcpStream, Error> {
        if port == 0 || addr.is_unspecified() {
            return Err(Error::Invalid);
        }
        let slot = {
            let mut guard = STACK.lock();
            let s = guard.as_mut().ok_or(Error::NotReady)?;
            if s.lease.is_none() {
                return Err(Error::NotReady);
            }
            let slot = s.in_use.iter().position(|u| !u).ok_or(Error::NoSocket)?;
            let local = s.next_port;
            s.next_port = next_port(local);
            let h = s.tcp[slot];
            let sock = s.sockets.get_mut::<tcp::Socket>(h);
            sock.abort();
            // Request/response protocols (MQTT, TLS handshakes) wait on each small segment:
            // no Nagle delay behind unacknowledged data.
            sock.set_nagle_enabled(false);
            sock.connect(s.iface.context(), IpEndpoint::new(addr.into(), port), local)
                .map_err(|_| Error::Invalid)?;
            s.in_use[slot] = true;
            slot
        };
        kick();
        let stream = TcpStream { slot };
        let r = stream.wait(timeout_ms, |sock| match sock.state() {
            tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen => None,
            // Reset before the handshake completed.
            tcp::State::Closed | tcp::State::TimeWait => Some(Err(Error::Refused)),
            // Connected (the peer may already have closed its side: reads will say so).
            _ => Some(Ok(())),
        });
        r.map(|()| stream)
    }

    /// Runs `check` on the socket under the stack's lock until it gives an answer, or
    /// `timeout_ms` passes.
    fn wait<T>(
        &self,
        timeout_ms: u32,
        mut check: impl FnMut(&mut tcp::Socket<'static>) -> Option<Result<T, Error>>,
    ) -> Result<T, Error> {
        let end = fqp_kernel::time::now().wrapping_add(ms_to_ticks(timeout_ms));
        loop {
            let answer = {
                let mut guard = STACK.lock();
                let s = guard.as_mut().ok_or(Error::NotReady)?;
                let h = s.tcp[self.slot];
                check(s.sockets.get_mut::<tcp::Socket>(h))
            };
            if let Some(a) = answer {
                kick();
                return a;
            }
            if deadline_passed(end) {
                return Err(Error::Timeout);
            }
            task::delay(1);
        }
    }

    /// Sends all of `data`, waiting up to `timeout_ms` for buffer room.
    pub fn write_all(&mut self, data: &[u8], timeout_ms: u32) -> Result<(), Error> {
        fqp_transport::Transport::send_all(self, data, timeout_ms).map_err(|e| match e {
            fqp_transport::Error::Timeout => Error::Timeout,
            _ => Error::Closed,
        })
    }

    /// Reads what has arrived into `buf`, waiting up to `timeout_ms` for something; `Ok(0)`
    /// when the peer closed its side.
    pub fn read(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, Error> {
        self.wait(timeout_ms, |sock| {
            if sock.can_recv() {
                return Some(sock.recv_slice(buf).map_err(|_| Error::Closed));
            }
            if !sock.may_recv() {
                return Some(Ok(0));
            }
            None
        })
    }

    /// Closes the connection (FIN) and frees the socket.
    pub fn close(self) {}
}

impl From<Error> for fqp_transport::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotReady => fqp_transport::Error::NoNetwork,
            Error::NoSocket => fqp_transport::Error::Exhausted,
            Error::Refused => fqp_transport::Error::Refused,
            Error::Timeout => fqp_transport::Error::Timeout,
            Error::Closed => fqp_transport::Error::Closed,
            Error::Invalid => fqp_transport::Error::Invalid,
            Error::NameNotFound | Error::NameServer => fqp_transport::Error::NameNotFound,
        }
    }
}

impl fqp_transport::Transport for TcpStream {
    fn send(&mut self, data: &[u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
        if data.is_empty() {
            return Ok(0);
        }
        Ok(self.wait(timeout_ms, |sock| {
            if !sock.may_send() {
                return Some(Err(Error::Closed));
            }
            match sock.send_slice(data) {
                Ok(0) => None,
                Ok(n) => Some(Ok(n)),
                Err(_) => Some(Err(Error::Closed)),
            }
        })?)
    }

    fn recv(&mut self, buf: &mut [u8], timeout_ms: u32) -> Result<usize, fqp_transport::Error> {
        Ok(self.read(buf, timeout_ms)?)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        release(self.slot);
    }
}
