//! The outbox: how an alert transition asks for notifications.
//!
//! The rule engine calls [`enqueue`] inside the transaction that changes the alert, so
//! a transition and its notifications are committed together or not at all; notify
//! workers on every replica turn outbox rows into deliveries. This is the contract
//! between the two parts.

use super::message::AlertSummary;
use crate::sql;
use crate::store::{DbTime, Tx};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
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

/// Writes outbox rows inside the caller's transaction.
pub async fn enqueue(tx: &mut Tx, entries: &[OutboxEntry]) -> Result<(), sqlx::Error> {
    for entry in entries {
        sql!(
            tx.db(),
            exec,
            "INSERT INTO outbox (id, tenant, alert_id, rule_id, channel_id, kind, alert, group_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            Uuid::now_v7(),
            &entry.tenant,
            entry.alert_id,
            entry.rule_id,
            &entry.channel_id,
            entry.kind.as_str(),
            Json(&entry.alert),
            &entry.group_key,
            DbTime(entry.created_at)
        )?;
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

/// Routing: writes the outbox rows a transition asks for, inside the caller's
/// transaction. The rule engine calls this; notify decides which rows (channels,
/// resolved messages, filters, escalation).
pub async fn enqueue_transition(tx: &mut Tx, t: &Transition<'_>) -> Result<(), sqlx::Error> {
    if t.kind == OutboxKind::Resolved && !t.policy.send_resolved {
        return Ok(());
    }
    let entries: Vec<OutboxEntry> = t
        .channels
        .iter()
        .map(|channel| OutboxEntry {
            tenant: t.tenant.to_string(),
            alert_id: t.alert_id,
            rule_id: t.rule_id,
            channel_id: channel.clone(),
            kind: t.kind,
            alert: t.alert.clone(),
            group_key: t.group_key.clone(),
            created_at: t.at,
        })
        .collect();
    enqueue(tx, &entries).await
}
