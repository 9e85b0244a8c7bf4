//! Reads of the stored samples: raw series, aggregations, names, search, stats, export.

use crate::app::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1/metrics` read routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
