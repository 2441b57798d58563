//! The Docker source: discovery (the initial list, then the events stream, with a periodic
//! re-list as a safety net), published as `Arc<Vec<ContainerInfo>>` for the metric sources,
//! and one follower task per running container that ships its logs to the disk buffer.
//!
//! Each container stream (`stdout`, `stderr`; a TTY container has only `stdout`) is one
//! delivery source, `<node>/docker/<container id>/<stream>`, whose checkpoint is
//! [`lines::Checkpoint`]. A follower asks for the logs `since` the checkpoint's second and skips
//! what the checkpoint says was taken, so a restart neither loses nor repeats a line.

mod lines;

pub use lines::{Checkpoint, LINE_CONTINUES};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder};
use futures_util::{FutureExt, StreamExt};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration, Labels};
use tidewatch_model::{loki_push, names};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ContainerInfo;
use crate::agent::AgentMetrics;
use crate::buffer::{Buffer, Payload};
use lines::{ENTRY_BYTES, StreamLines};

/// The container label that sets a container's multi-line start pattern.
pub const MULTILINE_LABEL: &str = "tidewatch.multiline.start";

/// Which containers to follow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerFilter {
    /// Docker labels, `key` (present) or `key=value`.
    pub labels: Vec<String>,
    /// Regular expressions matched against the container's name (anchored at both ends).
    pub names: Vec<String>,
}

impl ContainerFilter {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.names.is_empty()
    }

    fn compile(&self, field: &str) -> Result<Vec<Regex>, String> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| Regex::new(&format!("^(?:{n})$")).map_err(|e| format!("{field}.names[{i}]: {e}")))
            .collect()
    }

    fn matches(&self, names: &[Regex], c: &ContainerInfo) -> bool {
        self.labels.iter().any(|l| match l.split_once('=') {
            Some((k, v)) => c.labels.get(k).is_some_and(|x| x == v),
            None => c.labels.contains_key(l),
        }) || names.iter().any(|r| r.is_match(&c.name))
    }
}

/// `docker:` in the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Whether to discover containers and follow their logs (default true).
    pub enabled: bool,
    /// The engine: `unix:///var/run/docker.sock` or `http://host:port`; default: `DOCKER_HOST`,
    /// else the local socket.
    pub host: Option<String>,
    /// Only containers matching one of these (default: all).
    pub include: ContainerFilter,
    /// Never containers matching one of these.
    pub exclude: ContainerFilter,
    /// Multi-line joining for every container: a line matching this starts a record, other
    /// lines are appended to it. The container label `tidewatch.multiline.start` overrides it.
    pub multiline_start: Option<String>,
    /// How long a multi-line record waits for its next line (default `1s`).
    pub multiline_timeout: Duration,
    /// Lines longer than this are split into pieces, each but the last ending in
    /// `" [tidewatch: line continues]"` (default `128KiB`; the server refuses lines over 256KiB).
    pub max_line_size: ByteSize,
    /// How often the container list is read again in case an event was missed (default `10s`).
    pub resync_interval: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: true,
            host: None,
            include: ContainerFilter::default(),
            exclude: ContainerFilter::default(),
            multiline_start: None,
            multiline_timeout: Duration::from_secs(1),
            max_line_size: ByteSize(128 * 1024),
            resync_interval: Duration::from_secs(10),
        }
    }
}

impl DockerConfig {
    /// Checks the patterns; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        self.include.compile("include")?;
        self.exclude.compile("exclude")?;
        if let Some(p) = &self.multiline_start {
            Regex::new(p).map_err(|e| format!("multiline_start: {e}"))?;
        }
        Ok(())
    }
}

struct Filters {
    include: ContainerFilter,
    include_names: Vec<Regex>,
    exclude: ContainerFilter,
    exclude_names: Vec<Regex>,
}

impl Filters {
    fn wants(&self, c: &ContainerInfo) -> bool {
        (self.include.is_empty() || self.include.matches(&self.include_names, c))
            && !self.exclude.matches(&self.exclude_names, c)
    }
}

/// Bytes hyper reads from a Docker socket at a time. Its default read buffer grows with each
/// read that fills it (up to ~400 KiB), and a follower's socket fills it at every burst: fifty
/// followed containers then held megabytes of read buffers (the agent's RSS figure, issue 5).
/// A fixed size keeps each connection at this, at the cost of more reads for a large backlog.
const DOCKER_READ_BYTES: usize = 16 * 1024;

async fn connect(config: &DockerConfig) -> Result<Docker, bollard::errors::Error> {
    let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
    let host = config.host.clone().or(from_env);
    let docker = match host.as_deref() {
        Some(h) if h.starts_with("http://") || h.starts_with("tcp://") => {
            Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION)?
        }
        Some(h) => connect_unix(h.trim_start_matches("unix://"))?,
        None => connect_unix("/var/run/docker.sock")?,
    };
    docker.negotiate_version().await
}

/// bollard over our own hyper client, which differs from bollard's only in
/// [`DOCKER_READ_BYTES`].
fn connect_unix(path: &str) -> Result<Docker, bollard::errors::Error> {
    if !std::path::Path::new(path).exists() {
        return Err(bollard::errors::Error::SocketNotFoundError(path.to_string()));
    }
    let mut builder = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    builder
        .pool_max_idle_per_host(0)
        .http1_read_buf_exact_size(DOCKER_READ_BYTES);
    let client = Arc::new(builder.build(SocketConnector(Arc::from(path))));
    let transport = move |req: bollard::BollardRequest| {
        let client = Arc::clone(&client);
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    // The address only names the host in requests; the connector always dials the socket.
    Docker::connect_with_custom_transport(transport, Some("http://docker"), 120, bollard::API_DEFAULT_VERSION)
}

/// Connects every request to one Unix socket, whatever the URI says.
#[derive(Clone)]
struct SocketConnector(Arc<str>);

impl tower_service::Service<hyper::Uri> for SocketConnector {
    type Response = hyper_util::rt::TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let path = Arc::clone(&self.0);
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&*path).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

async fn inspect(docker: &Docker, id: &str) -> Option<(ContainerInfo, bool)> {
    let c = docker.inspect_container(id, None).await.ok()?;
    let config = c.config.unwrap_or_default();
    let state = c.state.unwrap_or_default();
    let net = c.network_settings.unwrap_or_default();
    let name = c.name.unwrap_or_default().trim_start_matches('/').to_string();
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let mut published_ports = BTreeMap::new();
    for (port, bindings) in net.ports.unwrap_or_default() {
        let Some(cport) = port.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        if let Some(hport) = bindings
            .unwrap_or_default()
            .iter()
            .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
            .next()
        {
            published_ports.insert(cport, hport);
        }
    }
    let info = ContainerInfo {
        id: c.id.unwrap_or_else(|| id.to_string()),
        service: ContainerInfo::service_of(&name, &labels),
        name,
        image: config.image.unwrap_or_default(),
        labels,
        pid: state.pid.unwrap_or(0).max(0) as u32,
        published_ports,
        ip_addresses: net
            .networks
            .unwrap_or_default()
            .values()
            .filter_map(|n| n.ip_address.clone().filter(|a| !a.is_empty()))
            .collect(),
        tty: config.tty.unwrap_or(false),
    };
    Some((info, state.running.unwrap_or(false)))
}

struct Follower {
    info: watch::Sender<ContainerInfo>,
    task: JoinHandle<()>,
}

struct Discovery {
    docker: Docker,
    config: DockerConfig,
    filters: Filters,
    node: String,
    buffer: Buffer,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
    running: BTreeMap<String, ContainerInfo>,
    followers: HashMap<String, Follower>,
    publish: watch::Sender<Arc<Vec<ContainerInfo>>>,
}

impl Discovery {
    fn publish(&self) {
        self.publish
            .send_replace(Arc::new(self.running.values().cloned().collect()));
    }

    async fn update(&mut self, id: &str) {
        match inspect(&self.docker, id).await {
            Some((info, running)) if running && self.filters.wants(&info) => {
                self.ensure_follower(&info);
                self.running.insert(info.id.clone(), info);
            }
            Some((info, _)) => {
                // Stopped: the follower drains what is left and ends by itself.
                if let Some(f) = self.followers.get(&info.id) {
                    f.info.send_replace(info.clone());
                }
                self.running.remove(&info.id);
            }
            None => {
                self.running.remove(id);
            }
        }
        self.publish();
    }

    fn ensure_follower(&mut self, info: &ContainerInfo) {
        if let Some(f) = self.followers.get(&info.id) {
            f.info.send_replace(info.clone());
            if !f.task.is_finished() {
                return;
            }
        }
        let (tx, rx) = watch::channel(info.clone());
        let task = tokio::spawn(follow(
            self.docker.clone(),
            rx,
            self.config.clone(),
            self.node.clone(),
            self.buffer.clone(),
            self.metrics.clone(),
            self.cancel.clone(),
        ));
        self.followers.insert(info.id.clone(), Follower { info: tx, task });
    }

    async fn resync(&mut self) -> Result<(), bollard::errors::Error> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(false).build()))
            .await?;
        let listed: Vec<(String, String)> = list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string());
                Some((c.id?, name.unwrap_or_default()))
            })
            .collect();
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        self.running.retain(|id, _| ids.contains(id));
        for (id, name) in &listed {
            // A container followed under the same name needs no inspect (fifty inspects every
            // resync were a visible part of the agent's CPU); events bring the other changes.
            let followed = self.running.get(id).is_some_and(|c| &c.name == name)
                && self.followers.get(id).is_some_and(|f| !f.task.is_finished());
            if !followed {
                self.update(id).await;
            }
        }
        self.followers.retain(|id, f| !f.task.is_finished() || ids.contains(id));
        self.publish();
        Ok(())
    }
}

/// Runs discovery and the log followers until `cancel` fires. Reconnects when the engine goes
/// away; an absent engine is logged and retried, not fatal.
pub async fn run(
    config: DockerConfig,
    node: String,
    buffer: Buffer,
    publish: watch::Sender<Arc<Vec<ContainerInfo>>>,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
) {
    let compile = |f: &ContainerFilter| f.compile("").unwrap_or_default();
    let filters = Filters {
        include_names: compile(&config.include),
        exclude_names: compile(&config.exclude),
        include: config.include.clone(),
        exclude: config.exclude.clone(),
    };
    let mut filters = Some(filters);
    let mut followers = HashMap::new();
    loop {
        let docker = tokio::select! {
            _ = cancel.cancelled() => return,
            d = connect(&config) => d,
        };
        let docker = match docker {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "docker: cannot reach the engine; retrying in 5s");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(StdDuration::from_secs(5)) => continue,
                }
            }
        };
        let mut d = Discovery {
            docker: docker.clone(),
            config: config.clone(),
            filters: filters.take().expect("put back below"),
            node: node.clone(),
            buffer: buffer.clone(),
            metrics: metrics.clone(),
            cancel: cancel.clone(),
            running: BTreeMap::new(),
            followers: std::mem::take(&mut followers),
            publish: publish.clone(),
        };
        // Subscribe before listing, so nothing that starts in between is missed.
        let filter: HashMap<&str, Vec<&str>> = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "die", "destroy", "rename"]),
        ]);
        let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filter).build()));
        if let Err(e) = d.resync().await {
            tracing::warn!(error = %e, "docker: cannot list containers");
        }
        let mut tick = tokio::time::interval(config.resync_interval.as_std().max(StdDuration::from_secs(1)));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        let id = ev.actor.and_then(|a| a.id).unwrap_or_default();
                        match ev.action.as_deref() {
                            Some("destroy") => {
                                d.running.remove(&id);
                                d.publish();
                            }
                            Some(_) if !id.is_empty() => d.update(&id).await,
                            _ => {}
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "docker: the events stream failed; reconnecting");
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if let Err(e) = d.resync().await {
                        tracing::warn!(error = %e, "docker: cannot list containers");
                    }
                }
            }
        }
        filters = Some(d.filters);
        followers = d.followers;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
        }
    }
}

/// The Loki label text of a container's streams, formatted again only when discovery sends
/// the container's details anew (a rename, a restart).
struct StreamLabels {
    info: watch::Receiver<ContainerInfo>,
    node: String,
    text: [Arc<str>; 2],
}

impl StreamLabels {
    fn new(mut info: watch::Receiver<ContainerInfo>, node: String) -> Self {
        let text = Self::format(&info.borrow_and_update(), &node);
        StreamLabels { info, node, text }
    }

    fn format(info: &ContainerInfo, node: &str) -> [Arc<str>; 2] {
        STREAMS.map(|stream| {
            let labels = Labels::from_pairs([
                (names::CONTAINER, info.name.as_str()),
                (names::CONTAINER_ID, info.id.as_str()),
                (names::IMAGE, info.image.as_str()),
                (names::SERVICE, info.service.as_str()),
                (names::NODE, node),
                (names::STREAM, stream),
            ]);
            Arc::from(loki_push::format_labels(&labels))
        })
    }

    fn of_stream(&mut self, i: usize) -> Arc<str> {
        if self.info.has_changed().unwrap_or(false) {
            self.text = Self::format(&self.info.borrow_and_update(), &self.node);
        }
        self.text[i].clone()
    }
}

const STREAMS: [&str; 2] = ["stdout", "stderr"];
/// Log messages taken from the stream at most per wake-up (and at most ENTRY_BYTES of lines),
/// before they are buffered.
const DRAIN_MAX: usize = 4096;
/// Turns given to the connection task with nothing new before the socket counts as empty.
const DRAIN_MISSES: u32 = 1;

/// Hands one message to its stream; false when the log stream failed.
fn feed(states: &mut [StreamLines], item: Result<LogOutput, bollard::errors::Error>, id: &str) -> bool {
    match item {
        Ok(LogOutput::StdOut { message }) => states[0].feed_message(&message),
        Ok(LogOutput::StdErr { message }) => states[1].feed_message(&message),
        Ok(LogOutput::Console { message }) => states[0].feed_tty(&message),
        Ok(LogOutput::StdIn { .. }) => {}
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "docker: the log stream failed; reopening");
            return false;
        }
    }
    true
}

/// Follows one container's logs until it stops (or `cancel` fires).
async fn follow(
    docker: Docker,
    info: watch::Receiver<ContainerInfo>,
    config: DockerConfig,
    node: String,
    buffer: Buffer,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
) {
    let id = info.borrow().id.clone();
    let sources: Vec<String> = STREAMS.iter().map(|s| format!("{node}/docker/{id}/{s}")).collect();
    let multiline = {
        let i = info.borrow();
        let pattern = i.labels.get(MULTILINE_LABEL).or(config.multiline_start.as_ref());
        pattern.and_then(|p| match Regex::new(p) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(container = %i.name, error = %e, "docker: bad multi-line pattern; lines are kept apart");
                None
            }
        })
    };
    let max_line = config.max_line_size.bytes() as usize;
    let mut labels = StreamLabels::new(info.clone(), node);
    let mut states: Vec<StreamLines> = sources
        .iter()
        .map(|s| {
            let resume = buffer.resume_point(s).and_then(|p| Checkpoint::decode(&p.checkpoint));
            StreamLines::new(resume, max_line, multiline.clone())
        })
        .collect();
    let wait = config.multiline_timeout.as_std();
    loop {
        let since = states
            .iter()
            .map(|s| s.since_ns().unwrap_or(0))
            .min()
            .unwrap_or(0)
            .div_euclid(1_000_000_000)
            .clamp(0, i32::MAX as i64) as i32;
        let opts = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut logs = docker.logs(&id, Some(opts));
        let mut failed = false;
        loop {
            let pending = states.iter().any(StreamLines::has_pending);
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                n = logs.next() => Some(n),
                _ = tokio::time::sleep(wait), if pending => None,
            };
            match next {
                None => states.iter_mut().for_each(StreamLines::flush_pending),
                Some(None) => break,
                Some(Some(item)) => {
                    failed = !feed(&mut states, item, &id);
                    // Take what else is waiting. Docker sends each line as its own chunk, and
                    // hyper hands them over one per task switch, so a stream that is not ready
                    // may only need its connection task to run: yield to it, and call the
                    // socket empty after DRAIN_MISSES such turns come back with nothing. (A
                    // timer here cost a wake-up of its own per drain.)
                    let mut taken = 1;
                    let mut misses = 0;
                    let mut ended = false;
                    let full =
                        |states: &[StreamLines]| states.iter().map(|s| s.out_bytes).sum::<usize>() >= ENTRY_BYTES;
                    while !failed && taken < DRAIN_MAX && !full(&states) {
                        match logs.next().now_or_never() {
                            Some(Some(item)) => {
                                failed = !feed(&mut states, item, &id);
                                taken += 1;
                                misses = 0;
                            }
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None if misses < DRAIN_MISSES => {
                                misses += 1;
                                tokio::task::yield_now().await;
                            }
                            None => break,
                        }
                    }
                    if ended {
                        break;
                    }
                }
            }
            if !ship(&mut states, &sources, &mut labels, &buffer, &metrics, &cancel).await {
                return;
            }
            if failed {
                break;
            }
        }
        // The stream ended: the container stopped, or the request failed.
        if !failed {
            states.iter_mut().for_each(StreamLines::finish);
        }
        if !ship(&mut states, &sources, &mut labels, &buffer, &metrics, &cancel).await {
            return;
        }
        states.iter_mut().for_each(StreamLines::restart);
        let running = inspect(&docker, &id).await.map(|(_, r)| r).unwrap_or(false);
        if !running && !failed {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(StdDuration::from_millis(500)) => {}
        }
        if !running && inspect(&docker, &id).await.is_none() {
            return;
        }
    }
}

/// Pushes each stream's ready records, a chunk an entry with its checkpoint; false when
/// cancelled.
async fn ship(
    states: &mut [StreamLines],
    sources: &[String],
    labels: &mut StreamLabels,
    buffer: &Buffer,
    metrics: &AgentMetrics,
    cancel: &CancellationToken,
) -> bool {
    for (i, s) in states.iter_mut().enumerate() {
        if s.out.is_empty() {
            continue;
        }
        s.out_bytes = 0;
        for chunk in std::mem::take(&mut s.out) {
            let n = chunk.lines.count();
            let payload = Payload::EncodedLogs {
                labels: labels.of_stream(i),
                lines: chunk.lines,
            };
            let pushed = tokio::select! {
                _ = cancel.cancelled() => return false,
                r = buffer.push(&sources[i], chunk.cp.encode(), payload) => r,
            };
            match pushed {
                Ok(_) => metrics.read("docker", n),
                Err(e) => tracing::error!(source = %sources[i], error = %e, "docker: cannot buffer log lines"),
            }
        }
    }
    true
}
