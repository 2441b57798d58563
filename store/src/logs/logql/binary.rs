//! Binary operations between metric results and scalars, with PromQL's semantics: arithmetic,
//! comparisons (filtering, or 0/1 with `bool`), `and`/`or`/`unless`, and vector matching
//! (`on`, `ignoring`, `group_left`, `group_right`), step by step.

use std::collections::{BTreeMap, HashMap, HashSet};

use tidewatch_model::{Labels, QueryError, QueryErrorKind, Sample, Series};

use super::parse::{BinOp, VectorMatching};

/// A metric value over the steps: a number, or series with one sample per step they have.
pub enum Value {
    /// A scalar (the same at every step).
    Scalar(f64),
    /// Series.
    Vector(Vec<Series>),
}

fn bad(m: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::BadData, m)
}
fn exec(m: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::Execution, m)
}

/// `a op b`, or `None` where a comparison filters the sample out.
fn apply(op: BinOp, a: f64, b: f64, return_bool: bool) -> Option<f64> {
    let cmp = |t: bool| {
        if return_bool {
            Some(if t { 1.0 } else { 0.0 })
        } else {
            t.then_some(a)
        }
    };
    match op {
        BinOp::Add => Some(a + b),
        BinOp::Sub => Some(a - b),
        BinOp::Mul => Some(a * b),
        BinOp::Div => Some(a / b),
        BinOp::Mod => Some(a % b),
        BinOp::Pow => Some(a.powf(b)),
        BinOp::Eq => cmp(a == b),
        BinOp::Ne => cmp(a != b),
        BinOp::Gt => cmp(a > b),
        BinOp::Lt => cmp(a < b),
        BinOp::Ge => cmp(a >= b),
        BinOp::Le => cmp(a <= b),
        BinOp::And | BinOp::Or | BinOp::Unless => None,
    }
}

fn signature(l: &Labels, m: &VectorMatching) -> Labels {
    if m.on {
        Labels::from_pairs(
            l.iter()
                .filter(|x| m.labels.contains(&x.name))
                .map(|x| (x.name.clone(), x.value.clone())),
        )
    } else {
        Labels::from_pairs(
            l.iter()
                .filter(|x| !m.labels.contains(&x.name))
                .map(|x| (x.name.clone(), x.value.clone())),
        )
    }
}

/// Samples by step (ms): `(series index, value)`.
fn by_step(v: &[Series]) -> BTreeMap<i64, Vec<(usize, f64)>> {
    let mut out: BTreeMap<i64, Vec<(usize, f64)>> = BTreeMap::new();
    for (i, s) in v.iter().enumerate() {
        for x in &s.samples {
            out.entry(x.timestamp_ms).or_default().push((i, x.value));
        }
    }
    out
}

fn collect(out: BTreeMap<Labels, Vec<Sample>>) -> Vec<Series> {
    out.into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.timestamp_ms);
            Series { labels, samples }
        })
        .collect()
}

/// Evaluates `lhs op rhs`.
pub fn eval(
    op: BinOp,
    return_bool: bool,
    matching: &VectorMatching,
    lhs: Value,
    rhs: Value,
) -> Result<Value, QueryError> {
    match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            if op.is_set() {
                return Err(bad(format!("{op:?} is not defined between scalars")));
            }
            if op.is_comparison() && !return_bool {
                return Err(bad("comparisons between scalars must use the bool modifier"));
            }
            Ok(Value::Scalar(apply(op, a, b, return_bool).unwrap_or(f64::NAN)))
        }
        (Value::Vector(v), Value::Scalar(s)) => scalar_side(op, return_bool, v, s, false),
        (Value::Scalar(s), Value::Vector(v)) => scalar_side(op, return_bool, v, s, true),
        (Value::Vector(l), Value::Vector(r)) => {
            if op.is_set() {
                Ok(Value::Vector(set_op(op, matching, &l, &r)))
            } else {
                vector_vector(op, return_bool, matching, &l, &r).map(Value::Vector)
            }
        }
    }
}

fn scalar_side(op: BinOp, return_bool: bool, v: Vec<Series>, s: f64, swap: bool) -> Result<Value, QueryError> {
    if op.is_set() {
        return Err(bad(format!("{op:?} is not defined between a vector and a scalar")));
    }
    let mut out = Vec::new();
    for series in v {
        let samples: Vec<Sample> = series
            .samples
            .iter()
            .filter_map(|x| {
                let (a, b) = if swap { (s, x.value) } else { (x.value, s) };
                let mut value = apply(op, a, b, return_bool)?;
                // A filtering comparison keeps the vector's value, whichever side it is on.
                if op.is_comparison() && !return_bool {
                    value = x.value;
                }
                Some(Sample {
                    timestamp_ms: x.timestamp_ms,
                    value,
                })
            })
            .collect();
        if !samples.is_empty() {
            out.push(Series {
                labels: series.labels,
                samples,
            });
        }
    }
    Ok(Value::Vector(out))
}

fn set_op(op: BinOp, m: &VectorMatching, l: &[Series], r: &[Series]) -> Vec<Series> {
    let (ls, rs) = (by_step(l), by_step(r));
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let steps: std::collections::BTreeSet<i64> = ls.keys().chain(rs.keys()).copied().collect();
    for t in steps {
        let left = ls.get(&t).map_or(&[][..], |v| v.as_slice());
        let right = rs.get(&t).map_or(&[][..], |v| v.as_slice());
        let rsig: HashSet<Labels> = right.iter().map(|(i, _)| signature(&r[*i].labels, m)).collect();
        let mut push = |labels: &Labels, value: f64| {
            out.entry(labels.clone())
                .or_default()
                .push(Sample { timestamp_ms: t, value });
        };
        match op {
            BinOp::And => {
                for (i, v) in left {
                    if rsig.contains(&signature(&l[*i].labels, m)) {
                        push(&l[*i].labels, *v);
                    }
                }
            }
            BinOp::Unless => {
                for (i, v) in left {
                    if !rsig.contains(&signature(&l[*i].labels, m)) {
                        push(&l[*i].labels, *v);
                    }
                }
            }
            _ => {
                let lsig: HashSet<Labels> = left.iter().map(|(i, _)| signature(&l[*i].labels, m)).collect();
                for (i, v) in left {
                    push(&l[*i].labels, *v);
                }
                for (i, v) in right {
                    if !lsig.contains(&signature(&r[*i].labels, m)) {
                        push(&r[*i].labels, *v);
                    }
                }
            }
        }
    }
    collect(out)
}

fn result_labels(many: &Labels, one: &Labels, m: &VectorMatching) -> Labels {
    match m.group_left {
        None => signature(many, m),
        Some(_) => {
            let mut l = many.clone();
            for name in &m.include {
                match one.get(name) {
                    Some(v) if !v.is_empty() => l.set(name.clone(), v.to_string()),
                    _ => {
                        l.remove(name);
                    }
                }
            }
            l
        }
    }
}

fn vector_vector(
    op: BinOp,
    return_bool: bool,
    m: &VectorMatching,
    l: &[Series],
    r: &[Series],
) -> Result<Vec<Series>, QueryError> {
    // The "one" side is the right one, unless group_right.
    let group_right = m.group_left == Some(false);
    let (many, one) = if group_right { (r, l) } else { (l, r) };
    let (many_steps, one_steps) = (by_step(many), by_step(one));
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for (t, many_at) in &many_steps {
        let Some(one_at) = one_steps.get(t) else { continue };
        let mut ones: HashMap<Labels, (usize, f64)> = HashMap::new();
        for (i, v) in one_at {
            let sig = signature(&one[*i].labels, m);
            if ones.insert(sig.clone(), (*i, *v)).is_some() {
                return Err(exec(format!(
                    "found duplicate series for the match group {sig} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                    if group_right { "left" } else { "right" }
                )));
            }
        }
        let mut seen: HashSet<Labels> = HashSet::new();
        for (i, v) in many_at {
            let sig = signature(&many[*i].labels, m);
            let Some((j, w)) = ones.get(&sig) else { continue };
            if m.group_left.is_none() && !seen.insert(sig.clone()) {
                return Err(exec(format!(
                    "multiple matches for labels {sig}: many-to-one matching must be explicit (group_left/group_right)"
                )));
            }
            let (a, b) = if group_right { (*w, *v) } else { (*v, *w) };
            let Some(value) = apply(op, a, b, return_bool) else {
                continue;
            };
            let labels = result_labels(&many[*i].labels, &one[*j].labels, m);
            let samples = out.entry(labels.clone()).or_default();
            if samples.last().is_some_and(|s| s.timestamp_ms == *t) {
                return Err(exec(format!(
                    "multiple matches for labels {labels}: grouping labels must ensure unique matches"
                )));
            }
            samples.push(Sample {
                timestamp_ms: *t,
                value,
            });
        }
    }
    Ok(collect(out))
}
