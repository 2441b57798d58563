#!/usr/bin/env bash
# Latency from a remote-written sample's acknowledgement to the webhook delivery. One Debian
# Prometheus 2.42 (evaluation_interval 1s, rule `lat_trigger > 0`, for: 0) sends its alerts to
# two Alertmanagers at once: Debian's 0.25 (/usr/bin/prometheus-alertmanager) and Tidewatch's
# (in process), both with group_wait 0 and their own webhook receiver. TRIALS (default 40).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -p tidewatch-alertmanager --test notify_storm -- --ignored --nocapture --test-threads=1 latency \
  2>&1 | grep -E '^(LATENCY|SKIP)'
