#!/bin/bash
# shellcheck disable=SC2016 # the checks are `bash -c '...'` scripts: they expand in that shell
# Scenario non_root_services: run as the non-root remote user "aiida".
set -e
source dev-container-features-test-lib

check "runs as the remote user" test "$(id -un)" = aiida
check "the services become ready" /usr/local/share/aiida-services/wait 120
check "PostgreSQL answers on localhost" bash -c "psql -h 127.0.0.1 -U postgres -Atc 'select 1' | grep -qx 1"
check "PostgreSQL runs as the remote user" bash -c 'test "$(stat -c %U /proc/$(head -n 1 /var/lib/aiida-services/postgresql/postmaster.pid))" = aiida'
check "RabbitMQ answers AMQP on localhost" /usr/local/share/aiida-services/root/etc/init/rabbitmq-check
check "RabbitMQ listens on localhost only" bash -c "! (exec 3<>/dev/tcp/\$(hostname -i | cut -d' ' -f1)/5672) 2>/dev/null"
check "aiida-init supervises them" bash -c "grep -qx aiida-init /proc/[0-9]*/comm"
check "aiida-init reports both services ready" bash -c "aiida-init status | grep -E 'postgresql|rabbitmq'"

reportResults
