//! Aggregation operators: sum, avg, count, min, max, group, stddev, stdvar, topk, bottomk,
//! quantile, count_values, with `by` and `without`.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};
use tidewatch_model::Labels;

use super::binary::Output;
use super::eval::Evaluator;
use super::value::{Grid, Value};
use super::{EvalError, format_float};

fn group_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| by.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
        Some(LabelModifier::Exclude(without)) => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| l.name != "__name__" && !without.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
        None => Labels::new(),
    }
}

/// Prometheus' quantile: linear interpolation between the closest ranks.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        a.partial_cmp(b)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()).reverse())
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[derive(Clone)]
struct Acc {
    value: f64,
    mean: f64,
    count: f64,
    values: Vec<(usize, f64)>,
}

pub fn eval(ev: &mut Evaluator, a: &AggregateExpr, grid: &Grid) -> Result<Value, EvalError> {
    let op = a.op.to_string();
    let n = grid.len();
    let param = match &a.param {
        Some(p) if op == "count_values" => match ev.eval(p, grid)? {
            Value::String(s) => Some(Param::Label(s)),
            other => {
                return Err(EvalError::BadData(format!(
                    "count_values needs a string, got {}",
                    other.type_name()
                )));
            }
        },
        Some(p) => match ev.eval(p, grid)? {
            Value::Scalar(s) => Some(Param::Scalar(s)),
            other => {
                return Err(EvalError::BadData(format!(
                    "{op} needs a scalar parameter, got {}",
                    other.type_name()
                )));
            }
        },
        None => None,
    };
    let input = match ev.eval(&a.expr, grid)? {
        Value::Vector(v) => v,
        other => return Err(EvalError::BadData(format!("{op} over a {}", other.type_name()))),
    };
    let modifier = a.modifier.as_ref();
    if let Some(Param::Label(label)) = &param {
        if tidewatch_model::validate_label_name(label).is_err() {
            return Err(EvalError::Execution(format!("invalid label name {label:?}")));
        }
    }
    // Group ids are fixed across steps: the labels of a series do not change.
    let mut group_of: Vec<usize> = Vec::with_capacity(input.len());
    let mut groups: Vec<Labels> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in &input {
        let g = group_labels(&s.labels, modifier);
        let id = *index.entry(g.clone()).or_insert_with(|| {
            groups.push(g);
            groups.len() - 1
        });
        group_of.push(id);
    }
    let mut out = Output::default();
    if matches!(
        op.as_str(),
        "sum" | "avg" | "count" | "min" | "max" | "group" | "stddev" | "stdvar"
    ) {
        simple(ev, &op, &input, &group_of, &groups, n, &mut out)?;
        return Ok(Value::Vector(out.series));
    }
    let mut accs: Vec<Option<Acc>> = vec![None; groups.len()];
    for step in 0..n {
        if step % 64 == 0 {
            ev.check()?;
        }
        let mut counted: Vec<(Labels, f64)> = Vec::new();
        accs.iter_mut().for_each(|a| *a = None);
        let k = match &param {
            Some(Param::Scalar(s)) => s[step],
            _ => 0.0,
        };
        if (op == "topk" || op == "bottomk") && !(k >= i64::MIN as f64 && k <= 9_223_372_036_854_774_784.0) {
            return Err(EvalError::Execution(format!(
                "Scalar value {} overflows int64",
                go_float(k)
            )));
        }
        for (i, s) in input.iter().enumerate() {
            let Some(v) = s.values[step] else { continue };
            let slot = &mut accs[group_of[i]];
            match slot {
                None => {
                    *slot = Some(Acc {
                        value: v,
                        mean: v,
                        count: 1.0,
                        values: vec![(i, v)],
                    });
                    if op == "stddev" || op == "stdvar" {
                        if let Some(a) = slot.as_mut() {
                            a.value = 0.0;
                        }
                    }
                }
                Some(acc) => {
                    acc.count += 1.0;
                    match op.as_str() {
                        "sum" => acc.value += v,
                        "avg" => {
                            if acc.mean.is_infinite() {
                                if v.is_infinite() && (acc.mean > 0.0) == (v > 0.0) {
                                    continue;
                                }
                                if !v.is_infinite() && !v.is_nan() {
                                    continue;
                                }
                            }
                            acc.mean += v / acc.count - acc.mean / acc.count;
                        }
                        "max" => {
                            if acc.value < v || acc.value.is_nan() {
                                acc.value = v;
                            }
                        }
                        "min" => {
                            if acc.value > v || acc.value.is_nan() {
                                acc.value = v;
                            }
                        }
                        "stddev" | "stdvar" => {
                            let delta = v - acc.mean;
                            acc.mean += delta / acc.count;
                            acc.value += delta * (v - acc.mean);
                        }
                        _ => acc.values.push((i, v)),
                    }
                }
            }
        }
        for (g, acc) in accs.iter_mut().enumerate() {
            let Some(acc) = acc else { continue };
            match op.as_str() {
                "sum" | "max" | "min" => out.set(&groups[g], step, n, acc.value)?,
                "avg" => out.set(&groups[g], step, n, acc.mean)?,
                "count" => out.set(&groups[g], step, n, acc.count)?,
                "group" => out.set(&groups[g], step, n, 1.0)?,
                "stdvar" => out.set(&groups[g], step, n, acc.value / acc.count)?,
                "stddev" => out.set(&groups[g], step, n, (acc.value / acc.count).sqrt())?,
                "quantile" => {
                    let mut values: Vec<f64> = acc.values.iter().map(|x| x.1).collect();
                    out.set(&groups[g], step, n, quantile(k, &mut values))?
                }
                "topk" | "bottomk" => {
                    if k.is_nan() || k < 1.0 {
                        continue;
                    }
                    let k = if k >= acc.values.len() as f64 {
                        acc.values.len()
                    } else {
                        k as usize
                    };
                    let mut chosen = select_k(&acc.values, k, op == "topk");
                    // Largest first for topk, smallest first for bottomk (the order an instant
                    // query returns); NaN last.
                    chosen.sort_by(|a, b| {
                        let (x, y) = if op == "topk" { (b.1, a.1) } else { (a.1, b.1) };
                        match (a.1.is_nan(), b.1.is_nan()) {
                            (false, false) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                            (an, bn) => an.cmp(&bn),
                        }
                    });
                    acc.values = chosen;
                    for &(i, v) in acc.values.iter().take(k) {
                        out.set(&input[i].labels, step, n, v)?;
                    }
                }
                "count_values" => {
                    let Some(Param::Label(label)) = &param else { continue };
                    let mut counts: Vec<(String, f64)> = Vec::new();
                    for &(_, v) in &acc.values {
                        let text = format_float(v);
                        match counts.iter_mut().find(|c| c.0 == text) {
                            Some(c) => c.1 += 1.0,
                            None => counts.push((text, 1.0)),
                        }
                    }
                    for (text, c) in counts {
                        let mut labels = groups[g].clone();
                        labels.set(label.clone(), text);
                        // The count label may overwrite a grouping label: counts that land on
                        // the same labels add up.
                        match counted.iter_mut().find(|(l, _)| *l == labels) {
                            Some(x) => x.1 += c,
                            None => counted.push((labels, c)),
                        }
                    }
                }
                other => return Err(EvalError::BadData(format!("unsupported aggregation {other}"))),
            }
        }
        for (labels, c) in counted {
            out.set(&labels, step, n, c)?;
        }
    }
    Ok(Value::Vector(out.series))
}

/// The aggregations that need one number or two per group: flat arrays, no allocation per step.
fn simple(
    ev: &mut Evaluator,
    op: &str,
    input: &[super::value::StepSeries],
    group_of: &[usize],
    groups: &[Labels],
    n: usize,
    out: &mut Output,
) -> Result<(), EvalError> {
    let g = groups.len();
    let (mut value, mut mean, mut count) = (vec![0.0f64; g], vec![0.0f64; g], vec![0.0f64; g]);
    let mut out_index: Vec<Option<usize>> = vec![None; g];
    for step in 0..n {
        if step % 64 == 0 {
            ev.check()?;
        }
        count.iter_mut().for_each(|c| *c = 0.0);
        for (i, s) in input.iter().enumerate() {
            let Some(v) = s.values[step] else { continue };
            let k = group_of[i];
            if count[k] == 0.0 {
                count[k] = 1.0;
                value[k] = if op == "stddev" || op == "stdvar" { 0.0 } else { v };
                mean[k] = v;
                continue;
            }
            count[k] += 1.0;
            match op {
                "sum" => value[k] += v,
                "avg" => {
                    // Prometheus' incremental mean, with its handling of infinities.
                    if mean[k].is_infinite() {
                        if v.is_infinite() && (mean[k] > 0.0) == (v > 0.0) {
                            continue;
                        }
                        if !v.is_infinite() && !v.is_nan() {
                            continue;
                        }
                    }
                    mean[k] += v / count[k] - mean[k] / count[k];
                }
                "max" => {
                    if value[k] < v || value[k].is_nan() {
                        value[k] = v;
                    }
                }
                "min" => {
                    if value[k] > v || value[k].is_nan() {
                        value[k] = v;
                    }
                }
                "stddev" | "stdvar" => {
                    let delta = v - mean[k];
                    mean[k] += delta / count[k];
                    value[k] += delta * (v - mean[k]);
                }
                _ => {}
            }
        }
        for k in 0..g {
            if count[k] == 0.0 {
                continue;
            }
            let v = match op {
                "avg" => mean[k],
                "count" => count[k],
                "group" => 1.0,
                "stdvar" => value[k] / count[k],
                "stddev" => (value[k] / count[k]).sqrt(),
                _ => value[k],
            };
            let idx = *out_index[k].get_or_insert_with(|| out.index_of(&groups[k], n));
            out.set_at(idx, step, v)?;
        }
    }
    Ok(())
}

/// A float as Go's `%v` prints it in error messages (`1e+19`, `NaN`).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v != 0.0 && (v.abs() >= 1e21 || v.abs() < 1e-4) || v.abs() >= 1e15 {
        let e = format!("{v:e}");
        return match e.split_once('e') {
            Some((m, x)) if !x.starts_with('-') => format!("{m}e+{x:0>2}"),
            Some((m, x)) => format!("{m}e-{:0>2}", &x[1..]),
            None => e,
        };
    }
    format!("{v}")
}

/// The k elements topk (or bottomk) keeps, chosen exactly as Prometheus 2.x does: a binary
/// heap with Go's `container/heap` moves, where an element replaces the heap's root only when
/// strictly better. With ties, which series is kept depends on those moves, so matching them is
/// the only way to return the same series.
fn select_k(values: &[(usize, f64)], k: usize, top: bool) -> Vec<(usize, f64)> {
    // For topk the root is the smallest kept value (NaN counts as smallest); for bottomk the
    // largest (NaN counts as largest).
    let less = |a: f64, b: f64| {
        if a.is_nan() {
            true
        } else if top {
            a < b
        } else {
            a > b
        }
    };
    let up = |h: &mut Vec<(usize, f64)>, mut j: usize| {
        while j > 0 {
            let i = (j - 1) / 2;
            if !less(h[j].1, h[i].1) {
                break;
            }
            h.swap(i, j);
            j = i;
        }
    };
    let down = |h: &mut Vec<(usize, f64)>, i0: usize| -> bool {
        let n = h.len();
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && less(h[j1 + 1].1, h[j1].1) {
                j = j1 + 1;
            }
            if !less(h[j].1, h[i].1) {
                break;
            }
            h.swap(i, j);
            i = j;
        }
        i > i0
    };
    let mut heap: Vec<(usize, f64)> = Vec::with_capacity(k);
    for &(i, v) in values {
        if heap.len() < k {
            heap.push((i, v));
            let last = heap.len() - 1;
            up(&mut heap, last);
            continue;
        }
        let root = heap[0].1;
        let better = if top { root < v } else { root > v };
        if better || (root.is_nan() && !v.is_nan()) {
            heap[0] = (i, v);
            if k > 1 && !down(&mut heap, 0) {
                up(&mut heap, 0);
            }
        }
    }
    heap
}

enum Param {
    Scalar(Vec<f64>),
    Label(String),
}
