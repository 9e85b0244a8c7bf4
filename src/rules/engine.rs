//! The rule engine: on the holder of the `rules` lease, every tick evaluates the rules
//! that are due and moves their instances through the state machine of
//! [`super::state`].
//!
//! One tick reads, in a handful of queries whatever the number of rules: the rule-set
//! signature (the rules themselves only when it moved), every open alert (they hold the
//! instances' timers and the versions to compare-and-set on), and per tenant one
//! [`read_range`] over every series name its due rules use. Evaluation is pure and in
//! memory. Each transition is then one transaction: the alert row (insert, guarded by
//! the unique index on open alerts, or update with `WHERE version = <read>`), an
//! `alert_events` row, and the outbox rows of [`enqueue_transition`]; after commit an
//! `alert:*` event goes to the `alerts` topic.
//!
//! Nothing an engine keeps in memory is needed for correctness: a second engine (split
//! brain) loses every compare-and-set it races for, and a new leaseholder restores
//! pending and firing timers from the open alerts' rows, so a failover neither restarts
//! `for` nor fires twice. The lease's fencing token is written on every row the engine
//! changes, and a row last written under a newer token is not changed under an older one.

use super::evaluator::{SeriesWindow, evaluate};
use super::model::{RuleSpec, millis};
use super::repo::{self, AlertRow, NewEvent};
use super::silence::{self, SilenceRow};
use super::state::{InstanceState, Phase, Timing, Transition, TransitionKind};
use super::template::{TemplateContext, render};
use crate::bus::Bus;
use crate::notify::outbox::{self, OutboxKind};
use crate::series::{self, Labels};
use crate::sql;
use crate::store::samples::read_range;
use crate::store::{DbTime, Store, is_unique_violation};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sqlx::types::Json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// The topic alert events are published on.
pub const ALERTS_TOPIC: &str = "alerts";

/// At most this much early, a rule counts as due.
const DUE_SLACK_MS: i64 = 100;

/// A rule as the engine holds it.
#[derive(Debug)]
struct CachedRule {
    id: Uuid,
    tenant: String,
    spec: RuleSpec,
    timing: Timing,
}

/// What one tick did (for tests, logs and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub rules_evaluated: usize,
    pub instances: usize,
    pub transitions: usize,
    /// Transitions another writer got to first (split brain, or a person's action).
    pub conflicts: usize,
    pub queries: usize,
}

/// The engine of one leaseholder.
pub struct Engine {
    store: Store,
    bus: Bus,
    /// Fencing token of the lease this engine runs under.
    fence: i64,
    rules: Vec<Arc<CachedRule>>,
    signature: Option<(i64, i64)>,
    /// Instances without an open alert that still need remembering (no-data timers,
    /// `keep_last` verdicts), per rule. Open instances live in their alert rows.
    memory: HashMap<Uuid, HashMap<i64, Remembered>>,
    last_eval: HashMap<Uuid, i64>,
}

/// An instance remembered between ticks.
#[derive(Debug, Clone)]
struct Remembered {
    group_labels: Labels,
    state: InstanceState,
}

/// A change to write, decided by evaluation.
enum Plan {
    Transition {
        rule: Arc<CachedRule>,
        fingerprint: i64,
        labels: Labels,
        open: Option<AlertRow>,
        next: InstanceState,
        transition: Transition,
    },
    /// An open alert whose instance state moved without a transition (last value,
    /// last violation): saved so that a new leaseholder continues from it.
    Refresh {
        alert: AlertRow,
        next: InstanceState,
    },
    /// An open alert of a rule that was deleted or disabled.
    Close { alert: AlertRow, reason: String },
}

/// The identity of an instance: its rule and group-by labels.
pub fn instance_fingerprint(rule_id: Uuid, group_labels: &Labels) -> i64 {
    series::fingerprint(&rule_id.to_string(), group_labels)
}

impl Engine {
    pub fn new(store: Store, bus: Bus, fence: u64) -> Engine {
        Engine {
            store,
            bus,
            fence: i64::try_from(fence).unwrap_or(i64::MAX),
            rules: Vec::new(),
            signature: None,
            memory: HashMap::new(),
            last_eval: HashMap::new(),
        }
    }

    /// Reloads the rules when the rule set changed since the last tick.
    async fn refresh_rules(&mut self, report: &mut TickReport) -> Result<(), sqlx::Error> {
        let signature = repo::rules_signature(&self.store).await?;
        report.queries += 1;
        if self.signature == Some(signature) {
            return Ok(());
        }
        let rows = repo::all_rules(&self.store).await?;
        report.queries += 1;
        self.rules = rows
            .into_iter()
            .map(|row| {
                let spec = row.spec.0;
                Arc::new(CachedRule {
                    id: row.id,
                    tenant: row.tenant,
                    timing: Timing::from(&spec),
                    spec,
                })
            })
            .collect();
        let ids: HashSet<Uuid> = self.rules.iter().map(|r| r.id).collect();
        self.memory.retain(|id, _| ids.contains(id));
        self.last_eval.retain(|id, _| ids.contains(id));
        self.signature = Some(signature);
        Ok(())
    }

    /// Evaluates every rule that is due at `now` and writes the transitions.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> anyhow::Result<TickReport> {
        let mut report = TickReport::default();
        let now_ms = now.timestamp_millis();
        self.refresh_rules(&mut report).await?;

        let due: Vec<Arc<CachedRule>> = self
            .rules
            .iter()
            .filter(|rule| rule.spec.enabled)
            .filter(|rule| {
                self.last_eval.get(&rule.id).is_none_or(|last| {
                    // A little slack, so that a rule whose interval equals the loop's
                    // tick is not skipped when a tick comes a millisecond early.
                    let interval = millis(rule.spec.evaluation_interval);
                    now_ms.saturating_sub(*last) + (interval / 10).min(DUE_SLACK_MS) >= interval
                })
            })
            .cloned()
            .collect();

        let open = repo::open_alerts(&self.store).await?;
        report.queries += 1;
        let mut plans = Vec::new();
        let mut open_by_rule: HashMap<Uuid, HashMap<i64, AlertRow>> = HashMap::new();
        let enabled: HashMap<Uuid, bool> =
            self.rules.iter().map(|r| (r.id, r.spec.enabled)).collect();
        for alert in open {
            match enabled.get(&alert.rule_id) {
                Some(true) => {
                    open_by_rule
                        .entry(alert.rule_id)
                        .or_default()
                        .insert(alert.fingerprint, alert);
                }
                Some(false) => plans.push(Plan::Close {
                    alert,
                    reason: "the rule was disabled".into(),
                }),
                None => plans.push(Plan::Close {
                    alert,
                    reason: "the rule was deleted".into(),
                }),
            }
        }

        let mut by_tenant: BTreeMap<&str, Vec<&Arc<CachedRule>>> = BTreeMap::new();
        for rule in &due {
            by_tenant.entry(&rule.tenant).or_default().push(rule);
        }
        for (tenant, rules) in by_tenant {
            let names: BTreeSet<&str> = rules
                .iter()
                .flat_map(|r| r.spec.selectors().map(|s| s.name.as_str()))
                .collect();
            let names: Vec<String> = names.into_iter().map(str::to_string).collect();
            let window = rules
                .iter()
                .map(|r| r.spec.max_window())
                .max()
                .unwrap_or_default();
            let from = now - ChronoDuration::milliseconds(millis(window));
            let data = read_range(&self.store, tenant, &names, from, now).await?;
            report.queries += 1;
            let mut by_name: HashMap<&str, Vec<SeriesWindow<'_>>> = HashMap::new();
            for series in &data {
                by_name
                    .entry(series.name.as_str())
                    .or_default()
                    .push(SeriesWindow {
                        name: &series.name,
                        labels: &series.labels,
                        samples: &series.samples,
                    });
            }
            let mut windows = Vec::new();
            for rule in rules {
                windows.clear();
                let rule_names: BTreeSet<&str> =
                    rule.spec.selectors().map(|s| s.name.as_str()).collect();
                for name in rule_names {
                    if let Some(list) = by_name.get(name) {
                        windows.extend_from_slice(list);
                    }
                }
                let values = evaluate(now_ms, &rule.spec.condition, &windows);
                let open = open_by_rule.remove(&rule.id).unwrap_or_default();
                report.instances += self.step_rule(rule, values, open, now_ms, &mut plans);
                report.rules_evaluated += 1;
                self.last_eval.insert(rule.id, now_ms);
            }
        }

        self.apply(plans, now, &mut report).await;
        Ok(report)
    }

    /// Steps every instance of one rule: those evaluated, those with an open alert and
    /// those remembered. Returns how many were stepped.
    fn step_rule(
        &mut self,
        rule: &Arc<CachedRule>,
        values: Vec<super::evaluator::InstanceValue>,
        mut open: HashMap<i64, AlertRow>,
        now_ms: i64,
        plans: &mut Vec<Plan>,
    ) -> usize {
        let mut memory = self.memory.remove(&rule.id).unwrap_or_default();
        let mut stepped = 0;
        let mut step = |fingerprint: i64,
                        labels: Labels,
                        value: Option<f64>,
                        open: Option<AlertRow>,
                        remembered: Option<InstanceState>,
                        memory: &mut HashMap<i64, Remembered>| {
            stepped += 1;
            let current = match &open {
                Some(alert) => alert.instance.0.clone(),
                None => remembered.map(closed_elsewhere).unwrap_or_default(),
            };
            let observation = current.observe(&rule.spec.condition, value);
            let (next, transition) = current.step(&rule.timing, now_ms, observation);
            match transition {
                Some(transition) => plans.push(Plan::Transition {
                    rule: rule.clone(),
                    fingerprint,
                    labels,
                    open,
                    next,
                    transition,
                }),
                None => {
                    if let Some(alert) = open {
                        if alert.instance.0 != next {
                            plans.push(Plan::Refresh { alert, next });
                        }
                    } else if worth_remembering(&rule.timing, &next) {
                        memory.insert(
                            fingerprint,
                            Remembered {
                                group_labels: labels,
                                state: next,
                            },
                        );
                    }
                }
            }
        };
        let mut next_memory = HashMap::new();
        for instance in values {
            let fingerprint = instance_fingerprint(rule.id, &instance.group_labels);
            let alert = open.remove(&fingerprint);
            let remembered = memory.remove(&fingerprint).map(|r| r.state);
            step(
                fingerprint,
                instance.group_labels,
                instance.value,
                alert,
                remembered,
                &mut next_memory,
            );
        }
        // Instances that were not in this tick's data: no data.
        for (fingerprint, alert) in open {
            let labels = group_labels_of(&rule.spec, &alert.labels.0);
            memory.remove(&fingerprint);
            step(
                fingerprint,
                labels,
                None,
                Some(alert),
                None,
                &mut next_memory,
            );
        }
        for (fingerprint, remembered) in memory {
            step(
                fingerprint,
                remembered.group_labels,
                None,
                None,
                Some(remembered.state),
                &mut next_memory,
            );
        }
        if !next_memory.is_empty() {
            self.memory.insert(rule.id, next_memory);
        }
        stepped
    }

    async fn apply(&mut self, plans: Vec<Plan>, now: DateTime<Utc>, report: &mut TickReport) {
        if plans.is_empty() {
            return;
        }
        // Silences are read once, and only when something may notify.
        let mut silences: Option<Vec<SilenceRow>> = None;
        let mut refreshes = Vec::new();
        for plan in plans {
            match plan {
                Plan::Refresh { alert, next } => refreshes.push((alert, next)),
                Plan::Close { alert, reason } => {
                    let next = InstanceState {
                        phase: Phase::Resolved,
                        resolved_at_ms: Some(now.timestamp_millis()),
                        ..alert.instance.0.clone()
                    };
                    let closing = Transition {
                        kind: TransitionKind::Resolved,
                        reason,
                    };
                    match self
                        .write_transition(
                            None,
                            alert.fingerprint,
                            &alert.labels.0,
                            Some(alert.clone()),
                            &next,
                            &closing,
                            now,
                            &[],
                        )
                        .await
                    {
                        Ok(Written::Done(row)) => {
                            report.transitions += 1;
                            self.publish(&row, TransitionKind::Resolved).await;
                        }
                        Ok(Written::Conflict) => report.conflicts += 1,
                        Ok(Written::Nothing) => {}
                        Err(e) => {
                            tracing::warn!(alert = %alert.id, error = %e, "cannot close alert")
                        }
                    }
                }
                Plan::Transition {
                    rule,
                    fingerprint,
                    labels,
                    open,
                    next,
                    transition,
                } => {
                    if notifies(&transition, open.as_ref()).is_some() && silences.is_none() {
                        match silence::current(&self.store, now).await {
                            Ok(list) => silences = Some(list),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read silences; transition postponed");
                                continue;
                            }
                        }
                        report.queries += 1;
                    }
                    let mut alert_labels = rule.spec.labels.clone();
                    alert_labels.extend(labels.clone());
                    let result = self
                        .write_transition(
                            Some(&rule),
                            fingerprint,
                            &alert_labels,
                            open,
                            &next,
                            &transition,
                            now,
                            silences.as_deref().unwrap_or(&[]),
                        )
                        .await;
                    match result {
                        Ok(Written::Done(row)) => {
                            report.transitions += 1;
                            self.remember(rule.id, fingerprint, labels, next);
                            self.publish(&row, transition.kind).await;
                        }
                        Ok(Written::Nothing) => self.remember(rule.id, fingerprint, labels, next),
                        Ok(Written::Conflict) => {
                            report.conflicts += 1;
                            self.forget(rule.id, fingerprint);
                        }
                        Err(e) => {
                            self.forget(rule.id, fingerprint);
                            tracing::warn!(rule = %rule.id, error = %e, "cannot write alert transition");
                        }
                    }
                }
            }
        }
        if !refreshes.is_empty()
            && let Err(e) = self.write_refreshes(&refreshes, now).await
        {
            tracing::warn!(error = %e, "cannot save alert instance states");
        }
    }

    fn remember(
        &mut self,
        rule: Uuid,
        fingerprint: i64,
        group_labels: Labels,
        state: InstanceState,
    ) {
        self.memory.entry(rule).or_default().insert(
            fingerprint,
            Remembered {
                group_labels,
                state,
            },
        );
    }

    fn forget(&mut self, rule: Uuid, fingerprint: i64) {
        if let Some(map) = self.memory.get_mut(&rule) {
            map.remove(&fingerprint);
        }
    }

    /// Saves the instance state of open alerts that changed without a transition, in one
    /// transaction. No version bump: these writes never race a transition (the
    /// version guard makes a stale one a no-op).
    async fn write_refreshes(
        &self,
        refreshes: &[(AlertRow, InstanceState)],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await?;
        for (alert, next) in refreshes {
            sql!(
                tx.db(),
                exec,
                "UPDATE alerts SET instance = $1, value = $2, updated_at = $3
                 WHERE id = $4 AND version = $5 AND fence <= $6",
                Json(next),
                next.last_value,
                DbTime(now),
                alert.id,
                alert.version,
                self.fence
            )?;
        }
        tx.commit().await
    }

    /// One transition in one transaction. `rule` is `None` when closing an alert of a
    /// rule that is gone (nothing is notified then).
    #[allow(clippy::too_many_arguments)]
    async fn write_transition(
        &self,
        rule: Option<&CachedRule>,
        fingerprint: i64,
        labels: &Labels,
        open: Option<AlertRow>,
        next: &InstanceState,
        transition: &Transition,
        now: DateTime<Utc>,
        silences: &[SilenceRow],
    ) -> Result<Written, sqlx::Error> {
        let state = alert_state(next.phase);
        let value = next.last_value;
        let mut tx = self.store.begin().await?;
        let (id, tenant) = match &open {
            Some(alert) => {
                let annotations = match rule {
                    Some(rule) => render_annotations(rule, labels, value),
                    None => alert.annotations.0.clone(),
                };
                let closing = matches!(
                    transition.kind,
                    TransitionKind::Resolved | TransitionKind::PendingCleared
                );
                let fired_at = if transition.kind == TransitionKind::Firing {
                    Some(DbTime(now))
                } else {
                    alert.fired_at
                };
                let resolved_at = closing.then_some(DbTime(now));
                let updated = sql!(
                    tx.db(),
                    exec,
                    "UPDATE alerts SET state = $1, value = $2, instance = $3, annotations = $4,
                        fired_at = $5, resolved_at = $6, version = version + 1, fence = $7, updated_at = $8,
                        acknowledged_at = CASE WHEN $9 THEN NULL ELSE acknowledged_at END,
                        acknowledged_by = CASE WHEN $9 THEN NULL ELSE acknowledged_by END,
                        ack_comment = CASE WHEN $9 THEN NULL ELSE ack_comment END,
                        snoozed_until = CASE WHEN $9 THEN NULL ELSE snoozed_until END
                     WHERE id = $10 AND version = $11 AND fence <= $7",
                    state,
                    value,
                    Json(next),
                    Json(&annotations),
                    fired_at,
                    resolved_at,
                    self.fence,
                    DbTime(now),
                    closing,
                    alert.id,
                    alert.version
                )?;
                if updated == 0 {
                    return Ok(Written::Conflict);
                }
                (alert.id, alert.tenant.clone())
            }
            None => {
                let Some(rule) = rule else {
                    return Ok(Written::Nothing);
                };
                if matches!(
                    transition.kind,
                    TransitionKind::Resolved | TransitionKind::PendingCleared
                ) {
                    // Nothing open to close (it was resolved by hand or deleted).
                    return Ok(Written::Nothing);
                }
                let id = Uuid::now_v7();
                let started_ms = next.active_since_ms.unwrap_or(now.timestamp_millis());
                let fired_at = (transition.kind == TransitionKind::Firing).then_some(DbTime(now));
                let inserted = sql!(
                    tx.db(),
                    exec,
                    "INSERT INTO alerts (id, tenant, rule_id, rule_name, severity, fingerprint, labels, annotations,
                        state, value, threshold, instance, version, fence, started_at, fired_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $14, $15, $16)",
                    id,
                    &rule.tenant,
                    rule.id,
                    &rule.spec.name,
                    rule.spec.severity.as_str(),
                    fingerprint,
                    Json(labels),
                    Json(render_annotations(rule, labels, value)),
                    state,
                    value,
                    rule.spec.condition.threshold,
                    Json(next),
                    self.fence,
                    DbTime::from_millis(started_ms),
                    fired_at,
                    DbTime(now)
                );
                match inserted {
                    Ok(_) => {}
                    // Another engine opened this instance's alert first.
                    Err(e) if is_unique_violation(&e) => return Ok(Written::Conflict),
                    Err(e) => return Err(e),
                }
                (id, rule.tenant.clone())
            }
        };
        let row = repo::get_alert(tx.db(), &tenant, id)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        repo::insert_event(
            &mut tx,
            &NewEvent {
                tenant: &tenant,
                alert_id: id,
                rule_id: row.rule_id,
                kind: kind_name(transition.kind),
                state,
                value,
                actor: None,
                reason: &transition.reason,
                detail: serde_json::json!({ "fence": self.fence }),
                at: now,
            },
        )
        .await?;
        if let (Some(rule), Some(kind)) = (rule, notifies(transition, open.as_ref())) {
            let snoozed = open
                .as_ref()
                .and_then(|a| a.snoozed_until)
                .filter(|until| until.0 > now);
            let muted = match (snoozed, silence::muting(silences, &tenant, labels, now)) {
                (Some(until), _) => Some(format!("snoozed until {}", until.0.to_rfc3339())),
                (None, Some(silence)) => Some(format!("silenced by {}", silence.describe())),
                (None, None) => None,
            };
            match muted {
                Some(reason) => {
                    repo::insert_event(
                        &mut tx,
                        &NewEvent {
                            tenant: &tenant,
                            alert_id: id,
                            rule_id: rule.id,
                            kind: "notification_suppressed",
                            state,
                            value,
                            actor: None,
                            reason: &reason,
                            detail: serde_json::json!({ "kind": kind.as_str() }),
                            at: now,
                        },
                    )
                    .await?;
                }
                None => {
                    let summary = row.summary();
                    let group_key = group_key(rule.id, &rule.spec, labels);
                    outbox::enqueue_transition(
                        &mut tx,
                        &outbox::Transition {
                            tenant: &tenant,
                            alert_id: id,
                            rule_id: rule.id,
                            kind,
                            channels: &rule.spec.channels,
                            policy: &rule.spec.notify,
                            throttle: rule.spec.throttle.as_ref(),
                            alert: &summary,
                            group_key,
                            at: now,
                        },
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Written::Done(Box::new(row)))
    }

    async fn publish(&self, row: &AlertRow, kind: TransitionKind) {
        let event = match kind {
            TransitionKind::Firing => "alert:triggered",
            TransitionKind::Resolved => "alert:resolved",
            TransitionKind::Pending | TransitionKind::NoData | TransitionKind::PendingCleared => {
                "alert:updated"
            }
        };
        publish_alert(&self.bus, row, event).await;
    }
}

/// Publishes an alert event after its transaction committed; a bus failure is logged
/// (the REST API stays the truth).
pub async fn publish_alert(bus: &Bus, row: &AlertRow, event: &str) {
    if let Err(e) = bus
        .publish_json(&row.tenant, ALERTS_TOPIC, event, &row.view())
        .await
    {
        tracing::warn!(alert = %row.id, event, error = %e, "cannot publish alert event");
    }
}

enum Written {
    Done(Box<AlertRow>),
    Conflict,
    Nothing,
}

/// The notification a transition asks for, if any.
fn notifies(transition: &Transition, open: Option<&AlertRow>) -> Option<OutboxKind> {
    match transition.kind {
        TransitionKind::Firing | TransitionKind::NoData => Some(OutboxKind::Firing),
        // Only what was notified as firing is notified as resolved.
        TransitionKind::Resolved
            if open.is_some_and(|a| a.fired_at.is_some() || a.state == "no_data") =>
        {
            Some(OutboxKind::Resolved)
        }
        _ => None,
    }
}

/// A remembered state that says "open" although no open alert exists: the alert was
/// resolved by hand or deleted, so the instance starts over (it fires again if it
/// still violates).
fn closed_elsewhere(mut state: InstanceState) -> InstanceState {
    if matches!(state.phase, Phase::Pending | Phase::Firing | Phase::NoData) {
        state.phase = Phase::Resolved;
        state.active_since_ms = None;
        state.fired_at_ms = None;
    }
    state
}

/// Whether an instance without an open alert must be remembered until the next tick.
fn worth_remembering(timing: &Timing, state: &InstanceState) -> bool {
    use super::model::NoDataPolicy;
    match timing.no_data {
        NoDataPolicy::Ok | NoDataPolicy::Alerting => false,
        NoDataPolicy::KeepLast => state.last_violating,
        NoDataPolicy::NoData => true,
    }
}

fn alert_state(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "pending",
        Phase::Firing => "firing",
        Phase::NoData => "no_data",
        Phase::Resolved => "resolved",
        Phase::Inactive => "inactive",
    }
}

fn kind_name(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Pending => "pending",
        TransitionKind::Firing => "firing",
        TransitionKind::Resolved => "resolved",
        TransitionKind::NoData => "no_data",
        TransitionKind::PendingCleared => "pending_cleared",
    }
}

/// The group-by part of an alert's labels.
/// The key under which notify groups an alert's notifications: the rule and the values of
/// its `group_by` labels. The engine and people's actions (resolve by hand) use the same.
pub(crate) fn group_key(rule_id: Uuid, spec: &RuleSpec, labels: &Labels) -> String {
    format!(
        "{}:{}",
        rule_id,
        serde_json::to_string(&group_labels_of(spec, labels)).unwrap_or_default()
    )
}

fn group_labels_of(spec: &RuleSpec, labels: &Labels) -> Labels {
    spec.condition
        .group_by
        .iter()
        .filter_map(|name| labels.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

fn render_annotations(
    rule: &CachedRule,
    labels: &Labels,
    value: Option<f64>,
) -> BTreeMap<String, String> {
    let ctx = TemplateContext {
        value,
        threshold: rule.spec.condition.threshold,
        labels,
        rule_name: &rule.spec.name,
        severity: rule.spec.severity,
    };
    rule.spec
        .annotations
        .iter()
        .map(|(key, template)| {
            let text = render(template, &ctx).unwrap_or_else(|e| format!("(template error: {e})"));
            (key.clone(), text)
        })
        .collect()
}
