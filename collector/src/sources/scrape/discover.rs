//! Turning jobs and containers into targets: Prometheus' target label rules
//! (`populateLabels`): defaults, relabeling, `instance`, and dropping `__`-labels.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tidewatch_model::{Labels, names};

use super::relabel::{Relabeler, relabel};
use crate::ContainerInfo;

/// Container label naming the container port to scrape.
pub const SCRAPE_PORT_LABEL: &str = "tidewatch.scrape.port";
/// Container label naming the path to scrape (default: the job's `metrics_path`).
pub const SCRAPE_PATH_LABEL: &str = "tidewatch.scrape.path";

/// A job, compiled.
#[derive(Debug)]
pub(super) struct Job {
    pub name: String,
    pub interval: StdDuration,
    pub timeout: StdDuration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: u64,
    pub label_limits: LabelLimits,
    pub follow_redirects: bool,
    pub body_limit: u64,
    pub static_groups: Vec<(Vec<String>, BTreeMap<String, String>)>,
    pub relabel: Vec<Relabeler>,
    pub metric_relabel: Arc<Vec<Relabeler>>,
}

/// Prometheus' per-series label limits (0 = none); a series over one fails the scrape.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LabelLimits {
    pub count: u64,
    pub name_length: u64,
    pub value_length: u64,
}

impl LabelLimits {
    /// Why `labels` breaks a limit, if it does.
    pub(super) fn check(&self, labels: &Labels) -> Option<String> {
        if self.count > 0 && labels.len() as u64 > self.count {
            return Some(format!(
                "label_limit exceeded ({} labels > {}) on {labels}",
                labels.len(),
                self.count
            ));
        }
        for l in labels.iter() {
            if self.name_length > 0 && l.name.len() as u64 > self.name_length {
                return Some(format!("label_name_length_limit exceeded by {:?}", l.name));
            }
            if self.value_length > 0 && l.value.len() as u64 > self.value_length {
                return Some(format!(
                    "label_value_length_limit exceeded by the value of {:?}",
                    l.name
                ));
            }
        }
        None
    }
}

/// A target after relabeling: what to scrape and the labels its series get.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    /// `scrape:<job>:<instance>`.
    pub id: String,
    /// The job's name.
    pub job: String,
    /// The URL scraped.
    pub url: String,
    /// The target labels (`job`, `instance`, static and relabeled ones; no `__` labels).
    pub labels: Labels,
    /// How often.
    pub interval: StdDuration,
    /// Per request.
    pub timeout: StdDuration,
    pub(super) honor_labels: bool,
    pub(super) honor_timestamps: bool,
    pub(super) sample_limit: u64,
    pub(super) label_limits: LabelLimits,
    pub(super) follow_redirects: bool,
    pub(super) body_limit: u64,
    pub(super) metric_relabel: Arc<Vec<Relabeler>>,
}

/// Prometheus' `SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// The discovered labels of a container target, as Prometheus' docker_sd names them.
pub(super) fn container_group(c: &ContainerInfo) -> Option<Labels> {
    let port: u16 = c.labels.get(SCRAPE_PORT_LABEL)?.trim().parse().ok()?;
    let host_port = *c.published_ports.get(&port)?;
    let mut l = Labels::new();
    l.set("__address__", format!("127.0.0.1:{host_port}"));
    l.set("__meta_docker_container_id", c.id.clone());
    l.set("__meta_docker_container_name", format!("/{}", c.name));
    l.set("__meta_docker_port_private", port.to_string());
    l.set("__meta_docker_port_public", host_port.to_string());
    if let Some(ip) = c.ip_addresses.first() {
        l.set("__meta_docker_network_ip", ip.clone());
    }
    for (k, v) in &c.labels {
        l.set(format!("__meta_docker_container_label_{}", sanitize(k)), v.clone());
    }
    if let Some(path) = c.labels.get(SCRAPE_PATH_LABEL).filter(|p| !p.is_empty()) {
        l.set("__metrics_path__", path.clone());
    }
    Some(l)
}

/// Prometheus' `populateLabels` for one discovered label set of `job`.
pub(super) fn populate(job: &Job, group: Labels) -> Option<TargetSpec> {
    let mut l = group;
    let mut default = |name: &str, value: String| {
        if l.get(name).is_none() {
            l.set(name, value);
        }
    };
    default(names::JOB, job.name.clone());
    default("__scheme__", job.scheme.clone());
    default("__metrics_path__", job.metrics_path.clone());
    default(
        "__scrape_interval__",
        tidewatch_model::Duration(job.interval).to_string(),
    );
    default("__scrape_timeout__", tidewatch_model::Duration(job.timeout).to_string());
    for (k, values) in &job.params {
        if let Some(first) = values.first() {
            default(&format!("__param_{k}"), first.clone());
        }
    }
    let mut l = relabel(l, &job.relabel)?;
    let address = l.get("__address__")?.to_string();
    if l.get(names::INSTANCE).is_none() {
        l.set(names::INSTANCE, address.clone());
    }
    let scheme = l.get("__scheme__").unwrap_or("http").to_string();
    let mut path = l.get("__metrics_path__").unwrap_or("/metrics").to_string();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    // Query: each `__param_<name>` label gives the first value, the config the rest.
    let mut query: Vec<(String, String)> = Vec::new();
    for label in l.iter() {
        if let Some(name) = label.name.strip_prefix("__param_") {
            query.push((name.to_string(), label.value.clone()));
            for extra in job.params.get(name).into_iter().flatten().skip(1) {
                query.push((name.to_string(), extra.clone()));
            }
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    for (i, (k, v)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&encode(k));
        url.push('=');
        url.push_str(&encode(v));
    }
    let hidden: Vec<String> = l
        .iter()
        .filter(|x| x.name.starts_with("__"))
        .map(|x| x.name.clone())
        .collect();
    for name in hidden {
        l.remove(&name);
    }
    let instance = l.get(names::INSTANCE).unwrap_or_default().to_string();
    Some(TargetSpec {
        id: format!("scrape:{}:{}", job.name, instance),
        job: job.name.clone(),
        url,
        labels: l,
        interval: job.interval,
        timeout: job.timeout,
        honor_labels: job.honor_labels,
        honor_timestamps: job.honor_timestamps,
        sample_limit: job.sample_limit,
        label_limits: job.label_limits,
        follow_redirects: job.follow_redirects,
        body_limit: job.body_limit,
        metric_relabel: job.metric_relabel.clone(),
    })
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
