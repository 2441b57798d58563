//! A service endpoint: a stable port on 127.0.0.1 that forwards each TCP connection to the ready
//! replica with the fewest open connections, follows replicas as the reconciler adds and removes
//! them, and drains replicas being removed (no new connections, existing ones finish).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::health::Health;

/// Connections open at once through one endpoint; past it new ones wait in the accept queue.
const MAX_CONNECTIONS: usize = 4096;
/// How long a new connection may wait for a ready replica (a service scaled up from zero, or
/// between the last old replica and the first new one) before it is closed.
const WAIT_FOR_REPLICA: Duration = Duration::from_secs(10);
/// How long connecting to one replica may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One replica the endpoint may send connections to.
struct Backend {
    id: String,
    addr: SocketAddr,
    health: Arc<Health>,
    active: Arc<AtomicUsize>,
}

/// A listening endpoint for one container port of one service.
pub struct Endpoint {
    port: u16,
    container_port: u16,
    backends: Arc<Mutex<Vec<Backend>>>,
    accept: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Endpoint {
    /// Listens on 127.0.0.1:`port`, or on the first free port of `range` when `port` is `None`.
    pub async fn bind(port: Option<u16>, range: (u16, u16), container_port: u16) -> std::io::Result<Endpoint> {
        let listener = match port {
            Some(p) => TcpListener::bind(("127.0.0.1", p)).await?,
            None => {
                let mut found = None;
                for p in range.0..=range.1 {
                    if let Ok(l) = TcpListener::bind(("127.0.0.1", p)).await {
                        found = Some(l);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("no free port in 127.0.0.1:{}-{}", range.0, range.1),
                    )
                })?
            }
        };
        let port = listener.local_addr()?.port();
        let backends: Arc<Mutex<Vec<Backend>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, backends.clone()));
        Ok(Endpoint {
            port,
            container_port,
            backends,
            accept,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The container port it forwards to.
    pub fn container_port(&self) -> u16 {
        self.container_port
    }

    /// Replaces the set of replicas (id, published address, health). Connections already open to
    /// a replica that leaves the set are not cut; a replica that stays keeps its connection count.
    pub fn set_backends(&self, replicas: Vec<(String, SocketAddr, Arc<Health>)>) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::with_capacity(replicas.len());
        for (id, addr, health) in replicas {
            let active = backends
                .iter()
                .find(|b| b.id == id && b.addr == addr)
                .map(|b| b.active.clone())
                .unwrap_or_default();
            next.push(Backend {
                id,
                addr,
                health,
                active,
            });
        }
        *backends = next;
    }

    /// Stops sending new connections to `id` and returns its count of open connections, which
    /// the caller watches go to zero before stopping the container.
    pub fn drain(&self, id: &str) -> Option<Arc<AtomicUsize>> {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let i = backends.iter().position(|b| b.id == id)?;
        Some(backends.remove(i).active)
    }

    /// Open connections per replica id.
    #[cfg(test)]
    pub fn connections(&self) -> Vec<(String, usize)> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends
            .iter()
            .map(|b| (b.id.clone(), b.active.load(Ordering::Relaxed)))
            .collect()
    }
}

async fn accept_loop(listener: TcpListener, backends: Arc<Mutex<Vec<Backend>>>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let backends = backends.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = client.set_nodelay(true);
            if let Some((mut upstream, guard)) = connect_upstream(&backends).await {
                let _ = upstream.set_nodelay(true);
                let mut client = client;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                drop(guard);
            }
        });
    }
}

/// Decrements a replica's connection count when the connection ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connects to the ready replica with the fewest connections, trying the others when one
/// refuses, and waiting a while when none is ready.
async fn connect_upstream(backends: &Mutex<Vec<Backend>>) -> Option<(TcpStream, ActiveGuard)> {
    let deadline = Instant::now() + WAIT_FOR_REPLICA;
    let mut failed: Vec<SocketAddr> = Vec::new();
    loop {
        let pick = {
            let backends = backends.lock().unwrap_or_else(|e| e.into_inner());
            backends
                .iter()
                .filter(|b| b.health.is_ready() && !failed.contains(&b.addr))
                .min_by_key(|b| b.active.load(Ordering::Acquire))
                .map(|b| {
                    // Counted before connecting so concurrent accepts spread out.
                    b.active.fetch_add(1, Ordering::AcqRel);
                    (b.addr, ActiveGuard(b.active.clone()))
                })
        };
        match pick {
            Some((addr, guard)) => match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Some((stream, guard)),
                _ => failed.push(addr),
            },
            None => {
                if Instant::now() >= deadline {
                    return None;
                }
                // Everything failed once: the set may have changed since, try them all again.
                failed.clear();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A replica that answers each connection with its name.
    async fn named_server(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let _ = s.write_all(name.as_bytes()).await;
                    let mut buf = [0u8; 16];
                    // Hold the connection until the client closes it.
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        addr
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).to_string()
    }

    fn ready() -> Arc<Health> {
        let h = Arc::new(Health::default());
        h.set_ready(true);
        h
    }

    #[tokio::test]
    async fn balances_by_least_connections_and_follows_readiness() {
        let a = named_server("a").await;
        let b = named_server("b").await;
        let ep = Endpoint::bind(None, (20000, 20999), 80).await.unwrap();
        let hb = Arc::new(Health::default());
        ep.set_backends(vec![("a".into(), a, ready()), ("b".into(), b, hb.clone())]);
        // b is not ready: everything goes to a.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(("127.0.0.1", ep.port())).await.unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"a");
            held.push(s);
        }
        hb.set_ready(true);
        // a holds two connections, b none: the next go to b until they are even.
        assert_eq!(ask(ep.port()).await, "b");
        let conns = ep.connections();
        assert_eq!(conns.iter().find(|c| c.0 == "a").unwrap().1, 2);
        // Draining a: new connections only go to b, a's count is handed to the caller.
        let a_active = ep.drain("a").unwrap();
        assert_eq!(a_active.load(Ordering::SeqCst), 2);
        for _ in 0..3 {
            assert_eq!(ask(ep.port()).await, "b");
        }
        drop(held);
        for _ in 0..100 {
            if a_active.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(a_active.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn skips_a_replica_that_refuses() {
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let b = named_server("b").await;
        let ep = Endpoint::bind(None, (20000, 20999), 80).await.unwrap();
        ep.set_backends(vec![("dead".into(), dead, ready()), ("b".into(), b, ready())]);
        for _ in 0..3 {
            assert_eq!(ask(ep.port()).await, "b");
        }
    }
}
