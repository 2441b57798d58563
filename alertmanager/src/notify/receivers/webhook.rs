//! Webhooks: Alertmanager's version 4 JSON payload, POSTed with the configured HTTP settings.

use std::time::Duration;

use serde::Serialize;

use super::{Notification, NotifyError};
use crate::notify::config::{HttpConfig, WebhookConfig};
use crate::notify::matchers::LabelSet;

/// The payload, field for field as Alertmanager's `webhook.Message`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WebhookMessage {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<WebhookAlert>,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    pub group_key: String,
    pub truncated_alerts: u64,
}

/// One alert of the payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct WebhookAlert {
    pub status: String,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

impl WebhookMessage {
    /// Builds the payload, keeping at most `max_alerts` alerts (0 = all).
    pub fn build(n: &Notification, max_alerts: u64) -> Self {
        let data = n.template_data();
        let total = data.alerts.len() as u64;
        let keep = if max_alerts == 0 { total } else { total.min(max_alerts) };
        WebhookMessage {
            receiver: n.receiver.clone(),
            status: data.status,
            alerts: data
                .alerts
                .into_iter()
                .take(keep as usize)
                .map(|a| WebhookAlert {
                    status: a.status,
                    labels: a.labels,
                    annotations: a.annotations,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    generator_url: a.generator_url,
                    fingerprint: a.fingerprint,
                })
                .collect(),
            group_labels: data.group_labels,
            common_labels: data.common_labels,
            common_annotations: data.common_annotations,
            external_url: n.external_url.clone(),
            version: "4".into(),
            group_key: n.group_key.clone(),
            truncated_alerts: total - keep,
        }
    }
}

/// A compiled `webhook_configs` entry.
pub struct Webhook {
    url: reqwest::Url,
    max_alerts: u64,
    client: reqwest::Client,
    authorization: Option<Auth>,
}

/// How requests authenticate.
pub enum Auth {
    /// `basic_auth`.
    Basic(String, String),
    /// A ready `Authorization` header value.
    Header(String),
}

fn read_secret_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

/// Builds a reqwest client and an `Authorization` header value from `http_config`.
pub fn http_client(cfg: Option<&HttpConfig>) -> Result<(reqwest::Client, Option<Auth>), String> {
    let mut b = reqwest::Client::builder().user_agent(concat!("Tidewatch-Alertmanager/", env!("CARGO_PKG_VERSION")));
    let mut auth = None;
    if let Some(c) = cfg {
        if let Some(ba) = &c.basic_auth {
            let password = match (&ba.password, &ba.password_file) {
                (Some(p), _) => p.0.clone(),
                (None, Some(f)) => read_secret_file(f)?,
                _ => String::new(),
            };
            auth = Some(Auth::Basic(ba.username.clone(), password));
        }
        let bearer = match (&c.bearer_token, &c.bearer_token_file) {
            (Some(t), _) => Some(t.0.clone()),
            (None, Some(f)) => Some(read_secret_file(f)?),
            _ => None,
        };
        if let Some(t) = bearer {
            auth = Some(Auth::Header(format!("Bearer {t}")));
        }
        if let Some(a) = &c.authorization {
            let creds = match (&a.credentials, &a.credentials_file) {
                (Some(t), _) => t.0.clone(),
                (None, Some(f)) => read_secret_file(f)?,
                _ => String::new(),
            };
            auth = Some(Auth::Header(format!(
                "{} {creds}",
                a.kind.as_deref().unwrap_or("Bearer")
            )));
        }
        if let Some(p) = &c.proxy_url {
            b = b.proxy(reqwest::Proxy::all(p.as_str()).map_err(|e| format!("proxy_url: {e}"))?);
        }
        if c.follow_redirects == Some(false) {
            b = b.redirect(reqwest::redirect::Policy::none());
        }
        if let Some(tls) = &c.tls_config {
            if tls.insecure_skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca).map_err(|e| format!("tls_config.ca_file: {ca}: {e}"))?;
                for cert in
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("tls_config.ca_file: {e}"))?
                {
                    b = b.add_root_certificate(cert);
                }
            }
        }
    }
    let client = b.build().map_err(|e| format!("http client: {e}"))?;
    Ok((client, auth))
}

impl Webhook {
    /// Compiles a config entry (inheriting `global.http_config`).
    pub fn new(cfg: &WebhookConfig, global_http: Option<&HttpConfig>) -> Result<Self, String> {
        let url = match (&cfg.url, &cfg.url_file) {
            (Some(u), _) => u.clone(),
            (None, Some(f)) => read_secret_file(f)?,
            _ => return Err("one of url or url_file must be configured".into()),
        };
        let url = reqwest::Url::parse(&url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url: unsupported scheme {:?}", url.scheme()));
        }
        let (client, authorization) = http_client(cfg.http_config.as_ref().or(global_http))?;
        Ok(Webhook {
            url,
            max_alerts: cfg.max_alerts,
            client,
            authorization,
        })
    }

    /// POSTs the payload once. 5xx and 429 are retryable; other non-2xx are not.
    pub async fn notify(&self, n: &Notification, timeout: Duration) -> Result<(), NotifyError> {
        let msg = WebhookMessage::build(n, self.max_alerts);
        let mut req = self.client.post(self.url.clone()).json(&msg).timeout(timeout);
        match &self.authorization {
            Some(Auth::Basic(user, pass)) => req = req.basic_auth(user, Some(pass)),
            Some(Auth::Header(h)) => req = req.header(reqwest::header::AUTHORIZATION, h),
            None => {}
        }
        // Only scheme://host/path in errors: the URL's query may carry a token.
        let shown = format!(
            "{}://{}{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or(""),
            self.url.path()
        );
        let resp = req.send().await.map_err(|e| NotifyError {
            retry: true,
            message: format!("POST {shown}: {}", e.without_url()),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(NotifyError {
            retry: status.is_server_error() || status.as_u16() == 429,
            message: format!("POST {shown}: unexpected status code {}", status.as_u16()),
        })
    }
}
