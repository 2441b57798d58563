//! Readiness of each replica, checked from the scheduler itself (HTTP GET or TCP connect to the
//! published port on 127.0.0.1, or Docker exec), so readiness is known without Docker's
//! HEALTHCHECK and the same way for every image.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::backend::docker::DockerHost;
use crate::spec::HealthCheck;

/// The live health of one replica, shared by its check task, the reconciler and the endpoint.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// 0 while not ready.
    ready_since_ms: AtomicI64,
    unhealthy: AtomicBool,
}

impl Health {
    /// Whether the replica passes its check now (or runs and has none).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// When it last became ready.
    pub fn ready_since_ms(&self) -> Option<i64> {
        let ms = self.ready_since_ms.load(Ordering::Acquire);
        (ms != 0 && self.is_ready()).then_some(ms)
    }

    /// Whether it failed its check `retries` times in a row past its start period: it must be
    /// replaced.
    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Acquire)
    }

    /// Records the outcome of a check (or, for replicas without one, of "is it running").
    pub fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::AcqRel);
        if ready && !was {
            self.ready_since_ms.store(now_ms(), Ordering::Release);
        }
    }

    fn set_unhealthy(&self) {
        self.set_ready(false);
        self.unhealthy.store(true, Ordering::Release);
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often a replica that has not passed yet is checked: like Docker's `start_interval`, so a
/// new replica joins the endpoint soon after it can answer, while failures still count once per
/// `interval`.
const START_POLL: Duration = Duration::from_millis(200);

/// What a check probes.
pub enum Probe {
    /// GET of this path on 127.0.0.1:port.
    Http { port: u16, path: String },
    /// Connect to 127.0.0.1:port.
    Tcp { port: u16 },
    /// Docker exec of this command in the container.
    Exec {
        host: DockerHost,
        container: String,
        cmd: Vec<String>,
    },
}

impl Probe {
    /// Builds the probe for a replica; `None` when the port it needs is not published (yet).
    pub fn new(check: &HealthCheck, port: Option<u16>, host: &DockerHost, container: &str) -> Option<Probe> {
        if let Some(cmd) = &check.exec {
            return Some(Probe::Exec {
                host: host.clone(),
                container: container.to_string(),
                cmd: cmd.clone(),
            });
        }
        let port = port?;
        Some(match &check.http {
            Some(path) => Probe::Http {
                port,
                path: path.clone(),
            },
            None => Probe::Tcp { port },
        })
    }

    async fn run(&self, timeout: Duration) -> bool {
        match self {
            Probe::Exec { host, container, cmd } => host.exec_check(container, cmd, timeout).await,
            Probe::Tcp { port } => matches!(
                tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", *port))).await,
                Ok(Ok(_))
            ),
            Probe::Http { port, path } => {
                matches!(tokio::time::timeout(timeout, http_get(*port, path)).await, Ok(true))
            }
        }
    }
}

/// A GET with HTTP/1.0 (so the server closes); 2xx and 3xx pass. Only the status line is read.
async fn http_get(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: tidewatch-health\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    matches!(
        (parts.next(), parts.next().and_then(|s| s.parse::<u16>().ok())),
        (Some(v), Some(200..=399)) if v.starts_with("HTTP/")
    )
}

/// Runs `probe` until aborted, updating `health`: ready after a pass; after `retries` failures
/// counted once per interval (not during the start period unless it was ready before), unhealthy.
pub fn spawn_check(probe: Probe, check: &HealthCheck, health: Arc<Health>) -> JoinHandle<()> {
    let interval = check.interval.0;
    let timeout = check.timeout.0;
    let retries = check.retries;
    let start_period = check.start_period.0;
    tokio::spawn(async move {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut next_count = Instant::now();
        let mut passed_once = false;
        loop {
            let ok = probe.run(timeout).await;
            let now = Instant::now();
            if ok {
                failures = 0;
                passed_once = true;
                health.set_ready(true);
            } else if now >= next_count {
                next_count = now + interval;
                if passed_once || now.duration_since(started) >= start_period {
                    failures += 1;
                }
                if failures >= retries {
                    health.set_unhealthy();
                    return;
                }
                if passed_once {
                    health.set_ready(false);
                }
            }
            let pause = if passed_once {
                interval
            } else {
                interval.min(START_POLL)
            };
            tokio::time::sleep(pause).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewatch_model::Duration as D;

    fn check(http: Option<&str>) -> HealthCheck {
        HealthCheck {
            http: http.map(str::to_string),
            tcp: http.is_none(),
            exec: None,
            port: None,
            interval: D::from_millis(50),
            timeout: D::from_millis(200),
            retries: 2,
            start_period: D::from_millis(0),
        }
    }

    #[tokio::test]
    async fn http_check_passes_on_2xx_and_fails_on_5xx() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let status = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 No"
                };
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes()).await;
            }
        });
        assert!(http_get(port, "/ok").await);
        assert!(!http_get(port, "/bad").await);
        let health = Arc::new(Health::default());
        let task = spawn_check(
            Probe::Http {
                port,
                path: "/bad".into(),
            },
            &check(Some("/bad")),
            health.clone(),
        );
        task.await.unwrap();
        assert!(health.is_unhealthy() && !health.is_ready());
    }

    #[tokio::test]
    async fn tcp_check_becomes_ready() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let health = Arc::new(Health::default());
        let task = spawn_check(Probe::Tcp { port }, &check(None), health.clone());
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(health.ready_since_ms().is_some());
        drop(listener);
        // The listener is gone: two counted failures make it unhealthy and end the task.
        task.await.unwrap();
        assert!(health.is_unhealthy());
    }
}
