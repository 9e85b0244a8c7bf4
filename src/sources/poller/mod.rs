//! The elected poller: one per cluster, on the holder of the `sources` lease.
//!
//! Time is cut, per source, into intervals ("slots") of the source's `interval_ms`, offset
//! by a phase derived from the source's id. The phase spreads sources over the interval
//! (per-source jitter) and, being the same on every replica, lets a new leaseholder go on
//! with the very schedule the old one followed. Before polling a slot the poller claims
//! it in the database (the last claimed slot started earlier, and its fencing token is no
//! newer than ours): a slot is polled at most once however the lease moves, and a holder that
//! lost its lease cannot claim anything after its successor has.
//!
//! Polls run as tasks, at most `max_concurrent_polls` at once, one at a time per source.
//! A source that keeps failing backs off (2, 4, 8, … intervals, up to `max_backoff`).
//! When the lease is lost (or about to be: see [`crate::cluster::lease`]) every poll in
//! flight is aborted before `run` returns, so polling stops before the lease can pass.

mod fetch;
mod kumomta;
mod probe;
mod prometheus;

use super::model::{Auth, Settings, SourceKind};
use super::repo::{self, PollRecord, SourceRow};
use crate::app::AppState;
use crate::cluster::lease::LeaseContext;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

pub use kumomta::{Connection, KumoState};
pub use probe::ProbeState;

/// How often the leaseholder forgets old log-hook dedup keys.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A source as the poller needs it, compiled once per version.
pub struct PollTarget {
    pub id: Uuid,
    pub tenant: String,
    pub name: String,
    pub kind: SourceKind,
    pub version: i64,
    pub settings: Settings,
    pub auth: Option<Auth>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Offset of this source's slots within the interval.
    pub phase_ms: u64,
    /// prometheus: the allow/deny lists.
    pub name_filter: Option<crate::sources::prometheus_text::NameFilter>,
    /// http_probe: `body_match`.
    pub body_match: Option<regex::Regex>,
}

impl PollTarget {
    fn from_row(row: &SourceRow) -> Option<PollTarget> {
        let kind = row.kind()?;
        let settings = row.settings.0.clone();
        let name_filter = match kind {
            SourceKind::Prometheus => Some(
                crate::sources::prometheus_text::NameFilter::new(&settings.allow, &settings.deny)
                    .ok()?,
            ),
            _ => None,
        };
        let body_match = match &settings.body_match {
            Some(pattern) => Some(regex::Regex::new(pattern).ok()?),
            None => None,
        };
        let interval_ms = row.interval_ms.max(1) as u64;
        Some(PollTarget {
            id: row.id,
            tenant: row.tenant.clone(),
            name: row.name.clone(),
            kind,
            version: row.version,
            settings,
            auth: row.auth.as_ref().map(|auth| auth.0.clone()),
            interval_ms,
            timeout_ms: row.timeout_ms.max(1) as u64,
            phase_ms: phase_of(row.id, interval_ms),
            name_filter,
            body_match,
        })
    }

    /// When slot `slot` begins, in ms since the epoch.
    pub fn slot_start_ms(&self, slot: i64) -> i64 {
        slot * self.interval_ms as i64 + self.phase_ms as i64
    }

    /// The slot under way at `now_ms`.
    pub fn slot_at(&self, now_ms: i64) -> i64 {
        (now_ms - self.phase_ms as i64).div_euclid(self.interval_ms as i64)
    }
}

/// A stable offset in `[0, interval)` from the id: the same on every replica.
fn phase_of(id: Uuid, interval_ms: u64) -> u64 {
    let bytes = id.as_bytes();
    // The last 8 bytes of a v7 uuid are random.
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&bytes[8..]);
    u64::from_le_bytes(tail) % interval_ms.max(1)
}

/// What a kind remembers between polls.
pub enum KindState {
    Kumomta(Box<KumoState>),
    Prometheus,
    Probe(ProbeState),
}

impl KindState {
    fn load(kind: SourceKind, stored: Option<&serde_json::Value>) -> KindState {
        match kind {
            SourceKind::Kumomta => KindState::Kumomta(Box::new(KumoState::load(stored))),
            SourceKind::Prometheus => KindState::Prometheus,
            SourceKind::HttpProbe => KindState::Probe(ProbeState::load(stored)),
        }
    }
}

/// What a kind's poll reports.
pub struct PollReport {
    /// Why the poll failed; `None` on success.
    pub error: Option<String>,
    /// The state to store; `None` keeps what is stored.
    pub state: Option<serde_json::Value>,
    /// Whether a failure should slow the next polls down (not for probes: a down service
    /// is watched as closely as an up one).
    pub back_off: bool,
}

/// Shared by every poll of one leaseholding.
pub struct PollContext {
    pub state: AppState,
    pub client: reqwest::Client,
}

impl PollContext {
    /// Publishes an event; a bus failure is logged, not fatal to the poll (the REST API
    /// stays the truth).
    pub async fn publish(&self, tenant: &str, topic: &str, event: &str, data: &serde_json::Value) {
        if let Err(e) = self
            .state
            .bus
            .publish_json(tenant, topic, event, data)
            .await
        {
            tracing::warn!(topic, event, error = %e, "could not publish a source event");
        }
    }

    /// Stores samples through ingest, in batches the ingest accepts.
    pub async fn store_samples(
        &self,
        target: &PollTarget,
        samples: Vec<crate::ingest::SampleIn>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let max = self.state.ingest.limits().max_batch.max(1);
        let mut samples = samples;
        while !samples.is_empty() {
            let rest = samples.split_off(samples.len().min(max));
            let outcome = self
                .state
                .ingest
                .write(&target.tenant, None, samples, Vec::new(), now)
                .await
                .map_err(|e| format!("could not store samples: {e}"))?;
            if let Some(first) = outcome.rejected.first() {
                tracing::debug!(
                    source = %target.name,
                    rejected = outcome.rejected.len(),
                    reason = %first.reason,
                    "samples rejected by ingest"
                );
            }
            samples = rest;
        }
        Ok(())
    }
}

/// Starts the poller task (and the default KumoMTA source of the configuration).
pub fn start(state: &AppState) {
    let setup = state.clone();
    state
        .tasks
        .spawn(async move { ensure_config_source(setup).await });
    let poller = state.clone();
    state.tasks.spawn(crate::cluster::run_under_lease(
        state.leases.clone(),
        crate::cluster::lease_names::SOURCES,
        state.shutdown.clone(),
        move |lease| run(poller.clone(), lease),
    ));
}

/// `KUMOMTA_API_URL` / `KUMOMTA_API_TOKEN` → the default KumoMTA source, retried until the
/// database answers.
async fn ensure_config_source(state: AppState) {
    let Some(url) = state.config.kumomta.api_url.clone() else {
        return;
    };
    let input = super::model::SourceInput {
        name: "kumomta".into(),
        kind: SourceKind::Kumomta,
        url,
        interval_ms: None,
        timeout_ms: None,
        enabled: None,
        auth: state.config.kumomta.api_token.as_ref().map(|token| {
            super::model::AuthInput::Bearer {
                token: token.expose().to_string(),
            }
        }),
        log_hook_token: None,
        allow: None,
        deny: None,
        labels: None,
        expected_status: None,
        body_match: None,
    };
    let source = match input.validate() {
        Ok(source) => source,
        Err(errors) => {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::warn!(problems = ?problems, "KUMOMTA_API_URL does not make a valid source; not polled");
            return;
        }
    };
    let mut wait = Duration::from_millis(200);
    loop {
        match repo::upsert_config_source(&state.store, &source, Utc::now()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not create the default KumoMTA source; retrying")
            }
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// One source under the poller's care.
struct Entry {
    target: Arc<PollTarget>,
    /// The next slot to poll.
    next_slot: i64,
    /// Taken by the poll in flight, given back when it ends.
    kind_state: Option<KindState>,
    failures: i32,
}

/// What a poll task hands back.
struct Finished {
    id: Uuid,
    /// The interval the slot was numbered with (the source may have changed since).
    interval_ms: u64,
    slot: i64,
    kind_state: KindState,
    /// `None` when the slot had been polled already (claim refused).
    report: Option<PollReport>,
}

/// Polls every enabled source while `lease` holds.
async fn run(state: AppState, lease: LeaseContext) {
    tracing::info!(
        replica = state.replica_id(),
        token = lease.token,
        "polling sources"
    );
    let config = &state.config.sources;
    // Targets see which replica polled them (kumod's logs, the tests' stand-ins).
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(replica) = reqwest::header::HeaderValue::from_str(state.replica_id()) {
        headers.insert("x-lookout-replica", replica);
    }
    let client = match reqwest::Client::builder()
        .user_agent(concat!("lookout/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; not polling");
            lease.stop.cancelled().await;
            return;
        }
    };
    let context = Arc::new(PollContext {
        state: state.clone(),
        client,
    });
    let permits = Arc::new(Semaphore::new(config.max_concurrent_polls));
    let fence = lease.token as i64;
    let mut entries: HashMap<Uuid, Entry> = HashMap::new();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut next_reload = Instant::now();
    let mut next_prune = Instant::now() + PRUNE_EVERY;

    loop {
        if Instant::now() >= next_reload {
            reload(&state, &mut entries).await;
            next_reload = Instant::now() + config.reload_interval;
        }
        if Instant::now() >= next_prune {
            // Singleton clean-up that belongs to this part: the leaseholder does it.
            let before = Utc::now() - config.log_dedup_retention;
            match repo::prune_log_seen(&state.store, before).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "forgot old log-hook records"),
                Err(e) => tracing::warn!(error = %e, "could not prune log-hook records"),
            }
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        let now_ms = Utc::now().timestamp_millis();
        // Start every poll that is due; find when the next one is.
        let mut next_due_ms = i64::MAX;
        for entry in entries.values_mut() {
            if entry.kind_state.is_none() {
                continue; // in flight
            }
            let target = &entry.target;
            // A slot is polled late by at most half an interval (a new leaseholder, a
            // source just added, a poll that ran long): later than that, it is skipped
            // for the next, so that polls of a source never come closer than half an
            // interval.
            let current = target.slot_at(now_ms);
            let on_time = if now_ms - target.slot_start_ms(current) <= target.interval_ms as i64 / 2
            {
                current
            } else {
                current + 1
            };
            entry.next_slot = entry.next_slot.max(on_time);
            let due_ms = target.slot_start_ms(entry.next_slot);
            if due_ms > now_ms {
                next_due_ms = next_due_ms.min(due_ms);
                continue;
            }
            let kind_state = entry.kind_state.take().expect("checked above");
            tasks.spawn(poll_one(
                context.clone(),
                permits.clone(),
                target.clone(),
                entry.next_slot,
                fence,
                entry.failures,
                kind_state,
            ));
        }
        let until_due = Duration::from_millis((next_due_ms - now_ms).clamp(0, 60_000) as u64);
        let wake = (Instant::now() + until_due).min(next_reload);
        tokio::select! {
            _ = lease.stop.cancelled() => break,
            _ = tokio::time::sleep_until(wake) => {}
            Some(finished) = tasks.join_next() => {
                match finished {
                    Ok(finished) => settle(&mut entries, finished, config.max_backoff),
                    Err(e) if e.is_panic() => tracing::error!(error = %e, "a poll panicked"),
                    Err(_) => {}
                }
            }
        }
    }
    // Stop now, not after the polls in flight: the lease may pass at any moment.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    tracing::info!(replica = state.replica_id(), "stopped polling sources");
}

/// Brings `entries` in line with the enabled sources in the database.
async fn reload(state: &AppState, entries: &mut HashMap<Uuid, Entry>) {
    let versions = match repo::enabled_versions(&state.store).await {
        Ok(versions) => versions,
        Err(e) => {
            tracing::warn!(error = %e, "could not load sources; keeping the ones known");
            return;
        }
    };
    let wanted: HashMap<Uuid, i64> = versions.into_iter().collect();
    entries.retain(|id, _| wanted.contains_key(id));
    for (id, version) in wanted {
        if entries
            .get(&id)
            .is_some_and(|e| e.target.version == version)
        {
            continue;
        }
        let row = match repo::get_by_id(&state.store, id).await {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, source = %id, "could not load a source");
                continue;
            }
        };
        let Some(target) = PollTarget::from_row(&row) else {
            tracing::warn!(source = %id, "source has settings this version cannot poll");
            continue;
        };
        tracing::debug!(source = %target.name, version, "loaded source");
        match entries.get_mut(&id) {
            // Changed: new settings from the next slot on; what the kind remembers stays
            // (an in-flight poll gives it back when it ends).
            Some(entry) => {
                // Slot numbers depend on the interval: start counting again.
                if entry.target.interval_ms != target.interval_ms {
                    entry.next_slot = 0;
                }
                entry.target = Arc::new(target);
            }
            None => {
                let kind_state = KindState::load(target.kind, row.state.as_ref().map(|s| &s.0));
                // The stored claim is the start of the last slot polled.
                let next_slot = target.slot_at(row.poll_slot) + 1;
                entries.insert(
                    id,
                    Entry {
                        next_slot,
                        target: Arc::new(target),
                        kind_state: Some(kind_state),
                        failures: row.consecutive_failures,
                    },
                );
            }
        }
    }
}

/// Takes a finished poll back into its entry and schedules the next.
fn settle(entries: &mut HashMap<Uuid, Entry>, finished: Finished, max_backoff: Duration) {
    let Some(entry) = entries.get_mut(&finished.id) else {
        return; // removed meanwhile
    };
    entry.kind_state = Some(finished.kind_state);
    let mut skip = 0;
    if let Some(report) = &finished.report {
        if report.error.is_some() {
            entry.failures = entry.failures.saturating_add(1);
            if report.back_off {
                // 1, 2, 4, … intervals between polls, at most max_backoff.
                let intervals = 1i64 << (entry.failures - 1).clamp(0, 20);
                let cap = (max_backoff.as_millis() as i64 / entry.target.interval_ms as i64).max(1);
                skip = intervals.min(cap) - 1;
            }
        } else {
            entry.failures = 0;
        }
    }
    if finished.interval_ms == entry.target.interval_ms {
        entry.next_slot = entry.next_slot.max(finished.slot + 1 + skip);
    }
}

/// Claims slot `slot` of `target`, polls it and records the outcome.
async fn poll_one(
    context: Arc<PollContext>,
    permits: Arc<Semaphore>,
    target: Arc<PollTarget>,
    slot: i64,
    fence: i64,
    failures_before: i32,
    mut kind_state: KindState,
) -> Finished {
    let finished = |kind_state, report| Finished {
        id: target.id,
        interval_ms: target.interval_ms,
        slot,
        kind_state,
        report,
    };
    let Ok(_permit) = permits.acquire_owned().await else {
        return finished(kind_state, None);
    };
    let store = &context.state.store;
    match repo::claim_slot(store, target.id, target.slot_start_ms(slot), fence).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(source = %target.name, slot, "slot already polled");
            return finished(kind_state, None);
        }
        Err(e) => {
            tracing::warn!(source = %target.name, error = %e, "could not claim a poll");
            return finished(kind_state, None);
        }
    }
    let started = Instant::now();
    let now = Utc::now();
    let lateness_ms = (now.timestamp_millis() - target.slot_start_ms(slot)).max(0);
    metrics::histogram!("lookout_source_poll_lateness_seconds").record(lateness_ms as f64 / 1000.0);

    let mut report = match &mut kind_state {
        KindState::Kumomta(kumo) => kumomta::poll(&context, &target, kumo, now).await,
        KindState::Prometheus => prometheus::poll(&context, &target, now).await,
        KindState::Probe(probe) => probe::poll(&context, &target, probe, now).await,
    };
    let latency = started.elapsed();
    metrics::histogram!("lookout_source_poll_duration_seconds", "kind" => target.kind.as_str())
        .record(latency.as_secs_f64());
    metrics::counter!(
        "lookout_source_polls_total",
        "kind" => target.kind.as_str(),
        "outcome" => if report.error.is_some() { "error" } else { "ok" }
    )
    .increment(1);
    if let Some(error) = &report.error {
        tracing::debug!(source = %target.name, error = %error, "poll failed");
    }
    let failures = match &report.error {
        None => 0,
        Some(_) => failures_before.saturating_add(1),
    };
    let record = PollRecord {
        polled_at: now,
        latency_ms: latency.as_secs_f64() * 1000.0,
        error: report.error.as_deref(),
        consecutive_failures: failures,
        state: report.state.take(),
    };
    if let Err(e) = repo::record_poll(store, target.id, fence, record).await {
        tracing::warn!(source = %target.name, error = %e, "could not record a poll");
    }
    finished(kind_state, Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(interval_ms: u64) -> PollTarget {
        PollTarget {
            id: Uuid::now_v7(),
            tenant: "t".into(),
            name: "n".into(),
            kind: SourceKind::Prometheus,
            version: 1,
            settings: Settings::default(),
            auth: None,
            interval_ms,
            timeout_ms: 100,
            phase_ms: 300,
            name_filter: None,
            body_match: None,
        }
    }

    #[test]
    fn slots_are_offset_by_the_phase() {
        let t = target(1000);
        assert_eq!(
            (
                t.slot_at(299),
                t.slot_at(300),
                t.slot_at(1299),
                t.slot_at(1300)
            ),
            (-1, 0, 0, 1)
        );
        assert_eq!(t.slot_start_ms(5), 5300);
        let id = Uuid::now_v7();
        assert_eq!(phase_of(id, 5000), phase_of(id, 5000));
        assert!(phase_of(id, 5000) < 5000);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let t = Arc::new(target(1000));
        let mut entries = HashMap::from([(
            t.id,
            Entry {
                target: t.clone(),
                next_slot: 10,
                kind_state: None,
                failures: 0,
            },
        )]);
        let mut finish = |slot: i64, error: bool| {
            settle(
                &mut entries,
                Finished {
                    id: t.id,
                    interval_ms: 1000,
                    slot,
                    kind_state: KindState::Prometheus,
                    report: Some(PollReport {
                        error: error.then(|| "down".to_string()),
                        state: None,
                        back_off: true,
                    }),
                },
                Duration::from_secs(4),
            );
            entries[&t.id].next_slot
        };
        // 1, 2, 4, 4 (capped at 4 s = 4 intervals) intervals between polls; then back to 1.
        assert_eq!(finish(10, true), 11);
        assert_eq!(finish(11, true), 13);
        assert_eq!(finish(13, true), 17);
        assert_eq!(finish(17, true), 21);
        assert_eq!(finish(21, false), 22);
    }
}
