#!/bin/sh
# PromQL conformance: replays Prometheus' own engine test scripts (../shared/conformance/promql,
# format in SOURCE.txt there) against a server through its HTTP API, with the harness in
# tidewatch-testkit (testkit/src/promqltest, entry point testkit/examples/promqltest.rs).
#
#   bench/promql/conformance.sh                     # against Prometheus 2.42 (/usr/bin/prometheus)
#   TARGET=tidewatch bench/promql/conformance.sh    # against `tidewatch server` (cargo build first)
#   EXTRA=--extra-checks bench/promql/conformance.sh   # + Prometheus' range-mode and @ re-runs
#   VERSIONS="v2.42.0" bench/promql/conformance.sh  # script sets to run (default: v2.42.0 v3.5.0)
#
# Prints the per-file table and the counts of each script set; the full text reports (with every
# diff) and JSON summaries go to $OUT (default target/promql-conformance). Native-histogram cases
# of v3.x are skipped and counted as skipped. Exit status: 1 if a v2.42.0 case failed.
set -eu
cd "$(dirname "$0")/../.."

SCRIPTS=${TIDEWATCH_PROMQL_SCRIPTS:-$(cd .. && pwd)/shared/conformance/promql}
TARGET=${TARGET:-prometheus}
VERSIONS=${VERSIONS:-v2.42.0 v3.5.0}
OUT=${OUT:-target/promql-conformance}
EXTRA=${EXTRA:-}

mkdir -p "$OUT"
cargo build --quiet -p tidewatch-testkit --example promqltest
bin=target/debug/examples/promqltest

status=0
for version in $VERSIONS; do
    started=$(date +%s)
    rc=0
    # shellcheck disable=SC2086 # EXTRA holds zero or more flags
    "$bin" --target "$TARGET" --scripts "$SCRIPTS/$version" --max-diffs 1000 \
        --json "$OUT/$version.json" $EXTRA >"$OUT/$version.txt" || rc=$?
    if [ "$rc" -ge 2 ]; then
        echo "promqltest failed to run against $TARGET for $version (exit $rc)" >&2
        exit "$rc"
    fi
    echo "== $version against $TARGET ($(($(date +%s) - started)) s)"
    # The table, the totals and the skip / failure kinds; diffs are in $OUT/$version.txt.
    sed -n '/^FAIL /q;/^\.\.\. and /q;p' "$OUT/$version.txt" | sed '/^$/d'
    echo
    if [ "$version" = v2.42.0 ] && [ "$rc" -ne 0 ]; then
        status=1
    fi
done
echo "reports: $OUT/<version>.txt (every diff), $OUT/<version>.json (summary)"
exit "$status"
