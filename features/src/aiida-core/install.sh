#!/bin/sh
# Install aiida-core into a virtual environment owned by the remote user (devcontainer Feature).
# Runs as root during the image build. Options arrive as VERSION, EXTRAS, VENVPATH and PROFILE.
set -eu

VERSION=${VERSION:-latest}
EXTRAS=${EXTRAS:-}
VENVPATH=${VENVPATH:-/opt/aiida/venv}
PROFILE=${PROFILE:-true}
SHARE=/usr/local/share/aiida-core
REMOTE_USER=${_REMOTE_USER:-root}

die() { echo "(!) aiida-core: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "install.sh must run as root (the devcontainer CLI runs Features as root)."
command -v python3 >/dev/null 2>&1 || die "python3 is not installed in this image. Use an image with Python 3.9 or newer (for example mcr.microsoft.com/devcontainers/python), or add the python Feature before this one."
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "aiida-core needs Python 3.9 or newer; this image has $(python3 --version 2>&1)."
case "$VENVPATH" in
    /*) ;;
    *) die "venvPath must be an absolute path, not '$VENVPATH'." ;;
esac
id "$REMOTE_USER" >/dev/null 2>&1 || die "the remote user '$REMOTE_USER' does not exist in this image."
REMOTE_GROUP=$(id -gn "$REMOTE_USER")

# Debian and Ubuntu ship venv (ensurepip) separately from python3.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "python3 lacks the venv module and this is not a Debian or Ubuntu image."
    echo "aiida-core: installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    rm -rf /var/lib/apt/lists/*
fi

# pip in a virtual environment uses its own CA list; use the image's trust store instead, so that
# an image that trusts a corporate proxy's CA can install from PyPI.
if [ -z "${PIP_CERT:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
fi

case "$VERSION" in
    latest|"") SPEC="aiida-core" ;;
    *.*.*) SPEC="aiida-core==$VERSION" ;;
    *.*) SPEC="aiida-core~=$VERSION.0" ;;
    *) die "version must be 'latest', X.Y or X.Y.Z, not '$VERSION'." ;;
esac
[ -n "$EXTRAS" ] && SPEC=$(echo "$SPEC" | sed "s/^aiida-core/aiida-core[$EXTRAS]/")

if [ -x "$VENVPATH/bin/verdi" ] && [ -f "$SHARE/installed" ] && [ "$(cat "$SHARE/installed")" = "$SPEC" ]; then
    echo "aiida-core: $SPEC is already installed in $VENVPATH"
else
    echo "aiida-core: installing $SPEC into $VENVPATH for $REMOTE_USER"
    mkdir -p "$VENVPATH"
    python3 -m venv "$VENVPATH"
    "$VENVPATH/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet "$SPEC"
    if [ "${PIP_CERT:-}" = /etc/ssl/certs/ca-certificates.crt ]; then
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$VENVPATH/pip.conf"
    fi
    chown -R "$REMOTE_USER:$REMOTE_GROUP" "$VENVPATH"
fi

# verdi calls below must not leave a configuration folder in root's home.
AIIDA_PATH=$(mktemp -d)
export AIIDA_PATH
trap 'rm -rf "$AIIDA_PATH"' EXIT

# A fixed path for PATH (containerEnv cannot depend on an option).
mkdir -p "$SHARE"
ln -sfn "$VENVPATH" "$SHARE/venv"
echo "$SPEC" > "$SHARE/installed"

# verdi completion, generated once (running verdi at every shell start costs seconds).
_VERDI_COMPLETE=bash_source "$VENVPATH/bin/verdi" > "$SHARE/verdi-completion.bash"
if ! grep -q 'aiida-core/verdi-completion.bash' /etc/bash.bashrc 2>/dev/null; then
    printf '\n# verdi completion (aiida-core Feature)\n[ -f %s/verdi-completion.bash ] && . %s/verdi-completion.bash\n' "$SHARE" "$SHARE" >> /etc/bash.bashrc
fi

install -m 0755 "$(dirname "$0")/start-profile.sh" "$SHARE/start-profile.sh"
echo "$PROFILE" > "$SHARE/create-profile"
"$VENVPATH/bin/verdi" --version
