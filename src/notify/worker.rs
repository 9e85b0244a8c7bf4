//! Delivery workers: every replica claims due deliveries, sends them and records the
//! outcome.
//!
//! * **Claim.** One statement marks up to `batch_size` due deliveries as this replica's
//!   until `now + claim_timeout` (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas never
//!   wait for one another; SQLite: the same `UPDATE … RETURNING` through the single
//!   writer). A replica that dies holding a claim lets it lapse, and another replica
//!   claims the delivery again: delivery is at least once, and the notification id
//!   (stable across attempts) lets receivers drop the rare duplicate.
//! * **Send.** Just before sending, each alert is checked again with
//!   [`crate::rules::gate::check`] (acknowledged, snoozed, silenced, resolved); suppressed
//!   alerts are left out with their reason, and a delivery left with none is recorded as
//!   suppressed.
//! * **Record.** Every attempt gets a row (time, outcome, status, error, duration). A
//!   retryable failure is due again after the retry schedule (with jitter, honouring
//!   `Retry-After`); a permanent one, or the last attempt, dead-letters the delivery,
//!   publishes `notification:failed` on the tenant's `notifications` topic and counts
//!   `lookout_notifications_dead_lettered_total`. Only the claim holder may record
//!   (`claim_id`), so a replica whose claim lapsed cannot overwrite a later outcome.
//! * **Repeat.** A delivered firing message whose rule has a `repeat_interval` schedules
//!   the next reminder per alert; a resolution cancels it (see [`super::outbox`]).

use super::channel::{self, Channel};
use super::message::{AlertSummary, Notification, NotificationKind};
use super::retry::{Outcome, RetryPolicy};
use super::send::Sender;
use crate::app::AppState;
use crate::bus::BusMessage;
use crate::rules::gate::{self, Gate};
use crate::series::Labels;
use crate::sql;
use crate::store::{Db, DbTime, Store};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sqlx::types::Json;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tracing::Instrument;
use uuid::Uuid;

/// A claimed delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub tenant: String,
    pub channel_id: Uuid,
    pub rule_id: Option<Uuid>,
    pub kind: String,
    pub attempts: i32,
    pub claim_id: Option<Uuid>,
    pub repeat_every_ms: Option<i64>,
    #[sqlx(try_from = "DbTime")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Item {
    id: Uuid,
    alert_id: Uuid,
    rule_id: Uuid,
    channel_id: String,
    kind: String,
    alert: Json<AlertSummary>,
    group_key: String,
}

/// What one worker needs; built once per replica.
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub bus: crate::bus::Bus,
    pub sender: Sender,
    pub retry: RetryPolicy,
    pub replica: String,
    pub batch_size: u32,
    pub concurrency: usize,
    pub claim_timeout: Duration,
    pub external_url: Option<String>,
}

impl Worker {
    pub fn from_state(state: &AppState) -> Worker {
        let config = &state.config.notify;
        Worker {
            store: state.store.clone(),
            bus: state.bus.clone(),
            sender: Sender::new(config.send_timeout),
            retry: config.retry_policy(),
            replica: state.replica_id().to_string(),
            batch_size: config.batch_size,
            concurrency: config.concurrency,
            claim_timeout: config.claim_timeout,
            external_url: state.config.server.public_url.clone(),
        }
    }

    /// Claims one batch of due deliveries and works them off; returns how many were
    /// claimed.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let claimed = self.claim(Utc::now()).await?;
        let count = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(self.concurrency, |delivery| async move {
                let id = delivery.id;
                // Every log line of this delivery names it.
                let span =
                    tracing::info_span!("notify", tenant = %delivery.tenant, delivery_id = %id);
                if let Err(e) = self.process(delivery).instrument(span).await {
                    // The claim lapses and another attempt comes later.
                    tracing::warn!(delivery_id = %id, error = %e, "could not process a notification");
                }
            })
            .await;
        Ok(count)
    }

    async fn claim(&self, now: DateTime<Utc>) -> Result<Vec<Claimed>, sqlx::Error> {
        let until = now + chrono::Duration::from_std(self.claim_timeout).unwrap_or_default();
        let claim_id = Uuid::now_v7();
        let limit = i64::from(self.batch_size);
        let mut conn = self.store.write().await?;
        match conn.db() {
            Db::Postgres(conn) => {
                sqlx::query_as(
                    "UPDATE deliveries SET claimed_by = $1, claim_id = $2, claimed_until = $3, updated_at = $4
                     WHERE id IN (
                         SELECT id FROM deliveries
                         WHERE status = 'pending' AND due_at <= $4
                           AND (claimed_until IS NULL OR claimed_until < $4)
                         ORDER BY due_at LIMIT $5
                         FOR UPDATE SKIP LOCKED)
                     RETURNING id, tenant, channel_id, rule_id, kind, attempts, claim_id, repeat_every_ms, created_at",
                )
                .bind(&self.replica)
                .bind(claim_id)
                .bind(DbTime(until))
                .bind(DbTime(now))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
            }
            // One writer connection: this statement runs alone, so the rows it selects
            // cannot be claimed by anyone else in between.
            Db::Sqlite(conn) => {
                sqlx::query_as(
                    "UPDATE deliveries SET claimed_by = $1, claim_id = $2, claimed_until = $3, updated_at = $4
                     WHERE id IN (
                         SELECT id FROM deliveries
                         WHERE status = 'pending' AND due_at <= $4
                           AND (claimed_until IS NULL OR claimed_until < $4)
                         ORDER BY due_at LIMIT $5)
                     RETURNING id, tenant, channel_id, rule_id, kind, attempts, claim_id, repeat_every_ms, created_at",
                )
                .bind(&self.replica)
                .bind(claim_id)
                .bind(DbTime(until))
                .bind(DbTime(now))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
            }
        }
    }

    async fn process(&self, delivery: Claimed) -> Result<(), sqlx::Error> {
        let Some(channel) =
            channel::get(&self.store, &delivery.tenant, delivery.channel_id).await?
        else {
            return self
                .finish_without_attempt(&delivery, "failed", "the channel was deleted")
                .await;
        };
        if !channel.enabled {
            return self
                .finish_without_attempt(&delivery, "suppressed", "the channel is disabled")
                .await;
        }
        let items: Vec<Item> = {
            let mut conn = self.store.read().await?;
            sql!(
                conn.db(),
                all Item,
                "SELECT id, alert_id, rule_id, channel_id, kind, alert, group_key FROM outbox
                 WHERE tenant = $1 AND delivery_id = $2 AND status = 'queued' ORDER BY id",
                &delivery.tenant,
                delivery.id
            )?
        };
        // The send-time check, once per alert.
        let now = Utc::now();
        let mut kept = Vec::new();
        let mut reasons = Vec::new();
        for item in items {
            match gate::check(
                &self.store,
                &delivery.tenant,
                item.alert_id,
                &item.kind,
                now,
            )
            .await?
            {
                Gate::Send => kept.push(item),
                Gate::Suppress { reason } => {
                    let mut conn = self.store.write().await?;
                    sql!(
                        conn.db(),
                        exec,
                        "UPDATE outbox SET status = 'suppressed', reason = $2 WHERE id = $1",
                        item.id,
                        &reason
                    )?;
                    metrics::counter!("lookout_notifications_suppressed_total").increment(1);
                    reasons.push(reason);
                }
            }
        }
        if kept.is_empty() {
            let reason = if reasons.is_empty() {
                "no alert left to notify".to_string()
            } else {
                reasons.join("; ")
            };
            return self
                .finish_without_attempt(&delivery, "suppressed", &reason)
                .await;
        }
        let notification = Notification {
            id: delivery.id,
            kind: match delivery.kind.as_str() {
                "resolved" => NotificationKind::Resolved,
                "escalation" => NotificationKind::Escalation,
                "test" => NotificationKind::Test,
                _ => NotificationKind::Firing,
            },
            tenant: delivery.tenant.clone(),
            group_labels: common_labels(kept.iter().map(|i| &i.alert.0.labels)),
            alerts: kept.iter().map(|i| i.alert.0.clone()).collect(),
            external_url: self.external_url.clone(),
        };
        let started = Instant::now();
        let outcome = self.sender.send(&channel, &notification).await;
        let elapsed = started.elapsed();
        self.record(&delivery, &channel, &outcome, elapsed, &kept)
            .await
    }

    /// Records an attempt and moves the delivery on (delivered, due again, dead letter).
    async fn record(
        &self,
        delivery: &Claimed,
        channel: &Channel,
        outcome: &Outcome,
        elapsed: Duration,
        items: &[Item],
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let attempt = delivery.attempts + 1;
        let channel_type = channel.kind().as_str();
        let (attempt_outcome, status_code, error, next) = match outcome {
            Outcome::Delivered => ("delivered", None, None, None),
            Outcome::Retry {
                reason,
                status,
                retry_after,
            } => {
                let wait = self.retry.next_attempt(
                    u32::try_from(attempt).unwrap_or(u32::MAX),
                    *retry_after,
                    rand::random::<f64>(),
                );
                match wait {
                    Some(wait) => ("retry", *status, Some(reason.clone()), Some(wait)),
                    None => ("failed", *status, Some(reason.clone()), None),
                }
            }
            Outcome::Permanent { reason, status } => {
                ("failed", *status, Some(reason.clone()), None)
            }
        };
        let mut status = match (attempt_outcome, next) {
            ("delivered", _) => "delivered",
            (_, Some(_)) => "pending",
            _ => "failed",
        };
        let due_at = next.map_or(now, |wait| {
            now + chrono::Duration::from_std(wait).unwrap_or_default()
        });
        let mut tx = self.store.begin().await?;
        // Lock the row (PostgreSQL) and see where it stands now: our claim may have lapsed,
        // or the alert resolved while we were sending a reminder or escalation.
        let current: Option<String> = sql!(
            tx.db(),
            scalar_opt String,
            "UPDATE deliveries SET updated_at = $3 WHERE id = $1 AND claim_id = $2 RETURNING status",
            delivery.id,
            delivery.claim_id,
            DbTime(now)
        )?;
        match current.as_deref() {
            None => {
                // Another replica took the delivery over: its record wins. (The receiver
                // may get this notification twice, with one id.)
                tracing::warn!(delivery_id = %delivery.id, "claim lapsed before the outcome was recorded");
                return Ok(());
            }
            // Cancelled in flight: it stays cancelled (no retry, no next reminder); the
            // attempt is still recorded.
            Some("cancelled") => status = "cancelled",
            Some(_) => {}
        }
        sql!(
            tx.db(),
            exec,
            "UPDATE deliveries SET status = $3, attempts = $4, due_at = $5, last_error = $6,
                    last_status_code = $7, claimed_by = NULL, claim_id = NULL, claimed_until = NULL,
                    updated_at = $8, finished_at = $9
             WHERE id = $1 AND claim_id = $2",
            delivery.id,
            delivery.claim_id,
            status,
            attempt,
            DbTime(due_at),
            error
                .as_deref()
                .or((status == "cancelled").then_some("the alert resolved")),
            status_code.map(i32::from),
            DbTime(now),
            (status != "pending").then_some(DbTime(now))
        )?;
        sql!(
            tx.db(),
            exec,
            "INSERT INTO delivery_attempts (id, tenant, delivery_id, attempt, at, outcome, status_code,
                                            error, duration_ms, replica)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            Uuid::now_v7(),
            &delivery.tenant,
            delivery.id,
            attempt,
            DbTime(now),
            attempt_outcome,
            status_code.map(i32::from),
            error.as_deref(),
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            &self.replica
        )?;
        if status == "delivered"
            && let Some(every) = delivery.repeat_every_ms.filter(|ms| *ms > 0)
            && matches!(delivery.kind.as_str(), "firing" | "repeat")
        {
            schedule_repeats(&mut tx, delivery, items, now, every).await?;
        }
        tx.commit().await?;

        metrics::histogram!("lookout_notification_attempt_seconds", "channel_type" => channel_type)
            .record(elapsed.as_secs_f64());
        match status {
            "delivered" => {
                metrics::counter!("lookout_notifications_sent_total", "channel_type" => channel_type)
                    .increment(1);
                let latency = (now - delivery.created_at).to_std().unwrap_or_default();
                metrics::histogram!("lookout_notification_delivery_seconds", "channel_type" => channel_type)
                    .record(latency.as_secs_f64());
            }
            "cancelled" => {}
            "pending" => {
                metrics::counter!("lookout_notifications_failed_total", "channel_type" => channel_type)
                    .increment(1);
                metrics::counter!("lookout_notifications_retried_total", "channel_type" => channel_type)
                    .increment(1);
                tracing::info!(delivery_id = %delivery.id, attempt, error = error.as_deref().unwrap_or(""),
                    "notification will be retried");
            }
            _ => {
                metrics::counter!("lookout_notifications_failed_total", "channel_type" => channel_type)
                    .increment(1);
                metrics::counter!("lookout_notifications_dead_lettered_total", "channel_type" => channel_type)
                    .increment(1);
                tracing::warn!(delivery_id = %delivery.id, attempt, error = error.as_deref().unwrap_or(""),
                    "notification dead-lettered");
                self.publish_failed(delivery, channel, attempt, error.as_deref(), items)
                    .await;
            }
        }
        Ok(())
    }

    /// Ends a delivery that was not attempted (channel gone or disabled, every alert
    /// suppressed).
    async fn finish_without_attempt(
        &self,
        delivery: &Claimed,
        status: &str,
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let mut conn = self.store.write().await?;
        sql!(
            conn.db(),
            exec,
            "UPDATE deliveries SET status = $3, last_error = $4, claimed_by = NULL, claim_id = NULL,
                    claimed_until = NULL, updated_at = $5, finished_at = $5
             WHERE id = $1 AND claim_id = $2",
            delivery.id,
            delivery.claim_id,
            status,
            reason,
            DbTime(now)
        )?;
        drop(conn);
        if status == "failed" {
            metrics::counter!("lookout_notifications_dead_lettered_total", "channel_type" => "unknown")
                .increment(1);
            let data = serde_json::json!({
                "id": delivery.id, "channel_id": delivery.channel_id, "kind": delivery.kind,
                "attempts": delivery.attempts, "error": reason,
            });
            self.publish(&delivery.tenant, &data).await;
        }
        Ok(())
    }

    async fn publish_failed(
        &self,
        delivery: &Claimed,
        channel: &Channel,
        attempts: i32,
        error: Option<&str>,
        items: &[Item],
    ) {
        let alert_ids: Vec<Uuid> = items.iter().map(|i| i.alert_id).collect();
        let data = serde_json::json!({
            "id": delivery.id,
            "channel_id": channel.id,
            "channel_name": channel.name,
            "channel_type": channel.kind(),
            "kind": delivery.kind,
            "rule_id": delivery.rule_id,
            "alert_ids": alert_ids,
            "attempts": attempts,
            "error": error,
        });
        self.publish(&delivery.tenant, &data).await;
    }

    async fn publish(&self, tenant: &str, data: &serde_json::Value) {
        if let Err(e) = self
            .bus
            .publish_json(tenant, NOTIFICATIONS_TOPIC, "notification:failed", data)
            .await
        {
            // The delivery record holds the dead letter; the event is a convenience.
            tracing::warn!(error = %e, "could not publish notification:failed");
        }
    }
}

/// `alerts` or `alerts:…`: where the rule engine announces transitions.
fn is_alert_topic(topic: &str) -> bool {
    topic == "alerts" || topic.starts_with("alerts:")
}

/// The bus topic of notification events.
pub const NOTIFICATIONS_TOPIC: &str = "notifications";

/// Per alert of a delivered firing message, the next reminder.
async fn schedule_repeats(
    tx: &mut crate::store::Tx,
    delivery: &Claimed,
    items: &[Item],
    now: DateTime<Utc>,
    every_ms: i64,
) -> Result<(), sqlx::Error> {
    let due = now + chrono::Duration::milliseconds(every_ms);
    for item in items.iter().filter(|i| i.kind == "firing") {
        let repeat = super::outbox::join_or_create_delivery(
            tx,
            &super::outbox::DeliverySpec {
                tenant: &delivery.tenant,
                channel_id: delivery.channel_id,
                rule_id: item.rule_id,
                group_key: &format!("{}:repeat", item.alert_id),
                kind: "repeat",
                due_at: due,
                repeat_every: Some(Duration::from_millis(every_ms.unsigned_abs())),
                at: now,
                groupable: false,
            },
        )
        .await?;
        let entry = super::outbox::OutboxEntry {
            tenant: delivery.tenant.clone(),
            alert_id: item.alert_id,
            rule_id: item.rule_id,
            channel_id: item.channel_id.clone(),
            kind: super::outbox::OutboxKind::Firing,
            alert: item.alert.0.clone(),
            group_key: item.group_key.clone(),
            created_at: now,
        };
        super::outbox::insert_item(tx, &entry, Some(repeat), "queued").await?;
    }
    Ok(())
}

/// The labels every alert shares: what an Alertmanager-style receiver calls the group
/// labels.
fn common_labels<'a>(mut all: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = all.next() else {
        return Labels::new();
    };
    let mut common = first.clone();
    for labels in all {
        common.retain(|k, v| labels.get(k).is_some_and(|other| other == v));
    }
    common
}

/// Runs the worker loop until shutdown. A full batch is followed at once by the next;
/// otherwise the worker waits `poll_interval`, or less: the rule engine publishes
/// `alert:*` on the bus right after a transition commits, and any event on an `alerts`
/// topic (from any replica) wakes the worker at once. The poll still bounds the delay
/// when the bus drops an event, and covers retries and delayed deliveries. On shutdown
/// the batch in hand is finished (claimed notifications are sent), then the loop ends.
pub async fn run(state: AppState) {
    let worker = Worker::from_state(&state);
    let poll = state.config.notify.poll_interval;
    let mut bus = state.bus.receiver();
    loop {
        if state.shutdown.is_cancelled() {
            return;
        }
        let claimed = match worker.run_once().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "notification worker could not claim deliveries");
                0
            }
        };
        if claimed < worker.batch_size as usize {
            let sleep = tokio::time::sleep(poll);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = &mut sleep => break,
                    message = bus.recv() => match message {
                        Ok(BusMessage::Event(event)) if is_alert_topic(&event.topic) => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            // No bus any more: polling alone.
                            (&mut sleep).await;
                            break;
                        }
                    },
                }
            }
        }
    }
}
