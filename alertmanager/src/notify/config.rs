//! alertmanager.yml: its types (Alertmanager 0.25 field names), loading, and the errors that name
//! file, line and field. Secrets deserialize into [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewatch_model::Duration;

/// The section of Tidewatch's own config file that points at an alertmanager.yml.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Path of the alertmanager.yml; absent: route everything to a receiver that does nothing.
    pub config_file: Option<PathBuf>,
    /// The URL under which users reach this Alertmanager (`externalURL` in webhooks).
    pub external_url: Option<String>,
}

impl NotifySettings {
    /// Loads the configured alertmanager.yml (or the do-nothing default) with the external URL.
    pub fn load(&self) -> Result<AlertmanagerConfigFile, ConfigError> {
        let mut file = match &self.config_file {
            Some(path) => AlertmanagerConfigFile::load(path)?,
            None => AlertmanagerConfigFile::empty(),
        };
        if let Some(url) = &self.external_url {
            file.external_url = url.trim_end_matches('/').to_string();
        }
        Ok(file)
    }
}

/// A string that is never shown: `Debug`, `Display` and the status API print `<secret>`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A YAML scalar read as a string (`match: {test: 2}` is valid in Alertmanager).
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match yaml_serde::Value::deserialize(d)? {
            yaml_serde::Value::String(s) => Ok(Scalar(s)),
            yaml_serde::Value::Number(n) => Ok(Scalar(n.to_string())),
            yaml_serde::Value::Bool(b) => Ok(Scalar(b.to_string())),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// The whole alertmanager.yml.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for receivers and alerts.
    #[serde(default)]
    pub global: GlobalConfig,
    /// The routing tree.
    pub route: Option<RouteConfig>,
    /// Inhibition rules.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named receivers.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Template files (globs).
    #[serde(default)]
    pub templates: Vec<String>,
    /// Named time intervals.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalConfig>,
    /// The older name of `time_intervals`.
    #[serde(default)]
    pub mute_time_intervals: Vec<TimeIntervalConfig>,
    /// Tracing settings of newer Alertmanagers: accepted and ignored (with a warning).
    #[serde(default)]
    pub tracing: Option<yaml_serde::Value>,
}

/// `global:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GlobalConfig {
    /// How long an alert without `endsAt` stays firing after its last update (default 5m).
    pub resolve_timeout: Option<Duration>,
    pub http_config: Option<HttpConfig>,
    pub smtp_from: Option<String>,
    pub smtp_hello: Option<String>,
    pub smtp_smarthost: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<Secret>,
    pub smtp_auth_password_file: Option<String>,
    pub smtp_auth_secret: Option<Secret>,
    pub smtp_auth_identity: Option<String>,
    pub smtp_require_tls: Option<bool>,
    // Globals of receiver types Tidewatch does not implement: accepted so real configs load.
    pub slack_api_url: Option<Secret>,
    pub slack_api_url_file: Option<String>,
    pub victorops_api_key: Option<Secret>,
    pub victorops_api_key_file: Option<String>,
    pub victorops_api_url: Option<String>,
    pub pagerduty_url: Option<String>,
    pub opsgenie_api_key: Option<Secret>,
    pub opsgenie_api_key_file: Option<String>,
    pub opsgenie_api_url: Option<String>,
    pub wechat_api_url: Option<String>,
    pub wechat_api_secret: Option<Secret>,
    pub wechat_api_corp_id: Option<String>,
    pub telegram_api_url: Option<String>,
    pub webex_api_url: Option<String>,
}

/// A node of the routing tree.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    pub group_by: Option<Vec<String>>,
    #[serde(rename = "match")]
    pub match_eq: Option<BTreeMap<String, Scalar>>,
    pub match_re: Option<BTreeMap<String, Scalar>>,
    pub matchers: Option<Vec<String>>,
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    pub group_wait: Option<Duration>,
    pub group_interval: Option<Duration>,
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
}

/// One inhibition rule, in both syntaxes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InhibitRuleConfig {
    pub source_match: Option<BTreeMap<String, Scalar>>,
    pub source_match_re: Option<BTreeMap<String, Scalar>>,
    pub source_matchers: Option<Vec<String>>,
    pub target_match: Option<BTreeMap<String, Scalar>>,
    pub target_match_re: Option<BTreeMap<String, Scalar>>,
    pub target_matchers: Option<Vec<String>>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A named receiver.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    // Receiver types not implemented: loaded with a warning, their notifications count as failed.
    pub pagerduty_configs: Option<Vec<yaml_serde::Value>>,
    pub slack_configs: Option<Vec<yaml_serde::Value>>,
    pub opsgenie_configs: Option<Vec<yaml_serde::Value>>,
    pub wechat_configs: Option<Vec<yaml_serde::Value>>,
    pub pushover_configs: Option<Vec<yaml_serde::Value>>,
    pub victorops_configs: Option<Vec<yaml_serde::Value>>,
    pub sns_configs: Option<Vec<yaml_serde::Value>>,
    pub telegram_configs: Option<Vec<yaml_serde::Value>>,
    pub discord_configs: Option<Vec<yaml_serde::Value>>,
    pub webex_configs: Option<Vec<yaml_serde::Value>>,
    pub msteams_configs: Option<Vec<yaml_serde::Value>>,
}

impl ReceiverConfig {
    /// `(kind, count)` of the configured integrations Tidewatch does not implement.
    pub fn unsupported(&self) -> Vec<(&'static str, usize)> {
        let all = [
            ("pagerduty", &self.pagerduty_configs),
            ("slack", &self.slack_configs),
            ("opsgenie", &self.opsgenie_configs),
            ("wechat", &self.wechat_configs),
            ("pushover", &self.pushover_configs),
            ("victorops", &self.victorops_configs),
            ("sns", &self.sns_configs),
            ("telegram", &self.telegram_configs),
            ("discord", &self.discord_configs),
            ("webex", &self.webex_configs),
            ("msteams", &self.msteams_configs),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k, v.len())))
            .collect()
    }
}

/// `webhook_configs` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct WebhookConfig {
    pub url: Option<String>,
    pub url_file: Option<String>,
    /// Default true (as Alertmanager).
    pub send_resolved: Option<bool>,
    /// 0 = all alerts.
    #[serde(default)]
    pub max_alerts: u64,
    pub http_config: Option<HttpConfig>,
}

/// `email_configs` entry; unset fields fall back to `global.smtp_*`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EmailConfig {
    /// Default false (as Alertmanager).
    pub send_resolved: Option<bool>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub hello: Option<String>,
    pub smarthost: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub auth_password_file: Option<String>,
    pub auth_secret: Option<Secret>,
    pub auth_identity: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub require_tls: Option<bool>,
    pub tls_config: Option<TlsConfig>,
}

/// Prometheus' common HTTP client settings (the parts that apply here).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HttpConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    pub oauth2: Option<yaml_serde::Value>,
}

/// `basic_auth`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<String>,
}

/// `authorization` (type defaults to Bearer).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<String>,
}

/// `tls_config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

/// A named list of time ranges.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TimeIntervalConfig {
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalSpec>,
}

/// One time range: every given field must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TimeIntervalSpec {
    #[serde(default)]
    pub times: Vec<TimeRangeConfig>,
    #[serde(default)]
    pub weekdays: Vec<String>,
    #[serde(default)]
    pub days_of_month: Vec<String>,
    #[serde(default)]
    pub months: Vec<String>,
    #[serde(default)]
    pub years: Vec<String>,
    pub location: Option<String>,
}

/// `HH:MM` to `HH:MM` (end exclusive, `24:00` allowed).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TimeRangeConfig {
    pub start_time: String,
    pub end_time: String,
}

/// A config error that names the file, the line (when known) and the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{file}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// File name (or `<inline>`).
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A parsed alertmanager.yml with its origin, ready for [`crate::notify::Alertmanager::open`].
#[derive(Clone, Debug, Default)]
pub struct AlertmanagerConfigFile {
    /// Where it came from (path or `<inline>`).
    pub source: String,
    /// The text as read (kept for the status API, which masks secrets).
    pub raw: String,
    /// The parsed config.
    pub config: Config,
    /// The URL under which users reach this Alertmanager.
    pub external_url: String,
    /// Non-fatal findings (unsupported receiver types, ignored sections).
    pub warnings: Vec<String>,
}

/// Where Tidewatch serves by default (DESIGN.md).
pub const DEFAULT_EXTERNAL_URL: &str = "http://127.0.0.1:9700";

impl AlertmanagerConfigFile {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates text; `source` names it in errors.
    pub fn parse(source: &str, text: &str) -> Result<Self, ConfigError> {
        let config: Config = yaml_serde::from_str(text).map_err(|e| {
            let msg = e.to_string();
            ConfigError {
                file: source.into(),
                line: e.location().map(|l| l.line()),
                field: msg
                    .split(": ")
                    .next()
                    .filter(|f| !f.contains(' '))
                    .unwrap_or("(document)")
                    .to_string(),
                message: msg,
            }
        })?;
        let mut file = AlertmanagerConfigFile {
            source: source.into(),
            raw: text.into(),
            config,
            external_url: DEFAULT_EXTERNAL_URL.into(),
            warnings: Vec::new(),
        };
        // Compiling is the validation: undefined receivers, bad matchers and intervals fail here.
        crate::notify::runtime::Runtime::compile(&file)?;
        file.warnings = file.collect_warnings();
        Ok(file)
    }

    /// A config with one receiver that has no integrations (what runs when none is given).
    pub fn empty() -> Self {
        Self::parse(
            "<default>",
            "route:\n  receiver: default\nreceivers:\n  - name: default\n",
        )
        .unwrap_or_default()
    }

    fn collect_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.config.receivers {
            for (kind, n) in r.unsupported() {
                out.push(format!(
                    "{}: receiver {:?} has {n} {kind}_configs: receiver type {kind} is not supported; its notifications count as failed",
                    self.source, r.name
                ));
            }
        }
        if self.config.tracing.is_some() {
            out.push(format!(
                "{}: section 'tracing' is not supported and is ignored",
                self.source
            ));
        }
        out
    }

    /// An error about a field, with the line of the first occurrence of `needle` if any.
    pub fn error(&self, field: impl Into<String>, needle: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            line: line_of(&self.raw, needle),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The config as text with every secret replaced by `<secret>` (for `/api/v2/status`).
    pub fn masked(&self) -> String {
        let Ok(mut value) = yaml_serde::from_str::<yaml_serde::Value>(&self.raw) else {
            return String::new();
        };
        mask(&mut value);
        yaml_serde::to_string(&value).unwrap_or_default()
    }
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn is_secret_key(key: &str) -> bool {
    const SECRET: [&str; 12] = [
        "password",
        "auth_secret",
        "bearer_token",
        "credentials",
        "api_key",
        "routing_key",
        "service_key",
        "token",
        "user_key",
        "slack_api_url",
        "api_secret",
        "webhook_url",
    ];
    !key.ends_with("_file") && SECRET.iter().any(|s| key.ends_with(s))
}

fn mask(value: &mut yaml_serde::Value) {
    match value {
        yaml_serde::Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                if k.as_str().is_some_and(is_secret_key) && !v.is_null() {
                    *v = yaml_serde::Value::String("<secret>".into());
                } else {
                    mask(v);
                }
            }
        }
        yaml_serde::Value::Sequence(s) => s.iter_mut().for_each(mask),
        yaml_serde::Value::Tagged(t) => mask(&mut t.value),
        _ => {}
    }
}
