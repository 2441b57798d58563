//! The process' own log output: tracing to stderr, as text or JSON, with a level that a
//! configuration reload can change.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::LogFormat;

/// Changes the log level at run time.
#[derive(Clone)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
}

/// Keeps the log writer alive. Log lines go through a background writer so a slow terminal or
/// pipe never stalls request handling; dropping the guard flushes what is queued and stops the
/// writer, after which lines are lost. So only `main` holds it, and drops it last: a task that
/// held it could drop it while others still log.
#[must_use = "dropping the guard stops log output"]
pub struct LogGuard(#[allow(dead_code, reason = "held for its Drop")] WorkerGuard);

impl Logging {
    /// Installs the global subscriber. `level` was checked when the configuration loaded.
    pub fn init(level: &str, format: LogFormat) -> anyhow::Result<(Logging, LogGuard)> {
        // Lossless: when the queue is full, the logging thread waits rather than dropping lines.
        // The queue's slots are allocated and touched up front: the default 128,000 lines cost
        // 4 MB of resident memory in every process, the agent's included.
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(4096)
            .lossy(false)
            .finish(std::io::stderr());
        let (filter, handle) = reload::Layer::new(EnvFilter::try_new(level)?);
        let output = match format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(writer)
                .boxed(),
        };
        tracing_subscriber::registry().with(filter).with(output).try_init()?;
        Ok((Logging { filter: handle }, LogGuard(guard)))
    }

    /// Applies a new level or filter; the old one stays if `level` is not valid.
    pub fn set_level(&self, level: &str) -> anyhow::Result<()> {
        let filter = EnvFilter::try_new(level)?;
        self.filter.reload(filter)?;
        Ok(())
    }
}
