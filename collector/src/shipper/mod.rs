//! The shipper: reads batches from a disk buffer and sends them to one server URL, as Loki push
//! (logs) or Prometheus remote_write 1.0 (metrics), with the `Tidewatch-Batch` header of the
//! delivery contract. One task per (buffer, URL); each URL has its own acknowledged position.
//!
//! - A batch is cut when `batch_max_size` bytes are waiting or the oldest waiting entry is
//!   `batch_max_age` old.
//! - 2xx: acknowledged. Network errors, timeouts, 5xx and 429: the same batch again after an
//!   exponential backoff with jitter, forever (the buffer holds the data meanwhile, and fills
//!   up, which slows the sources down). Any other status: the batch is counted as rejected,
//!   logged, and skipped, so one bad record cannot stop the stream.
//!
//! The HTTP client is hyper-util's connection-pooling client over plain HTTP/1.1: it is already
//! compiled for bollard, costs no TLS stack, and the agent only talks to loopback or a trusted
//! network today (`https://` URLs are refused at start with a clear error).

mod encode;

use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tidewatch_model::BATCH_HEADER as HEADER_NAME;
use tidewatch_model::{ByteSize, Duration};
use tokio_util::sync::CancellationToken;

use crate::agent::AgentMetrics;
use crate::buffer::{Batch, Buffer, Reader};

/// `shipper:` in the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipperConfig {
    /// Base URLs of the servers (default `http://127.0.0.1:9700`); the shipper appends
    /// `/api/v1/write` and `/loki/api/v1/push`. Every URL gets everything.
    pub urls: Vec<String>,
    /// A batch is sent once this many bytes wait (default `1MiB`, buffer encoding).
    pub batch_max_size: ByteSize,
    /// ... or once its oldest entry waited this long (default `1s`).
    pub batch_max_age: Duration,
    /// Time for one request, answer included (default `30s`).
    pub request_timeout: Duration,
    /// First retry delay (default `250ms`); doubles per failure, with jitter.
    pub retry_min: Duration,
    /// Longest retry delay (default `30s`).
    pub retry_max: Duration,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        ShipperConfig {
            urls: vec!["http://127.0.0.1:9700".to_string()],
            batch_max_size: ByteSize::mib(1),
            batch_max_age: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
        }
    }
}

impl ShipperConfig {
    /// Checks the URLs; the error names the field and the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("shipper.urls: at least one URL is needed".into());
        }
        for (i, u) in self.urls.iter().enumerate() {
            if !u.starts_with("http://") {
                return Err(format!(
                    "shipper.urls[{i}]: {u:?} is not an http:// URL (https is not supported yet)"
                ));
            }
            format!("{}/api/v1/write", u.trim_end_matches('/'))
                .parse::<hyper::Uri>()
                .map_err(|e| format!("shipper.urls[{i}]: {u:?}: {e}"))?;
        }
        Ok(())
    }
}

/// What a buffer holds, and so which protocol ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Loki push.
    Logs,
    /// remote_write.
    Metrics,
}

impl StreamKind {
    /// The label value in the agent's metrics and the buffer's folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Logs => "logs",
            StreamKind::Metrics => "metrics",
        }
    }

    fn path(self) -> &'static str {
        match self {
            StreamKind::Logs => "/loki/api/v1/push",
            StreamKind::Metrics => "/api/v1/write",
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

enum Outcome {
    Acked,
    Rejected(u16, String),
    Retry(String),
}

/// Ships `buffer` to `url` until `cancel` fires.
pub async fn run(
    kind: StreamKind,
    buffer: Buffer,
    url: String,
    config: ShipperConfig,
    metrics: std::sync::Arc<AgentMetrics>,
    cancel: CancellationToken,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.request_timeout.as_std()));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let endpoint = format!("{}{}", url.trim_end_matches('/'), kind.path());
    let mut reader = buffer.reader(&url);
    let labels = vec![
        ("stream".to_string(), kind.as_str().to_string()),
        ("url".to_string(), url.clone()),
    ];
    let max_bytes = config.batch_max_size.bytes().max(1);
    let max_age = config.batch_max_age.as_std();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = reader.wait_for_data() => {}
        }
        let since = Instant::now();
        loop {
            if reader.pending_bytes() >= max_bytes {
                break;
            }
            let left = max_age.saturating_sub(since.elapsed());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(left) => break,
                _ = reader.wait_for_more() => {}
            }
        }
        let batch = match reader.read_batch(max_bytes) {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::time::sleep(StdDuration::from_millis(50)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, stream = kind.as_str(), "shipper: cannot read the buffer");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(StdDuration::from_secs(1)) => continue,
                }
            }
        };
        if !ship(
            kind,
            &client,
            &endpoint,
            &config,
            &metrics,
            &labels,
            &mut reader,
            batch,
            since,
            &cancel,
        )
        .await
        {
            return;
        }
        let lag = if reader.pending_bytes() == 0 {
            0.0
        } else {
            since.elapsed().as_secs_f64()
        };
        metrics.lag_seconds.get_or_create(&labels).set(lag);
        metrics
            .buffer_bytes
            .get_or_create(&vec![("stream".to_string(), kind.as_str().to_string())])
            .set(buffer.bytes() as i64);
    }
}

/// Sends one batch until it is acknowledged or rejected; false when cancelled.
#[allow(clippy::too_many_arguments)]
async fn ship(
    kind: StreamKind,
    client: &HttpClient,
    endpoint: &str,
    config: &ShipperConfig,
    metrics: &AgentMetrics,
    labels: &Vec<(String, String)>,
    reader: &mut Reader,
    batch: Batch,
    since: Instant,
    cancel: &CancellationToken,
) -> bool {
    let enc = encode::encode(&batch.entries);
    let body = Bytes::from(enc.body);
    let header = enc.header.to_string();
    let mut failures = 0u32;
    loop {
        let outcome = send(kind, client, endpoint, body.clone(), &header, config).await;
        match outcome {
            Outcome::Acked => {
                metrics.records_sent.get_or_create(labels).inc_by(enc.records);
                break;
            }
            Outcome::Rejected(status, message) => {
                metrics.records_rejected.get_or_create(labels).inc_by(enc.records);
                tracing::warn!(
                    url = reader.sink(),
                    status,
                    records = enc.records,
                    message = %message,
                    "shipper: the server rejected a batch; it is skipped"
                );
                break;
            }
            Outcome::Retry(why) => {
                metrics.send_failures.get_or_create(labels).inc();
                metrics
                    .lag_seconds
                    .get_or_create(labels)
                    .set(since.elapsed().as_secs_f64());
                let base = config.retry_min.as_std().as_secs_f64() * 2f64.powi(failures.min(20) as i32);
                let capped = base.min(config.retry_max.as_std().as_secs_f64());
                // "Equal jitter": half fixed, half random, so agents that failed together spread out.
                let delay = StdDuration::from_secs_f64(capped * (0.5 + fastrand::f64() * 0.5));
                if failures == 0 || failures.is_multiple_of(10) {
                    tracing::warn!(url = reader.sink(), error = %why, retry_in = ?delay, "shipper: send failed, retrying");
                }
                failures += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    if let Err(e) = reader.ack(&batch) {
        // The position stays where it was: the batch goes out again and the server drops the
        // repeat by its sequence numbers.
        tracing::error!(error = %e, "shipper: cannot record an acknowledgement");
    }
    true
}

async fn send(
    kind: StreamKind,
    client: &HttpClient,
    endpoint: &str,
    body: Bytes,
    header: &str,
    config: &ShipperConfig,
) -> Outcome {
    let mut req = Request::post(endpoint)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("User-Agent", concat!("tidewatch-agent/", env!("CARGO_PKG_VERSION")))
        .header(HEADER_NAME, header);
    if kind == StreamKind::Metrics {
        req = req.header("X-Prometheus-Remote-Write-Version", "0.1.0");
    }
    let req = match req.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => return Outcome::Rejected(0, format!("cannot build the request: {e}")),
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        // The answer body only matters for the log line, so read at most 4 KiB of it.
        let text = match Limited::new(resp.into_body(), 4096).collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        Ok::<_, String>((status, text))
    };
    match tokio::time::timeout(config.request_timeout.as_std(), exchange).await {
        Err(_) => Outcome::Retry(format!("no answer within {}", config.request_timeout)),
        Ok(Err(e)) => Outcome::Retry(e),
        Ok(Ok((status, text))) => {
            if status.is_success() {
                Outcome::Acked
            } else if status.as_u16() == 429 || status.is_server_error() {
                Outcome::Retry(format!("HTTP {status}: {text}"))
            } else {
                Outcome::Rejected(status.as_u16(), text)
            }
        }
    }
}
