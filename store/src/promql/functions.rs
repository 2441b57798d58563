//! PromQL functions, as Prometheus 2.x defines them.

use promql_parser::parser::{Call, Expr};
use tidewatch_model::{Labels, MatchOp, Sample};

use super::EvalError;
use super::aggregate::quantile;
use super::binary::{Output, merge};
use super::eval::{Evaluator, matchers_of, window};
use super::value::{Grid, RangeValue, StepSeries, Value};

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        e => e,
    }
}

fn arg<'e>(c: &'e Call, i: usize) -> Result<&'e Expr, EvalError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| EvalError::BadData(format!("{} needs argument {}", c.func.name, i + 1)))
}

fn vector_arg(ev: &mut Evaluator, e: &Expr, grid: &Grid) -> Result<Vec<StepSeries>, EvalError> {
    match ev.eval(e, grid)? {
        Value::Vector(v) => Ok(v),
        other => Err(EvalError::BadData(format!(
            "expected an instant vector, got {}",
            other.type_name()
        ))),
    }
}

fn scalar_arg(ev: &mut Evaluator, e: &Expr, grid: &Grid) -> Result<Vec<f64>, EvalError> {
    match ev.eval(e, grid)? {
        Value::Scalar(v) => Ok(v),
        other => Err(EvalError::BadData(format!(
            "expected a scalar, got {}",
            other.type_name()
        ))),
    }
}

fn string_arg(ev: &mut Evaluator, e: &Expr, grid: &Grid) -> Result<String, EvalError> {
    match ev.eval(e, grid)? {
        Value::String(s) => Ok(s),
        other => Err(EvalError::BadData(format!(
            "expected a string, got {}",
            other.type_name()
        ))),
    }
}

fn range_arg(ev: &mut Evaluator, e: &Expr, grid: &Grid) -> Result<RangeValue, EvalError> {
    match ev.eval(e, grid)? {
        Value::Range(r) => Ok(r),
        other => Err(EvalError::BadData(format!(
            "expected a range vector, got {}",
            other.type_name()
        ))),
    }
}

fn drop_name(mut l: Labels) -> Labels {
    l.remove("__name__");
    l
}

/// Applies `f` to every value of every series; the metric name is dropped unless `keep_name`.
fn map_values(
    v: Vec<StepSeries>,
    keep_name: bool,
    f: impl FnMut(f64, usize) -> Option<f64>,
) -> Result<Vec<StepSeries>, EvalError> {
    merge(map_values_raw(v, keep_name, f))
}

fn map_values_raw(
    v: Vec<StepSeries>,
    keep_name: bool,
    mut f: impl FnMut(f64, usize) -> Option<f64>,
) -> Vec<StepSeries> {
    v.into_iter()
        .filter_map(|mut s| {
            if !keep_name {
                s.labels.remove("__name__");
            }
            let mut any = false;
            for (i, slot) in s.values.iter_mut().enumerate() {
                if let Some(x) = *slot {
                    *slot = f(x, i);
                    any |= slot.is_some();
                }
            }
            any.then_some(s)
        })
        .collect()
}

/// Calls `f` on each series' window at each step; the result is an instant vector. Series are
/// independent, so they are computed on all cores (rayon), then gathered in order.
///
/// Each series' raw samples are dropped as soon as its steps are computed, and the computed
/// values become the output without a copy: the peak holds about one of the two, not both
/// (for `rate` over 10k series × 1,441 steps each is ~230 MB).
fn over_time(
    ev: &mut Evaluator,
    r: RangeValue,
    n: usize,
    keep_name: bool,
    f: impl Fn(&[Sample], i64, usize) -> Option<f64> + Sync,
) -> Result<Value, EvalError> {
    use rayon::prelude::*;
    let left_open = ev.options.left_open_ranges;
    let deadline = ev.deadline;
    let RangeValue {
        series,
        range,
        window_ends,
    } = r;
    let computed: Vec<StepSeries> = series
        .into_par_iter()
        .filter_map(|s| {
            if std::time::Instant::now() > deadline {
                return None;
            }
            let values: Vec<Option<f64>> = (0..n)
                .map(|step| {
                    let end = window_ends[step];
                    let w = window(&s.samples, end, range, left_open);
                    if w.is_empty() { None } else { f(w, end, step) }
                })
                .collect();
            if values.iter().all(Option::is_none) {
                return None;
            }
            let labels = if keep_name { s.labels } else { drop_name(s.labels) };
            Some(StepSeries { labels, values })
        })
        .collect();
    ev.check()?;
    Ok(Value::Vector(merge(computed)?))
}

/// Neumaier's compensated sum step, as Prometheus' `kahanSumInc`.
fn kahan(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn linear_regression(samples: &[Sample], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy, mut sum_xy, mut cxy, mut sum_x2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = samples[0].value;
    let mut const_y = true;
    for (i, s) in samples.iter().enumerate() {
        if const_y && i > 0 && s.value != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.timestamp_ms - intercept_time) as f64 / 1e3;
        (sum_x, cx) = kahan(x, sum_x, cx);
        (sum_y, cy) = kahan(s.value, sum_y, cy);
        (sum_xy, cxy) = kahan(x * s.value, sum_xy, cxy);
        (sum_x2, cx2) = kahan(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn extrapolated_rate(w: &[Sample], end: i64, range: i64, is_counter: bool, is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let range_start = end - range;
    let mut result = last.value - first.value;
    if is_counter {
        let mut last_value = 0.0;
        for s in w {
            if s.value < last_value {
                result += last_value;
            }
            last_value = s.value;
        }
    }
    let mut duration_to_start = (first.timestamp_ms - range_start) as f64 / 1000.0;
    let duration_to_end = (end - last.timestamp_ms) as f64 / 1000.0;
    let sampled_interval = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    let average = sampled_interval / (w.len() - 1) as f64;
    if is_counter && result > 0.0 && first.value >= 0.0 {
        let duration_to_zero = sampled_interval * (first.value / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled_interval;
    interval += if duration_to_start < threshold {
        duration_to_start
    } else {
        average / 2.0
    };
    interval += if duration_to_end < threshold {
        duration_to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled_interval;
    if is_rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

fn instant_value(w: &[Sample], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let mut result = if is_rate && last.value < prev.value {
        last.value
    } else {
        last.value - prev.value
    };
    let interval = last.timestamp_ms - prev.timestamp_ms;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), Howard Hinnant's civil_from_days.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, secs: f64) -> f64 {
    // Go's int64(v) truncates toward zero, as Prometheus converts the value; on amd64 a NaN,
    // an infinity or anything outside int64's range becomes MinInt64, and Go's calendar for
    // that second (with its wrapping arithmetic) is 292277026596-12-04 15:30:08, a Sunday.
    if secs.is_nan() || secs >= 9.223_372_036_854_775_808e18 || secs < -9.223_372_036_854_775_808e18 {
        return match name {
            "minute" => 30.0,
            "hour" => 15.0,
            "day_of_week" => 0.0,
            "day_of_month" => 4.0,
            "day_of_year" => 339.0,
            "month" => 12.0,
            "year" => 292_277_026_596.0,
            "days_in_month" => 31.0,
            _ => f64::NAN,
        };
    }
    let t = secs as i64;
    let days = t.div_euclid(86_400);
    let sod = t.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    match name {
        "minute" => ((sod / 60) % 60) as f64,
        "hour" => (sod / 3600) as f64,
        "day_of_week" => ((days + 4).rem_euclid(7)) as f64,
        "day_of_month" => d as f64,
        "day_of_year" => {
            let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            (cumulative[(m - 1) as usize] + d as i64 + if m > 2 && is_leap(y) { 1 } else { 0 }) as f64
        }
        "month" => m as f64,
        "year" => y as f64,
        "days_in_month" => match m {
            2 if is_leap(y) => 29.0,
            2 => 28.0,
            4 | 6 | 9 | 11 => 30.0,
            _ => 31.0,
        },
        _ => f64::NAN,
    }
}

fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // Go's sort.Search, step for step: with NaN counts the predicate is not monotonic, and a
    // different bisection (Rust's partition_point) lands on a different bucket.
    let (mut lo, mut hi) = (0usize, merged.len() - 1);
    while lo < hi {
        let h = (lo + hi) / 2;
        if merged[h].1 >= rank {
            hi = h;
        } else {
            lo = h + 1;
        }
    }
    let b = lo;
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The labels `absent` gives its result: the selector's equality matchers.
fn absent_labels(e: &Expr) -> Labels {
    let mut labels = Labels::new();
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return labels,
    };
    let Ok(matchers) = matchers_of(vs) else { return labels };
    let mut seen = std::collections::HashSet::new();
    for m in &matchers {
        if m.name == "__name__" {
            continue;
        }
        if m.op == MatchOp::Equal && seen.insert(m.name.clone()) {
            labels.set(m.name.clone(), m.value.clone());
        } else {
            // A label named twice, or not by equality, cannot be filled in.
            labels.remove(&m.name);
        }
    }
    labels
}

pub fn eval(ev: &mut Evaluator, c: &Call, grid: &Grid) -> Result<Value, EvalError> {
    let name = c.func.name;
    let n = grid.len();
    let secs = |t: i64| t as f64 / 1000.0;
    match name {
        "time" => Ok(Value::Scalar(grid.times().map(secs).collect())),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let s = scalar_arg(ev, arg(c, 0)?, grid)?;
            Ok(Value::Vector(vec![StepSeries {
                labels: Labels::new(),
                values: s.into_iter().map(Some).collect(),
            }]))
        }
        "scalar" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            Ok(Value::Scalar(
                (0..n)
                    .map(|i| {
                        let mut present = v.iter().filter_map(|s| s.values[i]);
                        match (present.next(), present.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "acos" | "acosh" | "asin"
        | "asinh" | "atan" | "atanh" | "cos" | "cosh" | "sin" | "sinh" | "tan" | "tanh" | "deg" | "rad" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sgn" => |x: f64| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                "acos" => f64::acos,
                "acosh" => f64::acosh,
                "asin" => f64::asin,
                "asinh" => f64::asinh,
                "atan" => f64::atan,
                "atanh" => f64::atanh,
                "cos" => f64::cos,
                "cosh" => f64::cosh,
                "sin" => f64::sin,
                "sinh" => f64::sinh,
                "tan" => f64::tan,
                "tanh" => f64::tanh,
                "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
                _ => |x: f64| x * std::f64::consts::PI / 180.0,
            };
            Ok(Value::Vector(map_values(v, false, |x, _| Some(f(x)))?))
        }
        "round" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            let to = match c.args.args.get(1) {
                Some(e) => scalar_arg(ev, e, grid)?,
                None => vec![1.0; n],
            };
            Ok(Value::Vector(map_values(v, false, |x, i| {
                let inv = 1.0 / to[i];
                Some((x * inv + 0.5).floor() / inv)
            })?))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            let a = scalar_arg(ev, arg(c, 1)?, grid)?;
            let b = if name == "clamp" {
                scalar_arg(ev, arg(c, 2)?, grid)?
            } else {
                Vec::new()
            };
            // Go's math.Max and math.Min return NaN when either side is NaN; Rust's ignore it.
            let max = |a: f64, b: f64| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) };
            let min = |a: f64, b: f64| if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) };
            Ok(Value::Vector(map_values(v, false, |x, i| match name {
                "clamp" if b[i] < a[i] => None,
                "clamp" => Some(max(a[i], min(b[i], x))),
                "clamp_min" => Some(max(a[i], x)),
                _ => Some(min(a[i], x)),
            })?))
        }
        "timestamp" => {
            let e = unwrap_parens(arg(c, 0)?);
            if let Expr::VectorSelector(vs) = e {
                // The timestamp of the sample the selector found, not the evaluation time.
                let stamps = ev.vector_selector_timestamps(vs, grid)?;
                return Ok(Value::Vector(
                    stamps
                        .into_iter()
                        .map(|mut s| {
                            s.labels.remove("__name__");
                            s
                        })
                        .collect(),
                ));
            }
            let v = vector_arg(ev, e, grid)?;
            let times: Vec<f64> = grid.times().map(secs).collect();
            Ok(Value::Vector(map_values(v, false, |_, i| Some(times[i]))?))
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "month" | "year" | "days_in_month" => {
            let v = match c.args.args.first() {
                Some(e) => vector_arg(ev, e, grid)?,
                None => vec![StepSeries {
                    labels: Labels::new(),
                    values: grid.times().map(|t| Some(secs(t))).collect(),
                }],
            };
            Ok(Value::Vector(map_values(v, false, |x, _| Some(date_part(name, x)))?))
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, arg(c, 0)?, grid)?;
            // Order only means something for an instant query (one step).
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                let (x, y) = (a.values[0].unwrap_or(f64::NAN), b.values[0].unwrap_or(f64::NAN));
                // NaN sorts last either way, as Prometheus does.
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                    _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            let dst = string_arg(ev, arg(c, 1)?, grid)?;
            let replacement = string_arg(ev, arg(c, 2)?, grid)?;
            let src = string_arg(ev, arg(c, 3)?, grid)?;
            let pattern = string_arg(ev, arg(c, 4)?, grid)?;
            let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                EvalError::Execution(format!("invalid regular expression in label_replace(): {pattern}: {e}"))
            })?;
            if tidewatch_model::validate_label_name(&dst).is_err() {
                return Err(EvalError::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Output::default();
            for s in v {
                let mut labels = s.labels.clone();
                let value = s.labels.get(&src).unwrap_or("");
                if let Some(caps) = re.captures(value) {
                    let mut res = String::new();
                    caps.expand(&replacement, &mut res);
                    labels.set(dst.clone(), res);
                }
                for (i, v) in s.values.iter().enumerate() {
                    if let Some(v) = v {
                        out.set(&labels, i, n, *v)?;
                    }
                }
            }
            Ok(Value::Vector(out.series))
        }
        "label_join" => {
            let v = vector_arg(ev, arg(c, 0)?, grid)?;
            let dst = string_arg(ev, arg(c, 1)?, grid)?;
            let sep = string_arg(ev, arg(c, 2)?, grid)?;
            let mut srcs = Vec::new();
            for e in c.args.args.iter().skip(3) {
                srcs.push(string_arg(ev, e, grid)?);
            }
            if tidewatch_model::validate_label_name(&dst).is_err() {
                return Err(EvalError::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let mut out = Output::default();
            for s in v {
                let mut labels = s.labels.clone();
                let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                labels.set(dst.clone(), joined.join(&sep));
                for (i, v) in s.values.iter().enumerate() {
                    if let Some(v) = v {
                        out.set(&labels, i, n, *v)?;
                    }
                }
            }
            Ok(Value::Vector(out.series))
        }
        "absent" => {
            let e = arg(c, 0)?;
            let v = vector_arg(ev, e, grid)?;
            let labels = absent_labels(e);
            let values: Vec<Option<f64>> = (0..n)
                .map(|i| {
                    if v.iter().any(|s| s.values[i].is_some()) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            Ok(Value::Vector(if values.iter().any(Option::is_some) {
                vec![StepSeries { labels, values }]
            } else {
                Vec::new()
            }))
        }
        "absent_over_time" => {
            let e = arg(c, 0)?;
            let r = range_arg(ev, e, grid)?;
            let left_open = ev.options.left_open_ranges;
            let labels = absent_labels(e);
            let values: Vec<Option<f64>> = (0..n)
                .map(|i| {
                    let any = r
                        .series
                        .iter()
                        .any(|s| !window(&s.samples, r.window_ends[i], r.range, left_open).is_empty());
                    if any { None } else { Some(1.0) }
                })
                .collect();
            Ok(Value::Vector(if values.iter().any(Option::is_some) {
                vec![StepSeries { labels, values }]
            } else {
                Vec::new()
            }))
        }
        "histogram_quantile" => {
            let q = scalar_arg(ev, arg(c, 0)?, grid)?;
            let v = vector_arg(ev, arg(c, 1)?, grid)?;
            let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
            let mut index = std::collections::HashMap::new();
            for (i, s) in v.iter().enumerate() {
                let Some(le) = s.labels.get("le") else { continue };
                let Ok(ub) = le.trim().parse::<f64>().or_else(|_| match le.trim() {
                    "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
                    _ => Err(()),
                }) else {
                    continue;
                };
                // Grouped with the metric name, which is dropped only from the result: two
                // histograms that differ only by name collide there, an error as in Prometheus.
                let mut key = s.labels.clone();
                key.remove("le");
                let g = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push((drop_name(key), Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push((ub, i));
            }
            let mut out = Output::default();
            for (labels, members) in &groups {
                for step in 0..n {
                    let mut buckets: Vec<(f64, f64)> = members
                        .iter()
                        .filter_map(|&(ub, i)| v[i].values[step].map(|c| (ub, c)))
                        .collect();
                    if buckets.is_empty() {
                        continue;
                    }
                    out.set(labels, step, n, bucket_quantile(q[step], &mut buckets))?;
                }
            }
            Ok(Value::Vector(out.series))
        }
        "rate" | "increase" | "delta" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let range = r.range;
            let (counter, is_rate) = (name != "delta", name == "rate");
            over_time(ev, r, n, false, |w, end, _| {
                extrapolated_rate(w, end, range, counter, is_rate)
            })
        }
        "irate" | "idelta" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let is_rate = name == "irate";
            over_time(ev, r, n, false, |w, _, _| instant_value(w, is_rate))
        }
        "deriv" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| {
                (w.len() >= 2).then(|| linear_regression(w, w[0].timestamp_ms).0)
            })
        }
        "predict_linear" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let d = scalar_arg(ev, arg(c, 1)?, grid)?;
            let times: Vec<i64> = grid.times().collect();
            over_time(ev, r, n, false, |w, _, step| {
                (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, times[step]);
                    intercept + slope * d[step]
                })
            })
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let sf = scalar_arg(ev, arg(c, 1)?, grid)?;
            let tf = scalar_arg(ev, arg(c, 2)?, grid)?;
            // Prometheus checks the factors inside the function, so only when a series has a
            // window to smooth.
            let has_data = |i: usize| {
                r.series
                    .iter()
                    .any(|s| window(&s.samples, r.window_ends[i], r.range, ev.options.left_open_ranges).len() >= 1)
            };
            for i in 0..n {
                if (sf[i] <= 0.0 || sf[i] >= 1.0) && has_data(i) {
                    return Err(EvalError::Execution(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                        sf[i]
                    )));
                }
                if (tf[i] <= 0.0 || tf[i] >= 1.0) && has_data(i) {
                    return Err(EvalError::Execution(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                        tf[i]
                    )));
                }
            }
            over_time(ev, r, n, false, |w, _, step| {
                if w.len() < 2 {
                    return None;
                }
                let (sf, tf) = (sf[step], tf[step]);
                let (mut s0, mut s1) = (0.0, w[0].value);
                let mut b = w[1].value - w[0].value;
                for (i, x) in w.iter().enumerate().skip(1) {
                    if i > 1 {
                        b = tf * (s1 - s0) + (1.0 - tf) * b;
                    }
                    let next = sf * x.value + (1.0 - sf) * (s1 + b);
                    s0 = s1;
                    s1 = next;
                }
                Some(s1)
            })
        }
        "resets" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| {
                Some(w.windows(2).filter(|p| p[1].value < p[0].value).count() as f64)
            })
        }
        "changes" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| {
                Some(
                    w.windows(2)
                        .filter(|p| !(p[1].value == p[0].value || (p[1].value.is_nan() && p[0].value.is_nan())))
                        .count() as f64,
                )
            })
        }
        "avg_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| {
                let (mut mean, mut count, mut comp) = (0.0f64, 0.0, 0.0);
                for s in w {
                    count += 1.0;
                    if mean.is_infinite() {
                        if s.value.is_infinite() && (mean > 0.0) == (s.value > 0.0) {
                            continue;
                        }
                        if !s.value.is_infinite() && !s.value.is_nan() {
                            continue;
                        }
                    }
                    (mean, comp) = kahan(s.value / count - mean / count, mean, comp);
                }
                Some(if mean.is_infinite() { mean } else { mean + comp })
            })
        }
        "sum_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| {
                let (mut sum, mut comp) = (0.0f64, 0.0);
                for s in w {
                    (sum, comp) = kahan(s.value, sum, comp);
                }
                Some(if sum.is_infinite() { sum } else { sum + comp })
            })
        }
        "count_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |w, _, _| Some(w.len() as f64))
        }
        "min_over_time" | "max_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let max = name == "max_over_time";
            over_time(ev, r, n, false, |w, _, _| {
                let mut acc = w[0].value;
                for s in w {
                    if (max && s.value > acc) || (!max && s.value < acc) || acc.is_nan() {
                        acc = s.value;
                    }
                }
                Some(acc)
            })
        }
        "last_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, true, |w, _, _| w.last().map(|s| s.value))
        }
        "present_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            over_time(ev, r, n, false, |_, _, _| Some(1.0))
        }
        "quantile_over_time" => {
            let q = scalar_arg(ev, arg(c, 0)?, grid)?;
            let r = range_arg(ev, arg(c, 1)?, grid)?;
            over_time(ev, r, n, false, |w, _, step| {
                let mut values: Vec<f64> = w.iter().map(|s| s.value).collect();
                Some(quantile(q[step], &mut values))
            })
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let r = range_arg(ev, arg(c, 0)?, grid)?;
            let dev = name == "stddev_over_time";
            over_time(ev, r, n, false, |w, _, _| {
                let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for s in w {
                    count += 1.0;
                    let delta = s.value - (mean + cmean);
                    (mean, cmean) = kahan(delta / count, mean, cmean);
                    (aux, caux) = kahan(delta * (s.value - (mean + cmean)), aux, caux);
                }
                let var = (aux + caux) / count;
                Some(if dev { var.sqrt() } else { var })
            })
        }
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            // Native-histogram functions: Prometheus 2.42 returns nothing for float series,
            // which are all this store holds.
            for e in &c.args.args {
                ev.eval(e, grid)?;
            }
            Ok(Value::Vector(Vec::new()))
        }
        other => Err(EvalError::BadData(format!("function {other}() is not supported"))),
    }
}
