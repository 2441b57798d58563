//! The store: metrics (WAL, head, Parquet blocks) and, later, logs (tantivy); ingest and query
//! routes. See README.md for what it promises and docs/format/ for the on-disk formats.

pub mod logs;
pub mod metrics;
pub mod promql;

use std::sync::Arc;

use tidewatch_model::{AppendError, Appender, BatchHeader, LogRecord, Series};

/// Both stores behind the `Appender` interface, which the alert engine (`ALERTS`) and the
/// scheduler and autoscaler (their events as log records) write through.
#[derive(Clone)]
pub struct Storage {
    /// Samples.
    pub metrics: Arc<metrics::MetricsStore>,
    /// Log lines.
    pub logs: Arc<logs::LogStore>,
}

#[async_trait::async_trait]
impl Appender for Storage {
    async fn append_series(&self, series: Vec<Series>, delivery: Option<&BatchHeader>) -> Result<(), AppendError> {
        let mut batch = metrics::WriteBatch::default();
        for s in &series {
            batch.push(
                s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                s.samples.iter().map(|x| (x.timestamp_ms, x.value)),
            );
        }
        let outcome = self.metrics.append(&batch, delivery).await?;
        match outcome.refused.first() {
            None => Ok(()),
            Some((why, _, example)) => Err(AppendError::Rejected(format!(
                "{} samples refused, first {}: {example}",
                outcome.refused_count(),
                why.as_str()
            ))),
        }
    }

    async fn append_logs(&self, records: Vec<LogRecord>, delivery: Option<&BatchHeader>) -> Result<(), AppendError> {
        self.logs.append(records, delivery.cloned()).await.map(|_| ())
    }
}

/// PromQL and LogQL behind one [`tidewatch_model::Query`], for the autoscaler, whose policies
/// hold either kind of expression.
///
/// An expression that parses as PromQL is PromQL; anything else goes to LogQL. The two overlap
/// only where a LogQL metric query has a bare stream selector (`rate({app="web"}[1m])` is also
/// valid PromQL): give such a query a pipeline stage, e.g. `rate({app="web"} |= "" [1m])`, to
/// make it LogQL.
#[derive(Clone)]
pub struct QueryRouter {
    /// PromQL over the metrics store.
    pub promql: Arc<promql::Engine>,
    /// The log store, which evaluates LogQL metric queries.
    pub logs: Arc<logs::LogStore>,
}

impl QueryRouter {
    /// Whether `expr` is evaluated as PromQL.
    pub fn is_promql(expr: &str) -> bool {
        promql_parser::parser::parse(expr).is_ok()
    }
}

#[async_trait::async_trait]
impl tidewatch_model::Query for QueryRouter {
    async fn instant(
        &self,
        expr: &str,
        at_ms: i64,
        options: &tidewatch_model::QueryOptions,
    ) -> Result<tidewatch_model::QueryValue, tidewatch_model::QueryError> {
        if Self::is_promql(expr) {
            self.promql.instant(expr, at_ms, options).await
        } else {
            self.logs.instant(expr, at_ms, options).await
        }
    }

    async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: &tidewatch_model::QueryOptions,
    ) -> Result<tidewatch_model::QueryValue, tidewatch_model::QueryError> {
        if Self::is_promql(expr) {
            self.promql.range(expr, start_ms, end_ms, step_ms, options).await
        } else {
            self.logs.range(expr, start_ms, end_ms, step_ms, options).await
        }
    }
}
