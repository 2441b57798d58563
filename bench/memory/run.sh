#!/usr/bin/env bash
# Memory per active series and WAL replay time, Tidewatch next to Debian's Prometheus 2.42 in the
# same run, with the same sender (bench/src/bin/rw_load.rs) and the same series.
#
# Usage: bench/memory/run.sh [SERIES...]     (default: 100000 1000000)
# Prints, per series count: each server's RSS after the series were written 3 times and the
# process settled, RSS per series, and the ratio; then Tidewatch's WAL replay time for 10M
# samples (kill -9 after the writes, then time from exec to /-/ready).
set -euo pipefail
cd "$(dirname "$0")/../.."
counts=("${@:-100000 1000000}")
[[ $# -eq 0 ]] && counts=(100000 1000000)
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p tidewatch -p tidewatch-bench
tw="$target/release/tidewatch"
load="$target/release/rw_load"
prom=$(command -v prometheus) || { echo "prometheus is not installed (apt-get install prometheus)"; exit 1; }
work=$(mktemp -d)
# The servers are started inside $(...), so their pids are not known here: find them by folder.
cleanup() { pkill -9 -f "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf 'global:\n  scrape_interval: 15s\n' > "$work/prometheus.yml"

wait_ready() { until curl -fs -o /dev/null "http://127.0.0.1:$1/-/ready"; do sleep 0.05; done; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start_prom() {
    "$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-$1" \
        --web.listen-address=127.0.0.1:19801 --web.enable-remote-write-receiver >"$work/prom.log" 2>&1 &
    echo $!
}
start_tw() {
    "$tw" server --listen 127.0.0.1:19802 --data-dir "$work/tw-$1" >"$work/tw.log" 2>&1 &
    echo $!
}

echo "| series | Prometheus RSS MiB | bytes/series | Tidewatch RSS MiB | bytes/series | Tidewatch ÷ Prometheus |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in "${counts[@]}"; do
    declare -A rss=()
    for who in prom tw; do
        if [[ $who == prom ]]; then pid=$(start_prom "$n"); port=19801; else pid=$(start_tw "$n"); port=19802; fi
        wait_ready $port
        "$load" --url "http://127.0.0.1:$port/api/v1/write" --series "$n" --samples $((n * 3)) \
            --warmup-rounds 0 --connections 4 >"$work/load-$who.json" 2>"$work/load-$who.err"
        sleep 5  # let allocators settle
        rss[$who]=$(rss_kib "$pid")
        kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    done
    awk -v n="$n" -v p="${rss[prom]}" -v t="${rss[tw]}" 'BEGIN {
        printf "| %d | %.0f | %.0f | %.0f | %.0f | %.2f |\n", n, p/1024, p*1024/n, t/1024, t*1024/n, t/p }'
done

echo
echo "WAL replay: 100000 series x 100 rounds = 10M samples, kill -9, restart"
pid=$(start_tw replay); wait_ready 19802
"$load" --url http://127.0.0.1:19802/api/v1/write --series 100000 --samples 10000000 --warmup-rounds 0 \
    --connections 4 >"$work/load-replay.json" 2>"$work/load-replay.err"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
du -sh "$work/tw-replay/metrics/wal" | awk '{print "WAL size: " $1}'
start=$(date +%s%N)
pid=$(start_tw replay); wait_ready 19802
end=$(date +%s%N)
echo "time from exec to /-/ready: $(( (end - start) / 1000000 )) ms"
grep -o '"samples_replayed":[0-9]*\|samples_replayed=[0-9]*' "$work/tw.log" | head -1
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
