//! The send-time check of a notification: notify workers ask, just before sending,
//! whether the alert should still be notified (it may have been acknowledged, snoozed,
//! silenced, put in a maintenance window or resolved since the outbox row was written).
//!
//! This is the contract between rules and notify; the rules part answers from the
//! alert row and the silences.

use super::repo;
use super::silence;
use crate::store::Store;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Whether to send a notification about an alert now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Send,
    /// Do not send; the reason goes into the alert's timeline (e.g. "silenced by
    /// silence 0192…", "acknowledged by alice", "snoozed until 12:00").
    Suppress {
        reason: String,
    },
}

/// Decides whether a `kind` ("firing" or "resolved") notification about `alert_id`
/// should go out at `now`.
///
/// A deleted alert is not notified. A firing notification is held back when the alert
/// has resolved meanwhile or was acknowledged; both kinds are held back while the alert
/// is snoozed or a silence or maintenance window matches its labels.
pub async fn check(
    store: &Store,
    tenant: &str,
    alert_id: Uuid,
    kind: &str,
    now: DateTime<Utc>,
) -> Result<Gate, sqlx::Error> {
    let alert = {
        let mut conn = store.read().await?;
        repo::get_alert(conn.db(), tenant, alert_id).await?
    };
    let Some(alert) = alert else {
        return Ok(suppress("the alert was deleted".into()));
    };
    if kind == "firing" {
        if alert.state == "resolved" || alert.state == "inactive" {
            return Ok(suppress(format!("the alert is {} already", alert.state)));
        }
        if let Some(by) = &alert.acknowledged_by {
            return Ok(suppress(format!("acknowledged by {by}")));
        }
    }
    if let Some(until) = alert.snoozed_until.filter(|until| until.0 > now) {
        return Ok(suppress(format!("snoozed until {}", until.0.to_rfc3339())));
    }
    let silences = silence::current_for_tenant(store, tenant, now).await?;
    if let Some(silence) = silence::muting(&silences, tenant, &alert.labels.0, now) {
        return Ok(suppress(format!("silenced by {}", silence.describe())));
    }
    Ok(Gate::Send)
}

fn suppress(reason: String) -> Gate {
    Gate::Suppress { reason }
}
