#!/usr/bin/env bash
# The agent's footprint (issue 5, "Figures"): `tidewatch agent` following N containers (default
# 50) that write RATE bytes/s together (default 1 MB/s) as ~200-byte lines, with 1 s cgroup and
# host metrics, shipping to a `tidewatch server` on another core. Reports the agent's peak RSS
# (VmHWM) and CPU (utime+stime from /proc/PID/stat) over SECS seconds (default 60), next to
# Debian's node_exporter scraped every second over the same time, in the same run.
#
#   bench/collector/footprint.sh                 # release binary (built if missing)
#   N=50 RATE=1000000 SECS=60 bench/collector/footprint.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIDEWATCH=${TIDEWATCH:-$ROOT/target/release/tidewatch}
N=${N:-50}
RATE=${RATE:-1000000}
SECS=${SECS:-60}
IMAGE=tidewatch-test/busybox
LABEL=tidewatch.bench=footprint
SERVER_PORT=${SERVER_PORT:-19795}
AGENT_PORT=${AGENT_PORT:-19796}
NE_PORT=${NE_PORT:-19797}
WORK=$(mktemp -d /tmp/tw-footprint.XXXXXX)
HZ=$(getconf CLK_TCK)

[[ -x $TIDEWATCH ]] || (cd "$ROOT" && cargo build --release -p tidewatch --bin tidewatch) >&2
docker image inspect "$IMAGE" >/dev/null 2>&1 ||
    tar -C "$(dirname "$(readlink -f /bin/busybox)")" -c busybox | docker import - "$IMAGE" >/dev/null

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# Each container writes RATE/N bytes/s: lines of ~200 bytes, a burst every second.
per=$((RATE / N / 200))
((per >= 1)) || per=1
line=$(printf 'x%.0s' $(seq 180))
for i in $(seq "$N"); do
    docker run -d --label "$LABEL" --name "tw-fp-$i" "$IMAGE" /busybox sh -c \
        "n=0; while :; do j=0; while [ \$j -lt $per ]; do n=\$((n+1)); j=\$((j+1)); echo \"\$n $line\"; done; sleep 1; done" >/dev/null
done

cat >"$WORK/agent.yaml" <<EOF
agent:
  listen: 127.0.0.1:$AGENT_PORT
collector:
  shipper: {urls: ["http://127.0.0.1:$SERVER_PORT"]}
  docker: {include: {labels: ["$LABEL"]}}
  cgroup: {interval: 1s}
  host: {interval: 1s}
EOF
taskset -c 0 "$TIDEWATCH" server --listen "127.0.0.1:$SERVER_PORT" --data-dir "$WORK/server" >"$WORK/server.log" 2>&1 &
pids+=($!)
sleep 2
taskset -c 1 "$TIDEWATCH" --config "$WORK/agent.yaml" agent --data-dir "$WORK/agent" >"$WORK/agent.log" 2>&1 &
agent=$!
pids+=($agent)
if [[ -x /usr/bin/prometheus-node-exporter ]]; then
    /usr/bin/prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" >/dev/null 2>&1 &
    ne=$!
    pids+=($ne)
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sleep 10 # settle: discovery, first rounds
a0=$(cpu_ticks "$agent")
[[ -n ${ne:-} ]] && n0=$(cpu_ticks "$ne")
end=$((SECONDS + SECS))
while ((SECONDS < end)); do
    [[ -n ${ne:-} ]] && curl -s -o /dev/null "http://127.0.0.1:$NE_PORT/metrics"
    sleep 1
done
a1=$(cpu_ticks "$agent")
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$agent/status")
pct() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v s="$SECS" 'BEGIN { printf "%.2f", (b - a) * 100 / hz / s }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo "agent: $N containers, $RATE B/s together, $SECS s: CPU $(pct "$a0" "$a1") % of a core, peak RSS $(mb "$rss") MB"
# Where the resident memory is now: heap and stacks (anon) against mapped code (file).
awk '/^(RssAnon|RssFile|Threads)/ { printf "  %s %s %s", $1, $2, $3 } END { print "" }' "/proc/$agent/status"
if [[ -n ${ne:-} ]]; then
    n1=$(cpu_ticks "$ne")
    nrss=$(awk '/VmHWM/ { print $2 }' "/proc/$ne/status")
    echo "node_exporter scraped every 1 s: CPU $(pct "$n0" "$n1") % of a core, peak RSS $(mb "$nrss") MB"
fi
lines=$(curl -s "http://127.0.0.1:$SERVER_PORT/loki/api/v1/query?query=sum(count_over_time(%7Bcontainer%3D~%22tw-fp-.*%22%7D%5B${SECS}s%5D))" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
echo "lines stored over the last ${SECS} s: $lines (expected about $((per * N * SECS)))"
