//! The query interface the alert engine, the autoscaler and the dashboards read through.
//!
//! The store implements it in process; an HTTP client implements it for any
//! Prometheus-compatible server, so the alert engine and the autoscaler can also run against a
//! plain Prometheus.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Duration, Labels, Sample, Series};

/// Per-query settings; `None` means the engine's configured default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta: Option<Duration>,
    /// Abort after this long with [`QueryErrorKind::Timeout`].
    pub timeout: Option<Duration>,
    /// Abort when more samples than this are held at once, as Prometheus' `--query.max-samples`.
    pub max_samples: Option<usize>,
}

/// One element of an instant vector: a series' labels and its value at the evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstantSample {
    /// The series labels (the metric name may have been dropped by a function).
    pub labels: Labels,
    /// The value and the evaluation timestamp.
    pub sample: Sample,
}

/// The four result types of PromQL (LogQL metric queries return the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryValue {
    /// A single number at a time.
    Scalar(Sample),
    /// A string literal at a time.
    String {
        /// Milliseconds since the epoch.
        timestamp_ms: i64,
        /// The string.
        value: String,
    },
    /// One sample per series at one time.
    Vector(Vec<InstantSample>),
    /// A range of samples per series.
    Matrix(Vec<Series>),
}

/// The error classes of Prometheus' HTTP API (`errorType`), so that an HTTP front end can answer
/// exactly as Prometheus does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryErrorKind {
    /// The query or a parameter is malformed (HTTP 400).
    BadData,
    /// The query is valid but cannot be evaluated, limits included (HTTP 422).
    Execution,
    /// The query ran past its timeout (HTTP 503).
    Timeout,
    /// The query was cancelled (HTTP 503).
    Canceled,
    /// The backend cannot answer now (HTTP 503).
    Unavailable,
    /// A bug or an I/O failure (HTTP 500).
    Internal,
}

impl QueryErrorKind {
    /// The `errorType` string Prometheus uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryErrorKind::BadData => "bad_data",
            QueryErrorKind::Execution => "execution",
            QueryErrorKind::Timeout => "timeout",
            QueryErrorKind::Canceled => "canceled",
            QueryErrorKind::Unavailable => "unavailable",
            QueryErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status Prometheus answers with for this class.
    pub fn http_status(self) -> u16 {
        match self {
            QueryErrorKind::BadData => 400,
            QueryErrorKind::Execution => 422,
            QueryErrorKind::Timeout | QueryErrorKind::Canceled | QueryErrorKind::Unavailable => 503,
            QueryErrorKind::Internal => 500,
        }
    }
}

/// A failed query: its class and a message for the person who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct QueryError {
    /// The class, which decides the HTTP status.
    pub kind: QueryErrorKind,
    /// What went wrong, naming the parameter or the part of the expression.
    pub message: String,
}

impl QueryError {
    /// An error of `kind` with `message`.
    pub fn new(kind: QueryErrorKind, message: impl Into<String>) -> Self {
        QueryError {
            kind,
            message: message.into(),
        }
    }
}

/// Evaluates PromQL (and LogQL metric queries) at one time or over a range.
///
/// Times are milliseconds since the Unix epoch. Implementations must honour
/// [`QueryOptions::max_samples`] and [`QueryOptions::timeout`] so a single query cannot take
/// the process' memory or time.
#[async_trait]
pub trait Query: Send + Sync {
    /// Evaluates `expr` at `at_ms`.
    async fn instant(&self, expr: &str, at_ms: i64, options: &QueryOptions) -> Result<QueryValue, QueryError>;

    /// Evaluates `expr` at every step from `start_ms` to `end_ms` inclusive; the result is a
    /// matrix (or an error).
    async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: &QueryOptions,
    ) -> Result<QueryValue, QueryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_to_prometheus_types_and_statuses() {
        let e = QueryError::new(QueryErrorKind::BadData, "parse error at char 3");
        assert_eq!(e.to_string(), "bad_data: parse error at char 3");
        assert_eq!(QueryErrorKind::Execution.http_status(), 422);
        assert_eq!(QueryErrorKind::Timeout.as_str(), "timeout");
        assert_eq!(serde_json::to_string(&QueryErrorKind::BadData).unwrap(), "\"bad_data\"");
    }
}
