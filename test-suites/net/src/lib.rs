//! Network qualification tests: the port's Ethernet device carries the stack to an address
//! (DHCP) and TCP works both ways through the lab network.
//!
//! The lab network (for the reference port, QEMU's user networking) provides a DHCP server;
//! the harness runs the lab services on its machine and provisions their addresses after
//! boot: `echo` (a TCP echo server) and `closer` (answers `bye` and closes). Port 1 of the same
//! machine is closed. The Ethernet device is the board's (`Board::ethernet`, `fqp-port`); the
//! stack is started by the first test that needs it.

#![no_std]

extern crate alloc;

mod mqtt;
pub use mqtt::MQTT;

/// The suite's groups, in the order the host lists them.
pub static GROUPS: &[&fqp_testkit::Group] = &[&NETWORK, &MQTT];

use core::net::Ipv4Addr;
use fqp_net::{Error, TcpStream};
use fqp_testkit::{check, check_eq, check_range, group, log, TestResult};

/// How long DHCP may take.
const DHCP_MS: u32 = 5_000;

/// The network stack's seed: from the board's TRNG, or else the entropy the host provisions
/// (fresh for each boot), or else the clock.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if let Some(trng) = fqp_testkit::board().entropy() {
        if trng.fill(&mut bytes).is_ok() {
            return u64::from_le_bytes(bytes);
        }
    }
    match fqp_testkit::config::provisioned_seed() {
        Some(Ok(seed)) => u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
        _ => fqp_kernel::time::uptime_us(),
    }
}

/// Starts the stack (once) and waits for the lease (skips the test when the port has no
/// Ethernet device).
pub fn up() -> Result<fqp_net::Lease, fqp_testkit::Failure> {
    let Some(dev) = fqp_testkit::board().ethernet() else {
        fqp_testkit::skip!("the board provides no Ethernet device (Board::ethernet is None)")
    };
    check!(
        fqp_net::start(dev, fqp_testkit::TEST_PRIORITY + 2, seed()).is_ok(),
        "the network task could not be started"
    );
    match fqp_net::lease(DHCP_MS) {
        Some(l) => Ok(l),
        None => Err(fqp_testkit::fail!("no DHCP lease within {} ms", DHCP_MS)),
    }
}

group!(pub NETWORK, "network", [
    dhcp_gives_an_address => 10_000,
    tcp_round_trip_through_the_echo_service => 10_000,
    large_transfer_keeps_every_byte => 60_000,
    peer_close_ends_the_stream => 10_000,
    connect_to_a_closed_port_is_refused => 10_000,
    read_times_out_when_nothing_arrives => 10_000,
    name_resolves_through_the_lab_name_server => 10_000,
    unknown_name_is_not_found => 10_000,
    silent_name_server_times_out => 10_000,
]);

fn dhcp_gives_an_address() -> TestResult {
    let l = up()?;
    log!(
        "lease {}/{} router {:?} dns {:?}",
        l.address,
        l.prefix,
        l.router,
        l.dns
    );
    check!(!l.address.is_unspecified(), "DHCP gave no address");
    check!(
        (8..=30).contains(&l.prefix),
        "prefix /{} is not a LAN's",
        l.prefix
    );
    let router = l
        .router
        .ok_or_else(|| fqp_testkit::fail!("DHCP gave no router"))?;
    let mask = u32::MAX << (32 - l.prefix);
    check!(
        u32::from(l.address) & mask == u32::from(router) & mask,
        "router {} is not on the leased subnet {}/{}",
        router,
        l.address,
        l.prefix
    );
    Ok(())
}

/// The lab service `key` (`a.b.c.d:port`), as the host provisioned it.
pub fn service(key: &str) -> Result<(Ipv4Addr, u16), fqp_testkit::Failure> {
    let Some(text) = fqp_testkit::config::get_str(key) else {
        fqp_testkit::skip!(
            "the host provisioned no {} service (network.host in port.toml says where the device reaches it)",
            key
        )
    };
    let parsed = text
        .rsplit_once(':')
        .and_then(|(ip, port)| Some((ip.parse().ok()?, port.parse().ok()?)));
    parsed.ok_or_else(|| fqp_testkit::fail!("setting {} = {:?} is not ipv4:port", key, text))
}

fn connect(key: &str) -> Result<TcpStream, fqp_testkit::Failure> {
    up()?;
    let (ip, port) = service(key)?;
    TcpStream::connect(ip, port, 3_000).map_err(|e| {
        fqp_testkit::fail!("connect to the {} service at {}:{}: {:?}", key, ip, port, e)
    })
}

fn echo() -> Result<TcpStream, fqp_testkit::Failure> {
    connect("echo")
}

/// Sends `data` and reads the same number of bytes back, comparing them.
fn round_trip(s: &mut TcpStream, data: &[u8]) -> TestResult {
    s.write_all(data, 3_000)
        .map_err(|e| fqp_testkit::fail!("write: {:?}", e))?;
    let mut got = 0;
    let mut buf = [0u8; 512];
    while got < data.len() {
        let want = (data.len() - got).min(buf.len());
        let n = s.read(&mut buf[..want], 3_000).map_err(|e| {
            fqp_testkit::fail!("read after {} of {} bytes: {:?}", got, data.len(), e)
        })?;
        check!(
            n > 0,
            "the echo service closed after {} of {} bytes",
            got,
            data.len()
        );
        check!(
            buf[..n] == data[got..got + n],
            "bytes {}..{} came back changed",
            got,
            got + n
        );
        got += n;
    }
    Ok(())
}

fn tcp_round_trip_through_the_echo_service() -> TestResult {
    let mut s = echo()?;
    round_trip(&mut s, b"hello, lab network\n")
}

fn large_transfer_keeps_every_byte() -> TestResult {
    let mut s = echo()?;
    let mut block = [0u8; 1024];
    let total = 1024 * 1024;
    let t0 = fqp_kernel::time::uptime_us();
    for k in 0..total / block.len() {
        for (i, b) in block.iter_mut().enumerate() {
            *b = (k * 31 + i * 7) as u8;
        }
        round_trip(&mut s, &block)?;
    }
    let us = (fqp_kernel::time::uptime_us() - t0).max(1);
    fqp_testkit::metric("echo_round_trip", total as u64 * 1_000_000 / us, "B/s");
    Ok(())
}

fn peer_close_ends_the_stream() -> TestResult {
    let mut s = connect("closer")?;
    s.write_all(b"hello\n", 3_000)
        .map_err(|e| fqp_testkit::fail!("write: {:?}", e))?;
    let mut got = [0u8; 8];
    let mut n = 0;
    while n < 4 {
        let k = s
            .read(&mut got[n..], 3_000)
            .map_err(|e| fqp_testkit::fail!("read: {:?}", e))?;
        check!(k > 0, "closed after {} bytes, before \"bye\\n\"", n);
        n += k;
    }
    check!(&got[..4] == b"bye\n", "got {:?}", &got[..n]);
    // Then the peer's FIN: end of stream, not a timeout.
    check_eq!(s.read(&mut got, 3_000), Ok(0));
    Ok(())
}

fn connect_to_a_closed_port_is_refused() -> TestResult {
    up()?;
    let (host, _) = service("echo")?;
    match TcpStream::connect(host, 1, 3_000) {
        Err(Error::Refused) => Ok(()),
        Err(e) => Err(fqp_testkit::fail!("expected Refused, got {:?}", e)),
        Ok(_) => Err(fqp_testkit::fail!(
            "a connection to port 1 of {} was accepted",
            host
        )),
    }
}

fn read_times_out_when_nothing_arrives() -> TestResult {
    let mut s = echo()?;
    let t0 = fqp_kernel::time::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf, 200);
    let waited = fqp_kernel::time::now().wrapping_sub(t0);
    check_eq!(r, Err(Error::Timeout));
    check_range!(waited, 200, 260);
    Ok(())
}

/// The lab's name server and the name it knows (the broker's, as the TLS tests use it).
fn lab_names() -> Result<((Ipv4Addr, u16), alloc::string::String), fqp_testkit::Failure> {
    up()?;
    let server = service("dns")?;
    let Some(name) = fqp_testkit::config::get_str("tls_server_name") else {
        fqp_testkit::skip!("the host provisioned no tls_server_name")
    };
    Ok((server, name))
}

fn name_resolves_through_the_lab_name_server() -> TestResult {
    let (server, name) = lab_names()?;
    // The lab's names lead to the machine that runs the lab, as its services do.
    let (host, _) = service("echo")?;
    let t0 = fqp_kernel::time::now();
    let got = fqp_net::resolve(&name, Some(server), 3_000);
    log!(
        "{} -> {:?} in {} ms",
        name,
        got,
        fqp_kernel::time::now().wrapping_sub(t0)
    );
    check_eq!(got, Ok(host));
    // Names are case-insensitive; an address needs no server.
    check_eq!(
        fqp_net::resolve(&name.to_uppercase(), Some(server), 3_000),
        Ok(host)
    );
    check_eq!(
        fqp_net::resolve("10.1.2.3", None, 0),
        Ok(Ipv4Addr::new(10, 1, 2, 3))
    );
    Ok(())
}

fn unknown_name_is_not_found() -> TestResult {
    let (server, _) = lab_names()?;
    check_eq!(
        fqp_net::resolve("no-such-host.fqp.lab", Some(server), 3_000),
        Err(Error::NameNotFound)
    );
    check_eq!(
        fqp_net::resolve("not a name", Some(server), 3_000),
        Err(Error::Invalid)
    );
    Ok(())
}

fn silent_name_server_times_out() -> TestResult {
    let (_, name) = lab_names()?;
    // The echo service's port takes TCP only: nobody answers UDP there.
    let (host, port) = service("echo")?;
    let t0 = fqp_kernel::time::now();
    let got = fqp_net::resolve(&name, Some((host, port)), 500);
    let waited = fqp_kernel::time::now().wrapping_sub(t0);
    check_eq!(got, Err(Error::Timeout));
    check_range!(waited, 500, 560);
    Ok(())
}
