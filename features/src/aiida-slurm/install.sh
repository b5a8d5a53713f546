#!/bin/sh
# Install Slurm (slurmctld, slurmd), munge and an OpenSSH server, and add their services to the
# service tree that aiida-init runs (devcontainer Feature). Runs as root during the image build.
#
# The services join an existing aiida-init tree rather than run a second supervisor: the one of
# the aiida-core-with-services image (/etc/s6-overlay, run by its /init) or the one of the
# aiida-services Feature (/usr/local/share/aiida-services/root). So one `aiida-init wait` and
# one `aiida-init status` cover PostgreSQL, RabbitMQ, the daemon and Slurm, and one ordered
# shutdown stops them all. They run as that tree's user (the image's `aiida`, or the Feature's
# remote user), which is also SlurmUser, SlurmdUser and the only user sshd lets in.
#
# Nothing secret is made here: the munge key, sshd's host key and the user's key are made at
# the container's first start (see prepare).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SHARE=/usr/local/share/aiida-slurm
DATA=/var/lib/aiida-slurm
SSHPORT=${SSHPORT:-2222}
WAITTIMEOUT=${WAITTIMEOUT:-120}
ACCOUNTING=${ACCOUNTING:-false}
# Unset: the default, true. Empty: false, as the reference CLI (and VS Code through it) writes a
# Template's boolean option that is false into "enabled": "${templateOption:...}".
ENABLED=${ENABLED-true}

die() { echo "(!) aiida-slurm: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "install.sh must run as root (the devcontainer CLI runs Features as root)."
# The reference CLI passes every option given in devcontainer.json, known or not, in this file
# next to install.sh (upper-cased): a misspelt one is an error, not silently the default.
if [ -f "$HERE/devcontainer-features.env" ]; then
    unknown=$(sed -n 's/^\([A-Za-z0-9_]*\)=.*/\1/p' "$HERE/devcontainer-features.env" \
        | grep -Evx 'ENABLED|SSHPORT|ACCOUNTING|WAITTIMEOUT|_.*' | head -n 1 || true)
    [ -z "$unknown" ] \
        || die "unknown option '$unknown' in devcontainer.json (this Feature's options are enabled, sshPort, accounting and waitTimeout)."
fi
case "$SSHPORT" in
    '' | *[!0-9]*) die "sshPort must be a TCP port number (1024-65535), not '$SSHPORT'." ;;
esac
{ [ "$SSHPORT" -ge 1024 ] && [ "$SSHPORT" -le 65535 ]; } \
    || die "sshPort must be between 1024 and 65535 (sshd runs unprivileged), not $SSHPORT."
case "$SSHPORT" in
    6817 | 6818 | 6819) die "sshPort $SSHPORT is taken by Slurm (6817-6819); choose another one." ;;
esac
case "$WAITTIMEOUT" in
    '' | *[!0-9]*) die "waitTimeout must be a number of seconds, not '$WAITTIMEOUT'." ;;
esac
case "$ACCOUNTING" in
    true | false) ;;
    *) die "accounting must be true or false, not '$ACCOUNTING'." ;;
esac
case "$ENABLED" in
    true | false) ;;
    '') ENABLED=false ;;
    *) die "enabled must be true or false, not '$ENABLED'." ;;
esac

# enabled: false (a Template's option turned off): nothing installed, no service, no computer;
# only the postStartCommand that the Feature's metadata names, which then does nothing, quietly.
if [ "$ENABLED" = false ]; then
    mkdir -p "$SHARE"
    cat > "$SHARE/wait" <<'NOOP'
#!/bin/sh
# The aiida-slurm Feature's postStartCommand, installed with `enabled: false`: Slurm is not
# installed here, so there is nothing to wait for.
exit 0
NOOP
    chmod 0755 "$SHARE/wait"
    echo "aiida-slurm: enabled is false: Slurm, munge and sshd are not installed"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "only Debian and Ubuntu images are supported (no apt-get here)."

# The tree to join, and its user.
if [ -f /usr/local/share/aiida-services/root/etc/aiida/services.conf ]; then
    ROOT=/usr/local/share/aiida-services/root
    SLURM_USER=$(sed -n 's/^SERVICE_USER=//p' "$ROOT/etc/aiida/services.conf")
elif [ -d /etc/s6-overlay/s6-rc.d ] && [ -x /usr/local/bin/aiida-init ] && [ -n "${SYSTEM_USER:-}" ]; then
    ROOT=/
    SLURM_USER=$SYSTEM_USER
else
    die "no aiida-init service tree to join: use the aiida-core-with-services image, or add the aiida-services Feature, listed before aiida-slurm in \"features\"."
fi
id "$SLURM_USER" >/dev/null 2>&1 || die "the services' user '$SLURM_USER' does not exist in this image."
[ "$(id -u "$SLURM_USER")" != 0 ] || die "the services run as root here: use a non-root remote user (\"remoteUser\"), since sshd and Slurm run unprivileged as that user."
[ "$SLURM_USER" != postgres ] || die "the services run as 'postgres' (the remote user is root): use a non-root remote user (\"remoteUser\"), so that AiiDA and Slurm jobs run as that user."
SLURM_GROUP=$(id -gn "$SLURM_USER")
TREE=$ROOT/etc/s6-overlay

export DEBIAN_FRONTEND=noninteractive
echo "aiida-slurm: installing Slurm, munge and OpenSSH"
packages="slurm-wlm munge openssh-server openssh-client"
[ "$ACCOUNTING" = true ] && packages="$packages slurmdbd mariadb-server"
apt-get update -qq
# shellcheck disable=SC2086 # a list of package names
apt-get install -y -qq --no-install-recommends $packages >/dev/null
rm -rf /var/lib/apt/lists/*
# The packages' own keys and host keys must not stay in the image: they are made per container.
rm -f /etc/munge/munge.key /etc/ssh/ssh_host_*
# MariaDB's own database is not used (one is made per container, as the services' user).
if [ "$ACCOUNTING" = true ]; then rm -rf /var/lib/mysql/*; fi

mkdir -p "$SHARE"
cp "$HERE"/scripts/* "$SHARE/"
chmod 0755 "$SHARE"/prepare "$SHARE"/check "$SHARE"/*-run "$SHARE"/wait "$SHARE"/computer
chmod 0644 "$SHARE/slurm-env"
cat > "$SHARE/settings.conf" <<CONF
# The aiida-slurm Feature's options (read by slurm-env). Written by install.sh.
SLURM_USER=$SLURM_USER
SSH_PORT=$SSHPORT
WAIT_TIMEOUT=$WAITTIMEOUT
ACCOUNTING=$ACCOUNTING
CONF
chmod -R a+rX "$SHARE"

# The services, in the tree and in its `user` bundle.
for service in "$HERE"/s6-rc.d/*; do
    name=${service##*/}
    rm -rf "${TREE:?}/s6-rc.d/$name"
    cp -R "$service" "$TREE/s6-rc.d/$name"
    mkdir -p "$TREE/user-bundles.d/user/contents.d"
    touch "$TREE/user-bundles.d/user/contents.d/$name"
done
if [ "$ACCOUNTING" = true ]; then
    for service in "$HERE"/accounting/*; do
        name=${service##*/}
        rm -rf "${TREE:?}/s6-rc.d/$name"
        cp -R "$service" "$TREE/s6-rc.d/$name"
        touch "$TREE/user-bundles.d/user/contents.d/$name"
    done
    # Jobs are recorded from the start: slurmctld waits for slurmdbd.
    touch "$TREE/s6-rc.d/slurmctld/dependencies.d/slurmdbd"
fi
chmod -R a+rX "$TREE/s6-rc.d"
AIIDA_INIT_ROOT=$ROOT /usr/local/bin/aiida-init check >/dev/null \
    || die "aiida-init rejects the service tree in $ROOT (run 'AIIDA_INIT_ROOT=$ROOT aiida-init check')."

# The clients (sbatch, squeue, also over ssh, where no environment is set) read /etc/slurm.
mkdir -p /etc/slurm "$DATA/slurm"
ln -sfn "$DATA/slurm/slurm.conf" /etc/slurm/slurm.conf
ln -sfn "$DATA/slurm/slurmdbd.conf" /etc/slurm/slurmdbd.conf
chown -R "$SLURM_USER:$SLURM_GROUP" "$DATA"
chmod 0755 "$DATA"
echo "aiida-slurm: Slurm $(dpkg-query -W -f '${Version}' slurmctld) installed; services run as $SLURM_USER, sshd on 127.0.0.1:$SSHPORT"
