//! Metrics storage: a write-ahead log in front of an in-memory head, cut into immutable
//! Parquet blocks.

pub mod block;
mod config;
mod db;
pub mod head;
pub mod http;
pub mod openmetrics;
pub mod wal;

pub use self::config::{LimitsConfig, MetricsConfig, WalConfig};
pub use self::db::{Maintenance, MetricsStore, StoreError};
pub use self::head::{AppendOutcome, HeadStats, Refusal, WriteBatch};
