#!/bin/bash
# Wait until the aiida-services (PostgreSQL and RabbitMQ) are ready; the postStartCommand of the
# Feature and what other lifecycle commands call before they use the services.
set -eu
. /usr/local/share/aiida-services/config
timeout=${1:-$WAIT_TIMEOUT}
start=$(date +%s)
while :; do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p 5432 \
        && (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        echo "aiida-services: PostgreSQL and RabbitMQ are ready"
        exit 0
    fi
    if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
        echo "(!) aiida-services: PostgreSQL and RabbitMQ were not ready after ${timeout} s; last lines of /tmp/aiida-services.log:" >&2
        tail -n 30 /tmp/aiida-services.log >&2 || true
        /usr/local/bin/aiida-init status >&2 || true
        exit 1
    fi
    sleep 0.5
done
