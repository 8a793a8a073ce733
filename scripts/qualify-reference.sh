#!/usr/bin/env bash
# The main job: set up this machine, then qualify the reference port (QEMU mps2-an385).
# Reports: out/mps2-an385/{results.json,junit.xml,serial.log,build.log,qemu.log}.
# Extra arguments go to `fqp qualify` (for example --group queue).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A first build gains nothing from incremental compilation and pays for its bookkeeping
# (a fifth of the workspace crates' build); scripts/test.sh builds the same way, so the two
# share what they compile.
export CARGO_INCREMENTAL=0
exec cargo run --quiet -p fqp -- qualify --port reference-port "$@"
