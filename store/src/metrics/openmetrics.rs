//! Prometheus text exposition and OpenMetrics parsing, for importing files of samples with
//! timestamps (`tidewatch import FILE`, tests, benchmarks).
//!
//! One sample per line: `name{a="b",c="d\"e"} value [timestamp]`. Label values may hold the
//! escapes `\\`, `\"` and `\n`; values may be `NaN`, `+Inf` and `-Inf`. Comments (`# TYPE`,
//! `# HELP`, `# UNIT`, any other `#` line) and blank lines are skipped, and an OpenMetrics
//! exemplar (` # {trace_id="…"} 1`) after a sample is ignored.
//!
//! The two formats differ in the unit of the timestamp: Prometheus text has integer
//! milliseconds, OpenMetrics has seconds, possibly fractional (`1795431900.643`). With
//! [`Format::Detect`] the [`Parser`] decides once per input, at the first timestamp it meets:
//! the input is OpenMetrics if that timestamp has a `.` or an exponent, or if an OpenMetrics-only
//! line came before it (`# EOF`, `# UNIT`, or `# TYPE` with `unknown`, `info`, `stateset` or
//! `gaugehistogram`); otherwise it is Prometheus text. Deciding once keeps integer timestamps of
//! one file in one unit. After the decision, a fractional timestamp in Prometheus text is an
//! error. In OpenMetrics, `# EOF` ends the input and anything but blank lines after it is an
//! error.
//!
//! Nothing here panics on any input; every error names its line.

use std::io::BufRead;

use tidewatch_model::{Labels, Sample};

/// Which text format an input is in, which decides the unit of its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Decide from the input (see the module documentation).
    Detect,
    /// Prometheus text exposition: timestamps are integer milliseconds.
    Prometheus,
    /// OpenMetrics: timestamps are seconds, possibly fractional.
    OpenMetrics,
}

/// What is wrong with an input, and on which line (counted from 1).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A line that is not a sample, comment or blank line.
    #[error("line {line}: {what}")]
    Syntax {
        /// The line number, from 1.
        line: u64,
        /// What is wrong, e.g. "label value not closed".
        what: String,
    },
    /// The input could not be read.
    #[error("line {line}: read failed: {source}")]
    Io {
        /// The line being read, from 1.
        line: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ParseError {
    /// The line the error is on, counted from 1.
    pub fn line(&self) -> u64 {
        match self {
            ParseError::Syntax { line, .. } | ParseError::Io { line, .. } => *line,
        }
    }
}

/// Parses one line on its own. Comments and blank lines give `Ok(None)`.
///
/// Without the state of a whole input, [`Format::Detect`] decides per line: a timestamp with a
/// `.` or an exponent is in seconds, an integer one in milliseconds. A line without a timestamp
/// gets `default_time_ms`. `line_no` only labels errors.
pub fn parse_line(
    line_no: u64,
    line: &str,
    format: Format,
    default_time_ms: i64,
) -> Result<Option<(Labels, Sample)>, ParseError> {
    let syntax = |what: String| ParseError::Syntax { line: line_no, what };
    let Some(raw) = parse_sample(line).map_err(syntax)? else {
        return Ok(None);
    };
    let timestamp_ms = match raw.timestamp {
        None => default_time_ms,
        Some(text) => {
            let unit = match format {
                Format::Prometheus => Unit::Millis,
                Format::OpenMetrics => Unit::Seconds,
                Format::Detect if looks_fractional(text) => Unit::Seconds,
                Format::Detect => Unit::Millis,
            };
            parse_timestamp(text, unit).map_err(syntax)?
        }
    };
    Ok(Some((
        raw.labels,
        Sample {
            timestamp_ms,
            value: raw.value,
        },
    )))
}

/// Reads samples from a text or OpenMetrics input, one `(labels, sample)` per sample line.
///
/// A bad line gives one `Err` and parsing goes on with the next line, so a caller may count
/// or skip errors; a read error ends the iteration.
pub struct Parser<R> {
    reader: R,
    format: Format,
    default_time_ms: i64,
    line_no: u64,
    buf: Vec<u8>,
    /// An OpenMetrics-only line was seen before the format was decided.
    saw_openmetrics_sign: bool,
    /// `# EOF` was seen (OpenMetrics): only blank lines may follow.
    after_eof: bool,
    done: bool,
}

impl<R: BufRead> Parser<R> {
    /// A parser over `reader`. Lines without a timestamp get `default_time_ms`.
    pub fn new(reader: R, format: Format, default_time_ms: i64) -> Self {
        Parser {
            reader,
            format,
            default_time_ms,
            line_no: 0,
            buf: Vec::with_capacity(256),
            saw_openmetrics_sign: false,
            after_eof: false,
            done: false,
        }
    }

    /// The format in use: [`Format::Detect`] until the first timestamp decided it.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many lines have been read so far.
    pub fn lines_read(&self) -> u64 {
        self.line_no
    }

    /// Handles one line: `Ok(None)` for lines that hold no sample.
    fn line(&mut self, line: &[u8]) -> Result<Option<(Labels, Sample)>, String> {
        let mut bytes = line;
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest;
        }
        if let Some(rest) = bytes.strip_suffix(b"\r") {
            bytes = rest;
        }
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))?;
        if self.after_eof {
            return if text.trim().is_empty() {
                Ok(None)
            } else {
                Err("content after # EOF".to_string())
            };
        }
        if let Some(comment) = text.strip_prefix('#') {
            self.comment(comment);
            return Ok(None);
        }
        let Some(raw) = parse_sample(text)? else {
            return Ok(None);
        };
        let timestamp_ms = match raw.timestamp {
            None => self.default_time_ms,
            Some(ts) => {
                if self.format == Format::Detect {
                    self.format = if self.saw_openmetrics_sign || looks_fractional(ts) {
                        Format::OpenMetrics
                    } else {
                        Format::Prometheus
                    };
                }
                let unit = if self.format == Format::OpenMetrics {
                    Unit::Seconds
                } else {
                    Unit::Millis
                };
                parse_timestamp(ts, unit)?
            }
        };
        Ok(Some((
            raw.labels,
            Sample {
                timestamp_ms,
                value: raw.value,
            },
        )))
    }

    /// Notes what a comment says about the format; comments are otherwise skipped.
    fn comment(&mut self, comment: &str) {
        let mut words = comment.split_ascii_whitespace();
        match words.next() {
            Some("EOF") if self.format != Format::Prometheus => self.after_eof = true,
            Some("UNIT") => self.saw_openmetrics_sign = true,
            Some("TYPE") => {
                if let Some("unknown" | "info" | "stateset" | "gaugehistogram") = words.nth(1) {
                    self.saw_openmetrics_sign = true;
                }
            }
            _ => {}
        }
        // `# EOF` in Prometheus text is just a comment; in an undecided input it decides.
        if self.after_eof && self.format == Format::Detect {
            self.format = Format::OpenMetrics;
        }
    }
}

impl<R: BufRead> Iterator for Parser<R> {
    type Item = Result<(Labels, Sample), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line_no += 1;
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    self.line_no -= 1;
                }
                Ok(_) => {
                    // Taken out for the call so that `line` may update the parser's state.
                    let buf = std::mem::take(&mut self.buf);
                    let result = self.line(&buf);
                    self.buf = buf;
                    match result {
                        Ok(None) => {}
                        Ok(Some(sample)) => return Some(Ok(sample)),
                        Err(what) => {
                            return Some(Err(ParseError::Syntax {
                                line: self.line_no,
                                what,
                            }));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.line_no -= 1,
                Err(source) => {
                    self.done = true;
                    return Some(Err(ParseError::Io {
                        line: self.line_no,
                        source,
                    }));
                }
            }
        }
        None
    }
}

/// A sample line split into its parts; the timestamp is kept as text until its unit is known.
struct RawSample<'a> {
    labels: Labels,
    value: f64,
    timestamp: Option<&'a str>,
}

#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Seconds,
}

/// Parses a sample line; comments and blank lines give `Ok(None)`. Errors say what is wrong.
fn parse_sample(line: &str) -> Result<Option<RawSample<'_>>, String> {
    let mut cur = Cursor {
        s: line.as_bytes(),
        pos: 0,
    };
    cur.skip_blanks();
    if cur.at_end() || cur.peek() == Some(b'#') {
        return Ok(None);
    }
    let name = cur.take_while(is_metric_name_byte);
    if name.is_empty() {
        return Err(format!("expected a metric name, found {}", cur.describe_next()));
    }
    let mut pairs: Vec<(&str, String)> = Vec::with_capacity(8);
    pairs.push(("__name__", name.to_string()));
    let mut had_blank = cur.skip_blanks();
    if cur.peek() == Some(b'{') {
        cur.pos += 1;
        parse_labels(&mut cur, &mut pairs)?;
        had_blank = cur.skip_blanks();
    }
    if cur.at_end() {
        return Err("missing value".to_string());
    }
    if !had_blank {
        return Err(format!(
            "expected a space before the value, found {}",
            cur.describe_next()
        ));
    }
    let value_text = cur.take_word();
    let value = parse_value(value_text).ok_or_else(|| format!("invalid value {value_text:?}"))?;
    cur.skip_blanks();
    let mut timestamp = None;
    if !cur.at_end() && cur.peek() != Some(b'#') {
        timestamp = Some(cur.take_word());
        cur.skip_blanks();
    }
    // An OpenMetrics exemplar (`# {...} value [ts]`) may follow; it is not a sample of this series.
    if !cur.at_end() && cur.peek() != Some(b'#') {
        return Err(format!("unexpected text after the timestamp: {}", cur.describe_next()));
    }
    // from_pairs drops empty values, as Prometheus does; duplicates were rejected above.
    Ok(Some(RawSample {
        labels: Labels::from_pairs(pairs),
        value,
        timestamp,
    }))
}

/// Parses `a="b",c="d"}` (the `{` already consumed) into `pairs`.
fn parse_labels<'a>(cur: &mut Cursor<'a>, pairs: &mut Vec<(&'a str, String)>) -> Result<(), String> {
    loop {
        cur.skip_blanks();
        match cur.peek() {
            Some(b'}') => {
                cur.pos += 1;
                return Ok(());
            }
            None => return Err("label set not closed (missing '}')".to_string()),
            _ => {}
        }
        let name = cur.take_while(is_label_name_byte);
        if name.is_empty() {
            return Err(format!("expected a label name, found {}", cur.describe_next()));
        }
        cur.skip_blanks();
        if cur.peek() != Some(b'=') {
            return Err(format!(
                "expected '=' after label name {name:?}, found {}",
                cur.describe_next()
            ));
        }
        cur.pos += 1;
        cur.skip_blanks();
        if cur.peek() != Some(b'"') {
            return Err(format!(
                "expected '\"' to open the value of label {name:?}, found {}",
                cur.describe_next()
            ));
        }
        cur.pos += 1;
        let value = parse_label_value(cur).map_err(|what| format!("label {name:?}: {what}"))?;
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(format!("duplicate label {name:?}"));
        }
        pairs.push((name, value));
        cur.skip_blanks();
        match cur.peek() {
            Some(b',') => cur.pos += 1,
            Some(b'}') => {}
            None => return Err("label set not closed (missing '}')".to_string()),
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after a label, found {}",
                    cur.describe_next()
                ));
            }
        }
    }
}

/// Reads a label value up to its closing quote, resolving `\\`, `\"` and `\n`.
fn parse_label_value(cur: &mut Cursor<'_>) -> Result<String, String> {
    let start = cur.pos;
    // Fast path: no escapes, which is nearly every value.
    while let Some(b) = cur.peek() {
        match b {
            b'"' => {
                let value = cur.slice(start, cur.pos).to_string();
                cur.pos += 1;
                return Ok(value);
            }
            b'\\' => break,
            _ => cur.pos += 1,
        }
    }
    let mut value = cur.slice(start, cur.pos).to_string();
    loop {
        match cur.peek() {
            None => return Err("label value not closed".to_string()),
            Some(b'"') => {
                cur.pos += 1;
                return Ok(value);
            }
            Some(b'\\') => {
                cur.pos += 1;
                match cur.peek() {
                    Some(b'\\') => value.push('\\'),
                    Some(b'"') => value.push('"'),
                    Some(b'n') => value.push('\n'),
                    None => return Err("label value not closed".to_string()),
                    Some(_) => return Err(format!("invalid escape {} in label value", cur.describe_next())),
                }
                cur.pos += 1;
            }
            Some(_) => {
                // Copy a run of plain bytes; runs end on ASCII bytes, so the slice is valid UTF-8.
                let run = cur.pos;
                while cur.peek().is_some_and(|b| b != b'"' && b != b'\\') {
                    cur.pos += 1;
                }
                value.push_str(cur.slice(run, cur.pos));
            }
        }
    }
}

/// Parses a sample value: a decimal or exponent float, `NaN`, `+Inf`, `-Inf` (`Inf` too).
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Rust's parser also takes "inf", "infinity" and "nan" in any case; only digits, signs,
        // '.', 'e' and 'E' reach it, so those words stay errors as in Prometheus.
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Whether a timestamp is written as a fraction or with an exponent (so: seconds).
fn looks_fractional(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Converts a timestamp to milliseconds. Decimal seconds are converted exactly (digits past
/// the millisecond are rounded half away from zero), so `1795431900.643` is `1795431900643`.
fn parse_timestamp(text: &str, unit: Unit) -> Result<i64, String> {
    let invalid = || format!("invalid timestamp {text:?}");
    match unit {
        Unit::Millis => {
            if looks_fractional(text) {
                return Err(format!(
                    "invalid timestamp {text:?}: Prometheus text timestamps are integer milliseconds"
                ));
            }
            text.parse::<i64>().map_err(|_| invalid())
        }
        Unit::Seconds => {
            let (negative, digits) = match text.as_bytes().first() {
                Some(b'-') => (true, &text[1..]),
                Some(b'+') => (false, &text[1..]),
                _ => (false, text),
            };
            let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
            let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if !int_part.is_empty() && plain(int_part) && plain(frac_part) {
                let secs: i64 = int_part.parse().map_err(|_| invalid())?;
                let frac = frac_part.as_bytes();
                let digit = |i: usize| frac.get(i).map_or(0, |d| i64::from(d - b'0'));
                let mut ms = digit(0) * 100 + digit(1) * 10 + digit(2);
                if digit(3) >= 5 {
                    ms += 1;
                }
                let total = secs
                    .checked_mul(1000)
                    .and_then(|s| s.checked_add(ms))
                    .ok_or_else(invalid)?;
                return Ok(if negative { -total } else { total });
            }
            // Exponent forms (`1.7954319e9`) go through a float; they carry no more precision.
            let secs: f64 = parse_value(text).filter(|s| s.is_finite()).ok_or_else(invalid)?;
            let ms = (secs * 1000.0).round();
            if ms.abs() < 9.2e18 {
                Ok(ms as i64)
            } else {
                Err(invalid())
            }
        }
    }
}

fn is_metric_name_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || (!first && b.is_ascii_digit())
}

fn is_label_name_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || (!first && b.is_ascii_digit())
}

/// A position in a line. Every slice it takes ends before or on an ASCII byte, so slicing the
/// `&str` it came from never splits a character.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn slice(&self, start: usize, end: usize) -> &'a str {
        // Only called on boundaries next to ASCII bytes; the fallback is unreachable in practice.
        std::str::from_utf8(&self.s[start..end]).unwrap_or("")
    }

    /// Skips spaces and tabs; says whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, accept: impl Fn(u8, bool) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| accept(b, self.pos == start)) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// Takes the text up to the next space or tab.
    fn take_word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b' ' && b != b'\t') {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// The next character, quoted, or "end of line", for error messages.
    fn describe_next(&self) -> String {
        match std::str::from_utf8(&self.s[self.pos..])
            .ok()
            .and_then(|rest| rest.chars().next())
        {
            Some(c) => format!("{c:?}"),
            None if self.at_end() => "end of line".to_string(),
            None => "a byte that is not UTF-8".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(text: &str, format: Format) -> Vec<Result<(Labels, Sample), String>> {
        Parser::new(text.as_bytes(), format, 42)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    fn one(line: &str) -> (Labels, Sample) {
        parse_line(1, line, Format::Detect, 42).unwrap().unwrap()
    }

    #[test]
    fn parses_names_labels_escapes_and_timestamps() {
        let (labels, sample) = one(r#"http_requests_total{code="200",path="C:\\x \"y\"\nz"} 1027 1395066363000"#);
        assert_eq!(labels.metric_name(), Some("http_requests_total"));
        assert_eq!(labels.get("code"), Some("200"));
        assert_eq!(labels.get("path"), Some("C:\\x \"y\"\nz"));
        assert_eq!(
            sample,
            Sample {
                timestamp_ms: 1395066363000,
                value: 1027.0
            }
        );

        let (labels, sample) = one("up 1");
        assert_eq!(labels.len(), 1);
        assert_eq!(sample.timestamp_ms, 42, "default time");

        let (_, sample) = one(r#"x{a="b",} 3.5e-3 1795431900.643"#);
        assert_eq!(
            sample,
            Sample {
                timestamp_ms: 1795431900643,
                value: 0.0035
            }
        );
        let (labels, _) = one(r#"x { a = "b" , c="" } 1"#);
        assert_eq!(labels.get("a"), Some("b"));
        assert_eq!(labels.get("c"), None, "empty values are dropped");
    }

    #[test]
    fn special_values() {
        assert!(one("x NaN").1.value.is_nan());
        assert_eq!(one("x +Inf").1.value, f64::INFINITY);
        assert_eq!(one("x -Inf").1.value, f64::NEG_INFINITY);
        assert_eq!(one("x -0").1.value.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# HELP x a thing\n\n# TYPE x counter\nx 1 1000\n   \n";
        let got = parse_all(text, Format::Detect);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().1.timestamp_ms, 1000);
    }

    #[test]
    fn detection_decides_once_per_input() {
        // Prometheus text: integer milliseconds.
        let got = parse_all("x 1 1000\nx 2 2000\n", Format::Detect);
        assert_eq!(got[1].as_ref().unwrap().1.timestamp_ms, 2000);
        // A fractional first timestamp: seconds, and later integers are seconds too.
        let got = parse_all("x 1 1.5\nx 2 2\n# EOF\n", Format::Detect);
        assert_eq!(got[0].as_ref().unwrap().1.timestamp_ms, 1500);
        assert_eq!(got[1].as_ref().unwrap().1.timestamp_ms, 2000);
        // An OpenMetrics-only comment before the first timestamp: seconds.
        let got = parse_all("# TYPE x unknown\nx 1 2\n", Format::Detect);
        assert_eq!(got[0].as_ref().unwrap().1.timestamp_ms, 2000);
        // Decided as Prometheus, then a fraction: an error naming the line.
        let got = parse_all("x 1 1000\nx 2 2000.5\n", Format::Detect);
        assert!(
            got[1].as_ref().unwrap_err().starts_with("line 2: invalid timestamp"),
            "{got:?}"
        );
        // An explicit format wins.
        let got = parse_all("x 1 2\n", Format::OpenMetrics);
        assert_eq!(got[0].as_ref().unwrap().1.timestamp_ms, 2000);
    }

    #[test]
    fn content_after_eof_is_an_error() {
        let got = parse_all("x 1 1.0\n# EOF\n\nx 2 2.0\n", Format::Detect);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err(), "line 4: content after # EOF");
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let text = "ok 1\nbad{a=\"b} 1\n";
        let got = parse_all(text, Format::Detect);
        assert!(got[0].is_ok());
        assert_eq!(
            got[1].as_ref().unwrap_err(),
            "line 2: label \"a\": label value not closed"
        );
        for (line, want) in [
            ("x{a=\"1\"", "label set not closed"),
            ("x", "missing value"),
            ("x abc", "invalid value \"abc\""),
            ("x 1 1 1", "unexpected text after the timestamp"),
            ("x{a=\"1\",a=\"2\"} 1", "duplicate label \"a\""),
            ("x{a=\"\\t\"} 1", "invalid escape"),
            ("x{1a=\"1\"} 1", "expected a label name"),
            ("{a=\"1\"} 1", "expected a metric name"),
            ("x 1 12x", "invalid timestamp"),
        ] {
            let err = parse_line(7, line, Format::Detect, 0).unwrap_err().to_string();
            assert!(err.starts_with("line 7: "), "{line}: {err}");
            assert!(err.contains(want), "{line}: {err} lacks {want}");
        }
    }

    #[test]
    fn exemplars_are_ignored() {
        let (labels, sample) = one(r#"foo_bucket{le="0.5"} 3 1.5 # {trace_id="x"} 0.2 1.4"#);
        assert_eq!(labels.get("le"), Some("0.5"));
        assert_eq!(
            sample,
            Sample {
                timestamp_ms: 1500,
                value: 3.0
            }
        );
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        let input: &[u8] = b"x 1\n\xff\xfe 2\ny 3\n";
        let got: Vec<_> = Parser::new(input, Format::Detect, 0).collect();
        assert_eq!(got.len(), 3);
        assert!(
            got[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("line 2: not valid UTF-8")
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC*", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_all(&text, Format::Detect);
            let _: Vec<_> = Parser::new(&bytes[..], Format::OpenMetrics, 0).collect();
            for line in text.lines() {
                let _ = parse_line(1, line, Format::Detect, 0);
            }
        }

        #[test]
        fn near_valid_lines_never_panic(line in r#"[a-z_]{0,3}(\{([a-z]{0,2}="([^"\\]|\\.){0,4}"?,?){0,3}\}?)? ?[-+0-9.eEINaf]{0,6}( [-+0-9.e]{0,14})?"#) {
            let _ = parse_line(1, &line, Format::Detect, 0);
            let _ = parse_line(1, &line, Format::OpenMetrics, 0);
        }

        #[test]
        fn written_samples_parse_back(
            value in any::<f64>().prop_filter("NaN has no single text", |v| !v.is_nan()),
            ts in -1_000_000_000_000i64..4_000_000_000_000,
            label in "[ -~\n]{0,10}",
        ) {
            let escaped = label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let text = match value {
                v if v == f64::INFINITY => "+Inf".to_string(),
                v if v == f64::NEG_INFINITY => "-Inf".to_string(),
                v => format!("{v:?}"),
            };
            let line = format!("m{{l=\"{escaped}\"}} {text} {ts}");
            let (labels, sample) = parse_line(1, &line, Format::Prometheus, 0).unwrap().unwrap();
            prop_assert_eq!(labels.get("l").unwrap_or(""), label.as_str());
            prop_assert_eq!(sample.value.to_bits(), value.to_bits());
            prop_assert_eq!(sample.timestamp_ms, ts);
        }
    }
}
