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
