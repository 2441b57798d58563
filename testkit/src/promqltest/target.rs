//! Servers the scripts run against, through Prometheus' HTTP API: samples go in by remote_write
//! 1.0 (`POST /api/v1/write`, snappy-compressed protobuf), queries by `POST /api/v1/query` and
//! `/api/v1/query_range` with form bodies, as Grafana sends them.

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tempfile::TempDir;
use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};

use super::parse::{Labels, format_labels};

/// One series to write: labels (with `__name__`) and `(timestamp_ms, value)` samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteSeries {
    /// Labels, `__name__` included.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Labels of the result series.
    pub labels: Labels,
    /// Timestamp, ms.
    pub t_ms: i64,
    /// The value (meaningless when `histogram`).
    pub value: f64,
    /// The sample is a native histogram (3.x servers).
    pub histogram: bool,
}

/// One series of a range vector (matrix).
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSeries {
    /// Labels of the result series.
    pub labels: Labels,
    /// Float points `(t_ms, value)`.
    pub floats: Vec<(i64, f64)>,
    /// Number of native-histogram points (not decoded).
    pub histograms: usize,
}

/// A successful query's value, by `resultType`.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// `vector`.
    Vector(Vec<VectorSample>),
    /// `matrix`.
    Matrix(Vec<MatrixSeries>),
    /// `scalar`.
    Scalar {
        /// Timestamp, ms.
        t_ms: i64,
        /// Value.
        value: f64,
    },
    /// `string`.
    String {
        /// Timestamp, ms.
        t_ms: i64,
        /// Value.
        value: String,
    },
}

/// A `status: "error"` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (Prometheus: 400 bad_data, 422 execution, 503 timeout, ...).
    pub http_status: u16,
    /// `errorType`.
    pub error_type: String,
    /// `error`.
    pub message: String,
}

/// The answer to a query: a value or an API error, with the `warnings` and `infos` arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResponse {
    /// The value, or the error the API answered.
    pub result: Result<QueryValue, ApiError>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// `infos` (Prometheus 3.x).
    pub infos: Vec<String>,
}

/// A server the scripts run against.
///
/// `Err(String)` from any method means the harness could not talk to the server (or the server
/// refused a write): the runner counts the affected cases as failed with kind `harness`. An error
/// *answer* to a query is not an `Err`: it is `QueryResponse::result == Err(ApiError)`.
pub trait Target {
    /// A short description for reports, e.g. `prometheus (/usr/bin/prometheus, 2.42.0+ds)`.
    fn describe(&self) -> String;
    /// Replaces the server's storage by a fresh, empty one (e.g. restart on a new data folder).
    fn reset(&mut self) -> Result<(), String>;
    /// Writes samples. The runner only ever writes samples newer than those already written since
    /// the last reset (it resets and replays when a script goes back in time), so a server that
    /// refuses out-of-order samples is fine.
    fn write(&mut self, series: &[WriteSeries]) -> Result<(), String>;
    /// `POST /api/v1/query` with `query` and `time`.
    fn query_instant(&mut self, expr: &str, t_ms: i64) -> Result<QueryResponse, String>;
    /// `POST /api/v1/query_range` with `query`, `start`, `end`, `step`.
    fn query_range(&mut self, expr: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResponse, String>;
}

/// Largest remote_write request, in samples (Prometheus' own sender sends 2,000 per request; more
/// per request keeps loading fast, and every server here accepts a few MB).
pub const DEFAULT_SAMPLES_PER_WRITE: usize = 50_000;

/// Timeout of one HTTP request (Prometheus' default query timeout is 2 minutes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(150);

/// A client for a Prometheus-compatible HTTP API at `base_url` (`http://127.0.0.1:9090`, no
/// trailing slash). The building block of both targets; usable on its own.
#[derive(Clone)]
pub struct PromClient {
    base_url: String,
    agent: ureq::Agent,
    /// Samples per remote_write request.
    pub samples_per_write: usize,
}

impl PromClient {
    /// A client for `base_url`; never uses a proxy from the environment.
    pub fn new(base_url: &str) -> PromClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .proxy(None)
            .build()
            .into();
        PromClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            agent,
            samples_per_write: DEFAULT_SAMPLES_PER_WRITE,
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Writes `series` by remote_write, in time order across all series: the samples are sorted by
    /// timestamp and cut into requests of at most `samples_per_write` samples, each request holding
    /// every series that has samples in its time window. A server that only accepts samples close
    /// to the newest one it has (Prometheus' head: newer than max time - 1h) thus accepts
    /// everything, however long the series.
    pub fn remote_write(&self, series: &[WriteSeries]) -> Result<(), String> {
        for request in write_requests(series, self.samples_per_write) {
            self.post_write(&request)?;
        }
        Ok(())
    }

    fn post_write(&self, request: &WriteRequest) -> Result<(), String> {
        let url = format!("{}/api/v1/write", self.base_url);
        let body = request.to_snappy();
        let answer = self
            .agent
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .content_type("application/x-protobuf")
            .send(&body[..]);
        let mut response = answer.map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let first = request.timeseries.first().map(|ts| {
            let labels: Labels = ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            format_labels(&labels)
        });
        Err(format!(
            "remote write refused: HTTP {status}: {} (request of {} series, first {})",
            text.trim(),
            request.timeseries.len(),
            first.unwrap_or_default()
        ))
    }

    /// `POST /api/v1/query` (form body `query`, `time`).
    pub fn query_instant(&self, expr: &str, t_ms: i64) -> Result<QueryResponse, String> {
        self.post_form("/api/v1/query", &[("query", expr), ("time", &format_seconds(t_ms))])
    }

    /// `POST /api/v1/query_range` (form body `query`, `start`, `end`, `step`).
    pub fn query_range(&self, expr: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResponse, String> {
        self.post_form(
            "/api/v1/query_range",
            &[
                ("query", expr),
                ("start", &format_seconds(start_ms)),
                ("end", &format_seconds(end_ms)),
                ("step", &format_seconds(step_ms)),
            ],
        )
    }

    fn post_form(&self, path: &str, params: &[(&str, &str)]) -> Result<QueryResponse, String> {
        let url = format!("{}{path}", self.base_url);
        let body = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let answer = self
            .agent
            .post(&url)
            .content_type("application/x-www-form-urlencoded")
            .send(&body);
        let mut response = answer.map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
        parse_query_response(status, &text)
    }
}

/// Cuts `series` into remote_write requests of at most `per_request` samples, in time order
/// across series: request `k + 1` holds no sample older than any of request `k`; within a request
/// every series appears once, its samples in time order, its labels sorted by name.
pub fn write_requests(series: &[WriteSeries], per_request: usize) -> Vec<WriteRequest> {
    let mut points: Vec<(i64, usize, f64)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.samples.iter().map(move |&(t, v)| (t, i, v)))
        .collect();
    // Stable: per series, samples stay in their given (time) order.
    points.sort_by_key(|&(t, i, _)| (t, i));
    let mut requests = Vec::new();
    for chunk in points.chunks(per_request.max(1)) {
        let mut by_series: Vec<Option<TimeSeries>> = vec![None; series.len()];
        for &(t, i, v) in chunk {
            by_series[i]
                .get_or_insert_with(|| TimeSeries {
                    labels: series[i]
                        .labels
                        .iter()
                        .map(|(name, value)| Label {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    samples: Vec::new(),
                })
                .samples
                .push(Sample { value: v, timestamp: t });
        }
        requests.push(WriteRequest {
            timeseries: by_series.into_iter().flatten().collect(),
            metadata: Vec::new(),
        });
    }
    requests
}

/// Milliseconds as the decimal seconds the API takes: `1.5`, `-0.001`, `3000`.
pub fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    if abs.is_multiple_of(1000) {
        format!("{sign}{}", abs / 1000)
    } else {
        format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses a value string of the API: decimal, `NaN`, `+Inf`, `-Inf`.
pub fn parse_api_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| format!("not a sample value: {s:?}")),
    }
}

fn parse_ts(v: &Json) -> Result<i64, String> {
    let secs = v.as_f64().ok_or_else(|| format!("not a timestamp: {v}"))?;
    Ok((secs * 1000.0).round() as i64)
}

/// `[<t>, "<v>"]`.
fn parse_point(v: &Json) -> Result<(i64, f64), String> {
    let arr = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| format!("not a point: {v}"))?;
    let value = arr[1]
        .as_str()
        .ok_or_else(|| format!("point value is not a string: {v}"))?;
    Ok((parse_ts(&arr[0])?, parse_api_float(value)?))
}

fn parse_metric(v: Option<&Json>) -> Result<Labels, String> {
    let Some(v) = v else { return Ok(Labels::new()) };
    let obj = v.as_object().ok_or_else(|| format!("metric is not an object: {v}"))?;
    obj.iter()
        .map(|(k, v)| {
            let s = v.as_str().ok_or_else(|| format!("label {k} is not a string: {v}"))?;
            Ok((k.clone(), s.to_string()))
        })
        .collect()
}

fn string_list(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a query answer of Prometheus' HTTP API (any HTTP status).
pub fn parse_query_response(http_status: u16, body: &str) -> Result<QueryResponse, String> {
    let json: Json = serde_json::from_str(body).map_err(|e| {
        let snippet: String = body.chars().take(300).collect();
        format!("HTTP {http_status}, answer is not JSON ({e}): {snippet}")
    })?;
    let warnings = string_list(json.get("warnings"));
    let infos = string_list(json.get("infos"));
    let status = json.get("status").and_then(Json::as_str).unwrap_or("");
    if status != "success" {
        if status != "error" {
            return Err(format!("HTTP {http_status}, answer has status {status:?}: {body}"));
        }
        let error = ApiError {
            http_status,
            error_type: json.get("errorType").and_then(Json::as_str).unwrap_or("").to_string(),
            message: json.get("error").and_then(Json::as_str).unwrap_or("").to_string(),
        };
        return Ok(QueryResponse {
            result: Err(error),
            warnings,
            infos,
        });
    }
    let data = json.get("data").ok_or("success answer without data")?;
    let result_type = data.get("resultType").and_then(Json::as_str).unwrap_or("");
    let result = data.get("result").ok_or("success answer without data.result")?;
    let value = match result_type {
        "vector" => {
            let items = result.as_array().ok_or("vector result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let labels = parse_metric(item.get("metric"))?;
                if let Some(v) = item.get("value") {
                    let (t_ms, value) = parse_point(v)?;
                    out.push(VectorSample {
                        labels,
                        t_ms,
                        value,
                        histogram: false,
                    });
                } else if let Some(h) = item.get("histogram") {
                    let t_ms = h.get(0).map(parse_ts).transpose()?.unwrap_or(0);
                    out.push(VectorSample {
                        labels,
                        t_ms,
                        value: f64::NAN,
                        histogram: true,
                    });
                } else {
                    return Err(format!("vector sample without value: {item}"));
                }
            }
            QueryValue::Vector(out)
        }
        "matrix" => {
            let items = result.as_array().ok_or("matrix result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let labels = parse_metric(item.get("metric"))?;
                let floats = match item.get("values").and_then(Json::as_array) {
                    Some(points) => points.iter().map(parse_point).collect::<Result<Vec<_>, _>>()?,
                    None => Vec::new(),
                };
                let histograms = item.get("histograms").and_then(Json::as_array).map_or(0, Vec::len);
                out.push(MatrixSeries {
                    labels,
                    floats,
                    histograms,
                });
            }
            QueryValue::Matrix(out)
        }
        "scalar" => {
            let (t_ms, value) = parse_point(result)?;
            QueryValue::Scalar { t_ms, value }
        }
        "string" => {
            let arr = result
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("string result is not a pair")?;
            QueryValue::String {
                t_ms: parse_ts(&arr[0])?,
                value: arr[1].as_str().unwrap_or("").to_string(),
            }
        }
        other => return Err(format!("unknown resultType {other:?}")),
    };
    Ok(QueryResponse {
        result: Ok(value),
        warnings,
        infos,
    })
}

/// Any server behind a URL, restarted by a closure: the closure starts (or restarts) the server
/// on fresh, empty storage and returns its base URL. Dropping the target drops the closure (so a
/// closure that owns a [`TestServer`](crate::TestServer) stops it).
pub struct HttpTarget {
    name: String,
    restart: Box<dyn FnMut() -> Result<String, String>>,
    client: PromClient,
}

impl HttpTarget {
    /// Calls `restart` once to start the server.
    pub fn new(
        name: &str,
        mut restart: impl FnMut() -> Result<String, String> + 'static,
    ) -> Result<HttpTarget, String> {
        let url = restart()?;
        Ok(HttpTarget {
            name: name.to_string(),
            restart: Box::new(restart),
            client: PromClient::new(&url),
        })
    }

    /// The `tidewatch` binary (found as [`tidewatch_bin`](crate::tidewatch_bin) does), run by
    /// [`TestServer`](crate::TestServer) as `tidewatch --log-format json <args...> server --listen
    /// 127.0.0.1:<port> --data-dir <tmp>/data`; every reset starts a new one on a new folder.
    /// `args` are global options (e.g. `["--config", path]`), possibly empty.
    pub fn tidewatch(args: &[&str]) -> Result<HttpTarget, String> {
        let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        argv.push("server".to_string());
        let mut current: Option<crate::TestServer> = None;
        HttpTarget::new("tidewatch", move || {
            drop(current.take()); // stop the previous server (and delete its folder) first
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let server = crate::TestServer::start(&args);
            server.wait_ready(Duration::from_secs(60))?;
            let url = server.url("");
            current.replace(server);
            Ok(url)
        })
    }

    /// The current base URL.
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// Samples per remote_write request (default [`DEFAULT_SAMPLES_PER_WRITE`]).
    pub fn set_samples_per_write(&mut self, n: usize) {
        self.client.samples_per_write = n;
    }
}

impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.client.base_url())
    }

    fn reset(&mut self) -> Result<(), String> {
        let url = (self.restart)()?;
        let per_write = self.client.samples_per_write;
        self.client = PromClient::new(&url);
        self.client.samples_per_write = per_write;
        Ok(())
    }

    fn write(&mut self, series: &[WriteSeries]) -> Result<(), String> {
        self.client.remote_write(series)
    }

    fn query_instant(&mut self, expr: &str, t_ms: i64) -> Result<QueryResponse, String> {
        self.client.query_instant(expr, t_ms)
    }

    fn query_range(&mut self, expr: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResponse, String> {
        self.client.query_range(expr, start_ms, end_ms, step_ms)
    }
}

/// The Debian package's binary.
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// A real Prometheus server, started on a loopback port and a temporary data folder, and
/// restarted on a new folder by every reset (Prometheus 2.42 starts in well under a second).
///
/// Flags: an empty configuration file (nothing scraped, evaluation interval 1m, which is also the
/// default subquery step the test engine uses), `--web.enable-remote-write-receiver`,
/// `--query.lookback-delta=5m`, `--query.max-samples=10000` (Prometheus' test engine limit),
/// `--storage.tsdb.retention.time=100y` (retention counts from the newest sample, and scripts span
/// up to weeks of 1970). `@` and negative offsets are always on in 2.42 (the feature flags
/// `promql-at-modifier` and `promql-negative-offset` are no-ops that only log a warning).
pub struct PrometheusTarget {
    bin: PathBuf,
    version: String,
    extra_args: Vec<String>,
    process: Option<PrometheusProcess>,
    client: PromClient,
    /// How many times the server was started.
    pub starts: usize,
    /// Total time spent starting servers.
    pub start_time: Duration,
}

struct PrometheusProcess {
    child: Child,
    dir: TempDir,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrometheusTarget {
    /// `$PROMETHEUS_BIN` if set, else `/usr/bin/prometheus`, if that file exists.
    pub fn find_binary() -> Option<PathBuf> {
        let path = std::env::var_os("PROMETHEUS_BIN").map_or_else(|| PathBuf::from(PROMETHEUS_BIN), PathBuf::from);
        path.is_file().then_some(path)
    }

    /// Starts `bin` with the flags above.
    pub fn start(bin: &Path) -> Result<PrometheusTarget, String> {
        Self::start_with_args(bin, &[])
    }

    /// Starts `bin` with the flags above plus `extra_args` (appended last, so they win).
    pub fn start_with_args(bin: &Path, extra_args: &[&str]) -> Result<PrometheusTarget, String> {
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {} --version: {e}", bin.display()))?;
        let version_text =
            String::from_utf8_lossy(&version.stdout).to_string() + &String::from_utf8_lossy(&version.stderr);
        let version = version_text
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("unknown")
            .to_string();
        let mut target = PrometheusTarget {
            bin: bin.to_path_buf(),
            version,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            process: None,
            client: PromClient::new("http://127.0.0.1:1"),
            starts: 0,
            start_time: Duration::ZERO,
        };
        target.restart()?;
        Ok(target)
    }

    /// The version `prometheus --version` printed, e.g. `2.42.0+ds`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The current base URL.
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    fn restart(&mut self) -> Result<(), String> {
        self.process = None; // kill the old server and delete its folder
        let started = Instant::now();
        let mut last_error = String::new();
        // A port taken between free_port() and the bind makes Prometheus exit: try again.
        for _ in 0..3 {
            match self.spawn() {
                Ok((process, url)) => {
                    self.process = Some(process);
                    let per_write = self.client.samples_per_write;
                    self.client = PromClient::new(&url);
                    self.client.samples_per_write = per_write;
                    self.starts += 1;
                    self.start_time += started.elapsed();
                    return Ok(());
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn spawn(&self) -> Result<(PrometheusProcess, String), String> {
        let dir = tempfile::Builder::new()
            .prefix("promqltest-prometheus-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, "# empty: nothing is scraped\n")
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port()));
        let log_path = dir.path().join("prometheus.log");
        let log = File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--query.lookback-delta=5m")
            .arg("--query.max-samples=10000")
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=warn")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let mut process = PrometheusProcess { child, dir };
        let url = format!("http://{addr}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(1)))
            .proxy(None)
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                let logs = fs::read_to_string(process.dir.path().join("prometheus.log")).unwrap_or_default();
                return Err(format!(
                    "prometheus exited ({status}) before it was ready; logs:\n{}",
                    tail(&logs)
                ));
            }
            if let Ok(response) = agent.get(format!("{url}/-/ready")).call()
                && response.status() == 200
            {
                return Ok((process, url));
            }
            if Instant::now() > deadline {
                let logs = fs::read_to_string(process.dir.path().join("prometheus.log")).unwrap_or_default();
                return Err(format!("prometheus was not ready within 60s; logs:\n{}", tail(&logs)));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Samples per remote_write request (default [`DEFAULT_SAMPLES_PER_WRITE`]).
    pub fn set_samples_per_write(&mut self, n: usize) {
        self.client.samples_per_write = n;
    }

    /// The server's log so far (warnings and errors only).
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .and_then(|p| fs::read_to_string(p.dir.path().join("prometheus.log")).ok())
            .unwrap_or_default()
    }
}

/// The last 30 lines of a log.
fn tail(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Target for PrometheusTarget {
    fn describe(&self) -> String {
        format!("prometheus {} ({})", self.version, self.bin.display())
    }

    fn reset(&mut self) -> Result<(), String> {
        self.restart()
    }

    fn write(&mut self, series: &[WriteSeries]) -> Result<(), String> {
        self.client.remote_write(series)
    }

    fn query_instant(&mut self, expr: &str, t_ms: i64) -> Result<QueryResponse, String> {
        self.client.query_instant(expr, t_ms)
    }

    fn query_range(&mut self, expr: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryResponse, String> {
        self.client.query_range(expr, start_ms, end_ms, step_ms)
    }
}
