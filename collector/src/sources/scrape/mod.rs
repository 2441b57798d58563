//! Scraping Prometheus endpoints: static jobs from `scrape_configs`, and containers labelled
//! `tidewatch.scrape.port` (optional `tidewatch.scrape.path`), reached on the port Docker
//! published on 127.0.0.1.
//!
//! Each target is one [`MetricSource`](crate::MetricSource) ([`ScrapeTarget`], id
//! `scrape:<job>:<instance>`). [`ScrapeTargets`] keeps the set current: the agent calls
//! [`ScrapeTargets::sync`] whenever the container list changes, schedules the targets it adds
//! (each on its own [`TargetSpec::interval`]), and for each id it removes calls
//! [`ScrapeTarget::finish`] and ships the staleness markers that returns.

mod config;
mod discover;
mod parse;
mod relabel;
mod target;

use std::collections::HashSet;
use std::sync::Arc;

use tidewatch_model::Labels;

pub use self::config::{ScrapeConfig, ScrapeSection, StaticConfig};
use self::discover::{Job, container_group, populate};
pub use self::discover::{SCRAPE_PATH_LABEL, SCRAPE_PORT_LABEL, TargetSpec};
pub use self::parse::{Format, ParseError, ParsedSample, parse};
pub use self::relabel::{RelabelAction, RelabelConfig, RelabelError, Relabeler, relabel};
pub use self::target::{ScrapeError, ScrapeTarget};
use crate::ContainerInfo;

/// A `scrape` section that cannot be used; names the job and field.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeConfigError {
    /// A field of a job is wrong.
    #[error("scrape job {job:?}: {field}: {message}")]
    Field {
        /// The job's name.
        job: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A relabel step is wrong.
    #[error("scrape job {job:?}: {field}: {source}")]
    Relabel {
        /// The job's name.
        job: String,
        /// `relabel_configs` or `metric_relabel_configs`.
        field: &'static str,
        /// The step's error.
        source: RelabelError,
    },
}

/// What changed in a [`ScrapeTargets::sync`].
#[derive(Default)]
pub struct TargetChanges {
    /// New targets to schedule.
    pub added: Vec<ScrapeTarget>,
    /// Ids of targets that are gone: call their [`ScrapeTarget::finish`], then drop them.
    pub removed: Vec<String>,
}

/// The jobs of a `scrape` section and the targets currently derived from them.
pub struct ScrapeTargets {
    jobs: Vec<Job>,
    containers: Option<Job>,
    external: Labels,
    current: HashSet<String>,
}

impl ScrapeTargets {
    /// Checks and compiles the section.
    pub fn new(section: &ScrapeSection) -> Result<ScrapeTargets, ScrapeConfigError> {
        let mut names = HashSet::new();
        let mut jobs = Vec::new();
        for cfg in &section.scrape_configs {
            if !names.insert(cfg.job_name.clone()) {
                return Err(field_err(cfg, "job_name", "duplicate job name"));
            }
            jobs.push(compile(section, cfg)?);
        }
        let containers = match &section.containers {
            Some(cfg) if !cfg.static_configs.is_empty() => {
                return Err(field_err(
                    cfg,
                    "static_configs",
                    "the containers job takes its targets from Docker",
                ));
            }
            Some(cfg) => Some(compile(section, cfg)?),
            None => None,
        };
        for name in section.external_labels.keys() {
            tidewatch_model::validate_label_name(name).map_err(|e| ScrapeConfigError::Field {
                job: String::new(),
                field: "external_labels",
                message: e.to_string(),
            })?;
        }
        Ok(ScrapeTargets {
            jobs,
            containers,
            external: Labels::from(section.external_labels.clone()),
            current: HashSet::new(),
        })
    }

    /// Every target for the static jobs and for `containers`, after relabeling.
    pub fn targets(&self, containers: &[ContainerInfo]) -> Vec<TargetSpec> {
        let mut out = Vec::new();
        for job in &self.jobs {
            for (targets, labels) in &job.static_groups {
                for address in targets {
                    let mut group = Labels::from(labels.clone());
                    group.set("__address__", address.clone());
                    out.extend(populate(job, group));
                }
            }
        }
        if let Some(job) = &self.containers {
            out.extend(
                containers
                    .iter()
                    .filter_map(container_group)
                    .filter_map(|g| populate(job, g)),
            );
        }
        // Two targets with one id would interleave in one delivery stream: keep the first.
        let mut ids = HashSet::new();
        out.retain(|t| ids.insert(t.id.clone()));
        out
    }

    /// Updates the current set for `containers`: new targets to start, gone ids to finish.
    pub fn sync(&mut self, containers: &[ContainerInfo]) -> TargetChanges {
        let specs = self.targets(containers);
        let wanted: HashSet<String> = specs.iter().map(|s| s.id.clone()).collect();
        let removed = self.current.difference(&wanted).cloned().collect();
        let added = specs
            .into_iter()
            .filter(|s| !self.current.contains(&s.id))
            .map(|s| ScrapeTarget::new(s, self.external.clone()))
            .collect();
        self.current = wanted;
        TargetChanges { added, removed }
    }

    /// A target for one spec (for callers that manage targets themselves, and tests).
    pub fn start(&self, spec: TargetSpec) -> ScrapeTarget {
        ScrapeTarget::new(spec, self.external.clone())
    }
}

fn field_err(cfg: &ScrapeConfig, field: &'static str, message: &str) -> ScrapeConfigError {
    ScrapeConfigError::Field {
        job: cfg.job_name.clone(),
        field,
        message: message.into(),
    }
}

fn compile(section: &ScrapeSection, cfg: &ScrapeConfig) -> Result<Job, ScrapeConfigError> {
    if cfg.job_name.is_empty() {
        return Err(field_err(cfg, "job_name", "must not be empty"));
    }
    if cfg.scheme != "http" {
        return Err(field_err(
            cfg,
            "scheme",
            "only http is supported (targets are on loopback)",
        ));
    }
    let interval = cfg.scrape_interval.unwrap_or(section.scrape_interval).as_std();
    let timeout = cfg.scrape_timeout.unwrap_or(section.scrape_timeout).as_std();
    if interval.is_zero() {
        return Err(field_err(cfg, "scrape_interval", "must be positive"));
    }
    if cfg.scrape_timeout.is_some() && timeout > interval {
        return Err(field_err(
            cfg,
            "scrape_timeout",
            "must not be greater than scrape_interval",
        ));
    }
    for group in &cfg.static_configs {
        for name in group.labels.keys() {
            tidewatch_model::validate_label_name(name)
                .map_err(|e| field_err(cfg, "static_configs.labels", &e.to_string()))?;
        }
    }
    let relabel = Relabeler::compile_all(&cfg.relabel_configs).map_err(|source| ScrapeConfigError::Relabel {
        job: cfg.job_name.clone(),
        field: "relabel_configs",
        source,
    })?;
    let metric_relabel =
        Relabeler::compile_all(&cfg.metric_relabel_configs).map_err(|source| ScrapeConfigError::Relabel {
            job: cfg.job_name.clone(),
            field: "metric_relabel_configs",
            source,
        })?;
    Ok(Job {
        name: cfg.job_name.clone(),
        interval,
        // As Prometheus: an unset timeout larger than the interval is cut to the interval.
        timeout: timeout.min(interval),
        metrics_path: cfg.metrics_path.clone(),
        scheme: cfg.scheme.clone(),
        params: cfg.params.clone(),
        honor_labels: cfg.honor_labels,
        honor_timestamps: cfg.honor_timestamps,
        sample_limit: cfg.sample_limit,
        label_limits: discover::LabelLimits {
            count: cfg.label_limit,
            name_length: cfg.label_name_length_limit,
            value_length: cfg.label_value_length_limit,
        },
        follow_redirects: cfg.follow_redirects,
        body_limit: cfg.body_size_limit.bytes(),
        static_groups: cfg
            .static_configs
            .iter()
            .map(|g| (g.targets.clone(), g.labels.clone()))
            .collect(),
        relabel,
        metric_relabel: Arc::new(metric_relabel),
    })
}
