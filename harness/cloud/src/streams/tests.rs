//! Blocks asked for as a device asks (CBOR), answered as the contract says.

use super::*;
use crate::service::Cloud;

/// A cloud in a new database, removed with it.
struct Scratch(Cloud, std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Cloud;
    fn deref(&self) -> &Cloud {
        &self.0
    }
}

fn cloud(name: &str) -> Scratch {
    let path = std::env::temp_dir().join(format!("fqp-streams-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    Scratch(Cloud::open(&path).unwrap(), path)
}

fn request(fields: Vec<(&str, Cbor)>) -> Vec<u8> {
    let map = Cbor::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::ser::into_writer(&map, &mut out).unwrap();
    out
}

fn int(n: u64) -> Cbor {
    Cbor::Integer(n.into())
}

/// The published messages of an answer, decoded: (topic, CBOR map).
fn answer(cloud: &Cloud, payload: &[u8]) -> Vec<(String, Cbor)> {
    cloud
        .request("$aws/things/lamp/streams/ota-1/get/cbor", payload, 0)
        .unwrap()
        .into_iter()
        .map(|m| {
            let bytes = m.bytes();
            (m.topic, ciborium::de::from_reader(&bytes[..]).unwrap())
        })
        .collect()
}

fn get<'v>(map: &'v Cbor, key: &str) -> &'v Cbor {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

#[test]
fn blocks_are_served_as_asked_by_range_and_by_bitmap() {
    let c = cloud("serve");
    let file: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    c.streams().create("ota-1", &[(0, &file)]).unwrap();
    assert_eq!(c.streams().files("ota-1").unwrap(), vec![(0, 1000)]);
    // Blocks 1 to 3 of 256 bytes: the last is the file's 232-byte tail.
    let got = answer(
        &c,
        &request(vec![
            ("c", Cbor::Text("t1".into())),
            ("f", int(0)),
            ("l", int(256)),
            ("o", int(1)),
            ("n", int(3)),
        ]),
    );
    assert_eq!(got.len(), 3);
    for (k, (topic, data)) in got.iter().enumerate() {
        assert_eq!(topic, "$aws/things/lamp/streams/ota-1/data/cbor");
        let i = k as u64 + 1;
        assert_eq!(get(data, "i").as_integer(), Some(i.into()));
        assert_eq!(get(data, "c").as_text(), Some("t1"));
        let p = get(data, "p").as_bytes().unwrap();
        let start = i as usize * 256;
        assert_eq!(p.as_slice(), &file[start..(start + 256).min(1000)]);
        assert_eq!(get(data, "l").as_integer(), Some(p.len().into()));
    }
    // A bitmap from block 0: blocks 0 and 2 (bits 0 and 2 of the first byte).
    let got = answer(
        &c,
        &request(vec![
            ("f", int(0)),
            ("l", int(256)),
            ("o", int(0)),
            ("n", int(4)),
            ("b", Cbor::Bytes(vec![0b0000_0101])),
        ]),
    );
    let ids: Vec<_> = got.iter().map(|(_, d)| get(d, "i").clone()).collect();
    assert_eq!(ids, vec![int(0), int(2)]);
}

#[test]
fn bad_requests_are_rejected_with_the_contracts_codes() {
    let c = cloud("refuse");
    c.streams()
        .create("ota-1", &[(0, &[7u8; 600][..])])
        .unwrap();
    let cases = [
        (
            request(vec![("f", int(0)), ("l", int(256))]),
            "InvalidRequest",
        ),
        (
            request(vec![("f", int(0)), ("l", int(100)), ("o", int(0))]),
            "BlockSizeOutOfBounds",
        ),
        (
            request(vec![("f", int(0)), ("l", int(256)), ("o", int(3))]),
            "OffsetOutOfBounds",
        ),
        (
            request(vec![("f", int(9)), ("l", int(256)), ("o", int(0))]),
            "ResourceNotFound",
        ),
        (
            request(vec![
                ("f", int(0)),
                ("l", int(256)),
                ("o", int(0)),
                ("n", int(65)),
            ]),
            "InvalidRequest",
        ),
        (b"not cbor".to_vec(), "InvalidRequest"),
    ];
    for (payload, code) in cases {
        let got = answer(&c, &payload);
        assert_eq!(got.len(), 1, "{code}");
        assert_eq!(got[0].0, "$aws/things/lamp/streams/ota-1/rejected/cbor");
        assert_eq!(get(&got[0].1, "o").as_text(), Some(code));
    }
    // An unknown stream is the same as an unknown file.
    let got = c
        .request(
            "$aws/things/lamp/streams/none/get/cbor",
            &request(vec![("f", int(0)), ("l", int(256)), ("o", int(0))]),
            0,
        )
        .unwrap();
    assert!(got[0].bytes().windows(16).any(|w| w == b"ResourceNotFound"));
}
