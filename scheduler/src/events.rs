//! Scheduler events: kept in a bounded ring for `/api/v1/events` and written as log records
//! (`{source="scheduler", service="..."}`) through the store's `Appender` when one is given.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tidewatch_model::{Appender, Labels, LogRecord};
use tokio::sync::mpsc;

use crate::health::now_ms;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A container was created.
    Created,
    /// A container was started.
    Started,
    /// A replica failed its health check.
    Unhealthy,
    /// A replica exited.
    Exited,
    /// A replica is replaced (after a crash, an unhealthy check, or by a rollout).
    Replaced,
    /// The desired count changed.
    Scaled,
    /// A replica was removed.
    Removed,
    /// A changed spec started rolling out.
    RolloutStarted,
    /// Every replica runs the current spec.
    RolloutFinished,
    /// Something failed (a Docker call, an env file).
    Error,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started => "started",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Exited => "exited",
            EventKind::Replaced => "replaced",
            EventKind::Scaled => "scaled",
            EventKind::Removed => "removed",
            EventKind::RolloutStarted => "rollout_started",
            EventKind::RolloutFinished => "rollout_finished",
            EventKind::Error => "error",
        }
    }
}

/// One event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The service.
    pub service: String,
    /// What happened.
    pub kind: EventKind,
    /// The replica index, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// The container (or Swarm service) id, when it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Details for people.
    pub message: String,
}

/// Events written but not yet appended; past it events are still kept in the ring but not
/// written to the store (a slow store must not slow the reconciler).
const APPEND_QUEUE: usize = 1024;

/// The ring and the writer.
pub struct Events {
    ring: Mutex<VecDeque<Event>>,
    capacity: usize,
    tx: Option<mpsc::Sender<Event>>,
}

impl Events {
    /// A ring of `capacity` events; with an appender, a task writes them to the store.
    pub fn new(capacity: usize, appender: Option<Arc<dyn Appender>>) -> Events {
        let tx = appender.map(|appender| {
            let (tx, rx) = mpsc::channel(APPEND_QUEUE);
            tokio::spawn(write_events(rx, appender));
            tx
        });
        Events {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            tx,
        }
    }

    /// Records an event.
    pub fn emit(
        &self,
        service: &str,
        kind: EventKind,
        replica: Option<u32>,
        container: Option<&str>,
        message: impl Into<String>,
    ) {
        let event = Event {
            time_ms: now_ms(),
            service: service.to_string(),
            kind,
            replica,
            container: container.map(|c| c.chars().take(12).collect()),
            message: message.into(),
        };
        tracing::info!(service, kind = kind.as_str(), replica, message = %event.message, "scheduler event");
        if let Some(tx) = &self.tx
            && tx.try_send(event.clone()).is_err()
        {
            tracing::warn!(service, "scheduler event not written to the log store: queue full");
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// The most recent events, oldest first, optionally of one service, at most `limit`.
    pub fn recent(&self, service: Option<&str>, limit: usize) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Event> = ring
            .iter()
            .rev()
            .filter(|e| service.is_none_or(|s| e.service == s))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

async fn write_events(mut rx: mpsc::Receiver<Event>, appender: Arc<dyn Appender>) {
    let mut last_ns = 0i64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256
            && let Ok(e) = rx.try_recv()
        {
            batch.push(e);
        }
        let records = batch
            .into_iter()
            .map(|e| {
                // Strictly increasing, as a log stream needs, even for events of the same ms.
                last_ns = (e.time_ms * 1_000_000).max(last_ns + 1);
                LogRecord {
                    timestamp_ns: last_ns,
                    labels: Labels::from_pairs([
                        ("source", "scheduler"),
                        ("service", e.service.as_str()),
                        ("event", e.kind.as_str()),
                    ]),
                    line: serde_json::to_string(&e).unwrap_or_default(),
                }
            })
            .collect();
        if let Err(e) = appender.append_logs(records, None).await {
            tracing::warn!(error = %e, "scheduler events not written to the log store");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use tidewatch_model::{AppendError, BatchHeader, Series};

    /// Collects what it is given: the store is another crate, and this checks only the records
    /// this crate builds.
    #[derive(Default)]
    struct Collect(Mutex<Vec<LogRecord>>);

    #[async_trait]
    impl Appender for Collect {
        async fn append_series(&self, _: Vec<Series>, _: Option<&BatchHeader>) -> Result<(), AppendError> {
            Ok(())
        }
        async fn append_logs(&self, records: Vec<LogRecord>, _: Option<&BatchHeader>) -> Result<(), AppendError> {
            self.0.lock().unwrap().extend(records);
            Ok(())
        }
    }

    #[tokio::test]
    async fn ring_is_bounded_and_records_are_labelled() {
        let sink = Arc::new(Collect::default());
        let events = Events::new(3, Some(sink.clone()));
        for i in 0..5 {
            events.emit("web", EventKind::Created, Some(i), Some("0123456789abcdef"), "made");
        }
        events.emit("db", EventKind::Scaled, None, None, "1 -> 2");
        let recent = events.recent(None, 10);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.last().unwrap().service, "db");
        assert_eq!(events.recent(Some("web"), 10).len(), 2);
        assert_eq!(recent[0].container.as_deref(), Some("0123456789ab"));
        for _ in 0..100 {
            if sink.0.lock().unwrap().len() == 6 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let records = sink.0.lock().unwrap();
        assert_eq!(records.len(), 6);
        assert_eq!(records[0].labels.get("source"), Some("scheduler"));
        assert_eq!(records[5].labels.get("service"), Some("db"));
        assert!(records.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns));
        assert!(records[5].line.contains("\"scaled\""));
    }
}
