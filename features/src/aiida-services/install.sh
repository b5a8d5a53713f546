#!/bin/sh
# Install PostgreSQL, RabbitMQ and aiida-init, and the service tree that aiida-init runs
# (devcontainer Feature). Runs as root during the image build.
#
# The service tree is the aiida-core-with-services image's own: services/ (a copy of the
# project's Dockerfiles/services, put here by `aiida-devc features package|publish`) is laid out
# as it lands below a root, which is / in the image and $SHARE/root here (aiida-init's
# AIIDA_INIT_ROOT, so that it never mixes with an image's own /etc/s6-overlay). What differs from
# the image is written into $SHARE/root/etc/aiida/services.conf below.
#
# The services run as the remote user (as `postgres` when the remote user is root, since
# PostgreSQL refuses to run as root), with their data in /var/lib/aiida-services, listening on
# 127.0.0.1 only. They are started by entrypoint.sh when the container starts.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SHARE=/usr/local/share/aiida-services
DATA=/var/lib/aiida-services
WAITTIMEOUT=${WAITTIMEOUT:-120}
REMOTE_USER=${_REMOTE_USER:-root}

die() { echo "(!) aiida-services: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "install.sh must run as root (the devcontainer CLI runs Features as root)."
command -v apt-get >/dev/null 2>&1 || die "only Debian and Ubuntu images are supported (no apt-get here)."
# The package carries a static aiida-init per machine (aiida-devc features package|publish).
MACHINE=$(uname -m)
case "$MACHINE" in
    x86_64|aarch64) ;;
    *) die "this Feature supports linux/amd64 (x86_64) and linux/arm64 (aarch64) only, not '$MACHINE'." ;;
esac
AIIDA_INIT="$HERE/aiida-init-$MACHINE"
[ -f "$AIIDA_INIT" ] || die "the package has no aiida-init for $MACHINE ($AIIDA_INIT); it is added by 'aiida-devc features package|publish'."
[ -d "$HERE/services/etc/s6-overlay" ] || die "the package has no service tree ($HERE/services); it is added by 'aiida-devc features package|publish'."
[ -f "$HERE/daemon/init/aiida-daemon" ] || die "the package has no daemon service ($HERE/daemon); it is added by 'aiida-devc features package|publish'."
case "$WAITTIMEOUT" in
    ''|*[!0-9]*) die "waitTimeout must be a number of seconds, not '$WAITTIMEOUT'." ;;
esac
id "$REMOTE_USER" >/dev/null 2>&1 || die "the remote user '$REMOTE_USER' does not exist in this image."

export DEBIAN_FRONTEND=noninteractive
echo "aiida-services: installing PostgreSQL, RabbitMQ and locales"
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql rabbitmq-server locales util-linux >/dev/null
rm -rf /var/lib/apt/lists/*

# aiida-core's verdi presto creates its database with the en_US.UTF-8 locale.
if ! locale -a 2>/dev/null | grep -qi '^en_US\.utf-\?8$'; then
    sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
    grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
    locale-gen >/dev/null
fi

# The packages' own cluster and node are not used: drop the cluster Debian created.
if command -v pg_dropcluster >/dev/null 2>&1; then
    for cluster in $(pg_lsclusters -h 2>/dev/null | awk '{print $1 "/" $2}'); do
        pg_dropcluster --stop "${cluster%/*}" "${cluster#*/}" || true
    done
fi

if [ "$REMOTE_USER" = root ]; then
    SERVICE_USER=postgres
else
    SERVICE_USER=$REMOTE_USER
fi
# shellcheck disable=SC2012 # version-sorted folder names of Debian's packages (no odd characters)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$PG_BIN/postgres" ] || die "PostgreSQL was installed but $PG_BIN/postgres is missing."
# Where the service scripts find PostgreSQL's programs, as in the image.
ln -sfn "$PG_BIN" /usr/local/lib/postgresql-bin

install -m 0755 "$AIIDA_INIT" /usr/local/bin/aiida-init
rm -rf "$SHARE/root" "$SHARE/command" "$SHARE/config"
mkdir -p "$SHARE/root"
cp -R "$HERE/services/etc" "$SHARE/root/etc"
# What the RabbitMQ node starts from: its applications, configuration and boot script.
"$SHARE/root/etc/aiida/rabbitmq/setup" >/dev/null
cat > "$SHARE/root/etc/aiida/services.conf" <<CONFIG
# The aiida-services Feature's settings for the service scripts shared with the
# aiida-core-with-services image (each is described in ../init/services-env). Written by install.sh.
SERVICE_USER=$SERVICE_USER
POSTGRES_SUPERUSER=postgres
PGDATA=$DATA/postgresql
HOME=$DATA/rabbitmq
RABBITMQ_MNESIA_BASE=$DATA/rabbitmq/mnesia
RABBITMQ_LOG_BASE=$DATA/rabbitmq/log
WAIT_TIMEOUT=$WAITTIMEOUT
SERVICES_LOG=/tmp/aiida-services.log
CONFIG
# The AiiDA daemon of the aiida-core Feature's profile, as a service that the remote user's
# `verdi daemon start|restart|stop` drive (see daemon-run). It stops before the services it uses.
# A root remote user gets aiida-core's own daemon: the services run as postgres, the profile is
# root's.
rm -rf "${SHARE:?}/bin"
if [ "$SERVICE_USER" = "$REMOTE_USER" ]; then
    DAEMON_SERVICE=$SHARE/root/etc/s6-overlay/s6-rc.d/aiida-daemon
    cp -R "$HERE/daemon/s6-rc.d/aiida-daemon" "$DAEMON_SERVICE"
    install -m 0755 "$HERE/daemon-run" "$DAEMON_SERVICE/run"
    mkdir -p "$DAEMON_SERVICE/dependencies.d"
    : > "$DAEMON_SERVICE/dependencies.d/postgresql"
    : > "$DAEMON_SERVICE/dependencies.d/rabbitmq"
    cp "$HERE/daemon/init/"* "$SHARE/root/etc/init/"
    # verdi first on PATH (the aiida-core Feature puts this folder in front of its own).
    mkdir -p "$SHARE/bin"
    ln -s "$SHARE/root/etc/init/verdi" "$SHARE/bin/verdi"
fi
chmod -R a+rX "$SHARE"
AIIDA_INIT_ROOT="$SHARE/root" /usr/local/bin/aiida-init check >/dev/null \
    || die "aiida-init rejects the service tree in $SHARE/root (run 'AIIDA_INIT_ROOT=$SHARE/root aiida-init check')."
install -m 0644 "$HERE/entrypoint.sh" "$SHARE/entrypoint.sh"
ln -sfn "$SHARE/root/etc/init/services-wait" "$SHARE/wait"

mkdir -p "$DATA"
chown "$SERVICE_USER:$(id -gn "$SERVICE_USER")" "$DATA"
chmod 0700 "$DATA"
[ -x /usr/local/bin/aiida-init ] || die "aiida-init was not installed."
echo "aiida-services: PostgreSQL ($PG_BIN), RabbitMQ and aiida-init installed; services run as $SERVICE_USER"
