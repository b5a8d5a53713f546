#!/usr/bin/env bash
# The plugin's install in updateContentCommand, uv against pip, timed on the sample plugin
# (tests/fixtures/aiida-sample-plugin) and on aiida-pseudo from PyPI (its sdist):
#   1. the install alone, in a fresh container of the image (entry point bypassed, cold caches);
#   2. first creation with the reference CLI (`devcontainer up`: create, updateContentCommand,
#      postStart wait until ready), then `docker stop` and reopen (`devcontainer up` again).
# For pip, the config's uv branch is switched off (`command -v uv` replaced by `false`).
#
#   bash bench/install.sh        # run as root; IMAGE=... for another with-services image
#
# Prerequisites: `bash scripts/bootstrap.sh`, the image, pip on the host (for the sdist). Nothing
# is asserted: it prints numbers. Containers, volumes and folders it makes are removed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-aiidateam/aiida-core-with-services:latest}
CLI=${DEVCONTAINER_CLI:-$ROOT/.tools/devcontainer-cli/node_modules/.bin/devcontainer}
[ -x "$CLI" ] || { echo "bench: the reference devcontainer CLI is missing: run bash scripts/bootstrap.sh" >&2; exit 1; }
cargo build --quiet --locked --manifest-path "$ROOT/Cargo.toml" --bin aiida-devc
AIIDA_DEVC="$ROOT/target/debug/aiida-devc"
if [ -z "${AIIDA_DEVC_CA_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export AIIDA_DEVC_CA_CERT=/etc/ssl/certs/ca-certificates.crt
fi
ca_args=()
if [ -n "${AIIDA_DEVC_CA_CERT:-}" ]; then
    ca_args=(-v "$AIIDA_DEVC_CA_CERT:/etc/ca.pem:ro" -e PIP_CERT=/etc/ca.pem -e SSL_CERT_FILE=/etc/ca.pem)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$ROOT/tests/fixtures/aiida-sample-plugin" "$work/sample"
rm -rf "$work/sample/.devcontainer"
pip download --quiet --no-binary :all: --no-deps --dest "$work" aiida-pseudo
mkdir "$work/pseudo"
tar -xzf "$work"/aiida_pseudo-*.tar.gz -C "$work/pseudo" --strip-components 1
chown -R 1000:100 "$work/sample" "$work/pseudo"
seconds() { echo "$(date +%s.%N) - $1" | bc; }

echo "The install alone (a fresh container each):"
declare -A target=([sample]='.[tests]' [pseudo]='.')
for plugin in sample pseudo; do
    declare -A install=(
        [pip]="python -m pip install --quiet --disable-pip-version-check --editable '${target[$plugin]}'"
        [uv]="UV_LINK_MODE=copy uv pip install --quiet --editable '${target[$plugin]}'"
    )
    for tool in pip uv; do
        start=$(date +%s.%N)
        docker run --rm --entrypoint bash -v "$work/$plugin:/ws" -w /ws "${ca_args[@]}" "$IMAGE" -c "${install[$tool]}" >/dev/null
        echo "  $plugin $tool: $(seconds "$start") s"
    done
done

echo "Creation and reopen with the reference CLI:"
for plugin in sample pseudo; do
    for tool in pip uv; do
        ws=$work/$plugin-$tool
        cp -a "$work/$plugin" "$ws"
        (cd "$ws" && HTTPS_PROXY=http://localhost:1 "$AIIDA_DEVC" init . --image "$IMAGE" >/dev/null)
        if [ "$tool" = pip ]; then
            sed -i 's|command -v uv >/dev/null|false|' "$ws/.devcontainer/devcontainer.json"
        fi
        start=$(date +%s.%N)
        "$CLI" up --workspace-folder "$ws" >"$ws.create.log" 2>&1
        create=$(seconds "$start")
        container=$(docker ps -aq --filter "label=devcontainer.local_folder=$ws")
        docker stop -t 30 "$container" >/dev/null
        start=$(date +%s.%N)
        "$CLI" up --workspace-folder "$ws" >"$ws.reopen.log" 2>&1
        echo "  $plugin $tool: creation $create s, reopen $(seconds "$start") s"
        home=$(docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}}{{end}}{{end}}' "$container")
        docker rm -f "$container" >/dev/null
        docker volume rm "$home" >/dev/null
        docker images --format '{{.Repository}}' | grep "^vsc-$plugin-$tool-" | xargs -r docker rmi >/dev/null
    done
done
