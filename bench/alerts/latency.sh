#!/usr/bin/env bash
# Latency from a remote-written sample's acknowledgement to the webhook delivery (issue 7), both
# sides in one run, TRIALS each (default 40):
# - the peer: one Debian Prometheus 2.42 (evaluation_interval 1s, rule `lat_trigger > 0`,
#   for: 0) sending to Debian's Alertmanager 0.25 (/usr/bin/prometheus-alertmanager), group_wait
#   0 (and, in the same test, to Tidewatch's Alertmanager in process);
# - Tidewatch alone: `tidewatch up` with the same rule and group_wait 0; its rule engine
#   evaluates rules without `for` as soon as a write is acknowledged.
# PROFILE=release (default debug: the path measured is not CPU-bound, and a release build of
# the workspace takes ~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
export TRIALS=${TRIALS:-40}
flag=()
[[ ${PROFILE:-debug} == release ]] && flag=(--release)
cargo build "${flag[@]}" -p tidewatch --bin tidewatch
cargo test "${flag[@]}" -p tidewatch-alertmanager --test notify_storm -- --ignored --nocapture --test-threads=1 latency \
  2>&1 | grep -oE '(LATENCY|SKIP).*'
cargo test "${flag[@]}" -p tidewatch --test tidewatch -- --ignored --nocapture --test-threads=1 latency_sample_to_webhook \
  2>&1 | grep -oE '(LATENCY|SKIP).*'
