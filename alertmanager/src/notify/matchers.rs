//! Alertmanager's label matchers: the legacy `match`/`match_re` maps, the `matchers:` strings
//! (`a="b"`, `c =~ d`, `{x!="y", z!~"w"}`), and the API's `{name, value, isRegex, isEqual}`.

use std::collections::BTreeMap;
use std::fmt;

/// A label set as Alertmanager sees it: sorted names, missing label = empty value.
pub type LabelSet = BTreeMap<String, String>;

/// The four matcher kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchType {
    fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// One `name op value` condition.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The operator.
    pub kind: MatchType,
    /// The value (for regexes: as written; anchoring is implicit).
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

impl Matcher {
    /// Builds a matcher; a regex is anchored at both ends as in Alertmanager.
    pub fn new(name: impl Into<String>, kind: MatchType, value: impl Into<String>) -> Result<Self, String> {
        let (name, value) = (name.into(), value.into());
        if !valid_label_name(&name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?} for label {name}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            kind,
            value,
            regex,
        })
    }

    /// Whether `value` (empty for a missing label) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.kind, &self.regex) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regex, Some(r)) => r.is_match(value),
            (MatchType::NotRegex, Some(r)) => !r.is_match(value),
            _ => false,
        }
    }

    /// Whether the label set satisfies the matcher.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.kind.as_str(), go_quote(&self.value))
    }
}

/// A conjunction of matchers, printed as Alertmanager's `{a="b",c=~"d"}` (sorted by name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Whether every matcher accepts the label set.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }

    /// Sorts as Alertmanager's `labels.Matchers` (name, then type, then value).
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.name, a.kind, &a.value).cmp(&(&b.name, b.kind, &b.value)));
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// Prometheus' label name syntax.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Go's `strconv.Quote` for the printable ASCII and UTF-8 cases we meet in label values.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses one `matchers:` entry, which may hold several comma-separated matchers, with or
/// without braces, values quoted or bare (Alertmanager's `labels.ParseMatchers`).
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, String> {
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("missing closing '}}' in {input:?}"))?;
    }
    let mut out = Vec::new();
    for part in split_outside_quotes(s)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(parse_matcher(part)?);
    }
    Ok(out)
}

fn split_outside_quotes(s: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut start, mut in_quotes, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err(format!("unterminated quote in {s:?}"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let name = &s[..name_end];
    let rest = s[name_end..].trim_start();
    let (kind, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (MatchType::Regex, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (MatchType::NotRegex, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (MatchType::Equal, r)
    } else {
        return Err(format!(
            "bad matcher format {s:?}: expected name, one of = != =~ !~, value"
        ));
    };
    let raw = rest.trim();
    let value = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        go_unquote(&raw[1..raw.len() - 1]).ok_or_else(|| format!("invalid quoted value in matcher {s:?}"))?
    } else {
        raw.to_string()
    };
    Matcher::new(name, kind, value).map_err(|e| format!("matcher {s:?}: {e}"))
}

fn go_unquote(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            c @ ('"' | '\\' | '\'') => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// A matcher as the API v2 shows and accepts it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMatcher {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// `=~`/`!~`.
    pub is_regex: bool,
    /// `=`/`=~` (default true, as in Alertmanager).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl ApiMatcher {
    /// The matcher it stands for.
    pub fn to_matcher(&self) -> Result<Matcher, String> {
        let kind = match (self.is_regex, self.is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regex,
            (true, false) => MatchType::NotRegex,
        };
        Matcher::new(&self.name, kind, &self.value)
    }

    /// The API form of a matcher.
    pub fn from_matcher(m: &Matcher) -> Self {
        ApiMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.kind, MatchType::Regex | MatchType::NotRegex),
            is_equal: matches!(m.kind, MatchType::Equal | MatchType::Regex),
        }
    }
}

/// Alertmanager's alert fingerprint: FNV-1a 64 over sorted `name 0xff value 0xff`.
pub fn fingerprint(labels: &LabelSet) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write(&[0xff]);
        h.write(v.as_bytes());
        h.write(&[0xff]);
    }
    h.finish()
}

/// `{a="b", c="d"}` as Prometheus' `LabelSet.String()`.
pub fn labelset_string(labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spacings_and_braces() {
        let ms = parse_matchers(r#"{severity =~ warning|info, a!="b,c"}"#).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].kind, MatchType::Regex);
        assert_eq!(ms[0].value, "warning|info");
        assert_eq!(ms[1].value, "b,c");
        assert!(parse_matchers("=x").is_err());
        assert!(parse_matchers(r#"a=~"(""#).is_err());
    }
}
