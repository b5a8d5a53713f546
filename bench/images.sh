#!/usr/bin/env bash
# Start, restart and stop of aiida-core-with-services (aiida-init, parallel service tree) against
# a baseline built in the same run: the same image started by a sequential shell script in
# upstream's order under tini (bench/images-baseline). Also the lite variant (aiida-core-base:
# SQLite and the ZeroMQ broker) against with-services, and what a user downloads: the compressed
# layers of each image as `aiida-devc images push` publishes them to a registry on localhost
# (Debian's docker-registry), beside what the engine's own `docker push` would upload, for both
# platforms when both are built, and how much of it an image with a new aiida-core release changes
# (the layers from the aiida-core install on). Prints each measurement and the ratios.
#
#   bash bench/images.sh [ROUNDS]        (default 2 rounds; needs the images built:
#                                         cargo run -- images build)
#
# Each round: the user's first open (`docker create` + `docker start` on a new home volume, which
# Docker fills from the image), stop, restart, stop. "first start" is the same open without the
# `docker create`. With AIIDA_DEVC_BENCH_SIZES=0 the compressed sizes are left out.
#
# With AIIDA_DEVC_BENCH_TIMELINES=DIR, the `aiida-init status` of each start of ours and of lite
# is kept in DIR (with-services-first-N.txt, with-services-restart-N.txt, lite-first-N.txt, ...).
#
# Ready means what the tests mean: `verdi status` all green with RabbitMQ and the daemon running
# (checked after each timed start, outside the timing). Timed from `docker start` until
# `aiida-init wait` returns (ours) or the script's ready marker appears (baseline).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-2}
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
LITE=${AIIDA_DEVC_BENCH_LITE_IMAGE:-${IMAGE/with-services/base}}
BASELINE=aiida-devc-bench-sequential:latest
RUN_ID=$$
TIMELINES=${AIIDA_DEVC_BENCH_TIMELINES:-}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

for image in "$IMAGE" "$LITE"; do
    docker image inspect "$image" >/dev/null 2>&1 || { echo "bench: $image is missing; run: cargo run -- images build" >&2; exit 1; }
done
ctx=$(mktemp -d)
registry_pid=
cleanup() {
    docker rm -f "bench-ours-$RUN_ID" "bench-base-$RUN_ID" "bench-lite-$RUN_ID" >/dev/null 2>&1 || true
    docker volume rm -f "bench-ours-$RUN_ID" "bench-base-$RUN_ID" "bench-lite-$RUN_ID" >/dev/null 2>&1 || true
    [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
    rm -rf "$ctx"
}
trap cleanup EXIT
cp "$ROOT/bench/images-baseline/"* "$ctx/"
cp "$(command -v tini-static || echo /usr/bin/tini-static)" "$ctx/tini-static"
docker build -q --build-arg "IMAGE=$IMAGE" -t "$BASELINE" "$ctx" >/dev/null

ready_ours() { docker exec "$1" aiida-init wait --timeout 300 >/dev/null; }
ready_lite() { ready_ours "$1"; }
# The start-up time line of ours and of lite (outside the timing), when asked for.
timeline() {
    if [ "$1" != base ] && [ -n "$TIMELINES" ]; then
        mkdir -p "$TIMELINES"
        docker exec "$2" aiida-init status >"$TIMELINES/${1/ours/with-services}-$3.txt"
    fi
}
ready_base() { docker exec "$1" bash -c 'until [ -e /tmp/ready ]; do sleep 0.05; done'; }
check_green() {
    local out
    out=$(docker exec "$1" verdi status 2>&1) || true
    # The lite variant's ZeroMQ broker has no line of its own: the daemon's names its PID.
    if [[ $1 == bench-lite-* ]] && grep -q 'Daemon is running with PID [0-9]*, Broker PID' <<<"$out" \
        && ! grep -qE '✘|⏺' <<<"$out"; then
        return
    fi
    if ! grep -q '✔ broker:' <<<"$out" || ! grep -q 'Daemon is running' <<<"$out"; then
        echo "bench: $1 is not ready:" >&2; echo "$out" >&2; exit 1
    fi
}

# One round for one flavour: first open on a fresh home volume, stop, restart, stop.
# Prints: first restart stop1 stop2 exitcode open
round() {
    local flavour=$1 image=$2 n=$3 name="bench-$1-$RUN_ID" t t0 first restart stop1 stop2 open
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm -f "$name" >/dev/null 2>&1 || true
    t0=$(now); docker create --name "$name" -v "$name:/home/aiida" "$image" >/dev/null
    t=$(now); docker start "$name" >/dev/null; "ready_$flavour" "$name"; first=$(since "$t"); open=$(since "$t0")
    timeline "$flavour" "$name" "first-$n"
    check_green "$name"
    t=$(now); docker stop "$name" >/dev/null; stop1=$(since "$t")
    t=$(now); docker start "$name" >/dev/null; "ready_$flavour" "$name"; restart=$(since "$t")
    timeline "$flavour" "$name" "restart-$n"
    check_green "$name"
    t=$(now); docker stop "$name" >/dev/null; stop2=$(since "$t")
    echo "$first $restart $stop1 $stop2 $(docker inspect -f '{{.State.ExitCode}}' "$name") $open"
    docker rm -f "$name" >/dev/null; docker volume rm -f "$name" >/dev/null
}

results=$(mktemp)
for r in $(seq 1 "$ROUNDS"); do
    echo "ours $(round ours "$IMAGE" "$r")" | tee -a "$results"
    echo "base $(round base "$BASELINE" "$r")" | tee -a "$results"
    echo "lite $(round lite "$LITE" "$r")" | tee -a "$results"
done

# What a user downloads: each image pushed to a registry on localhost, the sum of the compressed
# layer sizes in its manifest (what `docker pull` fetches on a machine without any of them).
sizes=$(mktemp)
if [ "${AIIDA_DEVC_BENCH_SIZES:-1}" != 0 ]; then
    [ -x /usr/bin/docker-registry ] || { echo "bench: /usr/bin/docker-registry is missing (bash scripts/bootstrap.sh installs it)" >&2; exit 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$ctx/registry"
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$ctx/registry" "$port" >"$ctx/registry.yml"
    /usr/bin/docker-registry serve "$ctx/registry.yml" >"$ctx/registry.log" 2>&1 &
    registry_pid=$!
    until curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; do sleep 0.1; done
    # Published as a release publishes them (`aiida-devc images push`, release gate included),
    # and, for comparison, as the engine's own `docker push` compresses them.
    version=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$IMAGE")
    platforms=linux/amd64 archs=amd64
    if docker image inspect "$IMAGE-arm64" "$LITE-arm64" >/dev/null 2>&1; then
        platforms+=,linux/arm64 archs+=" arm64"
    fi
    pushed=()
    for pair in "aiida-core-with-services $IMAGE" "aiida-core-base $LITE"; do
        read -r repo image <<<"$pair"
        for arch in $archs; do
            suffix=; [ "$arch" = amd64 ] || suffix=-$arch
            docker tag "$image$suffix" "localhost:$port/bench/$repo:aiida-$version$suffix"
            docker tag "$image$suffix" "localhost:$port/bench/$repo:engine-$arch"
            docker push -q "localhost:$port/bench/$repo:engine-$arch" >/dev/null
            pushed+=("localhost:$port/bench/$repo:aiida-$version$suffix" "localhost:$port/bench/$repo:engine-$arch")
        done
    done
    (cd "$ROOT" && cargo run -q --release --locked -- images push --registry "localhost:$port" \
        --organization bench --aiida-version "$version" --platform "$platforms") >"$ctx/push.log" 2>&1 \
        || { echo "bench: images push failed:" >&2; cat "$ctx/push.log" >&2; exit 1; }
    docker rmi "${pushed[@]}" >/dev/null
    for repo in aiida-core-with-services aiida-core-base; do
        for arch in $archs; do
            for how in published engine; do
                tag=aiida-$version-$arch; [ $how = published ] || tag=engine-$arch
                python3 - "http://127.0.0.1:$port/v2/bench/$repo" "$repo" "$arch" "$tag" "$how" <<'PY' | tee -a "$sizes"
# The manifest's compressed layers: their sum, count and largest, and what a new aiida-core
# release downloads again: every layer from the one that installs /opt/aiida (found through the
# image configuration's history, whose non-empty entries are the layers in order) on.
import json, re, sys, urllib.request
base, repo, arch, tag, how = sys.argv[1:]
def get(path, accept):
    request = urllib.request.Request(f'{base}/{path}', headers={'Accept': accept})
    return json.load(urllib.request.urlopen(request))
manifest = get(f'manifests/{tag}', 'application/vnd.docker.distribution.manifest.v2+json, '
               'application/vnd.oci.image.manifest.v1+json')
config = get(f"blobs/{manifest['config']['digest']}", '*/*')
made = [h.get('created_by', '') for h in config['history'] if not h.get('empty_layer')]
sizes = [layer['size'] for layer in manifest['layers']]
assert len(made) == len(sizes), (len(made), len(sizes))
# aiida-core-base copies /opt/aiida from its build stage; aiida-core-with-services copies /opt/
# (the same environment) from aiida-core-base.
venv = next(i for i, step in enumerate(made) if 'COPY' in step and re.search(r' in /opt/(aiida)? *$', step))
print(repo, arch, how, sum(sizes), len(sizes), max(sizes), sum(sizes[venv:]))
PY
            done
        done
    done
fi
size() { docker image inspect -f '{{.Size}}' "$1"; }
python3 - "$results" "$sizes" "$(size "$IMAGE")" "$(size "$BASELINE")" "$(size "$LITE")" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
def mean(flavour, i):
    return statistics.mean(float(r[i + 1]) for r in rows if r[0] == flavour)
# (name, column, target ratio of ours to the sequential baseline)
measures = [('first open (create + start)', 5, 0.2), ('first start to ready', 0, 0.12),
            ('restart to ready', 1, 0.10), ('docker stop (after first)', 2, 0.12),
            ('docker stop (after restart)', 3, 0.12)]
def by_round(flavour, other, i):
    """Each round's ratio (rounds are the rows of one flavour in order)."""
    pairs = zip([r for r in rows if r[0] == flavour], [r for r in rows if r[0] == other])
    return ', '.join(f'{float(a[i + 1]) / float(b[i + 1]):.3f}' for a, b in pairs)
LITE_TARGET = 0.5  # lite's ratio to with-services
def verdict(ratio, target):
    return 'met' if ratio <= target else 'NOT met'
# Ratios to three decimals: rounded to two, 0.104 would print as the target 0.10.
print(f"\n{'':30} {'aiida-init':>11} {'sequential':>11} {'ratio':>7}  target        by round")
for name, i, target in measures:
    ours, base = mean('ours', i), mean('base', i)
    print(f'{name:30} {ours:10.2f}s {base:10.2f}s {ours / base:6.3f}x  <= {target}x {verdict(ours / base, target):7}  '
          f'{by_round("ours", "base", i)}')
print(f"\n{'lite (SQLite, ZeroMQ)':30} {'lite':>11} {'w-services':>11} {'ratio':>7}  target        by round")
for name, i, target in measures[:3]:
    lite, ours = mean('lite', i), mean('ours', i)
    print(f'{name:30} {lite:10.2f}s {ours:10.2f}s {lite / ours:6.3f}x  <= {LITE_TARGET}x {verdict(lite / ours, LITE_TARGET):7}  '
          f'{by_round("lite", "ours", i)}')
codes = lambda flavour: sorted({r[5] for r in rows if r[0] == flavour})
print(f"exit codes after docker stop: aiida-init {codes('ours')}, lite {codes('lite')}, "
      f"sequential {codes('base')} (137 = SIGKILLed)")
mb = lambda b: int(b) / 1e6
print(f"image sizes (unpacked): aiida-core-with-services {mb(sys.argv[3]):.0f} MB, baseline {mb(sys.argv[4]):.0f} MB, "
      f"aiida-core-base {mb(sys.argv[5]):.0f} MB")
sizes = [l.split() for l in open(sys.argv[2])]
engine = {(repo, arch): int(total) for repo, arch, how, total, *_ in sizes if how == 'engine'}
for repo, arch, how, total, layers, largest, update in sizes:
    if how == 'published':
        print(f"download (compressed layers, as published) {repo} {arch}: {mb(total):.1f} MB in {layers} layers, "
              f"largest {mb(largest):.1f} MB; a new aiida-core release downloads {mb(update):.1f} MB of it; "
              f"docker push would upload {mb(engine[repo, arch]):.1f} MB ({int(total) / engine[repo, arch]:.3f}x)")
print(f"rounds: {len(rows) // 3}")
PY
rm -f "$results" "$sizes"
