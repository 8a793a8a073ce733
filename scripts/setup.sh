#!/usr/bin/env bash
# Installs what building and qualifying the reference port needs on a Debian machine:
# QEMU for the emulated board, and (unless rustup already has the target) Debian's Rust
# toolchain that can build the firmware's standard library from source. Idempotent: when
# everything is present it only checks, in well under a second.
set -euo pipefail

target=thumbv7m-none-eabi
need=()

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)

rustup_has_target=false
if command -v rustc >/dev/null && [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/$target/lib" ]; then
  rustup_has_target=true
fi
# Debian's toolchain is needed for the firmware unless rustup has the target, and its clippy
# lints the firmware in the test command either way.
for p in rustc-web cargo-web rust-web-src rust-web-llvm rust-web-clippy; do
  have_pkg "$p" || need+=("$p")
done
if ! ls /usr/lib/llvm-*/bin/ld.lld >/dev/null 2>&1 && ! command -v ld.lld >/dev/null; then
  need+=(lld-22)
fi

if [ ${#need[@]} -eq 0 ]; then
  echo "setup: everything is installed (rustup has $target: $rustup_has_target)"
  exit 0
fi

echo "setup: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "setup: done"
