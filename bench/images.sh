#!/usr/bin/env bash
# Start, restart and stop of aiida-core-with-services (aiida-init, parallel service tree) against
# a baseline built in the same run: the same image started by a sequential shell script in
# upstream's order under tini (bench/images-baseline). Prints each measurement and the ratios.
#
#   bash bench/images.sh [ROUNDS]        (default 2 rounds; needs the images built:
#                                         cargo run -- images build)
#
# With AIIDA_DEVC_BENCH_TIMELINES=DIR, the `aiida-init status` of each start of ours is kept in DIR
# (first-N.txt, restart-N.txt).
#
# Ready means what the tests mean: `verdi status` all green with RabbitMQ and the daemon running
# (checked after each timed start, outside the timing). Timed from `docker start` until
# `aiida-init wait` returns (ours) or the script's ready marker appears (baseline).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-2}
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
BASELINE=aiida-devc-bench-sequential:latest
RUN_ID=$$
TIMELINES=${AIIDA_DEVC_BENCH_TIMELINES:-}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "bench: $IMAGE is missing; run: cargo run -- images build" >&2; exit 1; }
ctx=$(mktemp -d)
cleanup() {
    docker rm -f "bench-ours-$RUN_ID" "bench-base-$RUN_ID" >/dev/null 2>&1 || true
    docker volume rm -f "bench-ours-$RUN_ID" "bench-base-$RUN_ID" >/dev/null 2>&1 || true
    rm -rf "$ctx"
}
trap cleanup EXIT
cp "$ROOT/bench/images-baseline/"* "$ctx/"
cp "$(command -v tini-static || echo /usr/bin/tini-static)" "$ctx/tini-static"
docker build -q --build-arg "IMAGE=$IMAGE" -t "$BASELINE" "$ctx" >/dev/null

ready_ours() { docker exec "$1" aiida-init wait --timeout 300 >/dev/null; }
# The start-up time line of ours (outside the timing), when asked for.
timeline() {
    if [ "$1" = ours ] && [ -n "$TIMELINES" ]; then
        mkdir -p "$TIMELINES"
        docker exec "$2" aiida-init status >"$TIMELINES/$3.txt"
    fi
}
ready_base() { docker exec "$1" bash -c 'until [ -e /tmp/ready ]; do sleep 0.05; done'; }
check_green() {
    local out
    out=$(docker exec "$1" verdi status 2>&1) || true
    if ! grep -q '✔ broker:' <<<"$out" || ! grep -q 'Daemon is running' <<<"$out"; then
        echo "bench: $1 is not ready:" >&2; echo "$out" >&2; exit 1
    fi
}

# One round for one flavour: first start on a fresh home volume, stop, restart, stop.
# Prints: first restart stop1 stop2 exitcode
round() {
    local flavour=$1 image=$2 n=$3 name="bench-$1-$RUN_ID" t first restart stop1 stop2
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm -f "$name" >/dev/null 2>&1 || true
    docker create --name "$name" -v "$name:/home/aiida" "$image" >/dev/null
    t=$(now); docker start "$name" >/dev/null; "ready_$flavour" "$name"; first=$(since "$t")
    timeline "$flavour" "$name" "first-$n"
    check_green "$name"
    t=$(now); docker stop "$name" >/dev/null; stop1=$(since "$t")
    t=$(now); docker start "$name" >/dev/null; "ready_$flavour" "$name"; restart=$(since "$t")
    timeline "$flavour" "$name" "restart-$n"
    check_green "$name"
    t=$(now); docker stop "$name" >/dev/null; stop2=$(since "$t")
    echo "$first $restart $stop1 $stop2 $(docker inspect -f '{{.State.ExitCode}}' "$name")"
    docker rm -f "$name" >/dev/null; docker volume rm -f "$name" >/dev/null
}

results=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
    echo "ours $(round ours "$IMAGE" "$r")" | tee -a "$results"
    echo "base $(round base "$BASELINE" "$r")" | tee -a "$results"
done
size() { docker image inspect -f '{{.Size}}' "$1"; }
python3 - "$results" "$(size "$IMAGE")" "$(size "$BASELINE")" "$(size "${IMAGE/with-services/base}" 2>/dev/null || echo 0)" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
def mean(flavour, i):
    return statistics.mean(float(r[i + 1]) for r in rows if r[0] == flavour)
names = ['first start to ready', 'restart to ready', 'docker stop (after first)', 'docker stop (after restart)']
targets = [0.3, 0.25, None, None]
print(f"\n{'':30} {'aiida-init':>11} {'sequential':>11} {'ratio':>7}  target")
for i, (name, target) in enumerate(zip(names, targets)):
    ours, base = mean('ours', i), mean('base', i)
    goal = f'<= {target}x' if target else '<= 3 s, nothing killed'
    print(f'{name:30} {ours:10.2f}s {base:10.2f}s {ours / base:6.2f}x  {goal}')
print(f"exit codes after docker stop: aiida-init {sorted({r[5] for r in rows if r[0]=='ours'})}, "
      f"sequential {sorted({r[5] for r in rows if r[0]=='base'})} (137 = SIGKILLed)")
mb = lambda b: int(b) / 1e6
print(f"image sizes: aiida-core-with-services {mb(sys.argv[2]):.0f} MB, baseline {mb(sys.argv[3]):.0f} MB, "
      f"aiida-core-base {mb(sys.argv[4]):.0f} MB")
print(f"rounds: {len(rows) // 2}")
PY
rm -f "$results"
