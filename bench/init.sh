#!/usr/bin/env bash
# Benchmarks of aiida-init against tini plus a shell script, measured in the same run and
# printed as ratios (the targets are in bench/init.md). Run as root from the project root:
#
#     bash bench/init.sh            # builds the release binary first
#     RUNS=20 bash bench/init.sh    # more shutdown samples
#
# Needs: cargo, unshare (util-linux), tini. Nothing here is asserted: it prints numbers.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
command -v tini >/dev/null || { echo "bench: tini is missing (apt-get install tini)" >&2; exit 1; }
command -v unshare >/dev/null || { echo "bench: unshare is missing (util-linux)" >&2; exit 1; }

cargo build --quiet --release -p aiida-init
BIN="$PWD/target/release/aiida-init"
WORK="$(mktemp -d /tmp/aiida-init-bench.XXXXXX)"
trap 'pkill -KILL -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Five longruns that exit at once on SIGTERM; the last one started signals that all are up.
# No container command: the container runs until stopped.
RC="$WORK/root/etc/s6-overlay/s6-rc.d"
for i in 1 2 3 4 5; do
    mkdir -p "$RC/svc$i" "$WORK/root/etc/s6-overlay/user-bundles.d/user/contents.d"
    echo longrun > "$RC/svc$i/type"
    if [ "$i" = 5 ]; then up="touch $WORK/up; "; else up=""; fi
    printf '#!/bin/sh\n%sexec sleep 1000\n' "$up" > "$RC/svc$i/run"
    chmod +x "$RC/svc$i/run"
    touch "$WORK/root/etc/s6-overlay/user-bundles.d/user/contents.d/svc$i"
done
CMD=()
# The baseline: tini as PID 1 running a shell that starts the same five sleeps and, on TERM,
# kills them and waits for them (what a hand-written entrypoint does).
cat > "$WORK/baseline.sh" <<EOF
#!/bin/sh
pids=""
for i in 1 2 3 4 5; do sleep 1000 & pids="\$pids \$!"; done
trap 'kill \$pids; wait; exit 0' TERM
touch $WORK/up
wait
EOF
chmod +x "$WORK/baseline.sh"

now_ns() { date +%s%N; }

# Start "$@" as PID 1 of a new PID namespace; sets TOP (the namespace's PID 1, host pid) and
# OUTER (unshare's pid); returns when $WORK/up exists.
start_ns() {
    rm -f "$WORK/up"
    unshare --pid --fork --mount-proc "$@" >/dev/null 2>&1 &
    OUTER=$!
    for _ in $(seq 500); do [ -e "$WORK/up" ] && break; sleep 0.01; done
    [ -e "$WORK/up" ] || { echo "bench: $* did not come up" >&2; exit 1; }
    TOP=$(pgrep -P "$OUTER" | head -n1)
}

stop_ns() { # prints the microseconds from SIGTERM to the end of the namespace
    local t0 t1
    t0=$(now_ns)
    kill -TERM "$TOP"
    wait "$OUTER" || true
    t1=$(now_ns)
    echo $(( (t1 - t0) / 1000 ))
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

export AIIDA_INIT_ROOT="$WORK/root" AIIDA_INIT_RUNTIME_DIR="$WORK/rt" S6_VERBOSITY=0

echo "== size"
SIZE=$(stat -c %s "$BIN")
TINI_STATIC=$(command -v tini-static || true)
TINI_SIZE=$(stat -c %s "${TINI_STATIC:-$(command -v tini)}")
echo "aiida-init (release, stripped): $SIZE bytes; tini${TINI_STATIC:+-static}: $TINI_SIZE bytes"
echo "ratio to the 2 MB target: $(ratio "$SIZE" 2097152); ratio to tini: $(ratio "$SIZE" "$TINI_SIZE")"

echo "== start-up overhead: \`init true\` as PID 1 of a new namespace, empty tree, container-sized environment (mean of $RUNS)"
# A container has a handful of variables; aiida-init dumps each into the envdir (as s6-overlay).
mkdir -p "$WORK/empty"
SMALL_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOSTNAME=bench HOME=/root
    AIIDA_INIT_ROOT="$WORK/empty" AIIDA_INIT_RUNTIME_DIR="$WORK/rt" S6_VERBOSITY=0)
t0=$(now_ns); for _ in $(seq "$RUNS"); do "${SMALL_ENV[@]}" unshare --pid --fork --mount-proc "$BIN" true; done; t1=$(now_ns)
t2=$(now_ns); for _ in $(seq "$RUNS"); do "${SMALL_ENV[@]}" unshare --pid --fork --mount-proc tini -- true; done; t3=$(now_ns)
OURS_START=$(( (t1 - t0) / 1000 / RUNS )); TINI_START=$(( (t3 - t2) / 1000 / RUNS ))
echo "aiida-init: $OURS_START us; tini: $TINI_START us; ratio: $(ratio "$OURS_START" "$TINI_START")"

echo "== resident memory and idle CPU (five services up)"
start_ns "$BIN" ${CMD[@]+"${CMD[@]}"}
sleep 0.5
RSS=$(rss_kb "$TOP"); C0=$(cpu_ticks "$TOP"); sleep 5; C1=$(cpu_ticks "$TOP")
stop_ns >/dev/null
start_ns tini -- "$WORK/baseline.sh"
sleep 0.5
TINI_RSS=$(rss_kb "$TOP"); T0=$(cpu_ticks "$TOP"); sleep 5; T1=$(cpu_ticks "$TOP")
stop_ns >/dev/null
echo "PID 1 VmRSS: aiida-init $RSS kB, tini $TINI_RSS kB; ratio to the 5 MB target: $(ratio "$RSS" 5120); ratio to tini: $(ratio "$RSS" "$TINI_RSS")"
echo "PID 1 CPU over 5 s idle: aiida-init $((C1 - C0)) ticks, tini $((T1 - T0)) ticks (1 tick = 10 ms)"

echo "== shutdown of five services on SIGTERM (median of $RUNS)"
: > "$WORK/ours"; : > "$WORK/base"
for _ in $(seq "$RUNS"); do
    start_ns "$BIN" ${CMD[@]+"${CMD[@]}"}; stop_ns >> "$WORK/ours"
    start_ns tini -- "$WORK/baseline.sh"; stop_ns >> "$WORK/base"
done
OURS=$(median < "$WORK/ours"); BASE=$(median < "$WORK/base")
echo "aiida-init: $OURS us; tini + shell script: $BASE us; ratio: $(ratio "$OURS" "$BASE") (target <= 1.2)"
echo "s6-overlay sleeps its full S6_KILL_GRACETIME (3000 ms) on every shutdown: ratio to that: $(ratio "$OURS" 3000000)"
