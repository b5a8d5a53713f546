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
#
# With AIIDA_DEVC_BENCH_PYPI=NAME (for example aiida-pseudo) the workspace is that plugin's source
# distribution from PyPI instead (downloaded once), and each round brings it up twice: with the
# install command `init` writes (uv into the image's environment) and with that command made to
# take its pip branch, as it does where uv cannot write there. Each ends with the plugin importable
# (`import NAME` with dashes as underscores) in the container.
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

SOURCE=$ROOT/tests/fixtures/aiida-sample-plugin
PYPI=${AIIDA_DEVC_BENCH_PYPI:-}
INSTALLERS=uv
if [ -n "$PYPI" ]; then
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$WORK/sdist" "$PYPI" \
        ${AIIDA_DEVC_CA_CERT:+--cert "$AIIDA_DEVC_CA_CERT"}
    mkdir "$WORK/source"
    tar -xzf "$WORK"/sdist/*.tar.gz -C "$WORK/source" --strip-components=1
    SOURCE=$WORK/source
    INSTALLERS="uv pip"
    echo "plugin: $(basename "$WORK"/sdist/*.tar.gz) from PyPI"
fi

# Bring the workspace $1 up for the first time; sets TOOK (the wall time) and CONTAINER.
first_creation() {
    local t0 t1 out log=$WORK/up-$2.log
    t0=$(now)
    out=$("$CLI" up --workspace-folder "$1" 2>"$log") \
        || { tail -30 "$log" >&2; echo "bench: devcontainer up failed (log above)" >&2; exit 1; }
    t1=$(now)
    CONTAINER=$(printf '%s' "$out" | tail -1 | sed -n 's/.*"containerId":"\([0-9a-f]*\)".*/\1/p')
    TOOK=$(elapsed "$t0" "$t1")
}

printf '%-6s %-22s %-10s\n' round step seconds
for round in $(seq 1 "$ROUNDS"); do
  for installer in $INSTALLERS; do
    W="$WORK/workspace-$round-$installer"
    cp -a "$SOURCE" "$W"
    chown -R 1000:100 "$W"
    (cd "$W" && git init -q && "$AIIDA_DEVC" init >/dev/null)
    if [ "$installer" = pip ]; then
        # The install command's pip branch (taken where uv cannot write the image's environment).
        config=$W/.devcontainer/devcontainer.json
        sed -i 's/command -v uv >\/dev\/null/false/' "$config"
        if grep -q 'command -v uv' "$config" || ! grep -q 'false && \[ -w' "$config"; then
            echo "bench: could not make the install command in $config take its pip branch" >&2
            exit 1
        fi
    fi
    first_creation "$W" "$round-$installer"
    step="first creation"
    if [ -n "$PYPI" ]; then
        step="first creation ($installer)"
        docker exec -u aiida "$CONTAINER" python -c "import ${PYPI//-/_}" \
            || { echo "bench: $PYPI is not importable after the first creation ($installer)" >&2; exit 1; }
    fi
    printf '%-6s %-22s %-10s\n' "$round" "$step" "$TOOK"
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
done
