#!/bin/bash
# Run inside the container brought up from the aiida-plugin-compose Template, as the remote user.
set -e
[ "$(id -un)" = aiida ] || { echo "expected the remote user aiida, got $(id -un)" >&2; exit 1; }
out=$(verdi status 2>&1)
echo "$out"
grep -q "✔ daemon" <<<"$out" || { echo "the daemon is not running" >&2; exit 1; }
! grep -qE "✘|⏺" <<<"$out" || { echo "verdi status is not all green" >&2; exit 1; }
[ "$(verdi profile show | grep -c core.psql_dos)" -ge 1 ] || { echo "the profile does not use PostgreSQL" >&2; exit 1; }
grep -q "✔ broker" <<<"$out" || { echo "the profile has no RabbitMQ broker" >&2; exit 1; }
