#!/usr/bin/env bash
# The bootstrap from a brand-new machine's arm64 state: no qemu-aarch64 handler registered in
# binfmt_misc and no update-binfmts entry for it (qemu 10 from bookworm-backports registers
# nothing there). `bash scripts/bootstrap.sh --arm64` must register the handler again, and a
# linux/arm64 container must then run (uname -m: aarch64).
#
#   bash tests/bootstrap/new-machine.sh
#
# Needs root on an x86_64 host where `bootstrap.sh --arm64` has run once (qemu installed,
# debian:bookworm-arm64 loaded). scripts/test.sh runs it right after the bootstrap, before any
# test starts: while it runs, arm64 programs cannot start on this machine (a second or two).
# Whatever happens, the handler that was registered before is registered again at the end, and
# an update-binfmts entry moved aside is put back. Prints one PASS or FAIL line; exit 0 on PASS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BINFMT=/proc/sys/fs/binfmt_misc
ENTRY=$BINFMT/qemu-aarch64
DATABASE=/var/lib/binfmts/qemu-aarch64
IMAGE=${AIIDA_DEVC_BASE_IMAGE:-debian:bookworm}-arm64
LOG=$(mktemp /tmp/aiida-devc-new-machine.XXXXXX)

pass() { printf 'new-machine bootstrap test: PASS: %s\n' "$*"; }
fail() { printf 'new-machine bootstrap test: FAIL: %s (bootstrap log: %s)\n' "$*" "$LOG" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || { pass "nothing to test on $(uname -m): arm64 runs natively"; exit 0; }
[ "$(id -u)" = 0 ] || fail "needs root (it unregisters and registers a binfmt_misc handler)"
[ -e "$ENTRY" ] || fail "no qemu-aarch64 handler is registered: run 'bash scripts/bootstrap.sh --arm64' first"

# What is registered now, as a registration line, to put back whatever happens.
previous=$(
    interp=$(sed -n 's/^interpreter //p' "$ENTRY")
    flags=$(sed -n 's/^flags: //p' "$ENTRY")
    offset=$(sed -n 's/^offset //p' "$ENTRY")
    magic=$(sed -n 's/^magic //p' "$ENTRY" | sed 's/\(..\)/\\x\1/g')
    mask=$(sed -n 's/^mask //p' "$ENTRY" | sed 's/\(..\)/\\x\1/g')
    printf ':qemu-aarch64:M:%s:%s:%s:%s:%s' "$offset" "$magic" "$mask" "$interp" "$flags"
)
moved=""
restore() {
    [ -e "$ENTRY" ] || printf '%s' "$previous" >"$BINFMT/register" || true
    [ -z "$moved" ] || mv "$moved" "$DATABASE" || true
}
trap restore EXIT

# A new machine: no update-binfmts entry (moved aside if an older qemu left one), no handler.
if [ -e "$DATABASE" ]; then
    moved=$(mktemp -u /var/lib/binfmts/.qemu-aarch64.aside.XXXXXX)
    mv "$DATABASE" "$moved"
fi
started=$(date +%s.%N)
echo -1 >"$ENTRY"
[ ! -e "$ENTRY" ] || fail "cannot unregister $ENTRY"
if docker run --rm --platform linux/arm64 "$IMAGE" true >/dev/null 2>&1; then
    fail "an arm64 container still runs without a handler: the new machine's state was not reached"
fi

bash "$ROOT/scripts/bootstrap.sh" --arm64 >"$LOG" 2>&1 || fail "scripts/bootstrap.sh --arm64 failed: $(tail -n 3 "$LOG" | tr '\n' ' ')"
window=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ -e "$ENTRY" ] || fail "the bootstrap succeeded but registered no qemu-aarch64 handler"
grep -qx enabled "$ENTRY" || fail "the qemu-aarch64 handler is registered but disabled"
grep -q '^flags: .*F' "$ENTRY" || fail "the qemu-aarch64 handler lacks flag F (containers would not find qemu)"
machine=$(docker run --rm --platform linux/arm64 "$IMAGE" uname -m 2>&1) || fail "an arm64 container does not run: $machine"
[ "$machine" = aarch64 ] || fail "an arm64 container says uname -m = '$machine'"
grep -q 'binfmt handler registered from' "$LOG" || fail "the bootstrap did not say it registered the handler"
pass "bootstrap.sh --arm64 registered $(sed -n 's/^interpreter //p' "$ENTRY") from $(sed -n 's/.*registered from \([^ ]*\).*/\1/p' "$LOG" | head -n 1) with no update-binfmts entry; an arm64 container runs (uname -m: $machine); the bootstrap took ${window} s"
