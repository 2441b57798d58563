//! Integrations: what a receiver's `*_configs` entries become, and the notification they send.

pub mod email;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::matchers::LabelSet;
use super::template::{TemplateAlert, TemplateData};

/// One alert in a notification, as of the flush.
#[derive(Clone, Debug)]
pub struct NotifyAlert {
    /// Identity.
    pub labels: LabelSet,
    /// Text.
    pub annotations: LabelSet,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End, for resolved alerts only (firing ones expose the zero time).
    pub ends_at: Option<DateTime<Utc>>,
    /// Link to the rule.
    pub generator_url: String,
    /// Fingerprint.
    pub fingerprint: u64,
}

impl NotifyAlert {
    /// `firing` / `resolved`.
    pub fn status(&self) -> &'static str {
        if self.ends_at.is_some() { "resolved" } else { "firing" }
    }
}

/// What one integration is asked to deliver.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The aggregation group's key.
    pub group_key: String,
    /// Receiver name.
    pub receiver: String,
    /// The group's labels.
    pub group_labels: LabelSet,
    /// The alerts (already filtered by `send_resolved`).
    pub alerts: Vec<NotifyAlert>,
    /// This Alertmanager's URL.
    pub external_url: String,
}

/// Go's `time.Time` JSON form: RFC 3339 with trailing zeros of the fraction trimmed.
pub fn go_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".to_string(),
        Some(t) => {
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            let nanos = t.timestamp_subsec_nanos();
            if nanos == 0 {
                format!("{base}Z")
            } else {
                let frac = format!("{nanos:09}");
                format!("{base}.{}Z", frac.trim_end_matches('0'))
            }
        }
    }
}

fn common(maps: impl Iterator<Item = LabelSet>) -> LabelSet {
    let mut it = maps;
    let Some(mut first) = it.next() else {
        return LabelSet::new();
    };
    for m in it {
        first.retain(|k, v| m.get(k) == Some(v));
    }
    first
}

impl Notification {
    /// `firing` if any alert fires.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|a| a.ends_at.is_none()) {
            "firing"
        } else {
            "resolved"
        }
    }

    /// Alertmanager's template data for this notification.
    pub fn template_data(&self) -> TemplateData {
        TemplateData {
            receiver: regex::escape(&self.receiver),
            status: self.status().to_string(),
            alerts: self
                .alerts
                .iter()
                .map(|a| TemplateAlert {
                    status: a.status().to_string(),
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    starts_at: go_time(Some(a.starts_at)),
                    ends_at: go_time(a.ends_at),
                    generator_url: a.generator_url.clone(),
                    fingerprint: format!("{:016x}", a.fingerprint),
                })
                .collect(),
            group_labels: self.group_labels.clone(),
            common_labels: common(self.alerts.iter().map(|a| a.labels.clone())),
            common_annotations: common(self.alerts.iter().map(|a| a.annotations.clone())),
            external_url: self.external_url.clone(),
        }
    }
}

/// A failed delivery; `retry` says whether trying again can help.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// Worth retrying (network errors, 5xx, 429).
    pub retry: bool,
    /// What happened (never contains secrets).
    pub message: String,
}

/// What a receiver config entry became.
pub enum IntegrationKind {
    /// `webhook_configs`.
    Webhook(webhook::Webhook),
    /// `email_configs`.
    Email(Box<email::Email>),
    /// A configured type Tidewatch cannot send to: every notification fails.
    Unsupported,
}

/// One integration of a receiver.
pub struct Integration {
    /// `webhook`, `email`, or the unsupported type's name.
    pub name: &'static str,
    /// Index among the receiver's integrations of the same type.
    pub index: usize,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
    /// The sender.
    pub kind: IntegrationKind,
}

impl Integration {
    /// Sends one notification once.
    pub async fn notify(&self, n: &Notification, timeout: Duration) -> Result<(), NotifyError> {
        match &self.kind {
            IntegrationKind::Webhook(w) => w.notify(n, timeout).await,
            IntegrationKind::Email(e) => e.notify(n, timeout).await,
            IntegrationKind::Unsupported => Err(NotifyError {
                retry: false,
                message: format!("receiver type {} is not supported by Tidewatch", self.name),
            }),
        }
    }
}

/// A named receiver and its integrations.
pub struct Receiver {
    /// Name.
    pub name: String,
    /// Integrations, in config order.
    pub integrations: Vec<Integration>,
}
