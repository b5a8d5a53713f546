#!/usr/bin/env bash
# What the aiida-slurm Feature adds to a start: aiida-core-with-services against the same image
# with the Feature installed on top (by its install.sh, as the devcontainer CLI does), built in
# the same run. Prints each measurement and the differences.
#
#   bash bench/slurm.sh [ROUNDS] [ACCOUNTING]     (default 2 rounds, accounting false)
#
# Timed from `docker run` / `docker start` until `aiida-init wait` returns (every service ready:
# for the Feature also `scontrol ping`, the node idle and sshd accepting the user's key), on a
# new container (first start) and after `docker stop` (restart). The Feature's postStartCommand
# (the wait, then the localhost-slurm computer made once) is timed on its own after a first start.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-2}
ACCOUNTING=${2:-false}
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
WITH=aiida-devc-bench-slurm:latest
RUN_ID=$$
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "bench: $IMAGE is missing; run: cargo run -- images build" >&2; exit 1; }
ctx=$(mktemp -d)
cleanup() {
    docker rm -f "bench-plain-$RUN_ID" "bench-slurm-$RUN_ID" >/dev/null 2>&1 || true
    rm -rf "$ctx"
}
trap cleanup EXIT
cp -R "$ROOT/features/src/aiida-slurm" "$ctx/feature"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $IMAGE
USER root
COPY feature /tmp/feature
RUN ACCOUNTING=$ACCOUNTING sh /tmp/feature/install.sh && rm -rf /tmp/feature
USER 1000:100
DOCKERFILE
docker build -q -t "$WITH" "$ctx" >/dev/null

ready() { docker exec "$1" aiida-init wait --timeout 300 >/dev/null; }
first() { # name image
    docker rm -f "$1" >/dev/null 2>&1 || true
    local t0; t0=$(now)
    docker run -d --name "$1" "$2" sleep infinity >/dev/null
    ready "$1"
    since "$t0"
}
restart() { # name
    docker stop "$1" >/dev/null
    local t0; t0=$(now)
    docker start "$1" >/dev/null
    ready "$1"
    since "$t0"
}
echo "image: $IMAGE; Feature accounting=$ACCOUNTING; rounds: $ROUNDS; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    p1=$(first "bench-plain-$RUN_ID" "$IMAGE")
    s1=$(first "bench-slurm-$RUN_ID" "$WITH")
    t0=$(now)
    docker exec "bench-slurm-$RUN_ID" /usr/local/share/aiida-slurm/wait >/dev/null
    post=$(since "$t0")
    p2=$(restart "bench-plain-$RUN_ID")
    s2=$(restart "bench-slurm-$RUN_ID")
    echo "round $round: first start ${p1} s -> ${s1} s with the Feature (+$(python3 -c "print(f'{$s1 - $p1:.2f}')") s); postStartCommand ${post} s; restart ${p2} s -> ${s2} s (+$(python3 -c "print(f'{$s2 - $p2:.2f}')") s)"
done
