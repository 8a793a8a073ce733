#!/usr/bin/env bash
# Every check: formatting, lints (host and firmware), host unit tests, and the harness's
# integration tests, which build the firmware and run the on-device suites on QEMU through
# `fqp` itself (the reference port's full qualification among them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# As scripts/qualify-reference.sh builds (incremental compilation costs a first build a fifth
# of the workspace crates' time): the two commands share what they compile.
export CARGO_INCREMENTAL=0
echo "== format"
cargo fmt --all -- --check
# Inside a port, --all also covers its path dependencies: the firmware-only crates.
(cd reference-port && cargo fmt --all -- --check)
(cd port-template && cargo fmt --all -- --check)
echo "== lint (firmware)"
# Clippy in place of rustc for every crate of the tree the firmware builds (`cargo clippy`
# lints only a workspace's members, and the port is the only member of its workspace): the
# port, the test kit and suites, the libraries and the kernel, for the device's target.
# Registry crates are compiled with --cap-lints allow, which Clippy leaves alone.
lint_firmware() {
  local dir=$1
  shift
  RUSTC_WRAPPER="$PWD/scripts/clippy-rustc" scripts/firmware-cargo.sh "$dir" check --release --quiet "$@"
}
lint_firmware reference-port
lint_firmware reference-port --features selftest
lint_firmware reference-port --features bench
# The reference board's boot loader (reference-port/boot).
lint_firmware reference-port -p fqp-boot-mps2
# The M4F board's hard-float image (the kernel's FP context, the fpu group).
FQP_FIRMWARE_TARGET=thumbv7em-none-eabihf lint_firmware reference-port
# The kernel's Armv6-M and Armv8-M ports (the boards' images are built by the tests; the
# kernel alone is what differs, and linting it alone spares checking every dependency again).
FQP_FIRMWARE_TARGET=thumbv6m-none-eabi lint_firmware kernel -p fqp-kernel
FQP_FIRMWARE_TARGET=thumbv8m.main-none-eabi lint_firmware kernel -p fqp-kernel
# With every library `fqp init --libs` can choose (the template's features).
lint_firmware port-template --all-features
echo "== lint (host)"
# The kernel without a heap (a feature set no test builds).
cargo clippy -p fqp-kernel --no-default-features --quiet -- -D warnings
# Everything else is linted while it builds: clippy-driver compiles the workspace's own crates
# (every target: libraries, the binary, tests, benchmarks), warnings fail the build. The tests
# then run from that build (the wrapper is part of what cargo fingerprints, so it stays set);
# fqp's firmware builds leave the wrappers out (they reuse the firmware the main command built).
export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc"
cargo test --workspace --all-targets --no-run --quiet
echo "== tests"
# cargo-nextest runs the tests of every binary side by side (cargo test runs the binaries one
# after another, and the on-device suites keep one binary busy for minutes): used when
# installed, as it is on the machines this project runs on.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace
fi
