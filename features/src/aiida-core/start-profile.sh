#!/bin/sh
# postStartCommand of the aiida-core Feature, run as the remote user on every start: create the
# default profile once (verdi presto), then start the daemon. With the aiida-services Feature the
# profile uses its PostgreSQL and RabbitMQ (after waiting until they are ready); without it,
# SQLite and the ZeroMQ broker, which need no service.
set -eu
SHARE=/usr/local/share/aiida-core
VERDI="$SHARE/venv/bin/verdi"

[ "$(cat "$SHARE/create-profile" 2>/dev/null || echo true)" = true ] || exit 0

SERVICES_WAIT=/usr/local/share/aiida-services/wait
if [ -x "$SERVICES_WAIT" ]; then
    "$SERVICES_WAIT"
fi

if ! "$VERDI" profile list 2>/dev/null | grep -q '\*'; then
    if [ -x "$SERVICES_WAIT" ]; then
        echo "aiida-core: creating the default profile on PostgreSQL and RabbitMQ"
        "$VERDI" presto --use-postgres
        # aiida-core warns about every RabbitMQ release since 3.8.15 because of its consumer
        # timeout, which the aiida-services Feature's RabbitMQ has turned off (as the images').
        "$VERDI" config set warnings.rabbitmq_version false >/dev/null
    else
        echo "aiida-core: creating the default profile on SQLite with the ZeroMQ broker"
        "$VERDI" presto --use-zeromq
    fi
fi

if ! "$VERDI" daemon status >/dev/null 2>&1; then
    # With the aiida-services Feature, the daemon is a service of its aiida-init (supervised,
    # stopped before the services); `verdi daemon start` would hand it there as well.
    if aiida-init status --json 2>/dev/null | grep -q '"aiida-daemon"'; then
        aiida-init start aiida-daemon --timeout "${AIIDA_DAEMON_START_TIMEOUT:-300}"
    else
        "$VERDI" daemon start
    fi
fi
