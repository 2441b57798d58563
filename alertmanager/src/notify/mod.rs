//! Alertmanager: routing, grouping, inhibition, silences and receivers.
//!
//! - `config`: alertmanager.yml types and loading; `runtime`: the compiled config.
//! - `route`, `inhibit`, `time_interval`, `matchers`: Alertmanager's semantics, one file each.
//! - `alertmanager`: the alert store, the dispatcher and the notification pipeline.
//! - `state`: the notification log and silences, fsynced journals.
//! - `receivers`: webhook and email; `template`: Go templates for them.
//! - `api`: the HTTP API v2; `metrics`: its counters.

mod alertmanager;
mod api;
mod config;
mod inhibit;
mod matchers;
mod metrics;
mod receivers;
mod route;
mod runtime;
mod state;
mod template;
mod time_interval;

pub use self::alertmanager::{Alertmanager, Clock, DispatchEvent, Limits, OpenError, StoredAlert};
pub use self::api::{MAX_BODY, router};
pub use self::config::{AlertmanagerConfigFile, Config, ConfigError, NotifySettings, Secret};
pub use self::inhibit::{InhibitRule, Inhibitor};
pub use self::matchers::{
    ApiMatcher, LabelSet, MatchType, Matcher, Matchers, fingerprint, labelset_string, parse_matchers,
};
pub use self::metrics::Metrics;
pub use self::receivers::webhook::WebhookMessage;
pub use self::receivers::{Notification, NotifyAlert, go_time};
pub use self::route::{Route, RouteOpts, group_labels};
pub use self::runtime::Runtime;
pub use self::state::nflog::{NflogEntry, needs_update};
pub use self::state::silences::{PostableSilence, Silence};
pub use self::template::{TemplateData, Templates};
