//! The script language of Prometheus' PromQL engine tests (`promql/testdata/*.test` in v2.x,
//! `promql/promqltest/testdata/*.test` in 3.x), parsed as Prometheus' own `test.go` does.
//!
//! Line handling follows `getLines`: every line is trimmed, a line starting with `#` becomes empty,
//! and an empty line ends the block of the command above it. Commands: `clear`, `load <interval>`
//! (3.x also `load_with_nhcb`), `eval[_fail|_ordered|_warn|_info] instant at <dur> <expr>`,
//! `eval[_fail|_warn|_info] range from <dur> to <dur> step <dur> <expr>`, with the 3.x `expect ...`,
//! `expected_fail_message` and `expected_fail_regexp` lines. The expression itself is not parsed
//! here: the server under test parses it, and a parse error there is an error answer like any other.
//!
//! Native histograms (`{{...}}` values, `load_with_nhcb`) are recognised but not decoded: a series
//! holding one is marked as such, and the runner skips the cases that depend on it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Bit pattern of Prometheus' staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A label set, sorted by name; `__name__` is an ordinary entry. Empty values are never stored:
/// Prometheus treats `a=""` as the absence of `a`.
pub type Labels = BTreeMap<String, String>;

/// A script that could not be parsed: which file, which line (1-based), what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file name as given to [`parse_script`].
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One position of an expanded value sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this position.
    Omitted,
    /// A float sample (NaN, ±Inf and the stale marker included).
    Float(f64),
    /// A native histogram `{{...}}` (not decoded).
    Histogram,
}

/// A parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file name, for messages.
    pub file: String,
    /// The commands in file order.
    pub commands: Vec<Command>,
}

/// One command of a script.
#[derive(Debug, Clone)]
pub enum Command {
    /// `clear`: drop all data.
    Clear {
        /// 1-based line.
        line: usize,
    },
    /// `load <interval>` and its series.
    Load(Load),
    /// `eval ...` and its expectations.
    Eval(Box<Eval>),
}

/// `load <interval>`: point `i` of every series is at `i * interval` ms after the Unix epoch.
#[derive(Debug, Clone)]
pub struct Load {
    /// 1-based line of the `load` command.
    pub line: usize,
    /// Milliseconds between points.
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also loaded as native histograms with custom buckets.
    pub with_nhcb: bool,
    /// The series, in file order (a later definition of the same labels replaces an earlier one).
    pub series: Vec<SeriesDef>,
}

/// One series line of a `load`.
#[derive(Debug, Clone)]
pub struct SeriesDef {
    /// 1-based line.
    pub line: usize,
    /// The labels, `__name__` included.
    pub labels: Labels,
    /// The expanded values, one per interval.
    pub values: Vec<SeqValue>,
}

impl SeriesDef {
    /// Whether any point is a native histogram.
    pub fn has_histogram(&self) -> bool {
        self.values.iter().any(|v| matches!(v, SeqValue::Histogram))
    }

    /// The float samples as `(timestamp_ms, value)`, in time order; omitted points and histograms
    /// are left out.
    pub fn float_samples(&self, interval_ms: i64) -> Vec<(i64, f64)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                SeqValue::Float(f) => Some((i as i64 * interval_ms, *f)),
                _ => None,
            })
            .collect()
    }
}

/// When an eval runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalTime {
    /// `eval instant at <dur>`.
    Instant {
        /// Evaluation time, ms since the epoch.
        at_ms: i64,
    },
    /// `eval range from <a> to <b> step <s>`.
    Range {
        /// Start, ms.
        start_ms: i64,
        /// End, ms.
        end_ms: i64,
        /// Step, ms.
        step_ms: i64,
    },
}

/// An expected error or annotation text: exact message or regular expression.
#[derive(Debug, Clone)]
pub enum TextMatch {
    /// `msg:` / `expected_fail_message`: the whole text.
    Message(String),
    /// `regex:` / `expected_fail_regexp`: an unanchored match, as Go's `MatchString`.
    Regex(Regex),
    /// No text given: anything matches.
    Any,
}

impl fmt::Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextMatch::Message(m) => write!(f, "message {m:?}"),
            TextMatch::Regex(r) => write!(f, "pattern {:?}", r.as_str()),
            TextMatch::Any => write!(f, "anything"),
        }
    }
}

/// One expected series of an eval: its labels, its values (one for an instant query, one per step
/// for a range) and its 1-based position among the expectation lines (for ordered evals).
#[derive(Debug, Clone)]
pub struct ExpectedSeries {
    /// Labels, `__name__` included when present.
    pub labels: Labels,
    /// Expanded values.
    pub values: Vec<SeqValue>,
    /// Position as counted by Prometheus' parser (expectation lines, `expect` lines not counted).
    pub pos: usize,
}

/// An `eval` command and all that it expects.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line of the `eval` command.
    pub line: usize,
    /// The PromQL expression, as written.
    pub expr: String,
    /// When it runs.
    pub time: EvalTime,
    /// `eval_fail` or `expect fail`: the query must fail.
    pub fail: bool,
    /// `eval_ordered` or `expect ordered`: vector order must match the expectation lines.
    pub ordered: bool,
    /// `eval_warn`: at least one warning expected.
    pub warn: bool,
    /// `eval_info`: at least one info annotation expected.
    pub info: bool,
    /// What the error must say (`expected_fail_message`, `expected_fail_regexp`, `expect fail ...`).
    pub fail_matches: Vec<TextMatch>,
    /// `expect warn ...` lines.
    pub expect_warn: Vec<TextMatch>,
    /// `expect info ...` lines.
    pub expect_info: Vec<TextMatch>,
    /// `expect no_warn`.
    pub expect_no_warn: bool,
    /// `expect no_info`.
    pub expect_no_info: bool,
    /// `expect range vector from <a> to <b> step <s>`: an instant query answering a range vector,
    /// whose points are expected at these times.
    pub range_vector: Option<(i64, i64, i64)>,
    /// A bare number line: a scalar result is expected.
    pub expect_scalar: Option<f64>,
    /// `expect string "..."`: a string result is expected.
    pub expect_string: Option<String>,
    /// Expected series (empty with no scalar and no string: an empty vector or matrix).
    pub expected: Vec<ExpectedSeries>,
    /// Set by `expect range vector` and `expect string`: no range-mode re-run of an instant query.
    pub exclude_from_range_query: bool,
    /// Some expected value is a native histogram.
    pub expects_histogram: bool,
}

impl Eval {
    /// Whether this is an instant evaluation.
    pub fn is_instant(&self) -> bool {
        matches!(self.time, EvalTime::Instant { .. })
    }
}

static PAT_LOAD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap());
static PAT_EVAL_INSTANT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$").unwrap());
static PAT_EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$").unwrap()
});
static PAT_EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$").unwrap()
});
static PAT_EXPECT_RANGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap());
static PAT_DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$").unwrap()
});

/// Parses a Prometheus duration (`model.ParseDuration`): `0`, or units in the order
/// y, w, d, h, m, s, ms, e.g. `5m`, `1h30m`, `10s53ms`. Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".to_string()),
        _ => {}
    }
    let caps = PAT_DURATION
        .captures(s)
        .ok_or_else(|| format!("not a valid duration string: {s:?}"))?;
    const UNITS: [(usize, i64); 7] = [
        (2, 365 * 24 * 3_600_000),
        (4, 7 * 24 * 3_600_000),
        (6, 24 * 3_600_000),
        (8, 3_600_000),
        (10, 60_000),
        (12, 1_000),
        (14, 1),
    ];
    let mut total: i64 = 0;
    for (group, unit) in UNITS {
        if let Some(m) = caps.get(group) {
            let n: i64 = m
                .as_str()
                .parse()
                .map_err(|_| format!("duration out of range: {s:?}"))?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("duration out of range: {s:?}"))?;
        }
    }
    Ok(total)
}

/// Parses a number as Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat(s, 64)` do in
/// Prometheus' `parseNumber`: decimal, `0x`/`0o`/`0b`/leading-zero octal integers, floats,
/// `Inf`/`+Inf`/`-Inf`/`NaN` in any case.
pub fn parse_number(s: &str) -> Result<f64, String> {
    if let Some(i) = parse_go_int(s) {
        return Ok(i as f64);
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    // Rust accepts "inf", "infinity" and "nan" case-insensitively, like Go; it rejects hex floats,
    // which no script uses, and Go rejects nothing Rust accepts here except a leading '+' before
    // "nan", which no script writes either.
    let ok_chars = !body.is_empty()
        && (body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
            || ["inf", "infinity", "nan"].contains(&body.to_ascii_lowercase().as_str()));
    if ok_chars && let Ok(f) = s.parse::<f64>() {
        return Ok(f);
    }
    Err(format!("error parsing number: {s:?}"))
}

/// Go's `strconv.ParseInt(s, 0, 64)` (underscores aside).
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let value = if neg { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

/// Parses one float of a value sequence: decimal with optional sign and exponent, `Inf`, `NaN`.
fn parse_seq_float(s: &str) -> Result<f64, String> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let valid = if lower == "inf" || lower == "nan" {
        true
    } else {
        let mut chars = body.chars().peekable();
        let mut digits = 0;
        let mut seen_dot = false;
        let mut ok = true;
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() {
                digits += 1;
            } else if c == '.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            chars.next();
        }
        if digits == 0 {
            ok = false;
        }
        if matches!(chars.peek(), Some('e' | 'E')) {
            chars.next();
            if matches!(chars.peek(), Some('+' | '-')) {
                chars.next();
            }
            if !chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                ok = false;
            }
            while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                chars.next();
            }
        }
        ok && chars.next().is_none()
    };
    if !valid {
        return Err(format!("invalid number {s:?} in value sequence"));
    }
    match lower.as_str() {
        "inf" if s.starts_with('-') => Ok(f64::NEG_INFINITY),
        "inf" => Ok(f64::INFINITY),
        "nan" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("invalid number {s:?}: {e}")),
    }
}

/// Expands one item of a value sequence: `_`, `_xN` (N blanks), `stale`, `a`, `axN` (N+1 times a),
/// `a+bxN` / `a-bxN` (N+1 values, adding b each time, accumulated in floating point as Prometheus'
/// parser does).
pub fn expand_item(item: &str) -> Result<Vec<SeqValue>, String> {
    if item == "_" {
        return Ok(vec![SeqValue::Omitted]);
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: u64 = n.parse().map_err(|_| format!("invalid repetition in {item:?}"))?;
        return Ok(vec![SeqValue::Omitted; n as usize]);
    }
    if item == "stale" {
        return Ok(vec![SeqValue::Float(f64::from_bits(STALE_NAN_BITS))]);
    }
    let (body, times) = match item.rfind('x') {
        Some(p) => {
            let n: u64 = item[p + 1..]
                .parse()
                .map_err(|_| format!("invalid repetition in {item:?}"))?;
            (&item[..p], Some(n))
        }
        None => (item, None),
    };
    // Split "a+b" / "a-b" at the first sign that is neither leading nor an exponent sign.
    let bytes = body.as_bytes();
    let split = (1..bytes.len()).find(|&i| {
        matches!(bytes[i], b'+' | b'-')
            && !(i >= 2
                && matches!(bytes[i - 1], b'e' | b'E')
                && (bytes[i - 2].is_ascii_digit() || bytes[i - 2] == b'.'))
    });
    let (base, incr) = match split {
        Some(i) => (parse_seq_float(&body[..i])?, Some(parse_seq_float(&body[i..])?)),
        None => (parse_seq_float(body)?, None),
    };
    match (times, incr) {
        (None, None) => Ok(vec![SeqValue::Float(base)]),
        (None, Some(_)) => Err(format!("{item:?}: an increment needs a repetition count (a+bxN)")),
        (Some(n), None) => Ok(vec![SeqValue::Float(base); n as usize + 1]),
        (Some(n), Some(step)) => {
            let mut out = Vec::with_capacity(n as usize + 1);
            let mut v = base;
            for _ in 0..=n {
                out.push(SeqValue::Float(v));
                v += step;
            }
            Ok(out)
        }
    }
}

/// Expands a whole value sequence (the part of a series line after the labels).
pub fn expand_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // A native histogram, possibly with `+{{...}}xN` / `xN`: not decoded. Count one point
            // per item (the repetition count, if any, is honoured so positions stay right).
            let end = rest.find("}}").ok_or("unterminated native histogram {{...")? + 2;
            let mut item_end = end;
            // Consume a `+{{...}}` / `-{{...}}` increment and an `xN` suffix.
            let tail = &rest[item_end..];
            if (tail.starts_with("+{{") || tail.starts_with("-{{"))
                && let Some(e) = tail.find("}}")
            {
                item_end += e + 2;
            }
            let tail = &rest[item_end..];
            let mut repeat = 1usize;
            if let Some(t) = tail.strip_prefix('x') {
                let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() {
                    repeat = digits.parse::<usize>().map_err(|e| e.to_string())? + 1;
                    item_end += 1 + digits.len();
                }
            }
            out.extend(std::iter::repeat_n(SeqValue::Histogram, repeat));
            rest = rest[item_end..].trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.extend(expand_item(&rest[..end])?);
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

/// Parses a series description `metric{label="value", ...} <values>` (also `{__name__="m"}`,
/// `{}`, 3.x quoted names `{"metric.name", "label.name"="v"}`, `'single'` and `` `raw` `` quotes,
/// Go escapes). Returns the labels (empty values dropped) and the expanded values.
pub fn parse_series_desc(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let (labels, rest) = parse_series_labels(line)?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(format!("unexpected {:?} after the series labels", rest));
    }
    Ok((labels, expand_values(rest)?))
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses the labels at the start of `s`; returns them and what follows.
pub fn parse_series_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.trim_start();
    let mut name: Option<String> = None;
    if rest.starts_with(is_name_start) {
        let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
        name = Some(rest[..end].to_string());
        rest = &rest[end..];
    }
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let label_name;
            if rest.starts_with(['"', '\'', '`']) {
                let (text, r) = take_quoted(rest)?;
                rest = r.trim_start();
                if !rest.starts_with('=') {
                    // A bare quoted string is the metric name (3.x UTF-8 syntax).
                    if name.is_some() {
                        return Err("metric name given twice".to_string());
                    }
                    name = Some(text);
                    rest = expect_comma_or_close(rest)?;
                    continue;
                }
                label_name = text;
            } else if rest.starts_with(is_name_start) {
                let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
                label_name = rest[..end].to_string();
                rest = rest[end..].trim_start();
            } else {
                return Err(format!(
                    "unexpected {:?} in label set",
                    rest.chars().next().unwrap_or(' ')
                ));
            }
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected '=' after label name {label_name:?}"))?
                .trim_start();
            if !rest.starts_with(['"', '\'', '`']) {
                return Err(format!("expected a quoted value for label {label_name:?}"));
            }
            let (value, r) = take_quoted(rest)?;
            rest = r.trim_start();
            if !seen.insert(label_name.clone()) {
                return Err(format!("label {label_name:?} given twice"));
            }
            if label_name == "__name__" {
                if name.is_some() {
                    return Err("metric name given twice".to_string());
                }
                name = Some(value);
            } else if !value.is_empty() {
                labels.insert(label_name, value);
            }
            rest = expect_comma_or_close(rest)?;
        }
    } else if name.is_none() {
        return Err("expected a metric name or '{'".to_string());
    }
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        labels.insert("__name__".to_string(), n);
    }
    Ok((labels, rest))
}

fn expect_comma_or_close(rest: &str) -> Result<&str, String> {
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix(',') {
        Ok(r)
    } else if rest.starts_with('}') {
        Ok(rest)
    } else {
        Err(format!(
            "expected ',' or '}}' in label set, found {:?}",
            rest.chars().next().unwrap_or(' ')
        ))
    }
}

/// Takes a quoted string (`"..."`, `'...'` with Go escapes, `` `raw` ``) from the start of `s`.
pub fn take_quoted(s: &str) -> Result<(String, &str), String> {
    let quote = s.chars().next().ok_or("expected a string")?;
    let body = &s[1..];
    if quote == '`' {
        let end = body.find('`').ok_or("unterminated raw string")?;
        return Ok((body[..end].to_string(), &body[end + 1..]));
    }
    let mut out: Vec<u8> = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b as char == quote {
            let text = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            return Ok((text, &body[i + 1..]));
        }
        if b == b'\n' {
            break;
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *bytes.get(i + 1).ok_or("unterminated escape")?;
        i += 2;
        match esc {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'\'' | b'"' => out.push(esc),
            b'x' => {
                let hex = body.get(i..i + 2).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape \\x{hex}"))?);
                i += 2;
            }
            b'0'..=b'7' => {
                let oct = body.get(i - 1..i + 2).ok_or("short octal escape")?;
                out.push(u8::from_str_radix(oct, 8).map_err(|_| format!("bad escape \\{oct}"))?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if esc == b'u' { 4 } else { 8 };
                let hex = body.get(i..i + n).ok_or("short unicode escape")?;
                let cp = u32::from_str_radix(hex, 16).map_err(|_| format!("bad escape \\u{hex}"))?;
                let c = char::from_u32(cp).ok_or_else(|| format!("bad code point {hex}"))?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Err("unterminated string".to_string())
}

/// Splits a script into trimmed lines, comments blanked (Prometheus' `getLines`).
fn get_lines(input: &str) -> Vec<&str> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect()
}

/// Parses a whole script. `file` only names the script in errors.
pub fn parse_script(file: &str, input: &str) -> Result<Script, ParseError> {
    let lines = get_lines(input);
    let err = |i: usize, message: String| ParseError {
        file: file.to_string(),
        line: i + 1,
        message,
    };
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l.split([' ', '\t']).next().unwrap_or("").to_ascii_lowercase();
        if word == "clear" {
            commands.push(Command::Clear { line: i + 1 });
        } else if word.starts_with("load") {
            let (next, load) = parse_load(&lines, i).map_err(|(at, m)| err(at, m))?;
            commands.push(Command::Load(load));
            i = next;
        } else if word.starts_with("eval") {
            let (next, eval) = parse_eval(&lines, i).map_err(|(at, m)| err(at, m))?;
            commands.push(Command::Eval(Box::new(eval)));
            i = next;
        } else {
            return Err(err(i, format!("invalid command {l:?}")));
        }
        i += 1;
    }
    Ok(Script {
        file: file.to_string(),
        commands,
    })
}

type LineResult<T> = Result<T, (usize, String)>;

fn parse_load(lines: &[&str], mut i: usize) -> LineResult<(usize, Load)> {
    let caps = PAT_LOAD.captures(lines[i]).ok_or((
        i,
        "invalid load command. (load[_with_nhcb] <step:duration>)".to_string(),
    ))?;
    let step = caps.get(2).map_or("", |m| m.as_str());
    let interval_ms = parse_duration(step).map_err(|e| (i, format!("invalid step definition {step:?}: {e}")))?;
    let mut load = Load {
        line: i + 1,
        interval_ms,
        with_nhcb: caps.get(1).is_some(),
        series: Vec::new(),
    };
    while i + 1 < lines.len() {
        i += 1;
        if lines[i].is_empty() {
            i -= 1;
            break;
        }
        let (labels, values) = parse_series_desc(lines[i]).map_err(|e| (i, e))?;
        load.series.push(SeriesDef {
            line: i + 1,
            labels,
            values,
        });
    }
    Ok((i, load))
}

fn parse_text_match(kind: Option<&str>, text: Option<&str>, mode: &str) -> Result<TextMatch, String> {
    match (kind, text) {
        (Some("msg"), Some(t)) => Ok(TextMatch::Message(t.trim().to_string())),
        (Some("regex"), Some(t)) => Regex::new(t.trim())
            .map(TextMatch::Regex)
            .map_err(|_| format!("invalid regex {} for {mode}", t.trim())),
        (Some(other), _) => Err(format!("invalid token {other} after {mode}")),
        (None, _) => Ok(TextMatch::Any),
    }
}

fn parse_eval(lines: &[&str], mut i: usize) -> LineResult<(usize, Eval)> {
    let line = lines[i];
    let instant = PAT_EVAL_INSTANT.captures(line);
    let range = PAT_EVAL_RANGE.captures(line);
    let (modifier, expr, time) = if let Some(c) = &instant {
        let at = c.get(2).map_or("", |m| m.as_str());
        let at_ms = parse_duration(at).map_err(|e| (i, format!("invalid timestamp definition {at:?}: {e}")))?;
        (
            c.get(1).map(|m| m.as_str()),
            c[3].to_string(),
            EvalTime::Instant { at_ms },
        )
    } else if let Some(c) = &range {
        let (start_ms, end_ms, step_ms) = parse_range_durations(&c[2], &c[3], &c[4]).map_err(|e| (i, e))?;
        (
            c.get(1).map(|m| m.as_str()),
            c[5].to_string(),
            EvalTime::Range {
                start_ms,
                end_ms,
                step_ms,
            },
        )
    } else {
        return Err((
            i,
            "invalid evaluation command. Must be either 'eval[_fail|_warn|_info|_ordered] instant [at <offset:duration>] \
             <query>' or 'eval[_fail|_warn|_info] range from <from> to <to> step <step> <query>'"
                .to_string(),
        ));
    };
    let mut eval = Eval {
        line: i + 1,
        expr,
        time,
        fail: modifier == Some("fail"),
        ordered: modifier == Some("ordered"),
        warn: modifier == Some("warn"),
        info: modifier == Some("info"),
        fail_matches: Vec::new(),
        expect_warn: Vec::new(),
        expect_info: Vec::new(),
        expect_no_warn: false,
        expect_no_info: false,
        range_vector: None,
        expect_scalar: None,
        expect_string: None,
        expected: Vec::new(),
        exclude_from_range_query: false,
        expects_histogram: false,
    };
    let mut j: usize = 1;
    let mut expect_fail_lines = 0;
    while i + 1 < lines.len() {
        i += 1;
        let def = lines[i];
        if def.is_empty() {
            i -= 1;
            break;
        }
        if eval.fail
            && let Some(rest) = def.strip_prefix("expected_fail_message")
        {
            let msg = rest.trim().to_string();
            eval.fail_matches.push(TextMatch::Message(msg));
            break;
        }
        if eval.fail
            && let Some(rest) = def.strip_prefix("expected_fail_regexp")
        {
            let pat = rest.trim();
            let re =
                Regex::new(pat).map_err(|e| (i, format!("invalid regexp '{pat}' for expected_fail_regexp: {e}")))?;
            eval.fail_matches.push(TextMatch::Regex(re));
            break;
        }
        if def.starts_with("expect range vector") {
            let c = PAT_EXPECT_RANGE
                .captures(def)
                .ok_or_else(|| (i, format!("invalid range vector definition {def:?}")))?;
            let (start, end, step) = parse_range_durations(&c[1], &c[2], &c[3]).map_err(|e| (i, e))?;
            eval.range_vector = Some((start, end, step));
            eval.exclude_from_range_query = true;
            j += 1;
            continue;
        }
        if let Some(rest) = def.strip_prefix("expect string") {
            let rest = rest.trim();
            if rest.is_empty() {
                return Err((
                    i,
                    "expected string literal not valid - a quoted string literal is required".into(),
                ));
            }
            let (s, after) = take_quoted(rest).map_err(|e| (i, format!("expected string literal not valid: {e}")))?;
            if !after.trim().is_empty() {
                return Err((
                    i,
                    "expected string literal not valid - check that the string is correctly quoted".into(),
                ));
            }
            eval.expect_string = Some(s);
            eval.exclude_from_range_query = true;
            j += 1;
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            let c = PAT_EXPECT.captures(def.trim()).ok_or((
                i,
                "invalid expect statement, must match `expect <type> <match_type>: <string>` format".to_string(),
            ))?;
            let mode = &c[1];
            let m = parse_text_match(c.get(2).map(|m| m.as_str()), c.get(3).map(|m| m.as_str()), mode)
                .map_err(|e| (i, e))?;
            match mode {
                "ordered" => eval.ordered = true,
                "fail" => {
                    if expect_fail_lines > 0 {
                        return Err((
                            i,
                            "invalid expect lines, multiple expect fail lines are not allowed".into(),
                        ));
                    }
                    expect_fail_lines += 1;
                    eval.fail = true;
                    eval.fail_matches.push(m);
                }
                "warn" => eval.expect_warn.push(m),
                "info" => eval.expect_info.push(m),
                "no_warn" => eval.expect_no_warn = true,
                _ => eval.expect_no_info = true,
            }
            if !eval.expect_warn.is_empty() && eval.expect_no_warn {
                return Err((
                    i,
                    "invalid expect lines, warn and no_warn cannot be used together".into(),
                ));
            }
            if !eval.expect_info.is_empty() && eval.expect_no_info {
                return Err((
                    i,
                    "invalid expect lines, info and no_info cannot be used together".into(),
                ));
            }
            continue;
        }
        if let Ok(f) = parse_number(def) {
            eval.expect_scalar = Some(f);
            eval.expected.clear();
            break;
        }
        let (labels, values) = parse_series_desc(def).map_err(|e| (i, e))?;
        if values.len() > 1 && eval.is_instant() && eval.range_vector.is_none() {
            return Err((
                i,
                "expecting multiple values in instant evaluation not allowed. consider using 'expect range vector' \
                 directive to enable a range vector result for an instant query"
                    .to_string(),
            ));
        }
        if values.iter().any(|v| matches!(v, SeqValue::Histogram)) {
            eval.expects_histogram = true;
        }
        eval.expect_scalar = None;
        eval.expected.retain(|e| e.labels != labels);
        eval.expected.push(ExpectedSeries { labels, values, pos: j });
        j += 1;
    }
    Ok((i, eval))
}

fn parse_range_durations(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let start = parse_duration(from).map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let end = parse_duration(to).map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if end < start {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let step = parse_duration(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((start, end, step))
}

/// Formats labels as Prometheus prints them: `name{a="b", c="d"}`, `{}` when empty.
pub fn format_labels(labels: &Labels) -> String {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if !name.is_empty() && rest.is_empty() {
        return name.to_string();
    }
    format!("{name}{{{}}}", rest.join(", "))
}
