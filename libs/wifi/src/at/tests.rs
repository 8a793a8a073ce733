use super::*;

extern crate std;
use std::string::String;
use std::vec::Vec;

/// What `input` comes to, fed in pieces of `piece` bytes, the data of each `+IPD` joined.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Line(String),
    Prompt,
    Data(Option<u8>, Vec<u8>),
    Garbage,
    Overflow,
}

fn read<const N: usize>(input: &[u8], piece: usize) -> Vec<Got> {
    let mut r = Reader::<N>::new();
    let mut got = Vec::new();
    // Inside an +IPD whose bytes are still coming.
    let mut open = false;
    for chunk in input.chunks(piece) {
        r.feed(chunk, |item| match item {
            Item::Data { link, data, left } => {
                match (open, got.last_mut()) {
                    (true, Some(Got::Data(_, d))) => d.extend_from_slice(data),
                    _ => got.push(Got::Data(link, data.to_vec())),
                }
                open = left > 0;
            }
            Item::Line(l) => got.push(Got::Line(l.into())),
            Item::Prompt => got.push(Got::Prompt),
            Item::Garbage(_) => got.push(Got::Garbage),
            Item::Overflow => got.push(Got::Overflow),
        });
    }
    got
}

fn line(s: &str) -> Got {
    Got::Line(s.into())
}

#[test]
fn lines_prompt_and_data_come_apart_whatever_the_pieces() {
    // A send, then data whose bytes look like replies, then a line.
    let input = b"AT+CIPSEND=5\r\n\r\nOK\r\n\r\n> \r\nRecv 5 bytes\r\n\r\nSEND OK\r\n\
                  +IPD,13:\r\nOK\r\nbusy \r\n\r\nWIFI DISCONNECT\r\n";
    for piece in [1, 2, 3, 7, input.len()] {
        assert_eq!(
            read::<64>(input, piece),
            [
                line("AT+CIPSEND=5"),
                line("OK"),
                Got::Prompt,
                line("Recv 5 bytes"),
                line("SEND OK"),
                Got::Data(None, b"\r\nOK\r\nbusy \r\n".to_vec()),
                line("WIFI DISCONNECT"),
            ],
            "in pieces of {piece}"
        );
    }
}

#[test]
fn data_of_a_link_and_empty_data() {
    assert_eq!(
        read::<64>(b"+IPD,3,4:abcd+IPD,0:\r\n2,CLOSED\r\n", 5),
        [
            Got::Data(Some(3), b"abcd".to_vec()),
            Got::Data(None, Vec::new()),
            line("2,CLOSED"),
        ]
    );
    // A header that is not one stays a line.
    assert_eq!(read::<64>(b"+IPD,x:y\r\n", 3), [line("+IPD,x:y")]);
}

#[test]
fn noise_and_lines_too_long_are_named_not_read() {
    assert_eq!(
        read::<8>(b"\xff\xfe\x80\r\nOK\r\n0123456789abcdef\r\nERROR\r\n", 4),
        [Got::Garbage, line("OK"), Got::Overflow, line("ERROR")]
    );
}

#[test]
fn replies_are_read_into_what_they_say() {
    let cases: &[(&str, Reply<'_>)] = &[
        ("OK", Reply::Ok),
        ("ERROR", Reply::Error),
        ("FAIL", Reply::Fail),
        ("SEND OK", Reply::SendOk),
        ("SEND FAIL", Reply::SendFail),
        ("busy p...", Reply::Busy),
        ("ready", Reply::Ready),
        ("WIFI CONNECTED", Reply::WifiConnected),
        ("WIFI GOT IP", Reply::WifiGotIp),
        ("WIFI DISCONNECT", Reply::WifiDisconnect),
        ("CONNECT", Reply::Connect(None)),
        ("1,CONNECT", Reply::Connect(Some(1))),
        ("CLOSED", Reply::Closed(None)),
        ("0,CLOSED", Reply::Closed(Some(0))),
        ("No AP", Reply::NoAp),
        ("Recv 1460 bytes", Reply::Received(1460)),
        ("+CWJAP:1", Reply::JoinFailed(JoinError::Timeout)),
        ("+CWJAP:2", Reply::JoinFailed(JoinError::WrongPassword)),
        ("+CWJAP:3", Reply::JoinFailed(JoinError::NoSuchAp)),
        ("+CWJAP:4", Reply::JoinFailed(JoinError::Failed)),
        ("+CWJAP:9", Reply::JoinFailed(JoinError::Other(9))),
        ("+CWMODE:1", Reply::Mode(1)),
        (
            "+CIPSTA:ip:\"10.0.2.15\"",
            Reply::Address(AddressKind::Ip, [10, 0, 2, 15]),
        ),
        (
            "+CIPSTA:gateway:\"10.0.2.2\"",
            Reply::Address(AddressKind::Gateway, [10, 0, 2, 2]),
        ),
        (
            "+CIPSTA:netmask:\"255.255.255.0\"",
            Reply::Address(AddressKind::Netmask, [255, 255, 255, 0]),
        ),
        (
            "+CIPSTAMAC:\"24:0a:c4:00:01:02\"",
            Reply::StationMac(Mac([0x24, 0x0a, 0xc4, 0, 1, 2])),
        ),
        (
            "+CWJAP:\"lab\",\"aa:bb:cc:dd:ee:01\",6,-52,0,1,3,0,1",
            Reply::Joined {
                ssid: "lab",
                bssid: Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 1]),
                channel: 6,
                rssi: -52,
            },
        ),
    ];
    for (text, reply) in cases {
        assert_eq!(Reply::parse(text), *reply, "{text}");
    }
    // Not the command set's: kept as they are, never taken for a reply.
    for other in [
        "AT+CWLAP",
        "OK then",
        "+CWJAP:x",
        "+CIPSTA:ip:\"10.0.2\"",
        "+CIPSTAMAC:\"24:0a:c4\"",
        "Recv many bytes",
        "2,CONNECTED",
    ] {
        assert_eq!(Reply::parse(other), Reply::Other(other), "{other}");
    }
}

#[test]
fn scan_lines_even_with_quotes_and_commas_in_the_ssid() {
    let ap = |line| match Reply::parse(line) {
        Reply::ApFound(ap) => ap,
        other => panic!("{line}: {other:?}"),
    };
    let a = ap("+CWLAP:(3,\"lab-wpa2\",-41,\"aa:bb:cc:dd:ee:01\",6,-1,-1,4,4,7,0)");
    assert_eq!(
        a,
        Ap {
            security: Security::Wpa2Psk,
            ssid: "lab-wpa2",
            rssi: -41,
            bssid: Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 1]),
            channel: 6,
        }
    );
    let odd = ap("+CWLAP:(0,\"a\",\"b, c\",-70,\"aa:bb:cc:dd:ee:02\",11)");
    assert_eq!((odd.ssid, odd.rssi, odd.channel), ("a\",\"b, c", -70, 11));
    assert_eq!(odd.security, Security::Open);
    let hidden = ap("+CWLAP:(6,\"\",-80,\"aa:bb:cc:dd:ee:03\",1)");
    assert_eq!((hidden.ssid, hidden.security), ("", Security::Wpa3Psk));
    assert!(matches!(
        Reply::parse("+CWLAP:(3,\"x\",-41,\"not a mac\",6)"),
        Reply::Other(_)
    ));
}

#[test]
fn security_codes_go_both_ways() {
    for ecn in 0..=12u8 {
        assert_eq!(Security::from_ecn(ecn).ecn(), ecn);
    }
}

#[test]
fn commands_are_written_with_their_strings_escaped() {
    let text = |c: Command<'_>| {
        let mut buf = [0u8; 128];
        let n = c.write(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    assert_eq!(text(Command::Attention), "AT\r\n");
    assert_eq!(text(Command::SetMode(Mode::Station)), "AT+CWMODE=1\r\n");
    assert_eq!(
        text(Command::Join {
            ssid: "my \"lab\", 2",
            passphrase: "p\\w"
        }),
        "AT+CWJAP=\"my \\\"lab\\\"\\, 2\",\"p\\\\w\"\r\n"
    );
    assert_eq!(
        text(Command::Connect {
            link: None,
            host: "10.0.2.2",
            port: 1883
        }),
        "AT+CIPSTART=\"TCP\",\"10.0.2.2\",1883\r\n"
    );
    assert_eq!(
        text(Command::Send {
            link: Some(2),
            len: 512
        }),
        "AT+CIPSEND=2,512\r\n"
    );
    assert_eq!(text(Command::Close { link: Some(2) }), "AT+CIPCLOSE=2\r\n");
    assert_eq!(
        text(Command::SoftAp {
            ssid: "fqp",
            passphrase: "12345678",
            channel: 5,
            security: Security::Wpa2Psk
        }),
        "AT+CWSAP=\"fqp\",\"12345678\",5,3\r\n"
    );
    let mut small = [0u8; 8];
    assert_eq!(Command::Scan.write(&mut small), Err(TooLong));
    assert_eq!(Command::Quit.write(&mut [0u8; 10]), Ok(10));
}

#[test]
fn any_bytes_in_any_pieces_come_to_items_and_no_panic() {
    // A module gone wrong: random bytes, weighted towards what the reader acts on.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const ALPHABET: &[u8] = b"+IPD,0123456789:\r\n> OKERROR\xff";
    for _ in 0..500 {
        let len = (next() % 200) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let whole = read::<16>(&input, input.len().max(1));
        let piece = 1 + (next() % 9) as usize;
        assert_eq!(
            read::<16>(&input, piece),
            whole,
            "{input:?} in pieces of {piece}"
        );
        for g in &whole {
            if let Got::Line(l) = g {
                assert!(!l.is_empty() && l.len() <= 16 && !l.contains('\n'), "{l:?}");
            }
        }
    }
}
