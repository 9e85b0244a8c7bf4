//! Silences and maintenance windows: label matchers plus a time window (fixed for a
//! silence; recurring weekdays and times in a time zone for a maintenance window).
//! Matching alerts still change state, but their notifications are held back and the
//! timeline says which silence held them.

use crate::series::{Labels, MatchOp, Matcher};
use crate::sql;
use crate::store::{DbTime, Store};
use crate::validation::FieldError;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use uuid::Uuid;

/// At most this many matchers per silence.
pub const MAX_MATCHERS: usize = 32;
/// At most this many characters of comment.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// When a maintenance window recurs: on these weekdays, from `start` to `end` local
/// time in `time_zone` (an `end` before `start` runs past midnight into the next day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    /// `mon`, `tue`, … `sun` (or full names); the days a window starts on.
    #[schema(value_type = Vec<String>, example = json!(["sat", "sun"]))]
    pub weekdays: Vec<String>,
    /// Local start time, `HH:MM`.
    #[schema(example = "22:00")]
    pub start: String,
    /// Local end time, `HH:MM`.
    #[schema(example = "02:00")]
    pub end: String,
    /// IANA time zone, e.g. `Europe/Paris` (default `UTC`).
    #[serde(default = "utc")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".to_string()
}

/// A label matcher as the API shows it: `{"name": "queue", "op": "=~", "value": "gmail.*"}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MatcherView {
    pub name: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: MatchOp,
    pub value: String,
}

impl From<&Matcher> for MatcherView {
    fn from(m: &Matcher) -> Self {
        MatcherView {
            name: m.name().to_string(),
            op: m.op(),
            value: m.value().to_string(),
        }
    }
}

/// A stored silence or maintenance window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SilenceRow {
    pub id: Uuid,
    pub tenant: String,
    pub kind: String,
    pub matchers: Json<Vec<Matcher>>,
    pub starts_at: DbTime,
    pub ends_at: DbTime,
    pub recurrence: Option<Json<Recurrence>>,
    pub comment: String,
    pub created_by: String,
    pub created_at: DbTime,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SilenceView {
    pub id: Uuid,
    /// `silence` (a fixed window) or `maintenance` (recurring).
    pub kind: String,
    pub matchers: Vec<MatcherView>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub recurrence: Option<Recurrence>,
    pub comment: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Whether it mutes matching alerts right now.
    pub active: bool,
}

impl SilenceRow {
    pub fn view(&self, now: DateTime<Utc>) -> SilenceView {
        SilenceView {
            id: self.id,
            kind: self.kind.clone(),
            matchers: self.matchers.0.iter().map(MatcherView::from).collect(),
            starts_at: self.starts_at.0,
            ends_at: self.ends_at.0,
            recurrence: self.recurrence.as_ref().map(|r| r.0.clone()),
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at.0,
            active: self.is_active(now),
        }
    }

    /// Whether the silence mutes alerts at `now` (its matchers aside).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        if now < self.starts_at.0 || now >= self.ends_at.0 {
            return false;
        }
        match &self.recurrence {
            None => true,
            Some(recurrence) => recurrence.0.contains(now).unwrap_or(false),
        }
    }

    /// Whether every matcher matches `labels` (a silence without matchers matches all).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.0.iter().all(|m| m.matches(labels))
    }

    /// The timeline's words for it.
    pub fn describe(&self) -> String {
        let what = if self.kind == "maintenance" {
            "maintenance window"
        } else {
            "silence"
        };
        if self.comment.is_empty() {
            format!("{what} {}", self.id)
        } else {
            format!("{what} {} ({})", self.id, self.comment)
        }
    }
}

/// The first active silence of `silences` that matches `labels` at `now`.
pub fn muting<'a>(
    silences: &'a [SilenceRow],
    tenant: &str,
    labels: &Labels,
    now: DateTime<Utc>,
) -> Option<&'a SilenceRow> {
    silences
        .iter()
        .find(|s| s.tenant == tenant && s.is_active(now) && s.matches(labels))
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    text.trim().to_ascii_lowercase().parse::<Weekday>().ok()
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

impl Recurrence {
    /// Problems with the recurrence, with field paths under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.weekdays.is_empty() {
            errors.push(FieldError::new(
                format!("{prefix}.weekdays"),
                "must name at least one day",
            ));
        }
        if self.weekdays.len() > 7 {
            errors.push(FieldError::new(
                format!("{prefix}.weekdays"),
                "at most 7 days",
            ));
        }
        for (i, day) in self.weekdays.iter().enumerate() {
            if parse_weekday(day).is_none() {
                errors.push(FieldError::new(
                    format!("{prefix}.weekdays[{i}]"),
                    "must be a weekday such as mon, tue, … sun",
                ));
            }
        }
        for (field, value) in [("start", &self.start), ("end", &self.end)] {
            if parse_time(value).is_none() {
                errors.push(FieldError::new(
                    format!("{prefix}.{field}"),
                    "must be a time HH:MM (24 h)",
                ));
            }
        }
        if self.start.trim() == self.end.trim() {
            errors.push(FieldError::new(
                format!("{prefix}.end"),
                "must differ from start",
            ));
        }
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            errors.push(FieldError::new(
                format!("{prefix}.time_zone"),
                "must be an IANA time zone such as UTC or Europe/Paris",
            ));
        }
        errors
    }

    /// Whether `now` falls in one of the windows. `None` when the recurrence is invalid.
    pub fn contains(&self, now: DateTime<Utc>) -> Option<bool> {
        let tz: chrono_tz::Tz = self.time_zone.parse().ok()?;
        let start = parse_time(&self.start)?;
        let end = parse_time(&self.end)?;
        let days: Vec<Weekday> = self
            .weekdays
            .iter()
            .filter_map(|d| parse_weekday(d))
            .collect();
        let local = now.with_timezone(&tz);
        // A window starting yesterday may run past midnight into today.
        for offset in [0i64, 1] {
            let day = local.date_naive() - chrono::Duration::days(offset);
            if !days.contains(&day.weekday()) {
                continue;
            }
            let opens = tz.from_local_datetime(&day.and_time(start)).earliest()?;
            let end_day = if end > start {
                day
            } else {
                day + chrono::Duration::days(1)
            };
            let closes = tz.from_local_datetime(&end_day.and_time(end)).earliest()?;
            if opens <= local && local < closes {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// Silences of every tenant that have not ended at `now` (what the engine checks at a
/// transition).
pub async fn current(store: &Store, now: DateTime<Utc>) -> Result<Vec<SilenceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all SilenceRow,
        "SELECT id, tenant, kind, matchers, starts_at, ends_at, recurrence, comment, created_by, created_at
         FROM silences WHERE ends_at > $1",
        DbTime(now)
    )
}

/// Silences of one tenant that have not ended at `now`.
pub async fn current_for_tenant(
    store: &Store,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SilenceRow>, sqlx::Error> {
    let mut conn = store.read().await?;
    sql!(
        conn.db(),
        all SilenceRow,
        "SELECT id, tenant, kind, matchers, starts_at, ends_at, recurrence, comment, created_by, created_at
         FROM silences WHERE tenant = $1 AND ends_at > $2",
        tenant,
        DbTime(now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn recurring_windows_follow_weekdays_times_and_zone() {
        let night = Recurrence {
            weekdays: vec!["sat".into()],
            start: "22:00".into(),
            end: "02:00".into(),
            time_zone: "Europe/Paris".into(),
        };
        assert!(night.validate("r").is_empty());
        // 2026-11-21 is a Saturday; Paris is UTC+1 in November.
        assert_eq!(night.contains(at("2026-11-21T21:30:00Z")), Some(true));
        assert_eq!(night.contains(at("2026-11-22T00:59:00Z")), Some(true));
        assert_eq!(night.contains(at("2026-11-22T01:00:00Z")), Some(false));
        assert_eq!(night.contains(at("2026-11-21T20:59:00Z")), Some(false));
        // Friday night is not in the window.
        assert_eq!(night.contains(at("2026-11-20T21:30:00Z")), Some(false));

        let day = Recurrence {
            weekdays: vec!["monday".into(), "wed".into()],
            start: "09:00".into(),
            end: "10:00".into(),
            time_zone: "UTC".into(),
        };
        assert_eq!(day.contains(at("2026-11-23T09:30:00Z")), Some(true));
        assert_eq!(day.contains(at("2026-11-24T09:30:00Z")), Some(false));

        let bad = Recurrence {
            weekdays: vec!["someday".into()],
            start: "25:00".into(),
            end: "25:00".into(),
            time_zone: "Mars/Olympus".into(),
        };
        let fields: Vec<String> = bad.validate("r").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["r.weekdays[0]", "r.start", "r.end", "r.end", "r.time_zone"]
        );
    }
}
