//! Shared helpers of the benchmark harnesses.
//!
//! - [`rw`]: synthetic remote_write traffic shaped like node_exporter's, encoded ahead of time.
//! - [`http`]: a minimal HTTP/1.1 keep-alive client over a blocking `TcpStream`, so that a load
//!   generator pinned to one core spends it on `write(2)` and `read(2)`, not on a runtime.

pub mod http;
pub mod rw;
