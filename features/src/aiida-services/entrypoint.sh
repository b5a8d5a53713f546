# aiida-services: start PostgreSQL and RabbitMQ under aiida-init when the container starts.
#
# The devcontainer CLI starts the container with `/bin/sh -c '<script>'` as PID 1, where <script>
# holds each Feature's `entrypoint` as a line, then `exec "$@"` and a sleep loop. This Feature's
# entrypoint is `. /usr/local/share/aiida-services/entrypoint.sh`: the file is *sourced* by that
# PID 1 shell, so that it can replace the shell's `trap "exit 0" TERM` with one that first stops
# the services in order (aiida-init's shutdown) and then exits. So `docker stop` and closing the
# devcontainer stop PostgreSQL and RabbitMQ gracefully.
#
# It must return at once and never exit the shell that sources it: no `set -e`, no `exit`.
# Executed instead of sourced, it still starts the services (without the graceful stop).
#
# With "overrideCommand": false, `exec "$@"` replaces the shell by the image's own entrypoint:
# the services still start, but `docker stop` then signals that entrypoint, and the services are
# killed with the container unless it forwards the signal.

aiida_services_log=/tmp/aiida-services.log
aiida_services_pid=

aiida_services_start() {
    # aiida-init runs the tree below this root: /etc/s6-overlay/{s6-rc.d,user-bundles.d}.
    aiida_services_root=/usr/local/share/aiida-services/root
    # The service user from install.sh's settings, read without sourcing them into this shell.
    aiida_services_user=$(sed -n 's/^SERVICE_USER=//p' "$aiida_services_root/etc/aiida/services.conf" 2>/dev/null)
    if [ -z "$aiida_services_user" ]; then
        echo "aiida-services: no SERVICE_USER in $aiida_services_root/etc/aiida/services.conf; services not started" >&2
        return 1
    fi
    if [ "$(id -u)" = 0 ]; then
        # Drop to the service user without a setuid helper; setpriv execs, so $! is aiida-init.
        env AIIDA_INIT_ROOT="$aiida_services_root" \
            HOME="$(getent passwd "$aiida_services_user" | cut -d: -f6)" USER="$aiida_services_user" LOGNAME="$aiida_services_user" \
            setpriv --reuid="$aiida_services_user" --regid="$(id -g "$aiida_services_user")" --init-groups \
            /usr/local/bin/aiida-init -- >"$aiida_services_log" 2>&1 &
    elif [ "$(id -un)" = "$aiida_services_user" ]; then
        AIIDA_INIT_ROOT="$aiida_services_root" /usr/local/bin/aiida-init -- >"$aiida_services_log" 2>&1 &
    else
        echo "aiida-services: the container runs as $(id -un), not root or $aiida_services_user; services not started" >&2
        return 1
    fi
    aiida_services_pid=$!
    echo "aiida-services: aiida-init started (pid $aiida_services_pid, log $aiida_services_log)"
}

aiida_services_stop() {
    [ -n "$aiida_services_pid" ] || return 0
    kill -TERM "$aiida_services_pid" 2>/dev/null || return 0
    # docker stop waits 10 s before SIGKILL: give aiida-init up to 9 s for its ordered shutdown.
    aiida_services_i=0
    while kill -0 "$aiida_services_pid" 2>/dev/null && [ "$aiida_services_i" -lt 90 ]; do
        sleep 0.1
        aiida_services_i=$((aiida_services_i + 1))
    done
}

if aiida_services_start; then
    trap 'aiida_services_stop; exit 0' TERM
fi
