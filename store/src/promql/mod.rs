//! PromQL: parsed by promql-parser, evaluated here over the metrics store, with Prometheus 2.x
//! semantics (lookback, staleness, extrapolation, name dropping, vector matching).
//!
//! A query is evaluated at every step of its grid at once: selectors read each series once for
//! the whole range, and operators work step by step over series whose labels are resolved once.

mod aggregate;
mod binary;
mod eval;
mod functions;
pub mod http;
mod value;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewatch_model::{
    InstantSample, Matcher, Query, QueryError, QueryErrorKind, QueryOptions, QueryValue, Sample, Series,
};

use self::eval::Evaluator;
pub use self::eval::SeriesSource;
use self::value::{Grid, Value};
use crate::metrics::{MetricsStore, StoreError};

/// How the engine evaluates.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold (Prometheus' `--query.max-samples`, 50 million).
    pub max_samples: usize,
    /// Longest a query may run (Prometheus: 2m).
    pub timeout: Duration,
    /// A subquery's step when it names none (Prometheus: the global evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
    /// Range windows `(t-r, t]` (Prometheus 3) rather than `[t-r, t]` (Prometheus 2).
    pub left_open_ranges: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            left_open_ranges: false,
        }
    }
}

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query is malformed or misuses a type.
    #[error("{0}")]
    BadData(String),
    /// The query is valid but cannot be evaluated.
    #[error("{0}")]
    Execution(String),
    /// Ran past the timeout.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// Would hold more samples than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

impl From<EvalError> for QueryError {
    fn from(e: EvalError) -> QueryError {
        let kind = match &e {
            EvalError::BadData(_) => QueryErrorKind::BadData,
            EvalError::Execution(_) | EvalError::TooManySamples => QueryErrorKind::Execution,
            EvalError::Timeout => QueryErrorKind::Timeout,
            EvalError::Store(_) => QueryErrorKind::Internal,
        };
        QueryError::new(kind, e.to_string())
    }
}

/// Formats a float as Prometheus does (Go's `strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

impl SeriesSource for MetricsStore {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError> {
        MetricsStore::select(self, matchers, mint, maxt, usize::MAX).map_err(|e| match e {
            StoreError::TooManySamples(_) => EvalError::TooManySamples,
            other => EvalError::Store(other.to_string()),
        })
    }
}

/// Teaches the parser Prometheus 2.x's `holt_winters` (renamed `double_exponential_smoothing`
/// in 3.0, which is all promql-parser knows).
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::value::ValueType;
        let holt_winters = promql_parser::parser::Function {
            name: "holt_winters",
            arg_types: vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            variadic: 0,
            return_type: ValueType::Vector,
            experimental: false,
        };
        if let Err(e) = promql_parser::parser::register_extra_functions(vec![holt_winters]) {
            tracing::warn!(error = %e, "cannot register holt_winters");
        }
    });
}

/// Evaluates PromQL over a series source.
/// Cheap to clone: the source is shared.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn SeriesSource + Send + Sync>,
    options: EngineOptions,
}

impl Engine {
    /// An engine over `source`.
    pub fn new(source: Arc<dyn SeriesSource + Send + Sync>, options: EngineOptions) -> Engine {
        register_functions();
        Engine { source, options }
    }

    fn options_for(&self, q: &QueryOptions) -> EngineOptions {
        let mut o = self.options.clone();
        if let Some(l) = q.lookback_delta {
            o.lookback_delta_ms = l.as_std().as_millis() as i64;
        }
        if let Some(t) = q.timeout {
            o.timeout = o.timeout.min(t.as_std());
        }
        if let Some(m) = q.max_samples {
            o.max_samples = o.max_samples.min(m);
        }
        o
    }

    /// Parses and evaluates `expr` over the grid. Blocking: run it off the async workers.
    pub fn evaluate(
        &self,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
        options: &QueryOptions,
        instant: bool,
    ) -> Result<QueryValue, QueryError> {
        let ast = promql_parser::parser::parse(expr).map_err(|e| QueryError::new(QueryErrorKind::BadData, e))?;
        let options = self.options_for(options);
        let mut ev = Evaluator {
            source: self.source.as_ref(),
            options: &options,
            query_start: start,
            query_end: end,
            deadline: Instant::now() + options.timeout,
            samples: 0,
        };
        let grid = Grid {
            start,
            end,
            step: if instant { 0 } else { step },
        };
        let value = ev.eval(&ast, &grid)?;
        Ok(match value {
            Value::Scalar(v) if instant => QueryValue::Scalar(Sample {
                timestamp_ms: start,
                value: v[0],
            }),
            Value::String(s) if instant => QueryValue::String {
                timestamp_ms: start,
                value: s,
            },
            Value::Vector(v) if instant => QueryValue::Vector(
                v.into_iter()
                    .filter_map(|s| {
                        s.values[0].map(|value| InstantSample {
                            labels: s.labels,
                            sample: Sample {
                                timestamp_ms: start,
                                value,
                            },
                        })
                    })
                    .collect(),
            ),
            Value::Range(r) if instant => QueryValue::Matrix(
                r.series
                    .into_iter()
                    .filter_map(|s| {
                        let w = eval::window(&s.samples, r.window_ends[0], r.range, options.left_open_ranges).to_vec();
                        (!w.is_empty()).then_some(Series {
                            labels: s.labels,
                            samples: w,
                        })
                    })
                    .collect(),
            ),
            Value::Scalar(v) => QueryValue::Matrix(vec![Series {
                labels: Default::default(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, &value)| Sample {
                        timestamp_ms: grid.time(i),
                        value,
                    })
                    .collect(),
            }]),
            Value::Vector(v) => {
                let mut m: Vec<Series> = v
                    .into_iter()
                    .map(|s| Series {
                        labels: s.labels,
                        samples: s
                            .values
                            .iter()
                            .enumerate()
                            .filter_map(|(i, x)| {
                                x.map(|value| Sample {
                                    timestamp_ms: grid.time(i),
                                    value,
                                })
                            })
                            .collect(),
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                QueryValue::Matrix(m)
            }
            Value::String(_) | Value::Range(_) => {
                return Err(QueryError::new(
                    QueryErrorKind::BadData,
                    "invalid expression type for range query, must be Scalar or instant Vector",
                ));
            }
        })
    }
}

/// Evaluation is CPU-bound: it runs on the blocking pool, never on an async worker.
#[async_trait::async_trait]
impl Query for Engine {
    async fn instant(&self, expr: &str, at_ms: i64, options: &QueryOptions) -> Result<QueryValue, QueryError> {
        let (engine, expr, options) = (self.clone(), expr.to_string(), options.clone());
        tokio::task::spawn_blocking(move || engine.evaluate(&expr, at_ms, at_ms, 0, &options, true))
            .await
            .unwrap_or_else(|e| {
                Err(QueryError::new(
                    QueryErrorKind::Internal,
                    format!("the query task failed: {e}"),
                ))
            })
    }

    async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: &QueryOptions,
    ) -> Result<QueryValue, QueryError> {
        let (engine, expr, options) = (self.clone(), expr.to_string(), options.clone());
        tokio::task::spawn_blocking(move || engine.evaluate(&expr, start_ms, end_ms, step_ms, &options, false))
            .await
            .unwrap_or_else(|e| {
                Err(QueryError::new(
                    QueryErrorKind::Internal,
                    format!("the query task failed: {e}"),
                ))
            })
    }
}
