//! The rules part's HTTP routes: rules, alerts (reads, actions, analytics) and
//! silences.

mod alerts;
mod analytics;
mod rules;
mod silences;

pub use alerts::{AlertQuery, TimelineEntry};
pub use analytics::Analytics;

use crate::app::AppState;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(
            rules::get_rule,
            rules::replace_rule,
            rules::patch_rule,
            rules::delete_rule
        ))
        .routes(routes!(alerts::list_alerts))
        // Before `/alerts/{id}` so that `analytics` is not taken for an id.
        .routes(routes!(analytics::analytics))
        .routes(routes!(alerts::get_alert, alerts::delete_alert))
        .routes(routes!(alerts::alert_events))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::resolve))
        .routes(routes!(alerts::snooze))
        .routes(routes!(silences::list_silences, silences::create_silence))
        .routes(routes!(silences::delete_silence))
}
