//! The values an expression evaluates to over the steps of a query.
//!
//! A query is evaluated at every step of its time grid at once: an instant vector is a list of
//! series, each with one optional value per step (absent where the series has no sample in
//! reach). Range vectors only exist as function arguments and as the result of an instant query
//! of a bare `x[5m]`; they are kept as raw samples plus the window each step looks at.

use tidewatch_model::{Labels, Sample};

/// The time grid: `start`, `start + step`, …, up to `end` inclusive (ms).
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        if self.step <= 0 {
            1
        } else {
            ((self.end - self.start) / self.step) as usize + 1
        }
    }

    pub fn time(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.time(i))
    }
}

/// One series of an instant vector over the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

/// Raw samples of one series, with the window each step reads: `(t_eval − offset − range,
/// t_eval − offset]` (2.x includes the left end; see [`crate::promql::EngineOptions`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A range vector over the grid.
#[derive(Clone, Debug)]
pub struct RangeValue {
    pub series: Vec<RangeSeries>,
    pub range: i64,
    /// The end of the window at each step.
    pub window_ends: Vec<i64>,
}

/// What an expression evaluates to.
#[derive(Clone, Debug)]
pub enum Value {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    Range(RangeValue),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "instant vector",
            Value::Range(_) => "range vector",
        }
    }
}
