//! The log store's figures (issue 4), in one run on this machine:
//!
//! 1. indexing throughput of the whole path (HTTP push → fsynced WAL → tantivy commit,
//!    searchable) in MB/s of raw log text, next to tantivy alone indexing the same lines with
//!    the same schema, tokenizer, settings, threads and writer memory;
//! 2. bytes on disk ÷ raw bytes, for both;
//! 3. ack → searchable latency (a pushed line, polled through the query API);
//! 4. query latency through the HTTP API over `--query-lines` lines, each next to `grep -F`
//!    over the same lines written as a raw file.
//!
//! The loghub files are read from `--data` (never copied into the repository) and repeated.
//! Run by `bench/logs/run.sh`; `cargo run --release -p tidewatch-store --example logs_bench -- --help`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tantivy::{Index, TantivyDocument};
use tidewatch_store::logs::{
    EntryAdapter, LogStore, LogTokenizer, LogsConfig, PushRequest, StreamAdapter, TOKENIZER, Timestamp, index_schema,
    index_settings, routes,
};

const FILES: [&str; 10] = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "Hadoop",
    "Linux",
    "OpenSSH",
    "OpenStack",
    "Spark",
    "Zookeeper",
];
const NEEDLE: &str = "tw7q3zk9needle";
const DAY_NS: i64 = 86_400_000_000_000;

struct Args {
    data: PathBuf,
    dir: PathBuf,
    mb: usize,
    query_lines: usize,
    pushers: usize,
    batch_lines: usize,
    threads: usize,
    writer_mb: u64,
    commit_ms: u64,
    runs: usize,
}

fn usage() -> ! {
    eprintln!(
        "logs_bench [--data DIR] [--dir WORKDIR] [--mb 200] [--query-lines 10000000] [--pushers 2]\n\
         [--batch-lines 4000] [--threads 2] [--writer-mb 256] [--commit-ms 1000] [--runs 20]\n\
         --query-lines 0 skips the query figures. WORKDIR is wiped at start."
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        data: "/work/shared/data/loghub".into(),
        dir: "/tmp/tidewatch-logs-bench".into(),
        mb: 200,
        query_lines: 10_000_000,
        pushers: 2,
        batch_lines: 4000,
        threads: 2,
        writer_mb: 256,
        commit_ms: 1000,
        runs: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| s.parse::<usize>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--data" => a.data = v().into(),
            "--dir" => a.dir = v().into(),
            "--mb" => a.mb = num(v()),
            "--query-lines" => a.query_lines = num(v()),
            "--pushers" => a.pushers = num(v()).max(1),
            "--batch-lines" => a.batch_lines = num(v()).max(1),
            "--threads" => a.threads = num(v()).max(1),
            "--writer-mb" => a.writer_mb = num(v()) as u64,
            "--commit-ms" => a.commit_ms = num(v()) as u64,
            "--runs" => a.runs = num(v()).max(1),
            _ => usage(),
        }
    }
    a
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// `(file index, line)` of every loghub file, in file order.
fn loghub(data: &Path) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, f) in FILES.iter().enumerate() {
        let text = std::fs::read_to_string(data.join(format!("{f}_2k.log")))
            .unwrap_or_else(|e| panic!("{}: {e}", data.join(f).display()));
        out.extend(text.lines().map(|l| (i, l.to_string())));
    }
    out
}

/// The corpus: the loghub lines repeated until `target` lines or `target_bytes` raw bytes,
/// timestamps spread evenly over the 24 h before now. Needle lines get a rare token.
struct Corpus {
    lines: Vec<(usize, i64, String)>,
    raw_bytes: u64,
}

fn corpus(base: &[(usize, String)], max_lines: usize, max_bytes: u64, needles: usize) -> Corpus {
    let mut lines = Vec::new();
    let mut raw = 0u64;
    // Interleaved: line k comes from file k mod 10, so every hour holds every service.
    let mut by_file: Vec<Vec<&String>> = vec![Vec::new(); FILES.len()];
    for (f, l) in base {
        by_file[*f].push(l);
    }
    let mut k = 0usize;
    while lines.len() < max_lines && raw < max_bytes {
        let f = k % FILES.len();
        let l = by_file[f][(k / FILES.len()) % by_file[f].len()];
        raw += l.len() as u64 + 1;
        lines.push((f, 0, l.clone()));
        k += 1;
    }
    let n = lines.len();
    let end = now_ns() - 60_000_000_000;
    let step = DAY_NS / n as i64;
    for (i, l) in lines.iter_mut().enumerate() {
        l.1 = end - DAY_NS + i as i64 * step;
    }
    for k in 0..needles {
        let i = (n / needles) * k + n / (2 * needles);
        lines[i].2.push_str(" needle=");
        lines[i].2.push_str(NEEDLE);
        raw += 8 + NEEDLE.len() as u64;
    }
    Corpus { lines, raw_bytes: raw }
}

fn labels_text(f: usize) -> String {
    format!("{{job=\"loghub\", service=\"{}\"}}", FILES[f].to_ascii_lowercase())
}

/// Push bodies (protobuf, snappy), `batch` lines each, grouped into streams as a shipper
/// (Promtail, the Tidewatch agent) does: one stream entry per label set, lines in order.
fn bodies(c: &Corpus, batch: usize) -> Vec<Vec<u8>> {
    c.lines
        .chunks(batch)
        .map(|chunk| {
            let mut by_stream: std::collections::BTreeMap<usize, Vec<EntryAdapter>> = Default::default();
            for (f, ts, line) in chunk {
                by_stream.entry(*f).or_default().push(EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: ts / 1_000_000_000,
                        nanos: (ts % 1_000_000_000) as i32,
                    }),
                    line: line.clone(),
                });
            }
            let streams = by_stream
                .into_iter()
                .map(|(f, entries)| StreamAdapter {
                    labels: labels_text(f),
                    entries,
                    hash: 0,
                })
                .collect();
            let req = PushRequest { streams };
            snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
        })
        .collect()
}

/// A minimal blocking HTTP/1.1 keep-alive client.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        let w = TcpStream::connect(addr).unwrap();
        w.set_nodelay(true).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Conn { w, r }
    }

    fn request(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        self.w.write_all(head.as_bytes()).unwrap();
        self.w.write_all(body).unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            self.r.read_exact(&mut body).unwrap();
        }
        (status, body)
    }

    fn push(&mut self, body: &[u8]) {
        let (status, resp) = self.request(
            "POST",
            "/loki/api/v1/push",
            "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n",
            body,
        );
        assert_eq!(status, 204, "push: {}", String::from_utf8_lossy(&resp));
    }

    fn get(&mut self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, body) = self.request("GET", &format!("{path}?{q}"), "", b"");
        assert_eq!(status, 200, "{path} {params:?}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// CPU seconds of this process (user + system), from /proc.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0;
    let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (u + s) / tick
}

/// The machine's busy fraction over `d`, from /proc/stat (other agents share the cores).
fn machine_busy() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (v.iter().sum(), idle)
}

fn busy_since(start: (u64, u64)) -> f64 {
    let now = machine_busy();
    let total = (now.0 - start.0).max(1) as f64;
    let idle = (now.1 - start.1) as f64;
    (1.0 - idle / total) * 100.0
}

/// tantivy alone: the same schema, tokenizer and settings, one bulk load and one commit.
fn tantivy_alone(c: &Corpus, dir: &Path, a: &Args) -> (Duration, u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (schema, f) = index_schema();
    let t0 = Instant::now();
    let index = Index::builder()
        .schema(schema)
        .settings(index_settings())
        .create_in_dir(dir)
        .unwrap();
    index.tokenizers().register(TOKENIZER, LogTokenizer);
    let mut w = index
        .writer_with_num_threads(a.threads, (a.writer_mb << 20) as usize)
        .unwrap();
    for (file, ts, line) in &c.lines {
        let mut doc = TantivyDocument::default();
        doc.add_i64(f.ts, *ts);
        doc.add_u64(f.sid, *file as u64);
        doc.add_u64(f.len, line.len() as u64);
        doc.add_text(f.line, line);
        w.add_document(doc).unwrap();
    }
    w.commit().unwrap();
    let took = t0.elapsed();
    w.wait_merging_threads().unwrap();
    (took, dir_size(dir))
}

fn store_config(a: &Args) -> LogsConfig {
    LogsConfig {
        indexing_threads: a.threads,
        writer_memory: tidewatch_model::ByteSize::mib(a.writer_mb),
        commit_interval: tidewatch_model::Duration::from_millis(a.commit_ms),
        ..LogsConfig::default()
    }
}

fn searchable(store: &LogStore) -> u64 {
    store
        .partitions_in(i64::MIN, i64::MAX)
        .iter()
        .map(|p| p.reader.searcher().num_docs())
        .sum()
}

struct Server {
    store: Arc<LogStore>,
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
}

fn serve(dir: &Path, a: &Args) -> Server {
    let mut registry = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir, store_config(a), &mut registry).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = routes(store.clone());
    rt.spawn(async move { axum::serve(listener, app).await });
    Server { store, addr, rt }
}

/// Pushes every body over `pushers` keep-alive connections; returns when all are searchable.
fn push_all(s: &Server, bodies: &[Vec<u8>], lines: u64, pushers: usize) -> (Duration, Duration) {
    let before = searchable(&s.store);
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..pushers {
            scope.spawn(|| {
                let mut c = Conn::new(s.addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = bodies.get(i) else { break };
                    c.push(b);
                }
            });
        }
    });
    let acked = t0.elapsed();
    while searchable(&s.store) < before + lines {
        std::thread::sleep(Duration::from_millis(2));
    }
    (acked, t0.elapsed())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Ack → searchable: one line pushed, then polled through `query_range` until it is found.
fn ack_to_searchable(s: &Server, runs: usize) -> Vec<f64> {
    let mut c = Conn::new(s.addr);
    let mut out = Vec::new();
    for i in 0..runs {
        let token = format!("ackprobe{i}z{}", now_ns());
        let ts = now_ns();
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: "{job=\"probe\"}".into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: ts / 1_000_000_000,
                        nanos: (ts % 1_000_000_000) as i32,
                    }),
                    line: format!("probe line {token}"),
                }],
                hash: 0,
            }],
        };
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
        c.push(&body);
        let acked = Instant::now();
        let q = format!("{{job=\"probe\"}} |= \"{token}\"");
        let start = (ts - 60_000_000_000).to_string();
        let end = (ts + 60_000_000_000).to_string();
        loop {
            let v = c.get(
                "/loki/api/v1/query_range",
                &[("query", &q), ("start", &start), ("end", &end), ("limit", "1")],
            );
            if v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        out.push(acked.elapsed().as_secs_f64() * 1000.0);
        // Desynchronise from the commit period.
        std::thread::sleep(Duration::from_millis(137));
    }
    out
}

fn time_query(c: &mut Conn, runs: usize, params: &[(&str, &str)]) -> (f64, f64, usize) {
    let mut ms = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let v = c.get("/loki/api/v1/query_range", params);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        n = v["data"]["result"]
            .as_array()
            .map(|r| r.iter().map(|s| s["values"].as_array().map_or(0, |v| v.len())).sum())
            .unwrap_or(0);
    }
    (percentile(&mut ms.clone(), 0.5), percentile(&mut ms, 0.95), n)
}

fn time_grep(runs: usize, args: &[&str], file: &Path) -> (f64, String) {
    let mut ms = Vec::new();
    let mut out = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = std::process::Command::new("grep")
            .args(args)
            .arg(file)
            .output()
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        out = String::from_utf8_lossy(&o.stdout).lines().count().to_string();
        if args.contains(&"-c") || args.iter().any(|a| a.starts_with("-c")) {
            out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
    }
    (percentile(&mut ms, 0.5), out)
}

fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).unwrap();
    let base = loghub(&a.data);
    println!(
        "# logs_bench: {} loghub lines; threads {}, writer {} MiB, commit {} ms, {} pushers × {} lines/push",
        base.len(),
        a.threads,
        a.writer_mb,
        a.commit_ms,
        a.pushers,
        a.batch_lines
    );

    // 1 + 2: throughput and size, tantivy alone first, then the whole path.
    let c = corpus(&base, usize::MAX, a.mb as u64 * 1_000_000, 0);
    let n = c.lines.len() as u64;
    println!("corpus: {n} lines, {:.1} MB raw", c.raw_bytes as f64 / 1e6);
    let load = machine_busy();
    let cpu = cpu_secs();
    let (took, alone_bytes) = tantivy_alone(&c, &a.dir.join("tantivy-alone"), &a);
    let alone_cpu = cpu_secs() - cpu;
    let alone = mbps(c.raw_bytes, took);
    println!(
        "tantivy alone: {:.2} s, {alone:.1} MB/s, {:.1} CPU-s ({:.1} MB per CPU-s), disk {:.1} MB = {:.3} of raw; machine busy {:.0} %",
        took.as_secs_f64(),
        alone_cpu,
        c.raw_bytes as f64 / 1e6 / alone_cpu,
        alone_bytes as f64 / 1e6,
        alone_bytes as f64 / c.raw_bytes as f64,
        busy_since(load)
    );
    let b = bodies(&c, a.batch_lines);
    let wire: usize = b.iter().map(|x| x.len()).sum();
    let store_dir = a.dir.join("store");
    let s = serve(&store_dir, &a);
    let load = machine_busy();
    let cpu = cpu_secs();
    let (acked, done) = push_all(&s, &b, n, a.pushers);
    let path_cpu = cpu_secs() - cpu;
    let whole = mbps(c.raw_bytes, done);
    println!(
        "whole path: {} pushes ({:.1} MB snappy on the wire), all acked {:.2} s, all searchable {:.2} s: {whole:.1} MB/s, {:.1} CPU-s ({:.1} MB per CPU-s); machine busy {:.0} %",
        b.len(),
        wire as f64 / 1e6,
        acked.as_secs_f64(),
        done.as_secs_f64(),
        path_cpu,
        c.raw_bytes as f64 / 1e6 / path_cpu,
        busy_since(load)
    );
    println!("ratio whole path ÷ tantivy alone: {:.2}", whole / alone);
    drop(b);
    let mut lat = ack_to_searchable(&s, a.runs);
    println!(
        "ack → searchable ({} probes, commit every {} ms): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        lat.len(),
        a.commit_ms,
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.95),
        percentile(&mut lat, 1.0)
    );
    let Server { store, rt, .. } = s;
    drop(rt);
    store.close();
    drop(store);
    let parts: u64 = std::fs::read_dir(&store_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "wal" && e.path().is_dir())
        .map(|e| dir_size(&e.path()))
        .sum();
    let total = dir_size(&store_dir);
    println!(
        "disk: partitions {:.1} MB = {:.3} of raw; with the WAL's open segment {:.1} MB = {:.3}; tantivy alone {:.3}",
        parts as f64 / 1e6,
        parts as f64 / c.raw_bytes as f64,
        total as f64 / 1e6,
        total as f64 / c.raw_bytes as f64,
        alone_bytes as f64 / c.raw_bytes as f64
    );
    drop(c);
    let _ = std::fs::remove_dir_all(a.dir.join("tantivy-alone"));
    let _ = std::fs::remove_dir_all(&store_dir);
    if a.query_lines == 0 {
        return;
    }

    // 4: queries over `query_lines` lines.
    let c = corpus(&base, a.query_lines, u64::MAX, 5);
    let n = c.lines.len() as u64;
    let raw = a.dir.join("raw.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
        for (_, _, l) in &c.lines {
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    let b = bodies(&c, a.batch_lines);
    let qdir = a.dir.join("query-store");
    let s = serve(&qdir, &a);
    let (_, done) = push_all(&s, &b, n, a.pushers);
    drop(b);
    println!(
        "query corpus: {n} lines, {:.1} MB raw, pushed and searchable in {:.1} s ({:.1} MB/s)",
        c.raw_bytes as f64 / 1e6,
        done.as_secs_f64(),
        mbps(c.raw_bytes, done)
    );
    let last = c.lines.last().unwrap().1;
    let first = c.lines[0].1;
    drop(c);
    let mut conn = Conn::new(s.addr);
    let all_start = (first - 3_600_000_000_000).to_string();
    let end = (last + 1).to_string();
    let hour_start = (last - 3_600_000_000_000).to_string();
    let needle_q = format!("{{job=\"loghub\"}} |= \"{NEEDLE}\"");
    let (p50, p95, hits) = time_query(
        &mut conn,
        a.runs,
        &[
            ("query", &needle_q),
            ("start", &all_start),
            ("end", &end),
            ("limit", "100"),
        ],
    );
    let (g, gout) = time_grep(5, &["-F", NEEDLE], &raw);
    println!(
        "needle `{needle_q}` all time, limit 100: p50 {p50:.2} ms, p95 {p95:.2} ms, {hits} lines; grep -F: {g:.0} ms ({gout} lines); grep ÷ tidewatch {:.0}×",
        g / p50
    );
    let filter_q = "{job=\"loghub\"} |= \"error\"";
    let (p50, p95, hits) = time_query(
        &mut conn,
        a.runs,
        &[
            ("query", filter_q),
            ("start", &hour_start),
            ("end", &end),
            ("limit", "1000"),
        ],
    );
    let (g, gout) = time_grep(5, &["-cF", "error"], &raw);
    println!(
        "filter `{filter_q}` last 1 h, limit 1000: p50 {p50:.2} ms, p95 {p95:.2} ms, {hits} lines; grep -cF error (whole file): {g:.0} ms ({gout} lines)"
    );
    let metric_q = "sum by (service) (count_over_time({job=\"loghub\"}[5m]))";
    let day_start = (last - DAY_NS).to_string();
    let (p50, p95, _) = time_query(
        &mut conn,
        (a.runs / 4).max(3),
        &[
            ("query", metric_q),
            ("start", &day_start),
            ("end", &end),
            ("step", "300"),
        ],
    );
    let (g, gout) = time_grep(3, &["-cF", ""], &raw);
    println!(
        "metric `{metric_q}` over 24 h, step 5m: p50 {p50:.0} ms, p95 {p95:.0} ms; grep -cF '' (count every line): {g:.0} ms ({gout} lines)"
    );
    let Server { store, rt, .. } = s;
    drop(rt);
    store.close();
    let qbytes: u64 = std::fs::read_dir(&qdir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "wal" && e.path().is_dir())
        .map(|e| dir_size(&e.path()))
        .sum();
    println!(
        "query store disk: partitions {:.1} MB = {:.3} of raw",
        qbytes as f64 / 1e6,
        qbytes as f64 / std::fs::metadata(&raw).map(|m| m.len()).unwrap_or(1) as f64
    );
    let _ = std::fs::remove_dir_all(&a.dir);
}
