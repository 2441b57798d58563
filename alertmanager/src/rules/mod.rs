//! Prometheus rule files, evaluation and alert state.
