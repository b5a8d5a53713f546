#!/usr/bin/env bash
# Soak of the daemon's start-up against its own clients: STARTS containers of IMAGE, one after
# another, on one home volume (the first makes the profile, the others reuse it and its daemon
# files). From `docker run -d` on, three shells call `verdi status` and `verdi daemon status` one
# after another until a few seconds after `aiida-init wait` returns. Each start must end with the
# daemon reachable and a `docker stop` without SIGKILL.
#
#   bash bench/reliability.sh [STARTS] [IMAGE] [BASELINE_IMAGE]
#
# STARTS defaults to 20, IMAGE to aiidateam/aiida-core-with-services:latest. With
# BASELINE_IMAGE (e.g. an image built before a change), the same soak runs on it first, and the
# summary compares the two. Results and method: bench/reliability.md.
set -euo pipefail
starts=${1:-20}
image=${2:-aiidateam/aiida-core-with-services:latest}
baseline=${3:-}
tag="aiida-devc-bench-reliability-$$"

cleanup() {
    docker rm -f "$tag-c" >/dev/null 2>&1 || true
    docker volume rm -f "$tag-home" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# soak IMAGE: one line per start, then "summary IMAGE reachable/starts ready-times..."
soak() {
    local image=$1 reachable=0 clean=0 times=()
    cleanup
    for i in $(seq 1 "$starts"); do
        local t0 t1 rc code
        t0=$(date +%s.%N)
        docker run -d --name "$tag-c" -v "$tag-home:/home/aiida" "$image" >/dev/null
        docker exec -d "$tag-c" sh -c 'for i in 1 2 3; do
            (while [ ! -e /tmp/stop-clients ]; do verdi status; verdi daemon status; done >/dev/null 2>&1 &); done'
        if docker exec "$tag-c" aiida-init wait --timeout 300 >/dev/null 2>&1; then
            t1=$(date +%s.%N)
        else
            t1=""
        fi
        sleep 3
        docker exec "$tag-c" touch /tmp/stop-clients
        while [ "$(docker exec "$tag-c" sh -c "ps -eo args | grep -c '[s]top-clients' || true")" != 0 ]; do
            sleep 0.5
        done
        rc=0
        docker exec "$tag-c" verdi daemon status >/dev/null 2>&1 || rc=$?
        docker stop "$tag-c" >/dev/null
        code=$(docker inspect -f '{{.State.ExitCode}}' "$tag-c")
        docker rm "$tag-c" >/dev/null
        local ready="-"
        if [ -n "$t1" ]; then
            ready=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
            times+=("$ready")
        fi
        [ "$rc" = 0 ] && reachable=$((reachable + 1))
        [ "$code" = 0 ] && clean=$((clean + 1))
        printf '%s start %2d: ready after %6s s, verdi daemon status exit %d, docker stop exit %s\n' \
            "$image" "$i" "${ready:0:6}" "$rc" "$code"
    done
    local sorted
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    printf 'summary %s: reachable %d/%d, clean stops %d/%d, ready min %s median %s max %s s\n' \
        "$image" "$reachable" "$starts" "$clean" "$starts" \
        "$(echo "$sorted" | head -1 | cut -c1-5)" \
        "$(echo "$sorted" | sed -n "$(( (${#times[@]} + 1) / 2 ))p" | cut -c1-5)" \
        "$(echo "$sorted" | tail -1 | cut -c1-5)"
    cleanup
}

[ -n "$baseline" ] && soak "$baseline"
soak "$image"
