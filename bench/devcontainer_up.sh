#!/usr/bin/env bash
# The user's path, timed: "Reopen in Container" on the sample plugin, done by the reference
# devcontainer CLI exactly as VS Code does it, until the terminal would open (postStartCommand
# `aiida-init wait` done).
#
#   bash bench/devcontainer_up.sh [ROUNDS]        # default 2 rounds; run as root from anywhere
#
# Each round, on a fresh copy of tests/fixtures/aiida-sample-plugin owned by UID 1000:
#   1. `aiida-devc init` writes the config (with AIIDA_DEVC_CA_CERT exported when the host's CA
#      bundle is needed, as behind a TLS-intercepting proxy);
#   2. first creation: `devcontainer up` (create the container, postCreate: the editable plugin
#      install and the daemon restart, postStart: wait until ready);
#   3. `docker stop`, then reopen: `devcontainer up` again (start the existing container,
#      postStart wait).
# It prints the wall time of each and aiida-init's start-up time line inside the container.
# Prerequisites: `bash scripts/bootstrap.sh` and `aiida-devc images build` (the image the
# sample's config names must exist). Nothing is asserted: it prints numbers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-2}
CLI=${DEVCONTAINER_CLI:-$ROOT/.tools/devcontainer-cli/node_modules/.bin/devcontainer}
[ -x "$CLI" ] || { echo "bench: the reference devcontainer CLI is missing: run bash scripts/bootstrap.sh" >&2; exit 1; }
cargo build --quiet --locked --manifest-path "$ROOT/Cargo.toml" --bin aiida-devc
AIIDA_DEVC="$ROOT/target/debug/aiida-devc"

# Behind a TLS-intercepting proxy the container's pip needs the host's CA bundle (aiida-devc's
# default rule); the config written by init mounts it from ${localEnv:AIIDA_DEVC_CA_CERT}.
if [ -z "${AIIDA_DEVC_CA_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export AIIDA_DEVC_CA_CERT=/etc/ssl/certs/ca-certificates.crt
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

WORK=$(mktemp -d /tmp/aiida-devc-bench-up.XXXXXX)
CONTAINER=""
# Remove the round's container and its home volume.
remove_container() {
    [ -n "$CONTAINER" ] || return 0
    local volumes
    volumes=$(docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$CONTAINER" 2>/dev/null || true)
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    for v in $volumes; do docker volume rm "$v" >/dev/null 2>&1 || true; done
    CONTAINER=""
}
trap 'remove_container; rm -rf "$WORK"' EXIT

printf '%-6s %-22s %-10s\n' round step seconds
for round in $(seq 1 "$ROUNDS"); do
    W="$WORK/aiida-sample-plugin-$round"
    cp -a "$ROOT/tests/fixtures/aiida-sample-plugin" "$W"
    chown -R 1000:100 "$W"
    (cd "$W" && git init -q && "$AIIDA_DEVC" init >/dev/null)

    t0=$(now)
    out=$("$CLI" up --workspace-folder "$W" 2>"$WORK/up-$round.log") \
        || { tail -30 "$WORK/up-$round.log" >&2; echo "bench: devcontainer up failed (log above)" >&2; exit 1; }
    t1=$(now)
    CONTAINER=$(printf '%s' "$out" | tail -1 | sed -n 's/.*"containerId":"\([0-9a-f]*\)".*/\1/p')
    printf '%-6s %-22s %-10s\n' "$round" "first creation" "$(elapsed "$t0" "$t1")"
    docker exec -u aiida "$CONTAINER" aiida-init status | sed 's/^/    /'

    docker stop -t 30 "$CONTAINER" >/dev/null
    t0=$(now)
    "$CLI" up --workspace-folder "$W" >/dev/null 2>"$WORK/reopen-$round.log" \
        || { tail -30 "$WORK/reopen-$round.log" >&2; echo "bench: reopen failed (log above)" >&2; exit 1; }
    t1=$(now)
    printf '%-6s %-22s %-10s\n' "$round" "reopen" "$(elapsed "$t0" "$t1")"
    docker exec -u aiida "$CONTAINER" aiida-init status | sed 's/^/    /'
    remove_container
done
