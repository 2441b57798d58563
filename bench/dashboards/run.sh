#!/usr/bin/env bash
# Dashboard draw time in headless Chromium: 8 panels, each an aggregation over 6 h of 1,000
# source series (15 s), step = range / 1,000; Tidewatch (release) against Prometheus 2.42 behind
# the same UI. Prints the numbers; paste them into bench/dashboards/RESULTS.md.
#
#   bench/dashboards/run.sh            # needs target/release/tidewatch (cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
export TIDEWATCH_BIN=${TIDEWATCH_BIN:-$PWD/target/release/tidewatch}
[[ -x $TIDEWATCH_BIN ]] || { echo "no release binary at $TIDEWATCH_BIN: cargo build --release" >&2; exit 2; }
echo "tidewatch: $("$TIDEWATCH_BIN" --version 2>&1 | head -1); prometheus: $(/usr/bin/prometheus --version 2>&1 | head -1)"
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null); cpus: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
# The harness itself is a debug build: it only sends data and drives the browser.
cargo run -p tidewatch-dashboards --example dashboard_bench
