//! The alert state machine, `ALERTS` write-back, `for` restoration, limits, template errors,
//! the eager trigger and the `/api/v1/rules` + `/api/v1/alerts` shapes. Time is explicit
//! (`eval_all_at`), evaluated by the store's real PromQL engine over in-memory series.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tidewatch_alertmanager::rules::{AlertState, Health, MemSeries, RuleKind, RuleManager, RulesConfig, router};
use tidewatch_alertmanager::{AlertSink, PostableAlert};
use tidewatch_model::{Appender, Labels, Matcher, Query, QueryOptions, QueryValue, Sample, Series};
use tidewatch_store::promql::{Engine, EngineOptions, EvalError, SeriesSource};
use tower::ServiceExt;

struct Source(Arc<MemSeries>);

impl SeriesSource for Source {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError> {
        Ok(self.0.select(matchers, mint, maxt))
    }
}

/// Collects what the rule engine hands over (the receiving end of the sink).
#[derive(Default)]
struct Collect {
    alerts: Mutex<Vec<PostableAlert>>,
    arrived: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl AlertSink for Collect {
    async fn send(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        self.alerts.lock().unwrap().extend(alerts);
        self.arrived.notify_waiters();
        Ok(())
    }
}

impl Collect {
    fn take(&self) -> Vec<PostableAlert> {
        std::mem::take(&mut *self.alerts.lock().unwrap())
    }
}

const M: i64 = 60_000;

struct Fixture {
    _dir: tempfile::TempDir,
    file: PathBuf,
    mem: Arc<MemSeries>,
    engine: Arc<Engine>,
    sink: Arc<Collect>,
    manager: RuleManager,
}

fn series(name: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    let mut l = Labels::from_pairs(labels.iter().copied());
    l.set("__name__", name);
    Series {
        labels: l,
        samples: points
            .iter()
            .map(|&(t, v)| Sample {
                timestamp_ms: t,
                value: v,
            })
            .collect(),
    }
}

async fn fixture(rules: &str, data: Vec<Series>, mem: Option<Arc<MemSeries>>, config: RulesConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let mem = mem.unwrap_or_else(|| Arc::new(MemSeries::new(Vec::new())));
    mem.append_series(data, None).await.unwrap();
    mem.set_visible_until(i64::MAX);
    let engine = Arc::new(Engine::new(Arc::new(Source(mem.clone())), EngineOptions::default()));
    let sink = Arc::new(Collect::default());
    let manager = RuleManager::new(engine.clone(), None, mem.clone(), sink.clone(), config);
    manager.load_files(std::slice::from_ref(&file)).await.unwrap();
    Fixture {
        _dir: dir,
        file,
        mem,
        engine,
        sink,
        manager,
    }
}

impl Fixture {
    async fn query(&self, expr: &str, t: i64) -> Vec<(Labels, f64)> {
        match self.engine.instant(expr, t, &QueryOptions::default()).await.unwrap() {
            QueryValue::Vector(v) => v.into_iter().map(|s| (s.labels, s.sample.value)).collect(),
            other => panic!("{other:?}"),
        }
    }

    async fn states(&self) -> Vec<(String, AlertState)> {
        let mut out = Vec::new();
        for g in self.manager.groups().await {
            for r in &g.lock().await.rules {
                if let RuleKind::Alerting(a) = &r.kind {
                    let mut v: Vec<_> = a
                        .active
                        .values()
                        .map(|x| (x.labels.get("instance").cloned().unwrap_or_default(), x.state))
                        .collect();
                    v.sort();
                    out.extend(v);
                }
            }
        }
        out
    }
}

const FOR_RULE: &str = r#"
groups:
  - name: g
    rules:
      - alert: High
        expr: x > 5
        for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is at {{ $value }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_pending_firing_resolved_then_forgotten() {
    let points: Vec<(i64, f64)> = (0..=30).map(|i| (i * M, if i < 4 { 10.0 } else { 1.0 })).collect();
    let f = fixture(
        FOR_RULE,
        vec![series("x", &[("instance", "a")], &points)],
        None,
        RulesConfig::default(),
    )
    .await;

    f.manager.eval_all_at(0).await;
    assert_eq!(f.states().await, vec![("a".into(), AlertState::Pending)]);
    assert!(f.sink.take().is_empty(), "pending alerts are not sent");

    f.manager.eval_all_at(M).await;
    let alerts = f.query(r#"ALERTS{alertname="High"}"#, M).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].0.get("alertstate"), Some("pending"));
    assert_eq!(f.query("ALERTS_FOR_STATE", M).await[0].1, 0.0, "activeAt in seconds");

    f.manager.eval_all_at(2 * M).await;
    assert_eq!(f.states().await, vec![("a".into(), AlertState::Firing)]);
    let sent = f.sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].labels.get("severity").map(String::as_str), Some("page"));
    assert_eq!(sent[0].labels.get("alertname").map(String::as_str), Some("High"));
    assert_eq!(sent[0].annotations["summary"], "a is at 10");
    assert_eq!(
        sent[0].starts_at.as_deref(),
        Some("1970-01-01T00:02:00Z"),
        "startsAt = firedAt"
    );
    assert_eq!(
        sent[0].ends_at.as_deref(),
        Some("1970-01-01T00:06:00Z"),
        "endsAt = now + 4 x resend delay"
    );
    assert!(
        sent[0].generator_url.contains("g0.expr=x+%3E+5"),
        "{}",
        sent[0].generator_url
    );
    let firing = f.query(r#"ALERTS{alertstate="firing"}"#, 2 * M).await;
    assert_eq!(firing.len(), 1);
    assert!(
        f.query(r#"ALERTS{alertstate="pending"}"#, 2 * M).await.is_empty(),
        "pending series went stale"
    );

    f.manager.eval_all_at(3 * M).await;
    assert!(f.sink.take().is_empty(), "resend only after the resend delay");
    f.manager.eval_all_at(3 * M + 1).await;
    assert_eq!(f.sink.take().len(), 1, "re-sent once the delay passed");

    f.manager.eval_all_at(4 * M).await;
    assert_eq!(f.states().await, vec![("a".into(), AlertState::Inactive)]);
    let resolved = f.sink.take();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved[0].ends_at.as_deref(),
        Some("1970-01-01T00:04:00Z"),
        "endsAt = resolvedAt"
    );
    assert!(
        f.query("ALERTS", 4 * M).await.is_empty(),
        "ALERTS went stale on resolution"
    );

    // Kept and re-sent for 15 minutes, then forgotten.
    f.manager.eval_all_at(5 * M + 1).await;
    assert_eq!(f.sink.take().len(), 1, "resolved alerts are re-sent");
    f.manager.eval_all_at(19 * M).await;
    assert_eq!(f.states().await.len(), 1);
    f.manager.eval_all_at(19 * M + 1).await;
    assert!(f.states().await.is_empty(), "forgotten 15 minutes after resolving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_alert_that_stops_is_dropped_and_keep_firing_for_holds() {
    let rules = r#"
groups:
  - name: g
    rules:
      - alert: Flap
        expr: y > 5
        keep_firing_for: 2m
      - alert: Slow
        expr: y > 5
        for: 5m
"#;
    let points = [(0, 10.0), (M, 1.0), (2 * M, 1.0), (3 * M, 1.0)];
    let f = fixture(
        rules,
        vec![series("y", &[("instance", "b")], &points)],
        None,
        RulesConfig::default(),
    )
    .await;
    f.manager.eval_all_at(0).await;
    assert_eq!(
        f.states().await,
        vec![("b".into(), AlertState::Firing), ("b".into(), AlertState::Pending)]
    );
    f.manager.eval_all_at(M).await;
    assert_eq!(
        f.states().await,
        vec![("b".into(), AlertState::Firing)],
        "pending dropped, firing kept"
    );
    f.manager.eval_all_at(2 * M).await;
    assert_eq!(
        f.states().await,
        vec![("b".into(), AlertState::Firing)],
        "1m < keep_firing_for"
    );
    f.manager.eval_all_at(3 * M).await;
    assert_eq!(
        f.states().await,
        vec![("b".into(), AlertState::Inactive)],
        "2m >= keep_firing_for"
    );
}

async fn active_at(f: &Fixture) -> Vec<i64> {
    let groups = f.manager.groups().await;
    let g = groups[0].lock().await;
    g.rules
        .iter()
        .map(|r| match &r.kind {
            RuleKind::Alerting(a) => a.active.values().next().unwrap().active_at_ms,
            RuleKind::Recording(_) => unreachable!(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_state_is_restored_after_a_restart() {
    let rules = r#"
groups:
  - name: g
    rules:
      - alert: Long
        expr: z > 5
        for: 30m
      - alert: Mid
        expr: z > 5
        for: 12m
"#;
    let points: Vec<(i64, f64)> = (0..=120).map(|i| (i * M, 10.0)).collect();
    let data = vec![series("z", &[("instance", "c")], &points)];
    let first = fixture(rules, data, None, RulesConfig::default()).await;
    for i in 0..=5 {
        first.manager.eval_all_at(i * M).await;
    }
    // Beyond the outage tolerance (1h) nothing is restored.
    let late = fixture(rules, Vec::new(), Some(first.mem.clone()), RulesConfig::default()).await;
    late.manager.eval_all_at(5 * M + 61 * M).await;
    // "Restart" at 7m: a new manager over the same storage.
    let second = fixture(rules, Vec::new(), Some(first.mem.clone()), RulesConfig::default()).await;
    second.manager.eval_all_at(7 * M).await;
    // Long: 5m spent pending when it went down at 5m; shifted by the 2m outage → active at 2m.
    // Mid: 7m remain, less than the 10m grace period → fires 10m after the restart.
    assert_eq!(active_at(&late).await, vec![66 * M, 66 * M]);
    assert_eq!(active_at(&second).await, vec![2 * M, 5 * M]);
    second.manager.eval_all_at(31 * M).await;
    assert_eq!(second.states().await[0].1, AlertState::Pending);
    second.manager.eval_all_at(32 * M).await;
    assert_eq!(second.states().await[0].1, AlertState::Firing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_recording_rules_and_template_errors() {
    let rules = r#"
groups:
  - name: limited
    limit: 1
    rules:
      - alert: Many
        expr: w > 0
  - name: rec
    rules:
      - record: job:w:sum
        expr: sum by (job) (w)
        labels:
          source: rule
      - alert: BadTemplate
        expr: job:w:sum > 0
        annotations:
          text: "{{ query \"nosuch_metric\" | first | value }}"
          ok: "{{ $value | humanize }}"
"#;
    let data = vec![
        series("w", &[("instance", "a"), ("job", "j")], &[(0, 1000.0)]),
        series("w", &[("instance", "b"), ("job", "j")], &[(0, 2000.0)]),
    ];
    let f = fixture(rules, data, None, RulesConfig::default()).await;
    f.manager.eval_all_at(0).await;
    let groups = f.manager.groups().await;
    let limited = groups[0].lock().await;
    assert_eq!(limited.rules[0].health, Health::Err);
    assert_eq!(
        limited.rules[0].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    drop(limited);
    let rec = f.query("job:w:sum", 0).await;
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].0.get("source"), Some("rule"));
    assert_eq!(rec[0].1, 3000.0);
    let sent = f.sink.take();
    assert_eq!(sent.len(), 1, "a template error never drops the alert: {sent:?}");
    assert!(
        sent[0].annotations["text"].starts_with("<error expanding template: "),
        "{}",
        sent[0].annotations["text"]
    );
    assert_eq!(sent[0].annotations["ok"], "3k");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_firing_alerts_and_rejects_broken_files() {
    let points: Vec<(i64, f64)> = (0..=10).map(|i| (i * M, 10.0)).collect();
    let f = fixture(
        FOR_RULE,
        vec![series("x", &[("instance", "a")], &points)],
        None,
        RulesConfig::default(),
    )
    .await;
    f.manager.eval_all_at(0).await;
    f.manager.eval_all_at(2 * M).await;
    assert_eq!(f.states().await, vec![("a".into(), AlertState::Firing)]);
    std::fs::write(&f.file, FOR_RULE.replace("severity: page", "severity: ticket")).unwrap();
    f.manager.load_files(std::slice::from_ref(&f.file)).await.unwrap();
    assert_eq!(
        f.states().await,
        vec![("a".into(), AlertState::Firing)],
        "state survives a reload"
    );
    std::fs::write(
        &f.file,
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        expr: up ==\n",
    )
    .unwrap();
    let err = f.manager.load_files(std::slice::from_ref(&f.file)).await.unwrap_err();
    let text = err[0].to_string();
    assert!(text.contains("rules.yml:5:"), "{text}");
    assert!(text.contains("could not parse expression"), "{text}");
    assert_eq!(
        f.states().await.len(),
        1,
        "a broken file leaves the running groups alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_trigger_fires_for_zero_rules_without_waiting_for_the_tick() {
    let rules = r#"
groups:
  - name: g
    interval: 1h
    rules:
      - alert: Now
        expr: v > 5
"#;
    let config = RulesConfig {
        evaluation_interval: tidewatch_model::Duration::from_secs(3600),
        external_labels: BTreeMap::from([("region".to_string(), "eu".to_string())]),
        ..RulesConfig::default()
    };
    let f = fixture(rules, Vec::new(), None, config).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(f.manager.clone().run(shutdown.clone()));
    let now = tidewatch_alertmanager::rules::now_ms();
    f.mem
        .append_series(vec![series("v", &[("instance", "e")], &[(now, 10.0)])], None)
        .await
        .unwrap();
    let arrived = f.sink.arrived.notified();
    f.manager.notify_ingested();
    // A guard against hanging, not a timing assertion: the group's own tick is up to 1h away.
    tokio::time::timeout(std::time::Duration::from_secs(60), arrived)
        .await
        .expect("the eager evaluation sent the alert");
    let sent = f.sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].labels["alertname"], "Now");
    assert_eq!(sent[0].labels["region"], "eu", "external labels go out with the alert");
    shutdown.cancel();
    task.await.unwrap();
}

async fn get_json(app: axum::Router, uri: &str) -> (u16, serde_json::Value) {
    let resp = app
        .oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_rules_and_alerts_have_prometheus_shapes() {
    let rules = format!("{FOR_RULE}      - record: x:sum\n        expr: sum(x)\n");
    let points: Vec<(i64, f64)> = (0..=10).map(|i| (i * M, 10.0)).collect();
    let f = fixture(
        &rules,
        vec![series("x", &[("instance", "a")], &points)],
        None,
        RulesConfig::default(),
    )
    .await;
    f.manager.eval_all_at(0).await;
    f.manager.eval_all_at(M + 500).await;
    let app = router(f.manager.clone());

    let (status, all) = get_json(app.clone(), "/api/v1/rules").await;
    assert_eq!(status, 200);
    assert_eq!(all["status"], "success");
    let g = &all["data"]["groups"][0];
    assert_eq!(g["name"], "g");
    assert_eq!(g["interval"], 60.0);
    assert_eq!(g["lastEvaluation"], "1970-01-01T00:01:00.5Z");
    let alerting = &g["rules"][0];
    assert_eq!(alerting["type"], "alerting");
    assert_eq!(alerting["state"], "pending");
    assert_eq!(alerting["duration"], 120.0);
    assert_eq!(alerting["keepFiringFor"], 0.0);
    assert_eq!(alerting["health"], "ok");
    assert_eq!(alerting["query"], "x > 5");
    assert_eq!(alerting["labels"]["severity"], "page");
    assert_eq!(alerting["alerts"][0]["state"], "pending");
    assert_eq!(alerting["alerts"][0]["activeAt"], "1970-01-01T00:00:00Z");
    assert_eq!(alerting["alerts"][0]["value"], "1e+01");
    assert_eq!(alerting["alerts"][0]["annotations"]["summary"], "a is at 10");
    assert!(alerting.get("lastError").is_none());
    let recording = &g["rules"][1];
    assert_eq!(recording["type"], "recording");
    assert!(recording.get("labels").is_none(), "omitted when empty, as Prometheus");
    assert!(recording["evaluationTime"].is_number());

    let (_, only_record) = get_json(app.clone(), "/api/v1/rules?type=record").await;
    let rules: Vec<_> = only_record["data"]["groups"][0]["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["name"], "x:sum");

    let (status, bad) = get_json(app.clone(), "/api/v1/rules?type=nope").await;
    assert_eq!(status, 400);
    assert_eq!(bad["errorType"], "bad_data");

    let (_, alerts) = get_json(app, "/api/v1/alerts").await;
    let list = alerts["data"]["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let expected: BTreeMap<String, String> = [("alertname", "High"), ("instance", "a"), ("severity", "page")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, String>>(list[0]["labels"].clone()).unwrap(),
        expected
    );
}
