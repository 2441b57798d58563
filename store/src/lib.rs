//! The store: metrics (WAL, head, Parquet blocks) and, later, logs (tantivy); ingest and query
//! routes. See README.md for what it promises and docs/format/ for the on-disk formats.

pub mod metrics;
pub mod promql;
