#!/usr/bin/env bash
# Installs what building and qualifying the reference port needs on a Debian machine:
# QEMU for the emulated board, and (unless rustup already has the target) Debian's Rust
# toolchain that can build the firmware's standard library from source. Idempotent: when
# everything is present it only checks, in well under a second.
#
# With --test, also what the test command needs: xmllint and the common JUnit schema
# (junit-10.xsd, from pytest's source distribution on PyPI) to validate our JUnit output,
# Chromium to render the HTML report headless, and mosquitto (the second MQTT broker).
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true

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
if $for_tests; then
  command -v xmllint >/dev/null || need+=(libxml2-utils)
  command -v chromium >/dev/null || need+=(chromium)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
fi

# The JUnit schema CI systems (Jenkins, GitLab) follow. Not committed: fetched from PyPI.
xsd=target/junit-xsd/junit-10.xsd
if $for_tests && [ ! -s "$xsd" ]; then
  pytest_version=8.3.4
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" "pytest==$pytest_version"
  mkdir -p "$(dirname "$xsd")"
  tar -xzf "$tmp/pytest-$pytest_version.tar.gz" -O "pytest-$pytest_version/testing/example_scripts/junit-10.xsd" >"$xsd.part"
  mv "$xsd.part" "$xsd"
  rm -rf "$tmp"
  echo "setup: $xsd fetched"
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
