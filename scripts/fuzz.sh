#!/usr/bin/env bash
# Long fuzzing campaigns of the parsers that read what devices, brokers, servers and users hand
# fqp: each `fuzz_…` property test (random bytes and damaged valid inputs, see
# libs/fuzzing) run with many more inputs than the test command's 2 000.
#   scripts/fuzz.sh                  # 10 000 000 inputs per parser (hours on 2 cores)
#   scripts/fuzz.sh 100000           # a shorter campaign
#   scripts/fuzz.sh 1000000 x509     # one parser (a test name filter)
# A failure prints the smallest input proptest found and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-10000000}
filter=${2:-fuzz_}
export FQP_FUZZ_CASES=$cases
# Optimised, with the checks of a debug build (overflow, debug assertions) kept.
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
for p in fqp-protocol fqp-mqtt fqp-tls fqp-net fqp-reports fqp-runner; do
  echo "== $p: $cases inputs per fuzz test"
  cargo test --release -p "$p" --lib -- --test-threads 2 "$filter"
done
