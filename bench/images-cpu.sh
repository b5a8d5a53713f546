#!/usr/bin/env bash
# CPU per start of the images, compared in one run (interleaved), which holds on a busy machine
# where wall times do not: for each image, a first start on a fresh home volume and a restart
# after `docker stop`, each until `aiida-init wait` returns; printed per start: wall time, the
# container's CPU (cgroup cpuacct), RabbitMQ's (its Erlang VM, beam.emu or beam.smp; "-" in
# aiida-core-base) and the daemon service's process's (circus and its imports, not its
# workers), the READY AT of aiida-prepare,
# rabbitmq and aiida-daemon from `aiida-init status`, and the load average.
#
#   bash bench/images-cpu.sh [ROUNDS] IMAGE[=LABEL]...
#   e.g. bash bench/images-cpu.sh 2 aiidateam/aiida-core-with-services:latest=main \
#                                   mine/aiida-core-with-services:latest=change
set -euo pipefail
ROUNDS=${1:?usage: images-cpu.sh ROUNDS IMAGE[=LABEL]...}
shift
[ "$#" -gt 0 ] || { echo "images-cpu: no image given" >&2; exit 2; }
NAME=bench-cpu-$$
now() { date +%s%N; }
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm -f "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ready_at() { awk -v s="$1" '$1 == s {print $5}' <<<"$2"; }
# The CPU time (ms) a process of the container has used; "-" without such a process.
cpu_of() {
    docker exec "$NAME" bash -c '[ -n "$1" ] && [ -e "/proc/$1/stat" ] || { echo -; exit; }
        s=($(sed "s/.*) //" "/proc/$1/stat")); echo $(( (s[11] + s[12]) * 1000 / $(getconf CLK_TCK) ))' _ "$1"
}

one_image() {
    local image=$1 label=$2 t wall cpu beam daemon status
    cleanup
    docker create --name "$NAME" -v "$NAME:/home/aiida" "$image" >/dev/null
    for start in first restart; do
        t=$(now)
        docker start "$NAME" >/dev/null
        docker exec "$NAME" aiida-init wait --timeout 300 >/dev/null
        wall=$(( ($(now) - t) / 1000000 ))
        cpu=$(( $(docker exec "$NAME" cat /sys/fs/cgroup/cpuacct/cpuacct.usage) / 1000000 ))
        status=$(docker exec "$NAME" aiida-init status)
        beam=$(cpu_of "$(docker exec "$NAME" pgrep -o -x "beam\.(smp|emu)" || true)")
        daemon=$(cpu_of "$(awk '$1 == "aiida-daemon" {print $4}' <<<"$status")")
        printf '%-10s %-8s wall %5d ms  cpu %5d ms  rabbitmq cpu %5s ms  daemon cpu %5s ms  ready at: aiida-prepare %s rabbitmq %s aiida-daemon %s  load %s\n' \
            "$label" "$start" "$wall" "$cpu" "$beam" "$daemon" "$(ready_at aiida-prepare "$status")" \
            "$(ready_at rabbitmq "$status")" "$(ready_at aiida-daemon "$status")" "$(cut -d' ' -f1 /proc/loadavg)"
        docker stop "$NAME" >/dev/null
    done
    cleanup
}

for _ in $(seq 1 "$ROUNDS"); do
    for spec in "$@"; do
        one_image "${spec%%=*}" "${spec#*=}"
    done
done
