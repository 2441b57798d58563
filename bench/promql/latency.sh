#!/usr/bin/env bash
# PromQL range-query latency, Tidewatch vs Prometheus 2.42 on the same data in the same run
# (issue 6, "Figures"). The work is done by bench/src/bin/promql_latency.rs: it starts both
# servers on fresh folders, writes the same 10k-counter + 3,300-bucket data set (6 h 5 min at 15 s,
# ending now) into both by remote_write, waits until both are idle, restarts both (so that VmHWM
# starts from a fresh process), then times each dashboard query (warm-up, then repetitions
# alternating between the servers) and samples VmRSS of both every 5 ms. See bench/promql/README.md.
#
#   bench/promql/latency.sh                    # build (release), wait for a quiet machine, run
#   REPS=20 bench/promql/latency.sh            # more repetitions
#   ARGS="--only topk" bench/promql/latency.sh # any promql_latency option (see --help)
#
# Output: the markdown table on stdout; the JSON document, the table and the log in $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench-promql/$(date -u +%Y%m%dT%H%M%SZ)}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
TIDEWATCH=${TIDEWATCH:-$ROOT/target/release/tidewatch}
BIN=${BIN:-$ROOT/target/release/promql_latency}
WORKDIR=${WORKDIR:-$ROOT/target/bench-promql/work}
REPS=${REPS:-15}
WARMUP=${WARMUP:-3}
BUILD=${BUILD:-1}
QUIET_CORES=${QUIET_CORES:-0.15}   # before the run, wait until the machine uses less than this
QUIET_WAIT_S=${QUIET_WAIT_S:-900}  # ... but no longer than this
ARGS=${ARGS:-}

mkdir -p "$OUT"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }

[[ -x $PROMETHEUS ]] || { log "no Prometheus at $PROMETHEUS (apt-get install prometheus)"; exit 2; }
if [[ $BUILD == 1 ]]; then
    log "building (cargo build --release -p tidewatch -p tidewatch-bench --bin tidewatch --bin promql_latency)"
    (cd "$ROOT" && cargo build --release -p tidewatch -p tidewatch-bench --bin tidewatch --bin promql_latency) \
        >"$OUT/build.log" 2>&1 || { log "build failed, see $OUT/build.log"; exit 2; }
fi

# Busy cores over one second, from /proc/stat.
busy_cores() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 1
    read -r -a b < <(head -1 /proc/stat)
    local busy=0 total=0 i
    for i in 1 2 3 6 7 8; do busy=$((busy + b[i] - a[i])); done
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    awk -v b="$busy" -v t="$total" -v n="$(nproc)" 'BEGIN { printf "%.2f", (t ? b / t : 0) * n }'
}
waited=0
while true; do
    load=$(busy_cores)
    if awk -v l="$load" -v q="$QUIET_CORES" 'BEGIN { exit !(l < q) }'; then break; fi
    if ((waited >= QUIET_WAIT_S)); then
        log "machine still busy ($load cores) after ${waited}s: measuring anyway"
        break
    fi
    ((waited % 60 == 0)) && log "waiting for a quiet machine ($load cores busy)"
    sleep 4
    waited=$((waited + 5))
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD -- store src model 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "prometheus: $("$PROMETHEUS" --version 2>&1 | head -1)"
    echo "tidewatch: $("$TIDEWATCH" --version 2>&1 | head -1)"
    echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "busy cores before: $(busy_cores)"
} | tee "$OUT/env.txt" >&2

# shellcheck disable=SC2086 # ARGS holds zero or more options
"$BIN" --prometheus "$PROMETHEUS" --tidewatch "$TIDEWATCH" --workdir "$WORKDIR" \
    --reps "$REPS" --warmup "$WARMUP" --json "$OUT/latency.json" $ARGS \
    >"$OUT/table.md" 2> >(tee -a "$OUT/run.log" >&2)
echo "busy cores after: $(busy_cores)" | tee -a "$OUT/env.txt" >&2
rm -rf "$WORKDIR"
cat "$OUT/table.md"
log "results: $OUT/latency.json, $OUT/table.md, $OUT/run.log"
