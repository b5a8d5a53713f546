#!/usr/bin/env bash
# Soak of aiida-core-with-services: repeated hard kills with calculations in flight, and many
# fresh starts. Prints one line per cycle and start, then a summary (the rows of
# bench/reliability.md).
#
#   bash bench/soak.sh [KILL_CYCLES] [FRESH_STARTS]     (defaults 20 and 50; needs the images:
#                                                         cargo run -- images build)
#
# 1. Kill/start: one container on a home volume. Each cycle waits until it is ready, submits a
#    `core.arithmetic.add` calculation (the daemon runs it through the local transport and
#    bash), waits a random 0-4 s, then `docker kill` (SIGKILL to every process: no clean
#    shutdown of PostgreSQL, RabbitMQ or the daemon) and `docker start`. The recovery time is
#    from `docker start` until `aiida-init wait` returns. At the end every submitted calculation
#    must be finished with exit status 0 and the right sum; the others are counted as lost.
# 2. Fresh starts: `docker run -d` of a new container on a new, empty home volume (the first
#    start a user sees: the image's home copied in, the profile made), timed until
#    `aiida-init wait` returns, then removed with its volume. Reports min/median/p90/max.
#
# The machine's load average is printed at the start and end of each part (the numbers mean
# little without it).
#
# AIIDA_DEVC_IMAGE_PREFIX picks the images (default aiidateam), as in the tests.
set -euo pipefail
CYCLES=${1:-20}
FRESH=${2:-50}
IMAGE=${AIIDA_DEVC_IMAGE_PREFIX:-aiidateam}/aiida-core-with-services:${AIIDA_DEVC_IMAGE_TAG:-latest}
NAME=soak-$$
READY_TIMEOUT=600
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

docker image inspect "$IMAGE" >/dev/null 2>&1 || {
    echo "soak: $IMAGE is missing; run: cargo run -- images build" >&2
    exit 1
}
cleanup() {
    docker rm -f "$NAME" "$NAME-fresh" >/dev/null 2>&1 || true
    docker volume rm -f "$NAME" "$NAME-fresh" >/dev/null 2>&1 || true
}
load() { cut -d' ' -f1-3 /proc/loadavg; }
trap cleanup EXIT

# Until `aiida-init wait` succeeds (exec fails while the init is starting; retried briefly).
wait_ready() {
    local container=$1 deadline=$((SECONDS + 30)) out
    while true; do
        if out=$(docker exec "$container" aiida-init wait --timeout "$READY_TIMEOUT" 2>&1); then
            return 0
        fi
        if [ "$SECONDS" -gt "$deadline" ] || grep -q failed <<<"$out"; then
            echo "soak: $container did not become ready: $out" >&2
            docker logs --tail 40 "$container" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Python run in the container with the profile loaded.
in_profile() {
    docker exec "$NAME" python -c "from aiida import load_profile, orm; load_profile()
$1"
}

SUBMIT='
from aiida.engine import submit
from aiida.plugins import CalculationFactory
code = orm.load_code("add@localhost")
builder = CalculationFactory("core.arithmetic.add").get_builder()
builder.code = code
builder.x = orm.Int(X)
builder.y = orm.Int(Y)
print(submit(builder).pk)
'

# All calculations of the run: "pk x+y" lines.
submitted=$(mktemp)
results=$(mktemp)
trap 'cleanup; rm -f "$submitted" "$results"' EXIT

echo "== kill/start: $CYCLES cycles on $IMAGE (load average $(load))"
docker volume create "$NAME" >/dev/null
docker run -d --name "$NAME" -v "$NAME:/home/aiida" "$IMAGE" >/dev/null
t=$(now)
wait_ready "$NAME"
echo "first start: ready after $(since "$t") s"
docker exec "$NAME" verdi code create core.code.installed --non-interactive --label add \
    --computer localhost --filepath-executable /bin/bash >/dev/null
recoveries=()
for cycle in $(seq "$CYCLES"); do
    x=$cycle y=$((cycle * 100))
    code=${SUBMIT/X/$x}
    pk=$(in_profile "${code/Y/$y}" | tail -1 || true)
    [ -n "$pk" ] || { echo "soak: cycle $cycle: the submission failed" >&2; exit 1; }
    echo "$pk $((x + y))" >>"$submitted"
    sleep "$((RANDOM % 5))"
    docker kill "$NAME" >/dev/null
    docker wait "$NAME" >/dev/null || true
    t=$(now)
    docker start "$NAME" >/dev/null
    wait_ready "$NAME"
    recovery=$(since "$t")
    recoveries+=("$recovery")
    echo "cycle $cycle: calculation $pk submitted, killed, ready again after $recovery s (load average $(load))"
done

# Every calculation must finish (the daemon resumes what a kill interrupted).
CHECK='
import sys, time
expected = dict(line.split() for line in sys.argv[1].splitlines())
deadline = time.monotonic() + 600
while True:
    states = {}
    for pk, total in expected.items():
        node = orm.load_node(int(pk))
        ok = node.is_finished_ok and node.outputs.sum.value == int(total)
        states[pk] = "ok" if ok else (node.process_state.value if node.process_state else "none")
    if all(s == "ok" for s in states.values()) or time.monotonic() > deadline:
        break
    time.sleep(2)
for pk, state in states.items():
    print(pk, state)
'
t=$(now)
docker exec "$NAME" python -c "from aiida import load_profile, orm; load_profile()
$CHECK" "$(cat "$submitted")" >"$results"
finished=$(grep -c ' ok$' "$results" || true)
lost=$((CYCLES - finished))
echo "all calculations checked $(since "$t") s after the last start: $finished of $CYCLES finished ok, lost: $lost"
grep -v ' ok$' "$results" | sed 's/^/  not finished: /' || true
docker exec "$NAME" verdi status >/dev/null || { echo "soak: verdi status is not green" >&2; docker exec "$NAME" verdi status >&2 || true; }
docker rm -f "$NAME" >/dev/null
docker volume rm -f "$NAME" >/dev/null

stats() { # numbers... -> min median p90 max
    python3 -c '
import sys, statistics
v = sorted(float(x) for x in sys.argv[1:])
p90 = v[min(len(v) - 1, round(0.9 * (len(v) - 1)))]
print(f"min {v[0]:.1f} s, median {statistics.median(v):.1f} s, p90 {p90:.1f} s, max {v[-1]:.1f} s (n={len(v)})")
' "$@"
}
echo "recovery after docker kill + docker start: $(stats "${recoveries[@]}")"

echo "== fresh starts: $FRESH on $IMAGE, each on a new home volume (load average $(load))"
times=()
failures=0
for i in $(seq "$FRESH"); do
    docker rm -f "$NAME-fresh" >/dev/null 2>&1 || true
    docker volume rm -f "$NAME-fresh" >/dev/null 2>&1 || true
    t=$(now)
    docker run -d --name "$NAME-fresh" -v "$NAME-fresh:/home/aiida" "$IMAGE" >/dev/null
    if wait_ready "$NAME-fresh"; then
        took=$(since "$t")
        times+=("$took")
        echo "start $i: ready after $took s (load average $(load))"
    else
        failures=$((failures + 1))
        echo "start $i: NOT ready"
    fi
done
docker rm -f "$NAME-fresh" >/dev/null 2>&1 || true
docker volume rm -f "$NAME-fresh" >/dev/null 2>&1 || true
echo "== summary (load average at the end $(load))"
echo "kill/start: $CYCLES cycles, $finished calculations finished, lost: $lost; recovery $(stats "${recoveries[@]}")"
if [ "${#times[@]}" -gt 0 ]; then
    echo "fresh starts: $((FRESH - failures)) of $FRESH ready; time to ready $(stats "${times[@]}")"
else
    echo "fresh starts: none of $FRESH ready"
fi
[ "$lost" -eq 0 ] && [ "$failures" -eq 0 ]
