#!/usr/bin/env bash
# Disk size: bytes per sample of whole block folders, Tidewatch ÷ Prometheus, on the real
# node_exporter data and on synthetic counters, gauges and random floats (fixed seed).
#
# Usage: bench/disk/run.sh            (from anywhere; needs cargo, python3, gzip, promtool)
# Writes bench/disk/results/<date>-<machine>/{raw.csv,summary.md,details.txt} and prints the summary.
#
# Tidewatch: the data is cut into level-1 blocks on fixed boundaries, as the head cuts them
# (10 minutes for the 30-minute real file, 30 minutes for the 2-hour synthetic files), then
# compacted into one block; the figure is that block's folder (samples.parquet, series.parquet,
# meta.json). Prometheus: `promtool tsdb create-blocks-from openmetrics` on the same file; each
# data set fits in one 2-hour block, which is what Prometheus' compaction would leave, so the
# figure is that block's folder (chunks/, index, meta.json, tombstones).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
real_gz="${REAL_FILE:-$repo/../shared/data/node-metrics/node-1s-30m.om.gz}"
machine="${MACHINE:-$(nproc)cpu-$(uname -m)}"
out="$repo/bench/disk/results/$(date -u +%F)-$machine"
work="$(mktemp -d -t tidewatch-disk.XXXXXX)"
trap 'rm -rf "$work"' EXIT

command -v promtool >/dev/null || { echo "promtool missing: apt-get install -y prometheus" >&2; exit 1; }
cargo build --release -q -p tidewatch-store --example block_size --manifest-path "$repo/Cargo.toml"
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
block_size="$target_dir/release/examples/block_size"

gzip -dc "$real_gz" >"$work/real.om"
for kind in counters gauges floats; do
    python3 "$repo/bench/disk/synth.py" "$kind" --series 2000 --hours 2 --interval-s 15 --seed 42 >"$work/$kind.om"
done

mkdir -p "$out"
csv="$out/raw.csv"
echo "dataset,samples,series,prometheus_bytes,tidewatch_level1_bytes,tidewatch_bytes,prometheus_bytes_per_sample,tidewatch_bytes_per_sample,ratio,parse_lines_per_second,tidewatch_write_s,tidewatch_compact_s,promtool_s" >"$csv"
: >"$out/details.txt"
for ds in real counters gauges floats; do
    cut_ms=1800000
    [[ $ds == real ]] && cut_ms=600000
    started=$(date +%s%N)
    promtool tsdb create-blocks-from openmetrics -q "$work/$ds.om" "$work/prom-$ds" >/dev/null
    promtool_s=$(( ($(date +%s%N) - started) / 1000000 ))e-3
    prom_bytes=$(find "$work/prom-$ds" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
    "$block_size" "$work/$ds.om" "$work/tw-$ds" --cut-ms "$cut_ms" >"$work/tw-$ds.txt"
    { echo "== $ds"; cat "$work/tw-$ds.txt"; echo "prometheus_files:"; find "$work/prom-$ds" -type f -printf '  %P %s\n'; } >>"$out/details.txt"
    get() { sed -n "s/^$1=//p" "$work/tw-$ds.txt"; }
    samples=$(get samples)
    python3 - "$ds" "$samples" "$(get series)" "$prom_bytes" "$(get level1_bytes)" "$(get compacted_bytes)" \
        "$(get parse_lines_per_second)" "$(get level1_write_seconds)" "$(get compact_seconds)" "$promtool_s" >>"$csv" <<'PY'
import sys
ds, samples, series, prom, l1, tw, lps, w, c, p = sys.argv[1:]
samples, prom, tw = int(samples), int(prom), int(tw)
print(f"{ds},{samples},{series},{prom},{l1},{tw},{prom/samples:.4f},{tw/samples:.4f},{tw/prom:.3f},{lps},{w},{c},{float(p):.2f}")
PY
done

python3 - "$csv" >"$out/summary.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
goal = {"real": "≤ 0.7", "counters": "≤ 0.7", "gauges": "≤ 0.7", "floats": "reported"}
print("| data | samples | series | Prometheus bytes/sample | Tidewatch bytes/sample | Tidewatch ÷ Prometheus | goal |")
print("|---|---:|---:|---:|---:|---:|---|")
for r in rows:
    print(f"| {r['dataset']} | {int(r['samples']):,} | {int(r['series']):,} | {float(r['prometheus_bytes_per_sample']):.3f} "
          f"| {float(r['tidewatch_bytes_per_sample']):.3f} | **{float(r['ratio']):.2f}** | {goal[r['dataset']]} |")
PY
cat "$out/summary.md"
echo "(raw: $csv)"
