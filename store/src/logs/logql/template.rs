//! The templates of `line_format` and `label_format`: Go text/template actions as Loki uses
//! them, `{{.label}}`, `{{__line__}}`, and pipelines of the string functions Loki documents
//! (`{{ .a | ToUpper }}`, `{{ Replace .msg "a" "b" -1 }}`, `{{ .path | trimPrefix "/api" }}`).
//! As in Go, a pipeline passes each command's result as the last argument of the next.

use regex::Regex;

/// A piece of a template.
#[derive(Clone, Debug)]
pub enum TemplatePart {
    /// Literal text.
    Lit(String),
    /// `{{.name}}`
    Label(String),
    /// `{{__line__}}`
    Line,
    /// `{{ cmd | cmd ... }}` with functions.
    Pipe(Vec<Command>),
}

/// One command of a pipeline: a function and its arguments, or a single value.
#[derive(Clone, Debug)]
pub struct Command {
    /// `None`: the command is its one argument.
    pub func: Option<Func>,
    /// The written arguments (a pipeline adds the previous result after them).
    pub args: Vec<Arg>,
}

/// An argument.
#[derive(Clone, Debug)]
pub enum Arg {
    /// `.name`
    Label(String),
    /// `__line__`
    Line,
    /// `"text"` or a number, as written.
    Str(String),
}

/// The functions: Go's `strings` names as Loki exposes them, and the sprig names Loki documents.
#[derive(Clone, Debug)]
pub enum Func {
    /// `ToUpper s`, `upper s`
    Upper,
    /// `ToLower s`, `lower s`
    Lower,
    /// `Title s`, `title s`
    Title,
    /// `TrimSpace s`, `trim s`
    TrimSpace,
    /// `Trim s cutset`
    Trim,
    /// `TrimLeft s cutset`
    TrimLeft,
    /// `TrimRight s cutset`
    TrimRight,
    /// `TrimPrefix s prefix`
    TrimPrefix,
    /// `TrimSuffix s suffix`
    TrimSuffix,
    /// `trimAll cutset s`
    TrimAll,
    /// `trimPrefix prefix s`
    SprigTrimPrefix,
    /// `trimSuffix suffix s`
    SprigTrimSuffix,
    /// `Replace s old new n`
    Replace,
    /// `replace old new s`
    SprigReplace,
    /// `trunc n s`
    Trunc,
    /// `substr start end s`
    Substr,
    /// `default fallback s`
    Default,
    /// `regexReplaceAll regex s replacement` (`$1` expands)
    RegexReplaceAll(Regex),
    /// `regexReplaceAllLiteral regex s replacement`
    RegexReplaceAllLiteral(Regex),
}

fn func(name: &str, args: &[Arg]) -> Result<(Func, usize), String> {
    Ok(match name {
        "ToUpper" | "upper" => (Func::Upper, 1),
        "ToLower" | "lower" => (Func::Lower, 1),
        "Title" | "title" => (Func::Title, 1),
        "TrimSpace" | "trim" => (Func::TrimSpace, 1),
        "Trim" => (Func::Trim, 2),
        "TrimLeft" => (Func::TrimLeft, 2),
        "TrimRight" => (Func::TrimRight, 2),
        "TrimPrefix" => (Func::TrimPrefix, 2),
        "TrimSuffix" => (Func::TrimSuffix, 2),
        "trimAll" => (Func::TrimAll, 2),
        "trimPrefix" => (Func::SprigTrimPrefix, 2),
        "trimSuffix" => (Func::SprigTrimSuffix, 2),
        "Replace" => (Func::Replace, 4),
        "replace" => (Func::SprigReplace, 3),
        "trunc" => (Func::Trunc, 2),
        "substr" => (Func::Substr, 3),
        "default" => (Func::Default, 2),
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            let Some(Arg::Str(p)) = args.first() else {
                return Err(format!("{name} takes the regex as its first argument, a string"));
            };
            let re = Regex::new(p).map_err(|e| format!("{name}: invalid regex {p:?}: {e}"))?;
            if name == "regexReplaceAll" {
                (Func::RegexReplaceAll(re), 3)
            } else {
                (Func::RegexReplaceAllLiteral(re), 3)
            }
        }
        _ => {
            return Err(format!(
                "function {name:?} is not supported (ToUpper, ToLower, Title, TrimSpace, Trim, TrimLeft, TrimRight, TrimPrefix, TrimSuffix, Replace, upper, lower, title, trim, trimAll, trimPrefix, trimSuffix, replace, trunc, substr, default, regexReplaceAll, regexReplaceAllLiteral)"
            ));
        }
    })
}

/// Splits an action's text into words: names, `.label`, quoted strings, numbers, and `|`.
fn words(inner: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') || rest.starts_with('`') {
            let (s, n) = super::parse::unquote(rest)?;
            out.push(format!("\"{s}"));
            rest = &rest[n..];
        } else if let Some(r) = rest.strip_prefix('|') {
            out.push("|".into());
            rest = r;
        } else {
            let n = rest
                .find(|c: char| c.is_whitespace() || c == '|' || c == '"' || c == '`')
                .unwrap_or(rest.len());
            out.push(rest[..n].to_string());
            rest = &rest[n..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

fn arg(word: &str) -> Result<Arg, String> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    if word == "__line__" {
        return Ok(Arg::Line);
    }
    if let Some(name) = word.strip_prefix('.')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Ok(Arg::Label(name.to_string()));
    }
    if word.parse::<i64>().is_ok() {
        return Ok(Arg::Str(word.to_string()));
    }
    Err(format!(
        "{word:?} is not a .label, __line__, a quoted string or a number"
    ))
}

/// Parses one action (the text between `{{` and `}}`).
fn action(inner: &str) -> Result<TemplatePart, String> {
    let words = words(inner)?;
    let mut commands = Vec::new();
    for (i, group) in words.split(|w| w == "|").enumerate() {
        let Some(first) = group.first() else {
            return Err("empty command in a pipeline".into());
        };
        let is_func = first.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && first != "__line__";
        let command = if is_func {
            let args = group[1..].iter().map(|w| arg(w)).collect::<Result<Vec<_>, _>>()?;
            let (f, arity) = func(first, &args)?;
            let given = args.len() + usize::from(i > 0);
            if given != arity {
                return Err(format!("{first} takes {arity} arguments, {given} given"));
            }
            Command { func: Some(f), args }
        } else {
            if group.len() != 1 || i > 0 {
                return Err(format!("{:?} is not a function", group.join(" ")));
            }
            Command {
                func: None,
                args: vec![arg(first)?],
            }
        };
        commands.push(command);
    }
    Ok(match commands.as_slice() {
        [Command { func: None, args: one }] => match &one[0] {
            Arg::Label(n) => TemplatePart::Label(n.clone()),
            Arg::Line => TemplatePart::Line,
            Arg::Str(s) => TemplatePart::Lit(s.clone()),
        },
        _ => TemplatePart::Pipe(commands),
    })
}

/// Parses a template.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        if i > 0 {
            out.push(TemplatePart::Lit(rest[..i].to_string()));
        }
        let end = rest[i..]
            .find("}}")
            .ok_or_else(|| format!("template {t:?}: unclosed {{{{"))?;
        let inner = rest[i + 2..i + end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        out.push(action(inner).map_err(|e| format!("template {t:?}: {e}"))?);
        rest = &rest[i + end + 2..];
    }
    if !rest.is_empty() {
        out.push(TemplatePart::Lit(rest.to_string()));
    }
    Ok(out)
}

fn int(s: &str) -> i64 {
    s.trim().parse().unwrap_or(0)
}

fn title(s: &str) -> String {
    // Go's strings.Title: a letter after a separator (not a letter, digit or `_`) is upper-cased.
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

fn apply(f: &Func, a: &[String]) -> String {
    let cut = |set: &str| -> Vec<char> { set.chars().collect() };
    match f {
        Func::Upper => a[0].to_uppercase(),
        Func::Lower => a[0].to_lowercase(),
        Func::Title => title(&a[0]),
        Func::TrimSpace => a[0].trim().to_string(),
        Func::Trim => a[0].trim_matches(cut(&a[1]).as_slice()).to_string(),
        Func::TrimLeft => a[0].trim_start_matches(cut(&a[1]).as_slice()).to_string(),
        Func::TrimRight => a[0].trim_end_matches(cut(&a[1]).as_slice()).to_string(),
        Func::TrimPrefix => a[0].strip_prefix(a[1].as_str()).unwrap_or(&a[0]).to_string(),
        Func::TrimSuffix => a[0].strip_suffix(a[1].as_str()).unwrap_or(&a[0]).to_string(),
        Func::TrimAll => a[1].trim_matches(cut(&a[0]).as_slice()).to_string(),
        Func::SprigTrimPrefix => a[1].strip_prefix(a[0].as_str()).unwrap_or(&a[1]).to_string(),
        Func::SprigTrimSuffix => a[1].strip_suffix(a[0].as_str()).unwrap_or(&a[1]).to_string(),
        Func::Replace => {
            let n = int(&a[3]);
            if n < 0 {
                a[0].replace(a[1].as_str(), &a[2])
            } else {
                a[0].replacen(a[1].as_str(), &a[2], n as usize)
            }
        }
        Func::SprigReplace => a[2].replace(a[0].as_str(), &a[1]),
        Func::Trunc => {
            let n = int(&a[0]);
            let s = &a[1];
            let chars: Vec<char> = s.chars().collect();
            if n >= 0 {
                chars.iter().take(n as usize).collect()
            } else {
                let k = chars.len().saturating_sub(n.unsigned_abs() as usize);
                chars[k..].iter().collect()
            }
        }
        Func::Substr => {
            // sprig: start < 0 → s[:end]; end < 0 or past the end → s[start:]; else s[start:end]
            // (bytes; an index inside a character gives nothing rather than a panic).
            let (start, end, s) = (int(&a[0]), int(&a[1]), &a[2]);
            let len = s.len() as i64;
            let (lo, hi) = if start < 0 {
                (0, end.clamp(0, len))
            } else if end < 0 || end > len {
                (start.min(len), len)
            } else {
                (start.min(end), end)
            };
            s.get(lo as usize..hi as usize).unwrap_or("").to_string()
        }
        Func::Default => {
            if a[1].is_empty() {
                a[0].clone()
            } else {
                a[1].clone()
            }
        }
        Func::RegexReplaceAll(re) => re.replace_all(&a[1], a[2].as_str()).into_owned(),
        Func::RegexReplaceAllLiteral(re) => re.replace_all(&a[1], regex::NoExpand(&a[2])).into_owned(),
    }
}

fn value(a: &Arg, line: &str, labels: &super::pipeline::LabelMap) -> String {
    match a {
        Arg::Label(n) => labels.get(n).cloned().unwrap_or_default(),
        Arg::Line => line.to_string(),
        Arg::Str(s) => s.clone(),
    }
}

/// Renders a template over a line and its labels.
pub fn render(t: &[TemplatePart], line: &str, labels: &super::pipeline::LabelMap) -> String {
    let mut out = String::new();
    for p in t {
        match p {
            TemplatePart::Lit(s) => out.push_str(s),
            TemplatePart::Label(n) => out.push_str(labels.get(n).map_or("", |v| v)),
            TemplatePart::Line => out.push_str(line),
            TemplatePart::Pipe(commands) => {
                let mut prev: Option<String> = None;
                for c in commands {
                    let mut args: Vec<String> = c.args.iter().map(|a| value(a, line, labels)).collect();
                    args.extend(prev.take());
                    prev = Some(match &c.func {
                        Some(f) => apply(f, &args),
                        None => args.pop().unwrap_or_default(),
                    });
                }
                out.push_str(&prev.unwrap_or_default());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &str, line: &str, labels: &[(&str, &str)]) -> String {
        let l = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        render(&parse_template(t).unwrap(), line, &l)
    }

    #[test]
    fn functions_and_pipelines_as_go_templates_do() {
        let l = [("a", "Hello World"), ("p", "/api/v1/x"), ("e", "")];
        assert_eq!(run("{{ .a | ToUpper }}", "", &l), "HELLO WORLD");
        assert_eq!(run("{{ToLower .a}}", "", &l), "hello world");
        assert_eq!(run("{{ Title \"hello wide-world\" }}", "", &l), "Hello Wide-World");
        assert_eq!(run("{{ Replace .a \"o\" \"0\" -1 }}", "", &l), "Hell0 W0rld");
        assert_eq!(run("{{ Replace .a \"o\" \"0\" 1 }}", "", &l), "Hell0 World");
        assert_eq!(run("{{ .a | replace \"World\" \"there\" }}", "", &l), "Hello there");
        assert_eq!(run("{{ Trim \"xxhixx\" \"x\" }}", "", &l), "hi");
        assert_eq!(run("{{ TrimSpace \"  hi \" }}", "", &l), "hi");
        assert_eq!(run("{{ .p | trimPrefix \"/api\" }}", "", &l), "/v1/x");
        assert_eq!(run("{{ TrimSuffix .p \"/x\" }}", "", &l), "/api/v1");
        assert_eq!(run("{{ .a | trunc 5 }}", "", &l), "Hello");
        assert_eq!(run("{{ .a | trunc -5 }}", "", &l), "World");
        assert_eq!(run("{{ .a | substr 6 99 }}", "", &l), "World");
        assert_eq!(run("{{ .e | default \"none\" }}", "", &l), "none");
        assert_eq!(run("{{ __line__ | upper }}", "abc", &l), "ABC");
        assert_eq!(
            run("{{ regexReplaceAll \"(\\\\w+) (\\\\w+)\" .a \"${2} $1\" }}", "", &l),
            "World Hello"
        );
        assert_eq!(run("{{.a}}-{{__line__}}", "L", &l), "Hello World-L");
        for bad in [
            "{{ Nope .a }}",
            "{{ ToUpper }}",
            "{{ Replace .a \"x\" }}",
            "{{ .a .b }}",
            "{{ .a | .b }}",
            "{{ regexReplaceAll \"(\" .a \"x\" }}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }
}
