//! Prometheus' alert templates: Go's text/template (gtmpl) with Prometheus' functions and the
//! `$labels`, `$externalLabels`, `$externalURL` and `$value` variables.
//!
//! Where gtmpl differs from Go, this module bends it back:
//! - gtmpl's functions are plain `fn` pointers, so what a function needs besides its arguments
//!   (the query engine for `query`, the external URL) is put in a thread-local [`Env`] for the
//!   duration of one expansion.
//! - gtmpl prints numbers with Rust's formatting; Go prints `1e+06`. So `.Value` (and every float
//!   a function returns) is handed to the template as the string Go's `%v` would print, and every
//!   function that takes a number also takes such a string (as Prometheus' own
//!   `convertToFloat` does). `printf` and the comparison functions (`eq`, `lt`, ...) are replaced
//!   by Go-compatible ones that compare numeric strings with numbers as numbers.
//! - gtmpl prints a missing map key as `<no value>`; Prometheus' maps are `map[string]string`,
//!   whose missing keys print as the empty string, so `<no value>` is removed from the output.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::gofmt::{float_v, format_float, g4};

/// A query the `query` template function can run: returns `(labels, value)` pairs.
pub type TemplateQuery<'a> = dyn Fn(&str) -> Result<Vec<(BTreeMap<String, String>, f64)>, String> + 'a;

/// What an expansion may use besides its data.
struct Env {
    external_url: String,
    query: Option<*const TemplateQuery<'static>>,
}

thread_local! {
    static ENV: RefCell<Option<Env>> = const { RefCell::new(None) };
}

/// The data of one alert's templates.
pub struct AlertData<'a> {
    /// The alert's labels (the expression result's, before the rule's labels are applied).
    pub labels: &'a BTreeMap<String, String>,
    /// The configured external labels.
    pub external_labels: &'a BTreeMap<String, String>,
    /// The configured external URL.
    pub external_url: &'a str,
    /// The expression's value.
    pub value: f64,
}

/// The variable definitions Prometheus puts in front of every alert template.
const DEFS: &str =
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

fn map_value(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

fn new_template(name: &str) -> Template {
    let mut t = Template::with_name(name);
    t.add_funcs(FUNCS);
    t
}

/// Checks that `text` parses as an alert template (what `promtool check rules` does).
pub fn check(text: &str) -> Result<(), String> {
    let mut t = new_template("__alert");
    t.parse(format!("{DEFS}{text}")).map_err(|e| e.to_string())
}

/// Expands one label or annotation template of an alert. A failure is returned as the text
/// Prometheus shows in its place: `<error expanding template: ...>`.
pub fn expand_alert(name: &str, text: &str, data: &AlertData<'_>, query: Option<&TemplateQuery<'_>>) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut ctx = HashMap::new();
    ctx.insert("Labels".to_string(), map_value(data.labels));
    ctx.insert("ExternalLabels".to_string(), map_value(data.external_labels));
    ctx.insert("ExternalURL".to_string(), Value::String(data.external_url.to_string()));
    ctx.insert("Value".to_string(), Value::String(float_v(data.value)));
    match expand(
        &format!("__alert_{name}"),
        &format!("{DEFS}{text}"),
        Value::Object(ctx),
        data.external_url,
        query,
    ) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// Parses and executes `text` with `data` as dot.
pub fn expand(
    name: &str,
    text: &str,
    data: Value,
    external_url: &str,
    query: Option<&TemplateQuery<'_>>,
) -> Result<String, String> {
    let mut t = new_template(name);
    t.parse(text).map_err(|e| format!("template: {name}: {e}"))?;
    // SAFETY of the erased lifetime: the pointer is only dereferenced by `query` during the
    // `render` below, and the guard removes it before this function returns.
    let query_ptr = query.map(|q| {
        let q: *const TemplateQuery<'_> = q;
        // SAFETY: only the lifetime is changed; see above for why it is never outlived.
        unsafe { std::mem::transmute::<*const TemplateQuery<'_>, *const TemplateQuery<'static>>(q) }
    });
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            ENV.with(|e| *e.borrow_mut() = None);
        }
    }
    ENV.with(|e| {
        *e.borrow_mut() = Some(Env {
            external_url: external_url.to_string(),
            query: query_ptr,
        })
    });
    let _guard = Guard;
    let out = t
        .render(&Context::from(data))
        .map_err(|e| format!("template: {name}: {e}"))?;
    Ok(out.replace("<no value>", ""))
}

// ---- functions ----------------------------------------------------------------------------

static FUNCS: &[(&str, Func)] = &[
    ("humanize", humanize as Func),
    ("humanize1024", humanize1024 as Func),
    ("humanizeDuration", humanize_duration as Func),
    ("humanizePercentage", humanize_percentage as Func),
    ("humanizeTimestamp", humanize_timestamp as Func),
    ("toTime", to_time as Func),
    ("printf", printf as Func),
    ("title", title as Func),
    ("toUpper", to_upper as Func),
    ("toLower", to_lower as Func),
    ("match", re_match as Func),
    ("reReplaceAll", re_replace_all as Func),
    ("label", label as Func),
    ("value", value as Func),
    ("strvalue", strvalue as Func),
    ("first", first as Func),
    ("query", query as Func),
    ("sortByLabel", sort_by_label as Func),
    ("safeHtml", identity as Func),
    ("stripPort", strip_port as Func),
    ("stripDomain", strip_domain as Func),
    ("args", args as Func),
    ("tableLink", table_link as Func),
    ("graphLink", graph_link as Func),
    ("pathPrefix", path_prefix as Func),
    ("externalURL", external_url as Func),
    ("parseDuration", parse_duration as Func),
    ("eq", eq as Func),
    ("ne", ne as Func),
    ("lt", lt as Func),
    ("le", le as Func),
    ("gt", gt as Func),
    ("ge", ge as Func),
];

fn generic(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arg<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::AtLeastXArgs(name.to_string(), i + 1))
}

/// Prometheus' `convertToFloat`: numbers, and strings that parse as numbers.
fn to_float(v: &Value) -> Result<f64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64))
            .ok_or_else(|| generic("can't convert number to float")),
        Value::String(s) => {
            parse_go_float(s).ok_or_else(|| generic(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")))
        }
        Value::Bool(_)
        | Value::NoValue
        | Value::Nil
        | Value::Array(_)
        | Value::Map(_)
        | Value::Object(_)
        | Value::Function(_) => Err(generic(format!("can't convert {v} to float"))),
    }
}

/// Go's `strconv.ParseFloat`, which also reads `+Inf`, `-Inf`, `NaN` and `Inf`.
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse::<f64>().ok(),
    }
}

fn to_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => go_display(other),
    }
}

/// How Go prints a value with `%v`.
fn go_display(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) => float_v(f),
            None => n.to_string(),
        },
        Value::NoValue => "<no value>".into(),
        Value::Nil => "<nil>".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_display).collect::<Vec<_>>().join(" ")),
        Value::Map(m) | Value::Object(m) => {
            let sorted: BTreeMap<_, _> = m.iter().collect();
            let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}:{}", go_display(v))).collect();
            format!("map[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

fn one_float(name: &str, args: &[Value]) -> Result<f64, FuncError> {
    to_float(arg(name, args, 0)?)
}

fn humanize(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = one_float("humanize", args)?;
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return Ok(Value::String(g4(v)));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    Ok(Value::String(format!("{}{prefix}", g4(v))))
}

fn humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = one_float("humanize1024", args)?;
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return Ok(Value::String(g4(v)));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    Ok(Value::String(format!("{}{prefix}", g4(v))))
}

fn humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = one_float("humanizeDuration", args)?;
    if v.is_nan() || v.is_infinite() {
        return Ok(Value::String(g4(v)));
    }
    if v == 0.0 {
        return Ok(Value::String(format!("{}s", g4(v))));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        let s = if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
        return Ok(Value::String(s));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    Ok(Value::String(format!("{}{prefix}s", g4(v))))
}

fn humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = one_float("humanizePercentage", args)?;
    Ok(Value::String(format!("{}%", g4(v * 100.0))))
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time_string(secs: f64) -> String {
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round() as u32;
    match chrono::DateTime::from_timestamp(whole as i64, nanos.min(999_999_999)) {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if nanos > 0 {
                let frac = format!("{:09}", nanos);
                s.push('.');
                s.push_str(frac.trim_end_matches('0'));
            }
            s.push_str(" +0000 UTC");
            s
        }
        None => g4(secs),
    }
}

fn humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = one_float("humanizeTimestamp", args)?;
    if v.is_nan() || v.is_infinite() {
        return Ok(Value::String(g4(v)));
    }
    Ok(Value::String(go_time_string(v)))
}

fn to_time(args: &[Value]) -> Result<Value, FuncError> {
    humanize_timestamp(args)
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = to_str(arg("title", args, 0)?);
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    Ok(Value::String(out))
}

fn to_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_str(arg("toUpper", args, 0)?).to_uppercase()))
}

fn to_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_str(arg("toLower", args, 0)?).to_lowercase()))
}

fn regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern).map_err(|e| generic(format!("error parsing regexp: {e}")))
}

fn re_match(args: &[Value]) -> Result<Value, FuncError> {
    let re = regex(&to_str(arg("match", args, 0)?))?;
    Ok(Value::Bool(re.is_match(&to_str(arg("match", args, 1)?))))
}

fn re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    let re = regex(&to_str(arg("reReplaceAll", args, 0)?))?;
    let repl = to_str(arg("reReplaceAll", args, 1)?);
    let text = to_str(arg("reReplaceAll", args, 2)?);
    Ok(Value::String(re.replace_all(&text, repl.as_str()).into_owned()))
}

fn sample_value(labels: BTreeMap<String, String>, v: f64) -> Value {
    let mut o = HashMap::new();
    o.insert("Labels".to_string(), map_value(&labels));
    o.insert("Value".to_string(), Value::String(float_v(v)));
    Value::Object(o)
}

fn label(args: &[Value]) -> Result<Value, FuncError> {
    let name = to_str(arg("label", args, 0)?);
    match arg("label", args, 1)? {
        Value::Object(o) => match o.get("Labels") {
            Some(Value::Map(m)) => Ok(m.get(&name).cloned().unwrap_or(Value::String(String::new()))),
            _ => Ok(Value::String(String::new())),
        },
        _ => Ok(Value::String(String::new())),
    }
}

fn value(args: &[Value]) -> Result<Value, FuncError> {
    match arg("value", args, 0)? {
        Value::Object(o) => Ok(o.get("Value").cloned().unwrap_or(Value::String("0".into()))),
        _ => Ok(Value::String("0".into())),
    }
}

fn strvalue(args: &[Value]) -> Result<Value, FuncError> {
    match arg("strvalue", args, 0)? {
        Value::Object(o) => match o.get("Labels") {
            Some(Value::Map(m)) => Ok(m.get("__value__").cloned().unwrap_or(Value::String(String::new()))),
            _ => Ok(Value::String(String::new())),
        },
        _ => Ok(Value::String(String::new())),
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    match arg("first", args, 0)? {
        Value::Array(a) if !a.is_empty() => Ok(a[0].clone()),
        _ => Err(generic("first() called on vector with no elements")),
    }
}

fn query(args: &[Value]) -> Result<Value, FuncError> {
    let q = to_str(arg("query", args, 0)?);
    let ptr = ENV.with(|e| e.borrow().as_ref().and_then(|e| e.query));
    let Some(ptr) = ptr else {
        return Err(generic("query is not available here"));
    };
    // SAFETY: `expand` keeps the closure alive for the whole render and clears the pointer after.
    let f = unsafe { &*ptr };
    let rows = f(&q).map_err(generic)?;
    Ok(Value::Array(
        rows.into_iter().map(|(l, v)| sample_value(l, v)).collect(),
    ))
}

fn sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    let name = to_str(arg("sortByLabel", args, 0)?);
    let mut rows = match arg("sortByLabel", args, 1)? {
        Value::Array(a) => a.clone(),
        _ => return Err(generic("sortByLabel: not a query result")),
    };
    let key = |v: &Value| match label(&[Value::String(name.clone()), v.clone()]) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    };
    rows.sort_by_key(key);
    Ok(Value::Array(rows))
}

fn identity(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_str(arg("safeHtml", args, 0)?)))
}

/// Go's `net.SplitHostPort`, returning the host (brackets removed).
fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host.to_string(), port.to_string()));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_string(), port.to_string()))
}

fn strip_port(args: &[Value]) -> Result<Value, FuncError> {
    let s = to_str(arg("stripPort", args, 0)?);
    Ok(Value::String(split_host_port(&s).map(|(h, _)| h).unwrap_or(s)))
}

fn strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    let s = to_str(arg("stripDomain", args, 0)?);
    let (host, port) = match split_host_port(&s) {
        Some((h, p)) => (h, Some(p)),
        None => (s.clone(), None),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Value::String(s));
    }
    let short = host.split('.').next().unwrap_or("").to_string();
    Ok(Value::String(match port {
        Some(p) => format!("{short}:{p}"),
        None => short,
    }))
}

fn args(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v.clone()))
            .collect(),
    ))
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn env_external_url() -> String {
    ENV.with(|e| e.borrow().as_ref().map(|e| e.external_url.clone()).unwrap_or_default())
}

fn table_link(args: &[Value]) -> Result<Value, FuncError> {
    let expr = to_str(arg("tableLink", args, 0)?);
    Ok(Value::String(format!(
        "/graph?g0.expr={}&g0.tab=1",
        query_escape(&expr)
    )))
}

fn graph_link(args: &[Value]) -> Result<Value, FuncError> {
    let expr = to_str(arg("graphLink", args, 0)?);
    Ok(Value::String(format!(
        "/graph?g0.expr={}&g0.tab=0",
        query_escape(&expr)
    )))
}

fn path_prefix(_: &[Value]) -> Result<Value, FuncError> {
    let url = env_external_url();
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_default())
        .unwrap_or_default();
    Ok(Value::String(path))
}

fn external_url(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(env_external_url()))
}

fn parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    let s = to_str(arg("parseDuration", args, 0)?);
    let d: tidewatch_model::Duration = s
        .parse()
        .map_err(|e: tidewatch_model::UnitError| generic(e.to_string()))?;
    Ok(Value::String(float_v(d.as_std().as_secs_f64())))
}

// ---- comparisons: Go's, with numeric strings compared as numbers ----------------------------

fn ordering(name: &str, a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, FuncError> {
    let numeric = |v: &Value| matches!(v, Value::Number(_));
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(x), Value::Bool(y)) if name == "eq" || name == "ne" => Ok(Some(x.cmp(y))),
        _ if numeric(a) || numeric(b) => {
            let (x, y) = (to_float(a)?, to_float(b)?);
            Ok(x.partial_cmp(&y))
        }
        (Value::NoValue | Value::Nil, Value::NoValue | Value::Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        _ => Err(generic(format!("{name}: incompatible types for comparison"))),
    }
}

fn eq(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg("eq", args, 0)?;
    if args.len() < 2 {
        return Err(FuncError::AtLeastXArgs("eq".into(), 2));
    }
    for b in &args[1..] {
        if ordering("eq", a, b)? == Some(std::cmp::Ordering::Equal) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn ne(args: &[Value]) -> Result<Value, FuncError> {
    let o = ordering("ne", arg("ne", args, 0)?, arg("ne", args, 1)?)?;
    Ok(Value::Bool(o != Some(std::cmp::Ordering::Equal)))
}

fn cmp_fn(name: &str, args: &[Value], ok: fn(std::cmp::Ordering) -> bool) -> Result<Value, FuncError> {
    let o = ordering(name, arg(name, args, 0)?, arg(name, args, 1)?)?;
    Ok(Value::Bool(o.is_some_and(ok)))
}

fn lt(args: &[Value]) -> Result<Value, FuncError> {
    cmp_fn("lt", args, |o| o.is_lt())
}
fn le(args: &[Value]) -> Result<Value, FuncError> {
    cmp_fn("le", args, |o| o.is_le())
}
fn gt(args: &[Value]) -> Result<Value, FuncError> {
    cmp_fn("gt", args, |o| o.is_gt())
}
fn ge(args: &[Value]) -> Result<Value, FuncError> {
    cmp_fn("ge", args, |o| o.is_ge())
}

// ---- printf: Go's fmt.Sprintf -------------------------------------------------------------

/// Largest width or precision `printf` honours.
const MAX_WIDTH: usize = 1000;

fn printf(args: &[Value]) -> Result<Value, FuncError> {
    let format = to_str(arg("printf", args, 0)?);
    Ok(Value::String(sprintf(&format, &args[1..])))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.as_f64().is_some() => "float64",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        _ => "interface {}",
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %F %e %E %g %G %q %x %X %t %%`
/// with flags `-+# 0`, width and precision. A numeric string is formatted as the number it
/// holds, since `$value` reaches the template as a string (see the module comment).
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space, mut sharp) = (false, false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            // Capped: a template must not be able to ask for a gigabyte of digits.
            prec = Some(p.parse::<usize>().unwrap_or(0).min(MAX_WIDTH));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.get(next_arg) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next_arg += 1;
        let _ = sharp;
        let as_float = || to_float(a).ok();
        let body: Option<String> = match verb {
            'v' => Some(match a {
                Value::Number(_) => go_display(a),
                _ => to_str(a),
            }),
            's' => Some(to_str(a)),
            'q' => Some(format!("{:?}", to_str(a))),
            't' => match a {
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            },
            'd' => match a {
                Value::Number(n) if n.as_i64().is_some() => n.as_i64().map(|i| i.to_string()),
                Value::Number(n) if n.as_u64().is_some() => n.as_u64().map(|u| u.to_string()),
                _ => as_float()
                    .filter(|f| f.fract() == 0.0 && f.is_finite())
                    .map(|f| format!("{f:.0}")),
            },
            'x' | 'X' => match a {
                Value::Number(n) if n.as_i64().is_some() => n.as_i64().map(|i| format!("{i:x}")),
                Value::String(s) => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
                _ => None,
            }
            .map(|s| if verb == 'X' { s.to_uppercase() } else { s }),
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' => as_float().map(|f| {
                let p = match verb {
                    'f' | 'F' | 'e' | 'E' => Some(prec.unwrap_or(6)),
                    _ => prec,
                };
                format_float(f, verb, p)
            }),
            _ => None,
        };
        let Some(mut body) = body else {
            out.push_str(&format!("%!{verb}({}={})", type_name(a), go_display(a)));
            continue;
        };
        if matches!(verb, 's' | 'v' | 'q') {
            if let Some(p) = prec.filter(|_| verb == 's') {
                body = body.chars().take(p).collect();
            }
        } else if !body.starts_with('-') && !body.starts_with('+') {
            if plus {
                body.insert(0, '+');
            } else if space {
                body.insert(0, ' ');
            }
        } else if body.starts_with('+') && !plus && body != "+Inf" {
            body.remove(0);
        }
        let w: usize = width.parse::<usize>().unwrap_or(0).min(MAX_WIDTH);
        let len = body.chars().count();
        if len < w {
            let pad = w - len;
            if minus {
                body.push_str(&" ".repeat(pad));
            } else if zero && !matches!(verb, 's' | 'v' | 'q') && !body.ends_with("Inf") && body != "NaN" {
                let sign_len = usize::from(body.starts_with(['-', '+', ' ']));
                body.insert_str(sign_len, &"0".repeat(pad));
            } else {
                body.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&body);
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|a| format!("{}={}", type_name(a), go_display(a)))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ext = BTreeMap::from([("cluster".to_string(), "eu".to_string())]);
        let data = AlertData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://tw.example:9700/prefix",
            value,
        };
        let q = |expr: &str| -> Result<super::super::eval::QueryRows, String> {
            Ok(vec![(
                BTreeMap::from([("instance".to_string(), expr.to_string())]),
                42.0,
            )])
        };
        expand_alert("t", text, &data, Some(&q))
    }

    #[test]
    fn prometheus_functions_and_variables() {
        let l = [("instance", "host1.example.com:9100"), ("job", "node")];
        assert_eq!(
            render("{{ $labels.instance }} of {{$labels.job}}", &l, 1.0),
            "host1.example.com:9100 of node"
        );
        assert_eq!(render("{{ $labels.missing }}.", &l, 1.0), ".");
        assert_eq!(render("{{ $value }}", &l, 1e6), "1e+06");
        assert_eq!(render("{{ $value | humanizePercentage }}", &l, 0.256), "25.6%");
        assert_eq!(render("{{ printf \"%.2f\" $value }}", &l, 1.0), "1.00");
        assert_eq!(render("{{ printf \"%.4g\" $value }}", &l, 12.34567), "12.35");
        assert_eq!(render("{{ printf \"%.0f\" $value }}", &l, 2.5), "2");
        assert_eq!(render("{{ $value | humanize }}", &l, 1234567.0), "1.235M");
        assert_eq!(render("{{ $value | humanize1024 }}", &l, 1048576.0), "1Mi");
        assert_eq!(render("{{ $value | humanizeDuration }}", &l, 90061.0), "1d 1h 1m 1s");
        assert_eq!(render("{{ \"43200\" | humanizeDuration }}", &l, 0.0), "12h 0m 0s");
        assert_eq!(render("{{ $value | humanizeDuration }}", &l, 0.5), "500ms");
        assert_eq!(
            render("{{ $value | humanizeTimestamp }}", &l, 1.5),
            "1970-01-01 00:00:01.5 +0000 UTC"
        );
        assert_eq!(
            render("{{ with $labels.cluster -}} on {{ . }} {{- end }}x", &l, 1.0),
            "x"
        );
        assert_eq!(
            render("{{ with $labels.job -}} on {{ . }}{{- end }}", &l, 1.0),
            "on node"
        );
        assert_eq!(render("{{ $externalLabels.cluster }}", &l, 1.0), "eu");
        assert_eq!(
            render("{{ $labels.instance | stripPort }}", &l, 1.0),
            "host1.example.com"
        );
        assert_eq!(render("{{ $labels.instance | stripDomain }}", &l, 1.0), "host1:9100");
        assert_eq!(render("{{ title \"hello world\" | toUpper }}", &l, 1.0), "HELLO WORLD");
        assert_eq!(
            render("{{ if gt $value 80.0 }}high{{ else }}low{{ end }}", &l, 90.0),
            "high"
        );
        assert_eq!(
            render("{{ if match \"^host\" $labels.instance }}y{{ end }}", &l, 1.0),
            "y"
        );
        assert_eq!(
            render("{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}", &l, 1.0),
            "host1.example.com"
        );
        assert_eq!(render("{{ query \"up\" | first | value }}", &l, 1.0), "42");
        assert_eq!(
            render(
                "{{ with query \"up\" }}{{ . | first | label \"instance\" }}{{ end }}",
                &l,
                1.0
            ),
            "up"
        );
        assert_eq!(render("{{ pathPrefix }}", &l, 1.0), "/prefix");
        assert_eq!(render("{{ (args 1 \"a\").arg1 }}", &l, 1.0), "a");
        assert!(render("{{ $value | nosuch }}", &l, 1.0).starts_with("<error expanding template: "));
        assert!(render("{{ first (args) }}", &l, 1.0).starts_with("<error expanding template: "));
    }

    #[test]
    fn check_rejects_bad_syntax() {
        assert!(check("{{ $labels.x }}").is_ok());
        assert!(check("{{ if }}").is_err());
        assert!(check("{{ nosuchfunc 1 }}").is_err());
    }
}
