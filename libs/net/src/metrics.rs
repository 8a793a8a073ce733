//! What the stack can tell of the device's network life, for a security agent (Device
//! Defender's metrics): the interface's counters, the connections established, the ports
//! listening.

use crate::STACK;
use smoltcp::socket::{tcp, udp};

/// What went through the interface since the stack started: Ethernet frames and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

/// An established TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub remote: core::net::SocketAddrV4,
    pub local_port: u16,
}

/// What went through the interface since the stack started (`None` before it started).
pub fn stats() -> Option<Stats> {
    STACK.lock().as_ref().map(|s| s.nic.stats)
}

/// Writes `items` into `out` as far as it has room; how many there were.
fn fill<T>(out: &mut [T], items: impl Iterator<Item = T>) -> usize {
    let mut n = 0;
    for item in items {
        if let Some(slot) = out.get_mut(n) {
            *slot = item;
        }
        n += 1;
    }
    n
}

/// The TCP sockets in use.
fn tcp_in_use(s: &crate::Stack) -> impl Iterator<Item = &tcp::Socket<'static>> {
    s.tcp
        .iter()
        .zip(s.in_use)
        .filter(|(_, used)| *used)
        .map(|(h, _)| s.sockets.get::<tcp::Socket>(*h))
}

/// Writes the established TCP connections into `out`; how many there are (all of them, even
/// those `out` had no room for).
pub fn connections(out: &mut [Connection]) -> usize {
    let guard = STACK.lock();
    let Some(s) = guard.as_ref() else {
        return 0;
    };
    let established = tcp_in_use(s)
        .filter(|sock| sock.state() == tcp::State::Established)
        .filter_map(|sock| {
            let (remote, local) = (sock.remote_endpoint()?, sock.local_endpoint()?);
            let smoltcp::wire::IpAddress::Ipv4(ip) = remote.addr;
            Some(Connection {
                remote: core::net::SocketAddrV4::new(ip, remote.port),
                local_port: local.port,
            })
        });
    fill(out, established)
}

/// Writes the TCP ports listening into `out`; how many there are.
pub fn listening_tcp(out: &mut [u16]) -> usize {
    let guard = STACK.lock();
    let Some(s) = guard.as_ref() else {
        return 0;
    };
    let listening = tcp_in_use(s)
        .filter(|sock| sock.state() == tcp::State::Listen)
        .map(|sock| sock.listen_endpoint().port);
    fill(out, listening)
}

/// Writes the UDP ports listening into `out`; how many there are: the DHCP client's (68,
/// for as long as the stack runs: it listens for renewals) and the name resolver's while it
/// is bound.
pub fn listening_udp(out: &mut [u16]) -> usize {
    let guard = STACK.lock();
    let Some(s) = guard.as_ref() else {
        return 0;
    };
    let dns = s.sockets.get::<udp::Socket>(s.dns);
    let ports = [Some(68), dns.is_open().then(|| dns.endpoint().port)];
    fill(out, ports.into_iter().flatten())
}
