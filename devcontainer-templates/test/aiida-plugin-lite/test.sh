#!/bin/bash
# Run inside the container brought up from the aiida-plugin-lite Template, as the remote user.
set -e
[ "$(id -un)" = aiida ] || { echo "expected the remote user aiida, got $(id -un)" >&2; exit 1; }
out=$(verdi status 2>&1)
echo "$out"
grep -q "✔ daemon" <<<"$out" || { echo "the daemon is not running" >&2; exit 1; }
! grep -qE "✘|⏺" <<<"$out" || { echo "verdi status is not all green" >&2; exit 1; }
verdi profile show | grep -q core.sqlite_dos || { echo "the profile does not use SQLite" >&2; exit 1; }
