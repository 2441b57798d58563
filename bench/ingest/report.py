#!/usr/bin/env python3
"""Turns bench/ingest/run.sh's results.jsonl into Markdown tables.

usage: report.py RESULTS.jsonl [ENVIRONMENT.txt]

The last attempt of each (server, series) counts; earlier attempts were retried because other
processes used the machine meanwhile.
"""
import json
import sys

NAMES = {
    "prometheus": "Prometheus 2.42",
    "tidewatch-fsync": "Tidewatch (fsync)",
    "tidewatch-nofsync": "Tidewatch (no fsync)",
}


def fmt_int(v):
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "—"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    if len(sys.argv) > 2:
        print("```")
        print(open(sys.argv[2]).read().rstrip())
        print("```")
        print()
    last, attempts = {}, {}
    for r in rows:
        key = (r["server"], r["series"])
        last[key] = r
        attempts[key] = attempts.get(key, 0) + 1
    series_list = sorted({k[1] for k in last})

    def rate(server, series):
        r = last.get((server, series))
        if r is None:
            return None, "not run"
        if "error" in r:
            return None, r["error"]
        if r.get("non_2xx", 0) or r.get("transport_errors", 0):
            note = f"{r.get('non_2xx', 0)} non-2xx, {r.get('transport_errors', 0)} transport errors"
            return r["samples_per_s"], note
        return r["samples_per_s"], ""

    print("| series | Prometheus 2.42 | Tidewatch (fsync) | ÷ Prometheus | Tidewatch (no fsync) | ÷ Prometheus |")
    print("|---:|---:|---:|---:|---:|---:|")
    notes = []
    for n in series_list:
        cells = [f"{n:,}"]
        prom, pnote = rate("prometheus", n)
        cells.append(fmt_int(prom) if prom is not None else f"not run: {pnote}")
        if pnote and prom is not None:
            notes.append(f"Prometheus at {n:,} series: {pnote}")
        for server in ("tidewatch-fsync", "tidewatch-nofsync"):
            v, note = rate(server, n)
            cells.append(fmt_int(v) if v is not None else f"not run: {note}")
            if note and v is not None:
                notes.append(f"{NAMES[server]} at {n:,} series: {note}")
            cells.append(f"{v / prom:.2f}" if v is not None and prom else "—")
        print("| " + " | ".join(cells) + " |")
    print()
    for note in notes:
        print(f"- {note}")
    if notes:
        print()

    print("| run | samples/s | requests/s | latency p50 / p99 ms | server cores | samples per server CPU-s "
          "| sender cores | other cores | peak RSS MiB | data dir bytes/sample | attempts |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (server, n), r in sorted(last.items(), key=lambda kv: (kv[0][1], list(NAMES).index(kv[0][0]))):
        name = f"{NAMES.get(server, server)}, {n:,}"
        if "error" in r:
            print(f"| {name} | {r['error']} |  |  |  |  |  |  |  |  |  |")
            continue
        el = r["elapsed_s"]
        server_cores = r["server_cpu_s"] / el if r.get("server_cpu_s") is not None else None
        per_cpu = r["samples_ok"] / r["server_cpu_s"] if r.get("server_cpu_s") else None
        rss = r.get("server_peak_rss_kib")
        total = r["warmup_samples"] + r["samples_ok"]
        disk = r.get("data_dir_bytes_after_stop")
        print(
            f"| {name} | {fmt_int(r['samples_per_s'])} | {r['requests_per_s']:.1f} "
            f"| {r['latency_ms_p50']:.1f} / {r['latency_ms_p99']:.1f} "
            f"| {server_cores:.2f} | {fmt_int(per_cpu)} | {r['sender_cpu_s'] / el:.2f} | {r['other_cpu_s'] / el:.2f} "
            f"| {rss / 1024:.0f} | {disk / total:.2f} | {attempts[(server, n)]} |"
            if server_cores is not None and rss is not None and disk
            else f"| {name} | {fmt_int(r['samples_per_s'])} | {r['requests_per_s']:.1f} "
            f"| {r['latency_ms_p50']:.1f} / {r['latency_ms_p99']:.1f} | — | — | — | — | — | — | {attempts[(server, n)]} |"
        )
    print()
    for n in series_list:
        runs = [r for (server, m), r in last.items() if m == n and "error" not in r]
        if runs:
            r = runs[0]
            print(
                f"- {n:,} series: up to {r['rounds']:,} rounds of one sample per series encoded before the clock "
                f"starts ({r['warmup_rounds']} warm-up round not timed), {r['samples_per_request']} samples per "
                f"request, {r['connections']} connections, {r['labels_per_series']} labels per series; measured "
                + ", ".join(f"{NAMES.get(x['server'], x['server'])} {x['samples_ok']:,} samples in {x['elapsed_s']:.0f} s"
                            for x in runs)
                + "."
            )

if __name__ == "__main__":
    main()
