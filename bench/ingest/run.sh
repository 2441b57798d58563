#!/usr/bin/env bash
# Ingest benchmark: sustained Prometheus remote_write samples/s into Prometheus 2.42 and into
# Tidewatch (WAL synced before acknowledging, and not), with the same pre-encoded requests from
# the same sender (bench/src/bin/rw_load.rs), the sender pinned to one core and the server to the
# other. See bench/ingest/README.md.
#
#   bench/ingest/run.sh                      # 10k and 100k series, all three servers
#   SERIES="10000" SERVERS="prometheus" bench/ingest/run.sh
#
# Every setting below can be overridden from the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERIES=${SERIES:-"10000 100000"}
SERVERS=${SERVERS:-"prometheus tidewatch-fsync tidewatch-nofsync"}
SAMPLES=${SAMPLES:-20000000}              # per run at most, warm-up round included (rw_load --samples)
DURATION=${DURATION:-60}                  # seconds of measurement at most (rw_load --duration)
CONNECTIONS=${CONNECTIONS:-4}
SAMPLES_PER_REQUEST=${SAMPLES_PER_REQUEST:-2000}
SAMPLES_PER_SERIES=${SAMPLES_PER_SERIES:-1}     # samples per TimeSeries (Prometheus sends 1)
LABELS_PER_SERIES=${LABELS_PER_SERIES:-10}
INTERVAL_MS=${INTERVAL_MS:-1000}
MAX_MEMORY_MIB=${MAX_MEMORY_MIB:-2048}
SENDER_CPU=${SENDER_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
PIN=${PIN:-1}                             # 0: no taskset at all (sender and server share both cores)
QUIET_CORES=${QUIET_CORES:-0.15}          # before a run, wait until the machine uses less than this
QUIET_WAIT_S=${QUIET_WAIT_S:-900}         # ... but no longer than this
MAX_OTHER_CORES=${MAX_OTHER_CORES:-0.10}  # after a run, retry it when other processes used more
RETRIES=${RETRIES:-2}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
TIDEWATCH_GIVEN=${TIDEWATCH:+1}           # a binary given by path is used as it is, not built
TIDEWATCH=${TIDEWATCH:-$ROOT/target/release/tidewatch}
RW_LOAD=${RW_LOAD:-$ROOT/target/release/rw_load}
OUT=${OUT:-$ROOT/target/bench-ingest/$(date -u +%Y%m%dT%H%M%SZ)}
BUILD=${BUILD:-1}

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }

# --- build ---------------------------------------------------------------------------------------
TIDEWATCH_OK=1
if [[ $BUILD == 1 ]]; then
    log "building rw_load (cargo build --release -p tidewatch-bench)"
    (cd "$ROOT" && cargo build --release -p tidewatch-bench) >"$OUT/build-bench.log" 2>&1 ||
        { log "rw_load does not build; see $OUT/build-bench.log"; exit 2; }
    if [[ $SERVERS == *tidewatch* && -z $TIDEWATCH_GIVEN ]]; then
        log "building tidewatch (cargo build --release -p tidewatch)"
        if ! (cd "$ROOT" && cargo build --release -p tidewatch) >"$OUT/build-tidewatch.log" 2>&1; then
            TIDEWATCH_OK=0
            log "TIDEWATCH DOES NOT BUILD: its runs are skipped (see $OUT/build-tidewatch.log)"
            grep -E '^error' "$OUT/build-tidewatch.log" | head -5 >&2 || true
        fi
    fi
fi
[[ -x $RW_LOAD ]] || { log "no $RW_LOAD"; exit 2; }
if [[ $SERVERS == *tidewatch* && ! -x $TIDEWATCH ]]; then TIDEWATCH_OK=0; fi

# --- what was measured ---------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "prometheus: $($PROMETHEUS --version 2>&1 | head -1)"
    if [[ $TIDEWATCH_OK == 1 ]]; then echo "tidewatch: $($TIDEWATCH --version 2>&1 | head -1)"; else echo "tidewatch: not built"; fi
    echo "rustc: $(rustc --version)"
    echo "workspace: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes')"
    echo "settings: series=[$SERIES] servers=[$SERVERS] samples=$SAMPLES duration=$DURATION connections=$CONNECTIONS samples_per_request=$SAMPLES_PER_REQUEST samples_per_series=$SAMPLES_PER_SERIES labels_per_series=$LABELS_PER_SERIES interval_ms=$INTERVAL_MS pin=$PIN sender_cpu=$SENDER_CPU server_cpu=$SERVER_CPU"
} | tee "$OUT/environment.txt" >&2

# --- helpers -------------------------------------------------------------------------------------
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }

# Waits until the whole machine uses less than QUIET_CORES over 5 s (other people's builds), or
# QUIET_WAIT_S has passed. Sets QUIET to the cores in use it saw last.
QUIET=""
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT_S)) a b
    while :; do
        a=$(busy_ticks); sleep 5; b=$(busy_ticks)
        QUIET=$(awk -v d=$((b - a)) 'BEGIN {printf "%.2f", d / 100 / 5}')
        if awk -v c="$QUIET" -v q="$QUIET_CORES" 'BEGIN {exit !(c < q)}'; then return 0; fi
        if ((SECONDS >= deadline)); then
            log "machine still busy ($QUIET cores in use) after ${QUIET_WAIT_S}s: measuring anyway"
            return 0
        fi
        log "machine busy: $QUIET cores in use by others ($(cut -d' ' -f1-3 /proc/loadavg)); waiting"
        sleep 20
    done
}

free_port() {
    local port
    for port in $(seq 19190 19290); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}

server_pid=""
stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server_pid" 2>/dev/null; then
        log "server $server_pid did not stop in 60 s: SIGKILL"
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# run_one KIND SERIES ATTEMPT: starts the server in a fresh folder, sends, stops it; appends one
# JSON line to $RESULTS and sets OTHER to the cores other processes used during the measured part
# (99 when the run failed).
OTHER=""
run_one() {
    local kind=$1 series=$2 attempt=$3 dir port pin_server=() pin_sender=() rc=0
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tidewatch-bench-ingest.XXXXXX")
    port=$(free_port)
    if [[ $PIN == 1 ]]; then pin_server=(taskset -c "$SERVER_CPU"); pin_sender=(--pin-cpu "$SENDER_CPU"); fi
    wait_quiet
    # Each server runs in its own folder, so neither finds a configuration file lying around.
    case $kind in
        prometheus)
            printf 'global:\n  scrape_interval: 1m\n' >"$dir/prometheus.yml"
            (cd "$dir" && exec "${pin_server[@]}" "$PROMETHEUS" --config.file="$dir/prometheus.yml" \
                --storage.tsdb.path="$dir/data" --web.listen-address="127.0.0.1:$port" \
                --web.enable-remote-write-receiver >"$dir/server.log" 2>&1) &
            ;;
        tidewatch-fsync)
            (cd "$dir" && exec "${pin_server[@]}" "$TIDEWATCH" server --listen "127.0.0.1:$port" \
                --data-dir "$dir/data" >"$dir/server.log" 2>&1) &
            ;;
        tidewatch-nofsync)
            printf 'metrics:\n  wal:\n    fsync: false\n' >"$dir/tidewatch.yaml"
            (cd "$dir" && exec "${pin_server[@]}" "$TIDEWATCH" --config "$dir/tidewatch.yaml" server \
                --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/server.log" 2>&1) &
            ;;
        *) log "unknown server $kind"; return 1 ;;
    esac
    server_pid=$!
    local ready=0
    for _ in $(seq 600); do
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        if curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready"; then ready=1; break; fi
        sleep 0.1
    done
    if [[ $ready != 1 ]]; then
        log "$kind did not become ready on port $port; its log:"
        tail -20 "$dir/server.log" >&2
        stop_server
        jq -cn --arg s "$kind" --argjson n "$series" '{server: $s, series: $n, error: "server did not become ready"}' >>"$RESULTS"
        OTHER=99
        return 0
    fi
    log "$kind, $series series (attempt $attempt): ready on 127.0.0.1:$port (pid $server_pid, $(readlink "/proc/$server_pid/exe")); machine at $QUIET cores before"
    "$RW_LOAD" --url "http://127.0.0.1:$port/api/v1/write" --series "$series" --samples "$SAMPLES" \
        --connections "$CONNECTIONS" --samples-per-request "$SAMPLES_PER_REQUEST" --samples-per-series "$SAMPLES_PER_SERIES" \
        --labels-per-series "$LABELS_PER_SERIES" --interval-ms "$INTERVAL_MS" \
        --max-memory-mib "$MAX_MEMORY_MIB" --duration "$DURATION" "${pin_sender[@]}" --watch-pid "$server_pid" \
        --label "$kind-$series" >"$dir/rw_load.json" 2>"$dir/rw_load.err" || rc=$?
    sed 's/^/    /' "$dir/rw_load.err" >&2
    # VmHWM is the peak resident size over the process' life: read before stopping it.
    local hwm threads
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo null)
    threads=$(awk '/Threads/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo null)
    stop_server
    local disk
    disk=$(du -sb "$dir/data" 2>/dev/null | cut -f1)
    if [[ ! -s $dir/rw_load.json ]]; then
        log "rw_load failed (exit $rc)"
        jq -cn --arg s "$kind" --argjson n "$series" --arg e "rw_load exit $rc: $(tail -3 "$dir/rw_load.err")" \
            '{server: $s, series: $n, error: $e}' >>"$RESULTS"
        OTHER=99
    else
        jq -c --arg s "$kind" --argjson a "$attempt" --argjson rc "$rc" --arg q "$QUIET" \
            --argjson hwm "${hwm:-null}" --argjson th "${threads:-null}" --argjson disk "${disk:-null}" \
            '. + {server: $s, attempt: $a, rw_load_exit: $rc, quiet_cores_before: ($q | tonumber),
                  server_peak_rss_kib: $hwm, server_threads: $th, data_dir_bytes_after_stop: $disk}' \
            "$dir/rw_load.json" >>"$RESULTS"
        OTHER=$(jq -r '.other_cpu_s / .elapsed_s' "$dir/rw_load.json")
    fi
    if [[ $rc != 0 ]]; then
        mkdir -p "$OUT/failed"
        cp "$dir/server.log" "$OUT/failed/$kind-$series-$attempt.server.log"
        cp "$dir/rw_load.err" "$OUT/failed/$kind-$series-$attempt.rw_load.err"
    fi
    rm -rf "$dir"
}

# --- the runs ------------------------------------------------------------------------------------
for series in $SERIES; do
    for kind in $SERVERS; do
        if [[ $kind == tidewatch* && $TIDEWATCH_OK != 1 ]]; then
            jq -cn --arg s "$kind" --argjson n "$series" '{server: $s, series: $n, error: "tidewatch not built"}' >>"$RESULTS"
            continue
        fi
        for attempt in $(seq 1 $((RETRIES + 1))); do
            run_one "$kind" "$series" "$attempt"
            if [[ $OTHER == 99 ]] || awk -v o="$OTHER" -v m="$MAX_OTHER_CORES" 'BEGIN {exit !(o <= m)}'; then break; fi
            if ((attempt <= RETRIES)); then
                log "other processes used $OTHER cores during the run (> $MAX_OTHER_CORES): retrying"
            else
                log "other processes used $OTHER cores during the run (> $MAX_OTHER_CORES): kept, marked noisy"
            fi
        done
    done
done

python3 "$ROOT/bench/ingest/report.py" "$RESULTS" "$OUT/environment.txt" | tee "$OUT/report.md"
log "results: $RESULTS, report: $OUT/report.md"
# Exit 1 when a run is missing or a request was not acknowledged, so that a script notices.
if jq -e -s 'any(.[]; has("error") or (.rw_load_exit // 0) != 0)' "$RESULTS" >/dev/null; then
    log "some runs failed or were not run (see the tables)"
    exit 1
fi
