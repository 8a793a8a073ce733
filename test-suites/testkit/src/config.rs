//! Settings the host provisions for the tests at run time (`SET key=… value=…`): where the
//! lab's services are, and later credentials. Kept in RAM: the host sends them again after
//! every boot, so one image serves every device and lab.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use fqp_kernel::mutex::Mutex;

/// Longest value accepted (a certificate chain fits).
pub const MAX_VALUE: usize = 16 * 1024;
/// Most settings kept.
pub const MAX_KEYS: usize = 64;

static SETTINGS: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());

/// Where a `SET` puts its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum At {
    /// After the value's first `n` bytes, dropping the rest (0: replaces the value): a piece
    /// sent twice (the host retrying after an answer it did not see) leaves the same value as
    /// sent once.
    Offset(usize),
    /// After the whole value (`append=1` from a harness that sends no offset).
    End,
}

/// Stores `value` under `key` at `at`; the value's length, or why not.
pub(crate) fn set(key: &str, value: &[u8], at: At) -> Result<usize, &'static str> {
    let mut s = SETTINGS.lock();
    if !s.contains_key(key) && s.len() >= MAX_KEYS {
        return Err("too many settings");
    }
    let v = s.entry(String::from(key)).or_default();
    let keep = match at {
        At::Offset(n) if n > v.len() => return Err("offset past the end of the value"),
        At::Offset(n) => n,
        At::End => v.len(),
    };
    if keep + value.len() > MAX_VALUE {
        return Err("value too long");
    }
    v.truncate(keep);
    v.extend_from_slice(value);
    Ok(v.len())
}

/// The setting `key`, if the host provisioned it.
pub fn get(key: &str) -> Option<Vec<u8>> {
    SETTINGS.lock().get(key).cloned()
}

/// The setting `key` as text.
pub fn get_str(key: &str) -> Option<String> {
    get(key).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The seed the host provisions for a board without a TRNG (`entropy`: 32 bytes in hex, fresh
/// for each boot): `None` when it sent none, `Err` when the setting is not 32 bytes of hex.
pub fn provisioned_seed() -> Option<Result<[u8; 32], &'static str>> {
    let text = get("entropy")?;
    let mut seed = [0u8; 32];
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    if text.len() != 2 * seed.len() {
        return Some(Err("the entropy setting is not 32 bytes of hex"));
    }
    for (b, pair) in seed.iter_mut().zip(text.chunks(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *b = hi << 4 | lo,
            _ => return Some(Err("the entropy setting is not 32 bytes of hex")),
        }
    }
    Some(Ok(seed))
}
