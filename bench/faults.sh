#!/usr/bin/env bash
# Fault injection on a with-services container: each fault strikes while a calculation
# (core.arithmetic.add, sleeping SLEEP seconds in its job) is in flight. After each, it measures
# the time until `verdi status` is all green again, then waits for the calculation to finish.
#
#   bash bench/faults.sh [IMAGE] [SLEEP]
#
# Faults: SIGKILL of PostgreSQL's postmaster, of RabbitMQ (its Erlang VM), of the daemon's circus
# process, of the daemon worker; `docker kill` then `docker start`. Then the faults of a start:
# `docker kill` and `docker stop` of a first start on a fresh home while the profile is being
# made, and a full home volume (a 300 MB ext4 filesystem on a loop device, filled as root while
# the container is stopped; needs root). Results: bench/reliability.md.
set -euo pipefail
image=${1:-aiidateam/aiida-core-with-services:latest}
sleep_s=${2:-15}
c="aiida-devc-bench-faults-$$"
loop_dir=$(mktemp -d)
loop_dev=
cleanup() {
    docker rm -f "$c" "$c-start" >/dev/null 2>&1 || true
    docker volume rm -f "$c-home" "$c-start" >/dev/null 2>&1 || true
    if [ -n "$loop_dev" ]; then losetup -d "$loop_dev" 2>/dev/null || true; fi
    rm -rf "$loop_dir"
}
trap cleanup EXIT

submit='
import sys
from aiida import load_profile, orm, engine
from aiida.plugins import CalculationFactory
load_profile()
try:
    code = orm.load_code("add@localhost")
except Exception:
    code = orm.InstalledCode(label="add", computer=orm.load_computer("localhost"),
        filepath_executable="/bin/bash", default_calc_job_plugin="core.arithmetic.add").store()
node = engine.submit(CalculationFactory("core.arithmetic.add"), x=orm.Int(int(sys.argv[1])),
    y=orm.Int(2), code=code, metadata={"options": {"sleep": int(sys.argv[2])}})
print(node.pk)
'
await='
import sys, time
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
deadline = time.time() + 600
while not node.is_terminated and time.time() < deadline:
    time.sleep(1)
if node.is_finished_ok and node.outputs.sum.value == int(sys.argv[2]) + 2:
    print("finished")
elif node.is_terminated:  # resumed to an end, but its job died (it ran in the killed container)
    print(f"resumed, ended with exit status {node.exit_status}")
else:
    print(f"LOST ({node.process_state})")
'
running='
import sys, time
from aiida import load_profile, orm
load_profile()
node = orm.load_node(int(sys.argv[1]))
while node.get_job_id() is None:  # submitted to the scheduler: the job is running
    time.sleep(0.5)
'

x() { docker exec "$c" "$@"; }

green() {  # seconds until verdi status is all green (ceiling 600 s)
    local t0=$1
    until x verdi status >/dev/null 2>&1; do
        if (( $(date +%s) - ${t0%.*} > 600 )); then echo "never"; return; fi
        sleep 0.5
    done
    awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }"
}

fault() {  # fault NAME N COMMAND...: COMMAND strikes with calculation N in flight
    local name=$1 n=$2; shift 2
    local pk t0 recovery result
    pk=$(x python -c "$submit" "$n" "$sleep_s" | tail -1)
    x timeout 300 python -c "$running" "$pk" || true
    t0=$(date +%s.%N)
    "$@" || true
    sleep 1  # let the supervisor see the death before asking verdi
    recovery=$(green "$t0")
    result=$(x python -c "$await" "$pk" "$n" | tail -1)
    printf '| %s | %s | %s s | %s |\n' "$name" "$([ "$recovery" = never ] && echo "not recovered" || echo recovered)" "$recovery" "$result"
}

docker run -d --name "$c" -v "$c-home:/home/aiida" "$image" >/dev/null
x aiida-init wait --timeout 300 >/dev/null
echo "| fault | result | recovery (to verdi status green) | calculation in flight |"
echo "|---|---|---|---|"
fault "SIGKILL PostgreSQL postmaster" 1 docker exec "$c" sh -c 'kill -9 $(head -1 ~/.postgresql/postmaster.pid)'
fault "SIGKILL RabbitMQ (its Erlang VM)" 2 docker exec "$c" sh -c 'kill -9 $(pgrep -x "beam\.(smp|emu)")'
fault "SIGKILL circus (the daemon service)" 3 docker exec "$c" sh -c 'kill -9 $(cat ~/.aiida/daemon/circus-default.pid)'
fault "SIGKILL daemon worker" 4 docker exec "$c" sh -c "kill -9 \$(ps -eo pid,args | awk '/[d]aemon worker/ {print \$1}')"
fault "docker kill, docker start" 5 sh -c "docker kill $c >/dev/null && docker wait $c >/dev/null && docker start $c >/dev/null"
docker exec "$c" aiida-init status | sed -n '1,12p'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# The faults of a start, each on container $c-start.
s() { docker exec "$c-start" "$@"; }
state_of() {  # state of service $1 (aiida-init status --json), empty while the init is starting
    s aiida-init status --json 2>/dev/null |
        python3 -c "import json, sys; print({v['name']: v['state'] for v in json.load(sys.stdin)['services']}['$1'])" 2>/dev/null || true
}
ready_after() {  # seconds from $1 until aiida-init wait returns in $c-start, or "never"
    local t0=$1 deadline=$((SECONDS + 600))
    until s aiida-init wait --timeout 600 >/dev/null 2>&1; do
        if [ "$SECONDS" -gt "$deadline" ]; then echo never; return; fi
        sleep 0.2
    done
    awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }"
}
calculation_ok() {  # a calculation submitted now finishes with the right sum
    local pk
    pk=$(s python -c "$submit" 40 0 | tail -1)
    s python -c "$await" "$pk" 40 | tail -1
}
fresh_start_until_profile() {  # a first start on a new home, until the profile is being made
    docker rm -f "$c-start" >/dev/null 2>&1 || true
    docker volume rm -f "$c-start" >/dev/null 2>&1 || true
    docker run -d --name "$c-start" -v "$c-start:/home/aiida" "$image" >/dev/null
    local deadline=$((SECONDS + 600))
    until [ "$(state_of aiida-prepare)" = starting ]; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "faults: the profile was never being made" >&2; exit 1; }
        sleep 0.1
    done
    until docker logs "$c-start" 2>&1 | grep -q "PostgreSQL database 'aiida-default'"; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "faults: no database created" >&2; exit 1; }
        sleep 0.1
    done
}
databases() { s psql -X -A -t -c "SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'aiida-%'"; }

fresh_start_until_profile
docker kill "$c-start" >/dev/null && docker wait "$c-start" >/dev/null || true
t0=$(date +%s.%N)
docker start "$c-start" >/dev/null
recovery=$(ready_after "$t0")
printf '| docker kill of a first start while the profile is made, docker start | ready again (databases: %s) | %s s (from docker start) | %s |\n' \
    "$(databases)" "$recovery" "$(calculation_ok)"

fresh_start_until_profile
t0=$(date +%s.%N)
docker stop "$c-start" >/dev/null
stop_took=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$c-start")
t0=$(date +%s.%N)
docker start "$c-start" >/dev/null
recovery=$(ready_after "$t0")
printf '| docker stop of a first start while the profile is made (stop took %s s, exit %s), docker start | profile completed (databases: %s) | %s s (from docker start) | %s |\n' \
    "$stop_took" "$exit_code" "$(databases)" "$recovery" "$(calculation_ok)"

# The full home volume.
docker rm -f "$c-start" >/dev/null
docker volume rm -f "$c-start" >/dev/null
truncate -s 300M "$loop_dir/home.ext4"
mkfs.ext4 -q -F -E root_owner=1000:100 "$loop_dir/home.ext4"
debugfs -w -R "rmdir lost+found" "$loop_dir/home.ext4" >/dev/null 2>&1
loop_dev=$(losetup --find --show "$loop_dir/home.ext4")
docker volume create --driver local --opt type=ext4 --opt "device=$loop_dev" "$c-start" >/dev/null
docker run -d --name "$c-start" -v "$c-start:/home/aiida" "$image" >/dev/null
ready_after "$(date +%s.%N)" >/dev/null
before=$(s python -c "$submit" 7 0 | tail -1)
s python -c "$await" "$before" 7 >/dev/null
docker stop "$c-start" >/dev/null
docker run --rm --user root --entrypoint sh -v "$c-start:/home/aiida" "$image" -c \
    'fallocate -l $(df -B1 --output=avail /home/aiida | tail -1) /home/aiida/filler; dd if=/dev/zero of=/home/aiida/filler-rest bs=4k 2>/dev/null; true'
t0=$(date +%s.%N)
docker start "$c-start" >/dev/null
deadline=$((SECONDS + 600))
until s aiida-init status 2>/dev/null | grep -q '^postgresql .*No space left on device'; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "faults: no clear error for the full home" >&2; s aiida-init status >&2; exit 1; }
    sleep 0.5
done
reported=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }")
docker exec --user root "$c-start" rm /home/aiida/filler /home/aiida/filler-rest
docker stop "$c-start" >/dev/null
t0=$(date +%s.%N)
docker start "$c-start" >/dev/null
recovery=$(ready_after "$t0")
printf '| home volume full, docker start | aiida-init status: postgresql No space left on device after %s s; filler removed, docker restart: ready | %s s (from docker start) | earlier calculation: %s; new: %s |\n' \
    "$reported" "$recovery" "$(s python -c "$await" "$before" 7 | tail -1)" "$(calculation_ok)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
