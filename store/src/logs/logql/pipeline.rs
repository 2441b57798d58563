//! Runs a pipeline's stages on one line and its labels.

use std::collections::BTreeMap;

use super::parse::{CmpOp, Conversion, FilterOp, LabelExpr, LabelFormat, PatternPart, Stage, TemplatePart};

/// Labels while a pipeline runs (parsers add, formats rename).
pub type LabelMap = BTreeMap<String, String>;

/// The error label parsers set, as Loki does.
pub const ERROR_LABEL: &str = "__error__";

/// Runs `stages`; `None` when a filter drops the line.
pub fn run(stages: &[Stage], line: &mut String, labels: &mut LabelMap) -> Option<()> {
    for stage in stages {
        match stage {
            Stage::LineFilter { op, value, re, or } => {
                let hit = |value: &str, re: &Option<regex::Regex>| match op {
                    FilterOp::Contains | FilterOp::NotContains => line.contains(value),
                    FilterOp::Regex | FilterOp::NotRegex => re.as_ref().is_some_and(|r| r.is_match(line)),
                };
                let any = hit(value, re) || or.iter().any(|(v, r)| hit(v, r));
                let keep = match op {
                    FilterOp::Contains | FilterOp::Regex => any,
                    FilterOp::NotContains | FilterOp::NotRegex => !any,
                };
                if !keep {
                    return None;
                }
            }
            Stage::Json => match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(map)) => {
                    for (k, v) in map {
                        flatten_json(&sanitize(&k), v, labels);
                    }
                }
                _ => {
                    labels.insert(ERROR_LABEL.into(), "JSONParserErr".into());
                }
            },
            Stage::Logfmt => {
                if !logfmt(line, labels) {
                    labels.insert(ERROR_LABEL.into(), "LogfmtParserErr".into());
                }
            }
            Stage::Regexp(re) => {
                if let Some(c) = re.captures(line) {
                    for name in re.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            add_extracted(labels, sanitize(name), m.as_str().to_string());
                        }
                    }
                }
            }
            Stage::Pattern(parts) => pattern(parts, line, labels),
            Stage::LabelFilter(e) => {
                if !label_expr(e, labels) {
                    return None;
                }
            }
            Stage::LineFormat(t) => *line = render(t, line, labels),
            Stage::LabelFormat(list) => {
                let before = labels.clone();
                for (name, f) in list {
                    match f {
                        LabelFormat::Rename(from) => {
                            if let Some(v) = labels.remove(from) {
                                labels.insert(name.clone(), v);
                            }
                        }
                        LabelFormat::Template(t) => {
                            let v = render(t, line, &before);
                            labels.insert(name.clone(), v);
                        }
                    }
                }
            }
            Stage::Drop(list) => {
                for (name, m) in list {
                    let matches = m.as_ref().is_none_or(|m| m.matches(labels.get(name).map_or("", |v| v)));
                    if matches {
                        labels.remove(name);
                    }
                }
            }
            Stage::Keep(list) => {
                labels.retain(|k, v| {
                    list.iter()
                        .any(|(name, m)| name == k && m.as_ref().is_none_or(|m| m.matches(v)))
                });
            }
        }
    }
    labels.retain(|_, v| !v.is_empty());
    Some(())
}

/// Label names from parsed keys: anything outside `[a-zA-Z0-9_]` becomes `_`.
fn sanitize(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// A parsed label that clashes with a stream label gets `_extracted`, as in Loki.
fn add_extracted(labels: &mut LabelMap, name: String, value: String) {
    if name.is_empty() {
        return;
    }
    if labels.contains_key(&name) {
        labels.insert(format!("{name}_extracted"), value);
    } else {
        labels.insert(name, value);
    }
}

fn flatten_json(prefix: &str, v: serde_json::Value, labels: &mut LabelMap) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten_json(&format!("{prefix}_{}", sanitize(&k)), v, labels);
            }
        }
        serde_json::Value::String(s) => add_extracted(labels, prefix.to_string(), s),
        serde_json::Value::Null => {}
        serde_json::Value::Array(_) => add_extracted(labels, prefix.to_string(), v.to_string()),
        other => add_extracted(labels, prefix.to_string(), other.to_string()),
    }
}

/// logfmt: `key=value key="quoted value" flag`. False when the line is not logfmt.
fn logfmt(line: &str, labels: &mut LabelMap) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    let mut any = false;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        if key.is_empty() {
            if i < b.len() {
                return false;
            }
            break;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && b[i] == b'"' {
                match super::parse::unquote(&line[i..]) {
                    Ok((v, n)) => {
                        value = v;
                        i += n;
                    }
                    Err(_) => return false,
                }
            } else {
                let vs = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                value = line[vs..i].to_string();
            }
        }
        any = true;
        add_extracted(labels, sanitize(key), value);
    }
    any
}

fn pattern(parts: &[PatternPart], line: &str, labels: &mut LabelMap) {
    let mut rest = line;
    let mut found = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        match &parts[i] {
            PatternPart::Lit(l) => {
                let Some(r) = rest.strip_prefix(l.as_str()) else { return };
                rest = r;
            }
            PatternPart::Capture(name) => {
                let (value, next) = match parts.get(i + 1) {
                    Some(PatternPart::Lit(l)) => match rest.find(l.as_str()) {
                        Some(at) => (&rest[..at], &rest[at..]),
                        None => return,
                    },
                    _ => (rest, ""),
                };
                if let Some(n) = name {
                    found.push((n.clone(), value.to_string()));
                }
                rest = next;
            }
        }
        i += 1;
    }
    for (n, v) in found {
        add_extracted(labels, n, v);
    }
}

fn render(t: &[TemplatePart], line: &str, labels: &LabelMap) -> String {
    super::template::render(t, line, labels)
}

/// Converts a label value for numeric filters and `unwrap`.
pub fn convert(value: &str, conv: Conversion) -> Option<f64> {
    match conv {
        Conversion::Plain => value.trim().parse::<f64>().ok(),
        Conversion::Duration => value
            .trim()
            .parse::<tidewatch_model::Duration>()
            .ok()
            .map(|d| d.as_std().as_secs_f64())
            .or_else(|| value.trim().parse::<f64>().ok()),
        Conversion::Bytes => value
            .trim()
            .parse::<tidewatch_model::ByteSize>()
            .ok()
            .map(|b| b.bytes() as f64),
    }
}

fn label_expr(e: &LabelExpr, labels: &LabelMap) -> bool {
    match e {
        LabelExpr::And(a, b) => label_expr(a, labels) && label_expr(b, labels),
        LabelExpr::Or(a, b) => label_expr(a, labels) || label_expr(b, labels),
        LabelExpr::Str(m) => m.matches(labels.get(&m.name).map_or("", |v| v)),
        LabelExpr::Num { name, op, value } => {
            let Some(v) = labels.get(name).and_then(|s| super::parse::parse_number(s.trim())) else {
                return false;
            };
            match op {
                CmpOp::Eq => v == *value,
                CmpOp::Ne => v != *value,
                CmpOp::Gt => v > *value,
                CmpOp::Ge => v >= *value,
                CmpOp::Lt => v < *value,
                CmpOp::Le => v <= *value,
                CmpOp::Re | CmpOp::Nre => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{Expr, parse};
    use super::*;

    fn apply(q: &str, line: &str) -> Option<(String, LabelMap)> {
        let Expr::Log(l) = parse(q).unwrap() else { panic!() };
        let mut line = line.to_string();
        let mut labels = LabelMap::from([("job".to_string(), "a".to_string())]);
        run(&l.stages, &mut line, &mut labels).map(|_| (line, labels))
    }

    #[test]
    fn stages_transform_lines_and_labels() {
        let (_, l) = apply(
            r#"{job="a"} | json | status >= 500"#,
            r#"{"status":503,"req":{"path":"/x"},"job":"j"}"#,
        )
        .unwrap();
        assert_eq!(l["req_path"], "/x");
        assert_eq!(l["job_extracted"], "j");
        assert!(apply(r#"{job="a"} | json | status >= 500"#, r#"{"status":200}"#).is_none());
        let (line, l) = apply(
            r#"{job="a"} | logfmt | line_format "{{.level}}: {{.msg}}""#,
            r#"level=warn msg="disk full" took=5ms"#,
        )
        .unwrap();
        assert_eq!(line, "warn: disk full");
        assert_eq!(l["took"], "5ms");
        let (_, l) = apply(
            r#"{job="a"} | pattern "<ip> - - [<_>] \"<method> <path> <_>\"""#,
            r#"1.2.3.4 - - [x] "GET /a HTTP/1.1""#,
        )
        .unwrap();
        assert_eq!(
            (l["ip"].as_str(), l["method"].as_str(), l["path"].as_str()),
            ("1.2.3.4", "GET", "/a")
        );
        let (_, l) = apply(
            r#"{job="a"} | regexp "user (?P<user>\\w+)" | label_format who=user | drop job | keep who"#,
            "Invalid user admin from",
        )
        .unwrap();
        assert_eq!(l, LabelMap::from([("who".to_string(), "admin".to_string())]));
        assert!(apply(r#"{job="a"} |= "x" != "y""#, "xy").is_none());
        assert!(apply(r#"{job="a"} |~ "x.z""#, "xyz").is_some());
    }
}
