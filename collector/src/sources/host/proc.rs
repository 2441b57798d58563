//! Parsers for the /proc files node_exporter reads, each emitting node_exporter's series.

use std::io::Read;
use std::path::Path;

use regex::Regex;

use super::Emitter;

/// Reads `path` into `buf`, reusing its allocation.
pub(crate) fn read_into(path: &Path, buf: &mut String) -> std::io::Result<()> {
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// The sixteen counters of one `/proc/net/dev` line, in the file's column order.
type NetDevCounters = [u64; 16];

/// Column names of `/proc/net/dev`, as node_exporter names them (`receive_<x>_total`).
const NET_DEV_COLUMNS: [&str; 16] = [
    "node_network_receive_bytes_total",
    "node_network_receive_packets_total",
    "node_network_receive_errs_total",
    "node_network_receive_drop_total",
    "node_network_receive_fifo_total",
    "node_network_receive_frame_total",
    "node_network_receive_compressed_total",
    "node_network_receive_multicast_total",
    "node_network_transmit_bytes_total",
    "node_network_transmit_packets_total",
    "node_network_transmit_errs_total",
    "node_network_transmit_drop_total",
    "node_network_transmit_fifo_total",
    "node_network_transmit_colls_total",
    "node_network_transmit_carrier_total",
    "node_network_transmit_compressed_total",
];

/// Calls `each(interface, counters)` for each interface line of a `/proc/net/dev` text; lines
/// that do not parse are skipped (the two header lines among them).
pub(crate) fn parse_net_dev(text: &str, mut each: impl FnMut(&str, &NetDevCounters)) {
    for line in text.lines() {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        let mut counters = [0u64; 16];
        let mut n = 0;
        for (slot, field) in counters.iter_mut().zip(rest.split_ascii_whitespace()) {
            match field.parse() {
                Ok(v) => *slot = v,
                Err(_) => break,
            }
            n += 1;
        }
        if n == 16 {
            each(iface.trim(), &counters);
        }
    }
}

pub(super) fn emit_net_dev(text: &str, exclude: &Regex, out: &mut Emitter) {
    parse_net_dev(text, |iface, counters| {
        if exclude.is_match(iface) {
            return;
        }
        for (name, v) in NET_DEV_COLUMNS.iter().zip(counters) {
            out.push(name, &[("device", iface)], *v as f64);
        }
    });
}

const CPU_MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// `/proc/stat`: per-CPU times (in clock ticks) and the kernel's counters.
pub(super) fn emit_stat(text: &str, ticks: f64, out: &mut Emitter) {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        let first = |f: &mut std::str::SplitAsciiWhitespace| f.next().and_then(|v| v.parse::<f64>().ok());
        match key {
            // The aggregate `cpu` line is not exported by node_exporter; only `cpuN`.
            k if k.starts_with("cpu") && k.len() > 3 => {
                let cpu = &k[3..];
                let values: Vec<f64> = fields.filter_map(|v| v.parse::<f64>().ok()).collect();
                for (mode, v) in CPU_MODES.iter().zip(&values) {
                    out.push("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], v / ticks);
                }
                for (mode, v) in ["user", "nice"].iter().zip(values.iter().skip(8)) {
                    out.push(
                        "node_cpu_guest_seconds_total",
                        &[("cpu", cpu), ("mode", mode)],
                        v / ticks,
                    );
                }
            }
            "intr" => {
                if let Some(v) = first(&mut fields) {
                    out.push("node_intr_total", &[], v);
                }
            }
            "ctxt" | "btime" | "processes" | "procs_running" | "procs_blocked" => {
                let name = match key {
                    "ctxt" => "node_context_switches_total",
                    "btime" => "node_boot_time_seconds",
                    "processes" => "node_forks_total",
                    "procs_running" => "node_procs_running",
                    _ => "node_procs_blocked",
                };
                if let Some(v) = first(&mut fields) {
                    out.push(name, &[], v);
                }
            }
            _ => {}
        }
    }
}

/// `/proc/meminfo`: every field as `node_memory_<Field>_bytes` (kB fields) or
/// `node_memory_<Field>` (counts), with `Active(anon)` spelled `Active_anon` as node_exporter does.
pub(super) fn emit_meminfo(text: &str, out: &mut Emitter) {
    let mut name = String::with_capacity(64);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_ascii_whitespace();
        let Some(value) = parts.next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let unit = parts.next();
        name.clear();
        name.push_str("node_memory_");
        for c in key.chars() {
            match c {
                '(' => name.push('_'),
                ')' => {}
                c => name.push(c),
            }
        }
        let value = if unit.is_some() {
            name.push_str("_bytes");
            value * 1024.0
        } else {
            value
        };
        out.push(&name, &[], value);
    }
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub(super) fn emit_loadavg(text: &str, out: &mut Emitter) {
    for (name, v) in ["node_load1", "node_load5", "node_load15"]
        .iter()
        .zip(text.split_ascii_whitespace())
    {
        if let Ok(v) = v.parse::<f64>() {
            out.push(name, &[], v);
        }
    }
}

/// `/proc/diskstats` columns after the device name: (metric, scale). Sectors are 512 bytes
/// whatever the device's block size, and times are milliseconds.
const DISK_COLUMNS: [(&str, f64); 17] = [
    ("node_disk_reads_completed_total", 1.0),
    ("node_disk_reads_merged_total", 1.0),
    ("node_disk_read_bytes_total", 512.0),
    ("node_disk_read_time_seconds_total", 0.001),
    ("node_disk_writes_completed_total", 1.0),
    ("node_disk_writes_merged_total", 1.0),
    ("node_disk_written_bytes_total", 512.0),
    ("node_disk_write_time_seconds_total", 0.001),
    ("node_disk_io_now", 1.0),
    ("node_disk_io_time_seconds_total", 0.001),
    ("node_disk_io_time_weighted_seconds_total", 0.001),
    ("node_disk_discards_completed_total", 1.0),
    ("node_disk_discards_merged_total", 1.0),
    ("node_disk_discarded_sectors_total", 1.0),
    ("node_disk_discard_time_seconds_total", 0.001),
    ("node_disk_flush_requests_total", 1.0),
    ("node_disk_flush_requests_time_seconds_total", 0.001),
];

pub(super) fn emit_diskstats(text: &str, exclude: &Regex, out: &mut Emitter) {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace().skip(2);
        let Some(device) = fields.next() else { continue };
        if exclude.is_match(device) {
            continue;
        }
        for ((name, scale), v) in DISK_COLUMNS.iter().zip(fields) {
            if let Ok(v) = v.parse::<f64>() {
                out.push(name, &[("device", device)], v * scale);
            }
        }
    }
}

/// `node_uname_info` with uname(2)'s fields as labels.
pub(super) fn emit_uname(out: &mut Emitter) {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    let (sysname, release, version, machine, nodename) = (
        s(u.sysname()),
        s(u.release()),
        s(u.version()),
        s(u.machine()),
        s(u.nodename()),
    );
    let domainname = s(u.domainname());
    out.push(
        "node_uname_info",
        &[
            ("domainname", &domainname),
            ("machine", &machine),
            ("nodename", &nodename),
            ("release", &release),
            ("sysname", &sysname),
            ("version", &version),
        ],
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use tidewatch_model::Labels;

    use super::*;

    fn names_values(series: &[tidewatch_model::Series]) -> Vec<(String, f64)> {
        series
            .iter()
            .map(|s| (s.labels.to_string(), s.samples[0].value))
            .collect()
    }

    #[test]
    fn meminfo_names_follow_node_exporter() {
        let base = Labels::new();
        let mut out = Emitter::new(&base, 0);
        emit_meminfo(
            "MemTotal:  1000 kB\nActive(anon):   2 kB\nHugePages_Total:       3\n",
            &mut out,
        );
        let got = names_values(&out.into_series());
        assert_eq!(
            got,
            vec![
                ("node_memory_MemTotal_bytes{}".to_string(), 1_024_000.0),
                ("node_memory_Active_anon_bytes{}".to_string(), 2048.0),
                ("node_memory_HugePages_Total{}".to_string(), 3.0),
            ]
        );
    }

    #[test]
    fn net_dev_skips_headers_and_short_lines() {
        let text = "Inter-|   Receive\n face |bytes\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n bad: 1 2\n";
        let mut seen = Vec::new();
        parse_net_dev(text, |i, c| seen.push((i.to_string(), c[0], c[15])));
        assert_eq!(seen, vec![("eth0".to_string(), 1, 16)]);
    }

    #[test]
    fn stat_reports_per_cpu_lines_only() {
        let base = Labels::new();
        let mut out = Emitter::new(&base, 0);
        emit_stat(
            "cpu 1 1 1 1 1 1 1 1 0 0\ncpu0 100 0 50 0 0 0 0 0 10 0\nctxt 7\nbtime 99\n",
            100.0,
            &mut out,
        );
        let got = names_values(&out.into_series());
        assert!(
            got.contains(&(r#"node_cpu_seconds_total{cpu="0", mode="user"}"#.to_string(), 1.0)),
            "{got:?}"
        );
        assert!(got.contains(&(r#"node_cpu_guest_seconds_total{cpu="0", mode="user"}"#.to_string(), 0.1)));
        assert!(got.contains(&("node_context_switches_total{}".to_string(), 7.0)));
        assert!(got.contains(&("node_boot_time_seconds{}".to_string(), 99.0)));
        assert_eq!(
            got.iter()
                .filter(|(n, _)| n.starts_with("node_cpu_seconds_total"))
                .count(),
            8
        );
    }
}
