//! Log storage: a WAL in front of one tantivy index per time partition, LogQL, and the Loki
//! HTTP API. The on-disk format is in `store/docs/format/logs.md`.

mod config;
mod http;
mod index;
pub mod logql;
mod push;
mod store;
mod tail;
pub mod time;
mod wal;

pub use self::config::{LogsConfig, LogsLimitsConfig, LogsWalConfig};
pub use self::http::routes;
pub use self::index::{LogTokenizer, TOKENIZER, schema as index_schema, settings as index_settings};
pub use self::push::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
pub use self::store::{AppendOutcome, Entry, IngestBatch, LogError, LogStore};
pub use self::wal::WalBatch;
