//! The alert engine: rule groups, alert state, routing, receivers and the Alertmanager API.
//!
//! - [`rules`]: Prometheus rule files, their evaluation through [`tidewatch_model::Query`], the
//!   alert state machine, `ALERTS` written back through [`tidewatch_model::Appender`], and
//!   promtool's unit-test format. It hands firing and resolved alerts to `notify`.
//! - [`notify`]: alertmanager.yml (routes, grouping, inhibition, silences, time intervals),
//!   receivers (email, webhook), the notification log, and the Alertmanager API v2.

pub mod notify;
pub mod rules;

use std::collections::BTreeMap;

/// An alert as Prometheus sends it to Alertmanager (`POST /api/v2/alerts`): the unit that
/// crosses from [`rules`] to [`notify`], in process or over HTTP.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// The alert's identity (`alertname` included).
    pub labels: BTreeMap<String, String>,
    /// Descriptive text; not part of the identity.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (RFC 3339). Absent: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When it ends (RFC 3339): in the past for a resolved alert; absent or in the future for a
    /// firing one (Prometheus sends now + 4 × the resend delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// A link back to the rule's expression.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
}

/// Where the rule engine delivers its alerts: the in-process Alertmanager, or a remote one
/// over HTTP. Returns once the alerts are accepted (not once notified).
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync {
    /// Hands over firing and resolved alerts.
    async fn send(&self, alerts: Vec<PostableAlert>) -> Result<(), String>;
}
