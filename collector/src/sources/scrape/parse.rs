//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, parsed the way
//! Prometheus' own `textparse` package does.
//!
//! Why not the `prometheus-parse` crate (0.2.5): it cannot be made correct by wrapping. It finds
//! labels with a `[^}]+` regex and splits them on `,` and `=`, so a label value holding `,`,
//! `=`, `}` or an escaped quote is cut up or mangled (`a{b="x,y"}` yields `b="x`); it never
//! unescapes `\"`, `\\` or `\n`; metric names with `:` (recording rules' `job:x:rate5m`) don't
//! match its `\w+`; it silently skips lines it cannot parse, where Prometheus fails the scrape;
//! and it folds histogram and summary lines into one value per family, losing the `le` and
//! `quantile` series that remote_write needs. Wrapping would mean re-parsing every line, so the
//! parser lives here, and its tests are Prometheus' parser cases.

use tidewatch_model::{Labels, names};

/// Which dialect the body is in (from the response's Content-Type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: integer millisecond timestamps, no exemplars.
    Text,
    /// `application/openmetrics-text`: float-second timestamps, exemplars, `# EOF` required.
    OpenMetrics,
}

impl Format {
    /// The dialect a Content-Type header names; anything not OpenMetrics is the text format.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSample {
    /// Its labels, the metric name as `__name__`.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Its own timestamp in milliseconds, if it carried one.
    pub timestamp_ms: Option<i64>,
}

/// Why a body could not be parsed, with the 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}
fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}
fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    /// What is at the cursor, for error messages.
    fn got(&self) -> String {
        match self.rest().chars().next() {
            None => "end of line".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }
}

/// Metric families' declared types, for OpenMetrics' `_created` rule.
fn family_type<'t>(types: &'t [(String, String)], name: &str) -> Option<&'t str> {
    types.iter().rev().find(|(n, _)| n == name).map(|(_, t)| t.as_str())
}

/// Parses a whole body. Like Prometheus, any malformed line fails the whole body.
pub fn parse(body: &str, format: Format) -> Result<Vec<ParsedSample>, ParseError> {
    let mut samples = Vec::new();
    let mut types: Vec<(String, String)> = Vec::new();
    let mut saw_eof = false;
    let line_count = body.split('\n').count();
    for (i, raw) in body.split('\n').enumerate() {
        let line_no = i + 1;
        let err = |message: String| ParseError { line: line_no, message };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if saw_eof {
            if line.is_empty() && i + 1 == line_count {
                continue;
            }
            return Err(err("data after # EOF".into()));
        }
        if format == Format::OpenMetrics && line == "# EOF" {
            saw_eof = true;
            continue;
        }
        if line.trim_matches([' ', '\t']).is_empty() {
            if format == Format::OpenMetrics && i + 1 != line_count {
                return Err(err("empty lines are not allowed in OpenMetrics".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, format, &mut types).map_err(err)?;
            continue;
        }
        let sample = parse_sample(line, format).map_err(err)?;
        if format == Format::OpenMetrics {
            // OpenMetrics' `_created` lines carry creation times, not samples: Prometheus skips them.
            let name = sample.labels.metric_name().unwrap_or_default();
            if let Some(family) = name.strip_suffix("_created")
                && matches!(
                    family_type(&types, family),
                    Some("counter" | "histogram" | "summary" | "gaugehistogram")
                )
            {
                continue;
            }
        }
        samples.push(sample);
    }
    if format == Format::OpenMetrics && !saw_eof {
        return Err(ParseError {
            line: line_count,
            message: "data does not end with # EOF".into(),
        });
    }
    Ok(samples)
}

fn parse_comment(comment: &str, format: Format, types: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut c = Cursor { s: comment, pos: 0 };
    c.skip_ws();
    let keyword = c.take_while(|b| b.is_ascii_alphabetic());
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") || !matches!(c.peek(), Some(b' ' | b'\t') | None) {
        return Ok(()); // an ordinary comment
    }
    if keyword == "UNIT" && format == Format::Text {
        return Ok(());
    }
    c.skip_ws();
    let name = c.take_while(is_name_char);
    if name.is_empty() || !is_name_start(name.as_bytes()[0]) {
        return Err(format!("expected metric name after {keyword}, got {}", c.got()));
    }
    if keyword == "TYPE" {
        c.skip_ws();
        let typ = c.rest().trim_end_matches([' ', '\t']);
        let known: &[&str] = match format {
            Format::Text => &["counter", "gauge", "histogram", "summary", "untyped"],
            Format::OpenMetrics => &[
                "counter",
                "gauge",
                "histogram",
                "gaugehistogram",
                "summary",
                "info",
                "stateset",
                "unknown",
            ],
        };
        if !known.contains(&typ) {
            return Err(format!("invalid metric type {typ:?}"));
        }
        types.push((name.to_string(), typ.to_string()));
    }
    Ok(())
}

fn parse_value(text: &str) -> Result<f64, String> {
    // Go's ParseFloat, which Prometheus uses, also takes `_` separators and hex floats, and
    // Prometheus rejects those explicitly; Rust's parser accepts neither.
    text.parse::<f64>().map_err(|_| {
        if text.contains(['_', 'x', 'X']) {
            "unsupported character in float".to_string()
        } else {
            format!("invalid float {text:?}")
        }
    })
}

fn parse_sample(line: &str, format: Format) -> Result<ParsedSample, String> {
    let mut c = Cursor { s: line, pos: 0 };
    if !c.peek().is_some_and(is_name_start) {
        return Err(if c.peek() == Some(b'{') {
            "metric name not set".into()
        } else {
            format!("expected metric name, got {}", c.got())
        });
    }
    let name = c.take_while(is_name_char);
    let mut labels = Labels::new();
    labels.set(names::METRIC_NAME, name);
    if format == Format::Text {
        // The text format allows `name {labels}`; only skip the blank when a brace follows.
        let save = c.pos;
        c.skip_ws();
        if c.peek() != Some(b'{') {
            c.pos = save;
        }
    }
    if c.peek() == Some(b'{') {
        c.pos += 1;
        parse_labels(&mut c, &mut labels, format)?;
    }
    if !matches!(c.peek(), Some(b' ' | b'\t')) {
        return Err(format!("expected value after metric, got {}", c.got()));
    }
    c.skip_ws();
    let value = parse_value(c.take_while(|b| b != b' ' && b != b'\t'))?;
    let mut timestamp_ms = None;
    c.skip_ws();
    if c.peek().is_some() && c.peek() != Some(b'#') {
        let ts = c.take_while(|b| b != b' ' && b != b'\t');
        timestamp_ms = Some(match format {
            Format::Text => ts.parse::<i64>().map_err(|_| format!("invalid timestamp {ts:?}"))?,
            Format::OpenMetrics => {
                let secs = parse_value(ts).map_err(|_| format!("invalid timestamp {ts:?}"))?;
                if !secs.is_finite() {
                    return Err(format!("invalid timestamp {ts:?}"));
                }
                (secs * 1000.0).round() as i64
            }
        });
        c.skip_ws();
    }
    if c.peek() == Some(b'#') && format == Format::OpenMetrics {
        c.pos += 1;
        parse_exemplar(&mut c)?;
    }
    if c.peek().is_some() {
        return Err(format!("expected next entry after timestamp, got {}", c.got()));
    }
    Ok(ParsedSample {
        labels,
        value,
        timestamp_ms,
    })
}

/// An OpenMetrics exemplar, ` # {labels} value [timestamp]`, checked and discarded (the store
/// keeps no exemplars).
fn parse_exemplar(c: &mut Cursor) -> Result<(), String> {
    c.skip_ws();
    if c.peek() != Some(b'{') {
        return Err(format!("expected label set for exemplar, got {}", c.got()));
    }
    c.pos += 1;
    let mut ignored = Labels::new();
    parse_labels(c, &mut ignored, Format::OpenMetrics)?;
    c.skip_ws();
    parse_value(c.take_while(|b| b != b' ' && b != b'\t'))?;
    c.skip_ws();
    if c.peek().is_some() {
        let ts = c.take_while(|b| b != b' ' && b != b'\t');
        parse_value(ts).map_err(|_| format!("invalid exemplar timestamp {ts:?}"))?;
        c.skip_ws();
    }
    Ok(())
}

/// Parses `name="value", ...}` after the opening brace.
fn parse_labels(c: &mut Cursor, labels: &mut Labels, format: Format) -> Result<(), String> {
    let mut seen: Vec<&str> = Vec::new();
    loop {
        c.skip_ws();
        if c.peek() == Some(b'}') {
            c.pos += 1;
            return Ok(());
        }
        if !c.peek().is_some_and(is_label_start) {
            return Err(format!("expected label name, got {}", c.got()));
        }
        let lname = c.take_while(is_label_char);
        if format == Format::Text {
            c.skip_ws();
        }
        if c.peek() != Some(b'=') {
            return Err(format!("expected equal, got {}", c.got()));
        }
        c.pos += 1;
        if format == Format::Text {
            c.skip_ws();
        }
        if c.peek() != Some(b'"') {
            return Err(format!("expected label value, got {}", c.got()));
        }
        c.pos += 1;
        let value = parse_quoted(c)?;
        if seen.contains(&lname) || lname == names::METRIC_NAME && labels.metric_name().is_some() {
            return Err(format!("duplicate label name {lname:?}"));
        }
        seen.push(lname);
        labels.set(lname, value);
        c.skip_ws();
        match c.peek() {
            Some(b',') => c.pos += 1,
            Some(b'}') => {}
            // Prometheus' text parser accepts label pairs separated by spaces only.
            Some(b) if format == Format::Text && is_label_start(b) => {}
            _ => return Err(format!("expected comma or closing brace, got {}", c.got())),
        }
    }
}

/// A label value up to its closing quote, unescaping `\\`, `\"` and `\n` (other escapes stay as
/// written, as in Prometheus).
fn parse_quoted(c: &mut Cursor) -> Result<String, String> {
    let bytes = c.s.as_bytes();
    let start = c.pos;
    let mut escaped = false;
    loop {
        match bytes.get(c.pos) {
            None => return Err("unterminated label value".into()),
            Some(b'\\') => {
                escaped = true;
                c.pos += 2;
            }
            Some(b'"') => break,
            Some(_) => c.pos += 1,
        }
    }
    if c.pos > bytes.len() {
        return Err("unterminated label value".into());
    }
    let raw = &c.s[start..c.pos];
    c.pos += 1;
    if !escaped {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}
