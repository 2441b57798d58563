//! The `scrape` section: Prometheus' `scrape_configs` (a prometheus.yml list pastes in, minus
//! service discovery other than `static_configs`), plus the job for containers that ask to be
//! scraped, and `external_labels`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration};

use super::relabel::RelabelConfig;

/// The `scrape` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeSection {
    /// Labels added to every scraped series that does not have them (Prometheus'
    /// `global.external_labels`).
    pub external_labels: BTreeMap<String, String>,
    /// Default interval for jobs that set none (Prometheus' global default, 1m).
    pub scrape_interval: Duration,
    /// Default timeout for jobs that set none (Prometheus' global default, 10s).
    pub scrape_timeout: Duration,
    /// The job for containers labelled `tidewatch.scrape.port` (optional
    /// `tidewatch.scrape.path`); `null` turns container scraping off. Its `static_configs` must
    /// be empty. Default: job `containers` with the section's interval and timeout.
    pub containers: Option<ScrapeConfig>,
    /// Static jobs, as in prometheus.yml.
    pub scrape_configs: Vec<ScrapeConfig>,
}

impl Default for ScrapeSection {
    fn default() -> Self {
        ScrapeSection {
            external_labels: BTreeMap::new(),
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            containers: Some(ScrapeConfig {
                job_name: "containers".into(),
                ..ScrapeConfig::default()
            }),
            scrape_configs: Vec::new(),
        }
    }
}

/// One job: Prometheus' `scrape_config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label.
    pub job_name: String,
    /// Default: the section's `scrape_interval`.
    pub scrape_interval: Option<Duration>,
    /// Default: the section's `scrape_timeout`, and never more than the interval.
    pub scrape_timeout: Option<Duration>,
    /// Default `/metrics`.
    pub metrics_path: String,
    /// Only `http`: targets are on loopback (../shared/DESIGN.md), so TLS is not built in.
    pub scheme: String,
    /// URL query parameters (`__param_<name>` during relabeling).
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the scraped labels when they clash with target labels (default false: the scraped
    /// ones are renamed `exported_<name>`).
    pub honor_labels: bool,
    /// Use timestamps the target exposes (default true).
    pub honor_timestamps: bool,
    /// More samples than this after metric relabeling fails the scrape (0 = no limit).
    pub sample_limit: u64,
    /// More labels than this on one series fails the scrape (0 = no limit).
    pub label_limit: u64,
    /// A label name longer than this fails the scrape (0 = no limit).
    pub label_name_length_limit: u64,
    /// A label value longer than this fails the scrape (0 = no limit).
    pub label_value_length_limit: u64,
    /// Follow HTTP redirects (default true).
    pub follow_redirects: bool,
    /// Largest response body accepted (default 32MiB; Prometheus' default is unlimited, but the
    /// agent's memory must stay bounded).
    pub body_size_limit: ByteSize,
    /// Fixed targets.
    pub static_configs: Vec<StaticConfig>,
    /// Applied to each target's labels before scraping.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Applied to each scraped series.
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            follow_redirects: true,
            body_size_limit: ByteSize::mib(32),
            static_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

/// Prometheus' `static_config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels given to every target of the group.
    pub labels: BTreeMap<String, String>,
}
