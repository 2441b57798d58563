//! `logs:` in the configuration file.

use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration};

/// How logs are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// The time span of one tantivy index (default `1d`). Retention drops whole partitions, so
    /// a shorter span frees disk more finely at the cost of more indexes to search.
    pub partition: Duration,
    /// Partitions whose end is older than this (by the wall clock) are deleted (default `30d`).
    pub retention: Duration,
    /// When the partitions together take more than this, the oldest are deleted, never the
    /// newest (default `0B`: no size limit).
    pub retention_size: ByteSize,
    /// How often retention is applied (default `1m`).
    pub retention_interval: Duration,
    /// How often the indexer commits under steady ingest (default `1s`): a line is searchable
    /// at most about this long after it is acknowledged (sooner when ingest pauses: the indexer
    /// also commits 100 ms after the last push). Shorter means smaller segments and more merging.
    pub commit_interval: Duration,
    /// Memory of the tantivy writer of each open partition (default `128MiB`).
    pub writer_memory: ByteSize,
    /// Indexing threads per open partition (default 2).
    pub indexing_threads: usize,
    /// The write-ahead log in front of the indexes.
    pub wal: LogsWalConfig,
    /// Limits on pushes and queries, so memory stays bounded.
    pub limits: LogsLimitsConfig,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            partition: Duration::from_secs(86_400),
            retention: Duration::from_secs(30 * 86_400),
            retention_size: ByteSize(0),
            retention_interval: Duration::from_secs(60),
            commit_interval: Duration::from_secs(1),
            writer_memory: ByteSize::mib(128),
            indexing_threads: 2,
            wal: LogsWalConfig::default(),
            limits: LogsLimitsConfig::default(),
        }
    }
}

/// `logs.wal`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsWalConfig {
    /// `fdatasync` before acknowledging a push (default `true`). `false` still survives a
    /// process crash (`kill -9`), not a machine crash.
    pub fsync: bool,
    /// Size at which a segment is closed and a new one started (default `64MiB`).
    pub segment_size: ByteSize,
}

impl Default for LogsWalConfig {
    fn default() -> Self {
        LogsWalConfig {
            fsync: true,
            segment_size: ByteSize::mib(64),
        }
    }
}

/// `logs.limits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsLimitsConfig {
    /// Bytes of one push body as received (default `16MiB`).
    pub max_body: ByteSize,
    /// Bytes of one push body after snappy decompression (default `64MiB`).
    pub max_decompressed_body: ByteSize,
    /// Bytes of one line (default `256KiB`, as Loki); longer lines are refused.
    pub max_line_size: ByteSize,
    /// Labels of one stream (default 15, as Loki).
    pub max_labels_per_stream: usize,
    /// Bytes of a label name (default 1024).
    pub max_label_name_length: usize,
    /// Bytes of a label value (default 2048, as Loki).
    pub max_label_value_length: usize,
    /// Lines one log query may return (default 5000, as Loki's `max_entries_limit_per_query`).
    pub max_entries_per_query: usize,
    /// Lines one metric query may read (default 20,000,000): a metric query holds 16 bytes per
    /// line read (its timestamp and value) until it has windowed them, so this bounds its memory
    /// (default: 320 MB). Past it the query fails with Loki's "the query would read too many …".
    pub max_lines_per_metric_query: usize,
    /// Points (series × steps) one metric query may return (default 11,000 steps as Prometheus
    /// times 10,000 series is far too many: default 5,000,000).
    pub max_points_per_query: usize,
    /// Lines one `tail` connection queues for a slow client (default 10,000); past it lines
    /// are dropped and reported in the message's `dropped_entries`.
    pub tail_buffer: usize,
}

impl Default for LogsLimitsConfig {
    fn default() -> Self {
        LogsLimitsConfig {
            max_body: ByteSize::mib(16),
            max_decompressed_body: ByteSize::mib(64),
            max_line_size: ByteSize(256 * 1024),
            max_labels_per_stream: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_entries_per_query: 5000,
            max_lines_per_metric_query: 20_000_000,
            max_points_per_query: 5_000_000,
            tail_buffer: 10_000,
        }
    }
}
