#!/usr/bin/env bash
# Time from exec to the first 200 of /-/ready on an empty data folder: Tidewatch (`up`, every
# part in one process) next to Debian's Prometheus 2.42, in the same run.
# Usage: bench/startup/run.sh [RUNS]   (default 20; builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p tidewatch
tw="$target/release/tidewatch"
prom=$(command -v prometheus) || { echo "prometheus is not installed (apt-get install prometheus)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'global:\n  scrape_interval: 15s\n' > "$work/prometheus.yml"

# Prints milliseconds from launch to /-/ready answering 200, then stops the process.
time_to_ready() {
    local port=$1; shift
    local start end pid
    start=$(date +%s%N)
    "$@" >"$work/out.log" 2>&1 &
    pid=$!
    until curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready"; do
        if ! kill -0 "$pid" 2>/dev/null; then cat "$work/out.log" >&2; exit 1; fi
        sleep 0.005
    done
    end=$(date +%s%N)
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo $(( (end - start) / 1000000 ))
}

stats() { sort -n | awk '{a[NR]=$1} END {printf "%d %d %d\n", a[int((NR+1)/2)], a[int(NR*0.95+0.5)], a[NR]}'; }

tw_ms=(); prom_ms=()
for i in $(seq "$runs"); do
    rm -rf "$work/tw" "$work/prom"
    tw_ms+=("$(time_to_ready 19781 "$tw" up --listen 127.0.0.1:19781 --data-dir "$work/tw")")
    prom_ms+=("$(time_to_ready 19782 "$prom" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" --web.listen-address=127.0.0.1:19782)")
done
read -r tw_p50 tw_p95 tw_max < <(printf '%s\n' "${tw_ms[@]}" | stats)
read -r pr_p50 pr_p95 pr_max < <(printf '%s\n' "${prom_ms[@]}" | stats)
echo "runs: $runs, empty data folder each time"
printf '%-22s %8s %8s %8s\n' "" "p50 ms" "p95 ms" "max ms"
printf '%-22s %8s %8s %8s\n' "tidewatch up" "$tw_p50" "$tw_p95" "$tw_max"
printf '%-22s %8s %8s %8s\n' "prometheus 2.42" "$pr_p50" "$pr_p95" "$pr_max"
awk -v a="$tw_p50" -v b="$pr_p50" 'BEGIN {printf "ratio p50 tidewatch / prometheus: %.2f\n", a / b}'
