#!/bin/sh
# Over-provisioning and reaction time of the autoscaler: Tidewatch's default policy (1 s
# evaluation, 1 s metrics) next to an HPA-default policy (15 s sync, metrics-server's 15-60 s
# old values), both driving the real algorithm through the simulator on the same seeded load.
# Simulated time: the figures do not depend on the machine or the build profile.
# Usage: bench/autoscaler/run.sh [--seed N]
set -eu
cd "$(dirname "$0")/../.."
exec cargo run --quiet -p tidewatch-autoscaler --example overprovision -- "$@"
