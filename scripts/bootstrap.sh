#!/usr/bin/env bash
# Prepare this machine for aiida-devc's main job and tests. Idempotent: rerun it at will.
#
#   bash scripts/bootstrap.sh [--arm64]
#
# 1. A Docker engine that answers (installs Debian's docker.io and starts dockerd if needed).
# 2. The base image debian:bookworm (pulled when a registry answers, else bootstrapped from the
#    Debian mirror with debootstrap and imported).
# 3. Host packages the tests use: a real OCI registry (docker-registry), execline, tini,
#    dumb-init.
# 4. The reference devcontainer CLI, in .tools/devcontainer-cli (git ignores it).
# 5. With --arm64: qemu binfmt handlers, so linux/arm64 containers run under emulation.
#
# It prints one line per step and stops with a reason when a step cannot be done.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=${AIIDA_DEVC_BASE_IMAGE:-debian:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEVCONTAINER_CLI_VERSION=${DEVCONTAINER_CLI_VERSION:-0.89.0}
TOOLS="$ROOT/.tools"
WANT_ARM64=0
for arg in "$@"; do
    case "$arg" in
        --arm64) WANT_ARM64=1 ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
apt_install() {
    # Install the Debian packages among "$@" that are missing; needs root.
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "these Debian packages are missing and installing them needs root: ${missing[*]}"
    say "installing ${missing[*]}"
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# --- 1. Docker engine -------------------------------------------------------------------------
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if engine_answers; then
    say "Docker engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
else
    is_root || die "no Docker engine answers and starting one needs root; start dockerd or set DOCKER_HOST"
    if ! command -v dockerd >/dev/null; then
        apt_install docker.io
    fi
    # docker.io pulls in iptables; dockerd needs cgroups mounted, which these machines have.
    say "Docker engine: starting dockerd (log: /var/log/dockerd.log)"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        engine_answers && break
        sleep 1
    done
    engine_answers || die "dockerd did not answer within 60 s; see /var/log/dockerd.log"
    say "Docker engine: answering ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
fi

# --- 2. Base image ----------------------------------------------------------------------------
# $1 = image name, $2 = debootstrap architecture, $3 = docker platform.
ensure_base_image() {
    local image=$1 arch=$2 platform=$3
    if docker image inspect "$image" >/dev/null 2>&1; then
        say "base image $image: present"
        return 0
    fi
    if timeout 60 docker pull --platform "$platform" "$image" >/dev/null 2>&1; then
        say "base image $image: pulled"
        return 0
    fi
    say "base image $image: no registry answers; bootstrapping it from $DEBIAN_MIRROR (about 30 s, more under emulation)"
    apt_install debootstrap
    local suite=${image#*:}
    local rootfs
    rootfs=$(mktemp -d /tmp/aiida-devc-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" RETURN
    debootstrap --arch="$arch" --variant=minbase "$suite" "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; die "debootstrap of $suite ($arch) failed; full log: $rootfs.log"; }
    rm -f "$rootfs.log"
    # Like the official image: updates and security suites, no package caches or lists.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $suite main
deb $DEBIAN_MIRROR $suite-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $suite-security main
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import --platform "$platform" --change 'CMD ["bash"]' - "$image" >/dev/null \
        || die "docker import of $image failed"
    say "base image $image: imported"
}

case "$(uname -m)" in
    x86_64) ensure_base_image "$BASE_IMAGE" amd64 linux/amd64 ;;
    aarch64) ensure_base_image "$BASE_IMAGE" arm64 linux/arm64 ;;
    *) die "unsupported host architecture $(uname -m)" ;;
esac

# --- 3. Host packages for the tests -----------------------------------------------------------
apt_install docker-registry execline tini dumb-init python3 python3-pip git docker-compose
say "host packages: docker-registry, execline, tini, dumb-init, python3, pip, git, docker-compose present"

# --- 4. Reference devcontainer CLI ------------------------------------------------------------
CLI="$TOOLS/devcontainer-cli/node_modules/.bin/devcontainer"
if [ -x "$CLI" ] && [ "$("$CLI" --version 2>/dev/null)" = "$DEVCONTAINER_CLI_VERSION" ]; then
    say "devcontainer CLI $DEVCONTAINER_CLI_VERSION: present ($CLI)"
else
    command -v npm >/dev/null || apt_install npm
    say "devcontainer CLI: installing @devcontainers/cli@$DEVCONTAINER_CLI_VERSION into $TOOLS/devcontainer-cli"
    mkdir -p "$TOOLS/devcontainer-cli"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/devcontainer-cli" \
        "@devcontainers/cli@$DEVCONTAINER_CLI_VERSION" >/dev/null \
        || die "npm install @devcontainers/cli@$DEVCONTAINER_CLI_VERSION failed"
    say "devcontainer CLI $("$CLI" --version): installed ($CLI)"
fi

# --- 5. arm64 emulation -----------------------------------------------------------------------
if [ "$WANT_ARM64" = 1 ]; then
    if [ "$(uname -m)" = aarch64 ]; then
        say "arm64: native"
    else
        is_root || die "registering qemu binfmt handlers needs root"
        mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
        apt_install qemu-user-static binfmt-support
        [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
        [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 binfmt handler is not registered"
        say "arm64: qemu-aarch64 binfmt handler registered"
    fi
fi

say "ready"
