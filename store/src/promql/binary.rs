//! Binary operators: arithmetic, comparison (filtering or `bool`), `atan2`, and the set
//! operators, with Prometheus' vector matching (`on`, `ignoring`, `group_left`, `group_right`).

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use tidewatch_model::Labels;

use super::EvalError;
use super::eval::Evaluator;
use super::value::{Grid, StepSeries, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, EvalError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(EvalError::BadData(format!("unknown binary operator {other:?}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn drops_name(self) -> bool {
        // Prometheus 2.x keeps the metric name for atan2.
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow)
    }

    /// The value and whether to keep the element (comparisons filter).
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

/// Accumulates output series across steps: the same label set at several steps is one series,
/// the same label set twice at one step is an error.
#[derive(Default)]
pub struct Output {
    index: HashMap<Labels, usize>,
    pub series: Vec<StepSeries>,
}

impl Output {
    /// The index of the output series with `labels`, created when new. Resolve it once per
    /// input series and use [`Output::set_at`] per step: hashing labels per step is the
    /// expensive part of an operator.
    pub fn index_of(&mut self, labels: &Labels, steps: usize) -> usize {
        match self.index.get(labels) {
            Some(&i) => i,
            None => {
                self.series.push(StepSeries {
                    labels: labels.clone(),
                    values: vec![None; steps],
                });
                self.index.insert(labels.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        }
    }

    pub fn set(&mut self, labels: &Labels, step: usize, steps: usize, v: f64) -> Result<(), EvalError> {
        let i = self.index_of(labels, steps);
        self.set_at(i, step, v)
    }

    pub fn set_at(&mut self, i: usize, step: usize, v: f64) -> Result<(), EvalError> {
        let slot = &mut self.series[i].values[step];
        if slot.is_some() {
            return Err(EvalError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        *slot = Some(v);
        Ok(())
    }
}

/// Merges series that ended up with the same labels (a function dropped the metric name): fine
/// when they never have a value at the same step, an error when they do, as in Prometheus.
pub fn merge(series: Vec<StepSeries>) -> Result<Vec<StepSeries>, EvalError> {
    let unique: std::collections::HashSet<&Labels> = series.iter().map(|s| &s.labels).collect();
    if unique.len() == series.len() {
        return Ok(series);
    }
    let mut out = Output::default();
    let n = series.first().map_or(0, |s| s.values.len());
    for s in &series {
        let idx = out.index_of(&s.labels, n);
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                out.set_at(idx, i, *v)?;
            }
        }
    }
    Ok(out.series)
}

pub fn eval(ev: &mut Evaluator, b: &BinaryExpr, grid: &Grid) -> Result<Value, EvalError> {
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, grid)?;
    let rhs = ev.eval(&b.rhs, grid)?;
    let n = grid.len();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&l, &r)| {
                    let (v, keep) = op.apply(l, r);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(merge(vector_scalar(op, v, &s, false, return_bool))?)),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(merge(vector_scalar(op, v, &s, true, return_bool))?)),
        (Value::Vector(l), Value::Vector(r)) => {
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            match op {
                Op::And | Op::Or | Op::Unless => Ok(Value::Vector(set_op(op, l, r, matching.as_ref(), n))),
                _ => vector_vector(ev, op, l, r, card, matching.as_ref(), return_bool, n).map(Value::Vector),
            }
        }
        (l, r) => Err(EvalError::BadData(format!(
            "binary operator between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(op: Op, v: Vec<StepSeries>, s: &[f64], scalar_left: bool, return_bool: bool) -> Vec<StepSeries> {
    v.into_iter()
        .filter_map(|mut series| {
            if op.drops_name() || return_bool {
                series.labels.remove("__name__");
            }
            let mut any = false;
            for (i, slot) in series.values.iter_mut().enumerate() {
                let Some(x) = *slot else { continue };
                let (l, r) = if scalar_left { (s[i], x) } else { (x, s[i]) };
                let (mut value, keep) = op.apply(l, r);
                // A comparison keeps the vector's value even when the scalar is on the left.
                if op.is_comparison() && scalar_left {
                    value = x;
                }
                *slot = if return_bool {
                    Some(if keep { 1.0 } else { 0.0 })
                } else if keep {
                    Some(value)
                } else {
                    None
                };
                any |= slot.is_some();
            }
            any.then_some(series)
        })
        .collect()
}

/// The matching signature of a label set.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(on)) => on
            .labels
            .iter()
            .map(|n| (n.clone(), labels.get(n).unwrap_or("").to_string()))
            .collect(),
        Some(LabelModifier::Exclude(ignoring)) => labels
            .iter()
            .filter(|l| l.name != "__name__" && !ignoring.labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
        None => labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
    }
}

/// Gives each distinct signature a small number.
fn group_ids(sides: [&[StepSeries]; 2], matching: Option<&LabelModifier>) -> (Vec<Vec<usize>>, usize) {
    let mut ids: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut out = Vec::new();
    for side in sides {
        out.push(
            side.iter()
                .map(|s| {
                    let n = ids.len();
                    *ids.entry(signature(&s.labels, matching)).or_insert(n)
                })
                .collect(),
        );
    }
    (out, ids.len())
}

fn set_op(
    op: Op,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    matching: Option<&LabelModifier>,
    n: usize,
) -> Vec<StepSeries> {
    let (ids, groups) = group_ids([&l, &r], matching);
    let mut out_l: Vec<StepSeries> = l
        .iter()
        .map(|s| StepSeries {
            labels: s.labels.clone(),
            values: vec![None; n],
        })
        .collect();
    let mut out_r: Vec<StepSeries> = r
        .iter()
        .map(|s| StepSeries {
            labels: s.labels.clone(),
            values: vec![None; n],
        })
        .collect();
    let mut present = vec![false; groups];
    for step in 0..n {
        present.iter_mut().for_each(|p| *p = false);
        let (other, other_ids) = if op == Op::Or { (&l, &ids[0]) } else { (&r, &ids[1]) };
        for (s, &g) in other.iter().zip(other_ids) {
            if s.values[step].is_some() {
                present[g] = true;
            }
        }
        for (i, s) in l.iter().enumerate() {
            let Some(v) = s.values[step] else { continue };
            let keep = match op {
                Op::And => present[ids[0][i]],
                Op::Unless => !present[ids[0][i]],
                _ => true,
            };
            if keep {
                out_l[i].values[step] = Some(v);
            }
        }
        if op == Op::Or {
            for (i, s) in r.iter().enumerate() {
                if let Some(v) = s.values[step] {
                    if !present[ids[1][i]] {
                        out_r[i].values[step] = Some(v);
                    }
                }
            }
        }
    }
    let mut out: Vec<StepSeries> = out_l
        .into_iter()
        .chain(out_r)
        .filter(|s| s.values.iter().any(Option::is_some))
        .collect();
    // A series on both sides of `or` with the same labels is one series.
    let mut merged: HashMap<Labels, usize> = HashMap::new();
    let mut result: Vec<StepSeries> = Vec::new();
    for s in out.drain(..) {
        match merged.get(&s.labels) {
            Some(&i) => {
                for (a, b) in result[i].values.iter_mut().zip(s.values) {
                    if a.is_none() {
                        *a = b;
                    }
                }
            }
            None => {
                merged.insert(s.labels.clone(), result.len());
                result.push(s);
            }
        }
    }
    result
}

fn group_text(labels: &Labels, matching: Option<&LabelModifier>) -> String {
    let sig = signature(labels, matching);
    Labels::from_pairs(sig).to_string()
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator,
    op: Op,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    card: VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    return_bool: bool,
    n: usize,
) -> Result<Vec<StepSeries>, EvalError> {
    // group_right is group_left with the sides swapped (the operation keeps its order).
    let (one_side_right, include, lhs, rhs) = match &card {
        VectorMatchCardinality::OneToMany(inc) => (false, Some(inc.labels.clone()), r, l),
        VectorMatchCardinality::ManyToOne(inc) => (true, Some(inc.labels.clone()), l, r),
        _ => (true, None, l, r),
    };
    let swapped = !one_side_right;
    let one_to_one = include.is_none();
    let (ids, groups) = group_ids([&lhs, &rhs], matching);
    let mut out = Output::default();
    let mut index_cache: HashMap<(usize, usize), usize> = HashMap::new();
    let mut rhs_at: Vec<Option<usize>> = vec![None; groups];
    let mut lhs_seen: Vec<bool> = vec![false; groups];
    for step in 0..n {
        if step % 64 == 0 {
            ev.check()?;
        }
        rhs_at.iter_mut().for_each(|x| *x = None);
        lhs_seen.iter_mut().for_each(|x| *x = false);
        for (j, s) in rhs.iter().enumerate() {
            if s.values[step].is_none() {
                continue;
            }
            let g = ids[1][j];
            if rhs_at[g].is_some() {
                let side = if swapped { "left" } else { "right" };
                return Err(EvalError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    group_text(&s.labels, matching),
                    rhs[rhs_at[g].unwrap_or(j)].labels,
                    s.labels
                )));
            }
            rhs_at[g] = Some(j);
        }
        for (i, s) in lhs.iter().enumerate() {
            let Some(lv) = s.values[step] else { continue };
            let g = ids[0][i];
            let Some(j) = rhs_at[g] else { continue };
            if one_to_one {
                if lhs_seen[g] {
                    return Err(EvalError::Execution(format!(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    )));
                }
                lhs_seen[g] = true;
            }
            let Some(rv) = rhs[j].values[step] else { continue };
            let (a, b) = if swapped { (rv, lv) } else { (lv, rv) };
            let (value, keep) = op.apply(a, b);
            let value = if return_bool {
                if keep { 1.0 } else { 0.0 }
            } else if keep {
                // A filtering comparison keeps the left-hand side's value.
                if op.is_comparison() && swapped { rv } else { value }
            } else {
                continue;
            };
            let idx = match index_cache.get(&(i, j)) {
                Some(&idx) => idx,
                None => {
                    let labels =
                        result_labels(&s.labels, &rhs[j].labels, op, matching, include.as_deref(), return_bool);
                    let idx = out.index_of(&labels, n);
                    index_cache.insert((i, j), idx);
                    idx
                }
            };
            out.set_at(idx, step, value)?;
        }
    }
    Ok(out.series)
}

fn result_labels(
    lhs: &Labels,
    rhs: &Labels,
    op: Op,
    matching: Option<&LabelModifier>,
    include: Option<&[String]>,
    return_bool: bool,
) -> Labels {
    let mut out = lhs.clone();
    if op.drops_name() || return_bool {
        out.remove("__name__");
    }
    match include {
        None => match matching {
            Some(LabelModifier::Include(on)) => {
                out = Labels::from_pairs(
                    out.iter()
                        .filter(|l| on.labels.contains(&l.name))
                        .map(|l| (l.name.clone(), l.value.clone())),
                );
            }
            Some(LabelModifier::Exclude(ignoring)) => {
                for n in &ignoring.labels {
                    out.remove(n);
                }
            }
            None => {}
        },
        Some(include) => {
            for name in include {
                match rhs.get(name) {
                    Some(v) => out.set(name.clone(), v.to_string()),
                    None => {
                        out.remove(name);
                    }
                }
            }
        }
    }
    out
}
