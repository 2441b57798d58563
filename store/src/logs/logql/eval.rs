//! Evaluation over the partitions: tantivy narrows (stream ids, whole tokens of `|=` filters),
//! Rust decides (every filter and stage on the stored line).

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RegexQuery, TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::{DocAddress, TantivyDocument, Term};
use tidewatch_model::{InstantSample, Labels, QueryError, QueryErrorKind, QueryValue, Sample, Series};

use super::binary::{self, Value};
use super::parse::{AggOp, FilterOp, Grouping, LabelMatcher, LogExpr, MatchOp, MetricExpr, RangeFn, Stage};
use super::pipeline::{self, LabelMap};
use crate::logs::index::{Fields, LONG_TOKEN, MAX_TOKEN, Partition, is_token_byte, schema, token_spans};

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

/// Segments whose dictionary has more terms than this are searched by a regex over the term
/// dictionary instead of being cached (memory stays bounded for high-cardinality logs).
const MAX_CACHED_TERMS: usize = 2_000_000;

/// The `line` terms of a segment joined by `\n` (with a leading one), cached in the partition.
fn segment_terms(
    p: &Partition,
    reader: &tantivy::SegmentReader,
    field: tantivy::schema::Field,
) -> Option<Arc<Vec<u8>>> {
    let id = reader.segment_id();
    if let Some(b) = p.term_cache.lock().unwrap().get(&id) {
        return Some(b.clone());
    }
    let inv = reader.inverted_index(field).ok()?;
    let dict = inv.terms();
    if dict.num_terms() > MAX_CACHED_TERMS {
        return None;
    }
    let mut buf = vec![b'\n'];
    let mut stream = dict.stream().ok()?;
    while stream.advance() {
        buf.extend_from_slice(stream.key());
        buf.push(b'\n');
    }
    let buf = Arc::new(buf);
    p.term_cache.lock().unwrap().insert(id, buf.clone());
    Some(buf)
}

/// The terms of `searcher`'s segments that contain `token` (at their start when
/// `left_bounded`, at their end when `right_bounded`), or `None` when a segment is too large
/// to cache. Forgets the cached terms of segments that are gone.
fn terms_containing(
    p: &Partition,
    searcher: &tantivy::Searcher,
    field: tantivy::schema::Field,
    token: &str,
    left_bounded: bool,
    right_bounded: bool,
) -> Option<Vec<String>> {
    let finder = memchr::memmem::Finder::new(token.as_bytes());
    let mut out = std::collections::BTreeSet::new();
    for reader in searcher.segment_readers() {
        let buf = segment_terms(p, reader, field)?;
        for pos in finder.find_iter(&buf) {
            let start = memchr::memrchr(b'\n', &buf[..pos]).map_or(0, |i| i + 1);
            let end = pos + memchr::memchr(b'\n', &buf[pos..]).unwrap_or(buf.len() - pos);
            if (left_bounded && start != pos) || (right_bounded && end != pos + token.len()) {
                continue;
            }
            if let Ok(t) = std::str::from_utf8(&buf[start..end]) {
                out.insert(t.to_string());
            }
        }
    }
    let live: std::collections::HashSet<_> = searcher.segment_readers().iter().map(|r| r.segment_id()).collect();
    p.term_cache.lock().unwrap().retain(|id, _| live.contains(id));
    Some(out.into_iter().collect())
}

/// The clauses that a line containing `value` must satisfy: each token of `value` (interior
/// tokens as terms; a token not bounded by separators in `value` through the terms that
/// contain it there, or the long-token term).
fn filter_clauses(fields: &Fields, value: &str, p: &Partition, searcher: &tantivy::Searcher) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    let b = value.as_bytes();
    let term = |t: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(fields.line, t),
            IndexRecordOption::Basic,
        ))
    };
    for (s, e) in token_spans(value) {
        if e - s > MAX_TOKEN {
            continue;
        }
        let left_bounded = s > 0 && !is_token_byte(b[s - 1]);
        let right_bounded = e < b.len() && !is_token_byte(b[e]);
        let token = value[s..e].to_ascii_lowercase();
        if left_bounded && right_bounded {
            out.push(term(&token));
            continue;
        }
        // Not bounded on a side: the line's token may extend past the filter's, so the
        // candidates are the terms that contain it there, or lines with a token too long to
        // be indexed.
        let short = match (left_bounded, right_bounded) {
            (true, _) => token.len() < 2,
            _ => token.len() < 3,
        };
        if short {
            continue;
        }
        let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, term(LONG_TOKEN))];
        match terms_containing(p, searcher, fields.line, &token, left_bounded, right_bounded) {
            Some(terms) => {
                if !terms.is_empty() {
                    either.push((
                        Occur::Should,
                        Box::new(TermSetQuery::new(
                            terms.iter().map(|t| Term::from_field_text(fields.line, t)),
                        )),
                    ));
                }
            }
            None => {
                let pattern = match (left_bounded, right_bounded) {
                    (true, _) => format!("{}.*", regex::escape(&token)),
                    (false, true) => format!(".*{}", regex::escape(&token)),
                    (false, false) => format!(".*{}.*", regex::escape(&token)),
                };
                match RegexQuery::from_pattern(&pattern, fields.line) {
                    Ok(q) => either.push((Occur::Should, Box::new(q))),
                    Err(_) => continue,
                }
            }
        }
        out.push(Box::new(BooleanQuery::new(either)));
    }
    out
}

/// The tantivy query that narrows candidates: the stream ids, and the tokens of each `|=`
/// filter (of each alternative of `|= "a" or "b"`, when every alternative has some).
/// `sids: None` when the selector takes every stream of the partition: then no stream clause
/// at all (a term set over every stream would decode every posting into a bitset).
fn narrow(
    fields: &Fields,
    sids: Option<&[u64]>,
    stages: &[Stage],
    p: &Partition,
    searcher: &tantivy::Searcher,
) -> Box<dyn Query> {
    let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    match sids {
        None => {}
        // A few streams: a lazy union, so a rare filter term drives the intersection by seeks.
        Some(sids) if sids.len() <= 32 => {
            let any: Vec<(Occur, Box<dyn Query>)> = sids
                .iter()
                .map(|s| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_u64(fields.sid, *s),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        Some(sids) => must.push((
            Occur::Must,
            Box::new(TermSetQuery::new(
                sids.iter().map(|s| Term::from_field_u64(fields.sid, *s)),
            )),
        )),
    }
    for stage in stages {
        let Stage::LineFilter {
            op: FilterOp::Contains,
            value,
            or,
            ..
        } = stage
        else {
            // Filters after a line_format see another line; parsers and label stages keep it.
            if matches!(stage, Stage::LineFormat(_)) {
                break;
            }
            continue;
        };
        if or.is_empty() {
            must.extend(
                filter_clauses(fields, value, p, searcher)
                    .into_iter()
                    .map(|q| (Occur::Must, q)),
            );
            continue;
        }
        let alternatives: Vec<Vec<Box<dyn Query>>> = std::iter::once(value)
            .chain(or.iter().map(|(v, _)| v))
            .map(|v| filter_clauses(fields, v, p, searcher))
            .collect();
        if alternatives.iter().any(|a| a.is_empty()) {
            continue;
        }
        let any: Vec<(Occur, Box<dyn Query>)> = alternatives
            .into_iter()
            .map(|a| {
                let all: Box<dyn Query> =
                    Box::new(BooleanQuery::new(a.into_iter().map(|q| (Occur::Must, q)).collect()));
                (Occur::Should, all)
            })
            .collect();
        must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    if must.is_empty() {
        return Box::new(AllQuery);
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

/// Calls `each` for every candidate of `p` in `[start, end)`, in (segment, doc) order, as
/// `searcher` (one generation of `p`: hits address its segments) sees them.
pub fn scan_partition(
    p: &Partition,
    searcher: &tantivy::Searcher,
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
    let every = streams.len() == p.streams.read().unwrap().by_id.len();
    let query = narrow(&fields, (!every).then_some(sids.as_slice()), &log.stages, p, searcher);
    let weight = query
        .weight(tantivy::query::EnableScoring::disabled_from_searcher(searcher))
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
            let searcher = p.reader.searcher();
            let streams = scan_partition(p, &searcher, log, start, end, &mut |h| {
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

/// The error when a metric query would read more than `max` lines (Loki's wording for its
/// `max_query_bytes_read`, in lines).
fn too_many_lines(max: usize) -> QueryError {
    QueryError::new(
        QueryErrorKind::Execution,
        format!(
            "the query would read too many lines (query: more than {max}, limit: {max}); consider adding more specific stream selectors or reduce the time range of the query (logs.limits.max_lines_per_metric_query)"
        ),
    )
}

fn collect_samples(
    parts: &[Arc<Partition>],
    log: &LogExpr,
    func: RangeFn,
    start: i64,
    end: i64,
    max_lines: usize,
) -> Result<Samples, QueryError> {
    let fields = schema().1;
    let bytes = matches!(func, RangeFn::Bytes | RangeFn::BytesRate);
    let plain_only = !needs_line(log) && log.unwrap.is_none();
    let mut out: Samples = HashMap::new();
    let mut seen = 0usize;
    for p in parts {
        // Memory is one (ts, value) per line read and nothing more: without a pipeline the
        // fast fields answer; with one, each line is read in (segment, doc) order (one block
        // decompression serves many lines) as the scan reaches it.
        let searcher = p.reader.searcher();
        let streams: HashMap<u64, Labels> = matching_streams(p, &log.matchers).into_iter().collect();
        let mut plain: HashMap<u64, Vec<(i64, f64)>> = HashMap::new();
        scan_partition(p, &searcher, log, start, end, &mut |h| {
            seen += 1;
            if seen > max_lines {
                return Err(too_many_lines(max_lines));
            }
            if plain_only {
                plain
                    .entry(h.sid)
                    .or_default()
                    .push((h.ts, if bytes { h.len as f64 } else { 1.0 }));
                return Ok(());
            }
            let Some(labels) = streams.get(&h.sid) else {
                return Ok(());
            };
            let mut line = line_of(&searcher, fields.line, &h)?;
            let len = line.len() as f64;
            let mut map = to_map(labels);
            if pipeline::run(&log.stages, &mut line, &mut map).is_none() {
                return Ok(());
            }
            let value = match &log.unwrap {
                Some((name, conv)) => match map.remove(name).and_then(|v| pipeline::convert(&v, *conv)) {
                    Some(v) => v,
                    None => return Ok(()),
                },
                None if bytes => len,
                None => 1.0,
            };
            out.entry(Labels::from(map)).or_default().push((h.ts, value));
            Ok(())
        })?;
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
/// A scalar expression gives one series without labels.
pub fn eval_metric(parts: &[Arc<Partition>], e: &MetricExpr, p: &MetricParams) -> Result<Vec<Series>, QueryError> {
    match eval_value(parts, e, p)? {
        Value::Vector(v) => Ok(v),
        Value::Scalar(x) => {
            let steps = ((p.end - p.start) / p.step + 1).max(0);
            Ok(vec![Series {
                labels: Labels::default(),
                samples: (0..steps)
                    .map(|i| Sample {
                        timestamp_ms: (p.start + i * p.step).div_euclid(1_000_000),
                        value: x,
                    })
                    .collect(),
            }])
        }
    }
}

fn eval_value(parts: &[Arc<Partition>], e: &MetricExpr, p: &MetricParams) -> Result<Value, QueryError> {
    match e {
        MetricExpr::Scalar(x) => Ok(Value::Scalar(*x)),
        MetricExpr::Binary {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
        } => {
            let l = eval_value(parts, lhs, p)?;
            let r = eval_value(parts, rhs, p)?;
            let v = binary::eval(*op, *return_bool, matching, l, r)?;
            if let Value::Vector(v) = &v {
                let points: usize = v.iter().map(|s| s.samples.len()).sum();
                if points > p.max_points {
                    return Err(exec(format!(
                        "the query returns more than {} points (logs.limits.max_points_per_query)",
                        p.max_points
                    )));
                }
            }
            Ok(v)
        }
        _ => eval_series(parts, e, p).map(Value::Vector),
    }
}

fn eval_series(parts: &[Arc<Partition>], e: &MetricExpr, p: &MetricParams) -> Result<Vec<Series>, QueryError> {
    let steps = ((p.end - p.start) / p.step + 1).max(0) as usize;
    match e {
        MetricExpr::Scalar(_) | MetricExpr::Binary { .. } => match eval_value(parts, e, p)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(_) => Err(QueryError::new(
                QueryErrorKind::BadData,
                "expected a vector (a range aggregation), found a scalar",
            )),
        },
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
            let inner = eval_series(parts, inner, p)?;
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
