//! LogQL: a hand-written parser (no maintained Rust LogQL crate exists) and an evaluator over
//! the partitions. Stream selectors and `|=` filters narrow the candidates through tantivy;
//! every filter is then checked exactly on the line.

mod binary;
pub mod eval;
pub mod parse;
pub mod pipeline;
pub mod template;

pub use self::parse::{BinOp, Expr, LogExpr, MetricExpr, VectorMatching, parse};
