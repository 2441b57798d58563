#!/usr/bin/env bash
# CPU time per round of cgroup + host collection for N containers, next to Debian's
# node_exporter scraped every second on the same machine.
#
#   N=50 ROUNDS=300 SECS=60 bench/collector/metrics.sh
#
# Needs Docker with the tidewatch-test/busybox image (any Docker test imports it) and
# prometheus-node-exporter. Builds the collector's test harness in release mode.
set -euo pipefail
N=${N:-50}
ROUNDS=${ROUNDS:-300}
SECS=${SECS:-60}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
LABEL=tidewatch.bench=collector-metrics
cd "$(dirname "$0")/../.."

NE_PID=
cleanup() {
  [ -n "$NE_PID" ] && kill "$NE_PID" 2>/dev/null || true
  ids=$(docker ps -aq --filter "label=$LABEL")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null || true
}
trap cleanup EXIT

docker image inspect tidewatch-test/busybox >/dev/null 2>&1 \
  || { echo "needs the tidewatch-test/busybox image: run any Docker test once" >&2; exit 1; }

ids=()
for _ in $(seq 1 "$N"); do
  ids+=("$(docker run -d --label "$LABEL" tidewatch-test/busybox /busybox sleep 3600)")
done
export TIDEWATCH_BENCH_CONTAINERS
TIDEWATCH_BENCH_CONTAINERS=$(IFS=,; echo "${ids[*]}")
export TIDEWATCH_BENCH_ROUNDS=$ROUNDS

echo "== tidewatch cgroup + host sources, $N containers, $ROUNDS rounds back to back (release)"
cargo test --release -q -p tidewatch-collector --test metrics_cgroup bench_metric_rounds -- --ignored --nocapture 2>&1 | grep '^BENCH'

# utime + stime of a process, in clock ticks.
ticks() { awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$PORT" >/dev/null 2>&1 &
NE_PID=$!
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/metrics" && break; sleep 0.1; done
t0=$(ticks "$NE_PID")
for _ in $(seq 1 "$SECS"); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/metrics"; sleep 1; done
t1=$(ticks "$NE_PID")
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$NE_PID/status")
series=$(curl -sf "http://127.0.0.1:$PORT/metrics" | grep -vc '^#')
hz=$(getconf CLK_TCK)
echo "== node_exporter $("$NODE_EXPORTER" --version 2>&1 | head -1 | awk '{print $3}'), scraped every 1 s for $SECS s"
awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$SECS" -v rss="$rss" -v series="$series" \
  'BEGIN { printf "BENCH node_exporter series_per_scrape=%d cpu_ms_per_scrape=%.3f cpu_percent_at_1s=%.2f rss_kib=%d\n", series, t * 1000 / hz / n, t * 100 / hz / n, rss }'
