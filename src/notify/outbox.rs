//! The outbox: how an alert transition asks for notifications, and routing.
//!
//! The rule engine calls [`enqueue_transition`] inside the transaction that changes the
//! alert, so a transition and its notifications are committed together or not at all.
//! Routing happens right there, in the same transaction:
//!
//! * each outbox row (one alert, one channel) joins a *delivery*: one message to one
//!   channel. A delivery still waiting for its `group_wait` (never attempted, never
//!   claimed) with the same channel, group key and kind takes the new alert too, so the
//!   alerts of a group go out in one message;
//! * throttle: past the rule's `max_alerts` alerts in its `period`, rows are written as
//!   `throttled` (visible in the timeline) and join no delivery;
//! * escalation steps become deliveries due `after` the transition, to the step's
//!   channels; repeats are scheduled by the worker when a firing message is delivered.
//!   A resolution cancels the alert's pending repeats and escalations; an acknowledgement
//!   suppresses them at send time (`rules::gate::check`);
//! * a resolved message goes only where a firing one went (not throttled, not filtered).
//!
//! Notify workers on every replica then claim due deliveries ([`super::worker`]).

use super::message::AlertSummary;
use crate::sql;
use crate::store::{Db, DbTime, Tx};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use std::time::Duration;
use uuid::Uuid;

/// What happened to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    Firing,
    Resolved,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Firing => "firing",
            OutboxKind::Resolved => "resolved",
        }
    }
}

/// One notification asked for: an alert, a transition, a channel.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub tenant: String,
    pub alert_id: Uuid,
    pub rule_id: Uuid,
    pub channel_id: String,
    pub kind: OutboxKind,
    /// The alert as it is at the transition (annotations rendered).
    pub alert: AlertSummary,
    /// Alerts with the same key for the same channel may be sent as one message
    /// (the rule id plus the rule's grouping labels).
    pub group_key: String,
    pub created_at: DateTime<Utc>,
}

/// Writes outbox rows inside the caller's transaction, each sent at once (no grouping
/// wait, no throttle, no escalation): the plain form of [`enqueue_transition`].
pub async fn enqueue(tx: &mut Tx, entries: &[OutboxEntry]) -> Result<(), sqlx::Error> {
    for entry in entries {
        let Some(channel_id) =
            super::channel::resolve_ref(tx.db(), &entry.tenant, &entry.channel_id).await?
        else {
            tracing::warn!(tenant = %entry.tenant, channel = %entry.channel_id, alert_id = %entry.alert_id,
                "notification for an unknown channel dropped");
            continue;
        };
        let delivery = join_or_create_delivery(
            tx,
            &DeliverySpec {
                tenant: &entry.tenant,
                channel_id,
                rule_id: entry.rule_id,
                group_key: &entry.group_key,
                kind: entry.kind.as_str(),
                due_at: entry.created_at,
                repeat_every: None,
                at: entry.created_at,
                groupable: true,
            },
        )
        .await?;
        insert_item(tx, entry, Some(delivery), "queued").await?;
    }
    Ok(())
}

/// An alert transition as the rule engine reports it to notify's routing.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub tenant: &'a str,
    pub alert_id: Uuid,
    pub rule_id: Uuid,
    pub kind: OutboxKind,
    /// The rule's channels (ids or names), policy and throttle as they are now.
    pub channels: &'a [String],
    pub policy: &'a super::policy::NotifyPolicy,
    pub throttle: Option<&'a crate::rules::model::Throttle>,
    /// The alert as it is at the transition (annotations rendered).
    pub alert: &'a AlertSummary,
    /// The rule id plus the rule's grouping labels.
    pub group_key: String,
    pub at: DateTime<Utc>,
}

/// Routing: writes the outbox rows and deliveries a transition asks for, inside the
/// caller's transaction (see the module doc).
pub async fn enqueue_transition(tx: &mut Tx, t: &Transition<'_>) -> Result<(), sqlx::Error> {
    match t.kind {
        OutboxKind::Resolved => {
            cancel_pending_followups(tx, t.tenant, t.alert_id, t.at).await?;
            if !t.policy.send_resolved {
                return Ok(());
            }
            // Only the channels that were told it fired hear that it resolved.
            let told: Vec<String> = sql!(
                tx.db(),
                all(String,),
                "SELECT DISTINCT channel_id FROM outbox
                 WHERE tenant = $1 AND alert_id = $2 AND kind = 'firing' AND status <> 'throttled'",
                t.tenant,
                t.alert_id
            )?
            .into_iter()
            .map(|(c,)| c)
            .collect();
            for channel in t.channels.iter().filter(|c| told.contains(c)) {
                route(
                    tx,
                    t,
                    channel,
                    "resolved",
                    t.at,
                    t.policy.group_wait,
                    None,
                    true,
                )
                .await?;
            }
        }
        OutboxKind::Firing => {
            if let Some(throttle) = t.throttle
                && throttled(tx.db(), t, throttle).await?
            {
                for channel in t.channels {
                    insert_item(tx, &entry_for(t, channel), None, "throttled").await?;
                }
                return Ok(());
            }
            for channel in t.channels {
                if !t.policy.channel_wants(channel, &t.alert.severity) {
                    continue;
                }
                route(
                    tx,
                    t,
                    channel,
                    "firing",
                    t.at,
                    t.policy.group_wait,
                    t.policy.repeat_interval,
                    true,
                )
                .await?;
            }
            for step in &t.policy.escalation {
                let due = t.at + chrono::Duration::from_std(step.after).unwrap_or_default();
                for channel in &step.channels {
                    route(
                        tx,
                        t,
                        channel,
                        "escalation",
                        due,
                        Duration::ZERO,
                        None,
                        false,
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}

/// One alert → one channel: joins or creates the delivery and writes the outbox row.
#[allow(clippy::too_many_arguments)]
async fn route(
    tx: &mut Tx,
    t: &Transition<'_>,
    channel: &str,
    delivery_kind: &str,
    due: DateTime<Utc>,
    group_wait: Duration,
    repeat_every: Option<Duration>,
    groupable: bool,
) -> Result<(), sqlx::Error> {
    let Some(channel_id) = super::channel::resolve_ref(tx.db(), t.tenant, channel).await? else {
        tracing::warn!(tenant = %t.tenant, channel = %channel, alert_id = %t.alert_id,
            rule_id = %t.rule_id, "rule names an unknown channel; notification dropped");
        return Ok(());
    };
    let group_key = if groupable {
        t.group_key.clone()
    } else {
        // Escalations are per alert: each may be cancelled or suppressed on its own.
        format!("{}:{}", t.alert_id, delivery_kind)
    };
    let delivery = join_or_create_delivery(
        tx,
        &DeliverySpec {
            tenant: t.tenant,
            channel_id,
            rule_id: t.rule_id,
            group_key: &group_key,
            kind: delivery_kind,
            due_at: due + chrono::Duration::from_std(group_wait).unwrap_or_default(),
            repeat_every,
            at: t.at,
            groupable,
        },
    )
    .await?;
    insert_item(tx, &entry_for(t, channel), Some(delivery), "queued").await
}

fn entry_for(t: &Transition<'_>, channel: &str) -> OutboxEntry {
    OutboxEntry {
        tenant: t.tenant.to_string(),
        alert_id: t.alert_id,
        rule_id: t.rule_id,
        channel_id: channel.to_string(),
        kind: t.kind,
        alert: t.alert.clone(),
        group_key: t.group_key.clone(),
        created_at: t.at,
    }
}

/// Whether the rule already notified `max_alerts` distinct alerts within `period`.
async fn throttled(
    db: Db<'_>,
    t: &Transition<'_>,
    throttle: &crate::rules::model::Throttle,
) -> Result<bool, sqlx::Error> {
    let since = t.at - chrono::Duration::from_std(throttle.period).unwrap_or_default();
    let notified: i64 = sql!(
        db,
        scalar i64,
        "SELECT count(DISTINCT alert_id) FROM outbox
         WHERE tenant = $1 AND rule_id = $2 AND kind = 'firing' AND status <> 'throttled'
           AND created_at > $3 AND alert_id <> $4",
        t.tenant,
        t.rule_id,
        DbTime(since),
        t.alert_id
    )?;
    Ok(notified >= i64::from(throttle.max_alerts))
}

/// A resolved alert needs no more repeats or escalations. One being sent right now is
/// cancelled too: its worker then records the attempt but schedules no further reminder.
async fn cancel_pending_followups(
    tx: &mut Tx,
    tenant: &str,
    alert_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Twice, on purpose (PostgreSQL, read committed): a worker recording a reminder it
    // just sent holds that delivery's row lock while it inserts the next reminder. The
    // first statement waits for that lock, but its snapshot predates the new reminder;
    // the second statement's fresh snapshot sees it. (Once this transaction has cancelled
    // a row, a worker that reaches it later waits for our commit and sees `cancelled`.)
    // SQLite's single writer serialises the two anyway.
    for _ in 0..2 {
        sql!(
            tx.db(),
            exec,
            "UPDATE deliveries SET status = 'cancelled', last_error = 'the alert resolved',
                    finished_at = $3, updated_at = $3
             WHERE tenant = $1 AND status = 'pending' AND kind IN ('repeat', 'escalation')
               AND id IN (SELECT delivery_id FROM outbox WHERE tenant = $1 AND alert_id = $2)",
            tenant,
            alert_id,
            DbTime(at)
        )?;
    }
    Ok(())
}

pub(super) struct DeliverySpec<'a> {
    pub tenant: &'a str,
    pub channel_id: Uuid,
    pub rule_id: Uuid,
    pub group_key: &'a str,
    pub kind: &'a str,
    pub due_at: DateTime<Utc>,
    pub repeat_every: Option<Duration>,
    pub at: DateTime<Utc>,
    /// Whether the delivery may take in other alerts of its group.
    pub groupable: bool,
}

/// The delivery an alert joins: an open one of its group (never attempted nor claimed),
/// else a new one.
///
/// PostgreSQL: `FOR UPDATE` locks the open delivery until the caller commits, and the
/// workers' claim skips locked rows, so a worker never sends a group while an alert is
/// being added to it. SQLite has one writer, which serialises the two anyway.
pub(super) async fn join_or_create_delivery(
    tx: &mut Tx,
    spec: &DeliverySpec<'_>,
) -> Result<Uuid, sqlx::Error> {
    if spec.groupable {
        let open: Option<Uuid> = match tx.db() {
            Db::Postgres(conn) => {
                sqlx::query_scalar(
                    "SELECT id FROM deliveries
                     WHERE tenant = $1 AND channel_id = $2 AND group_key = $3 AND kind = $4
                       AND status = 'pending' AND attempts = 0 AND claimed_by IS NULL
                     ORDER BY id LIMIT 1 FOR UPDATE",
                )
                .bind(spec.tenant)
                .bind(spec.channel_id)
                .bind(spec.group_key)
                .bind(spec.kind)
                .fetch_optional(&mut *conn)
                .await?
            }
            Db::Sqlite(conn) => {
                sqlx::query_scalar(
                    "SELECT id FROM deliveries
                     WHERE tenant = $1 AND channel_id = $2 AND group_key = $3 AND kind = $4
                       AND status = 'pending' AND attempts = 0 AND claimed_by IS NULL
                     ORDER BY id LIMIT 1",
                )
                .bind(spec.tenant)
                .bind(spec.channel_id)
                .bind(spec.group_key)
                .bind(spec.kind)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        if let Some(id) = open {
            return Ok(id);
        }
    }
    let id = Uuid::now_v7();
    sql!(
        tx.db(),
        exec,
        "INSERT INTO deliveries (id, tenant, channel_id, rule_id, group_key, kind, status, due_at,
                                 attempts, repeat_every_ms, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, 0, $8, $9, $9)",
        id,
        spec.tenant,
        spec.channel_id,
        spec.rule_id,
        spec.group_key,
        spec.kind,
        DbTime(spec.due_at),
        spec.repeat_every
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        DbTime(spec.at)
    )?;
    Ok(id)
}

pub(super) async fn insert_item(
    tx: &mut Tx,
    entry: &OutboxEntry,
    delivery: Option<Uuid>,
    status: &str,
) -> Result<(), sqlx::Error> {
    sql!(
        tx.db(),
        exec,
        "INSERT INTO outbox (id, tenant, alert_id, rule_id, channel_id, kind, alert, group_key,
                             created_at, processed_at, delivery_id, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        Uuid::now_v7(),
        &entry.tenant,
        entry.alert_id,
        entry.rule_id,
        &entry.channel_id,
        entry.kind.as_str(),
        Json(&entry.alert),
        &entry.group_key,
        DbTime(entry.created_at),
        // Routed at once: nothing is left for a separate outbox reader to do.
        DbTime(entry.created_at),
        delivery,
        status
    )?;
    Ok(())
}
