#!/usr/bin/env bash
# The log store's figures (issue 4), all in one run of store/examples/logs_bench.rs:
#   1. indexing throughput of the whole path (HTTP push → fsynced WAL → tantivy commit,
#      searchable), MB/s of raw text, next to tantivy alone with the same schema, tokenizer,
#      settings, threads and writer memory, on the loghub lines repeated to $MB MB;
#   2. bytes on disk ÷ raw bytes, both;
#   3. ack → searchable latency (one line pushed, polled through query_range);
#   4. query latency through the HTTP API over $QUERY_LINES lines (a rare-token needle over
#      all time, a `|=` filter over 1 h, `sum by (service) (count_over_time(...[5m]))` over
#      24 h), each next to grep -F over the same lines as a raw file.
#
#   bench/logs/run.sh                       # 200 MB, 10M lines
#   MB=50 QUERY_LINES=0 bench/logs/run.sh   # throughput and size only
#
# The loghub files are read from $DATA, never copied into the repository; the work folder
# ($DIR, wiped) holds the indexes and the raw file (~1.4 GB for 10M lines).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA=${DATA:-/work/shared/data/loghub}
DIR=${DIR:-/tmp/tidewatch-logs-bench}
MB=${MB:-200}
QUERY_LINES=${QUERY_LINES:-10000000}
THREADS=${THREADS:-2}
WRITER_MB=${WRITER_MB:-256}
COMMIT_MS=${COMMIT_MS:-1000}
PUSHERS=${PUSHERS:-2}
BATCH_LINES=${BATCH_LINES:-4000}
RUNS=${RUNS:-20}
BUILD=${BUILD:-1}
# The binary; a build with another CARGO_TARGET_DIR is given here (and BUILD=0).
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/logs_bench}

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    cargo build --release -p tidewatch-store --example logs_bench
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), rustc $(rustc -V | cut -d' ' -f2)"
exec "$BIN" --data "$DATA" --dir "$DIR" --mb "$MB" \
    --query-lines "$QUERY_LINES" --threads "$THREADS" --writer-mb "$WRITER_MB" --commit-ms "$COMMIT_MS" \
    --pushers "$PUSHERS" --batch-lines "$BATCH_LINES" --runs "$RUNS"
