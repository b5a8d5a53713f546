#!/usr/bin/env bash
# Restarts of two or more images, interleaved, to compare a change with what it replaces on a
# noisy machine (each image's restarts alternate with the others', so a slow phase of the
# machine falls on all of them alike). One container per image, on a new home volume, made ready
# once; then ROUNDS times, for each image in turn: `docker start`, `docker exec ... aiida-init
# wait` (ready), `aiida-init status --json`, `docker stop`.
#
#   bash bench/restart-ab.sh ROUNDS IMAGE IMAGE...
#
# For an A/B of changed init scripts, derive an image from the built one with the scripts copied
# in (FROM the image, USER root, COPY, USER 1000:100) and compare the two. Prints, per image, the
# means over the rounds of: `docker start` until `aiida-init wait` returns, services up, and each
# service's start and ready time and what it took (milliseconds on aiida-init's clock, from
# `aiida-init status --json`), then how many rounds each image was the fastest to be ready in.
set -euo pipefail
if [ "$#" -lt 3 ] || ! [ "$1" -gt 0 ] 2>/dev/null; then
    echo "usage: bash bench/restart-ab.sh ROUNDS IMAGE IMAGE..." >&2
    exit 2
fi
ROUNDS=$1
shift
RUN_ID=$$
for image in "$@"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "bench: image $image is missing" >&2; exit 1; }
done
results=$(mktemp)
names=()
cleanup() {
    for name in "${names[@]}"; do
        docker rm -f "$name" >/dev/null 2>&1 || true
        docker volume rm -f "$name" >/dev/null 2>&1 || true
    done
    rm -f "$results"
}
trap cleanup EXIT

now() { date +%s%N; }

for i in $(seq "$#"); do
    name=bench-ab-$RUN_ID-$i
    names+=("$name")
    docker run -d --name "$name" -v "$name:/home/aiida" "${!i}" >/dev/null
    docker exec "$name" aiida-init wait --timeout 300 >/dev/null
    docker stop "$name" >/dev/null
done

for round in $(seq "$ROUNDS"); do
    for i in $(seq "$#"); do
        name=${names[i - 1]}
        t0=$(now)
        docker start "$name" >/dev/null
        docker exec "$name" aiida-init wait --timeout 300 >/dev/null
        t1=$(now)
        status=$(docker exec "$name" aiida-init status --json)
        docker stop "$name" >/dev/null
        printf '%s\t%s\t%s\t%s\n' "$round" "$i" $(((t1 - t0) / 1000000)) "$(tr -d '\n' <<<"$status")" >>"$results"
    done
    echo "bench: round $round of $ROUNDS done" >&2
done

python3 - "$results" "$@" <<'REPORT'
import collections
import json
import statistics
import sys

results, images = sys.argv[1], sys.argv[2:]
rows = collections.defaultdict(list)
for line in open(results):
    round_, index, wall, status = line.rstrip('\n').split('\t', 3)
    rows[int(index)].append((int(round_), int(wall), json.loads(status)))

def mean(values):
    values = [v for v in values if v is not None]
    return f'{statistics.mean(values):.0f}' if values else '-'

fastest = collections.Counter()
for round_ in {r for runs in rows.values() for r, _, _ in runs}:
    walls = {i: w for i, runs in rows.items() for r, w, _ in runs if r == round_}
    fastest[min(walls, key=walls.get)] += 1

for index, image in enumerate(images, 1):
    runs = rows[index]
    print(f'{image} ({len(runs)} restarts):')
    print(f'  docker start until ready {mean(w for _, w, _ in runs)} ms, '
          f'services up {mean(s.get("services_up_ms") for _, _, s in runs)} ms, '
          f'fastest in {fastest[index]} of {len(runs)} rounds')
    services = [sv['name'] for sv in runs[0][2]['services']]
    for name in services:
        def field(key):
            return mean(next((sv.get(key) for sv in s['services'] if sv['name'] == name), None) for _, _, s in runs)
        if field('ready_ms') != '-':
            print(f'  {name:24} started {field("started_ms"):>5}  ready {field("ready_ms"):>5}  took {field("took_ms"):>5} ms')
REPORT
