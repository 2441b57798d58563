//! `rw_load`: a Prometheus remote_write load generator.
//!
//! Every request is encoded before the clock starts (node_exporter-like series, one new sample per
//! series per round, each request distinct), then sent over N keep-alive HTTP/1.1 connections,
//! one blocking thread each, every request waiting for its response. Series `i` always travels on
//! connection `i % N`, as Prometheus shards by series, so each series' samples arrive in order.
//!
//! Prints a human summary on stderr and one JSON line on stdout. Exits 1 when any request was not
//! acknowledged with 2xx, 2 when the run could not start.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tidewatch_bench::http::{Conn, Url};
use tidewatch_bench::rw::{Plan, decode_body, encode_labels, series};

/// Sends pre-encoded Prometheus remote_write requests and reports the sustained rate.
#[derive(Parser, Debug, Clone)]
#[command(name = "rw_load", version)]
struct Args {
    /// The remote_write endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9090/api/v1/write")]
    url: String,
    /// Distinct series; each gets one sample per round.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Labels per series, `__name__` included (node_exporter-like names and values).
    #[arg(long, default_value_t = 10)]
    labels_per_series: usize,
    /// Samples per request, one `TimeSeries` each, as Prometheus sends them. 2000 is the default
    /// of Prometheus 2.44 and later; 2.42's own default is 500.
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// Samples of one series in one `TimeSeries` (consecutive rounds). 1 is what Prometheus
    /// sends; more makes requests cheaper to decode and append (fewer label sets per sample).
    #[arg(long, default_value_t = 1)]
    samples_per_series: usize,
    /// Concurrent keep-alive connections (Prometheus calls them shards).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Samples to send in all, warm-up included, rounded up to whole rounds; fewer when the
    /// encoded requests would not fit in --max-memory-mib.
    #[arg(long, default_value_t = 30_000_000)]
    samples: u64,
    /// Stop sending after this many seconds of measurement, even with requests left.
    #[arg(long)]
    duration: Option<f64>,
    /// Milliseconds between the timestamps of consecutive rounds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: i64,
    /// Timestamp of the first round (ms since the epoch); by default the last round is now.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Rounds sent before the clock starts (series creation is measured apart).
    #[arg(long, default_value_t = 1)]
    warmup_rounds: usize,
    /// Memory allowed for the pre-encoded requests.
    #[arg(long, default_value_t = 2048)]
    max_memory_mib: u64,
    /// Send `Tidewatch-Batch: <source>=<first>-<last>`, one source per connection, numbering
    /// its samples 1, 2, 3, … in wire order.
    #[arg(long)]
    header_batch: bool,
    /// Seed of the sample values.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads that encode the requests (before the clock starts).
    #[arg(long)]
    encode_threads: Option<usize>,
    /// Once encoding is done, pin the sending threads to this CPU (with `taskset`).
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// A process (the server) whose CPU time during the measured part is reported, so that the
    /// CPU left to other processes of the machine can be told apart.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// A free-form name copied into the JSON line (e.g. "prometheus-10k").
    #[arg(long, default_value = "")]
    label: String,
}

/// One encoded HTTP request.
struct Request {
    bytes: Vec<u8>,
    samples: usize,
}

#[derive(Default)]
struct ConnStats {
    warmup_samples: u64,
    warmup_failed: u64,
    ok_requests: u64,
    ok_samples: u64,
    non_2xx: u64,
    transport_errors: u64,
    bytes_sent: u64,
    latencies_us: Vec<u32>,
    statuses: Vec<(u16, u64)>,
}

impl ConnStats {
    fn count_status(&mut self, status: u16) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }
}

static ERRORS_PRINTED: AtomicUsize = AtomicUsize::new(0);
const ERRORS_TO_PRINT: usize = 5;

fn print_error(what: impl FnOnce() -> String) {
    if ERRORS_PRINTED.fetch_add(1, Ordering::Relaxed) < ERRORS_TO_PRINT {
        eprintln!("rw_load: {}", what());
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rw_load: {e}");
            ExitCode::from(2)
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn read_proc(path: &str) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    text
}

/// The kernel's clock ticks per second in /proc (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of a process, all its threads (`self` or a pid).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = read_proc(&format!("/proc/{pid}/stat"));
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / USER_HZ
}

/// CPU seconds the whole machine spent busy (all CPUs, everything but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = read_proc("/proc/stat");
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 8 {
        return f64::NAN;
    }
    // user nice system idle iowait irq softirq steal
    (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / USER_HZ
}

/// CPU time of this process, the watched process and the machine, at one moment.
#[derive(Clone, Copy)]
struct CpuClock {
    sender: f64,
    server: f64,
    machine: f64,
}

impl CpuClock {
    fn now(watch: Option<u32>) -> CpuClock {
        CpuClock {
            sender: cpu_seconds("self"),
            server: watch.map_or(f64::NAN, |pid| cpu_seconds(&pid.to_string())),
            machine: machine_busy_seconds(),
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn run(args: &Args) -> Result<ExitCode, String> {
    if args.series == 0 || args.samples_per_request == 0 || args.connections == 0 || args.labels_per_series == 0 {
        return Err("--series, --samples-per-request, --connections and --labels-per-series must be positive".into());
    }
    if args.connections > args.series {
        return Err("--connections must not exceed --series (each connection owns a share of the series)".into());
    }
    if args.interval_ms <= 0 {
        return Err("--interval-ms must be positive".into());
    }
    let url = Url::parse(&args.url)?;
    let addr = url.resolve().map_err(|e| format!("{}: {e}", url.authority))?;
    let budget = args.max_memory_mib.saturating_mul(1 << 20);
    let encode_threads = args
        .encode_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, args.connections);

    let t_encode = Instant::now();
    let labels: Vec<Vec<u8>> = (0..args.series)
        .map(|i| encode_labels(&series(i, args.labels_per_series)))
        .collect();

    // Probe: round 0 of connection 0 gives the encoded size of a sample; every later round is the
    // same size give or take a few bytes, so this says how many rounds fit in the budget.
    let mut plan = Plan {
        series: args.series,
        labels_per_series: args.labels_per_series,
        rounds: 1,
        start_ms: 0,
        interval_ms: args.interval_ms,
        samples_per_request: args.samples_per_request,
        samples_per_series: args.samples_per_series,
        connections: args.connections,
        seed: args.seed,
    };
    let head_len = head(&url, 0, None).len() as f64 + if args.header_batch { 60.0 } else { 0.0 };
    let (mut probe_bytes, mut probe_samples) = (0f64, 0f64);
    plan.encode_connection(0, &labels, |body| {
        probe_bytes += body.snappy.len() as f64 + head_len;
        probe_samples += body.samples as f64;
        true
    });
    let bytes_per_sample = probe_bytes / probe_samples;
    let bytes_per_round = bytes_per_sample * args.series as f64 * 1.02;
    let rounds_fit = (budget as f64 / bytes_per_round).floor() as usize;
    let rounds_wanted = args.samples.div_ceil(args.series as u64) as usize;
    let rounds = rounds_wanted.min(rounds_fit);
    if rounds <= args.warmup_rounds.next_multiple_of(args.samples_per_series.max(1)) {
        return Err(format!(
            "only {rounds_fit} rounds of {} series fit in {} MiB ({bytes_per_sample:.1} bytes/sample), \
             not more than the {} warm-up rounds",
            args.series, args.max_memory_mib, args.warmup_rounds
        ));
    }
    plan.rounds = rounds;
    plan.start_ms = args
        .start_ms
        .unwrap_or_else(|| (now_ms() / args.interval_ms - rounds as i64 + 1) * args.interval_ms);

    // Encode every connection's requests, `encode_threads` connections at a time.
    let run_id = now_ms();
    let next = AtomicUsize::new(0);
    let total_bytes = AtomicU64::new(0);
    let over_budget = AtomicBool::new(false);
    let per_conn: Vec<Mutex<Vec<Request>>> = (0..args.connections).map(|_| Mutex::new(Vec::new())).collect();
    std::thread::scope(|scope| {
        for _ in 0..encode_threads {
            scope.spawn(|| {
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= args.connections {
                        break;
                    }
                    let source = format!("rw_load.{run_id}.c{c}");
                    let mut out = Vec::new();
                    plan.encode_connection(c, &labels, |body| {
                        let batch = args.header_batch.then(|| {
                            format!(
                                "{source}={}-{}",
                                body.first_seq,
                                body.first_seq + body.samples as u64 - 1
                            )
                        });
                        let head = head(&url, body.snappy.len(), batch.as_deref());
                        let mut bytes = Vec::with_capacity(head.len() + body.snappy.len());
                        bytes.extend_from_slice(head.as_bytes());
                        bytes.extend_from_slice(&body.snappy);
                        let total = total_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
                        out.push(Request {
                            bytes,
                            samples: body.samples,
                        });
                        if total > budget {
                            over_budget.store(true, Ordering::Relaxed);
                        }
                        !over_budget.load(Ordering::Relaxed)
                    });
                    *per_conn[c].lock().expect("no panics while encoding") = out;
                }
            });
        }
    });
    if over_budget.load(Ordering::Relaxed) {
        return Err(format!(
            "the encoded requests outgrew --max-memory-mib {} (estimated {bytes_per_sample:.1} bytes/sample)",
            args.max_memory_mib
        ));
    }
    let per_conn: Vec<Vec<Request>> = per_conn
        .into_iter()
        .map(|m| m.into_inner().expect("no panics while encoding"))
        .collect();
    let encode_s = t_encode.elapsed().as_secs_f64();
    let prebuilt_bytes = total_bytes.load(Ordering::Relaxed);
    let total_requests: usize = per_conn.iter().map(Vec::len).sum();
    let total_samples: u64 = per_conn.iter().flatten().map(|r| r.samples as u64).sum();
    debug_assert_eq!(total_samples, (rounds * args.series) as u64);

    // The first request must decode, with prost, to what the plan says.
    {
        let first = &per_conn[0][0].bytes;
        let split = first
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .unwrap_or(0);
        let req = decode_body(&first[split..]).map_err(|e| format!("self-check: first request: {e}"))?;
        let ok = req.timeseries.iter().map(|ts| ts.samples.len()).sum::<usize>() == per_conn[0][0].samples
            && req
                .timeseries
                .iter()
                .all(|ts| ts.labels.len() == args.labels_per_series);
        if !ok {
            return Err("self-check: the first request does not decode to the planned series".into());
        }
    }

    if let Some(cpu) = args.pin_cpu {
        let status = Command::new("taskset")
            .args(["-a", "-c", "-p", &cpu.to_string(), &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("taskset: {e}"))?;
        if !status.success() {
            return Err(format!("taskset -a -c -p {cpu} failed: {status}"));
        }
    }

    eprintln!(
        "rw_load: {} series x {} labels, {} samples/request, {} connections, {rounds} rounds every {} ms \
         ({} warm-up); {total_requests} requests, {:.2} GiB ({:.1} bytes/sample incl. HTTP head) encoded in \
         {encode_s:.1} s; {rounds_fit} rounds would fit in {} MiB",
        args.series,
        args.labels_per_series,
        args.samples_per_request,
        args.connections,
        args.interval_ms,
        args.warmup_rounds,
        prebuilt_bytes as f64 / f64::from(1u32 << 30),
        prebuilt_bytes as f64 / total_samples as f64,
        args.max_memory_mib,
    );

    // Send: warm-up, then every thread waits for the others, then the measured part.
    let barrier = Barrier::new(args.connections + 1);
    let deadline = args.duration.map(Duration::from_secs_f64);
    let t_warm = Instant::now();
    let (results, warmup_s, start, cpu0) = std::thread::scope(|scope| {
        let handles: Vec<_> = per_conn
            .iter()
            .enumerate()
            .map(|(c, requests)| {
                let barrier = &barrier;
                // The requests that carry the first warm-up rounds (whole `TimeSeries` groups).
                let warm_samples =
                    plan.series_of(c).count() * args.warmup_rounds.next_multiple_of(args.samples_per_series.max(1));
                let mut sent = 0;
                let warm = requests
                    .iter()
                    .take_while(|r| {
                        let before = sent;
                        sent += r.samples;
                        before < warm_samples
                    })
                    .count();
                scope.spawn(move || send(addr, &requests[..warm], &requests[warm..], barrier, deadline))
            })
            .collect();
        barrier.wait();
        let warmup_s = t_warm.elapsed().as_secs_f64();
        let start = Instant::now();
        let cpu0 = CpuClock::now(args.watch_pid);
        let results: Vec<(ConnStats, Instant)> = handles
            .into_iter()
            .map(|h| h.join().expect("sender threads do not panic"))
            .collect();
        (results, warmup_s, start, cpu0)
    });
    let cpu1 = CpuClock::now(args.watch_pid);
    let cpu_s = cpu1.sender - cpu0.sender;
    let server_cpu_s = cpu1.server - cpu0.server;
    let machine_cpu_s = cpu1.machine - cpu0.machine;
    // Whatever else ran on the machine meanwhile (other people's builds): the measure is only
    // worth something when this is near zero.
    let other_cpu_s = machine_cpu_s - cpu_s - if server_cpu_s.is_nan() { 0.0 } else { server_cpu_s };
    let end = results.iter().map(|(_, t)| *t).max().unwrap_or(start);
    let elapsed = end.saturating_duration_since(start).as_secs_f64();

    let loadavg = read_proc("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut all = ConnStats::default();
    for (s, _) in &results {
        all.warmup_samples += s.warmup_samples;
        all.warmup_failed += s.warmup_failed;
        all.ok_requests += s.ok_requests;
        all.ok_samples += s.ok_samples;
        all.non_2xx += s.non_2xx;
        all.transport_errors += s.transport_errors;
        all.bytes_sent += s.bytes_sent;
        all.latencies_us.extend_from_slice(&s.latencies_us);
        for &(status, n) in &s.statuses {
            for _ in 0..n {
                all.count_status(status);
            }
        }
    }
    all.latencies_us.sort_unstable();
    all.statuses.sort_unstable();
    let attempted = all.ok_requests + all.non_2xx + all.transport_errors;
    let samples_per_s = all.ok_samples as f64 / elapsed;
    let requests_per_s = all.ok_requests as f64 / elapsed;
    let (p50, p99, max) = (
        percentile(&all.latencies_us, 0.50),
        percentile(&all.latencies_us, 0.99),
        percentile(&all.latencies_us, 1.0),
    );
    eprintln!(
        "rw_load: warm-up {} samples in {warmup_s:.2} s{}; measured {} samples in {elapsed:.2} s = {samples_per_s:.0} \
         samples/s, {requests_per_s:.1} requests/s ({:.1} MB/s on the wire)",
        all.warmup_samples,
        if all.warmup_failed > 0 {
            format!(" ({} requests failed)", all.warmup_failed)
        } else {
            String::new()
        },
        all.ok_samples,
        all.bytes_sent as f64 / elapsed / 1e6,
    );
    eprintln!(
        "rw_load: requests {attempted}: 2xx {}, non-2xx {}, transport errors {}; latency p50 {p50:.2} ms, \
         p99 {p99:.2} ms, max {max:.2} ms",
        all.ok_requests, all.non_2xx, all.transport_errors,
    );
    eprintln!(
        "rw_load: CPU in cores: sender {:.2}, server {:.2}, everything else {:.2} (machine {:.2}); load average \
         at the end {loadavg}",
        cpu_s / elapsed,
        server_cpu_s / elapsed,
        other_cpu_s / elapsed,
        machine_cpu_s / elapsed,
    );
    let json = serde_json::json!({
        "tool": "rw_load",
        "label": args.label,
        "url": args.url,
        "series": args.series,
        "labels_per_series": args.labels_per_series,
        "samples_per_request": args.samples_per_request,
        "samples_per_series": args.samples_per_series,
        "connections": args.connections,
        "interval_ms": args.interval_ms,
        "rounds": rounds,
        "rounds_fit_in_memory": rounds_fit,
        "warmup_rounds": args.warmup_rounds,
        "header_batch": args.header_batch,
        "start_ms": plan.start_ms,
        "prebuilt_requests": total_requests,
        "prebuilt_samples": total_samples,
        "prebuilt_bytes": prebuilt_bytes,
        "encode_s": encode_s,
        "warmup_samples": all.warmup_samples,
        "warmup_s": warmup_s,
        "requests": attempted,
        "ok_requests": all.ok_requests,
        "non_2xx": all.non_2xx,
        "transport_errors": all.transport_errors,
        "statuses": all
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>(),
        "samples_ok": all.ok_samples,
        "elapsed_s": elapsed,
        "samples_per_s": samples_per_s,
        "requests_per_s": requests_per_s,
        "bytes_sent": all.bytes_sent,
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
        "latency_ms_max": max,
        "sender_cpu_s": cpu_s,
        "server_pid": args.watch_pid,
        "server_cpu_s": if server_cpu_s.is_nan() { serde_json::Value::Null } else { server_cpu_s.into() },
        "machine_cpu_s": machine_cpu_s,
        "other_cpu_s": other_cpu_s,
        "loadavg_end": loadavg,
    });
    println!("{json}");
    let _ = std::io::stdout().flush();
    Ok(if all.non_2xx + all.transport_errors + all.warmup_failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The request head, ending with the blank line.
fn head(url: &Url, content_length: usize, batch: Option<&str>) -> String {
    let mut h = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tidewatch-rw-load/{}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {content_length}\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(batch) = batch {
        h.push_str("Tidewatch-Batch: ");
        h.push_str(batch);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Sends `warm` then, after the barrier, `measured` (until `deadline` after the barrier), one
/// request at a time on one keep-alive connection; reconnects after a transport error or a
/// `Connection: close`. Returns the counts and when the last response came.
fn send(
    addr: SocketAddr,
    warm: &[Request],
    measured: &[Request],
    barrier: &Barrier,
    deadline: Option<Duration>,
) -> (ConnStats, Instant) {
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(measured.len()),
        ..ConnStats::default()
    };
    let mut conn: Option<Conn> = None;
    let mut consecutive_failures = 0u32;
    // Ok(true): acknowledged with 2xx.
    let mut one = |req: &Request, stats: &mut ConnStats, measuring: bool| -> bool {
        if consecutive_failures >= 20 {
            stats.transport_errors += u64::from(measuring);
            return false;
        }
        let t = Instant::now();
        let result = match conn.as_mut() {
            Some(c) => c.round_trip(&req.bytes),
            None => Conn::connect(addr).and_then(|c| {
                let c = conn.insert(c);
                c.round_trip(&req.bytes)
            }),
        };
        let latency = t.elapsed();
        match result {
            Ok(resp) => {
                consecutive_failures = 0;
                if resp.close {
                    conn = None;
                }
                if !measuring {
                    return (200..300).contains(&resp.status);
                }
                stats.bytes_sent += req.bytes.len() as u64;
                stats
                    .latencies_us
                    .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
                stats.count_status(resp.status);
                if (200..300).contains(&resp.status) {
                    stats.ok_requests += 1;
                    stats.ok_samples += req.samples as u64;
                    true
                } else {
                    stats.non_2xx += 1;
                    print_error(|| {
                        format!(
                            "HTTP {} for a request of {} samples: {}",
                            resp.status,
                            req.samples,
                            String::from_utf8_lossy(&resp.body[..resp.body.len().min(600)]).trim_end()
                        )
                    });
                    false
                }
            }
            Err(e) => {
                conn = None;
                consecutive_failures += 1;
                stats.transport_errors += u64::from(measuring);
                print_error(|| format!("transport error: {e}"));
                false
            }
        }
    };
    for req in warm {
        if one(req, &mut stats, false) {
            stats.warmup_samples += req.samples as u64;
        } else {
            stats.warmup_failed += 1;
        }
    }
    barrier.wait();
    let start = Instant::now();
    for req in measured {
        if deadline.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        one(req, &mut stats, true);
    }
    (stats, Instant::now())
}
