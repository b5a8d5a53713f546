#!/bin/bash
# shellcheck disable=SC2016 # the checks are `bash -c '...'` scripts: they expand in that shell
# Scenario non_root_sqlite: run as the non-root remote user "aiida".
set -e
source dev-container-features-test-lib

check "runs as the remote user" test "$(id -un)" = aiida
check "verdi is on PATH" command -v verdi
check "the venv belongs to the remote user" test -O /opt/aiida/venv/pyvenv.cfg
check "the user can pip install into the venv" pip install --quiet --no-deps --dry-run six
check "verdi completion is loaded by bash" bash -ic 'complete -p verdi'
check "the default profile uses SQLite" bash -c "verdi profile show | grep -q core.sqlite_dos"
check "verdi status is all green" bash -c 'out=$(verdi status 2>&1); echo "$out"; grep -q "✔ daemon" <<<"$out" && ! grep -qE "✘|⏺" <<<"$out"'

reportResults
