//! Email through lettre's async SMTP client: STARTTLS (required unless `require_tls: false`,
//! then opportunistic), implicit TLS on port 465, PLAIN/LOGIN auth, subject, HTML and text bodies
//! from templates, as Alertmanager's email integration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notification, NotifyError};
use crate::notify::config::{EmailConfig, GlobalConfig};
use crate::notify::template::Templates;

const DEFAULT_HTML: &str = r#"{{ template "email.default.html" . }}"#;
const DEFAULT_SUBJECT: &str = r#"{{ template "email.default.subject" . }}"#;

/// A compiled `email_configs` entry.
pub struct Email {
    to: String,
    from: String,
    headers: BTreeMap<String, String>,
    html: Option<String>,
    text: Option<String>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    templates: Arc<Templates>,
}

fn file_secret(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

impl Email {
    /// Compiles a config entry, filling unset fields from `global.smtp_*`.
    pub fn new(cfg: &EmailConfig, global: &GlobalConfig, templates: Arc<Templates>) -> Result<Self, String> {
        let to = cfg
            .to
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or("missing to address in email config")?;
        let from = cfg
            .from
            .clone()
            .or_else(|| global.smtp_from.clone())
            .filter(|f| !f.is_empty())
            .ok_or("no global SMTP from set")?;
        let smarthost = cfg
            .smarthost
            .clone()
            .or_else(|| global.smtp_smarthost.clone())
            .filter(|s| !s.is_empty())
            .ok_or("no global SMTP smarthost set")?;
        let (host, port) = smarthost
            .rsplit_once(':')
            .and_then(|(h, p)| {
                p.parse::<u16>()
                    .ok()
                    .map(|p| (h.trim_matches(['[', ']']).to_string(), p))
            })
            .ok_or_else(|| format!("smarthost {smarthost:?} is not host:port"))?;
        let hello = cfg
            .hello
            .clone()
            .or_else(|| global.smtp_hello.clone())
            .unwrap_or_else(|| "localhost".into());
        let require_tls = cfg.require_tls.or(global.smtp_require_tls).unwrap_or(true);
        let insecure = cfg.tls_config.as_ref().is_some_and(|t| t.insecure_skip_verify);
        let server_name = cfg
            .tls_config
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| host.clone());
        let params = TlsParameters::builder(server_name)
            .dangerous_accept_invalid_certs(insecure)
            .build_rustls()
            .map_err(|e| format!("tls: {e}"))?;
        let tls = if port == 465 {
            Tls::Wrapper(params)
        } else if require_tls {
            Tls::Required(params)
        } else {
            Tls::Opportunistic(params)
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .hello_name(ClientId::Domain(hello))
            .tls(tls);
        let username = cfg.auth_username.clone().or_else(|| global.smtp_auth_username.clone());
        if let Some(user) = username.filter(|u| !u.is_empty()) {
            let password = match (&cfg.auth_password, &cfg.auth_password_file, &global.smtp_auth_password) {
                (Some(p), _, _) => p.0.clone(),
                (None, Some(f), _) => file_secret(f)?,
                (None, None, Some(p)) => p.0.clone(),
                _ => match &global.smtp_auth_password_file {
                    Some(f) => file_secret(f)?,
                    None => String::new(),
                },
            };
            b = b
                .credentials(Credentials::new(user, password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        for name in cfg.headers.keys() {
            HeaderName::new_from_ascii(name.clone()).map_err(|_| format!("headers: invalid header name {name:?}"))?;
        }
        let email = Email {
            to,
            from,
            headers: cfg.headers.clone(),
            html: match &cfg.html {
                Some(h) if h.is_empty() => None,
                Some(h) => Some(h.clone()),
                None => Some(DEFAULT_HTML.to_string()),
            },
            text: cfg.text.clone().filter(|t| !t.is_empty()),
            transport: b.build(),
            templates,
        };
        for t in [&email.to, &email.from].into_iter().chain(email.headers.values()) {
            email.templates.check(t)?;
        }
        for t in email.html.iter().chain(email.text.iter()) {
            email.templates.check(t)?;
        }
        Ok(email)
    }

    fn build(&self, n: &Notification) -> Result<Message, String> {
        let data = n.template_data();
        let render = |t: &str| self.templates.render_text(t, &data);
        let mut mb = Message::builder();
        let from: Mailbox = render(&self.from)?.parse().map_err(|e| format!("from: {e}"))?;
        mb = mb.from(from);
        for addr in render(&self.to)?.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            mb = mb.to(addr.parse::<Mailbox>().map_err(|e| format!("to {addr:?}: {e}"))?);
        }
        let subject = match self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("subject")) {
            Some((_, v)) => render(v)?,
            None => render(DEFAULT_SUBJECT)?,
        };
        mb = mb.subject(subject);
        for (k, v) in &self.headers {
            if ["subject", "to", "from"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
                continue;
            }
            let name = HeaderName::new_from_ascii(k.clone()).map_err(|_| format!("header {k:?}"))?;
            mb = mb.raw_header(HeaderValue::new(name, render(v)?));
        }
        let html = self
            .html
            .as_ref()
            .map(|h| self.templates.render_html(h, &data))
            .transpose()?;
        let text = self.text.as_ref().map(|t| render(t)).transpose()?;
        let msg = match (text, html) {
            (Some(t), Some(h)) => mb.multipart(MultiPart::alternative_plain_html(t, h)),
            (Some(t), None) => mb.singlepart(SinglePart::plain(t)),
            (None, Some(h)) => mb.singlepart(SinglePart::html(h)),
            (None, None) => mb.singlepart(SinglePart::plain(String::new())),
        };
        msg.map_err(|e| format!("building message: {e}"))
    }

    /// Sends one mail. Template and address errors are not retryable; SMTP errors are, except
    /// permanent (5xx) rejections.
    pub async fn notify(&self, n: &Notification, timeout: Duration) -> Result<(), NotifyError> {
        let msg = self.build(n).map_err(|message| NotifyError { retry: false, message })?;
        match tokio::time::timeout(timeout, self.transport.send(msg)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(NotifyError {
                retry: !e.is_permanent(),
                message: format!("smtp: {e}"),
            }),
            Err(_) => Err(NotifyError {
                retry: true,
                message: "smtp: timed out".into(),
            }),
        }
    }
}
