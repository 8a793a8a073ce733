#!/usr/bin/env bash
# Runs a cargo command on a firmware crate with the toolchain fqp would pick:
# rustup's if it has the target, else Debian's with -Zbuild-std.
#   scripts/firmware-cargo.sh <crate dir> build --release
#   RUSTC_WRAPPER=scripts/clippy-rustc scripts/firmware-cargo.sh <crate dir> check   # lints
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
sub=$1; shift
# The reference port's target, or another (FQP_FIRMWARE_TARGET=thumbv7em-none-eabihf: the M4F
# board's hard-float image).
target=${FQP_FIRMWARE_TARGET:-thumbv7m-none-eabi}
cd "$dir"
if command -v rustc >/dev/null && [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
  exec cargo "$sub" --target "$target" "$@"
fi
lld=$(ls -d /usr/lib/llvm-*/bin/ld.lld 2>/dev/null | sort -V | tail -n 1)
# Every firmware crate checks into the reference port's target directory, as fqp's own
# builds in the tests do (FQP_FIRMWARE_TARGET_DIR): the target's core library is built once.
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$root/reference-port/target/fqp-build-std"
export "CARGO_TARGET_$(echo "$target" | tr 'a-z.-' 'A-Z__')_LINKER=${lld:-ld.lld}"
# Debian first on PATH, so that scripts/clippy-rustc finds Debian's clippy-driver (the one
# that matches Debian's rustc).
export PATH=/usr/bin:$PATH
exec /usr/bin/cargo "$sub" --target "$target" -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem "$@"
