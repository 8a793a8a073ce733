//! Cloud qualification: the device's cloud libraries (fqp-shadow, fqp-jobs, fqp-defender, fqp-greengrass over fqp-tls) against the local IoT cloud the harness
//! runs (`fqp-cloud`, the public AWS IoT contract), over fqp-mqtt and fqp-net.
//!
//! The host provisions the cloud's endpoint (`cloud`: plain TCP, a token per thing;
//! `cloud_tls`: mutual TLS) and, for this device alone, its thing (`thing`) and the thing's
//! token (`cloud_token`). What a console would do — change a shadow as the operator, read it
//! back from the cloud's side, hold the cloud's answers, count what the endpoint saw — the
//! tests ask of the host (`ASK cloud-*`). Each test runs in a task with a stack of its own
//! ([`CLOUD_STACK_WORDS`]); its buffers are on the heap.

#![no_std]

extern crate alloc;

/// Runs the block with a connection of this device's own thing: `$c` its client, `$inbox`
/// where its messages wait, `$me` its identity.
macro_rules! with_connection {
    (|$c:ident, $inbox:ident, $me:ident| $body:block) => {{
        let $me = $crate::Identity::provisioned()?;
        let $inbox = $crate::Inbox::new();
        let (mut tx, mut rx) = (alloc::vec![0u8; 2048], alloc::vec![0u8; 2048]);
        let mut $c = $crate::client(&mut tx, &mut rx, &$inbox);
        $crate::connect(&mut $c, &$me)?;
        $body
    }};
}

mod authorization;
mod defender;
mod greengrass;
mod jobs;
mod shadow;

pub use authorization::AUTHORIZATION;
pub use defender::DEFENDER;
pub use greengrass::GREENGRASS;
pub use jobs::JOBS;
pub use shadow::SHADOW;

/// The suite's groups, in the order the host lists them.
pub static GROUPS: &[&fqp_testkit::Group] =
    &[&SHADOW, &JOBS, &DEFENDER, &GREENGRASS, &AUTHORIZATION];

use alloc::string::String;
use fqp_mqtt::{Client, Connect, Mailbox, Message};
use fqp_net::TcpStream;
use fqp_testkit::{Failure, TestResult};

/// The stack of the task each test runs in (the MQTT client, the shadow's topics and JSON).
pub const CLOUD_STACK_WORDS: usize = 4 * 1024;
/// Longest a test body may take (below the groups' timeouts).
const BODY_WAIT_MS: u32 = 25_000;
/// How long the cloud has to answer a request.
const ANSWER_MS: u32 = 5_000;

/// Where messages wait for the test: four of up to 1.5 KiB.
pub type Inbox = Mailbox<4, 1536>;

/// Runs a test's body in the cloud task.
fn in_cloud_task(body: fn() -> TestResult) -> TestResult {
    fqp_testkit::with_stack("cloud", CLOUD_STACK_WORDS, BODY_WAIT_MS, body)
}

/// Milliseconds of uptime: the MQTT clients' clock.
pub fn ms() -> u64 {
    fqp_kernel::time::uptime_us() / 1000
}

/// The host's setting `key`; the test is skipped without it.
pub fn setting(key: &str) -> Result<String, Failure> {
    match fqp_testkit::config::get_str(key) {
        Some(v) => Ok(v),
        None => fqp_testkit::skip!(
            "the host provisioned no {} setting (a lab with the cloud: network.host in port.toml)",
            key
        ),
    }
}

/// The thing no device is (the host keeps it, with a shadow).
const NEIGHBOUR: &str = "fqp-neighbour";

/// Asks the host's cloud for what a console would do (`cloud-*` actions).
pub fn ask_cloud(action: &str, fields: &[(&str, &str)]) -> TestResult {
    fqp_testkit::ask(action, fields, 5_000)
}

/// Who this device is in the cloud: its thing and the thing's token.
pub struct Identity {
    pub thing: String,
    pub token: String,
}

impl Identity {
    pub fn provisioned() -> Result<Identity, Failure> {
        Ok(Identity {
            thing: setting("thing")?,
            token: setting("cloud_token")?,
        })
    }
}

/// A TCP connection to the cloud's plain listener.
pub fn transport() -> Result<TcpStream, Failure> {
    fqp_suite_net::up()?;
    let (ip, port) = fqp_suite_net::service("cloud")?;
    TcpStream::connect(ip, port, 3_000)
        .map_err(|e| fqp_testkit::fail!("connect to the cloud at {}:{}: {:?}", ip, port, e))
}

/// An MQTT client whose every message goes to `inbox`.
fn client<'b>(
    tx: &'b mut [u8],
    rx: &'b mut [u8],
    inbox: &'b Inbox,
) -> Client<'b, TcpStream, impl FnMut(&Message<'_>) + 'b> {
    Client::new(tx, rx, ms, move |m: &Message<'_>| {
        inbox.offer(m);
    })
}

/// CONNECTs `c` to the cloud as `client_id` with `user` and `password`; the client's
/// verdict (a refusal is `Error::Refused(code)`).
fn connect_as<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<bool, Result<fqp_mqtt::Error, Failure>> {
    let t = transport().map_err(Err)?;
    let options = Connect {
        client_id,
        clean_session: true,
        keep_alive: 60,
        username: Some(user),
        password: Some(password.as_bytes()),
        will: None,
    };
    c.connect(t, &options, ANSWER_MS).map_err(Ok)
}

/// CONNECTs `c` as this device's own thing.
pub fn connect<H: FnMut(&Message<'_>)>(
    c: &mut Client<'_, TcpStream, H>,
    me: &Identity,
) -> TestResult {
    match connect_as(c, &me.thing, &me.thing, &me.token) {
        Ok(_) => Ok(()),
        Err(Ok(e)) => Err(fqp_testkit::fail!(
            "the cloud did not take {}'s own connection: {:?}",
            me.thing,
            e
        )),
        Err(Err(f)) => Err(f),
    }
}
