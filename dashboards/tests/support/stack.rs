//! A running Tidewatch server with the UI in front of it, for the browser tests and the benchmark.
//!
//! Until the binary merges `tidewatch_dashboards::router`, the UI is served in-process by this
//! router, with every other path (`/api/v1/query`, `/loki/...`, `/api/v2/...`) proxied over HTTP
//! to a real `tidewatch` process, so the pages read real answers from the real server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tidewatch_testkit::TestServer;

const PROXY_BODY_LIMIT: usize = 64 << 20;

/// One series to send: its labels, and its samples as (milliseconds, value).
pub type SeriesData = (Vec<(String, String)>, Vec<(i64, f64)>);

pub struct Stack {
    pub server: TestServer,
    pub ui: SocketAddr,
    agent: ureq::Agent,
    _ui: UiServer,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .proxy(None)
        .build()
        .into()
}

/// The UI router on a loopback port, proxying every other path to `upstream`.
pub struct UiServer {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl UiServer {
    pub fn start(dashboards_dir: Option<PathBuf>, upstream: String) -> UiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let proxy_agent = agent();
        let app = tidewatch_dashboards::router(dashboards_dir).fallback(move |req: Request| {
            let (upstream, agent) = (upstream.clone(), proxy_agent.clone());
            async move { proxy(agent, upstream, req).await }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        UiServer {
            addr,
            _runtime: runtime,
        }
    }
}

impl Stack {
    /// Starts `tidewatch up` and the UI router (dashboards from `dashboards_dir`) on loopback.
    pub fn start(dashboards_dir: Option<PathBuf>) -> Stack {
        let server = TestServer::start(&["up"]);
        server.wait_ready(Duration::from_secs(60)).unwrap();
        let ui = UiServer::start(dashboards_dir, format!("http://{}", server.addr()));
        Stack {
            server,
            ui: ui.addr,
            agent: agent(),
            _ui: ui,
        }
    }

    /// `http://<ui>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ui)
    }

    /// Sends series through remote_write; each series is (labels, samples as (ms, value)).
    pub fn remote_write(&self, series: Vec<SeriesData>) {
        remote_write(&self.agent, &self.server.url("/api/v1/write"), series);
    }

    /// Pushes Loki JSON: `streams` is the `streams` array of a push request.
    pub fn push_logs(&self, streams: serde_json::Value) {
        let body = serde_json::json!({ "streams": streams }).to_string();
        let (status, answer) = self.server.post("/loki/api/v1/push", &body, "application/json");
        assert!(status == 204 || status == 200, "loki push: HTTP {status}: {answer}");
    }
}

/// Sends series to a remote_write `url`; each series is (labels, samples as (ms, value)).
pub fn remote_write(agent: &ureq::Agent, url: &str, series: Vec<SeriesData>) {
    let request = WriteRequest {
        timeseries: series
            .into_iter()
            .map(|(mut labels, samples)| {
                labels.sort();
                TimeSeries {
                    labels: labels.into_iter().map(|(name, value)| Label { name, value }).collect(),
                    samples: samples
                        .into_iter()
                        .map(|(timestamp, value)| Sample { value, timestamp })
                        .collect(),
                }
            })
            .collect(),
        metadata: Vec::new(),
    };
    let mut response = agent
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .content_type("application/x-protobuf")
        .send(&request.to_snappy()[..])
        .unwrap();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    assert!(status == 204 || status == 200, "remote_write: HTTP {status}: {body}");
}

async fn proxy(agent: ureq::Agent, upstream: String, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Bytes = match axum::body::to_bytes(req.into_body(), PROXY_BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    let url = format!("{upstream}{uri}");
    let answer = tokio::task::spawn_blocking(move || {
        let answer = match method.as_str() {
            "GET" | "HEAD" => agent.get(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            "PUT" => agent
                .put(&url)
                .content_type(content_type.as_deref().unwrap_or("application/octet-stream"))
                .send(&body[..]),
            _ => agent
                .post(&url)
                .content_type(content_type.as_deref().unwrap_or("application/octet-stream"))
                .send(&body[..]),
        };
        let mut response = answer.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let ctype = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .body_mut()
            .with_config()
            .limit(PROXY_BODY_LIMIT as u64)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, ctype, bytes))
    })
    .await;
    match answer {
        Ok(Ok((status, ctype, bytes))) => {
            let mut res = Response::new(Body::from(bytes));
            *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(c) = ctype.and_then(|c| c.parse().ok()) {
                res.headers_mut().insert(header::CONTENT_TYPE, c);
            }
            res
        }
        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, e).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
