//! End-to-end tests of the `tidewatch` binary: each starts the real process on a loopback port
//! with a temporary data folder (see `tidewatch-testkit`).

mod agent;
mod alerts;
mod cli;
mod client;
mod durability;
mod lifecycle;
mod promql_conformance;
mod promql_differential;
mod query_api;
mod reload;
mod services;

/// Generous bounds: these tests check behaviour, not speed (speed is measured in bench/).
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
pub const EXIT_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `check` every 50 ms until it returns true or `within` passes.
pub fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

/// Writes one sample, stamped now, of the series `labels` (metric name included) through
/// remote_write, and checks that it was acknowledged.
pub fn push_now(server: &tidewatch_testkit::TestServer, labels: &[(&str, &str)], value: f64) {
    use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample { value, timestamp: now }],
        }],
        metadata: Vec::new(),
    }
    .to_snappy();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let res = agent
        .post(server.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .send(&body[..])
        .unwrap();
    assert_eq!(res.status(), 204);
}
