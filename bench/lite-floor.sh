#!/usr/bin/env bash
# The floor of the lite variant's start: how soon aiida-core-base (SQLite, ZeroMQ) could be ready
# if its daemon service cost nothing, against the lite image as built and aiida-core-with-services,
# in interleaved rounds of one run. The floor is the lite image with /etc/init/aiida-daemon
# replaced by a stand-in that reports ready as soon as the profile step and the ZeroMQ broker are
# up (no circus, no worker, no PID file): Docker's own share, aiida-init, the profile step and the
# broker. What a daemon start costs on top of it is the difference between lite and the floor;
# the floor's ratio to with-services is the best lite's ratio can be on this machine.
#
#   bash bench/lite-floor.sh [ROUNDS]     (default 5; needs the images built: cargo run -- images build)
#
# Each round, for each of the three: the user's first open (`docker create` + `docker start` on a
# new home volume), stop, restart, stop. Ready: `aiida-init wait` returns, as in bench/images.sh.
set -euo pipefail
ROUNDS=${1:-5}
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
LITE=${AIIDA_DEVC_BENCH_LITE_IMAGE:-${IMAGE/with-services/base}}
FLOOR=aiida-devc-bench-lite-floor:latest
RUN_ID=$$
for image in "$IMAGE" "$LITE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "bench: $image is missing; run: cargo run -- images build" >&2; exit 1; }
done
ctx=$(mktemp -d)
results=$(mktemp)
cleanup() {
    for flavour in ours lite floor; do
        docker rm -f "bench-$flavour-$RUN_ID" >/dev/null 2>&1 || true
        docker volume rm -f "bench-$flavour-$RUN_ID" >/dev/null 2>&1 || true
    done
    rm -rf "$ctx" "$results"
}
trap cleanup EXIT

cat >"$ctx/aiida-daemon" <<'STAND_IN'
#!/bin/bash
# Stand-in for the daemon service: ready once the profile step and the broker are up.
aiida-init wait --timeout 300 aiida-prepare aiida-zmq-broker >/dev/null
echo >&3
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done
STAND_IN
chmod 755 "$ctx/aiida-daemon"
# shellcheck disable=SC2016 # a Dockerfile ARG, expanded by docker build
printf 'ARG IMAGE\nFROM ${IMAGE}\nCOPY aiida-daemon /etc/init/aiida-daemon\n' >"$ctx/Dockerfile"
docker build -q --build-arg "IMAGE=$LITE" -t "$FLOOR" "$ctx" >/dev/null

now() { date +%s.%N; }
ready() { docker exec "$1" aiida-init wait --timeout 300 >/dev/null; }
# One round for one flavour; prints: flavour open first restart
round() {
    local flavour=$1 image=$2 name="bench-$1-$RUN_ID" t0 t1 t2 t3 t4
    t0=$(now); docker create --name "$name" -v "$name:/home/aiida" "$image" >/dev/null
    t1=$(now); docker start "$name" >/dev/null; ready "$name"; t2=$(now)
    docker stop "$name" >/dev/null
    t3=$(now); docker start "$name" >/dev/null; ready "$name"; t4=$(now)
    docker stop "$name" >/dev/null
    docker rm -f "$name" >/dev/null; docker volume rm -f "$name" >/dev/null
    python3 -c 'import sys; t = [float(x) for x in sys.argv[2:]]
print(sys.argv[1], f"{t[2] - t[0]:.3f}", f"{t[2] - t[1]:.3f}", f"{t[4] - t[3]:.3f}")' "$flavour" "$t0" "$t1" "$t2" "$t3" "$t4"
}
for _ in $(seq 1 "$ROUNDS"); do
    round ours "$IMAGE" | tee -a "$results"
    round lite "$LITE" | tee -a "$results"
    round floor "$FLOOR" | tee -a "$results"
done
docker rmi "$FLOOR" >/dev/null

python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def mean(flavour, i):
    return statistics.mean(float(r[i]) for r in rows if r[0] == flavour)
print(f"\n{'':28} {'w-services':>10} {'lite':>14} {'lite floor':>14}")
for name, i in (('first open (create + start)', 1), ('first start to ready', 2), ('restart to ready', 3)):
    ours, lite, floor = mean('ours', i), mean('lite', i), mean('floor', i)
    print(f'{name:28} {ours:9.3f}s {lite:7.3f}s {lite / ours:4.2f}x {floor:7.3f}s {floor / ours:4.2f}x')
print(f"rounds: {len(rows) // 3} (ratios to with-services; lite's target is <= 0.5x)")
PY
