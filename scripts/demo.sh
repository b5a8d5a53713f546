#!/usr/bin/env bash
# The main job: open the sample AiiDA plugin (tests/fixtures/aiida-sample-plugin) in its dev
# container, the way "Reopen in Container" does, and show that AiiDA is ready in it.
#
#   bash scripts/demo.sh
#
# 1. bootstrap the machine (Docker engine, base image, reference devcontainer CLI);
# 2. build the aiida-devc CLI;
# 3. build the images (aiida-core-base, aiida-core-with-services) with `aiida-devc images build`;
# 4. `aiida-devc doctor` on the sample plugin, then `aiida-devc up`: the reference CLI creates the
#    container, installs the plugin in editable mode, and aiida-devc prints the start-up timeline
#    (which service took how long) and `verdi status`.
#
# Behind a TLS-intercepting proxy set AIIDA_DEVC_CA_CERT (or rely on the default: the host's CA
# bundle when it holds extra CAs); it is passed to the container for this run only.
# The container keeps running: `devcontainer exec --workspace-folder tests/fixtures/aiida-sample-plugin bash`
# opens a shell in it; `docker rm -f` on the id printed by `up` removes it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "bootstrap"
bash scripts/bootstrap.sh

step "build the aiida-devc CLI"
cargo build --locked --bin aiida-devc
AIIDA_DEVC="$ROOT/target/debug/aiida-devc"
export DEVCONTAINER_CLI=${DEVCONTAINER_CLI:-$ROOT/.tools/devcontainer-cli/node_modules/.bin/devcontainer}

step "build the images"
"$AIIDA_DEVC" images build

PLUGIN=tests/fixtures/aiida-sample-plugin
if [ "$(id -u)" = 0 ]; then
    # Run as root, the checkout belongs to UID 0: the container's user aiida (UID 1000) could not
    # write to it, and the devcontainer CLI does not remap root (`aiida-devc doctor` says so).
    # Work on a copy owned by UID 1000, as a developer's own checkout would be. A rerun reuses the
    # copy and its container; remove .cache/aiida-sample-plugin (and that container) to start over.
    COPY="$ROOT/.cache/aiida-sample-plugin"
    if [ ! -d "$COPY" ]; then
        mkdir -p "$ROOT/.cache"
        cp -a "$PLUGIN" "$COPY"
        chown -R 1000:100 "$COPY"
    fi
    PLUGIN=$COPY
fi
step "aiida-devc doctor $PLUGIN"
"$AIIDA_DEVC" doctor "$PLUGIN" || echo "(doctor found the problems above; carrying on)"

step "aiida-devc up $PLUGIN"
time "$AIIDA_DEVC" up "$PLUGIN"
