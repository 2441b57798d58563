//! The `@` re-runs of Prometheus' test harness (`atModifierTestCases`), done on the expression
//! text: every vector selector, range selector and subquery without an `@` gets `@ <eval time>`;
//! selectors inside a subquery are left alone (the subquery gets the `@`); an expression calling a
//! function whose result depends on the evaluation time gets no re-runs at all (calls inside a
//! subquery do not count, as in Prometheus, whose walk skips a subquery's children once the
//! subquery has an `@`).
//!
//! A small PromQL scanner finds the selectors: it knows literals, strings, selectors, calls,
//! aggregations with `by`/`without`, binary operators with `bool`/`on`/`ignoring`/`group_*`,
//! brackets (range or subquery), `offset` and `@`. It does not check the grammar: the server
//! does. An expression it cannot follow yields an error, and the runner skips these re-runs.

/// Functions whose value depends on the evaluation time although their arguments do not
/// (`promql.AtModifierUnsafeFunctions`).
pub const AT_MODIFIER_UNSAFE_FUNCTIONS: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The re-runs of an instant eval at `t_ms`: the rewritten expression and the evaluation times
/// (`-10t, 0, t/5, t, 10t`, or `-1000, 0, 1000` when `t` is 0). `Ok(None)` when the expression
/// calls a time-dependent function (no re-runs).
pub fn at_modifier_cases(expr: &str, t_ms: i64) -> Result<Option<(String, Vec<i64>)>, String> {
    let Some(rewritten) = inject_at(expr, t_ms)? else {
        return Ok(None);
    };
    let times = if t_ms == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t_ms, 0, t_ms / 5, t_ms, 10 * t_ms]
    };
    Ok(Some((rewritten, times)))
}

/// Adds `@ <t>` (seconds) to every selector and subquery of `expr` that lacks one, outside
/// subqueries. `Ok(None)` when an at-modifier-unsafe function is called outside subqueries.
pub fn inject_at(expr: &str, t_ms: i64) -> Result<Option<String>, String> {
    let tokens = lex(expr)?;
    let mut p = Scanner {
        toks: &tokens,
        pos: 0,
        inserts: Vec::new(),
        unsafe_call: false,
    };
    p.expr()?;
    if p.pos != tokens.len() {
        return Err(format!(
            "unexpected {:?} at byte {}",
            tokens[p.pos].kind, tokens[p.pos].start
        ));
    }
    if p.unsafe_call {
        return Ok(None);
    }
    let at = format!(" @ {}", at_seconds(t_ms));
    let mut out = expr.to_string();
    let mut inserts = p.inserts;
    inserts.sort_unstable();
    for pos in inserts.into_iter().rev() {
        out.insert_str(pos, &at);
    }
    Ok(Some(out))
}

fn at_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    Number,
    Str,
    LParen,
    RParen,
    LBrace,
    RBrace,
    /// A whole `[...]`, with whether it holds a `:` (subquery).
    Bracket {
        subquery: bool,
    },
    Comma,
    At,
    Op,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                i += 1;
                Kind::LParen
            }
            b')' => {
                i += 1;
                Kind::RParen
            }
            b'{' => {
                i += 1;
                Kind::LBrace
            }
            b'}' => {
                i += 1;
                Kind::RBrace
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'@' => {
                i += 1;
                Kind::At
            }
            b'[' => {
                let mut subquery = false;
                i += 1;
                while i < b.len() && b[i] != b']' {
                    subquery |= b[i] == b':';
                    i += 1;
                }
                if i == b.len() {
                    return Err("unterminated '['".to_string());
                }
                i += 1;
                Kind::Bracket { subquery }
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err("unterminated string".to_string());
                }
                i += 1;
                Kind::Str
            }
            b'0'..=b'9' | b'.' => {
                i += 1;
                while i < b.len() {
                    let d = b[i];
                    let word = d.is_ascii_alphanumeric() || d == b'.' || d == b'_';
                    // An exponent sign: `1e-3` (not in hex, where `e` is a digit).
                    let exponent = (d == b'+' || d == b'-')
                        && matches!(b[i - 1], b'e' | b'E')
                        && !src[start..i].contains(['x', 'X']);
                    if !(word || exponent) {
                        break;
                    }
                    i += 1;
                }
                Kind::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                Kind::Ident(src[start..i].to_string())
            }
            b'=' | b'!' | b'<' | b'>' => {
                i += 1;
                if i < b.len() && matches!(b[i], b'=' | b'~') {
                    i += 1;
                }
                Kind::Op
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                i += 1;
                Kind::Op
            }
            other => return Err(format!("unexpected character {:?}", other as char)),
        };
        toks.push(Token { kind, start, end: i });
    }
    Ok(toks)
}

struct Scanner<'a> {
    toks: &'a [Token],
    pos: usize,
    /// Byte offsets where `@ t` goes.
    inserts: Vec<usize>,
    unsafe_call: bool,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<&Kind> {
        self.toks.get(self.pos).map(|t| &t.kind)
    }

    /// The next token as a keyword: PromQL keywords are case-insensitive (`SUM BY (x)`).
    fn peek_ident(&self) -> Option<String> {
        match self.peek() {
            Some(Kind::Ident(s)) => Some(s.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn next(&mut self) -> Result<&Token, String> {
        let t = self.toks.get(self.pos).ok_or("unexpected end of expression")?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, kind: Kind) -> Result<(), String> {
        let t = self.next()?;
        if t.kind != kind {
            return Err(format!("expected {kind:?}, found {:?} at byte {}", t.kind, t.start));
        }
        Ok(())
    }

    fn prev_end(&self) -> usize {
        self.toks[self.pos - 1].end
    }

    /// Skips a balanced `( ... )` (label lists, parenthesised durations).
    fn skip_parens(&mut self) -> Result<(), String> {
        self.expect(Kind::LParen)?;
        let mut depth = 1;
        while depth > 0 {
            match self.next()?.kind {
                Kind::LParen => depth += 1,
                Kind::RParen => depth -= 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn skip_braces(&mut self) -> Result<(), String> {
        self.expect(Kind::LBrace)?;
        while self.next()?.kind != Kind::RBrace {}
        Ok(())
    }

    fn expr(&mut self) -> Result<(), String> {
        loop {
            while matches!(self.peek(), Some(Kind::Op)) {
                let t = &self.toks[self.pos];
                if t.end - t.start != 1 {
                    return Err(format!("unexpected operator at byte {}", t.start));
                }
                self.pos += 1; // unary + or -
            }
            self.primary()?;
            let binary = match self.peek() {
                Some(Kind::Op) => true,
                Some(Kind::Ident(s)) => matches!(s.to_ascii_lowercase().as_str(), "and" | "or" | "unless" | "atan2"),
                _ => false,
            };
            if !binary {
                return Ok(());
            }
            self.pos += 1;
            if self.peek_ident().as_deref() == Some("bool") {
                self.pos += 1;
            }
            if matches!(self.peek_ident().as_deref(), Some("on" | "ignoring")) {
                self.pos += 1;
                self.skip_parens()?;
            }
            if matches!(self.peek_ident().as_deref(), Some("group_left" | "group_right")) {
                self.pos += 1;
                if self.peek() == Some(&Kind::LParen) {
                    self.skip_parens()?;
                }
            }
        }
    }

    fn args(&mut self) -> Result<(), String> {
        self.expect(Kind::LParen)?;
        if self.peek() == Some(&Kind::RParen) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.expr()?;
            match self.next()?.kind {
                Kind::Comma => {
                    // A trailing comma is allowed by Prometheus' grammar.
                    if self.peek() == Some(&Kind::RParen) {
                        self.pos += 1;
                        return Ok(());
                    }
                }
                Kind::RParen => return Ok(()),
                ref k => return Err(format!("expected ',' or ')', found {k:?}")),
            }
        }
    }

    fn primary(&mut self) -> Result<(), String> {
        let mark = self.inserts.len();
        let unsafe_mark = self.unsafe_call;
        let tok = self.next()?.clone();
        let mut selector = false;
        match &tok.kind {
            Kind::LParen => {
                self.expr()?;
                self.expect(Kind::RParen)?;
            }
            Kind::Number | Kind::Str => {}
            Kind::LBrace => {
                self.pos -= 1;
                self.skip_braces()?;
                selector = true;
            }
            Kind::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let is_agg = AGGREGATORS.contains(&lower.as_str());
                if is_agg && matches!(self.peek_ident().as_deref(), Some("by" | "without")) {
                    self.pos += 1;
                    self.skip_parens()?;
                    self.args()?;
                } else if self.peek() == Some(&Kind::LParen) {
                    if AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&name.as_str()) {
                        self.unsafe_call = true;
                    }
                    self.args()?;
                    if is_agg && matches!(self.peek_ident().as_deref(), Some("by" | "without")) {
                        self.pos += 1;
                        self.skip_parens()?;
                    }
                } else if lower == "inf" || lower == "nan" {
                    // A number literal.
                } else {
                    if self.peek() == Some(&Kind::LBrace) {
                        self.skip_braces()?;
                    }
                    selector = true;
                }
            }
            other => return Err(format!("unexpected {other:?} at byte {}", tok.start)),
        }
        // Postfix: range or subquery brackets, offset, @.
        let mut insert_at = self.prev_end();
        let mut subquery = false;
        let mut has_at = false;
        loop {
            match self.peek() {
                Some(Kind::Bracket { subquery: true }) => {
                    // Everything inside a subquery is left alone, time-dependent calls included.
                    self.inserts.truncate(mark);
                    self.unsafe_call = unsafe_mark;
                    self.pos += 1;
                    insert_at = self.prev_end();
                    subquery = true;
                    selector = false;
                    has_at = false;
                }
                Some(Kind::Bracket { subquery: false }) => {
                    self.pos += 1;
                    insert_at = self.prev_end();
                }
                Some(Kind::Ident(s)) if s.eq_ignore_ascii_case("offset") => {
                    self.pos += 1;
                    if matches!(self.peek(), Some(Kind::Op)) {
                        self.pos += 1;
                    }
                    if self.peek() == Some(&Kind::LParen) {
                        self.skip_parens()?;
                    } else {
                        self.next()?;
                    }
                }
                Some(Kind::At) => {
                    self.pos += 1;
                    has_at = true;
                    if matches!(self.peek(), Some(Kind::Op)) {
                        self.pos += 1;
                    }
                    match self.peek() {
                        Some(Kind::LParen) => self.skip_parens()?,
                        Some(Kind::Ident(s)) if matches!(s.to_ascii_lowercase().as_str(), "start" | "end") => {
                            self.pos += 1;
                            self.skip_parens()?;
                        }
                        _ => {
                            self.next()?;
                        }
                    }
                }
                _ => break,
            }
        }
        if (selector || subquery) && !has_at {
            self.inserts.push(insert_at);
        }
        Ok(())
    }
}
