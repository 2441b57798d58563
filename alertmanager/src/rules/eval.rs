//! What a rule evaluation reads through: the query engines and the configured labels and URL.

use std::collections::BTreeMap;

use tidewatch_model::{Labels, Query, QueryOptions, QueryValue};

use super::expr::Lang;

/// What the template function `query` returns: labels and value per series.
pub type QueryRows = Vec<(BTreeMap<String, String>, f64)>;

/// One element of a rule's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The series labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// The engines and settings one evaluation uses.
pub struct EvalEnv<'a> {
    /// PromQL.
    pub metrics: &'a dyn Query,
    /// LogQL metric queries; `None`: LogQL rules fail with a clear error.
    pub logs: Option<&'a dyn Query>,
    /// Added to nothing (Prometheus adds them when sending); visible to templates.
    pub external_labels: &'a BTreeMap<String, String>,
    /// Visible to templates and used in generator URLs.
    pub external_url: &'a str,
    /// Limits every query.
    pub options: QueryOptions,
}

impl EvalEnv<'_> {
    fn engine(&self, lang: Lang) -> Result<&dyn Query, String> {
        match lang {
            Lang::PromQl => Ok(self.metrics),
            Lang::LogQl => self
                .logs
                .ok_or_else(|| "LogQL rules need the log store, which is not configured".to_string()),
        }
    }

    /// Prometheus' `EngineQueryFunc`: an instant query whose result must be a vector or a
    /// scalar (a scalar becomes one row without labels).
    pub async fn query(&self, expr: &str, lang: Lang, ts: i64) -> Result<Vec<Row>, String> {
        let value = self
            .engine(lang)?
            .instant(expr, ts, &self.options)
            .await
            .map_err(|e| e.message)?;
        match value {
            QueryValue::Vector(v) => Ok(v
                .into_iter()
                .map(|s| Row {
                    labels: s.labels,
                    value: s.sample.value,
                })
                .collect()),
            QueryValue::Scalar(s) => Ok(vec![Row {
                labels: Labels::new(),
                value: s.value,
            }]),
            _ => Err("rule result is not a vector or scalar".into()),
        }
    }

    /// The template function `query`: runs on another thread and waits, because templates are
    /// expanded synchronously (gtmpl) while queries are async. Fine for the in-process engine;
    /// with a remote engine it needs a multi-threaded runtime.
    pub fn query_blocking(&self, expr: &str, ts: i64) -> Result<QueryRows, String> {
        let lang = super::expr::lang_of(expr);
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        std::thread::scope(|s| {
            s.spawn(|| handle.block_on(self.query(expr, lang, ts)))
                .join()
                .map_err(|_| "query panicked".to_string())?
        })
        .map(|rows| rows.into_iter().map(|r| (r.labels.into(), r.value)).collect())
    }

    /// The newest sample of the range selector `expr` at `ts` (for restoring `for` state).
    pub async fn last_sample(&self, expr: &str, ts: i64) -> Result<Option<(i64, f64)>, String> {
        let value = self
            .metrics
            .instant(expr, ts, &self.options)
            .await
            .map_err(|e| e.message)?;
        Ok(match value {
            QueryValue::Matrix(m) => m
                .into_iter()
                .filter_map(|s| s.samples.last().map(|x| (x.timestamp_ms, x.value)))
                .max_by_key(|(t, _)| *t),
            _ => None,
        })
    }
}
