//! The vocabulary every Tidewatch crate shares, and the interfaces through which they meet.
//!
//! Nothing here does I/O: the types describe data (labels, samples, log records, units of
//! configuration), the delivery contract between agent and server, and the three traits that
//! cross crate boundaries — [`Query`], [`Appender`] and [`Replicas`].
#![deny(missing_docs)]

mod append;
mod delivery;
mod labels;
pub mod loki_push;
mod matchers;
mod query;
mod records;
pub mod remote_write;
mod replicas;
mod units;

pub use crate::append::{AppendError, Appender};
pub use crate::delivery::{
    BatchHeader, BatchRange, DeliveryError, HEADER_NAME as BATCH_HEADER, HighWaterMarks, RangeDecision,
};
pub use crate::labels::{Label, LabelError, Labels, names, validate_label_name};
pub use crate::matchers::{MatchOp, Matcher, MatcherError};
pub use crate::query::{InstantSample, Query, QueryError, QueryErrorKind, QueryOptions, QueryValue};
pub use crate::records::{LogRecord, STALE_NAN_BITS, Sample, Series, is_stale_nan, stale_nan};
pub use crate::replicas::{Replica, ReplicaSet, Replicas, ReplicasError};
pub use crate::units::{ByteSize, Duration, UnitError};
