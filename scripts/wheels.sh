#!/usr/bin/env bash
# Build the aiida-devc wheels and sdist with maturin, and check an installed wheel the way a user
# meets it. The PyPI package is configured in crates/pypi/pyproject.toml; the version is
# Cargo.toml's.
#
#   bash scripts/wheels.sh tools                       maturin, ziglang and uv from PyPI into
#                                                       .tools/wheels (a venv)
#   bash scripts/wheels.sh build x86_64|aarch64 [OUT]  manylinux_2_17 wheel (maturin --zig); the
#                                                       audit fails the build if the binary needs
#                                                       more than manylinux_2_17 allows; prints
#                                                       the wheel's path
#   bash scripts/wheels.sh build native [OUT]          the wheel of this machine (macOS, Windows)
#   bash scripts/wheels.sh sdist [OUT]                  the sdist; prints its path
#   bash scripts/wheels.sh check WHEEL PLUGIN OUT       install WHEEL into a fresh venv, run
#                                                       `aiida-devc --version` and
#                                                       `aiida-devc init --dry-run` on a copy of
#                                                       PLUGIN without .devcontainer; their
#                                                       stdout goes to OUT/version.txt and
#                                                       OUT/init-dry-run.txt
#   bash scripts/wheels.sh check-dist DIR PLUGIN       `check` every wheel in DIR
#   bash scripts/wheels.sh check-arm64 WHEEL PLUGIN OUT the same in a linux/arm64 container
#                                                       (qemu), from debian:bookworm-arm64 plus
#                                                       python3-venv (image aiida-devc-wheel-check)
#   bash scripts/wheels.sh uvx WHEEL PLUGIN             `uvx --from WHEEL aiida-devc init PLUGIN`
#                                                       (writes PLUGIN/.devcontainer)
#
# init runs with `--ca-cert none --registry localhost:9` and no Docker engine: every run picks
# the image from the built-in release list, whatever the machine, so outputs can be compared.
#
# Tools: maturin, ziglang and uv from PyPI, in .tools/wheels (`tools`; scripts/bootstrap.sh runs
# it), else on PATH. AIIDA_DEVC_WHEEL_PROFILE picks the cargo profile (default wheel-check,
# a fast build; release for published wheels). The aarch64 wheel is built with Debian's rustc,
# which ships the aarch64 standard library (scripts/bootstrap.sh --arm64), in a target
# directory of its own.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.tools/wheels"
TOOLS="$VENV/bin"
[ -d "$VENV/Scripts" ] && TOOLS="$VENV/Scripts" # a venv on Windows
[ -d "$TOOLS" ] && PATH="$TOOLS:$PATH"
# Versions of the build tools (PyPI).
MATURIN_VERSION=${MATURIN_VERSION:-1.16.0}
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
UV_VERSION=${UV_VERSION:-0.13.9}
# python3, else python (Windows, where python3 may be the Store's placeholder).
PYTHON=python3
"$PYTHON" -c 'import sys' >/dev/null 2>&1 || PYTHON=python
PROFILE=${AIIDA_DEVC_WHEEL_PROFILE:-wheel-check}
ARM64_BASE=${AIIDA_DEVC_ARM64_BASE:-debian:bookworm-arm64}
CHECK_IMAGE=aiida-devc-wheel-check:arm64
# What init is run with wherever the outputs are compared (see above).
INIT_ARGS=(--ca-cert none init --registry localhost:9)

die() { printf 'wheels: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing: bash scripts/bootstrap.sh installs it into .tools/wheels"; }

tools() {
    local want="maturin $MATURIN_VERSION, ziglang $ZIGLANG_VERSION, uv $UV_VERSION"
    if [ -f "$VENV/versions" ] && [ "$(cat "$VENV/versions")" = "$want" ]; then
        echo "wheels: $want present ($VENV)"
        return 0
    fi
    # The venv is made from the python outside it: a run stopped half-way may have left one whose
    # python is first on PATH.
    local base
    base=$(PATH=${PATH//"$TOOLS:"/} command -v "$PYTHON") || die "$PYTHON is missing"
    rm -rf "$VENV"
    "$base" -m venv "$VENV" || die "$base -m venv $VENV failed (Debian: apt-get install python3-venv)"
    local bin="$VENV/bin"
    [ -d "$VENV/Scripts" ] && bin="$VENV/Scripts"
    # pip in a venv has its own CA list: give it the host's, which trusts an intercepting proxy.
    local cert=/etc/ssl/certs/ca-certificates.crt
    [ -f "$cert" ] && export PIP_CERT="${PIP_CERT:-$cert}"
    "$bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
        "maturin==$MATURIN_VERSION" "ziglang==$ZIGLANG_VERSION" "uv==$UV_VERSION" \
        || die "pip install maturin ziglang uv failed"
    echo "$want" >"$VENV/versions"
    echo "wheels: $want installed ($VENV)"
}

build() {
    local arch=${1:?x86_64, aarch64 or native} out=${2:-$ROOT/target/wheels} log libdir
    local args=(build --zig --compatibility manylinux_2_17 --auditwheel check
        --target "$arch-unknown-linux-gnu" --profile "$PROFILE" --out "$out")
    need maturin
    case "$arch" in
        native) args=(build --profile "$PROFILE" --out "$out") ;;
        x86_64) ;;
        aarch64)
            # Cross from x86_64: rustup cannot download the aarch64 std on these machines;
            # Debian's rustc ships it. On an aarch64 machine the toolchain on PATH has it.
            libdir=$(rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null || true)
            if [ "$(uname -m)" != aarch64 ] && [ ! -d "$libdir" ]; then
                [ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] \
                    || die "no Rust standard library for aarch64: bash scripts/bootstrap.sh --arm64 installs Debian's"
                export RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$ROOT/target/debian-rustc"
            fi ;;
        *) die "unknown architecture '$arch' (x86_64, aarch64 or native)" ;;
    esac
    if [ "$arch" != native ]; then
        "$PYTHON" -m ziglang version >/dev/null 2>&1 \
            || die "zig (the ziglang package) is missing: bash scripts/wheels.sh tools"
    fi
    mkdir -p "$out" && out=$(cd "$out" && pwd) # maturin runs in crates/pypi
    log=$(mktemp)
    # maturin's output, kept for a failure; the wheel's path is in its last line.
    (cd "$ROOT/crates/pypi" && maturin "${args[@]}") >"$log" 2>&1 \
        || { cat "$log" >&2; rm -f "$log"; die "maturin build for $arch failed"; }
    sed -n 's/^📦 Built wheel[^/]*to //p' "$log" | tail -n 1
    rm -f "$log"
}

sdist() {
    local out=${1:-$ROOT/target/wheels} log
    need maturin
    mkdir -p "$out" && out=$(cd "$out" && pwd) # maturin runs in crates/pypi
    log=$(mktemp)
    (cd "$ROOT/crates/pypi" && maturin sdist --out "$out") >"$log" 2>&1 \
        || { cat "$log" >&2; rm -f "$log"; die "maturin sdist failed"; }
    sed -n 's/^📦 Built source distribution to //p' "$log" | tail -n 1
    rm -f "$log"
}

check() {
    local wheel=${1:?WHEEL} plugin=${2:?PLUGIN} out=${3:?OUT} venv bin
    [ -f "$wheel" ] || die "no wheel at $wheel"
    mkdir -p "$out"
    venv=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$venv'" RETURN
    cp -R "$plugin" "$venv/plugin" && rm -rf "$venv/plugin/.devcontainer"
    "$PYTHON" -m venv "$venv/venv" || die "$PYTHON -m venv failed (Debian: apt-get install python3-venv)"
    bin="$venv/venv/bin"
    [ -d "$venv/venv/Scripts" ] && bin="$venv/venv/Scripts" # Windows
    # The wheel alone: it has no dependencies, so no index is asked.
    "$bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$wheel" \
        || die "pip install $wheel failed"
    "$bin/aiida-devc" --version >"$out/version.txt" || die "aiida-devc --version failed"
    cat "$out/version.txt"
    # In the plugin, on `.`: the output names no path of this machine.
    (cd "$venv/plugin" && DOCKER_HOST=unix:///nonexistent "$bin/aiida-devc" "${INIT_ARGS[@]}" --dry-run .) \
        >"$out/init-dry-run.txt" || die "aiida-devc init --dry-run $plugin failed"
    grep -q '^would change .*devcontainer.json' "$out/init-dry-run.txt" \
        || die "init --dry-run did not say what it would change: $(cat "$out/init-dry-run.txt")"
    echo "wheels: $(basename "$wheel") installs into a fresh venv; --version and init --dry-run work ($(uname -sm))"
}

check_arm64() {
    local wheel=${1:?WHEEL} plugin=${2:?PLUGIN} out=${3:?OUT} context
    [ -f "$wheel" ] || die "no wheel at $wheel"
    docker image inspect "$ARM64_BASE" >/dev/null 2>&1 \
        || die "no $ARM64_BASE image: bash scripts/bootstrap.sh --arm64 makes it"
    if ! docker image inspect "$CHECK_IMAGE" >/dev/null 2>&1; then
        # Debian's python3-venv over the plain-http mirror, once (several minutes under qemu);
        # the classic builder's cache keeps it.
        context=$(mktemp -d)
        printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null && rm -rf /var/lib/apt/lists/*\n' \
            "$ARM64_BASE" >"$context/Dockerfile"
        DOCKER_BUILDKIT=0 docker build -q -t "$CHECK_IMAGE" "$context" >/dev/null \
            || { rm -rf "$context"; die "cannot build $CHECK_IMAGE"; }
        rm -rf "$context"
    fi
    mkdir -p "$out"
    docker run --rm --platform linux/arm64 \
        -v "$ROOT/scripts:/scripts:ro" \
        -v "$(cd "$(dirname "$wheel")" && pwd):/wheels:ro" \
        -v "$(cd "$plugin" && pwd):/plugin:ro" \
        -v "$(cd "$out" && pwd):/out" \
        "$CHECK_IMAGE" bash /scripts/wheels.sh check "/wheels/$(basename "$wheel")" /plugin /out
}

# Every wheel in DIR (a CI job's output), checked as `check` does.
check_dist() {
    local dir=${1:?DIR} plugin=${2:?PLUGIN} wheel out found=0
    for wheel in "$dir"/*.whl; do
        [ -f "$wheel" ] || continue
        out=$(mktemp -d)
        check "$wheel" "$plugin" "$out"
        cat "$out/init-dry-run.txt"
        rm -rf "$out"
        found=1
    done
    [ "$found" = 1 ] || die "no wheel in $dir"
}

uvx_init() {
    local wheel=${1:?WHEEL} plugin=${2:?PLUGIN} cache
    need uvx
    cache=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$cache'" RETURN
    # A cache of its own: the tool environment is made from the wheel now, offline.
    DOCKER_HOST=unix:///nonexistent UV_CACHE_DIR="$cache" \
        uvx --offline --from "$wheel" aiida-devc "${INIT_ARGS[@]}" "$plugin"
}

case "${1:-}" in
    tools) shift; tools "$@" ;;
    build) shift; build "$@" ;;
    sdist) shift; sdist "$@" ;;
    check) shift; check "$@" ;;
    check-dist) shift; check_dist "$@" ;;
    check-arm64) shift; check_arm64 "$@" ;;
    uvx) shift; uvx_init "$@" ;;
    -h|--help|"") sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
    *) die "unknown command '$1' (try --help)" ;;
esac
