//! The HTTP API: routes of every part, merged into one router with the edge concerns
//! (request ids, tracing, metrics, problem+json for every error, CORS, compression,
//! timeouts, body limits) and the OpenAPI description served at `/openapi.json`.

pub mod error;
pub mod idempotency;
pub mod json;
mod middleware;
mod ops;
pub mod paging;

mod cluster;
mod tokens;

use crate::app::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, FieldError, Problem};
pub use json::ApiJson;

/// Body limit applied when a route sets none (the configured one replaces it).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The parts of the OpenAPI description that no route carries: title, security scheme,
/// shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lookout",
        description = "Real-time monitoring and alerting hub. Errors are application/problem+json (RFC 9457).",
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every `/api/v1` route, with its OpenAPI description. Each part adds its own router
/// here.
fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(cluster::router())
        .merge(tokens::router())
        .merge(crate::ingest::api::router())
        .merge(crate::query::router())
        .merge(crate::agents::router())
        .merge(crate::dashboard::router())
        .merge(crate::sources::router())
        .merge(crate::rules::router())
        .merge(crate::notify::router())
        .merge(crate::gateway::router())
}

/// The whole HTTP surface of a replica.
pub fn router(state: AppState) -> axum::Router {
    let config = &state.config.server;
    let (api, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(api_v1())
        .split_for_parts();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
    let openapi_json: Arc<str> = openapi.to_json().unwrap_or_else(|_| "{}".into()).into();

    let api = api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        idempotency::middleware,
    ));

    let request_id = HeaderName::from_static("x-request-id");
    let edge = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(axum::middleware::from_fn(
            middleware::problem_for_bare_errors,
        ))
        .layer(cors_layer(&config.cors_origin))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .layer(axum::Extension(json::BodyLimit(config.body_limit_bytes)))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes));

    axum::Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi_json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        body.to_string(),
                    )
                }
            }),
        )
        .merge(api)
        .merge(crate::gateway::routes())
        .merge(crate::web::router())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(edge)
        .with_state(state)
}

fn cors_layer(origins: &str) -> CorsLayer {
    let origins = origins.trim();
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    if origins.is_empty() {
        // No cross-origin access: the built-in dashboard is served from the same origin.
        base.allow_origin(AllowOrigin::list([]))
    } else if origins == "*" {
        base.allow_origin(tower_http::cors::Any)
    } else {
        base.allow_origin(AllowOrigin::list(
            origins.split(',').filter_map(|o| o.trim().parse().ok()),
        ))
    }
}
