#!/usr/bin/env bash
# Scheduler figures: scale-to-ready next to `docker service scale` on Swarm, and endpoint overhead
# with wrk. Needs the Docker engine, wrk (Debian package `wrk`) and no running swarm of value
# (a single-node swarm is initialised and left again when none is active).
# Usage: bench/scheduler/run.sh [SAMPLES=20] [WRK_SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The replica: a persistent-connection HTTP server, static, in a FROM scratch image (no pulls).
rustc -O -C target-feature=+crt-static scheduler/examples/keepalive_server.rs -o "$tmp/keepalive_server"
printf 'FROM scratch\nCOPY keepalive_server /server\nENTRYPOINT ["/server"]\nCMD ["8080"]\n' > "$tmp/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t tidewatch-bench/keepalive "$tmp" >/dev/null
cargo run --release -q -p tidewatch-scheduler --example bench_scheduler -- "${1:-20}" "${2:-10}"
