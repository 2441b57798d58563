//! The LogQL grammar Tidewatch accepts: stream selectors, line filters, parsers (json, logfmt,
//! regexp, pattern), label filters, line_format, label_format, drop, keep, unwrap; range
//! aggregations with offset; vector aggregations with by/without.

use regex::Regex;

/// A stream-selector or string label matcher.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    /// The label.
    pub name: String,
    /// `=`, `!=`, `=~`, `!~`.
    pub op: MatchOp,
    /// The value or pattern.
    pub value: String,
    /// The anchored pattern for `=~`/`!~`.
    pub re: Option<Regex>,
}

/// Matcher operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
}

impl LabelMatcher {
    /// Whether `value` (`""` when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::Ne => value != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

/// Line filter operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Regex,
    /// `!~`
    NotRegex,
}

/// Label filter comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// A label filter expression.
#[derive(Clone, Debug)]
pub enum LabelExpr {
    /// Both.
    And(Box<LabelExpr>, Box<LabelExpr>),
    /// Either.
    Or(Box<LabelExpr>, Box<LabelExpr>),
    /// A string comparison.
    Str(LabelMatcher),
    /// A numeric comparison (durations in seconds, sizes in bytes).
    Num {
        /// The label.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// The number.
        value: f64,
    },
}

pub use super::template::{TemplatePart, parse_template};

/// A piece of a `pattern` expression.
#[derive(Clone, Debug, PartialEq)]
pub enum PatternPart {
    /// Literal text.
    Lit(String),
    /// `<name>`, or `<_>` (None).
    Capture(Option<String>),
}

/// How `unwrap` converts the label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// A float.
    Plain,
    /// `duration(x)` / `duration_seconds(x)`: seconds.
    Duration,
    /// `bytes(x)`: bytes.
    Bytes,
}

/// A pipeline stage.
#[derive(Clone, Debug)]
pub enum Stage {
    /// `|= "x"` and friends.
    LineFilter {
        /// The operator.
        op: FilterOp,
        /// The text or pattern.
        value: String,
        /// The compiled pattern for `|~`/`!~`.
        re: Option<Regex>,
        /// `|= "x" or "y"`: more texts or patterns; `|=`/`|~` keep a line matching any,
        /// `!=`/`!~` drop a line matching any.
        or: Vec<(String, Option<Regex>)>,
    },
    /// `| json`
    Json,
    /// `| logfmt`
    Logfmt,
    /// `| regexp "(?P<name>...)"`
    Regexp(Regex),
    /// `| pattern "<ip> - <_>"`
    Pattern(Vec<PatternPart>),
    /// `| level="error"`, `| status >= 500 and x="y"`
    LabelFilter(LabelExpr),
    /// `| line_format "{{.a}}"`
    LineFormat(Vec<TemplatePart>),
    /// `| label_format new=old, x="{{.y}}"`
    LabelFormat(Vec<(String, LabelFormat)>),
    /// `| drop a, b="v"`
    Drop(Vec<(String, Option<LabelMatcher>)>),
    /// `| keep a, b`
    Keep(Vec<(String, Option<LabelMatcher>)>),
}

/// One assignment of `label_format`.
#[derive(Clone, Debug)]
pub enum LabelFormat {
    /// `new=old`: rename.
    Rename(String),
    /// `new="template"`.
    Template(Vec<TemplatePart>),
}

/// A log query: a selector and its pipeline.
#[derive(Clone, Debug)]
pub struct LogExpr {
    /// The stream selector.
    pub matchers: Vec<LabelMatcher>,
    /// The stages in order.
    pub stages: Vec<Stage>,
    /// `| unwrap` (metric queries only).
    pub unwrap: Option<(String, Conversion)>,
}

/// Range aggregation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    /// count_over_time
    Count,
    /// rate
    Rate,
    /// bytes_over_time
    Bytes,
    /// bytes_rate
    BytesRate,
    /// absent_over_time
    Absent,
    /// sum_over_time (unwrap)
    Sum,
    /// avg_over_time (unwrap)
    Avg,
    /// min_over_time (unwrap)
    Min,
    /// max_over_time (unwrap)
    Max,
    /// quantile_over_time (unwrap)
    Quantile,
    /// first_over_time (unwrap)
    First,
    /// last_over_time (unwrap)
    Last,
}

/// Vector aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// sum
    Sum,
    /// avg
    Avg,
    /// min
    Min,
    /// max
    Max,
    /// count
    Count,
    /// topk
    Topk,
    /// bottomk
    Bottomk,
}

/// `by (...)` or `without (...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grouping {
    /// `without` rather than `by`.
    pub without: bool,
    /// The labels.
    pub labels: Vec<String>,
}

/// A metric query.
#[derive(Clone, Debug)]
pub enum MetricExpr {
    /// `count_over_time({..} |= "x" [5m] offset 1h)`
    Range {
        /// The function.
        func: RangeFn,
        /// quantile_over_time's φ.
        param: Option<f64>,
        /// The log expression.
        log: LogExpr,
        /// The window.
        range_ns: i64,
        /// `offset`.
        offset_ns: i64,
        /// `by`/`without` of unwrapped range functions.
        grouping: Option<Grouping>,
    },
    /// `sum by (x) (...)`
    Agg {
        /// The operator.
        op: AggOp,
        /// topk's k.
        param: Option<f64>,
        /// Grouping.
        grouping: Option<Grouping>,
        /// The inner expression.
        inner: Box<MetricExpr>,
    },
    /// A number.
    Scalar(f64),
    /// `a / b`, `a > bool 10`, `a * on (job) group_left (x) b`.
    Binary {
        /// The operator.
        op: BinOp,
        /// The left side.
        lhs: Box<MetricExpr>,
        /// The right side.
        rhs: Box<MetricExpr>,
        /// `bool`: comparisons return 0 or 1 instead of filtering.
        return_bool: bool,
        /// How series of two vectors are matched.
        matching: VectorMatching,
    },
}

/// Binary operators between metric expressions and scalars, as PromQL's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `and`
    And,
    /// `or`
    Or,
    /// `unless`
    Unless,
}

impl BinOp {
    /// `==`, `!=`, `>`, `<`, `>=`, `<=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }
    /// `and`, `or`, `unless`.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
    /// Precedence (higher binds tighter) and right associativity, as PromQL.
    fn precedence(self) -> (u8, bool) {
        match self {
            BinOp::Pow => (6, true),
            BinOp::Mul | BinOp::Div | BinOp::Mod => (5, false),
            BinOp::Add | BinOp::Sub => (4, false),
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => (3, false),
            BinOp::And | BinOp::Unless => (2, false),
            BinOp::Or => (1, false),
        }
    }
}

/// `on (...)`/`ignoring (...)` and `group_left (...)`/`group_right (...)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VectorMatching {
    /// `on` rather than `ignoring`.
    pub on: bool,
    /// The labels of `on`/`ignoring`.
    pub labels: Vec<String>,
    /// `group_left` (`Some(true)`) or `group_right` (`Some(false)`).
    pub group_left: Option<bool>,
    /// The labels the group modifier copies from the "one" side.
    pub include: Vec<String>,
}

/// A LogQL expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// Returns lines.
    Log(LogExpr),
    /// Returns samples.
    Metric(MetricExpr),
}

/// Parses a LogQL expression. Errors name the position and what was expected.
pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser { s: text, pos: 0 };
    p.ws();
    let e = if p.peek() == Some('{') {
        Expr::Log(p.log_expr(false)?)
    } else {
        Expr::Metric(p.metric()?)
    };
    p.ws();
    if p.pos < text.len() {
        return Err(p.err("end of query"));
    }
    Ok(e)
}

/// Reads a quoted string (`"..."` with Go escapes, or `` `raw` ``) at the start of `s`; returns
/// it and the bytes used.
pub fn unquote(s: &str) -> Result<(String, usize), String> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '`')) => {
            let end = s[1..].find('`').ok_or("unterminated `string`")?;
            Ok((s[1..1 + end].to_string(), end + 2))
        }
        Some((_, q @ ('"' | '\''))) => {
            let mut out = String::new();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, '\\')) => out.push('\\'),
                        Some((_, '"')) => out.push('"'),
                        Some((_, '\'')) => out.push('\''),
                        Some((_, 'u')) => {
                            let hex: String = (0..4).filter_map(|_| chars.next().map(|c| c.1)).collect();
                            let c = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or("bad \\u escape")?;
                            out.push(c);
                        }
                        Some((_, c)) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unterminated string".into()),
                    },
                    c if c == q => return Ok((out, i + 1)),
                    c => out.push(c),
                }
            }
            Err("unterminated string".into())
        }
        _ => Err("expected a quoted string".into()),
    }
}

fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

/// Parses a `pattern` expression.
pub fn parse_pattern(t: &str) -> Result<Vec<PatternPart>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    let mut lit = String::new();
    while !rest.is_empty() {
        if rest.starts_with('<')
            && let Some(end) = rest.find('>')
            && !rest[1..end].is_empty()
            && rest[1..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            let name = &rest[1..end];
            if !lit.is_empty() {
                out.push(PatternPart::Lit(std::mem::take(&mut lit)));
            }
            if matches!(out.last(), Some(PatternPart::Capture(_))) {
                return Err(format!("pattern {t:?}: two captures need literal text between them"));
            }
            out.push(PatternPart::Capture((name != "_").then(|| name.to_string())));
            rest = &rest[end + 1..];
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        out.push(PatternPart::Lit(lit));
    }
    if !out.iter().any(|p| matches!(p, PatternPart::Capture(Some(_)))) {
        return Err(format!("pattern {t:?} has no named capture"));
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if c == '#' {
                let n = self.rest().find('\n').unwrap_or(self.rest().len());
                self.pos += n;
            } else {
                break;
            }
        }
    }
    fn err(&self, expected: &str) -> String {
        let near: String = self.rest().chars().take(20).collect();
        format!(
            "parse error at char {}: expected {expected}, found {near:?}",
            self.pos + 1
        )
    }
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, tok: &str) -> Result<(), String> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.err(&format!("{tok:?}")))
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        self.ws();
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && (c.is_ascii_digit() || c == '.'))))
            .map_or(r.len(), |(i, _)| i);
        if n == 0 {
            return Err(self.err("a name"));
        }
        let id = r[..n].to_string();
        self.pos += n;
        Ok(id)
    }
    /// Looks at the next identifier without consuming it.
    fn peek_ident(&mut self) -> String {
        let save = self.pos;
        let id = self.ident().unwrap_or_default();
        self.pos = save;
        id
    }
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        let (s, n) = unquote(self.rest()).map_err(|e| self.err(&e))?;
        self.pos += n;
        Ok(s)
    }
    fn number(&mut self) -> Result<f64, String> {
        self.ws();
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
            .map_or(r.len(), |(i, _)| i);
        let v = r[..n].parse::<f64>().map_err(|_| self.err("a number"))?;
        self.pos += n;
        Ok(v)
    }
    fn duration(&mut self) -> Result<i64, String> {
        self.ws();
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(_, c)| !c.is_ascii_alphanumeric())
            .map_or(r.len(), |(i, _)| i);
        let d = super::super::time::parse_duration_ns(&r[..n]).map_err(|_| self.err("a duration such as 5m"))?;
        if r[..n].chars().all(|c| c.is_ascii_digit()) {
            return Err(self.err("a duration with a unit, such as 5m"));
        }
        self.pos += n;
        Ok(d)
    }

    fn selector(&mut self) -> Result<Vec<LabelMatcher>, String> {
        self.expect("{")?;
        let mut out = Vec::new();
        loop {
            if self.eat("}") {
                break;
            }
            let name = self.ident()?;
            let op = if self.eat("=~") {
                MatchOp::Re
            } else if self.eat("!~") {
                MatchOp::Nre
            } else if self.eat("!=") {
                MatchOp::Ne
            } else if self.eat("=") {
                MatchOp::Eq
            } else {
                return Err(self.err("=, !=, =~ or !~"));
            };
            let value = self.string()?;
            let re = matches!(op, MatchOp::Re | MatchOp::Nre)
                .then(|| anchored(&value))
                .transpose()?;
            out.push(LabelMatcher { name, op, value, re });
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        if out.iter().all(|m| m.matches("")) {
            return Err(
                "queries require at least one label matcher that does not match the empty string, such as {job=\"x\"}"
                    .into(),
            );
        }
        Ok(out)
    }

    fn label_list(&mut self) -> Result<Vec<(String, Option<LabelMatcher>)>, String> {
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            let save = self.pos;
            self.ws();
            let m = if self.rest().starts_with("=~")
                || self.rest().starts_with("!~")
                || self.rest().starts_with("!=")
                || (self.rest().starts_with('=') && !self.rest().starts_with("=="))
            {
                let op = if self.eat("=~") {
                    MatchOp::Re
                } else if self.eat("!~") {
                    MatchOp::Nre
                } else if self.eat("!=") {
                    MatchOp::Ne
                } else {
                    self.expect("=")?;
                    MatchOp::Eq
                };
                let value = self.string()?;
                let re = matches!(op, MatchOp::Re | MatchOp::Nre)
                    .then(|| anchored(&value))
                    .transpose()?;
                Some(LabelMatcher {
                    name: name.clone(),
                    op,
                    value,
                    re,
                })
            } else {
                self.pos = save;
                None
            };
            out.push((name, m));
            if !self.eat(",") {
                return Ok(out);
            }
        }
    }

    fn label_primary(&mut self) -> Result<LabelExpr, String> {
        if self.eat("(") {
            let e = self.label_or()?;
            self.expect(")")?;
            return Ok(e);
        }
        let name = self.ident()?;
        self.ws();
        let ops: [(&str, CmpOp); 9] = [
            ("==", CmpOp::Eq),
            ("=~", CmpOp::Re),
            ("!~", CmpOp::Nre),
            ("!=", CmpOp::Ne),
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("=", CmpOp::Eq),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ];
        let op = ops
            .iter()
            .find(|(t, _)| self.eat(t))
            .map(|(_, o)| *o)
            .ok_or_else(|| self.err("a comparison (=, !=, =~, !~, >, >=, <, <=, ==)"))?;
        self.ws();
        if matches!(self.peek(), Some('"' | '`')) {
            let value = self.string()?;
            let mop = match op {
                CmpOp::Eq => MatchOp::Eq,
                CmpOp::Ne => MatchOp::Ne,
                CmpOp::Re => MatchOp::Re,
                CmpOp::Nre => MatchOp::Nre,
                _ => return Err(self.err("a number after >, >=, <, <=")),
            };
            let re = matches!(mop, MatchOp::Re | MatchOp::Nre)
                .then(|| anchored(&value))
                .transpose()?;
            return Ok(LabelExpr::Str(LabelMatcher {
                name,
                op: mop,
                value,
                re,
            }));
        }
        if matches!(op, CmpOp::Re | CmpOp::Nre) {
            return Err(self.err("a quoted regex"));
        }
        let r = self.rest();
        let n = r
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphanumeric() || c == '.' || (i == 0 && c == '-')))
            .map_or(r.len(), |(i, _)| i);
        let value = parse_number(&r[..n]).ok_or_else(|| self.err("a number, duration (10s) or size (5MB)"))?;
        self.pos += n;
        Ok(LabelExpr::Num { name, op, value })
    }

    fn label_and(&mut self) -> Result<LabelExpr, String> {
        let mut e = self.label_primary()?;
        loop {
            let save = self.pos;
            if self.eat(",") || (self.peek_ident() == "and" && self.eat("and")) {
                e = LabelExpr::And(Box::new(e), Box::new(self.label_primary()?));
            } else {
                // `| a="x" | b="y"` or a plain space before the next label filter is an `and` too.
                self.ws();
                let id = self.peek_ident();
                if !id.is_empty() && id != "or" && id != "and" && id != "by" && id != "without" && id != "offset" {
                    let save2 = self.pos;
                    match self.label_primary() {
                        Ok(r) => {
                            e = LabelExpr::And(Box::new(e), Box::new(r));
                            continue;
                        }
                        Err(_) => self.pos = save2,
                    }
                }
                self.pos = save;
                return Ok(e);
            }
        }
    }

    fn label_or(&mut self) -> Result<LabelExpr, String> {
        let mut e = self.label_and()?;
        while self.peek_ident() == "or" {
            self.eat("or");
            e = LabelExpr::Or(Box::new(e), Box::new(self.label_and()?));
        }
        Ok(e)
    }

    /// Parses stages until something that is not a stage. `metric`: accept `unwrap`.
    fn stages(&mut self, log: &mut LogExpr, metric: bool) -> Result<(), String> {
        loop {
            self.ws();
            let r = self.rest();
            let filter = [
                ("|=", FilterOp::Contains),
                ("!=", FilterOp::NotContains),
                ("|~", FilterOp::Regex),
                ("!~", FilterOp::NotRegex),
            ]
            .into_iter()
            .find(|(t, _)| r.starts_with(t));
            if let Some((t, op)) = filter {
                self.pos += t.len();
                let compile = |value: &str| {
                    matches!(op, FilterOp::Regex | FilterOp::NotRegex)
                        .then(|| Regex::new(value).map_err(|e| format!("invalid regex {value:?}: {e}")))
                        .transpose()
                };
                let value = self.string()?;
                let re = compile(&value)?;
                let mut or = Vec::new();
                while self.peek_ident() == "or" {
                    self.eat("or");
                    let v = self.string()?;
                    let r = compile(&v)?;
                    or.push((v, r));
                }
                log.stages.push(Stage::LineFilter { op, value, re, or });
                continue;
            }
            if !r.starts_with('|') {
                return Ok(());
            }
            self.pos += 1;
            let save = self.pos;
            let kw = self.peek_ident();
            match kw.as_str() {
                "json" => {
                    self.ident()?;
                    log.stages.push(Stage::Json);
                }
                "logfmt" => {
                    self.ident()?;
                    log.stages.push(Stage::Logfmt);
                }
                "regexp" => {
                    self.ident()?;
                    let p = self.string()?;
                    let re = Regex::new(&p).map_err(|e| format!("invalid regexp {p:?}: {e}"))?;
                    if re.capture_names().flatten().next().is_none() {
                        return Err(format!("regexp {p:?} has no named capture group (?P<name>...)"));
                    }
                    log.stages.push(Stage::Regexp(re));
                }
                "pattern" => {
                    self.ident()?;
                    let p = self.string()?;
                    log.stages.push(Stage::Pattern(parse_pattern(&p)?));
                }
                "line_format" => {
                    self.ident()?;
                    let t = self.string()?;
                    log.stages.push(Stage::LineFormat(parse_template(&t)?));
                }
                "label_format" => {
                    self.ident()?;
                    let mut list = Vec::new();
                    loop {
                        let name = self.ident()?;
                        self.expect("=")?;
                        self.ws();
                        let f = if matches!(self.peek(), Some('"' | '`')) {
                            LabelFormat::Template(parse_template(&self.string()?)?)
                        } else {
                            LabelFormat::Rename(self.ident()?)
                        };
                        list.push((name, f));
                        if !self.eat(",") {
                            break;
                        }
                    }
                    log.stages.push(Stage::LabelFormat(list));
                }
                "drop" => {
                    self.ident()?;
                    log.stages.push(Stage::Drop(self.label_list()?));
                }
                "keep" => {
                    self.ident()?;
                    log.stages.push(Stage::Keep(self.label_list()?));
                }
                "unwrap" if metric => {
                    self.ident()?;
                    let f = self.ident()?;
                    let u = if matches!(f.as_str(), "duration" | "duration_seconds" | "bytes") && self.eat("(") {
                        let l = self.ident()?;
                        self.expect(")")?;
                        (
                            l,
                            if f == "bytes" {
                                Conversion::Bytes
                            } else {
                                Conversion::Duration
                            },
                        )
                    } else {
                        (f, Conversion::Plain)
                    };
                    log.unwrap = Some(u);
                }
                "unwrap" => {
                    return Err("unwrap is only allowed inside a range aggregation such as sum_over_time".into());
                }
                "" => {
                    self.pos = save;
                    return Err(self.err("a stage after |"));
                }
                _ => {
                    log.stages.push(Stage::LabelFilter(self.label_or()?));
                }
            }
        }
    }

    fn log_expr(&mut self, metric: bool) -> Result<LogExpr, String> {
        let mut log = LogExpr {
            matchers: self.selector()?,
            stages: Vec::new(),
            unwrap: None,
        };
        self.stages(&mut log, metric)?;
        Ok(log)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, String> {
        let id = self.peek_ident();
        if id != "by" && id != "without" {
            return Ok(None);
        }
        self.ident()?;
        self.expect("(")?;
        let mut labels = Vec::new();
        if !self.eat(")") {
            loop {
                labels.push(self.ident()?);
                if !self.eat(",") {
                    break;
                }
            }
            self.expect(")")?;
        }
        Ok(Some(Grouping {
            without: id == "without",
            labels,
        }))
    }

    fn metric(&mut self) -> Result<MetricExpr, String> {
        self.binary(0)
    }

    fn binop(&mut self) -> Option<BinOp> {
        self.ws();
        let symbols = [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            (">=", BinOp::Ge),
            ("<=", BinOp::Le),
            (">", BinOp::Gt),
            ("<", BinOp::Lt),
            ("^", BinOp::Pow),
            ("*", BinOp::Mul),
            ("/", BinOp::Div),
            ("%", BinOp::Mod),
            ("+", BinOp::Add),
            ("-", BinOp::Sub),
        ];
        for (t, op) in symbols {
            if self.rest().starts_with(t) {
                self.pos += t.len();
                return Some(op);
            }
        }
        let op = match self.peek_ident().as_str() {
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "unless" => BinOp::Unless,
            _ => return None,
        };
        self.ident().ok()?;
        Some(op)
    }

    fn names(&mut self) -> Result<Vec<String>, String> {
        self.expect("(")?;
        let mut out = Vec::new();
        if self.eat(")") {
            return Ok(out);
        }
        loop {
            out.push(self.ident()?);
            if !self.eat(",") {
                break;
            }
        }
        self.expect(")")?;
        Ok(out)
    }

    /// Precedence climbing over binary operators.
    fn binary(&mut self, min: u8) -> Result<MetricExpr, String> {
        let mut lhs = self.metric_primary()?;
        loop {
            let save = self.pos;
            let Some(op) = self.binop() else { break };
            let (prec, right) = op.precedence();
            if prec < min {
                self.pos = save;
                break;
            }
            let return_bool = self.peek_ident() == "bool" && self.ident().is_ok();
            if return_bool && !op.is_comparison() {
                return Err(self.err("bool only after a comparison operator"));
            }
            let mut matching = VectorMatching::default();
            let w = self.peek_ident();
            if w == "on" || w == "ignoring" {
                matching.on = w == "on";
                self.ident()?;
                matching.labels = self.names()?;
            }
            let w = self.peek_ident();
            if w == "group_left" || w == "group_right" {
                if op.is_set() {
                    return Err(self.err("no group modifier with and, or, unless"));
                }
                matching.group_left = Some(w == "group_left");
                self.ident()?;
                self.ws();
                if self.peek() == Some('(') {
                    matching.include = self.names()?;
                }
            }
            let rhs = self.binary(if right { prec } else { prec + 1 })?;
            lhs = MetricExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                return_bool,
                matching,
            };
        }
        Ok(lhs)
    }

    fn metric_primary(&mut self) -> Result<MetricExpr, String> {
        if self.eat("(") {
            let e = self.metric()?;
            self.expect(")")?;
            return Ok(e);
        }
        self.ws();
        if self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-') {
            return Ok(MetricExpr::Scalar(self.number()?));
        }
        let name = self.ident()?;
        let range_fn = match name.as_str() {
            "count_over_time" => Some(RangeFn::Count),
            "rate" => Some(RangeFn::Rate),
            "bytes_over_time" => Some(RangeFn::Bytes),
            "bytes_rate" => Some(RangeFn::BytesRate),
            "absent_over_time" => Some(RangeFn::Absent),
            "sum_over_time" => Some(RangeFn::Sum),
            "avg_over_time" => Some(RangeFn::Avg),
            "min_over_time" => Some(RangeFn::Min),
            "max_over_time" => Some(RangeFn::Max),
            "quantile_over_time" => Some(RangeFn::Quantile),
            "first_over_time" => Some(RangeFn::First),
            "last_over_time" => Some(RangeFn::Last),
            _ => None,
        };
        if let Some(func) = range_fn {
            self.expect("(")?;
            let param = if func == RangeFn::Quantile {
                let q = self.number()?;
                self.expect(",")?;
                Some(q)
            } else {
                None
            };
            let mut log = self.log_expr(true)?;
            self.expect("[")?;
            let range_ns = self.duration()?;
            self.expect("]")?;
            // The pipeline may also follow the range: `count_over_time({a="b"}[5m] |= "x")`.
            self.stages(&mut log, true)?;
            let offset_ns = if self.peek_ident() == "offset" {
                self.ident()?;
                self.duration()?
            } else {
                0
            };
            self.expect(")")?;
            let grouping = self.grouping()?;
            let unwrapped = matches!(
                func,
                RangeFn::Sum
                    | RangeFn::Avg
                    | RangeFn::Min
                    | RangeFn::Max
                    | RangeFn::Quantile
                    | RangeFn::First
                    | RangeFn::Last
            );
            if unwrapped && log.unwrap.is_none() {
                return Err(format!("{name} needs `| unwrap <label>` in its log expression"));
            }
            if !unwrapped && log.unwrap.is_some() {
                return Err(format!("{name} does not take `| unwrap`"));
            }
            return Ok(MetricExpr::Range {
                func,
                param,
                log,
                range_ns,
                offset_ns,
                grouping,
            });
        }
        let op = match name.as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            _ => return Err(format!("parse error: unknown function or aggregation {name:?}")),
        };
        let mut grouping = self.grouping()?;
        self.expect("(")?;
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let k = self.number()?;
            self.expect(",")?;
            Some(k)
        } else {
            None
        };
        let inner = self.metric()?;
        self.expect(")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(MetricExpr::Agg {
            op,
            param,
            grouping,
            inner: Box::new(inner),
        })
    }
}

/// A number, a duration (`10s` → seconds) or a size (`5MB` → bytes).
pub fn parse_number(t: &str) -> Option<f64> {
    if let Ok(v) = t.parse::<f64>() {
        return Some(v);
    }
    if let Ok(d) = t.parse::<tidewatch_model::Duration>() {
        return Some(d.as_std().as_secs_f64());
    }
    t.parse::<tidewatch_model::ByteSize>().ok().map(|b| b.bytes() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        for q in [
            r#"{job="a"}"#,
            r#"{job="a", node!="b", x=~"c.*", y!~"d"} |= "x" != "y" |~ "z+" !~ "w""#,
            r#"{job="a"} | json | level="error" and status >= 500 or dur > 10s | line_format "{{.level}}: {{__line__}}""#,
            r#"{job="a"} | logfmt | label_format lvl=level, x="{{.a}}-{{.b}}" | drop a, b="x" | keep lvl"#,
            r#"{job="a"} | regexp "(?P<ip>\\d+\\.\\d+)" | pattern "<_> <method> <path>""#,
            r#"sum by (job) (count_over_time({job="a"} |= "x" [5m]))"#,
            r#"topk(3, sum without (node) (rate({job="a"}[1m] offset 1h)))"#,
            r#"quantile_over_time(0.99, {job="a"} | logfmt | unwrap duration(took) [5m]) by (job)"#,
            r#"sum(bytes_rate({job="a"}[5m])) by (job)"#,
            r#"absent_over_time({job="nope"}[1m])"#,
            r#"{job="a"} |= "x" or "y" != "z" or `w` |~ "a+" or "b+""#,
            r#"sum(rate({a="b"}[1m])) / sum(rate({a="b"}[1m])) > bool 0.5"#,
            r#"count_over_time({a="b"}[1m]) * on (a) group_left (c) count_over_time({c="d"}[1m]) + 2 ^ 3 ^ 2"#,
            r#"1 - -2 * 3"#,
            r#"count_over_time({a="b"}[1m]) > 10 or count_over_time({a="b"}[1m]) unless ignoring (x) rate({a="c"}[1m])"#,
        ] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        for bad in [
            r#"{job=""}"#,
            r#"{job="a""#,
            r#"sum_over_time({a="b"}[5m])"#,
            r#"{a="b"} | unwrap x"#,
            r#"foo({a="b"}[5m])"#,
            r#"{a="b"} |~ "(""#,
            r#"count_over_time({a="b"}[5])"#,
            r#"count_over_time({a="b"}[5m]) + bool 1"#,
            r#"count_over_time({a="b"}[5m]) and group_left count_over_time({a="b"}[5m])"#,
            r#"count_over_time({a="b"}[5m]) >"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // precedence: 1 + 2 * 3 ^ 2 ^ 0.5 parses as 1 + (2 * (3 ^ (2 ^ 0.5)))
        let Ok(Expr::Metric(MetricExpr::Binary {
            op: BinOp::Add, rhs, ..
        })) = parse("1 + 2 * 3 ^ 2 ^ 0.5")
        else {
            panic!("precedence")
        };
        let MetricExpr::Binary {
            op: BinOp::Mul, rhs, ..
        } = *rhs
        else {
            panic!("*")
        };
        let MetricExpr::Binary {
            op: BinOp::Pow, rhs, ..
        } = *rhs
        else {
            panic!("^")
        };
        assert!(matches!(*rhs, MetricExpr::Binary { op: BinOp::Pow, .. }));
    }
}
