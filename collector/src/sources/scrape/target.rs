//! One scrape target as a [`MetricSource`]: fetch, parse, label, limit, report, and mark stale
//! what disappeared, as Prometheus' scrape loop does.

use std::collections::HashSet;
use std::time::Instant;

use async_trait::async_trait;
use tidewatch_model::{Labels, Sample, Series, names, stale_nan};

use super::discover::TargetSpec;
use super::parse::{Format, parse};
use super::relabel::relabel;
use crate::{CollectContext, MetricSource};

/// Why a scrape failed (then `up` is 0).
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Connecting, sending or receiving failed, or the status was not 2xx.
    #[error("GET {url}: {message}")]
    Http {
        /// The target's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The body was not valid exposition text.
    #[error("GET {url}: {source}")]
    Parse {
        /// The target's URL.
        url: String,
        /// The parser's error with its line.
        source: super::parse::ParseError,
    },
    /// A series broke `label_limit`, `label_name_length_limit` or `label_value_length_limit`.
    #[error("GET {url}: {message}")]
    LabelLimit {
        /// The target's URL.
        url: String,
        /// Which limit, and the series.
        message: String,
    },
    /// More samples than `sample_limit` after metric relabeling.
    #[error("GET {url}: sample limit exceeded ({count} > {limit})")]
    SampleLimit {
        /// The target's URL.
        url: String,
        /// Samples in the scrape.
        count: u64,
        /// The job's limit.
        limit: u64,
    },
}

/// A target being scraped. Source id `scrape:<job>:<instance>`.
pub struct ScrapeTarget {
    spec: TargetSpec,
    /// Added to every series that lacks them: `external_labels` and `node`.
    external: Labels,
    /// Series written by the last round without an explicit timestamp: the ones that get a
    /// staleness marker when they disappear.
    last: HashSet<Labels>,
    /// The report series written last round (they go stale only when the target goes).
    last_report: Vec<Labels>,
    agent: ureq::Agent,
    last_error: Option<String>,
}

impl ScrapeTarget {
    pub(super) fn new(spec: TargetSpec, external: Labels) -> ScrapeTarget {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(spec.timeout))
            .http_status_as_error(false)
            .max_redirects(if spec.follow_redirects { 10 } else { 0 })
            .build();
        ScrapeTarget {
            spec,
            external,
            last: HashSet::new(),
            last_report: Vec::new(),
            agent: ureq::Agent::new_with_config(config),
            last_error: None,
        }
    }

    /// What this target scrapes and how.
    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    /// The last scrape's error, if it failed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The target is gone: staleness markers at `now_ms` for every series it wrote, the
    /// report series included. Call once, then drop the target.
    pub fn finish(&mut self, now_ms: i64) -> Vec<Series> {
        let mut out: Vec<Series> = self.last.drain().map(|l| stale(l, now_ms)).collect();
        out.extend(self.last_report.drain(..).map(|l| stale(l, now_ms)));
        out
    }
}

fn fetch(agent: &ureq::Agent, spec: &TargetSpec) -> Result<(String, Format), ScrapeError> {
    let url = spec.url.clone();
    let http = |message: String| ScrapeError::Http {
        url: url.clone(),
        message,
    };
    let mut resp = agent
        .get(&spec.url)
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", spec.timeout.as_secs_f64()),
        )
        .header("User-Agent", concat!("tidewatch/", env!("CARGO_PKG_VERSION")))
        .call()
        .map_err(|e| http(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(http(format!("server returned HTTP status {}", resp.status())));
    }
    let format = Format::from_content_type(resp.headers().get("content-type").and_then(|v| v.to_str().ok()));
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(spec.body_limit)
        .read_to_vec()
        .map_err(|e| http(format!("reading the body (limit {} bytes): {e}", spec.body_limit)))?;
    let body = String::from_utf8(bytes).map_err(|e| http(format!("body is not UTF-8: {e}")))?;
    Ok((body, format))
}

impl ScrapeTarget {
    /// Labels a scraped series as Prometheus does: target labels win unless `honor_labels`,
    /// a clashing scraped label is kept as `exported_<name>`.
    fn label(&self, mut scraped: Labels) -> Labels {
        for t in self.spec.labels.iter() {
            match scraped.get(&t.name) {
                None => scraped.set(t.name.clone(), t.value.clone()),
                Some(_) if self.spec.honor_labels => {}
                Some(existing) => {
                    let existing = existing.to_string();
                    let mut name = format!("exported_{}", t.name);
                    while scraped.get(&name).is_some() {
                        name = format!("exported_{name}");
                    }
                    scraped.set(name, existing);
                    scraped.set(t.name.clone(), t.value.clone());
                }
            }
        }
        scraped
    }

    fn add_external(&self, labels: &mut Labels) {
        for e in self.external.iter() {
            if labels.get(&e.name).is_none() {
                labels.set(e.name.clone(), e.value.clone());
            }
        }
    }

    /// One scrape at `now_ms`; the samples, the report series, and the markers for what went.
    pub async fn scrape(&mut self, now_ms: i64) -> Vec<Series> {
        let started = Instant::now();
        // ureq blocks, so the request runs on the blocking pool; the target is moved there
        // and back rather than shared.
        // ureq blocks, so the request runs on the blocking pool.
        let (agent, spec) = (self.agent.clone(), self.spec.clone());
        let fetched = match tokio::task::spawn_blocking(move || fetch(&agent, &spec)).await {
            Ok(r) => r,
            Err(e) => Err(ScrapeError::Http {
                url: self.spec.url.clone(),
                message: format!("scrape task failed: {e}"),
            }),
        };
        let mut scraped_count = 0u64;
        let mut post_relabel = 0u64;
        let result = fetched.and_then(|(body, format)| {
            let parsed = parse(&body, format).map_err(|source| ScrapeError::Parse {
                url: self.spec.url.clone(),
                source,
            })?;
            scraped_count = parsed.len() as u64;
            let mut series = Vec::with_capacity(parsed.len());
            let mut seen: HashSet<Labels> = HashSet::with_capacity(parsed.len());
            for p in parsed {
                let labels = self.label(p.labels);
                let Some(mut labels) = relabel(labels, &self.spec.metric_relabel) else {
                    continue;
                };
                if labels.metric_name().is_none_or(str::is_empty) {
                    continue;
                }
                post_relabel += 1;
                if let Some(message) = self.spec.label_limits.check(&labels) {
                    return Err(ScrapeError::LabelLimit {
                        url: self.spec.url.clone(),
                        message,
                    });
                }
                self.add_external(&mut labels);
                // Prometheus rejects a second sample for the same series in one scrape.
                if !seen.insert(labels.clone()) {
                    continue;
                }
                let ts = if self.spec.honor_timestamps {
                    p.timestamp_ms
                } else {
                    None
                };
                series.push((labels, ts, p.value));
            }
            if self.spec.sample_limit > 0 && post_relabel > self.spec.sample_limit {
                return Err(ScrapeError::SampleLimit {
                    url: self.spec.url.clone(),
                    count: post_relabel,
                    limit: self.spec.sample_limit,
                });
            }
            Ok(series)
        });
        let duration = started.elapsed().as_secs_f64();
        let mut out = Vec::new();
        let (up, added) = match result {
            Ok(series) => {
                self.last_error = None;
                let mut current = HashSet::with_capacity(series.len());
                let mut added = 0u64;
                for (labels, ts, value) in series {
                    if ts.is_none() {
                        if !self.last.contains(&labels) {
                            added += 1;
                        }
                        current.insert(labels.clone());
                    } else {
                        added += 1;
                    }
                    out.push(Series {
                        labels,
                        samples: vec![Sample {
                            timestamp_ms: ts.unwrap_or(now_ms),
                            value,
                        }],
                    });
                }
                let gone: Vec<Labels> = self.last.difference(&current).cloned().collect();
                out.extend(gone.into_iter().map(|l| stale(l, now_ms)));
                self.last = current;
                (1.0, added)
            }
            Err(e) => {
                tracing::debug!(target = %self.spec.id, error = %e, "scrape failed");
                self.last_error = Some(e.to_string());
                // As Prometheus: a failed scrape ends every series of the previous one.
                out.extend(self.last.drain().map(|l| stale(l, now_ms)));
                (0.0, 0)
            }
        };
        let report = [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped_count as f64),
            ("scrape_samples_post_metric_relabeling", post_relabel as f64),
            ("scrape_series_added", added as f64),
        ];
        self.last_report.clear();
        for (name, value) in report {
            let mut labels = self.spec.labels.clone();
            labels.set(names::METRIC_NAME, name);
            self.add_external(&mut labels);
            self.last_report.push(labels.clone());
            out.push(Series {
                labels,
                samples: vec![Sample {
                    timestamp_ms: now_ms,
                    value,
                }],
            });
        }
        out
    }
}

fn stale(labels: Labels, now_ms: i64) -> Series {
    Series {
        labels,
        samples: vec![Sample {
            timestamp_ms: now_ms,
            value: stale_nan(),
        }],
    }
}

#[async_trait]
impl MetricSource for ScrapeTarget {
    fn id(&self) -> &str {
        &self.spec.id
    }

    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series> {
        if self.external.get(names::NODE).is_none() && !ctx.node.is_empty() {
            self.external.set(names::NODE, ctx.node.clone());
        }
        self.scrape(ctx.now_ms).await
    }

    fn finish(&mut self, now_ms: i64) -> Vec<Series> {
        ScrapeTarget::finish(self, now_ms)
    }
}
