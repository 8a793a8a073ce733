//! Streams: files the cloud hands out in blocks over MQTT — the OTA data plane of the
//! contract. A device asks on `$aws/things/<t>/streams/<s>/get/cbor` with a CBOR map (`c`
//! client token, `f` file id, `l` block size, `o` first block, `n` number of blocks, `b` a
//! bitmap of the blocks wanted from `o` on, bit *k* of byte *k*/8 counted from the least
//! significant) and gets each block on `…/data/cbor` (`c`, `f`, `i` block id, `l` length, `p`
//! the bytes), or the reason on `…/rejected/cbor` (`c`, `o` code, `m` message).

use crate::shadow::Message;
use crate::store::{Store, StoreError, Table};
use ciborium::Value as Cbor;
use serde_json::{json, Value};

/// The smallest and largest block a request may ask for (the contract's bounds).
pub const MIN_BLOCK: u64 = 256;
pub const MAX_BLOCK: u64 = 128 * 1024;
/// The most blocks one request gets.
pub const MAX_BLOCKS: u64 = 64;

/// The streams of a store.
#[derive(Debug)]
pub struct Streams<'a> {
    store: &'a Store,
}

fn key(stream: &str, file: u32) -> String {
    format!("{stream}\0{file:010}")
}

/// One block answered: file id, block id, its bytes.
type Block = (u32, u64, Vec<u8>);

/// A request's refusal: the contract's code and a message.
struct Refused(&'static str, String);

impl<'a> Streams<'a> {
    pub fn new(store: &'a Store) -> Self {
        Streams { store }
    }

    /// Creates (or replaces) stream `id` holding `files` (id, bytes).
    pub fn create(&self, id: &str, files: &[(u32, &[u8])]) -> Result<(), StoreError> {
        let old = self.store.scan(Table::Streams, &format!("{id}\0"))?;
        let keys: Vec<String> = files.iter().map(|(f, _)| key(id, *f)).collect();
        let mut changes: Vec<(Table, &str, Option<&[u8]>)> = old
            .iter()
            .map(|(k, _)| (Table::Streams, k.as_str(), None))
            .collect();
        for (k, (_, bytes)) in keys.iter().zip(files) {
            changes.push((Table::Streams, k.as_str(), Some(*bytes)));
        }
        self.store.apply(&changes)
    }

    /// File `file` of stream `id`, if it has one.
    pub fn file(&self, id: &str, file: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(Table::Streams, &key(id, file))
    }

    /// The files of stream `id`: (file id, size).
    pub fn files(&self, id: &str) -> Result<Vec<(u32, usize)>, StoreError> {
        Ok(self
            .store
            .scan(Table::Streams, &format!("{id}\0"))?
            .into_iter()
            .filter_map(|(k, v)| Some((k.rsplit('\0').next()?.parse().ok()?, v.len())))
            .collect())
    }

    /// Answers `thing`'s request for blocks of stream `stream`.
    pub fn handle(
        &self,
        thing: &str,
        stream: &str,
        payload: &[u8],
    ) -> Result<Vec<Message>, StoreError> {
        let base = format!("$aws/things/{thing}/streams/{stream}");
        let request: Option<Cbor> = ciborium::de::from_reader(payload).ok();
        let field = |name: &str| -> Option<&Cbor> {
            request
                .as_ref()?
                .as_map()?
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v)
        };
        let token = field("c").and_then(Cbor::as_text).map(str::to_string);
        let refuse = |Refused(code, message): Refused| {
            let mut answer = json!({"o": code, "m": message});
            if let Some(c) = &token {
                answer["c"] = json!(c);
            }
            Message {
                topic: format!("{base}/rejected/cbor"),
                payload: answer,
            }
        };
        match self.blocks(stream, field) {
            Ok(blocks) => Ok(blocks
                .into_iter()
                .map(|(file, i, bytes)| {
                    let mut data =
                        json!({"f": file, "i": i, "l": bytes.len(), "p": bytes_value(&bytes)});
                    if let Some(c) = &token {
                        data["c"] = json!(c);
                    }
                    Message {
                        topic: format!("{base}/data/cbor"),
                        payload: data,
                    }
                })
                .collect()),
            Err(Ok(refused)) => Ok(vec![refuse(refused)]),
            Err(Err(e)) => Err(e),
        }
    }

    /// The blocks a request asks for, or why it is refused (or the store failed).
    fn blocks<'f>(
        &self,
        stream: &str,
        field: impl Fn(&str) -> Option<&'f Cbor>,
    ) -> Result<Vec<Block>, Result<Refused, StoreError>> {
        let int = |name: &str| -> Option<u64> {
            field(name)?
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
        };
        let bad = |m: String| Err(Ok(Refused("InvalidRequest", m)));
        let (Some(file), Some(size), Some(offset)) = (int("f"), int("l"), int("o")) else {
            return bad("a request needs f (file id), l (block size) and o (block offset)".into());
        };
        let Ok(file) = u32::try_from(file) else {
            return bad(format!("file id {file} is out of range"));
        };
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&size) {
            return Err(Ok(Refused(
                "BlockSizeOutOfBounds",
                format!("block size {size}: from {MIN_BLOCK} to {MAX_BLOCK} bytes"),
            )));
        }
        let count = int("n").unwrap_or(1);
        let wanted: Vec<u64> = match field("b") {
            Some(b) => {
                let Some(bitmap) = b.as_bytes() else {
                    return bad("b (the bitmap) must be a byte string".into());
                };
                (0..count.min(bitmap.len() as u64 * 8))
                    .filter(|k| bitmap[(k / 8) as usize] & (1 << (k % 8)) != 0)
                    .map(|k| offset + k)
                    .collect()
            }
            None => (offset..offset.saturating_add(count)).collect(),
        };
        if wanted.len() as u64 > MAX_BLOCKS {
            return bad(format!(
                "{} blocks asked for at once: at most {MAX_BLOCKS}",
                wanted.len()
            ));
        }
        let bytes = match self.store.get(Table::Streams, &key(stream, file)) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Err(Ok(Refused(
                    "ResourceNotFound",
                    format!("stream {stream:?} has no file {file}"),
                )))
            }
            Err(e) => return Err(Err(e)),
        };
        let blocks: Vec<Block> = wanted
            .into_iter()
            .filter_map(|i| {
                let start = usize::try_from(i.checked_mul(size)?).ok()?;
                let block = bytes.get(start..)?;
                let end = block.len().min(size as usize);
                (start < bytes.len()).then(|| (file, i, block[..end].to_vec()))
            })
            .collect();
        if blocks.is_empty() {
            return Err(Ok(Refused(
                "OffsetOutOfBounds",
                format!(
                    "no block asked for lies in the file ({} bytes, {} blocks of {size})",
                    bytes.len(),
                    (bytes.len() as u64).div_ceil(size)
                ),
            )));
        }
        Ok(blocks)
    }
}

/// A refusal of a request to stream `stream` that was not read (throttled, or the store
/// failed).
pub fn refusal(thing: &str, stream: &str, code: &str, message: &str) -> Message {
    Message {
        topic: format!("$aws/things/{thing}/streams/{stream}/rejected/cbor"),
        payload: json!({"o": code, "m": message}),
    }
}

/// Bytes inside a JSON value, for a message published as CBOR: the CBOR byte string they
/// become there (see [`Message::bytes`]).
pub fn bytes_value(bytes: &[u8]) -> Value {
    use base64::Engine as _;
    json!({ BYTES_KEY: base64::engine::general_purpose::STANDARD.encode(bytes) })
}

/// The key of a JSON object that stands for a CBOR byte string.
pub const BYTES_KEY: &str = "$bytes";

/// `value` as CBOR: objects made by [`bytes_value`] as byte strings, the rest as it is.
pub fn to_cbor(value: &Value) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(a) => Cbor::Array(a.iter().map(to_cbor).collect()),
        Value::Object(o) => {
            if let (1, Some(Value::String(b64))) = (o.len(), o.get(BYTES_KEY)) {
                use base64::Engine as _;
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    return Cbor::Bytes(bytes);
                }
            }
            Cbor::Map(
                o.iter()
                    .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
