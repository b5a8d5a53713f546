#!/usr/bin/env bash
# The user's first open and a restart of aiida-core-with-services for linux/arm64 under qemu on an
# x86_64 machine: the project's proxy for a slow machine (issue 22, item 5: a first open <= 15 s).
# With two or more images, the rounds alternate between them, so that an A/B of two builds sees
# the same machine (emulated times vary by a third from one minute to the next here).
#
#   bash bench/emulated-start.sh [IMAGE...]     (default: aiidateam/aiida-core-with-services:latest-arm64;
#                                                needs `cargo run -- images build --platform linux/arm64`
#                                                and the qemu handler of `scripts/bootstrap.sh --arm64`)
#
# AIIDA_DEVC_BENCH_ROUNDS (default 3) rounds per image. Each round: `docker create` + `docker start`
# on a new home volume until `aiida-init wait` returns (first open), `docker stop`, then `docker
# start` until ready again (restart). Printed per round: both times, when PostgreSQL, the profile
# (aiida-prepare) and RabbitMQ were ready in aiida-init's time line, and the load average.
set -euo pipefail
[ $# -gt 0 ] || set -- aiidateam/aiida-core-with-services:latest-arm64
ROUNDS=${AIIDA_DEVC_BENCH_ROUNDS:-3}
NAME=bench-emulated-$$
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm -f "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for image in "$@"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "bench: $image is missing" >&2; exit 1; }
done
# When a service was ready, from `aiida-init status` (READY AT column).
ready_at() { awk -v s="$2" '$1 == s { print $5 }' <<<"$1"; }
# Runs the docker command given, then waits until the container is ready; prints the seconds.
timed_until_ready() {
    local t0
    t0=$(now)
    "$@" >/dev/null
    docker exec "$NAME" aiida-init wait --timeout 300 >/dev/null
    since "$t0"
}
printf '%-50s %5s %10s %9s %10s %10s %9s\n' image round 'first open' restart postgresql profile rabbitmq
for round in $(seq "$ROUNDS"); do
    for image in "$@"; do
        cleanup
        first=$(timed_until_ready docker run -d --platform linux/arm64 --name "$NAME" -v "$NAME:/home/aiida" "$image")
        status=$(docker exec "$NAME" aiida-init status)
        docker stop "$NAME" >/dev/null
        restart=$(timed_until_ready docker start "$NAME")
        printf '%-50s %5s %9ss %8ss %10s %10s %9s  (load %s)\n' "$image" "$round" "$first" "$restart" \
            "$(ready_at "$status" postgresql)" "$(ready_at "$status" aiida-prepare)" \
            "$(ready_at "$status" rabbitmq)" "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
