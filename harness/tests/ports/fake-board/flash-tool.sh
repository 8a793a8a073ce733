#!/bin/sh
# A stand-in for a vendor's flash tool, for the harness's tests of `flash.method = "command"`.
# The "board" is an emulated MPS2-AN385 whose console is a TCP server, as a board behind a
# terminal server would be; its "flash" is a file in the board's state directory.
#
#   flash-tool.sh write IMAGE STATE CONSOLE   copy IMAGE into the board's flash, start the board
#   flash-tool.sh reset STATE CONSOLE         restart the board from its flash
#
# CONSOLE is `tcp:PORT` (a TCP server on 127.0.0.1) or `pty` (a pseudo-terminal, linked from
# STATE/tty like a board's /dev/ttyACM0). IMAGE may be the ELF or the raw binary; QEMU runs
# either from address 0.
set -eu

stop_board() {
  if [ -f "$1/qemu.pid" ]; then
    kill "$(cat "$1/qemu.pid")" 2>/dev/null || true
    rm -f "$1/qemu.pid"
    sleep 0.1
  fi
}

start_board() {
  case "$2" in
    tcp:*) console="-serial tcp:127.0.0.1:${2#tcp:},server=on,wait=off" ;;
    pty) console="-serial pty" ;;
    *) echo "flash-tool: unknown console $2" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086 # $console is several arguments
  out=$(qemu-system-arm -M mps2-an385 -display none -monitor none $console \
    -semihosting-config enable=on,target=native \
    -icount shift=5,align=off,sleep=off \
    -kernel "$1/flash.img" -daemonize -pidfile "$1/qemu.pid" 2>&1)
  # QEMU names the pseudo-terminal before it detaches: link it where the board's port would be.
  pts=$(printf '%s\n' "$out" | sed -n 's|.*redirected to \(/dev/pts/[0-9]*\).*|\1|p')
  if [ -n "$pts" ]; then ln -sfn "$pts" "$1/tty"; fi
}

case "${1:-}" in
  write)
    [ -s "$2" ] || { echo "flash-tool: no image at $2" >&2; exit 3; }
    mkdir -p "$3"
    stop_board "$3"
    cp "$2" "$3/flash.img"
    echo "flash-tool: wrote $(wc -c <"$2") bytes"
    start_board "$3" "$4"
    ;;
  reset)
    stop_board "$2"
    start_board "$2" "$3"
    echo "flash-tool: reset"
    ;;
  *)
    echo "usage: flash-tool.sh write IMAGE STATE CONSOLE | reset STATE CONSOLE" >&2
    exit 2
    ;;
esac
