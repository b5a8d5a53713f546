#!/usr/bin/env bash
# RabbitMQ's boot alone, in a container of the image where nothing else runs: what bounds a
# restart of aiida-core-with-services (RabbitMQ is its last service to be ready). Boots the node
# (/etc/init/rabbitmq-node, as the service does) ROUNDS times on a copy of the image's node
# database, each time until the service's own check finds it ready (its AMQP port answers), then
# stops it; prints the time and the node's CPU. Then one boot of the image's boot script alone (no RabbitMQ), with init's
# progress after each application's module loads: what loading the modules costs, per
# application.
#
#   bash bench/rabbitmq-boot.sh [ROUNDS] [ERL_FLAG...]   (default 5 rounds; needs the image built)
#
# ERL_FLAGs are added to the node's `erl` arguments (through RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS),
# to compare VM flags: `bash bench/rabbitmq-boot.sh 5 +S 1:1`. AIIDA_DEVC_BENCH_IMAGE picks the
# image (default aiidateam/aiida-core-with-services:latest).
set -euo pipefail
ROUNDS=${1:-5}
shift || true
IMAGE=${AIIDA_DEVC_BENCH_IMAGE:-aiidateam/aiida-core-with-services:latest}
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "bench: $IMAGE is missing; run: cargo run -- images build" >&2; exit 1; }
name=bench-rabbitmq-$$
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$name" --entrypoint sleep "$IMAGE" infinity >/dev/null

# In the container, as its user: the boots, then the load time line. The script's $0 is
# services-env's own path, from which it finds the services' folder, as the services do.
# shellcheck disable=SC2016 # expanded in the container
in_container=$(cat <<'IN_CONTAINER'
set -euo pipefail
rounds=$1
shift
. "$0"
work=$(mktemp -d)
cp -a "$RABBITMQ_MNESIA_BASE" "$work/mnesia"
export RABBITMQ_MNESIA_BASE=$work/mnesia RABBITMQ_LOG_BASE=$work/log
[ $# -eq 0 ] || export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS $*"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
echo "RabbitMQ's boot, alone (${*:-no extra flags}): ms until its AMQP port answers"
for round in $(seq 1 "$rounds"); do
    start=$(date +%s%N)
    /etc/init/rabbitmq-node >"$work/node.log" 2>&1 &
    node=$!
    # The service's own readiness check: the AMQP header answered, tried every 10 ms.
    if ! "$SERVICES_ETC/init/rabbitmq-check" --wait 60; then
        echo "the node was not ready within 60 s:"
        cat "$work/node.log"
        exit 1
    fi
    took=$(ms "$start")
    read -r -a stat <<<"$(sed 's/.*) //' "/proc/$(pgrep -n -x "beam\.(smp|emu)")/stat")"
    cpu=$(( (stat[11] + stat[12]) * 1000 / $(getconf CLK_TCK) ))
    kill -TERM "$node"
    wait "$node" || true
    echo "round $round: $took ms (the node's CPU until then: about $cpu ms)"
done

# The boot script with a progress mark after each module load (init prints both with -init_debug).
marked=$work/marked
erl -noinput -boot start_clean -eval "
    {ok, Bin} = file:read_file(\"$SERVICES_ETC/aiida/rabbitmq/rabbit.boot\"),
    {script, Name, Commands} = binary_to_term(Bin),
    Marked = lists:append([case C of
                               {primLoad, Ms} -> [C, {progress, {loaded, length(Ms)}}];
                               {path, [P]} -> [C, {progress, {path, filename:basename(filename:dirname(P))}}];
                               _ -> [C]
                           end || C <- Commands]),
    ok = file:write_file(\"$marked.boot\", term_to_binary({script, Name, Marked})),
    halt()."
echo
echo "The boot script's module loads, ms (VM started, init preloaded, to each application loaded):"
# On the emulator the node runs on (rabbitmq-node: the interpreter where the image has one).
find_erlang
flavor=()
if rabbitmq_has_interpreter; then flavor=(-emu_flavor emu); fi
ERL_LIBS=$RABBITMQ_PLUGINS_DIR erl "${flavor[@]}" -init_debug -noinput -boot "$marked" -boot_var RABBIT "$RABBITMQ_PLUGINS_DIR" \
    -eval 'halt().' 2>&1 | python3 -c '
import re, sys, time
start = last = None
app = "kernel and stdlib (the first load of init)"
for line in sys.stdin:
    now = time.monotonic()
    start = start or now
    if m := re.search(r"\{progress,\{path,\"?([^\"}]+)", line):
        app = m.group(1)
    elif m := re.search(r"\{progress,\{loaded,(\d+)\}\}", line):
        if int(m.group(1)):
            print(f"  {(now - start) * 1000:6.0f}  +{(now - last) * 1000:4.0f}  {m.group(1):>4} modules of {app}")
    elif "kernel_load_completed" in line or "{progress,started}" in line:
        print(f"  {(now - start) * 1000:6.0f}  {line.strip()[:60]}")
    last = now
'
rm -rf "$work"
IN_CONTAINER
)
docker exec -u aiida "$name" bash -c "$in_container" /etc/init/services-env "$ROUNDS" "$@"
