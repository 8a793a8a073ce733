//! # fqp-fuzzing: what the parsers' fuzz tests feed them
//!
//! Everything a device, a broker, a server or a user hands fqp is parsed by code that must
//! never panic, hang or accept garbage as meaning: the console protocol, port manifests,
//! result files, MQTT packets, X.509 certificates, DNS answers. Each parser's crate has a
//! property test (`fuzz_…`) that feeds it inputs from here: random bytes, and valid inputs
//! (a seed corpus) damaged the way a noisy line or a hostile peer would — bits flipped, bytes
//! replaced, inserted, deleted, runs duplicated, cut short — which reach much deeper than
//! random bytes do.
//!
//! The number of inputs per test is `FQP_FUZZ_CASES` (default [`CI_CASES`]: a few seconds in
//! CI); `scripts/fuzz.sh` runs long campaigns (10 million inputs per parser by default).
//! proptest shrinks a failing input to a small one and prints it.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Inputs per parser in an ordinary test run.
pub const CI_CASES: u32 = 2_000;

/// The test configuration: `FQP_FUZZ_CASES` inputs (default [`CI_CASES`]), and no failure
/// files written into the source tree (a failure prints its input).
pub fn config() -> Config {
    let cases = std::env::var("FQP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One way to damage an input.
#[derive(Clone, Debug)]
enum Damage {
    FlipBit(usize, u8),
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Replace(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
        any::<usize>().prop_map(Damage::Delete),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Damage::Duplicate(at, n)),
        any::<usize>().prop_map(Damage::Truncate),
    ]
}

fn apply(mut v: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = v.len();
        match *d {
            Damage::FlipBit(at, bit) if len > 0 => v[at % len] ^= 1 << bit,
            Damage::Replace(at, b) if len > 0 => v[at % len] = b,
            Damage::Insert(at, b) => v.insert(at % (len + 1), b),
            Damage::Delete(at) if len > 0 => {
                v.remove(at % len);
            }
            Damage::Duplicate(at, n) if len > 0 => {
                let start = at % len;
                let run: Vec<u8> = v[start..(start + n).min(len)].to_vec();
                v.splice(start..start, run);
            }
            Damage::Truncate(at) => v.truncate(at % (len + 1)),
            _ => {}
        }
    }
    v
}

/// Random bytes, up to `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// One of `seeds`, damaged a few times (or left whole, now and then).
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "a seed corpus needs a seed");
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(damage(), 0..8),
    )
        .prop_map(|(seed, damages)| apply(seed, &damages))
}

/// What a fuzz test feeds a parser: damaged seeds mostly, random bytes sometimes.
pub fn inputs(seeds: Vec<Vec<u8>>, max_random: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => mutated(seeds), 1 => bytes(max_random)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_stays_in_bounds_and_changes_inputs() {
        let seed = b"@FQP END id=a/b status=pass *1234".to_vec();
        assert_eq!(apply(seed.clone(), &[]), seed);
        assert!(apply(Vec::new(), &[Damage::Delete(3), Damage::FlipBit(9, 1)]).is_empty());
        let v = apply(seed.clone(), &[Damage::Truncate(4)]);
        assert_eq!(v, b"@FQP");
        let v = apply(seed.clone(), &[Damage::Duplicate(0, 5)]);
        assert!(v.starts_with(b"@FQP @FQP "));
        let v = apply(seed.clone(), &[Damage::FlipBit(usize::MAX, 7)]);
        assert_ne!(v, seed);
        assert_eq!(v.len(), seed.len());
    }
}
