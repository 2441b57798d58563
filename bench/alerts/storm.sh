#!/usr/bin/env bash
# Alert storm: 10,000 alerts in 100 groups (group_by [group], group_wait 5s), POSTed to
# /api/v2/alerts in batches of 64 by 4 concurrent senders, delivered to a webhook receiver.
# Sides: Tidewatch's Alertmanager (in process) and Debian's Alertmanager 0.25
# (/usr/bin/prometheus-alertmanager, package prometheus-alertmanager), same config, same load.
# Prints one STORM line per side: accept time, drain time (first POST -> last notification),
# notifications, distinct alerts notified, peak RSS (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -p tidewatch-alertmanager --test notify_storm -- --ignored --nocapture --test-threads=1 storm_ 2>&1 \
  | grep -E '^(STORM|SKIP)'
