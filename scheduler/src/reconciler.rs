//! The reconciler: list the managed containers on every host, compare with the specs and desired
//! counts, and act — create what is missing, remove what is extra or orphaned, replace what
//! crashed or turned unhealthy (with back-off), roll changed specs out replica by replica.
//!
//! Invariants:
//! - A container being created is recorded in `pending` before the create call and stays there
//!   until a listing taken *after* the create finished, so no pass can create it twice.
//! - A container being removed is in `removing` until a listing after its removal; passes ignore
//!   it meanwhile, so a slow drain is never started twice.
//! - Only containers labelled `tidewatch.managed=1` are ever touched.
//! - A host that cannot be listed stops the pass: acting on a partial view could duplicate.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::backend::docker::ContainerState;
use crate::endpoint::Endpoint;
use crate::events::EventKind;
use crate::health::{Health, Probe, now_ms, spawn_check};
use crate::scheduler::{Backoff, Inner, Pending, Scheduler, Tracked};
use crate::spec::{BackendKind, RestartPolicy, ServiceSpec, Spread};

/// What a pass decided to do.
enum Action {
    Create {
        spec: Arc<ServiceSpec>,
        hash: String,
        replica: u32,
        host: usize,
        reason: String,
        pending_id: u64,
    },
    Start {
        host: usize,
        id: String,
        service: String,
        replica: Option<u32>,
    },
    Remove {
        host: usize,
        id: String,
        service: String,
        replica: Option<u32>,
        drain: bool,
        grace: Duration,
        reason: String,
    },
}

/// An event decided under the lock, emitted after it.
type PlannedEvent = (String, EventKind, Option<u32>, Option<String>, String);

/// How long a container may sit in `created` before it is considered abandoned (a create whose
/// start never came, e.g. the scheduler died between the two calls).
const ABANDONED_CREATE: Duration = Duration::from_secs(10);

impl Scheduler {
    /// One pass over every service.
    pub(crate) async fn reconcile(self: &Arc<Self>) {
        {
            let mut inner = self.lock();
            inner.pending.retain(|p| !p.done);
            inner.removing.retain(|_, done| !*done);
        }
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| !t.is_finished());
        self.reconcile_swarm().await;

        let listed = futures_util::future::join_all(self.hosts.iter().map(|h| h.list())).await;
        let mut containers = Vec::new();
        for result in listed {
            match result {
                Ok(found) => containers.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile pass skipped: a host could not be listed");
                    return;
                }
            }
        }
        // Start times and exit codes of containers seen for the first time (adopted or new).
        let mut details = HashMap::new();
        {
            let unknown: Vec<(usize, String)> = {
                let inner = self.lock();
                containers
                    .iter()
                    .filter(|c| {
                        inner.tracked.get(&c.id).is_none_or(|t| {
                            (c.state == ContainerState::Exited && t.exit_code.is_none())
                                || (c.state == ContainerState::Running && t.container.state != ContainerState::Running)
                        })
                    })
                    .filter_map(|c| Some((self.hosts.iter().position(|h| h.name == c.host)?, c.id.clone())))
                    .collect()
            };
            let inspected = futures_util::future::join_all(
                unknown
                    .iter()
                    .map(|(h, id)| async move { (id.clone(), self.hosts[*h].started_and_exit(id).await) }),
            )
            .await;
            for (id, result) in inspected {
                if let Ok(d) = result {
                    details.insert(id, d);
                }
            }
        }

        let (actions, events) = {
            let mut inner = self.lock();
            self.sync_tracked(&mut inner, containers, details);
            inner.observed = true;
            self.plan(&mut inner)
        };
        for (service, kind, replica, container, message) in events {
            self.events.emit(&service, kind, replica, container.as_deref(), message);
        }
        for action in actions {
            self.execute(action);
        }
        self.sync_endpoints().await;
        self.collect_networks().await;
    }

    /// Every so many passes, removes the networks of services that no longer exist (and have
    /// no container left).
    async fn collect_networks(&self) {
        use std::sync::atomic::AtomicU64;
        static PASSES: AtomicU64 = AtomicU64::new(0);
        if !PASSES.fetch_add(1, Ordering::Relaxed).is_multiple_of(20) {
            return;
        }
        let keep: HashSet<String> = {
            let inner = self.lock();
            inner
                .specs
                .values()
                .filter(|s| s.backend == BackendKind::Docker)
                .map(|s| s.name.clone())
                .chain(inner.tracked.values().map(|t| t.container.service.clone()))
                .collect()
        };
        for host in &self.hosts {
            host.remove_networks_except(&keep).await;
        }
    }

    /// Brings `tracked` in line with a listing and starts health checks of new running replicas.
    fn sync_tracked(
        &self,
        inner: &mut Inner,
        containers: Vec<crate::backend::docker::Container>,
        details: HashMap<String, (Option<i64>, Option<i64>)>,
    ) {
        let ids: HashSet<String> = containers.iter().map(|c| c.id.clone()).collect();
        inner.tracked.retain(|id, _| ids.contains(id));
        for container in containers {
            let (started, exit) = details.get(&container.id).copied().unwrap_or((None, None));
            let tracked = inner.tracked.entry(container.id.clone()).or_insert_with(|| Tracked {
                container: container.clone(),
                health: Arc::new(Health::default()),
                check: None,
                started_at_ms: started.unwrap_or_else(now_ms),
                exit_code: None,
                exit_seen: false,
            });
            if let Some(started) = started {
                tracked.started_at_ms = started;
            }
            if exit.is_some() && container.state == ContainerState::Exited {
                tracked.exit_code = exit;
            }
            tracked.container = container;
        }
        let specs = inner.specs.clone();
        for tracked in inner.tracked.values_mut() {
            let running = tracked.container.state == ContainerState::Running;
            let Some(spec) = specs.get(&tracked.container.service) else {
                tracked.health.set_ready(false);
                continue;
            };
            match &spec.healthcheck {
                None => tracked.health.set_ready(running),
                Some(_) if !running => {
                    tracked.health.set_ready(false);
                    if let Some(check) = tracked.check.take() {
                        check.abort();
                    }
                }
                Some(check) => {
                    if tracked.check.is_none() {
                        let port = spec
                            .health_port()
                            .and_then(|p| tracked.container.ports.get(&p).copied());
                        let Some(host) = self.hosts.iter().find(|h| h.name == tracked.container.host) else {
                            continue;
                        };
                        if let Some(probe) = Probe::new(check, port, host, &tracked.container.id) {
                            tracked.check = Some(spawn_check(probe, check, tracked.health.clone()));
                        }
                    }
                }
            }
        }
    }

    fn record_crash(&self, inner: &mut Inner, service: &str, replica: u32) {
        let now = Instant::now();
        let backoff = inner.backoff.entry((service.to_string(), replica)).or_insert(Backoff {
            crashes: 0,
            not_before: now,
        });
        backoff.crashes += 1;
        let delay = if backoff.crashes <= 1 {
            Duration::ZERO
        } else {
            let factor = 1u32 << (backoff.crashes - 2).min(20);
            self.config
                .backoff_initial
                .0
                .saturating_mul(factor)
                .min(self.config.backoff_max.0)
        };
        backoff.not_before = now + delay;
    }

    /// Decides the actions of one pass.
    fn plan(&self, inner: &mut Inner) -> (Vec<Action>, Vec<PlannedEvent>) {
        let mut actions = Vec::new();
        let mut events: Vec<PlannedEvent> = Vec::new();
        let now = Instant::now();
        let host_index = |name: &str| self.hosts.iter().position(|h| h.name == name);

        // Orphans: containers of no (docker) service, or without a replica index.
        let orphans: Vec<(String, String, usize)> = inner
            .tracked
            .values()
            .filter(|t| !inner.removing.contains_key(&t.container.id))
            .filter(|t| {
                t.container.replica.is_none()
                    || inner
                        .specs
                        .get(&t.container.service)
                        .is_none_or(|s| s.backend != BackendKind::Docker)
            })
            .filter_map(|t| {
                Some((
                    t.container.id.clone(),
                    t.container.service.clone(),
                    host_index(&t.container.host)?,
                ))
            })
            .collect();
        for (id, service, host) in orphans {
            inner.removing.insert(id.clone(), false);
            actions.push(Action::Remove {
                host,
                id,
                service,
                replica: None,
                drain: false,
                grace: Duration::from_secs(10),
                reason: "orphan: no such service".into(),
            });
        }

        let specs: Vec<Arc<ServiceSpec>> = inner
            .specs
            .values()
            .filter(|s| s.backend == BackendKind::Docker)
            .cloned()
            .collect();
        for spec in specs {
            let hash = inner.hashes.get(&spec.name).cloned().unwrap_or_default();
            let desired = inner.desired(&spec);
            let grace = spec.stop_grace_period.0;
            let remove = |inner: &mut Inner,
                          actions: &mut Vec<Action>,
                          id: &str,
                          host: &str,
                          replica: Option<u32>,
                          drain: bool,
                          reason: &str| {
                if inner.removing.contains_key(id) {
                    return;
                }
                let Some(host) = host_index(host) else { return };
                inner.removing.insert(id.to_string(), false);
                actions.push(Action::Remove {
                    host,
                    id: id.to_string(),
                    service: spec.name.clone(),
                    replica,
                    drain,
                    grace,
                    reason: reason.to_string(),
                });
            };

            // Snapshot of this service's live containers.
            #[derive(Clone)]
            struct Slot {
                id: String,
                host: String,
                replica: u32,
                hash: String,
                state: ContainerState,
                ready: bool,
                unhealthy: bool,
                exit_code: Option<i64>,
                exit_seen: bool,
                started_at_ms: i64,
                created_s: i64,
            }
            let mut slots: Vec<Slot> = inner
                .tracked
                .values()
                .filter(|t| t.container.service == spec.name && !inner.removing.contains_key(&t.container.id))
                .filter_map(|t| {
                    Some(Slot {
                        id: t.container.id.clone(),
                        host: t.container.host.clone(),
                        replica: t.container.replica?,
                        hash: t.container.spec_hash.clone(),
                        state: t.container.state,
                        ready: t.health.is_ready(),
                        unhealthy: t.health.is_unhealthy(),
                        exit_code: t.exit_code,
                        exit_seen: t.exit_seen,
                        started_at_ms: t.started_at_ms,
                        created_s: t.container.created_s,
                    })
                })
                .collect();
            slots.sort_by(|a, b| b.replica.cmp(&a.replica).then(a.started_at_ms.cmp(&b.started_at_ms)));

            // Exited, unhealthy, never started.
            let mut gone: HashSet<String> = HashSet::new();
            for slot in &slots {
                match slot.state {
                    ContainerState::Exited => {
                        let keep = match spec.restart {
                            RestartPolicy::Never => true,
                            RestartPolicy::OnFailure => slot.exit_code == Some(0),
                            RestartPolicy::Always => false,
                        };
                        if !slot.exit_seen {
                            if let Some(t) = inner.tracked.get_mut(&slot.id) {
                                t.exit_seen = true;
                            }
                            let code = slot.exit_code.map_or("unknown".into(), |c| c.to_string());
                            events.push((
                                spec.name.clone(),
                                EventKind::Exited,
                                Some(slot.replica),
                                Some(slot.id.clone()),
                                format!("exited with status {code}"),
                            ));
                            if !keep {
                                self.record_crash(inner, &spec.name, slot.replica);
                            }
                        }
                        if !(keep && slot.replica < desired && slot.hash == hash) {
                            remove(
                                inner,
                                &mut actions,
                                &slot.id,
                                &slot.host,
                                Some(slot.replica),
                                false,
                                "exited",
                            );
                            gone.insert(slot.id.clone());
                        }
                    }
                    ContainerState::Running if slot.unhealthy => {
                        events.push((
                            spec.name.clone(),
                            EventKind::Unhealthy,
                            Some(slot.replica),
                            Some(slot.id.clone()),
                            "failed its health check".into(),
                        ));
                        self.record_crash(inner, &spec.name, slot.replica);
                        remove(
                            inner,
                            &mut actions,
                            &slot.id,
                            &slot.host,
                            Some(slot.replica),
                            false,
                            "unhealthy",
                        );
                        gone.insert(slot.id.clone());
                    }
                    ContainerState::Created => {
                        let in_flight = inner
                            .pending
                            .iter()
                            .any(|p| p.service == spec.name && p.replica == slot.replica && p.spec_hash == slot.hash);
                        if in_flight {
                            continue;
                        }
                        let age = (now_ms() / 1000).saturating_sub(slot.created_s);
                        if slot.hash == hash && slot.replica < desired && age < ABANDONED_CREATE.as_secs() as i64 {
                            if let Some(host) = host_index(&slot.host) {
                                actions.push(Action::Start {
                                    host,
                                    id: slot.id.clone(),
                                    service: spec.name.clone(),
                                    replica: Some(slot.replica),
                                });
                            }
                        } else {
                            remove(
                                inner,
                                &mut actions,
                                &slot.id,
                                &slot.host,
                                Some(slot.replica),
                                false,
                                "never started",
                            );
                            gone.insert(slot.id.clone());
                        }
                    }
                    ContainerState::Removing => {
                        gone.insert(slot.id.clone());
                    }
                    ContainerState::Running => {}
                }
            }
            slots.retain(|s| !gone.contains(&s.id));

            // Scale down: indices at or above desired, highest first, drained.
            for slot in slots.iter().filter(|s| s.replica >= desired) {
                remove(
                    inner,
                    &mut actions,
                    &slot.id,
                    &slot.host,
                    Some(slot.replica),
                    true,
                    "scaled down",
                );
            }
            slots.retain(|s| s.replica < desired);

            // Each index: one container of the current spec, old ones until it is ready.
            let mut candidates = Vec::new();
            let mut in_flight = 0u32;
            let mut available = 0u32;
            let mut missing = Vec::new();
            for replica in 0..desired {
                let mut here: Vec<&Slot> = slots.iter().filter(|s| s.replica == replica).collect();
                here.sort_by(|a, b| b.ready.cmp(&a.ready).then(a.started_at_ms.cmp(&b.started_at_ms)));
                let (new, old): (Vec<&Slot>, Vec<&Slot>) = here.into_iter().partition(|s| s.hash == hash);
                let pending_here = inner
                    .pending
                    .iter()
                    .any(|p| p.service == spec.name && p.replica == replica);
                if new.iter().chain(old.iter()).any(|s| s.ready) {
                    available += 1;
                }
                for dup in new.iter().skip(1) {
                    remove(
                        inner,
                        &mut actions,
                        &dup.id,
                        &dup.host,
                        Some(replica),
                        true,
                        "duplicate",
                    );
                }
                if let Some(current) = new.first() {
                    if current.ready || current.state != ContainerState::Running {
                        // An exited keeper (restart: never) also ends the old ones.
                        for o in &old {
                            remove(
                                inner,
                                &mut actions,
                                &o.id,
                                &o.host,
                                Some(replica),
                                true,
                                "replaced by the new spec",
                            );
                        }
                    } else if !old.is_empty() {
                        in_flight += 1;
                    }
                } else if pending_here {
                    if !old.is_empty() {
                        in_flight += 1;
                    }
                } else if !old.is_empty() {
                    candidates.push(replica);
                    for extra in old.iter().skip(1) {
                        remove(
                            inner,
                            &mut actions,
                            &extra.id,
                            &extra.host,
                            Some(replica),
                            true,
                            "duplicate",
                        );
                    }
                } else {
                    missing.push(replica);
                }
            }
            for replica in missing {
                let key = (spec.name.clone(), replica);
                if inner.backoff.get(&key).is_some_and(|b| now < b.not_before) {
                    continue;
                }
                let crashed = inner.backoff.get(&key).map_or(0, |b| b.crashes);
                let reason = if crashed > 0 {
                    format!("replacing a replica that failed ({crashed} times in a row)")
                } else {
                    "missing".into()
                };
                if crashed > 0 {
                    events.push((
                        spec.name.clone(),
                        EventKind::Replaced,
                        Some(replica),
                        None,
                        reason.clone(),
                    ));
                }
                if let Some(action) = self.create(inner, &spec, &hash, replica, reason) {
                    actions.push(action);
                }
            }

            // Rolling update: start new replicas ahead of old ones within max_surge, or stop old
            // ones first within max_unavailable.
            let mut surge_left = spec.update.max_surge.saturating_sub(in_flight);
            let mut unavailable = desired.saturating_sub(available);
            for replica in candidates {
                if surge_left > 0 {
                    surge_left -= 1;
                    events.push((
                        spec.name.clone(),
                        EventKind::Replaced,
                        Some(replica),
                        None,
                        "rolling out the new spec".into(),
                    ));
                    if let Some(action) = self.create(inner, &spec, &hash, replica, "rollout".into()) {
                        actions.push(action);
                    }
                } else if unavailable < spec.update.max_unavailable {
                    unavailable += 1;
                    if let Some(old) = slots.iter().find(|s| s.replica == replica) {
                        remove(
                            inner,
                            &mut actions,
                            &old.id,
                            &old.host,
                            Some(replica),
                            true,
                            "rollout (stop first)",
                        );
                    }
                }
            }

            let old_left = inner.tracked.values().any(|t| {
                t.container.service == spec.name
                    && t.container.spec_hash != hash
                    && t.container.replica.is_some_and(|r| r < desired)
            });
            if old_left && inner.rolling.insert(spec.name.clone()) {
                events.push((
                    spec.name.clone(),
                    EventKind::RolloutStarted,
                    None,
                    None,
                    format!("rolling out spec {hash}"),
                ));
            } else if !old_left && inner.rolling.remove(&spec.name) {
                events.push((
                    spec.name.clone(),
                    EventKind::RolloutFinished,
                    None,
                    None,
                    format!("every replica runs spec {hash}"),
                ));
            }

            // A replica ready for a while ends its index's back-off.
            let reset_after = self.config.backoff_max.0.as_millis() as i64;
            let steady: Vec<u32> = inner
                .tracked
                .values()
                .filter(|t| t.container.service == spec.name)
                .filter(|t| t.health.ready_since_ms().is_some_and(|ms| now_ms() - ms > reset_after))
                .filter_map(|t| t.container.replica)
                .collect();
            for replica in steady {
                inner.backoff.remove(&(spec.name.clone(), replica));
            }
        }
        (actions, events)
    }

    /// Chooses a host and records the create as pending.
    fn create(
        &self,
        inner: &mut Inner,
        spec: &Arc<ServiceSpec>,
        hash: &str,
        replica: u32,
        reason: String,
    ) -> Option<Action> {
        let host = self.pick_host(inner, spec)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let pending_id = NEXT.fetch_add(1, Ordering::Relaxed);
        inner.pending.push(Pending {
            id: pending_id,
            service: spec.name.clone(),
            replica,
            spec_hash: hash.to_string(),
            host: self.hosts[host].name.clone(),
            done: false,
        });
        Some(Action::Create {
            spec: spec.clone(),
            hash: hash.to_string(),
            replica,
            host,
            reason,
            pending_id,
        })
    }

    /// Placement: among the allowed hosts, the one with the fewest replicas of the service (then
    /// the most free memory), or with the most free memory (then the fewest replicas).
    fn pick_host(&self, inner: &Inner, spec: &ServiceSpec) -> Option<usize> {
        let reserved = |host: &str| -> u64 {
            inner
                .tracked
                .values()
                .filter(|t| t.container.host == host && t.container.state == ContainerState::Running)
                .filter_map(|t| inner.specs.get(&t.container.service))
                .filter_map(|s| s.resources.reservations.memory.map(|m| m.0))
                .sum()
        };
        let count = |host: &str| -> usize {
            inner
                .tracked
                .values()
                .filter(|t| t.container.host == host && t.container.service == spec.name)
                .filter(|t| !inner.removing.contains_key(&t.container.id))
                .count()
                + inner
                    .pending
                    .iter()
                    .filter(|p| p.host == host && p.service == spec.name && !p.done)
                    .count()
        };
        let candidates = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| spec.placement.hosts.is_empty() || spec.placement.hosts.contains(&h.name))
            .map(|(i, h)| (i, count(&h.name), h.mem_total.saturating_sub(reserved(&h.name))));
        match spec.placement.spread {
            Spread::Count => candidates.min_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2))).map(|c| c.0),
            Spread::Capacity => candidates.max_by(|a, b| a.2.cmp(&b.2).then(b.1.cmp(&a.1))).map(|c| c.0),
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }

    fn execute(self: &Arc<Self>, action: Action) {
        let this = self.clone();
        match action {
            Action::Create {
                spec,
                hash,
                replica,
                host,
                reason,
                pending_id,
            } => self.spawn(async move {
                let host_name = this.hosts[host].name.clone();
                match this.hosts[host].run_replica(&spec, replica, &hash).await {
                    Ok(id) => {
                        {
                            // Known at once (not only at the next listing) so replicas() and
                            // started_at are right; the listing fills in ports and state.
                            let mut inner = this.lock();
                            inner.tracked.entry(id.clone()).or_insert_with(|| Tracked {
                                container: crate::backend::docker::Container {
                                    id: id.clone(),
                                    host: host_name.clone(),
                                    service: spec.name.clone(),
                                    replica: Some(replica),
                                    spec_hash: hash.clone(),
                                    state: ContainerState::Created,
                                    ports: HashMap::new(),
                                    created_s: now_ms() / 1000,
                                },
                                health: Arc::new(Health::default()),
                                check: None,
                                started_at_ms: now_ms(),
                                exit_code: None,
                                exit_seen: false,
                            });
                        }
                        this.events.emit(
                            &spec.name,
                            EventKind::Created,
                            Some(replica),
                            Some(&id),
                            format!("on {host_name} ({reason})"),
                        );
                        this.events
                            .emit(&spec.name, EventKind::Started, Some(replica), Some(&id), "started");
                    }
                    Err(e) => {
                        this.events
                            .emit(&spec.name, EventKind::Error, Some(replica), None, e.to_string());
                        let mut inner = this.lock();
                        this.record_crash(&mut inner, &spec.name, replica);
                    }
                }
                this.finish_pending(pending_id);
            }),
            Action::Start {
                host,
                id,
                service,
                replica,
            } => self.spawn(async move {
                match this.hosts[host].start(&id).await {
                    Ok(()) => this
                        .events
                        .emit(&service, EventKind::Started, replica, Some(&id), "started (adopted)"),
                    Err(e) => this
                        .events
                        .emit(&service, EventKind::Error, replica, Some(&id), e.to_string()),
                }
            }),
            Action::Remove {
                host,
                id,
                service,
                replica,
                drain,
                grace,
                reason,
            } => self.spawn(async move {
                if drain {
                    this.drain(&service, &id, grace).await;
                }
                let result = this.hosts[host].stop_and_remove(&id, grace).await;
                if reason.starts_with("orphan") {
                    // Fails while other containers still use it; the last orphan's removal succeeds.
                    this.hosts[host].remove_network(&service).await;
                }
                match result {
                    Ok(()) => this
                        .events
                        .emit(&service, EventKind::Removed, replica, Some(&id), reason),
                    Err(e) => this
                        .events
                        .emit(&service, EventKind::Error, replica, Some(&id), e.to_string()),
                }
                if let Some(done) = this.lock().removing.get_mut(&id) {
                    *done = true;
                }
                this.wake.notify_one();
            }),
        }
    }

    fn finish_pending(&self, pending_id: u64) {
        let mut inner = self.lock();
        if let Some(p) = inner.pending.iter_mut().find(|p| p.id == pending_id) {
            p.done = true;
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Takes a replica out of its service's endpoints and waits until its connections are done,
    /// at most `grace`.
    async fn drain(&self, service: &str, id: &str, grace: Duration) {
        let counters: Vec<_> = {
            let inner = self.lock();
            inner
                .endpoints
                .iter()
                .filter(|((s, _), _)| s == service)
                .filter_map(|(_, e)| e.drain(id))
                .collect()
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && counters.iter().any(|c| c.load(Ordering::Acquire) > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens endpoints for new service ports, closes those of removed ones, and gives each the
    /// current set of running replicas (the endpoint itself skips those not ready).
    async fn sync_endpoints(&self) {
        let wanted: Vec<(String, u16, Option<u16>)> = {
            let mut inner = self.lock();
            let wanted: Vec<(String, u16, Option<u16>)> = inner
                .specs
                .values()
                .filter(|s| s.backend == BackendKind::Docker)
                .flat_map(|s| s.ports.iter().map(|p| (s.name.clone(), p.container, p.endpoint)))
                .collect();
            inner.endpoints.retain(|(service, port), e| {
                wanted
                    .iter()
                    .any(|(s, p, fixed)| s == service && p == port && fixed.is_none_or(|f| f == e.port()))
            });
            wanted
                .into_iter()
                .filter(|(s, p, _)| !inner.endpoints.contains_key(&(s.clone(), *p)))
                .collect()
        };
        for (service, container_port, fixed) in wanted {
            let range = (self.config.endpoint_ports.first, self.config.endpoint_ports.last);
            match Endpoint::bind(fixed, range, container_port).await {
                Ok(endpoint) => {
                    let mut inner = self.lock();
                    inner.endpoints.insert((service, container_port), Arc::new(endpoint));
                }
                Err(e) => {
                    let first = self.lock().endpoint_errors.insert((service.clone(), container_port));
                    if first {
                        self.events.emit(
                            &service,
                            EventKind::Error,
                            None,
                            None,
                            format!("endpoint for container port {container_port}: {e}"),
                        );
                    }
                }
            }
        }
        let inner = self.lock();
        for ((service, container_port), endpoint) in &inner.endpoints {
            let backends: Vec<(String, SocketAddr, Arc<Health>)> = inner
                .tracked
                .values()
                .filter(|t| &t.container.service == service && t.container.state == ContainerState::Running)
                .filter(|t| !inner.removing.contains_key(&t.container.id))
                .filter_map(|t| {
                    let port = t.container.ports.get(container_port)?;
                    Some((
                        t.container.id.clone(),
                        SocketAddr::from(([127, 0, 0, 1], *port)),
                        t.health.clone(),
                    ))
                })
                .collect();
            endpoint.set_backends(backends);
        }
    }
}
