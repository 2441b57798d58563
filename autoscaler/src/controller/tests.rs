//! The control loop on tokio's paused clock.
//!
//! The scheduler and the store are other crates, so these tests use stand-ins, said so where
//! they are defined: an in-memory scheduler (replicas become ready after a start delay), a
//! query engine that answers the CPU query from a load shared by the ready replicas, and an
//! appender that keeps what it is given. The end-to-end test on a real Docker engine belongs to
//! the binary's tests, once the scheduler exists.

use std::sync::Mutex as StdMutex;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tidewatch_model::{
    AppendError, BatchHeader, InstantSample, QueryError, QueryErrorKind, QueryOptions, QueryValue, Replica, ReplicaSet,
    ReplicasError, Sample, Series,
};
use tower::ServiceExt;

use super::*;
use crate::policy::ScalingRules;

const LIMIT_CORES: f64 = 0.25;
const START_DELAY: StdDuration = StdDuration::from_secs(2);

fn wall_ms(base_ms: i64, base: tokio::time::Instant) -> i64 {
    base_ms + base.elapsed().as_millis() as i64
}

/// Stand-in for the scheduler (another crate): an in-memory replica list that converges at
/// once, each new replica ready `START_DELAY` after it starts.
struct MemScheduler {
    base_ms: i64,
    base: tokio::time::Instant,
    inner: StdMutex<SchedState>,
}

struct SchedState {
    desired: u32,
    /// (id, started at ms)
    replicas: Vec<(String, i64)>,
    next: u32,
    set_calls: Vec<u32>,
    fail_reads: bool,
    fail_writes: bool,
}

impl MemScheduler {
    fn new(initial: u32) -> Arc<Self> {
        let s = Arc::new(MemScheduler {
            base_ms: 1_767_225_600_000,
            base: tokio::time::Instant::now(),
            inner: StdMutex::new(SchedState {
                desired: 0,
                replicas: Vec::new(),
                next: 0,
                set_calls: Vec::new(),
                fail_reads: false,
                fail_writes: false,
            }),
        });
        s.converge(initial, s.base_ms - 3_600_000);
        s
    }

    fn now_ms(&self) -> i64 {
        wall_ms(self.base_ms, self.base)
    }

    fn converge(&self, desired: u32, started: i64) {
        let mut st = self.inner.lock().unwrap();
        st.desired = desired;
        while st.replicas.len() < desired as usize {
            let id = format!("{:0>64}", st.next);
            st.next += 1;
            st.replicas.push((id, started));
        }
        st.replicas.truncate(desired as usize);
    }

    fn ready_ids(&self) -> Vec<String> {
        let now = self.now_ms();
        let st = self.inner.lock().unwrap();
        st.replicas
            .iter()
            .filter(|(_, started)| started + START_DELAY.as_millis() as i64 <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn set_calls(&self) -> Vec<u32> {
        self.inner.lock().unwrap().set_calls.clone()
    }
}

#[async_trait]
impl Replicas for MemScheduler {
    async fn replicas(&self, service: &str) -> Result<ReplicaSet, ReplicasError> {
        if service != "web" {
            return Err(ReplicasError::UnknownService(service.into()));
        }
        let now = self.now_ms();
        let st = self.inner.lock().unwrap();
        if st.fail_reads {
            return Err(ReplicasError::Backend("docker is not answering".into()));
        }
        let delay = START_DELAY.as_millis() as i64;
        Ok(ReplicaSet {
            service: service.into(),
            desired: st.desired,
            replicas: st
                .replicas
                .iter()
                .map(|(id, started)| Replica {
                    id: id.clone(),
                    node: "local".into(),
                    ready: started + delay <= now,
                    started_at_ms: *started,
                    ready_since_ms: (started + delay <= now).then_some(started + delay),
                })
                .collect(),
            cpu_reservation_cores: None,
            cpu_limit_cores: Some(LIMIT_CORES),
            memory_reservation_bytes: None,
            memory_limit_bytes: None,
        })
    }

    async fn set_desired(&self, _service: &str, desired: u32) -> Result<(), ReplicasError> {
        {
            let mut st = self.inner.lock().unwrap();
            if st.fail_writes {
                return Err(ReplicasError::Backend("disk full".into()));
            }
            st.set_calls.push(desired);
        }
        self.converge(desired, self.now_ms());
        Ok(())
    }
}

/// Stand-in for the store's PromQL engine (another crate): it answers the CPU query with the
/// load (in cores) shared by the ready replicas, throttled at their limit, and refuses
/// anything else. It ignores the rate window; the real engine computes `rate()`.
struct LoadQuery {
    scheduler: Arc<MemScheduler>,
    load_cores: StdMutex<f64>,
    asked: StdMutex<Vec<String>>,
}

impl LoadQuery {
    fn set_load(&self, cores: f64) {
        *self.load_cores.lock().unwrap() = cores;
    }
}

#[async_trait]
impl Query for LoadQuery {
    async fn instant(&self, expr: &str, at_ms: i64, _o: &QueryOptions) -> Result<QueryValue, QueryError> {
        self.asked.lock().unwrap().push(expr.to_string());
        if expr != crate::metrics::cpu_expr("web", web_policy().rate_window) {
            return Err(QueryError::new(
                QueryErrorKind::BadData,
                format!("unexpected query {expr}"),
            ));
        }
        let ready = self.scheduler.ready_ids();
        let load = *self.load_cores.lock().unwrap();
        let each = if ready.is_empty() {
            0.0
        } else {
            (load / ready.len() as f64).min(LIMIT_CORES)
        };
        Ok(QueryValue::Vector(
            ready
                .iter()
                .map(|id| InstantSample {
                    labels: Labels::from_pairs([("id", format!("/docker/{id}").as_str()), ("service", "web")]),
                    sample: Sample {
                        timestamp_ms: at_ms,
                        value: each,
                    },
                })
                .collect(),
        ))
    }

    async fn range(&self, _: &str, _: i64, _: i64, _: i64, _: &QueryOptions) -> Result<QueryValue, QueryError> {
        Err(QueryError::new(QueryErrorKind::BadData, "not used"))
    }
}

/// Stand-in for the store's appender (another crate): keeps the records in memory.
#[derive(Default)]
struct KeepLogs(StdMutex<Vec<LogRecord>>);

#[async_trait]
impl Appender for KeepLogs {
    async fn append_series(&self, _: Vec<Series>, _: Option<&BatchHeader>) -> Result<(), AppendError> {
        Ok(())
    }
    async fn append_logs(&self, records: Vec<LogRecord>, _: Option<&BatchHeader>) -> Result<(), AppendError> {
        self.0.lock().unwrap().extend(records);
        Ok(())
    }
}

fn web_policy() -> Policy {
    let mut p = Policy::cpu(2, 4, 60.0);
    p.behavior.as_mut().unwrap().scale_down = ScalingRules {
        stabilization_window: tidewatch_model::Duration::from_secs(30),
        ..ScalingRules::default_down()
    };
    p
}

struct Rig {
    autoscaler: Arc<Autoscaler>,
    scheduler: Arc<MemScheduler>,
    query: Arc<LoadQuery>,
    logs: Arc<KeepLogs>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

fn rig(policy: Policy) -> Rig {
    let scheduler = MemScheduler::new(2);
    let query = Arc::new(LoadQuery {
        scheduler: scheduler.clone(),
        load_cores: StdMutex::new(0.3),
        asked: StdMutex::default(),
    });
    let logs = Arc::new(KeepLogs::default());
    let autoscaler = Arc::new(Autoscaler::new(query.clone(), scheduler.clone(), Some(logs.clone())));
    autoscaler
        .set_policies(HashMap::from([("web".to_string(), policy)]))
        .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(autoscaler.clone().run(shutdown.clone()));
    Rig {
        autoscaler,
        scheduler,
        query,
        logs,
        shutdown,
        run,
    }
}

async fn get(router: axum::Router, uri: &str) -> (StatusCode, String) {
    let response = router
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn load_step_scales_up_then_down_after_the_window_and_every_step_is_explained() {
    let r = rig(web_policy());
    let mut registry = Registry::default();
    r.autoscaler.register(&mut registry);

    // 0.3 cores over 2 replicas = 60 % of the 0.25-core limit: on target.
    tokio::time::sleep(StdDuration::from_secs(5)).await;
    assert!(r.scheduler.set_calls().is_empty());
    assert_eq!(r.autoscaler.status("web").unwrap().desired_replicas, Some(2));

    // The step: 0.6 cores, each replica throttled at 100 % → ceil(100/60 × 2) = 4.
    r.query.set_load(0.6);
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    assert_eq!(r.scheduler.set_calls(), vec![4]);
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    assert_eq!(
        r.scheduler.ready_ids().len(),
        4,
        "the new replicas passed their start delay"
    );

    // Load gone: held by the 30 s window, then down to min 2.
    r.query.set_load(0.0);
    tokio::time::sleep(StdDuration::from_secs(20)).await;
    assert_eq!(
        r.scheduler.set_calls(),
        vec![4],
        "still inside the stabilisation window"
    );
    tokio::time::sleep(StdDuration::from_secs(15)).await;
    assert_eq!(r.scheduler.set_calls(), vec![4, 2]);

    let decisions = r.autoscaler.decisions("web", 100).unwrap();
    let reasons: Vec<&str> = decisions.iter().map(|d| d.reason.as_str()).collect();
    assert!(
        reasons.contains(&"web 2→4: cpu 100% of limit > target 60%"),
        "{reasons:#?}"
    );
    assert!(
        reasons.contains(
            &"web stays at 4: cpu 100% of limit > target 60% (held: 2 not ready counted as 0 gives ratio 0.83)"
        ),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r
            .starts_with("web stays at 4: cpu 0% of limit < target 60%; held by scaleDown stabilization window 30s")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("web 4→2: cpu 0% of limit < target 60%; limited by min_replicas 2")),
        "{reasons:#?}"
    );
    assert!(
        decisions.len() < 10,
        "only changes are logged, not every second: {reasons:#?}"
    );
    let scaled: Vec<&Decision> = decisions.iter().filter(|d| d.scales()).collect();
    assert!(scaled.iter().all(|d| d.applied));

    // Log records through the appender, one per logged decision.
    let logs = r.logs.0.lock().unwrap().clone();
    assert_eq!(logs.len(), decisions.len());
    assert_eq!(logs[0].labels.get("source"), Some("autoscaler"));
    assert_eq!(logs[0].labels.get("service"), Some("web"));
    let parsed: serde_json::Value = serde_json::from_str(&logs.last().unwrap().line).unwrap();
    assert_eq!(parsed["to"], 2);

    // Metrics.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("tidewatch_autoscaler_desired_replicas{service=\"web\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("tidewatch_autoscaler_current_replicas{service=\"web\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("tidewatch_autoscaler_metric_target{service=\"web\",metric=\"cpu\"} 60"),
        "{text}"
    );
    assert!(
        text.contains("tidewatch_autoscaler_metric_value{service=\"web\",metric=\"cpu\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("tidewatch_autoscaler_decisions_total{service=\"web\",outcome=\"scale_up\"} 1"),
        "{text}"
    );

    // The API and explain.
    let router = r.autoscaler.clone().router();
    let (status, body) = get(router.clone(), "/api/v1/autoscaler").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"][0]["service"], "web");
    assert_eq!(v["data"][0]["desired_replicas"], 2);
    let (status, body) = get(router.clone(), "/api/v1/autoscaler/web").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let conditions = v["data"]["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "AbleToScale"), "{body}");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ScalingLimited" && c["reason"] == "TooFewReplicas"),
        "{body}"
    );
    assert!(!v["data"]["decisions"].as_array().unwrap().is_empty());
    let (status, body) = get(router.clone(), "/api/v1/autoscaler/web/decisions?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["to"], 2, "newest last");
    let (status, body) = get(router.clone(), "/api/v1/autoscaler/web/decisions?limit=zero").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("limit"), "{body}");
    let (status, body) = get(router.clone(), "/api/v1/autoscaler/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("nope"), "{body}");
    let (status, body) = get(router, "/api/v1/autoscaler/web/explain").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("cpu utilization (percentage of limit):  0% / 60%"),
        "{body}"
    );
    assert!(body.contains("web 2→4: cpu 100% of limit > target 60%"), "{body}");
    let explain = r.autoscaler.explain("web");
    assert!(
        explain.contains("Replicas:             2 current / 2 desired (2 ready)"),
        "{explain}"
    );
    assert!(explain.contains("ScalingLimited  True    TooFewReplicas"), "{explain}");
    assert!(r.autoscaler.explain("db").contains("no autoscaling policy"));

    r.shutdown.cancel();
    r.run.await.unwrap();
    assert!(r.query.asked.lock().unwrap().len() > 40, "evaluated every second");
}

#[tokio::test(start_paused = true)]
async fn dry_run_decides_without_acting_and_logs_once() {
    let mut policy = web_policy();
    policy.dry_run = true;
    let r = rig(policy);
    r.query.set_load(0.6);
    tokio::time::sleep(StdDuration::from_secs(30)).await;
    assert!(r.scheduler.set_calls().is_empty(), "dry run never acts");
    let decisions = r.autoscaler.decisions("web", 100).unwrap();
    let would: Vec<&Decision> = decisions.iter().filter(|d| d.scales()).collect();
    assert_eq!(
        would.len(),
        1,
        "the same would-be decision is logged once: {decisions:#?}"
    );
    assert!(would[0].dry_run && !would[0].applied);
    assert!(
        would[0].reason.ends_with("(dry run: not applied)"),
        "{}",
        would[0].reason
    );
    r.shutdown.cancel();
    r.run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn scheduler_failures_show_as_conditions() {
    let r = rig(web_policy());
    r.scheduler.inner.lock().unwrap().fail_reads = true;
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    let status = r.autoscaler.status("web").unwrap();
    assert_eq!(status.conditions[0].reason, "FailedGetScale");
    assert!(status.reason.unwrap().contains("docker is not answering"));
    {
        let mut st = r.scheduler.inner.lock().unwrap();
        st.fail_reads = false;
        st.fail_writes = true;
    }
    r.query.set_load(0.6);
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    let status = r.autoscaler.status("web").unwrap();
    let able = status.conditions.iter().find(|c| c.kind == "AbleToScale").unwrap();
    assert_eq!((able.status, able.reason), ("False", "FailedUpdateScale"));
    assert!(status.reason.unwrap().contains("not applied: backend error: disk full"));
    // Once writes work, it scales.
    r.scheduler.inner.lock().unwrap().fail_writes = false;
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    assert_eq!(r.scheduler.set_calls(), vec![4]);
    r.shutdown.cancel();
    r.run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn live_reload_validates_changes_and_stops_removed_services() {
    let r = rig(web_policy());
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    let mut bad = web_policy();
    bad.max_replicas = 1;
    let err = r
        .autoscaler
        .set_policies(HashMap::from([("web".to_string(), bad)]))
        .unwrap_err();
    assert_eq!(err.field, "web.autoscale.min_replicas");
    assert_eq!(
        r.autoscaler.status("web").unwrap().policy.max_replicas,
        4,
        "the old policy stays"
    );

    // A new interval takes effect; history stays.
    let mut slower = web_policy();
    slower.interval = tidewatch_model::Duration::from_secs(10);
    r.autoscaler
        .set_policies(HashMap::from([("web".to_string(), slower)]))
        .unwrap();
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    let asked = r.query.asked.lock().unwrap().len();
    tokio::time::sleep(StdDuration::from_secs(20)).await;
    let after = r.query.asked.lock().unwrap().len();
    assert!((1..=3).contains(&(after - asked)), "every 10 s now: {asked} → {after}");

    // Removed: the loop stops and the API forgets it.
    r.autoscaler.set_policies(HashMap::new()).unwrap();
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    let asked = r.query.asked.lock().unwrap().len();
    tokio::time::sleep(StdDuration::from_secs(30)).await;
    assert_eq!(r.query.asked.lock().unwrap().len(), asked);
    assert!(matches!(
        r.autoscaler.status("web"),
        Err(AutoscalerError::UnknownService(_))
    ));
    r.shutdown.cancel();
    r.run.await.unwrap();
}
