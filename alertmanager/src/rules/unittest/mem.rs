//! The series of one promtool test group, in memory: the input series plus what the rules write
//! back, visible up to the current evaluation time (as promtool's lazy loader).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use tidewatch_model::{AppendError, Appender, BatchHeader, Labels, LogRecord, Matcher, Sample, Series};

/// In-memory series with a visibility horizon. A query engine reads it through
/// [`select`](Self::select); the rules write through [`Appender`].
#[derive(Debug, Default)]
pub struct MemSeries {
    data: RwLock<Data>,
}

#[derive(Debug, Default)]
struct Data {
    series: BTreeMap<Labels, Vec<Sample>>,
    /// Series by metric name: nearly every selector names its metric, and a test group holds
    /// the outputs of hundreds of rules, so a full scan per selector would dominate.
    by_name: HashMap<String, Vec<Labels>>,
    visible_until: i64,
}

impl MemSeries {
    /// Holds `series`; nothing is visible until [`set_visible_until`](Self::set_visible_until).
    pub fn new(series: Vec<Series>) -> MemSeries {
        let mem = MemSeries::default();
        {
            let mut d = mem.data.write().unwrap_or_else(|e| e.into_inner());
            for s in series {
                d.insert(s);
            }
            d.visible_until = i64::MIN;
        }
        mem
    }

    /// Samples after `t_ms` are hidden (promtool loads input samples only up to the
    /// evaluation time).
    pub fn set_visible_until(&self, t_ms: i64) {
        self.data.write().unwrap_or_else(|e| e.into_inner()).visible_until = t_ms;
    }

    /// The series matching every matcher, with their visible samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let d = self.data.read().unwrap_or_else(|e| e.into_inner());
        let maxt = maxt.min(d.visible_until);
        let mut out = Vec::new();
        let mut take = |labels: &Labels, samples: &[Sample]| {
            if !Matcher::all_match(matchers, labels) {
                return;
            }
            let lo = samples.partition_point(|s| s.timestamp_ms < mint);
            let hi = samples.partition_point(|s| s.timestamp_ms <= maxt);
            if lo < hi {
                out.push(Series {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                });
            }
        };
        let name = matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == tidewatch_model::MatchOp::Equal)
            .map(|m| m.value.as_str());
        match name {
            Some(n) => {
                for labels in d.by_name.get(n).into_iter().flatten() {
                    if let Some(samples) = d.series.get(labels) {
                        take(labels, samples);
                    }
                }
            }
            None => {
                for (labels, samples) in &d.series {
                    take(labels, samples);
                }
            }
        }
        out
    }
}

impl Data {
    fn insert(&mut self, s: Series) {
        if !self.series.contains_key(&s.labels) {
            let name = s.labels.metric_name().unwrap_or("").to_string();
            self.by_name.entry(name).or_default().push(s.labels.clone());
        }
        let v = self.series.entry(s.labels).or_default();
        for x in s.samples {
            match v.last() {
                Some(l) if l.timestamp_ms >= x.timestamp_ms => {
                    let i = v.partition_point(|y| y.timestamp_ms < x.timestamp_ms);
                    if v.get(i).is_some_and(|y| y.timestamp_ms == x.timestamp_ms) {
                        v[i] = x;
                    } else {
                        v.insert(i, x);
                    }
                }
                _ => v.push(x),
            }
        }
    }
}

#[async_trait]
impl Appender for MemSeries {
    async fn append_series(&self, series: Vec<Series>, _delivery: Option<&BatchHeader>) -> Result<(), AppendError> {
        let mut d = self.data.write().unwrap_or_else(|e| e.into_inner());
        for s in series {
            d.insert(s);
        }
        Ok(())
    }

    async fn append_logs(&self, _records: Vec<LogRecord>, _delivery: Option<&BatchHeader>) -> Result<(), AppendError> {
        Err(AppendError::Rejected("promtool unit tests hold no logs".into()))
    }
}
