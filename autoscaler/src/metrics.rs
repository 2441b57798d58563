//! Reading a policy's metrics through [`Query`]: the collector's cAdvisor-named container
//! metrics for CPU and memory, PromQL and LogQL expressions as written.
//!
//! The control loop reads through the small [`MetricSource`] trait, so tests and the simulator
//! can feed values without a store.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tidewatch_model::{Duration, Query, QueryError, QueryOptions, QueryValue, ReplicaSet};

use crate::policy::MetricSpec;

/// What a utilisation is measured against (HPA: the request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The replica's reservation (HPA's request).
    Reservation,
    /// The replica's limit, used when no reservation is set.
    Limit,
}

impl Basis {
    /// `reservation` or `limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Reservation => "reservation",
            Basis::Limit => "limit",
        }
    }
}

/// One metric's value now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// One value per replica, keyed by [`tidewatch_model::Replica::id`], in the target's unit
    /// (percent of `basis` for CPU and memory). Replicas without a value are "missing".
    PerReplica {
        /// Replica id → value.
        values: HashMap<String, f64>,
        /// What the percentages are of.
        basis: Basis,
    },
    /// One number for the whole service (PromQL and LogQL results, summed).
    Total(f64),
}

/// Why a metric could not be read. A failed metric never lets the service scale down.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// The query failed.
    #[error("query {expr:?} failed: {error}")]
    Query {
        /// The expression sent.
        expr: String,
        /// The engine's error.
        error: QueryError,
    },
    /// The service has neither a reservation nor a limit for the resource.
    #[error("{resource} utilisation needs a {resource} reservation or limit on the service")]
    NoBasis {
        /// `cpu` or `memory`.
        resource: &'static str,
    },
    /// The result cannot be read as a number.
    #[error("query {expr:?}: {message}")]
    Result {
        /// The expression sent.
        expr: String,
        /// What was wrong.
        message: String,
    },
    /// Anything else (used by stand-ins and the simulator).
    #[error("{0}")]
    Other(String),
}

/// Where metric values come from.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Reads `metric` for `set.service` at `at_ms` (milliseconds since the epoch).
    /// `rate_window` is the policy's range for CPU counters.
    async fn read(
        &self,
        metric: &MetricSpec,
        set: &ReplicaSet,
        rate_window: Duration,
        at_ms: i64,
    ) -> Result<Reading, MetricError>;
}

/// Reads metrics with instant queries through a [`Query`] (the store in process, or any
/// Prometheus-compatible server).
pub struct QueryMetrics {
    query: Arc<dyn Query>,
    options: QueryOptions,
}

impl QueryMetrics {
    /// Queries are bounded: 10 s and 1 M samples each, so one policy cannot hold the store.
    pub fn new(query: Arc<dyn Query>) -> Self {
        QueryMetrics {
            query,
            options: QueryOptions {
                lookback_delta: None,
                timeout: Some(Duration::from_secs(10)),
                max_samples: Some(1_000_000),
            },
        }
    }
}

/// The PromQL that gives each replica's CPU use in cores. cAdvisor's counter may be split per
/// CPU on some collectors, hence the sum by container.
pub fn cpu_expr(service: &str, rate_window: Duration) -> String {
    format!(
        "sum by (id) (rate(container_cpu_usage_seconds_total{{service=\"{}\"}}[{rate_window}]))",
        escape_label_value(service)
    )
}

/// The PromQL that gives each replica's memory working set in bytes.
pub fn memory_expr(service: &str) -> String {
    format!(
        "max by (id) (container_memory_working_set_bytes{{service=\"{}\"}})",
        escape_label_value(service)
    )
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The container id inside cAdvisor's `id` label: `/docker/<id>` (cgroupfs) or
/// `/system.slice/docker-<id>.scope` (systemd).
fn container_id_of(label: &str) -> &str {
    let last = label.rsplit('/').next().unwrap_or(label);
    let last = last.strip_prefix("docker-").unwrap_or(last);
    last.strip_suffix(".scope").unwrap_or(last)
}

/// Whether a container id from a label and a replica id name the same container; either may be
/// Docker's 12-character short form.
fn same_container(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || (a.len().min(b.len()) >= 12 && (a.starts_with(b) || b.starts_with(a)))
}

impl QueryMetrics {
    async fn per_replica(
        &self,
        expr: String,
        set: &ReplicaSet,
        divisor: f64,
        basis: Basis,
        at_ms: i64,
    ) -> Result<Reading, MetricError> {
        let value = self
            .query
            .instant(&expr, at_ms, &self.options)
            .await
            .map_err(|error| MetricError::Query {
                expr: expr.clone(),
                error,
            })?;
        let samples = match value {
            QueryValue::Vector(v) => v,
            other => {
                return Err(MetricError::Result {
                    expr,
                    message: format!("expected an instant vector, got {}", kind_of(&other)),
                });
            }
        };
        let mut values = HashMap::new();
        for s in samples {
            let Some(label) = s.labels.get("id") else { continue };
            let cid = container_id_of(label);
            if !s.sample.value.is_finite() {
                continue;
            }
            if let Some(replica) = set.replicas.iter().find(|r| same_container(cid, &r.id)) {
                values.insert(replica.id.clone(), s.sample.value / divisor * 100.0);
            }
        }
        Ok(Reading::PerReplica { values, basis })
    }

    async fn total(&self, expr: &str, at_ms: i64) -> Result<Reading, MetricError> {
        let value = self
            .query
            .instant(expr, at_ms, &self.options)
            .await
            .map_err(|error| MetricError::Query {
                expr: expr.to_string(),
                error,
            })?;
        let total = match value {
            QueryValue::Scalar(s) => s.value,
            // An empty result is 0, as KEDA's Prometheus scaler reads it by default: a rate of
            // requests that has no series yet means no requests.
            QueryValue::Vector(v) => v.iter().map(|s| s.sample.value).sum(),
            other => {
                return Err(MetricError::Result {
                    expr: expr.to_string(),
                    message: format!("expected a scalar or an instant vector, got {}", kind_of(&other)),
                });
            }
        };
        if !total.is_finite() {
            return Err(MetricError::Result {
                expr: expr.to_string(),
                message: format!("the value is {total}"),
            });
        }
        Ok(Reading::Total(total))
    }
}

fn kind_of(v: &QueryValue) -> &'static str {
    match v {
        QueryValue::Scalar(_) => "a scalar",
        QueryValue::String { .. } => "a string",
        QueryValue::Vector(_) => "an instant vector",
        QueryValue::Matrix(_) => "a range vector",
    }
}

#[async_trait]
impl MetricSource for QueryMetrics {
    async fn read(
        &self,
        metric: &MetricSpec,
        set: &ReplicaSet,
        rate_window: Duration,
        at_ms: i64,
    ) -> Result<Reading, MetricError> {
        match metric {
            MetricSpec::Cpu(_) => {
                let (cores, basis) = match (set.cpu_reservation_cores, set.cpu_limit_cores) {
                    (Some(r), _) if r > 0.0 => (r, Basis::Reservation),
                    (_, Some(l)) if l > 0.0 => (l, Basis::Limit),
                    _ => return Err(MetricError::NoBasis { resource: "cpu" }),
                };
                self.per_replica(cpu_expr(&set.service, rate_window), set, cores, basis, at_ms)
                    .await
            }
            MetricSpec::Memory(_) => {
                let (bytes, basis) = match (set.memory_reservation_bytes, set.memory_limit_bytes) {
                    (Some(r), _) if r > 0 => (r, Basis::Reservation),
                    (_, Some(l)) if l > 0 => (l, Basis::Limit),
                    _ => return Err(MetricError::NoBasis { resource: "memory" }),
                };
                self.per_replica(memory_expr(&set.service), set, bytes as f64, basis, at_ms)
                    .await
            }
            // The Query implementation tells PromQL from LogQL by the expression itself.
            MetricSpec::Promql(t) | MetricSpec::Logql(t) => self.total(&t.expr, at_ms).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tidewatch_model::{InstantSample, Labels, QueryErrorKind, Replica, Sample};

    use super::*;
    use crate::policy::{ExpressionTarget, ResourceTarget};

    /// A stand-in for the store's query engine: it answers fixed results per expression and
    /// records what it was asked. The real engine is another crate; its PromQL is tested there.
    struct Answers {
        answers: HashMap<String, Result<QueryValue, QueryError>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Query for Answers {
        async fn instant(&self, expr: &str, _at: i64, _o: &QueryOptions) -> Result<QueryValue, QueryError> {
            self.asked.lock().unwrap().push(expr.to_string());
            self.answers
                .get(expr)
                .cloned()
                .unwrap_or_else(|| Err(QueryError::new(QueryErrorKind::BadData, "unknown")))
        }
        async fn range(&self, _: &str, _: i64, _: i64, _: i64, _: &QueryOptions) -> Result<QueryValue, QueryError> {
            Err(QueryError::new(QueryErrorKind::BadData, "unused"))
        }
    }

    fn vector(rows: &[(&str, f64)]) -> QueryValue {
        QueryValue::Vector(
            rows.iter()
                .map(|(id, v)| InstantSample {
                    labels: Labels::from_pairs([("id", *id)]),
                    sample: Sample {
                        timestamp_ms: 0,
                        value: *v,
                    },
                })
                .collect(),
        )
    }

    fn set() -> ReplicaSet {
        let replica = |id: &str| Replica {
            id: id.to_string(),
            node: "local".into(),
            ready: true,
            started_at_ms: 0,
            ready_since_ms: Some(0),
        };
        ReplicaSet {
            service: "web".into(),
            desired: 2,
            replicas: vec![replica(&"a".repeat(64)), replica(&"b".repeat(64))],
            cpu_reservation_cores: None,
            cpu_limit_cores: Some(0.25),
            memory_reservation_bytes: Some(100),
            memory_limit_bytes: Some(200),
        }
    }

    #[tokio::test]
    async fn cpu_is_percent_of_limit_matched_by_container_id() {
        let cpu = cpu_expr("web", Duration::from_secs(5));
        assert_eq!(
            cpu,
            "sum by (id) (rate(container_cpu_usage_seconds_total{service=\"web\"}[5s]))"
        );
        let a = format!("/docker/{}", "a".repeat(64));
        let b_short = format!("/docker/{}", "b".repeat(12));
        let answers = Answers {
            answers: HashMap::from([(cpu, Ok(vector(&[(&a, 0.2), (&b_short, 0.1), ("/docker/zzz", 9.0)])))]),
            asked: Mutex::default(),
        };
        let m = QueryMetrics::new(Arc::new(answers));
        let spec = MetricSpec::Cpu(ResourceTarget {
            target_utilization: 60.0,
        });
        let r = m.read(&spec, &set(), Duration::from_secs(5), 0).await.unwrap();
        let Reading::PerReplica { values, basis } = r else {
            panic!()
        };
        assert_eq!(basis, Basis::Limit);
        assert_eq!(values.len(), 2);
        assert!((values[&"a".repeat(64)] - 80.0).abs() < 1e-9);
        assert!((values[&"b".repeat(64)] - 40.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn memory_uses_the_reservation_first_and_no_basis_is_an_error() {
        let a = format!("/system.slice/docker-{}.scope", "a".repeat(64));
        let answers = Answers {
            answers: HashMap::from([(memory_expr("web"), Ok(vector(&[(&a, 50.0)])))]),
            asked: Mutex::default(),
        };
        let m = QueryMetrics::new(Arc::new(answers));
        let spec = MetricSpec::Memory(ResourceTarget {
            target_utilization: 60.0,
        });
        let Reading::PerReplica { values, basis } = m.read(&spec, &set(), Duration::from_secs(5), 0).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(basis, Basis::Reservation);
        assert_eq!(values[&"a".repeat(64)], 50.0);
        let mut bare = set();
        bare.memory_limit_bytes = None;
        bare.memory_reservation_bytes = None;
        let e = m.read(&spec, &bare, Duration::from_secs(5), 0).await.unwrap_err();
        assert_eq!(e, MetricError::NoBasis { resource: "memory" });
    }

    #[tokio::test]
    async fn expressions_pass_through_and_sum() {
        let logql = r#"sum(rate({service="web"} |= "error" [1m]))"#;
        let answers = Answers {
            answers: HashMap::from([
                (logql.to_string(), Ok(vector(&[("x", 1.5), ("y", 2.0)]))),
                ("empty".to_string(), Ok(QueryValue::Vector(vec![]))),
                (
                    "nan".to_string(),
                    Ok(QueryValue::Scalar(Sample {
                        timestamp_ms: 0,
                        value: f64::NAN,
                    })),
                ),
            ]),
            asked: Mutex::default(),
        };
        let answers = Arc::new(answers);
        let m = QueryMetrics::new(answers.clone());
        let spec = |expr: &str| {
            MetricSpec::Logql(ExpressionTarget {
                name: None,
                expr: expr.into(),
                average_value: None,
                value: Some(1.0),
                activation: 0.0,
            })
        };
        let w = Duration::from_secs(5);
        assert_eq!(m.read(&spec(logql), &set(), w, 0).await.unwrap(), Reading::Total(3.5));
        assert_eq!(m.read(&spec("empty"), &set(), w, 0).await.unwrap(), Reading::Total(0.0));
        assert!(matches!(
            m.read(&spec("nan"), &set(), w, 0).await,
            Err(MetricError::Result { .. })
        ));
        assert!(matches!(
            m.read(&spec("broken"), &set(), w, 0).await,
            Err(MetricError::Query { .. })
        ));
        assert_eq!(answers.asked.lock().unwrap()[0], logql);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            memory_expr("we\"b"),
            "max by (id) (container_memory_working_set_bytes{service=\"we\\\"b\"})"
        );
        assert!(!same_container("", "abc"));
        assert!(same_container("abcdefabcdef", "abcdefabcdef0123"));
        assert!(!same_container("abc", "abcdef"));
    }
}
