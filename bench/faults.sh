#!/usr/bin/env bash
# Fault injection on a with-services container: each fault strikes while a calculation
# (core.arithmetic.add, sleeping SLEEP seconds in its job) is in flight. After each, it measures
# the time until `verdi status` is all green again, then waits for the calculation to finish.
#
#   bash bench/faults.sh [IMAGE] [SLEEP]
#
# Faults: SIGKILL of PostgreSQL's postmaster, of RabbitMQ (beam.smp), of the daemon's circus
# process, of the daemon worker; `docker kill` then `docker start`. Results: bench/reliability.md.
set -euo pipefail
image=${1:-aiidateam/aiida-core-with-services:latest}
sleep_s=${2:-15}
c="aiida-devc-bench-faults-$$"
trap 'docker rm -f "$c" >/dev/null 2>&1 || true; docker volume rm -f "$c-home" >/dev/null 2>&1 || true' EXIT

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
print("finished" if node.is_finished_ok and node.outputs.sum.value == int(sys.argv[2]) + 2 else f"LOST ({node.process_state}, {node.exit_status})")
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
fault "SIGKILL RabbitMQ (beam.smp)" 2 docker exec "$c" sh -c 'kill -9 $(pgrep -x beam.smp)'
fault "SIGKILL circus (the daemon service)" 3 docker exec "$c" sh -c 'kill -9 $(cat ~/.aiida/daemon/circus-default.pid)'
fault "SIGKILL daemon worker" 4 docker exec "$c" sh -c "kill -9 \$(ps -eo pid,args | awk '/[d]aemon worker/ {print \$1}')"
fault "docker kill, docker start" 5 sh -c "docker kill $c >/dev/null && docker wait $c >/dev/null && docker start $c >/dev/null"
docker exec "$c" aiida-init status | sed -n '1,12p'
