//! Samples, series and log records: what flows from the collector into the store and out of
//! the query engines.

use serde::{Deserialize, Serialize};

use crate::Labels;

/// The bit pattern Prometheus writes as a staleness marker: a NaN that no arithmetic produces,
/// so a stored value can be told apart from a computed NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (and not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One value at one moment. Timestamps are milliseconds since the Unix epoch, as in
/// Prometheus' storage and remote_write.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; [`stale_nan`] marks the end of a series.
    pub value: f64,
}

/// A labelled sequence of samples in time order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The series identity, metric name included.
    pub labels: Labels,
    /// Samples ordered by timestamp.
    pub samples: Vec<Sample>,
}

/// One log line of one stream. Timestamps are nanoseconds since the Unix epoch, as in Loki's
/// push API, because containers log faster than one line per millisecond.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The stream's labels (for containers: see `names`).
    pub labels: Labels,
    /// The line without its trailing newline.
    pub line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_distinct_from_ordinary_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(stale_nan().is_nan());
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(0.0 / 0.0));
    }
}
