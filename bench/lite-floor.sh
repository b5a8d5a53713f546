#!/usr/bin/env bash
# The floor of the lite variant's start: how soon aiida-core-base (SQLite, ZeroMQ) could be ready
# with a daemon start that cost nothing, and with `aiida-init circusd` as its daemon, against the
# lite image as built and aiida-core-with-services, in interleaved rounds of one run. Two images
# are derived from the lite image, each with /etc/init/aiida-daemon replaced by a stand-in that
# waits for what the daemon service waits for (the profile step, and a running ZeroMQ broker that
# has written its status file, which `verdi status` reads), then:
#   * floor: reports ready (no daemon at all): Docker's own share, aiida-init, the profile step and
#     the broker;
#   * circusd: writes the sockets file and runs `aiida-init circusd` with the profile's worker,
#     which reports ready (the PID file written, the controller bound, the worker started); no
#     watchdog and no Python beside it: what the daemon service's own Python (the profile read,
#     the broker waited for; it runs circusd the same way) adds to it.
# The floor's ratio to with-services is the best lite's ratio can be on this machine.
#
#   bash bench/lite-floor.sh [ROUNDS]     (default 5; needs the images built: cargo run -- images build)
#
# Each round, for each image: the user's first open (`docker create` + `docker start` on a new
# home volume), stop, restart, stop. Ready: `aiida-init wait` returns, as in bench/images.sh; the
# circusd variant's `verdi status` is checked after each start, outside the timing.
set -euo pipefail
ROUNDS=${1:-5}
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
LITE=${AIIDA_DEVC_BENCH_LITE_IMAGE:-${IMAGE/with-services/base}}
FLOOR=aiida-devc-bench-lite-floor:latest
CIRCUSD=aiida-devc-bench-lite-circusd:latest
RUN_ID=$$
for image in "$IMAGE" "$LITE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "bench: $image is missing; run: cargo run -- images build" >&2; exit 1; }
done
ctx=$(mktemp -d)
results=$(mktemp)
cleanup() {
    for flavour in ours lite floor circusd; do
        docker rm -f "bench-$flavour-$RUN_ID" >/dev/null 2>&1 || true
        docker volume rm -f "bench-$flavour-$RUN_ID" >/dev/null 2>&1 || true
    done
    rm -rf "$ctx" "$results"
}
trap cleanup EXIT

cat >"$ctx/aiida-daemon" <<'STAND_IN'
#!/bin/bash
# Stand-in for the daemon service (bench/lite-floor.sh): wait as the service waits, then report
# ready (floor) or run aiida-init circusd (circusd).
aiida-init wait --timeout 300 aiida-prepare >/dev/null || exit 1
# A running broker that wrote its status file since it started (a restart finds the last one's).
btime=$(awk '/^btime/ {print $2}' /proc/stat) hz=$(getconf CLK_TCK)
broker_ready() {
    local status pid stamp started
    status=$(echo ~/.aiida/broker/*/broker.status)
    [ -f "$status" ] || return 1
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$status")
    stamp=$(sed -n 's/.*"timestamp": *\([0-9.]*\).*/\1/p' "$status")
    [ -n "$pid" ] && [ -n "$stamp" ] && [ -r "/proc/$pid/stat" ] || return 1
    started=$(awk -v b="$btime" -v hz="$hz" '{ sub(/.*\) /, ""); printf "%.3f", b + $20 / hz }' "/proc/$pid/stat")
    awk -v s="$started" -v t="$stamp" 'BEGIN { exit !(s <= t + 0.01) }'
}
until broker_ready; do sleep 0.01; done
if [ -e /etc/init/aiida-daemon.circusd ]; then
    dir=$(mktemp -d)
    printf %s "$dir" >~/.aiida/daemon/circus-default.sockets
    exec aiida-init circusd --name aiida-default --controller "$dir/circus.c.sock" \
        --log-file ~/.aiida/daemon/log/aiida-default.log --pid-file ~/.aiida/daemon/circus-default.pid \
        --stop-timeout 4 --notify-fd 3 -- /etc/init/aiida-daemon-worker -p default daemon worker
fi
echo >&3
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done
STAND_IN
chmod 755 "$ctx/aiida-daemon"
# The two images differ by a marker file only: an environment variable would change what the
# image's profile template was made for, and the first start would make a profile instead.
touch "$ctx/aiida-daemon.circusd"
# shellcheck disable=SC2016 # Dockerfile ARGs, expanded by docker build
printf 'ARG IMAGE\nFROM $IMAGE\nCOPY aiida-daemon /etc/init/aiida-daemon\n' >"$ctx/Dockerfile.floor"
# shellcheck disable=SC2016
printf 'ARG IMAGE\nFROM $IMAGE\nCOPY aiida-daemon aiida-daemon.circusd /etc/init/\n' >"$ctx/Dockerfile.circusd"
docker build -q --build-arg "IMAGE=$LITE" -f "$ctx/Dockerfile.floor" -t "$FLOOR" "$ctx" >/dev/null
docker build -q --build-arg "IMAGE=$LITE" -f "$ctx/Dockerfile.circusd" -t "$CIRCUSD" "$ctx" >/dev/null

now() { date +%s.%N; }
ready() { docker exec "$1" aiida-init wait --timeout 300 >/dev/null; }
# The circusd variant's daemon must be the one verdi sees, with the broker's status (as in
# bench/images.sh for lite).
check_green() {
    [ "$1" = circusd ] || return 0
    local out
    out=$(docker exec "$2" verdi status 2>&1) || true
    if ! grep -q 'Daemon is running with PID [0-9]*, Broker PID' <<<"$out" || grep -qE '✘|⏺' <<<"$out"; then
        echo "bench: $2 is not ready:" >&2; echo "$out" >&2; exit 1
    fi
}
# One round for one flavour; prints: flavour open first restart
round() {
    local flavour=$1 image=$2 name="bench-$1-$RUN_ID" t0 t1 t2 t3 t4
    t0=$(now); docker create --name "$name" -v "$name:/home/aiida" "$image" >/dev/null
    t1=$(now); docker start "$name" >/dev/null; ready "$name"; t2=$(now)
    check_green "$flavour" "$name"
    docker stop "$name" >/dev/null
    t3=$(now); docker start "$name" >/dev/null; ready "$name"; t4=$(now)
    check_green "$flavour" "$name"
    docker stop "$name" >/dev/null
    docker rm -f "$name" >/dev/null; docker volume rm -f "$name" >/dev/null
    python3 -c 'import sys; t = [float(x) for x in sys.argv[2:]]
print(sys.argv[1], f"{t[2] - t[0]:.3f}", f"{t[2] - t[1]:.3f}", f"{t[4] - t[3]:.3f}")' "$flavour" "$t0" "$t1" "$t2" "$t3" "$t4"
}
for _ in $(seq 1 "$ROUNDS"); do
    round ours "$IMAGE" | tee -a "$results"
    round lite "$LITE" | tee -a "$results"
    round floor "$FLOOR" | tee -a "$results"
    round circusd "$CIRCUSD" | tee -a "$results"
done
docker rmi "$FLOOR" "$CIRCUSD" >/dev/null

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def mean(flavour, i):
    return statistics.mean(float(r[i]) for r in rows if r[0] == flavour)
print(f"\n{'':28} {'w-services':>10} {'lite':>14} {'lite floor':>14} {'lite circusd':>14}")
for name, i in (('first open (create + start)', 1), ('first start to ready', 2), ('restart to ready', 3)):
    ours = mean('ours', i)
    cells = ' '.join(f"{mean(f, i):7.3f}s {mean(f, i) / ours:4.2f}x" for f in ('lite', 'floor', 'circusd'))
    print(f'{name:28} {ours:9.3f}s {cells}')
print(f"rounds: {len(rows) // 4} (ratios to with-services; lite's target is <= 0.5x)")
PY
