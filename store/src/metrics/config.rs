//! `metrics:` in the configuration file.

use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration};

use super::head::HeadLimits;

/// How metrics are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Blocks whose newest sample is older than this (measured from the newest sample stored)
    /// are deleted (default `15d`, as Prometheus).
    pub retention: Duration,
    /// When blocks and WAL together take more than this, the oldest blocks are deleted
    /// (default `0B`: no size limit).
    pub retention_size: ByteSize,
    /// The time range of a block cut from the head (default `2h`). The head holds up to 1.5×
    /// this before it is cut.
    pub block_range: Duration,
    /// How far behind a series' newest sample an older sample is still accepted (default `0s`:
    /// out-of-order samples are refused, as Prometheus does by default).
    pub out_of_order_window: Duration,
    /// The write-ahead log.
    pub wal: WalConfig,
    /// Limits on writes, so memory stays bounded.
    pub limits: LimitsConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            retention: Duration::from_secs(15 * 86_400),
            retention_size: ByteSize(0),
            block_range: Duration::from_secs(2 * 3600),
            out_of_order_window: Duration::from_secs(0),
            wal: WalConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// `metrics.wal`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Sync the log to disk before acknowledging a write (default `true`). `false` is faster
    /// and is what Prometheus does, but a machine crash (not a process crash) can then lose
    /// acknowledged samples.
    pub fsync: bool,
    /// Size at which a segment is closed and a new one started (default `64MiB`).
    pub segment_size: ByteSize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            fsync: true,
            segment_size: ByteSize::mib(64),
        }
    }
}

/// `metrics.limits`: what one write, and the head as a whole, may hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Series held in memory at once; new series beyond it are refused (default 5,000,000,
    /// about 2 GiB).
    pub max_active_series: usize,
    /// Series in one remote_write request (default 100,000).
    pub max_series_per_request: usize,
    /// Labels per series (default 64).
    pub max_labels_per_series: usize,
    /// Bytes of a label name (default 1024).
    pub max_label_name_length: usize,
    /// Bytes of a label value (default 16384).
    pub max_label_value_length: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let head = HeadLimits::default();
        LimitsConfig {
            max_active_series: head.max_active_series,
            max_series_per_request: 100_000,
            max_labels_per_series: head.max_labels_per_series,
            max_label_name_length: head.max_label_name_length,
            max_label_value_length: head.max_label_value_length,
        }
    }
}

impl LimitsConfig {
    /// The limits the head enforces.
    pub fn head(&self) -> HeadLimits {
        HeadLimits {
            max_active_series: self.max_active_series,
            max_labels_per_series: self.max_labels_per_series,
            max_label_name_length: self.max_label_name_length,
            max_label_value_length: self.max_label_value_length,
        }
    }
}
