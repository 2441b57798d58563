//! Metric rounds travel as remote_write 1.0 to a real `tidewatch server`, each exactly once,
//! including staleness-style extra samples pushed outside the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tidewatch_collector::agent::{Agent, AgentConfig};
use tidewatch_collector::{CollectContext, MetricSource};
use tidewatch_model::{Labels, Sample, Series};
use tidewatch_testkit::TestServer;
use tokio_util::sync::CancellationToken;

/// Counts its rounds: round k reports the value k.
struct Rounds(Arc<AtomicU64>);

#[async_trait]
impl MetricSource for Rounds {
    fn id(&self) -> &str {
        "rounds"
    }

    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series> {
        let k = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        vec![Series {
            labels: Labels::from_pairs([("__name__", "tw_test_round"), ("node", ctx.node.as_str())]),
            samples: vec![Sample {
                timestamp_ms: ctx.now_ms,
                value: k as f64,
            }],
        }]
    }
}

fn values(server: &TestServer) -> Vec<f64> {
    let (status, body) = server.get("/api/v1/query?query=tw_test_round%5B1h%5D");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let Some(series) = v["data"]["result"].as_array().and_then(|r| r.first().cloned()) else {
        return Vec::new();
    };
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_rounds_arrive_once_as_remote_write() {
    let server = TestServer::start(&["server"]);
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let yaml = format!(
        "shipper: {{urls: [\"{}\"], batch_max_age: 100ms}}\ndocker: {{enabled: false}}\n",
        server.url("")
    );
    let config: AgentConfig = yaml_serde::from_str(&yaml).unwrap();
    let rounds = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let source: Box<dyn MetricSource> = Box::new(Rounds(rounds.clone()));
    let agent = Agent::start(
        config,
        data.path(),
        "node-1".into(),
        vec![(source, Duration::from_millis(100))],
        cancel.clone(),
    )
    .await
    .unwrap();
    while rounds.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A sample pushed outside the loop continues the source's numbers.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut handle = agent;
    assert!(handle.remove_metric_source("rounds"));
    let done = rounds.load(Ordering::SeqCst);
    handle
        .push_metrics(
            "rounds",
            vec![Series {
                labels: Labels::from_pairs([("__name__", "tw_test_round"), ("node", "node-1")]),
                samples: vec![Sample {
                    timestamp_ms: now + 1000,
                    value: 1000.0,
                }],
            }],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = values(&server);
    while got.last() != Some(&1000.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = values(&server);
    }
    let rounds_seen: Vec<f64> = got.iter().copied().filter(|v| *v < 1000.0).collect();
    let want: Vec<f64> = (1..=rounds_seen.len() as u64).map(|k| k as f64).collect();
    assert_eq!(rounds_seen, want, "rounds in order, none twice");
    assert!(
        rounds_seen.len() as u64 >= done.saturating_sub(1),
        "{} of {done} rounds",
        rounds_seen.len()
    );
    assert_eq!(got.last(), Some(&1000.0));
    cancel.cancel();
    handle.join().await;
}
