#!/bin/sh
# Log path throughput of the agent: tail a file of 200-byte lines -> disk buffer -> Loki push to a
# real `tidewatch server`, in MiB per CPU-second of the agent. The agent (the test process) runs on
# core 0, the server on core 1. Usage: [TW_BENCH_MIB=64] bench/collector/logs.sh
set -eu
cd "$(dirname "$0")/../.."
# Only the agent's CPU is counted, so the receiving server may be a debug build.
[ -x target/release/tidewatch ] && bin=target/release/tidewatch || bin=target/debug/tidewatch
[ -x "$bin" ] || cargo build --bin tidewatch
# Its own target folder: a release build of the collector alone, without waiting on others'.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/bench-collector}"
export TIDEWATCH_BIN="$PWD/$bin" TW_SERVER_CPU=1 TW_BENCH_MIB="${TW_BENCH_MIB:-64}"
cargo test --release -p tidewatch-collector --test logs_throughput --no-run
for run in 1 2 3; do
  taskset -c 0 cargo test --release -p tidewatch-collector --test logs_throughput -- --ignored --nocapture 2>&1 |
    grep -oE 'log path:.*'
done
