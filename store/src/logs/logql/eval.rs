//! Evaluation over the partitions: tantivy narrows (stream ids, whole tokens of `|=` filters),
//! Rust decides (every filter and stage on the stored line).

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use tantivy::query::{BooleanQuery, Occur, Query, RegexQuery, TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, TantivyDocument, Term};
use tidewatch_model::{InstantSample, Labels, QueryError, QueryErrorKind, QueryValue, Sample, Series};

use super::parse::{AggOp, FilterOp, Grouping, LabelMatcher, LogExpr, MatchOp, MetricExpr, RangeFn, Stage};
use super::pipeline::{self, LabelMap};
use crate::logs::index::{Fields, MAX_TOKEN, Partition, is_token_byte, schema, token_spans};

fn exec(m: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::Execution, m)
}
fn internal(e: impl std::fmt::Display) -> QueryError {
    QueryError::new(QueryErrorKind::Internal, e.to_string())
}

/// The stream ids of `p` that the selector matches.
pub fn matching_streams(p: &Partition, matchers: &[LabelMatcher]) -> Vec<(u64, Labels)> {
    let streams = p.streams.read().unwrap();
    streams
        .by_id
        .iter()
        .filter(|(_, l)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
        .map(|(id, l)| (*id, l.clone()))
        .collect()
}

/// The tantivy query that narrows candidates: the stream ids, and for each `|=` filter its
/// tokens that must appear whole (interior tokens as terms, a last token after a separator as
/// a prefix).
fn narrow(fields: &Fields, sids: &[u64], stages: &[Stage]) -> Box<dyn Query> {
    let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(TermSetQuery::new(
            sids.iter().map(|s| Term::from_field_u64(fields.sid, *s)),
        )),
    )];
    for stage in stages {
        let Stage::LineFilter {
            op: FilterOp::Contains,
            value,
            ..
        } = stage
        else {
            // Filters after a line_format see another line; parsers and label stages keep it.
            if matches!(stage, Stage::LineFormat(_)) {
                break;
            }
            continue;
        };
        let b = value.as_bytes();
        for (s, e) in token_spans(value) {
            if e - s > MAX_TOKEN {
                continue;
            }
            let left_bounded = s > 0 && !is_token_byte(b[s - 1]);
            let right_bounded = e < b.len() && !is_token_byte(b[e]);
            let token = value[s..e].to_ascii_lowercase();
            if left_bounded && right_bounded {
                must.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(fields.line, &token),
                        IndexRecordOption::Basic,
                    )),
                ));
            } else if left_bounded && token.len() >= 2 {
                if let Ok(q) = RegexQuery::from_pattern(&format!("{}.*", regex::escape(&token)), fields.line) {
                    must.push((Occur::Must, Box::new(q)));
                }
            }
        }
    }
    Box::new(BooleanQuery::new(must))
}

/// One candidate line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    /// Nanoseconds.
    pub ts: i64,
    /// Segment and doc.
    pub seg: u32,
    /// Doc within the segment.
    pub doc: u32,
    /// Stream id.
    pub sid: u64,
    /// Line length.
    pub len: u64,
}

/// Calls `each` for every candidate of `p` in `[start, end)`.
pub fn scan_partition(
    p: &Partition,
    log: &LogExpr,
    start: i64,
    end: i64,
    each: &mut dyn FnMut(Hit) -> Result<(), QueryError>,
) -> Result<HashMap<u64, Labels>, QueryError> {
    let streams: HashMap<u64, Labels> = matching_streams(p, &log.matchers).into_iter().collect();
    if streams.is_empty() || end <= p.start_ns || start >= p.end_ns {
        return Ok(streams);
    }
    let fields = schema().1;
    let sids: Vec<u64> = streams.keys().copied().collect();
    let query = narrow(&fields, &sids, &log.stages);
    let searcher = p.reader.searcher();
    let weight = query
        .weight(tantivy::query::EnableScoring::disabled_from_searcher(&searcher))
        .map_err(internal)?;
    for (seg, reader) in searcher.segment_readers().iter().enumerate() {
        let ff = reader.fast_fields();
        let ts_col = ff.i64("ts").map_err(internal)?;
        if ts_col.max_value() < start || ts_col.min_value() >= end {
            continue;
        }
        let sid_col = ff.u64("sid").map_err(internal)?;
        let len_col = ff.u64("len").map_err(internal)?;
        let alive = reader.alive_bitset();
        let mut err = None;
        weight
            .for_each_no_score(reader, &mut |docs| {
                if err.is_some() {
                    return;
                }
                for &doc in docs {
                    if alive.is_some_and(|a| !a.is_alive(doc)) {
                        continue;
                    }
                    let ts = ts_col.first(doc).unwrap_or(i64::MIN);
                    if ts < start || ts >= end {
                        continue;
                    }
                    let hit = Hit {
                        ts,
                        seg: seg as u32,
                        doc,
                        sid: sid_col.first(doc).unwrap_or(0),
                        len: len_col.first(doc).unwrap_or(0),
                    };
                    if let Err(e) = each(hit) {
                        err = Some(e);
                        return;
                    }
                }
            })
            .map_err(internal)?;
        if let Some(e) = err {
            return Err(e);
        }
    }
    Ok(streams)
}

fn line_of(searcher: &tantivy::Searcher, line: tantivy::schema::Field, hit: &Hit) -> Result<String, QueryError> {
    let doc: TantivyDocument = searcher.doc(DocAddress::new(hit.seg, hit.doc)).map_err(internal)?;
    Ok(doc.get_first(line).and_then(|v| v.as_str()).unwrap_or("").to_string())
}

fn to_map(l: &Labels) -> LabelMap {
    l.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

fn needs_line(log: &LogExpr) -> bool {
    !log.stages.is_empty()
}

/// One line of a log query's answer.
pub struct Entry {
    /// Nanoseconds.
    pub ts: i64,
    /// Labels after the pipeline.
    pub labels: Labels,
    /// The line after the pipeline.
    pub line: String,
}

/// The newest (`backward`) or oldest `limit` lines in `[start, end)`.
pub fn select_logs(
    parts: &[Arc<Partition>],
    log: &LogExpr,
    start: i64,
    end: i64,
    limit: usize,
    backward: bool,
) -> Result<Vec<Entry>, QueryError> {
    let fields = schema().1;
    let mut out = Vec::new();
    let mut ordered: Vec<&Arc<Partition>> = parts.iter().collect();
    if backward {
        ordered.reverse();
    }
    for p in ordered {
        if out.len() >= limit {
            break;
        }
        // Pages of candidates, best first, so memory stays at `page` hits however many match.
        let page = (limit * 4).clamp(256, 100_000);
        let mut cursor: Option<(i64, u32, u32)> = None;
        loop {
            // Max-heap of the `page` best hits past the cursor ("best" = newest when backward).
            let key = |h: &Hit| {
                if backward {
                    (-h.ts, -(h.seg as i64), -(h.doc as i64))
                } else {
                    (h.ts, h.seg as i64, h.doc as i64)
                }
            };
            let mut heap: BinaryHeap<((i64, i64, i64), Hit)> = BinaryHeap::new();
            let cur_key = cursor.map(|(t, s, d)| {
                if backward {
                    (-t, -(s as i64), -(d as i64))
                } else {
                    (t, s as i64, d as i64)
                }
            });
            let streams = scan_partition(p, log, start, end, &mut |h| {
                let k = key(&h);
                if cur_key.is_some_and(|c| k <= c) {
                    return Ok(());
                }
                if heap.len() < page {
                    heap.push((k, h));
                } else if heap.peek().is_some_and(|top| k < top.0) {
                    heap.pop();
                    heap.push((k, h));
                }
                Ok(())
            })?;
            if heap.is_empty() {
                break;
            }
            let full = heap.len() == page;
            let hits: Vec<Hit> = heap.into_sorted_vec().into_iter().map(|(_, h)| h).collect();
            let searcher = p.reader.searcher();
            for h in &hits {
                cursor = Some((h.ts, h.seg, h.doc));
                let Some(labels) = streams.get(&h.sid) else { continue };
                let mut line = line_of(&searcher, fields.line, h)?;
                let mut map = to_map(labels);
                if pipeline::run(&log.stages, &mut line, &mut map).is_some() {
                    out.push(Entry {
                        ts: h.ts,
                        labels: Labels::from(map),
                        line,
                    });
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            if out.len() >= limit || !full {
                break;
            }
        }
    }
    Ok(out)
}

/// Samples per output series, before windowing.
type Samples = HashMap<Labels, Vec<(i64, f64)>>;

fn collect_samples(
    parts: &[Arc<Partition>],
    log: &LogExpr,
    func: RangeFn,
    start: i64,
    end: i64,
    max_lines: usize,
) -> Result<Samples, QueryError> {
    let fields = schema().1;
    let mut out: Samples = HashMap::new();
    let mut seen = 0usize;
    for p in parts {
        let mut hits = Vec::new();
        let streams = scan_partition(p, log, start, end, &mut |h| {
            seen += 1;
            if seen > max_lines {
                return Err(exec(format!(
                    "the query reads more than {max_lines} lines (logs.limits.max_lines_per_metric_query); narrow the selector or the range"
                )));
            }
            hits.push(h);
            Ok(())
        })?;
        hits.sort_unstable_by_key(|h| (h.seg, h.doc));
        let searcher = p.reader.searcher();
        let mut plain: HashMap<u64, Vec<(i64, f64)>> = HashMap::new();
        for h in &hits {
            let bytes = matches!(func, RangeFn::Bytes | RangeFn::BytesRate);
            if !needs_line(log) && log.unwrap.is_none() {
                plain
                    .entry(h.sid)
                    .or_default()
                    .push((h.ts, if bytes { h.len as f64 } else { 1.0 }));
                continue;
            }
            let Some(labels) = streams.get(&h.sid) else { continue };
            let mut line = line_of(&searcher, fields.line, h)?;
            let len = line.len() as f64;
            let mut map = to_map(labels);
            if pipeline::run(&log.stages, &mut line, &mut map).is_none() {
                continue;
            }
            let value = match &log.unwrap {
                Some((name, conv)) => {
                    let v = map.remove(name).and_then(|v| pipeline::convert(&v, *conv));
                    match v {
                        Some(v) => v,
                        None => continue,
                    }
                }
                None if bytes => len,
                None => 1.0,
            };
            out.entry(Labels::from(map)).or_default().push((h.ts, value));
        }
        for (sid, v) in plain {
            if let Some(l) = streams.get(&sid) {
                out.entry(l.clone()).or_default().extend(v);
            }
        }
    }
    for v in out.values_mut() {
        v.sort_unstable_by_key(|s| s.0);
    }
    Ok(out)
}

fn window_value(func: RangeFn, param: Option<f64>, w: &[(i64, f64)], range_ns: i64) -> Option<f64> {
    if w.is_empty() {
        return None;
    }
    let secs = range_ns as f64 / 1e9;
    let vals = || w.iter().map(|s| s.1);
    Some(match func {
        RangeFn::Count => w.len() as f64,
        RangeFn::Rate => w.len() as f64 / secs,
        RangeFn::Bytes | RangeFn::Sum => vals().sum(),
        RangeFn::BytesRate => vals().sum::<f64>() / secs,
        RangeFn::Absent => return None,
        RangeFn::Avg => vals().sum::<f64>() / w.len() as f64,
        RangeFn::Min => vals().fold(f64::INFINITY, f64::min),
        RangeFn::Max => vals().fold(f64::NEG_INFINITY, f64::max),
        RangeFn::First => w[0].1,
        RangeFn::Last => w[w.len() - 1].1,
        RangeFn::Quantile => {
            let mut v: Vec<f64> = vals().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            quantile(param.unwrap_or(0.5), &v)
        }
    })
}

/// Prometheus' quantile over sorted values (linear interpolation).
fn quantile(q: f64, sorted: &[f64]) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = sorted.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0) as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let w = rank - rank.floor();
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

/// Evaluation settings.
pub struct MetricParams {
    /// First step, ns.
    pub start: i64,
    /// Last step, ns (inclusive).
    pub end: i64,
    /// Step, ns (> 0).
    pub step: i64,
    /// Bound on lines read.
    pub max_lines: usize,
    /// Bound on output points.
    pub max_points: usize,
}

fn grouped(labels: &Labels, g: Option<&Grouping>) -> Labels {
    match g {
        None => Labels::default(),
        Some(g) if g.without => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| !g.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
        Some(g) => Labels::from_pairs(
            labels
                .iter()
                .filter(|l| g.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        ),
    }
}

/// Evaluates a metric expression at every step; a matrix (one sample per step per series).
pub fn eval_metric(parts: &[Arc<Partition>], e: &MetricExpr, p: &MetricParams) -> Result<Vec<Series>, QueryError> {
    let steps = ((p.end - p.start) / p.step + 1).max(0) as usize;
    match e {
        MetricExpr::Range {
            func,
            param,
            log,
            range_ns,
            offset_ns,
            grouping,
        } => {
            let lo = p.start - offset_ns - range_ns;
            let hi = p.end - offset_ns + 1;
            let samples = collect_samples(parts, log, *func, lo, hi, p.max_lines)?;
            let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
            let mut any_at = vec![false; steps];
            for (labels, v) in &samples {
                let key = if grouping.is_some() {
                    grouped(labels, grouping.as_ref())
                } else {
                    labels.clone()
                };
                let mut series = Vec::new();
                let (mut a, mut b) = (0usize, 0usize);
                for (i, any) in any_at.iter_mut().enumerate() {
                    let t = p.start + i as i64 * p.step - offset_ns;
                    while b < v.len() && v[b].0 <= t {
                        b += 1;
                    }
                    while a < b && v[a].0 <= t - range_ns {
                        a += 1;
                    }
                    if let Some(x) = window_value(*func, *param, &v[a..b], *range_ns) {
                        *any = true;
                        series.push(Sample {
                            timestamp_ms: (t + offset_ns).div_euclid(1_000_000),
                            value: x,
                        });
                    }
                }
                if !series.is_empty() {
                    if grouping.is_some() {
                        merge_grouped(out.entry(key).or_default(), series, *func);
                    } else {
                        out.insert(key, series);
                    }
                }
                if out.len().saturating_mul(steps) > p.max_points {
                    return Err(exec(format!(
                        "the query returns more than {} points (logs.limits.max_points_per_query)",
                        p.max_points
                    )));
                }
            }
            if *func == RangeFn::Absent {
                let labels = Labels::from_pairs(
                    log.matchers
                        .iter()
                        .filter(|m| m.op == MatchOp::Eq)
                        .map(|m| (m.name.clone(), m.value.clone())),
                );
                // absent_over_time counts the window; recompute presence with count semantics.
                let present = collect_presence(&samples, p, *range_ns, *offset_ns, steps);
                let s: Vec<Sample> = (0..steps)
                    .filter(|i| !present[*i])
                    .map(|i| Sample {
                        timestamp_ms: (p.start + i as i64 * p.step).div_euclid(1_000_000),
                        value: 1.0,
                    })
                    .collect();
                return Ok(if s.is_empty() {
                    vec![]
                } else {
                    vec![Series { labels, samples: s }]
                });
            }
            Ok(out
                .into_iter()
                .map(|(labels, samples)| Series { labels, samples })
                .collect())
        }
        MetricExpr::Agg {
            op,
            param,
            grouping,
            inner,
        } => {
            let inner = eval_metric(parts, inner, p)?;
            Ok(aggregate(*op, *param, grouping.as_ref(), inner))
        }
    }
}

fn collect_presence(samples: &Samples, p: &MetricParams, range_ns: i64, offset_ns: i64, steps: usize) -> Vec<bool> {
    let mut present = vec![false; steps];
    for v in samples.values() {
        for (i, pr) in present.iter_mut().enumerate() {
            let t = p.start + i as i64 * p.step - offset_ns;
            let lo = v.partition_point(|s| s.0 <= t - range_ns);
            if lo < v.len() && v[lo].0 <= t {
                *pr = true;
            }
        }
    }
    present
}

/// Merges an unwrapped range function's series into its group (sum, min, max; avg as sum).
fn merge_grouped(into: &mut Vec<Sample>, add: Vec<Sample>, func: RangeFn) {
    let mut map: BTreeMap<i64, f64> = into.iter().map(|s| (s.timestamp_ms, s.value)).collect();
    for s in add {
        map.entry(s.timestamp_ms)
            .and_modify(|v| {
                *v = match func {
                    RangeFn::Min => v.min(s.value),
                    RangeFn::Max => v.max(s.value),
                    _ => *v + s.value,
                }
            })
            .or_insert(s.value);
    }
    *into = map
        .into_iter()
        .map(|(timestamp_ms, value)| Sample { timestamp_ms, value })
        .collect();
}

fn aggregate(op: AggOp, param: Option<f64>, g: Option<&Grouping>, inner: Vec<Series>) -> Vec<Series> {
    // Per timestamp: the inner vector.
    let mut by_time: BTreeMap<i64, Vec<(usize, f64)>> = BTreeMap::new();
    for (i, s) in inner.iter().enumerate() {
        for x in &s.samples {
            by_time.entry(x.timestamp_ms).or_default().push((i, x.value));
        }
    }
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for (t, vec) in by_time {
        let mut groups: BTreeMap<Labels, Vec<(usize, f64)>> = BTreeMap::new();
        for (i, v) in vec {
            groups.entry(grouped(&inner[i].labels, g)).or_default().push((i, v));
        }
        for (key, members) in groups {
            let vals = members.iter().map(|m| m.1);
            let value = match op {
                AggOp::Sum => vals.sum(),
                AggOp::Avg => vals.sum::<f64>() / members.len() as f64,
                AggOp::Min => vals.fold(f64::INFINITY, f64::min),
                AggOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                AggOp::Count => members.len() as f64,
                AggOp::Topk | AggOp::Bottomk => {
                    let k = param.unwrap_or(1.0).max(0.0) as usize;
                    let mut m = members.clone();
                    m.sort_by(|a, b| {
                        if op == AggOp::Topk {
                            b.1.total_cmp(&a.1)
                        } else {
                            a.1.total_cmp(&b.1)
                        }
                    });
                    for (i, v) in m.into_iter().take(k) {
                        out.entry(inner[i].labels.clone()).or_default().push(Sample {
                            timestamp_ms: t,
                            value: v,
                        });
                    }
                    continue;
                }
            };
            out.entry(key).or_default().push(Sample { timestamp_ms: t, value });
        }
    }
    out.into_iter()
        .map(|(labels, samples)| Series { labels, samples })
        .collect()
}

/// A matrix at one step as a vector.
pub fn as_vector(m: Vec<Series>) -> QueryValue {
    QueryValue::Vector(
        m.into_iter()
            .filter_map(|s| {
                s.samples.last().copied().map(|sample| InstantSample {
                    labels: s.labels,
                    sample,
                })
            })
            .collect(),
    )
}
