//! The write interface into the store.

use async_trait::async_trait;

use crate::{BatchHeader, LogRecord, Series};

/// Why a write was not accepted. The variants tell a sender whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The batch is malformed or breaks a limit; sending it again will fail again (HTTP 400).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The store is at its active-series or memory limit (HTTP 429: retry later).
    #[error("over limit: {0}")]
    OverLimit(String),
    /// The store cannot write now (closing, disk full, I/O error) (HTTP 503: retry).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Writes samples and log records into the store.
///
/// **A call returns `Ok` only once the data is durable** (written to the store's log and
/// fsynced) together with the delivery marks of `delivery`, so that a sender may forget what
/// was acknowledged. When `delivery` is given, the records are trimmed as
/// [`crate::HighWaterMarks::plan`] says before they are written, which makes re-sending a batch
/// after a crash harmless.
#[async_trait]
pub trait Appender: Send + Sync {
    /// Appends samples; within a series they must be in time order.
    async fn append_series(&self, series: Vec<Series>, delivery: Option<&BatchHeader>) -> Result<(), AppendError>;

    /// Appends log lines; within a stream they must be in time order.
    async fn append_logs(&self, records: Vec<LogRecord>, delivery: Option<&BatchHeader>) -> Result<(), AppendError>;
}
