//! The evaluator: walks promql-parser's AST over a time grid.

use std::time::{Instant, SystemTime};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use tidewatch_model::{Labels, MatchOp, Matcher, Sample, Series, is_stale_nan};

use super::value::{Grid, RangeSeries, RangeValue, StepSeries, Value};
use super::{EngineOptions, EvalError, aggregate, binary, functions};

/// Where series come from: the store, or a test's in-memory data.
pub trait SeriesSource: Sync {
    /// Series matching every matcher with their samples in `[mint, maxt]`.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError>;
}

/// State of one query's evaluation.
pub struct Evaluator<'a> {
    pub source: &'a dyn SeriesSource,
    pub options: &'a EngineOptions,
    /// The query's own start and end, for `@ start()` and `@ end()`.
    pub query_start: i64,
    pub query_end: i64,
    pub deadline: Instant,
    /// Samples held so far, against `options.max_samples`.
    pub samples: usize,
}

fn duration_ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

pub fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Converts promql-parser's matchers into ours (regexes anchored as Prometheus does).
pub fn matchers_of(vs: &VectorSelector) -> Result<Vec<Matcher>, EvalError> {
    let mut out = Vec::new();
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(m.name.clone(), op, m.value.clone()).map_err(|e| EvalError::BadData(e.to_string()))?);
    }
    if let Some(name) = &vs.name {
        if !out.iter().any(|m| m.name == "__name__") {
            out.push(Matcher::equal("__name__", name.clone()));
        }
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::BadData("`or` inside a selector is not supported".into()));
    }
    Ok(out)
}

impl<'a> Evaluator<'a> {
    pub fn check(&self) -> Result<(), EvalError> {
        if Instant::now() > self.deadline {
            return Err(EvalError::Timeout);
        }
        Ok(())
    }

    pub fn hold(&mut self, n: usize) -> Result<(), EvalError> {
        self.samples += n;
        if self.samples > self.options.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    fn at_time(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// The reference time of each step for a selector with `at` and `offset`.
    fn ref_times(&self, grid: &Grid, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        let at = self.at_time(at);
        let off = offset_ms(offset);
        grid.times().map(|t| at.unwrap_or(t) - off).collect()
    }

    pub fn eval(&mut self, expr: &Expr, grid: &Grid) -> Result<Value, EvalError> {
        self.check()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; grid.len()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, grid),
            Expr::Unary(u) => match self.eval(&u.expr, grid)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(v) => Ok(Value::Vector(binary::merge(
                    v.into_iter()
                        .map(|mut s| {
                            s.labels.remove("__name__");
                            s.values.iter_mut().for_each(|x| *x = x.map(|x| -x));
                            s
                        })
                        .collect(),
                )?)),
                other => Err(EvalError::BadData(format!("unary minus on a {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) => self.vector_selector(vs, grid).map(Value::Vector),
            Expr::MatrixSelector(ms) => {
                let ends = self.ref_times(grid, &ms.vs.at, &ms.vs.offset);
                self.range_selector(&ms.vs, duration_ms(&ms.range), ends)
                    .map(Value::Range)
            }
            Expr::Subquery(sq) => self.subquery(sq, grid).map(Value::Range),
            Expr::Binary(b) => binary::eval(self, b, grid),
            Expr::Aggregate(a) => aggregate::eval(self, a, grid),
            Expr::Call(c) => functions::eval(self, c, grid),
            Expr::Extension(_) => Err(EvalError::BadData("unsupported expression".into())),
        }
    }

    /// Fetches the series of a selector for reference times `refs` looking back `lookback`.
    fn fetch(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError> {
        let matchers = matchers_of(vs)?;
        let series = self.source.select(&matchers, mint, maxt)?;
        self.hold(series.iter().map(|s| s.samples.len()).sum())?;
        Ok(series)
    }

    pub fn vector_selector(&mut self, vs: &VectorSelector, grid: &Grid) -> Result<Vec<StepSeries>, EvalError> {
        self.select_steps(vs, grid, false)
    }

    /// As [`Evaluator::vector_selector`], with each value replaced by its sample's timestamp in
    /// seconds (what `timestamp()` of a selector returns).
    pub fn vector_selector_timestamps(
        &mut self,
        vs: &VectorSelector,
        grid: &Grid,
    ) -> Result<Vec<StepSeries>, EvalError> {
        self.select_steps(vs, grid, true)
    }

    fn select_steps(
        &mut self,
        vs: &VectorSelector,
        grid: &Grid,
        timestamps: bool,
    ) -> Result<Vec<StepSeries>, EvalError> {
        let refs = self.ref_times(grid, &vs.at, &vs.offset);
        let lookback = self.options.lookback_delta_ms;
        let (Some(&min), Some(&max)) = (refs.iter().min(), refs.iter().max()) else {
            return Ok(Vec::new());
        };
        let series = self.fetch(vs, min - lookback, max)?;
        let left_open = self.options.left_open_ranges;
        // Independent per series: looked up on all cores.
        use rayon::prelude::*;
        let out = series
            .into_par_iter()
            .filter_map(|s| {
                let mut found = false;
                let values: Vec<Option<f64>> = refs
                    .iter()
                    .map(|&r| {
                        // The last sample at or before r, if within the lookback and not a
                        // staleness marker.
                        let idx = s.samples.partition_point(|x| x.timestamp_ms <= r);
                        let v = idx.checked_sub(1).map(|i| s.samples[i]).filter(|x| {
                            let in_reach = if left_open {
                                x.timestamp_ms > r - lookback
                            } else {
                                x.timestamp_ms >= r - lookback
                            };
                            in_reach && !is_stale_nan(x.value)
                        });
                        found |= v.is_some();
                        v.map(|x| {
                            if timestamps {
                                x.timestamp_ms as f64 / 1000.0
                            } else {
                                x.value
                            }
                        })
                    })
                    .collect();
                found.then_some(StepSeries {
                    labels: s.labels,
                    values,
                })
            })
            .collect();
        Ok(out)
    }

    /// Raw samples for windows ending at `ends`, `range` long; staleness markers dropped.
    pub fn range_selector(&mut self, vs: &VectorSelector, range: i64, ends: Vec<i64>) -> Result<RangeValue, EvalError> {
        let (Some(&min), Some(&max)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(RangeValue {
                series: Vec::new(),
                range,
                window_ends: ends,
            });
        };
        let series = self.fetch(vs, min - range, max)?;
        let series = series
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.labels,
                samples: s.samples.into_iter().filter(|x| !is_stale_nan(x.value)).collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        Ok(RangeValue {
            series,
            range,
            window_ends: ends,
        })
    }

    fn subquery(&mut self, sq: &promql_parser::parser::SubqueryExpr, grid: &Grid) -> Result<RangeValue, EvalError> {
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.options.default_subquery_step_ms);
        let range = duration_ms(&sq.range);
        let offset = offset_ms(&sq.offset);
        let ends = self.ref_times(grid, &sq.at, &sq.offset);
        let (Some(&first_end), Some(&last_end)) = (ends.iter().min(), ends.iter().max()) else {
            return Ok(RangeValue {
                series: Vec::new(),
                range,
                window_ends: ends,
            });
        };
        let _ = offset;
        // The first multiple of the step after the earliest window start, as Prometheus aligns
        // subquery steps to absolute time.
        let lowest = first_end - range;
        let start = lowest.div_euclid(step) * step + if lowest.rem_euclid(step) == 0 { 0 } else { step };
        let inner = Grid {
            start,
            end: last_end,
            step,
        };
        if inner.end < inner.start {
            return Ok(RangeValue {
                series: Vec::new(),
                range,
                window_ends: ends,
            });
        }
        let value = self.eval(&sq.expr, &inner)?;
        let series = match value {
            Value::Vector(v) => v
                .into_iter()
                .map(|s| RangeSeries {
                    labels: s.labels,
                    samples: s
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            v.map(|v| Sample {
                                timestamp_ms: inner.time(i),
                                value: v,
                            })
                        })
                        .collect(),
                })
                .collect(),
            Value::Scalar(v) => vec![RangeSeries {
                labels: Labels::new(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Sample {
                        timestamp_ms: inner.time(i),
                        value: v,
                    })
                    .collect(),
            }],
            other => return Err(EvalError::BadData(format!("subquery over a {}", other.type_name()))),
        };
        Ok(RangeValue {
            series,
            range,
            window_ends: ends,
        })
    }
}

/// The samples of `s` in the window ending at `end`, `range` long.
pub fn window(samples: &[Sample], end: i64, range: i64, left_open: bool) -> &[Sample] {
    let hi = samples.partition_point(|x| x.timestamp_ms <= end);
    let lo = if left_open {
        samples.partition_point(|x| x.timestamp_ms <= end - range)
    } else {
        samples.partition_point(|x| x.timestamp_ms < end - range)
    };
    if lo >= hi { &[] } else { &samples[lo..hi] }
}
