//! The AT wire: commands to the module ([`Command::write`]), the module's byte stream cut into
//! items ([`Reader`]), and each line read into what it says ([`Reply::parse`]).
//!
//! Why a reader of its own rather than lines: after `+IPD,<len>:` come `len` bytes of TCP data
//! that may hold anything, `\r\nOK\r\n` included, and after `AT+CIPSEND` the module prompts
//! with `>` and no line end. A module that prints garbage, or a line longer than the reader
//! holds, is reported as such, never taken for a reply.

use core::fmt::{self, Write};

/// How a network protects itself (the scan's `ecn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    Open,
    Wep,
    WpaPsk,
    Wpa2Psk,
    WpaWpa2Psk,
    Wpa2Enterprise,
    Wpa3Psk,
    Wpa2Wpa3Psk,
    /// A code this driver does not know.
    Other(u8),
}

impl Security {
    /// From the command set's number.
    pub fn from_ecn(ecn: u8) -> Security {
        match ecn {
            0 => Security::Open,
            1 => Security::Wep,
            2 => Security::WpaPsk,
            3 => Security::Wpa2Psk,
            4 => Security::WpaWpa2Psk,
            5 => Security::Wpa2Enterprise,
            6 => Security::Wpa3Psk,
            7 => Security::Wpa2Wpa3Psk,
            n => Security::Other(n),
        }
    }

    /// The command set's number.
    pub fn ecn(self) -> u8 {
        match self {
            Security::Open => 0,
            Security::Wep => 1,
            Security::WpaPsk => 2,
            Security::Wpa2Psk => 3,
            Security::WpaWpa2Psk => 4,
            Security::Wpa2Enterprise => 5,
            Security::Wpa3Psk => 6,
            Security::Wpa2Wpa3Psk => 7,
            Security::Other(n) => n,
        }
    }
}

/// A MAC address (`aa:bb:cc:dd:ee:ff` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    fn parse(text: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for b in out.iter_mut() {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An access point a scan found (`+CWLAP:(<ecn>,"<ssid>",<rssi>,"<mac>",<channel>,…)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ap<'a> {
    pub security: Security,
    /// As the module printed it (an empty one for a hidden network).
    pub ssid: &'a str,
    /// dBm.
    pub rssi: i16,
    pub bssid: Mac,
    pub channel: u8,
}

/// Why joining a network failed (`+CWJAP:<code>` before `FAIL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinError {
    Timeout,
    WrongPassword,
    NoSuchAp,
    Failed,
    Other(u8),
}

/// Which address `AT+CIPSTA?` reports on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    Ip,
    Gateway,
    Netmask,
}

/// One line from the module, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    Ok,
    Error,
    /// A command that ran and failed (after its reason, `+CWJAP:<code>` for a join).
    Fail,
    SendOk,
    SendFail,
    /// The module is busy with an earlier command (`busy p...`, `busy s...`).
    Busy,
    /// The module (re)started: everything it held is gone.
    Ready,
    WifiConnected,
    WifiGotIp,
    WifiDisconnect,
    /// A TCP connection opened (`CONNECT`, `<link>,CONNECT`).
    Connect(Option<u8>),
    /// A TCP connection closed (`CLOSED`, `<link>,CLOSED`).
    Closed(Option<u8>),
    ApFound(Ap<'a>),
    JoinFailed(JoinError),
    /// The network joined (`+CWJAP:"<ssid>","<bssid>",<channel>,<rssi>,…`).
    Joined {
        ssid: &'a str,
        bssid: Mac,
        channel: u8,
        rssi: i16,
    },
    /// Not joined to any network (`No AP`).
    NoAp,
    Address(AddressKind, [u8; 4]),
    StationMac(Mac),
    Mode(u8),
    /// After data sent: how much the module took (`Recv <n> bytes`).
    Received(usize),
    /// A line this driver does not read (an echo, a module's banner).
    Other(&'a str),
}

/// `"…"` stripped, if `text` is quoted.
fn unquote(text: &str) -> Option<&str> {
    text.strip_prefix('"')?.strip_suffix('"')
}

/// A dotted IPv4 address.
fn ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for b in out.iter_mut() {
        *b = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `<link>,<word>` or `<word>`: the link, if one is given.
fn linked(line: &str, word: &str) -> Option<Option<u8>> {
    if line == word {
        return Some(None);
    }
    let (link, rest) = line.split_once(',')?;
    (rest == word)
        .then(|| link.parse().ok())
        .flatten()
        .map(Some)
}

/// A quoted string that may hold `",` itself, then its fields (`rest` starts after the opening
/// quote): the closing quote taken is the first after which `tail` reads the rest.
fn quoted_then<T>(rest: &str, tail: impl Fn(&str) -> Option<T>) -> Option<(&str, T)> {
    let mut from = 0;
    while let Some(at) = rest[from..].find("\",") {
        let end = from + at;
        if let Some(t) = tail(&rest[end + 2..]) {
            return Some((&rest[..end], t));
        }
        from = end + 2;
    }
    None
}

/// The scan line's fields: `(<ecn>,"<ssid>",<rssi>,"<mac>",<channel>,…)`.
fn scanned(fields: &str) -> Option<Ap<'_>> {
    let body = fields.strip_prefix('(')?.strip_suffix(')')?;
    let (ecn, rest) = body.split_once(',')?;
    let (ssid, (rssi, bssid, channel)) = quoted_then(rest.strip_prefix('"')?, |tail| {
        let mut t = tail.split(',');
        let rssi = t.next()?.parse().ok()?;
        let bssid = Mac::parse(unquote(t.next()?)?)?;
        Some((rssi, bssid, t.next()?.parse().ok()?))
    })?;
    Some(Ap {
        security: Security::from_ecn(ecn.parse().ok()?),
        ssid,
        rssi,
        bssid,
        channel,
    })
}

/// `+CWJAP:"<ssid>","<bssid>",<channel>,<rssi>,…`.
fn joined(fields: &str) -> Option<Reply<'_>> {
    let (ssid, (bssid, channel, rssi)) = quoted_then(fields.strip_prefix('"')?, |tail| {
        let mut t = tail.split(',');
        let bssid = Mac::parse(unquote(t.next()?)?)?;
        let channel = t.next()?.parse().ok()?;
        Some((bssid, channel, t.next()?.parse().ok()?))
    })?;
    Some(Reply::Joined {
        ssid,
        bssid,
        channel,
        rssi,
    })
}

impl<'a> Reply<'a> {
    /// What `line` (without its line end) says.
    pub fn parse(line: &'a str) -> Reply<'a> {
        Self::known(line).unwrap_or(Reply::Other(line))
    }

    fn known(line: &'a str) -> Option<Reply<'a>> {
        let simple = match line {
            "OK" => Some(Reply::Ok),
            "ERROR" => Some(Reply::Error),
            "FAIL" => Some(Reply::Fail),
            "SEND OK" => Some(Reply::SendOk),
            "SEND FAIL" => Some(Reply::SendFail),
            "ready" => Some(Reply::Ready),
            "WIFI CONNECTED" => Some(Reply::WifiConnected),
            "WIFI GOT IP" => Some(Reply::WifiGotIp),
            "WIFI DISCONNECT" => Some(Reply::WifiDisconnect),
            "No AP" => Some(Reply::NoAp),
            _ => None,
        };
        if simple.is_some() {
            return simple;
        }
        if line.starts_with("busy ") {
            return Some(Reply::Busy);
        }
        if let Some(link) = linked(line, "CONNECT") {
            return Some(Reply::Connect(link));
        }
        if let Some(link) = linked(line, "CLOSED") {
            return Some(Reply::Closed(link));
        }
        if let Some(n) = line
            .strip_prefix("Recv ")
            .and_then(|r| r.strip_suffix(" bytes"))
        {
            return n.parse().ok().map(Reply::Received);
        }
        let (head, fields) = line.split_once(':')?;
        match head {
            "+CWLAP" => scanned(fields).map(Reply::ApFound),
            "+CWJAP" => match fields.parse::<u8>() {
                Ok(code) => Some(Reply::JoinFailed(match code {
                    1 => JoinError::Timeout,
                    2 => JoinError::WrongPassword,
                    3 => JoinError::NoSuchAp,
                    4 => JoinError::Failed,
                    n => JoinError::Other(n),
                })),
                Err(_) => joined(fields),
            },
            "+CIPSTA" => {
                let (kind, addr) = fields.split_once(':')?;
                let kind = match kind {
                    "ip" => AddressKind::Ip,
                    "gateway" => AddressKind::Gateway,
                    "netmask" => AddressKind::Netmask,
                    _ => return None,
                };
                Some(Reply::Address(kind, ipv4(unquote(addr)?)?))
            }
            "+CIPSTAMAC" => Mac::parse(unquote(fields)?).map(Reply::StationMac),
            "+CWMODE" => fields.parse().ok().map(Reply::Mode),
            _ => None,
        }
    }
}

/// The module's Wi-Fi mode (`AT+CWMODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The radio off.
    Off = 0,
    Station = 1,
    SoftAp = 2,
    StationAndSoftAp = 3,
}

/// A command to the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `AT`: is anyone there.
    Attention,
    /// `AT+RST`.
    Restart,
    /// `ATE0`: no echo of commands.
    EchoOff,
    SetMode(Mode),
    /// `AT+CWLAP`: scan.
    Scan,
    /// `AT+CWJAP="<ssid>","<passphrase>"` (an empty passphrase for an open network).
    Join {
        ssid: &'a str,
        passphrase: &'a str,
    },
    /// `AT+CWJAP?`: the network joined.
    Joined,
    /// `AT+CWQAP`: leave the network.
    Quit,
    /// `AT+CIPSTA?`: the station's addresses.
    StationAddress,
    /// `AT+CIPSTAMAC?`.
    StationMac,
    /// `AT+CIPMUX=<0|1>`: several connections, each with a link id.
    Multiplex(bool),
    /// `AT+CIPSTART=[<link>,]"TCP","<host>",<port>`.
    Connect {
        link: Option<u8>,
        host: &'a str,
        port: u16,
    },
    /// `AT+CIPSEND=[<link>,]<len>`: the module then prompts `>` for the bytes.
    Send {
        link: Option<u8>,
        len: usize,
    },
    /// `AT+CIPCLOSE[=<link>]`.
    Close {
        link: Option<u8>,
    },
    /// `AT+SLEEP=<mode>`: 0 none, 1 light sleep, 2 modem sleep.
    Sleep(u8),
    /// `AT+CWSAP="<ssid>","<passphrase>",<channel>,<ecn>`: the soft AP's network.
    SoftAp {
        ssid: &'a str,
        passphrase: &'a str,
        channel: u8,
        security: Security,
    },
}

/// A string as the command set takes it: quoted, with `\`, `"` and `,` escaped by `\`.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            if matches!(c, '\\' | '"' | ',') {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        f.write_char('"')
    }
}

/// `<link>,` when there is a link.
struct Link(Option<u8>);

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(l) => write!(f, "{l},"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Command<'_> {
    /// The command's line, without its `\r\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Command::Attention => f.write_str("AT"),
            Command::Restart => f.write_str("AT+RST"),
            Command::EchoOff => f.write_str("ATE0"),
            Command::SetMode(m) => write!(f, "AT+CWMODE={}", m as u8),
            Command::Scan => f.write_str("AT+CWLAP"),
            Command::Join { ssid, passphrase } => {
                write!(f, "AT+CWJAP={},{}", Quoted(ssid), Quoted(passphrase))
            }
            Command::Joined => f.write_str("AT+CWJAP?"),
            Command::Quit => f.write_str("AT+CWQAP"),
            Command::StationAddress => f.write_str("AT+CIPSTA?"),
            Command::StationMac => f.write_str("AT+CIPSTAMAC?"),
            Command::Multiplex(on) => write!(f, "AT+CIPMUX={}", u8::from(on)),
            Command::Connect { link, host, port } => {
                write!(
                    f,
                    "AT+CIPSTART={}\"TCP\",{},{port}",
                    Link(link),
                    Quoted(host)
                )
            }
            Command::Send { link, len } => write!(f, "AT+CIPSEND={}{len}", Link(link)),
            Command::Close { link: None } => f.write_str("AT+CIPCLOSE"),
            Command::Close { link: Some(l) } => write!(f, "AT+CIPCLOSE={l}"),
            Command::Sleep(mode) => write!(f, "AT+SLEEP={mode}"),
            Command::SoftAp {
                ssid,
                passphrase,
                channel,
                security,
            } => write!(
                f,
                "AT+CWSAP={},{},{channel},{}",
                Quoted(ssid),
                Quoted(passphrase),
                security.ecn()
            ),
        }
    }
}

/// The buffer a command did not fit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong;

/// Writes into a byte buffer, refusing what does not fit.
struct Filled<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Write for Filled<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.at + s.len();
        let dest = self.buf.get_mut(self.at..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

impl Command<'_> {
    /// The command's bytes with their `\r\n`, into `buf`: how many.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, TooLong> {
        let mut out = Filled { buf, at: 0 };
        write!(out, "{self}\r\n").map_err(|_| TooLong)?;
        Ok(out.at)
    }
}

/// One thing the module sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A line, without its line end (empty lines are not items).
    Line(&'a str),
    /// The `>` that asks for the bytes of an `AT+CIPSEND`.
    Prompt,
    /// Received TCP data: a piece of an `+IPD`'s bytes, `left` more of it still to come.
    Data {
        link: Option<u8>,
        data: &'a [u8],
        left: usize,
    },
    /// A line that is not text (a module sending noise at the wrong speed, say).
    Garbage(&'a [u8]),
    /// A line longer than the reader holds: dropped up to its end.
    Overflow,
}

/// Cuts the module's byte stream into [`Item`]s, whatever pieces it arrives in; `N` bytes
/// hold the longest line.
pub struct Reader<const N: usize> {
    line: [u8; N],
    len: usize,
    /// Past the end of a line too long: dropping up to its end.
    dropping: bool,
    /// Inside an `+IPD`'s bytes: its link and how many are left.
    data: Option<(Option<u8>, usize)>,
}

impl<const N: usize> Default for Reader<N> {
    fn default() -> Self {
        Reader {
            line: [0; N],
            len: 0,
            dropping: false,
            data: None,
        }
    }
}

impl<const N: usize> fmt::Debug for Reader<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("len", &self.len)
            .field("data", &self.data)
            .finish()
    }
}

/// `+IPD,<len>` or `+IPD,<link>,<len>` (what came before the `:`): link and length.
fn ipd(head: &[u8]) -> Option<(Option<u8>, usize)> {
    let fields = core::str::from_utf8(head.strip_prefix(b"+IPD,")?).ok()?;
    match fields.split_once(',') {
        Some((link, len)) => Some((Some(link.parse().ok()?), len.parse().ok()?)),
        None => Some((None, fields.parse().ok()?)),
    }
}

impl<const N: usize> Reader<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `input`, telling `on` of each item completed in it, in order.
    pub fn feed(&mut self, mut input: &[u8], mut on: impl FnMut(Item<'_>)) {
        while !input.is_empty() {
            if let Some((link, left)) = self.data {
                let n = left.min(input.len());
                let left = left - n;
                self.data = (left > 0).then_some((link, left));
                on(Item::Data {
                    link,
                    data: &input[..n],
                    left,
                });
                input = &input[n..];
                continue;
            }
            let b = input[0];
            input = &input[1..];
            match b {
                b'\n' => {
                    if self.dropping {
                        self.dropping = false;
                    } else {
                        let mut end = self.len;
                        if end > 0 && self.line[end - 1] == b'\r' {
                            end -= 1;
                        }
                        if end > 0 {
                            match core::str::from_utf8(&self.line[..end]) {
                                Ok(text) => on(Item::Line(text)),
                                Err(_) => on(Item::Garbage(&self.line[..end])),
                            }
                        }
                    }
                    self.len = 0;
                }
                b'>' if self.len == 0 && !self.dropping => on(Item::Prompt),
                // Spaces starting a line are dropped: the prompt is `> `.
                b' ' if self.len == 0 && !self.dropping => {}
                b':' if !self.dropping && self.line[..self.len].starts_with(b"+IPD,") => {
                    match ipd(&self.line[..self.len]) {
                        Some((link, 0)) => {
                            self.len = 0;
                            on(Item::Data {
                                link,
                                data: &[],
                                left: 0,
                            });
                        }
                        Some(d) => {
                            self.len = 0;
                            self.data = Some(d);
                        }
                        None => self.push(b, &mut on),
                    }
                }
                _ => self.push(b, &mut on),
            }
        }
    }

    fn push(&mut self, b: u8, on: &mut impl FnMut(Item<'_>)) {
        if self.dropping {
            return;
        }
        if self.len == N {
            self.dropping = true;
            self.len = 0;
            on(Item::Overflow);
            return;
        }
        self.line[self.len] = b;
        self.len += 1;
    }
}

#[cfg(test)]
mod tests;
