#!/usr/bin/env python3
"""Writes synthetic series as OpenMetrics text with timestamps, for the disk-size benchmark.

Usage: synth.py KIND [--series N] [--hours H] [--interval-s S] [--seed SEED] > out.om

KIND is one of:
  counters  integer counters; each series has a rate r, log-uniform in [1, 10^4] per scrape,
            and adds a random integer in [0, 2r] at every scrape
  gauges    random walks: half integer-valued (bytes, steps of 4096 up to +-100 pages),
            half with two decimals (e.g. a temperature, steps up to +-0.5)
  floats    uniform random floats in [0, 1), full precision (reported, not judged)

Series are spread over 10 scrape targets; every series of a target shares its timestamps, which
start on a 2-hour boundary plus a per-target offset and step by exactly the interval (no jitter).
The same seed always writes the same file.
"""
import argparse
import random
import sys

p = argparse.ArgumentParser()
p.add_argument("kind", choices=["counters", "gauges", "floats"])
p.add_argument("--series", type=int, default=2000)
p.add_argument("--hours", type=float, default=2.0)
p.add_argument("--interval-s", type=float, default=15.0)
p.add_argument("--seed", type=int, default=42)
a = p.parse_args()

rng = random.Random(a.seed)
start_ms = 1795428000000  # 2026-11-23 10:00 UTC, a 2-hour boundary
interval_ms = int(a.interval_s * 1000)
n = int(a.hours * 3600 * 1000 // interval_ms)
targets = 10
offsets = [rng.randrange(interval_ms) for _ in range(targets)]
out = sys.stdout
name = {"counters": "synth_events_total", "gauges": "synth_level", "floats": "synth_random"}[a.kind]
out.write(f"# TYPE {name} unknown\n")
for i in range(a.series):
    t = i % targets
    labels = f'{name}{{instance="host-{t}:9100",job="synth",series="{i}"}}'
    ts0 = start_ms + offsets[t]
    lines = []
    if a.kind == "counters":
        rate = 10 ** rng.uniform(0, 4)
        v = rng.randrange(1_000_000)
        for j in range(n):
            v += rng.randint(0, int(2 * rate))
            lines.append(f"{labels} {v} {(ts0 + j * interval_ms) / 1000:.3f}\n")
    elif a.kind == "gauges":
        if i % 2 == 0:
            v = rng.randrange(1 << 18) * 4096
            for j in range(n):
                v = max(0, v + rng.randint(-100, 100) * 4096)
                lines.append(f"{labels} {v} {(ts0 + j * interval_ms) / 1000:.3f}\n")
        else:
            c = rng.randrange(2000, 8000)  # hundredths
            for j in range(n):
                c += rng.randint(-50, 50)
                lines.append(f"{labels} {c // 100}.{c % 100:02d} {(ts0 + j * interval_ms) / 1000:.3f}\n")
    else:
        for j in range(n):
            lines.append(f"{labels} {rng.random()!r} {(ts0 + j * interval_ms) / 1000:.3f}\n")
    out.writelines(lines)
out.write("# EOF\n")
