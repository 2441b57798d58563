//! The store: metrics (WAL, head, Parquet blocks) and logs (tantivy), PromQL and LogQL, ingest and query routes.
//!
//! Not built yet: issues #3 (metrics) and #4 (logs) build it. Nothing here is wired into the binary, and nothing
//! pretends to work.
