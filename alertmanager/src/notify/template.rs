//! Notification templates in Go's template syntax (gtmpl), with Alertmanager's data
//! (`.Status`, `.Alerts`, `.GroupLabels`, ...), its functions (toUpper, join, match, ...), and a
//! faithful reduction of its `default.tmpl` (`email.default.subject`, `email.default.html`).
//!
//! Go calls methods on values (`.Alerts.Firing`, `.Labels.SortedPairs`, `.CommonLabels.Remove`);
//! gtmpl has no methods, so those spellings are rewritten to function calls before parsing.

use std::collections::HashMap;
use std::sync::LazyLock;

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::matchers::LabelSet;

/// Alertmanager's default templates, reduced: same names, same subject, a simpler HTML body.
pub const DEFAULT_TEMPLATES: &str = r#"
{{ define "__alertmanager" }}Alertmanager{{ end }}
{{ define "__alertmanagerURL" }}{{ .ExternalURL }}/#/alerts?receiver={{ .Receiver | urlquery }}{{ end }}
{{ define "__subject" }}[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .GroupLabels.SortedPairs.Values | join " " }} {{ if gt (len .CommonLabels) (len .GroupLabels) }}({{ with .CommonLabels.Remove .GroupLabels.Names }}{{ .Values | join " " }}{{ end }}){{ end }}{{ end }}
{{ define "__description" }}{{ end }}
{{ define "__text_alert_list" }}{{ range . }}Labels:
{{ range .Labels.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Annotations:
{{ range .Annotations.SortedPairs }} - {{ .Name }} = {{ .Value }}
{{ end }}Source: {{ .GeneratorURL }}
{{ end }}{{ end }}
{{ define "email.default.subject" }}{{ template "__subject" . }}{{ end }}
{{ define "email.default.text" }}{{ if gt (len .Alerts.Firing) 0 }}Alerts Firing:
{{ template "__text_alert_list" .Alerts.Firing }}{{ end }}{{ if gt (len .Alerts.Resolved) 0 }}Alerts Resolved:
{{ template "__text_alert_list" .Alerts.Resolved }}{{ end }}View in {{ template "__alertmanager" . }}: {{ template "__alertmanagerURL" . }}
{{ end }}
{{ define "__html_alert_list" }}{{ range . }}<tr><td style="padding:0 0 16px 0">
<strong>Labels</strong><br />
{{ range .Labels.SortedPairs }}{{ .Name }} = {{ .Value }}<br />{{ end }}
{{ if gt (len .Annotations) 0 }}<strong>Annotations</strong><br />{{ end }}
{{ range .Annotations.SortedPairs }}{{ .Name }} = {{ .Value }}<br />{{ end }}
<a href="{{ .GeneratorURL }}">Source</a>
</td></tr>
{{ end }}{{ end }}
{{ define "email.default.html" }}<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta name="viewport" content="width=device-width" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<title>{{ template "__subject" . }}</title>
</head>
<body style="font-family:Helvetica,Arial,sans-serif;font-size:14px;background-color:#f6f6f6;margin:0">
<table width="100%" cellpadding="0" cellspacing="0" style="max-width:600px;margin:0 auto;background:#fff">
<tr><td style="padding:20px;color:#fff;background-color:{{ if eq .Status "firing" }}#E6522C{{ else }}#68B90F{{ end }};text-align:center">
{{ .Alerts | len }} alert{{ if gt (len .Alerts) 1 }}s{{ end }} for {{ range .GroupLabels.SortedPairs }}
{{ .Name }}={{ .Value }}
{{ end }}
</td></tr>
<tr><td style="padding:20px"><a href="{{ template "__alertmanagerURL" . }}">View in {{ template "__alertmanager" . }}</a></td></tr>
{{ if gt (len .Alerts.Firing) 0 }}<tr><td style="padding:0 20px"><strong>[{{ .Alerts.Firing | len }}] Firing</strong></td></tr>
{{ template "__html_alert_list" .Alerts.Firing }}{{ end }}
{{ if gt (len .Alerts.Resolved) 0 }}<tr><td style="padding:0 20px"><strong>[{{ .Alerts.Resolved | len }}] Resolved</strong></td></tr>
{{ template "__html_alert_list" .Alerts.Resolved }}{{ end }}
</table>
<p style="text-align:center;color:#999;font-size:12px">Sent by {{ template "__alertmanager" . }}</p>
</body>
</html>
{{ end }}
"#;

/// One alert as templates see it.
#[derive(Clone, Debug)]
pub struct TemplateAlert {
    /// `firing` / `resolved`.
    pub status: String,
    /// Labels.
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    /// Link to the rule.
    pub generator_url: String,
    /// 16 hex digits.
    pub fingerprint: String,
}

/// Alertmanager's `template.Data`.
#[derive(Clone, Debug)]
pub struct TemplateData {
    /// Receiver name (regex-quoted, as Alertmanager does).
    pub receiver: String,
    /// `firing` if any alert fires.
    pub status: String,
    /// The alerts.
    pub alerts: Vec<TemplateAlert>,
    /// The group's labels.
    pub group_labels: LabelSet,
    /// Labels every alert shares.
    pub common_labels: LabelSet,
    /// Annotations every alert shares.
    pub common_annotations: LabelSet,
    /// This Alertmanager's URL.
    pub external_url: String,
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn kv(map: &LabelSet, esc: fn(&str) -> String) -> Value {
    Value::Map(map.iter().map(|(k, v)| (k.clone(), Value::from(esc(v)))).collect())
}

impl TemplateData {
    /// The gtmpl value; `html` escapes every string as Go's html/template would in text.
    fn to_value(&self, html: bool) -> Value {
        let esc: fn(&str) -> String = if html { html_escape } else { |s: &str| s.to_string() };
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                let mut m = HashMap::new();
                m.insert("Status".to_string(), Value::from(a.status.clone()));
                m.insert("Labels".to_string(), kv(&a.labels, esc));
                m.insert("Annotations".to_string(), kv(&a.annotations, esc));
                m.insert("StartsAt".to_string(), Value::from(a.starts_at.clone()));
                m.insert("EndsAt".to_string(), Value::from(a.ends_at.clone()));
                m.insert("GeneratorURL".to_string(), Value::from(esc(&a.generator_url)));
                m.insert("Fingerprint".to_string(), Value::from(a.fingerprint.clone()));
                Value::Object(m)
            })
            .collect();
        let mut m = HashMap::new();
        m.insert("Receiver".to_string(), Value::from(esc(&self.receiver)));
        m.insert("Status".to_string(), Value::from(self.status.clone()));
        m.insert("Alerts".to_string(), Value::Array(alerts));
        m.insert("GroupLabels".to_string(), kv(&self.group_labels, esc));
        m.insert("CommonLabels".to_string(), kv(&self.common_labels, esc));
        m.insert("CommonAnnotations".to_string(), kv(&self.common_annotations, esc));
        m.insert("ExternalURL".to_string(), Value::from(self.external_url.clone()));
        Value::Object(m)
    }
}

static METHOD: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"((?:\$[A-Za-z_0-9]*)?(?:\.[A-Za-z_][A-Za-z_0-9]*)*)\.(SortedPairs|Names|Values|Firing|Resolved)\b",
    )
    .expect("static regex")
});
static REMOVE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"((?:\$[A-Za-z_0-9]*)?(?:\.[A-Za-z_][A-Za-z_0-9]*)*)\.Remove\s+").expect("static regex")
});

/// Rewrites Go method calls on Alertmanager's types into the functions registered here.
pub fn rewrite_methods(text: &str) -> String {
    let mut out = REMOVE
        .replace_all(text, |c: &regex::Captures| {
            let recv = if c[1].is_empty() { "." } else { &c[1] };
            format!("removeLabels {recv} ")
        })
        .into_owned();
    for _ in 0..16 {
        let next = METHOD
            .replace_all(&out, |c: &regex::Captures| {
                let recv = if c[1].is_empty() { "." } else { &c[1] };
                let func = match &c[2] {
                    "SortedPairs" => "sortedPairs",
                    "Names" => "labelNames",
                    "Values" => "labelValues",
                    "Firing" => "firingAlerts",
                    _ => "resolvedAlerts",
                };
                format!("({func} {recv})")
            })
            .into_owned();
        if next == out {
            break;
        }
        out = next;
    }
    out
}

fn arg_str(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::NoValue) | Some(Value::Nil) => Ok(String::new()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

fn map_of(v: Option<&Value>) -> Result<Vec<(String, Value)>, FuncError> {
    match v {
        Some(Value::Map(m)) | Some(Value::Object(m)) => {
            let mut pairs: Vec<(String, Value)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(pairs)
        }
        Some(Value::NoValue) | Some(Value::Nil) | None => Ok(Vec::new()),
        _ => Err(FuncError::Generic("expected a label set".into())),
    }
}

fn to_upper(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(a, 0, "toUpper")?.to_uppercase()))
}
fn to_lower(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(a, 0, "toLower")?.to_lowercase()))
}
fn title(a: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(a, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}
fn trim_space(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(a, 0, "trimSpace")?.trim().to_string()))
}
fn join(a: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(a, 0, "join")?;
    let items: Vec<String> = match a.get(1) {
        Some(Value::Array(v)) => v.iter().map(|x| x.to_string()).collect(),
        Some(Value::NoValue) | Some(Value::Nil) => Vec::new(),
        Some(v) => vec![v.to_string()],
        None => return Err(FuncError::ExactlyXArgs("join".into(), 2)),
    };
    Ok(Value::from(items.join(&sep)))
}
fn match_re(a: &[Value]) -> Result<Value, FuncError> {
    let re = regex::Regex::new(&arg_str(a, 0, "match")?).map_err(|e| FuncError::Generic(e.to_string()))?;
    Ok(Value::from(re.is_match(&arg_str(a, 1, "match")?)))
}
fn re_replace_all(a: &[Value]) -> Result<Value, FuncError> {
    let re = regex::Regex::new(&arg_str(a, 0, "reReplaceAll")?).map_err(|e| FuncError::Generic(e.to_string()))?;
    let repl = arg_str(a, 1, "reReplaceAll")?;
    Ok(Value::from(
        re.replace_all(&arg_str(a, 2, "reReplaceAll")?, repl.as_str())
            .into_owned(),
    ))
}
fn safe_html(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(arg_str(a, 0, "safeHtml")?))
}
fn string_slice(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(a.iter().map(|v| Value::from(v.to_string())).collect()))
}
fn sorted_pairs(a: &[Value]) -> Result<Value, FuncError> {
    let pairs = map_of(a.first())?;
    Ok(Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| {
                let mut m = HashMap::new();
                m.insert("Name".to_string(), Value::from(k));
                m.insert("Value".to_string(), v);
                Value::Object(m)
            })
            .collect(),
    ))
}
fn label_names(a: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(
        map_of(a.first())?.into_iter().map(|(k, _)| Value::from(k)).collect(),
    ))
}
fn label_values(a: &[Value]) -> Result<Value, FuncError> {
    if let Some(Value::Array(pairs)) = a.first() {
        // `.SortedPairs.Values`: the values of already sorted pairs.
        let vals = pairs
            .iter()
            .map(|p| match p {
                Value::Object(m) | Value::Map(m) => m.get("Value").cloned().unwrap_or(Value::NoValue),
                other => other.clone(),
            })
            .collect();
        return Ok(Value::Array(vals));
    }
    Ok(Value::Array(map_of(a.first())?.into_iter().map(|(_, v)| v).collect()))
}
fn remove_labels(a: &[Value]) -> Result<Value, FuncError> {
    let remove: Vec<String> = match a.get(1) {
        Some(Value::Array(v)) => v.iter().map(|x| x.to_string()).collect(),
        _ => Vec::new(),
    };
    let kept = map_of(a.first())?
        .into_iter()
        .filter(|(k, _)| !remove.contains(k))
        .collect();
    Ok(Value::Map(kept))
}
fn by_status(a: &[Value], status: &str) -> Result<Value, FuncError> {
    let Some(Value::Array(alerts)) = a.first() else {
        return Ok(Value::Array(Vec::new()));
    };
    Ok(Value::Array(
        alerts
            .iter()
            .filter(|al| match al {
                Value::Object(m) | Value::Map(m) => m.get("Status") == Some(&Value::from(status)),
                _ => false,
            })
            .cloned()
            .collect(),
    ))
}
fn firing_alerts(a: &[Value]) -> Result<Value, FuncError> {
    by_status(a, "firing")
}
fn resolved_alerts(a: &[Value]) -> Result<Value, FuncError> {
    by_status(a, "resolved")
}

/// Go's `len`, which gtmpl lacks for maps.
fn go_len(a: &[Value]) -> Result<Value, FuncError> {
    let n = match a.first() {
        Some(Value::Array(v)) => v.len(),
        Some(Value::Map(m)) | Some(Value::Object(m)) => m.len(),
        Some(Value::String(s)) => s.len(),
        Some(Value::NoValue) | Some(Value::Nil) => 0,
        _ => return Err(FuncError::Generic("len of a value that has no length".into())),
    };
    Ok(Value::from(n as i64))
}

const FUNCS: &[(&str, Func)] = &[
    ("len", go_len),
    ("toUpper", to_upper),
    ("toLower", to_lower),
    ("title", title),
    ("trimSpace", trim_space),
    ("join", join),
    ("match", match_re),
    ("reReplaceAll", re_replace_all),
    ("safeHtml", safe_html),
    ("stringSlice", string_slice),
    ("sortedPairs", sorted_pairs),
    ("labelNames", label_names),
    ("labelValues", label_values),
    ("removeLabels", remove_labels),
    ("firingAlerts", firing_alerts),
    ("resolvedAlerts", resolved_alerts),
];

/// The default templates plus the config's template files, ready to render config fields.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    /// Texts of every file with `define` blocks, already rewritten.
    sources: Vec<String>,
}

impl Templates {
    /// Loads the defaults and the files matched by `globs` (a glob matching nothing is fine, as
    /// in Alertmanager). Errors name the file.
    pub fn load(globs: &[String], base_dir: Option<&std::path::Path>) -> Result<Self, String> {
        let mut sources = vec![rewrite_methods(DEFAULT_TEMPLATES)];
        for g in globs {
            let pattern = match base_dir {
                Some(dir) if !std::path::Path::new(g).is_absolute() => dir.join(g).display().to_string(),
                _ => g.clone(),
            };
            let paths = glob::glob(&pattern).map_err(|e| format!("templates: bad glob {g:?}: {e}"))?;
            for p in paths.flatten() {
                let text = std::fs::read_to_string(&p).map_err(|e| format!("templates: {}: {e}", p.display()))?;
                let text = rewrite_methods(&text);
                let mut t = Self::base();
                t.add_template(p.display().to_string(), text.clone())
                    .map_err(|e| format!("templates: {}: {e}", p.display()))?;
                sources.push(text);
            }
        }
        let t = Templates { sources };
        t.build("{{ template \"email.default.subject\" . }}")
            .map_err(|e| format!("default templates: {e}"))?;
        Ok(t)
    }

    fn base() -> Template {
        let mut t = Template::with_name("__field");
        t.add_funcs(FUNCS);
        t
    }

    fn build(&self, text: &str) -> Result<Template, String> {
        let mut t = Self::base();
        for (i, s) in self.sources.iter().enumerate() {
            t.add_template(format!("__file{i}"), s.clone())
                .map_err(|e| e.to_string())?;
        }
        t.parse(rewrite_methods(text)).map_err(|e| e.to_string())?;
        Ok(t)
    }

    /// Checks that a config field's template parses.
    pub fn check(&self, text: &str) -> Result<(), String> {
        self.build(text).map(|_| ())
    }

    /// Renders a config field as text.
    pub fn render_text(&self, text: &str, data: &TemplateData) -> Result<String, String> {
        self.build(text)?
            .render(&Context::from(data.to_value(false)))
            .map_err(|e| e.to_string())
    }

    /// Renders a config field as HTML (data strings escaped).
    pub fn render_html(&self, text: &str, data: &TemplateData) -> Result<String, String> {
        self.build(text)?
            .render(&Context::from(data.to_value(true)))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData {
        let labels: LabelSet = [("alertname", "DiskFull"), ("cluster", "eu1"), ("instance", "db-1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut common = labels.clone();
        common.remove("instance");
        TemplateData {
            receiver: "team".into(),
            status: "firing".into(),
            alerts: vec![TemplateAlert {
                status: "firing".into(),
                labels,
                annotations: [("summary".to_string(), "<full>".to_string())].into_iter().collect(),
                starts_at: "2026-01-01T00:00:00Z".into(),
                ends_at: "0001-01-01T00:00:00Z".into(),
                generator_url: "http://p/graph".into(),
                fingerprint: "0123456789abcdef".into(),
            }],
            group_labels: [("alertname".to_string(), "DiskFull".to_string())]
                .into_iter()
                .collect(),
            common_labels: [("alertname", "DiskFull"), ("cluster", "eu1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            common_annotations: LabelSet::new(),
            external_url: "http://am".into(),
        }
    }

    #[test]
    fn default_subject_matches_alertmanager() {
        let t = Templates::load(&[], None).unwrap();
        let s = t
            .render_text("{{ template \"email.default.subject\" . }}", &data())
            .unwrap();
        assert_eq!(s, "[FIRING:1] DiskFull (eu1)");
    }

    #[test]
    fn html_escapes_and_functions_work() {
        let t = Templates::load(&[], None).unwrap();
        let h = t
            .render_html("{{ template \"email.default.html\" . }}", &data())
            .unwrap();
        assert!(h.contains("summary = &lt;full&gt;"), "{h}");
        let s = t
            .render_text(r#"{{ range .Alerts }}{{ .Labels.alertname | toLower }}{{ end }} {{ reReplaceAll "e(u)" "$1" .CommonLabels.cluster }} {{ title "a b" }} {{ join "," (stringSlice "x" "y") }}"#, &data())
            .unwrap();
        assert_eq!(s, "diskfull u1 A B x,y");
    }
}
