//! `promql_latency`: range-query latency of dashboard queries, Tidewatch against Prometheus, on
//! the same data in the same run (issue 6, "Figures"). See bench/promql/README.md.
//!
//! 1. Starts Prometheus (`--web.enable-remote-write-receiver`, empty configuration) and
//!    `tidewatch server` on fresh folders in `--workdir`.
//! 2. Writes the same synthetic data into both by remote_write, in time order across series
//!    (Prometheus' head refuses samples older than its newest minus 1 h): `http_requests_total`
//!    counters (`--instances` × `--handlers` series) and a classic histogram
//!    `http_request_duration_seconds_bucket` (`--hist-series` series × 11 `le`), one sample per
//!    series every 15 s over `--hours` + 5 min, ending now.
//! 3. Waits until both servers are idle (compaction done), restarts both on their folders (so that
//!    VmHWM starts from a fresh process), waits until idle again.
//! 4. For each query: `--warmup` runs on each server, then `--reps` runs alternating between the
//!    servers, each timed from sending the request to the last byte of the answer (POST form, as
//!    Grafana sends it). A thread samples VmRSS of both servers every 5 ms meanwhile.
//!
//! Prints a table and writes one JSON document (`--json`).

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{Value as Json, json};
use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};

/// Range-query latency, Tidewatch vs Prometheus, same data, same run.
#[derive(Parser, Debug, Clone)]
#[command(name = "promql_latency")]
struct Args {
    /// The Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus: PathBuf,
    /// The tidewatch binary (a release build).
    #[arg(long, default_value = "target/release/tidewatch")]
    tidewatch: PathBuf,
    /// Folder for both servers' data and logs (emptied first).
    #[arg(long, default_value = "target/bench-promql-latency")]
    workdir: PathBuf,
    /// Distinct `instance` values of `http_requests_total`.
    #[arg(long, default_value_t = 100)]
    instances: usize,
    /// `handler` values per instance (series = instances × handlers).
    #[arg(long, default_value_t = 100)]
    handlers: usize,
    /// Series of the histogram (each with 11 `le` buckets), spread over the instances.
    #[arg(long, default_value_t = 300)]
    hist_series: usize,
    /// Hours queried; the data spans 5 more minutes, so that the first step has a full rate window.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// Scrape interval of the data and step of the queries, s.
    #[arg(long, default_value_t = 15)]
    step_s: i64,
    /// Timestamps per remote_write request (each request holds every series).
    #[arg(long, default_value_t = 4)]
    timestamps_per_request: usize,
    /// Untimed runs of each query on each server.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed runs of each query on each server.
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Only these queries (substring match), default all.
    #[arg(long)]
    only: Vec<String>,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the data.
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// Keep the servers running at the end (prints their URLs and PIDs) for profiling; stop with
    /// Ctrl-C.
    #[arg(long)]
    keep: bool,
}

const QUERIES: &[(&str, &str)] = &[
    ("sum_rate", "sum by (instance) (rate(http_requests_total[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    ("topk", "topk(10, rate(http_requests_total[5m]))"),
];

const LE: &[(&str, f64)] = &[
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("5", 5.0),
    ("+Inf", f64::INFINITY),
];

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("promql_latency: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let _ = fs::remove_dir_all(&args.workdir);
    fs::create_dir_all(&args.workdir).map_err(|e| format!("{}: {e}", args.workdir.display()))?;
    let workdir = fs::canonicalize(&args.workdir).map_err(|e| e.to_string())?;
    let versions = json!({
        "prometheus": first_line(Command::new(&args.prometheus).arg("--version")),
        "tidewatch": first_line(Command::new(&args.tidewatch).arg("--version")),
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    eprintln!("promql_latency: {versions}");

    let mut prometheus = Server::prometheus(&args.prometheus, &workdir.join("prometheus"))?;
    let mut tidewatch = Server::tidewatch(&args.tidewatch, &workdir.join("tidewatch"))?;

    // Load.
    let step_ms = args.step_s * 1000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let end = now / step_ms * step_ms;
    let span = (args.hours * 3_600_000.0) as i64 + 5 * 60_000;
    let start = end - span;
    let data = DataSet::new(args, start, end, step_ms);
    eprintln!(
        "promql_latency: loading {} series x {} timestamps = {} samples into both servers",
        data.series.len(),
        data.timestamps(),
        data.series.len() * data.timestamps()
    );
    let load_started = Instant::now();
    let (p_load, t_load) = data.load(&[&prometheus.url, &tidewatch.url], args.timestamps_per_request)?;
    eprintln!(
        "promql_latency: loaded in {:.1?} (sending: prometheus {:.1?}, tidewatch {:.1?})",
        load_started.elapsed(),
        p_load,
        t_load
    );

    // Settle, restart, settle.
    for s in [&prometheus, &tidewatch] {
        let waited = s.wait_idle(Duration::from_secs(600));
        eprintln!("promql_latency: {} idle after {:.1?}", s.name, waited);
    }
    let disk = json!({
        "prometheus_bytes": dir_size(&workdir.join("prometheus/data")),
        "tidewatch_bytes": dir_size(&workdir.join("tidewatch/data")),
    });
    prometheus.restart()?;
    tidewatch.restart()?;
    for s in [&prometheus, &tidewatch] {
        let waited = s.wait_idle(Duration::from_secs(600));
        eprintln!(
            "promql_latency: {} restarted, idle after {:.1?}, VmRSS {} MiB",
            s.name,
            waited,
            mib(proc_status(s.pid(), "VmRSS"))
        );
    }

    // Measure.
    let q_end = end;
    let q_start = end - (args.hours * 3_600_000.0) as i64;
    let mut results = Vec::new();
    let mut table = String::from(
        "| query | Prometheus median | p90 | Tidewatch median | p90 | Tidewatch ÷ Prometheus (median) | series | peak VmRSS P / T (MiB) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, expr) in QUERIES {
        if !args.only.is_empty()
            && !args
                .only
                .iter()
                .any(|o| name.contains(o.as_str()) || expr.contains(o.as_str()))
        {
            continue;
        }
        let form = format!(
            "query={}&start={}&end={}&step={}",
            form_encode(expr),
            q_start as f64 / 1000.0,
            q_end as f64 / 1000.0,
            args.step_s
        );
        let rss_before = [
            proc_status(prometheus.pid(), "VmRSS"),
            proc_status(tidewatch.pid(), "VmRSS"),
        ];
        let hwm_before = [
            proc_status(prometheus.pid(), "VmHWM"),
            proc_status(tidewatch.pid(), "VmHWM"),
        ];
        let sampler = RssSampler::start([prometheus.pid(), tidewatch.pid()]);
        let mut shapes = Vec::new();
        let mut bodies = Vec::new();
        for s in [&prometheus, &tidewatch] {
            for _ in 0..args.warmup.max(1) {
                let (_, body) = s.query_range(&form)?;
                shapes.push(shape(&body).map_err(|e| format!("{} answered {expr}: {e}", s.name))?);
                bodies.push(body);
            }
        }
        let differing_points = compare_matrices(&bodies[0], &bodies[bodies.len() - 1]);
        if differing_points > 0 {
            eprintln!(
                "promql_latency: WARNING: {expr}: {differing_points} points differ between the servers (values beyond 1e-6 relative, or present on one side only)"
            );
        }
        // Load of other processes during the timed runs (the warm-ups read the blocks from disk,
        // which the kernel's workers do partly outside both servers).
        let others = OtherLoad::start(&[prometheus.pid(), tidewatch.pid(), std::process::id()]);
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..args.reps {
            for (k, s) in [&prometheus, &tidewatch].into_iter().enumerate() {
                let (elapsed, _) = s.query_range(&form)?;
                times[k].push(elapsed.as_secs_f64());
            }
        }
        let others_cores = others.cores();
        let peak = sampler.stop();
        if others_cores > 0.1 {
            eprintln!(
                "promql_latency: WARNING: other processes used {others_cores:.2} cores while {name} was measured"
            );
        }
        let hwm_after = [
            proc_status(prometheus.pid(), "VmHWM"),
            proc_status(tidewatch.pid(), "VmHWM"),
        ];
        let p_shape = &shapes[0];
        let t_shape = &shapes[args.warmup.max(1).min(shapes.len() - 1)];
        let same_shape = (p_shape.0, p_shape.1) == (t_shape.0, t_shape.1);
        if !same_shape {
            eprintln!("promql_latency: WARNING: {expr}: prometheus {p_shape:?}, tidewatch {t_shape:?}");
        }
        let (pm, p90p) = (median(&times[0]), p90(&times[0]));
        let (tm, p90t) = (median(&times[1]), p90(&times[1]));
        table.push_str(&format!(
            "| `{expr}` | {} | {} | {} | {} | **{:.2}** | {} / {} | {} / {} |\n",
            ms(pm),
            ms(p90p),
            ms(tm),
            ms(p90t),
            tm / pm,
            p_shape.0,
            t_shape.0,
            mib(peak[0]),
            mib(peak[1])
        ));
        eprintln!(
            "promql_latency: {name}: prometheus median {} p90 {}, tidewatch median {} p90 {}, ratio {:.2}; peak RSS {} / {} MiB; \
             other processes {others_cores:.2} cores",
            ms(pm),
            ms(p90p),
            ms(tm),
            ms(p90t),
            tm / pm,
            mib(peak[0]),
            mib(peak[1])
        );
        results.push(json!({
            "name": name,
            "query": expr,
            "start_ms": q_start,
            "end_ms": q_end,
            "step_s": args.step_s,
            "prometheus": {"median_s": pm, "p90_s": p90p, "min_s": min(&times[0]), "times_s": times[0],
                "series": p_shape.0, "points": p_shape.1, "bytes": p_shape.2,
                "rss_before": rss_before[0], "hwm_before": hwm_before[0], "peak_rss_sampled": peak[0], "hwm_after": hwm_after[0]},
            "tidewatch": {"median_s": tm, "p90_s": p90t, "min_s": min(&times[1]), "times_s": times[1],
                "series": t_shape.0, "points": t_shape.1, "bytes": t_shape.2,
                "rss_before": rss_before[1], "hwm_before": hwm_before[1], "peak_rss_sampled": peak[1], "hwm_after": hwm_after[1]},
            "ratio_median": tm / pm,
            "same_shape": same_shape,
            "differing_points": differing_points,
            "other_processes_cores": others_cores,
        }));
    }
    println!("{table}");
    let doc = json!({
        "versions": versions,
        "data": {"series": data.series.len(), "timestamps": data.timestamps(), "start_ms": start, "end_ms": end,
            "step_ms": step_ms, "instances": args.instances, "handlers": args.handlers, "hist_series": args.hist_series},
        "load_s": {"prometheus": p_load.as_secs_f64(), "tidewatch": t_load.as_secs_f64()},
        "disk": disk,
        "warmup": args.warmup,
        "reps": args.reps,
        "results": results,
        "table": table,
    });
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if args.keep {
        eprintln!(
            "promql_latency: keeping the servers: prometheus {} (pid {}), tidewatch {} (pid {}); Ctrl-C stops",
            prometheus.url,
            prometheus.pid(),
            tidewatch.url,
            tidewatch.pid()
        );
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}

// --- data ------------------------------------------------------------------------------------------

struct DataSet {
    /// Label sets, sorted by name, `__name__` first.
    series: Vec<Vec<Label>>,
    kinds: Vec<Kind>,
    start: i64,
    end: i64,
    step: i64,
    seed: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    /// A request counter: mean increase per second.
    Counter(f64),
    /// A histogram bucket: base series index, fraction of observations at or below the bound.
    Bucket(usize, f64),
}

impl DataSet {
    fn new(args: &Args, start: i64, end: i64, step: i64) -> DataSet {
        let mut rng = Rng(args.seed);
        let mut series = Vec::new();
        let mut kinds = Vec::new();
        let lab = |n: &str, v: &str| Label {
            name: n.to_string(),
            value: v.to_string(),
        };
        for i in 0..args.instances {
            for h in 0..args.handlers {
                series.push(vec![
                    lab("__name__", "http_requests_total"),
                    lab("handler", &format!("/api/v1/h{h:03}")),
                    lab("instance", &format!("host-{i:04}:9100")),
                    lab("job", "app"),
                ]);
                kinds.push(Kind::Counter(rng.range(0.01, 20.0)));
            }
        }
        for b in 0..args.hist_series {
            // Latencies log-normal around a per-series median: P(X <= le).
            let median: f64 = rng.range(0.02, 0.6);
            for (le, bound) in LE {
                let z = (bound.ln() - median.ln()) / 0.8;
                series.push(vec![
                    lab("__name__", "http_request_duration_seconds_bucket"),
                    lab("handler", &format!("/api/v1/h{:03}", b % 10)),
                    lab("instance", &format!("host-{:04}:9100", b / 10 % args.instances.max(1))),
                    lab("job", "app"),
                    lab("le", le),
                ]);
                let fraction = if bound.is_infinite() { 1.0 } else { normal_cdf(z) };
                kinds.push(Kind::Bucket(b, fraction));
            }
        }
        DataSet {
            series,
            kinds,
            start,
            end,
            step,
            seed: args.seed,
        }
    }

    fn timestamps(&self) -> usize {
        ((self.end - self.start) / self.step + 1) as usize
    }

    /// Writes everything to every URL, request by request in time order; returns the time spent
    /// sending to each.
    fn load(&self, urls: &[&str; 2], per_request: usize) -> Result<(Duration, Duration), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .proxy(None)
            .build()
            .into();
        let mut rng = Rng(self.seed ^ 0xDA7A);
        let mut counters = vec![0.0f64; self.series.len()];
        // Observations per histogram base series (cumulative).
        let bases = self
            .kinds
            .iter()
            .filter_map(|k| match k {
                Kind::Bucket(b, _) => Some(*b + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mut observed = vec![0.0f64; bases];
        let mut spent = [Duration::ZERO; 2];
        let n = self.timestamps();
        let mut k = 0;
        let mut last_report = Instant::now();
        while k < n {
            let ts: Vec<i64> = (k..(k + per_request).min(n))
                .map(|i| self.start + i as i64 * self.step)
                .collect();
            let mut series: Vec<TimeSeries> = self
                .series
                .iter()
                .map(|labels| TimeSeries {
                    labels: labels.clone(),
                    samples: Vec::with_capacity(ts.len()),
                })
                .collect();
            for &t in &ts {
                let step_s = self.step as f64 / 1000.0;
                for o in observed.iter_mut() {
                    *o += (rng.range(5.0, 50.0) * step_s).round();
                }
                for (i, kind) in self.kinds.iter().enumerate() {
                    match *kind {
                        Kind::Counter(rate) => {
                            if rng.f64() < 0.00005 {
                                counters[i] = 0.0; // a restart now and then
                            }
                            counters[i] += (rate * step_s * rng.range(0.5, 1.5)).round();
                        }
                        Kind::Bucket(b, fraction) => counters[i] = (observed[b] * fraction).floor(),
                    }
                    series[i].samples.push(Sample {
                        value: counters[i],
                        timestamp: t,
                    });
                }
            }
            let body = WriteRequest {
                timeseries: series,
                metadata: Vec::new(),
            }
            .to_snappy();
            let took: Vec<Result<Duration, String>> = thread::scope(|s| {
                let handles: Vec<_> = urls
                    .iter()
                    .map(|url| {
                        let (agent, body) = (&agent, &body);
                        s.spawn(move || {
                            let started = Instant::now();
                            let mut r = agent
                                .post(format!("{url}/api/v1/write"))
                                .header("Content-Encoding", "snappy")
                                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                                .content_type("application/x-protobuf")
                                .send(&body[..])
                                .map_err(|e| format!("{url}: {e}"))?;
                            if !r.status().is_success() {
                                let text = r.body_mut().read_to_string().unwrap_or_default();
                                return Err(format!("{url}: HTTP {}: {text}", r.status()));
                            }
                            Ok(started.elapsed())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (j, t) in took.into_iter().enumerate() {
                spent[j] += t?;
            }
            k += ts.len();
            if last_report.elapsed() > Duration::from_secs(10) {
                eprintln!("promql_latency: loaded {k}/{n} timestamps");
                last_report = Instant::now();
            }
        }
        Ok((spent[0], spent[1]))
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
}

/// Φ(z), Abramowitz-Stegun 26.2.17 (7.5e-8): enough for synthetic buckets.
fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly =
        t * (0.319_381_530 + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let p = 1.0 - (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 { p } else { 1.0 - p }
}

// --- servers ---------------------------------------------------------------------------------------

struct Server {
    name: &'static str,
    url: String,
    argv: Vec<String>,
    log: PathBuf,
    child: Child,
    agent: ureq::Agent,
}

impl Server {
    fn prometheus(bin: &Path, dir: &Path) -> Result<Server, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let config = dir.join("prometheus.yml");
        fs::write(&config, "# empty: nothing is scraped\n").map_err(|e| e.to_string())?;
        let port = free_port();
        let argv = vec![
            bin.display().to_string(),
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
            "--query.lookback-delta=5m".to_string(),
            "--log.level=warn".to_string(),
        ];
        Server::start("prometheus", port, argv, dir.join("prometheus.log"))
    }

    fn tidewatch(bin: &Path, dir: &Path) -> Result<Server, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let config = dir.join("tidewatch.yaml");
        // Prometheus does not sync its WAL on every write either; queries are what is measured.
        fs::write(&config, "metrics:\n  wal:\n    fsync: false\n").map_err(|e| e.to_string())?;
        let port = free_port();
        let bin = fs::canonicalize(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        let argv = vec![
            bin.display().to_string(),
            "--config".to_string(),
            config.display().to_string(),
            "server".to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_string(),
            dir.join("data").display().to_string(),
            "--log-level".to_string(),
            "warn".to_string(),
        ];
        Server::start("tidewatch", port, argv, dir.join("tidewatch.log"))
    }

    fn start(name: &'static str, port: u16, argv: Vec<String>, log: PathBuf) -> Result<Server, String> {
        let child = spawn(&argv, &log)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .proxy(None)
            .build()
            .into();
        let server = Server {
            name,
            url: format!("http://127.0.0.1:{port}"),
            argv,
            log,
            child,
            agent,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if let Ok(r) = self.agent.get(format!("{}/-/ready", self.url)).call()
                && r.status() == 200
            {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        Err(format!("{} not ready within 300 s; log:\n{log}", self.name))
    }

    /// Graceful stop (SIGTERM), then the same command again on the same folder.
    fn restart(&mut self) -> Result<(), String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.child = spawn(&self.argv, &self.log)?;
        self.wait_ready()
    }

    /// Waits until the process used less than 3 % of a core for 5 s in a row.
    fn wait_idle(&self, max: Duration) -> Duration {
        let started = Instant::now();
        let mut quiet = 0;
        let mut last = cpu_ticks(self.pid());
        while started.elapsed() < max && quiet < 5 {
            thread::sleep(Duration::from_secs(1));
            let now = cpu_ticks(self.pid());
            // 100 ticks per second.
            if now.saturating_sub(last) <= 3 {
                quiet += 1;
            } else {
                quiet = 0;
            }
            last = now;
        }
        started.elapsed()
    }

    /// One range query; the time from sending to the last byte, and the body.
    fn query_range(&self, form: &str) -> Result<(Duration, Vec<u8>), String> {
        let url = format!("{}/api/v1/query_range", self.url);
        let started = Instant::now();
        let mut r = self
            .agent
            .post(&url)
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .map_err(|e| format!("{}: {e}", self.name))?;
        let status = r.status();
        let mut body = Vec::new();
        r.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("{}: {e}", self.name))?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            return Err(format!(
                "{}: HTTP {status}: {}",
                self.name,
                String::from_utf8_lossy(&body)
            ));
        }
        Ok((elapsed, body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(argv: &[String], log: &Path) -> Result<Child, String> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", argv[0]))
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 0; utime and stime are fields 11 and 12.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// CPU used by every process but `pids` between `start` and `cores`, from /proc/stat.
struct OtherLoad {
    pids: Vec<u32>,
    busy: u64,
    own: u64,
    at: Instant,
}

impl OtherLoad {
    fn start(pids: &[u32]) -> OtherLoad {
        OtherLoad {
            pids: pids.to_vec(),
            busy: machine_busy_ticks(),
            own: pids.iter().map(|&p| cpu_ticks(p)).sum(),
            at: Instant::now(),
        }
    }

    /// Cores used meanwhile by other processes (100 ticks per second).
    fn cores(&self) -> f64 {
        let busy = machine_busy_ticks().saturating_sub(self.busy);
        let own = self
            .pids
            .iter()
            .map(|&p| cpu_ticks(p))
            .sum::<u64>()
            .saturating_sub(self.own);
        busy.saturating_sub(own) as f64 / 100.0 / self.at.elapsed().as_secs_f64()
    }
}

/// user + nice + system + irq + softirq + steal of all CPUs, in ticks.
fn machine_busy_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum()
}

/// A `kB` field of /proc/PID/status, in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples VmRSS of two processes every 5 ms until stopped; keeps the largest of each.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<[AtomicU64; 2]>,
    handle: thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pids: [u32; 2]) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let handle = {
            let (stop, peaks) = (stop.clone(), peaks.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (k, pid) in pids.iter().enumerate() {
                        peaks[k].fetch_max(proc_status(*pid, "VmRSS"), Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler { stop, peaks, handle }
    }

    fn stop(self) -> [u64; 2] {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        [
            self.peaks[0].load(Ordering::Relaxed),
            self.peaks[1].load(Ordering::Relaxed),
        ]
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

// --- helpers ---------------------------------------------------------------------------------------

/// (series, points, bytes) of a matrix answer.
fn shape(body: &[u8]) -> Result<(usize, usize, usize), String> {
    let json: Json = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if json.get("status").and_then(Json::as_str) != Some("success") {
        return Err(format!("{json}"));
    }
    let result = json
        .pointer("/data/result")
        .and_then(Json::as_array)
        .ok_or("no data.result")?;
    let points = result
        .iter()
        .map(|s| s.get("values").and_then(Json::as_array).map_or(0, Vec::len))
        .sum();
    Ok((result.len(), points, body.len()))
}

/// Points of two matrix answers that differ: by label set and timestamp, values compared with
/// Prometheus' relative tolerance 1e-6; a point on one side only counts once.
fn compare_matrices(a: &[u8], b: &[u8]) -> usize {
    fn points(body: &[u8]) -> std::collections::HashMap<(String, i64), f64> {
        let json: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        let mut out = std::collections::HashMap::new();
        for s in json
            .pointer("/data/result")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let labels = s.get("metric").map(|m| m.to_string()).unwrap_or_default();
            // serde_json keeps object keys sorted, so equal label sets print equally.
            for p in s.get("values").and_then(Json::as_array).into_iter().flatten() {
                let t = (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                let v = match p[1].as_str().unwrap_or("") {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    x => x.parse().unwrap_or(f64::NAN),
                };
                out.insert((labels.clone(), t), v);
            }
        }
        out
    }
    let (a, b) = (points(a), points(b));
    let mut differing = 0;
    for (k, x) in &a {
        match b.get(k) {
            Some(y) if x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() / (x.abs() + y.abs()) < 1e-6 => {}
            _ => differing += 1,
        }
    }
    differing + b.keys().filter(|k| !a.contains_key(*k)).count()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank 90th percentile.
fn p90(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((0.9 * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn ms(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").to_string()
        })
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
