//! `tidewatch rules check FILE...` and `tidewatch rules test FILE...`: promtool's
//! `check rules` and `test rules`, with the store's PromQL engine under the unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use tidewatch_alertmanager::rules::{MemSeries, TestEngine, check_rules, test_rules};
use tidewatch_model::{Matcher, Query, Series};
use tidewatch_store::promql::{Engine, EngineOptions, EvalError, SeriesSource};

/// A test group's in-memory series as the PromQL engine's source.
struct MemSource(Arc<MemSeries>);

impl SeriesSource for MemSource {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError> {
        Ok(self.0.select(matchers, mint, maxt))
    }
}

/// The store's engine with Prometheus 2.x defaults (5m lookback, closed range windows), the
/// semantics promtool 2.42 tests are written for.
struct StoreEngine;

impl TestEngine for StoreEngine {
    fn engine(&self, series: Arc<MemSeries>) -> Arc<dyn Query> {
        Arc::new(Engine::new(Arc::new(MemSource(series)), EngineOptions::default()))
    }
}

/// `promtool check rules`: prints each file's verdict; `Ok(true)` when all are good.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<bool> {
    anyhow::ensure!(!paths.is_empty(), "no rule files given");
    let report = check_rules(paths);
    print!("{report}");
    Ok(report.success())
}

/// `promtool test rules`: runs the unit tests of each file; `Ok(true)` when all pass.
pub fn test(paths: &[PathBuf]) -> anyhow::Result<bool> {
    anyhow::ensure!(!paths.is_empty(), "no test files given");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(test_rules(paths, &StoreEngine));
    print!("{report}");
    Ok(report.success())
}
