//! Prometheus targets (allowed series kept with the target's labels) and HTTP probes
//! (`probe_success`, `probe_duration_ms`, `health:update` on change, dashboard health).

use super::{create_source, events, series_values};
use crate::both_modes;
use crate::common::{TestEnv, eventually};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PAGE: &str = "# TYPE app_requests_total counter\n\
app_requests_total{path=\"/a\",env=\"page\"} 10\n\
app_requests_total{path=\"/b\\\"q\",env=\"page\"} 5\n\
# TYPE app_debug_info gauge\n\
app_debug_info 1\n\
# TYPE go_goroutines gauge\n\
go_goroutines 42\n";

/// A service with a `/metrics` page and a `/health` that a test can turn down.
async fn start_service(healthy: Arc<AtomicBool>) -> String {
    let app = axum::Router::new()
        .route("/metrics", get(|| async { PAGE }))
        .route(
            "/health",
            get(|State(healthy): State<Arc<AtomicBool>>| async move {
                if healthy.load(Ordering::SeqCst) {
                    (StatusCode::OK, "status: green")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "status: red")
                }
            }),
        )
        .with_state(healthy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn prometheus_targets_and_probes(env: TestEnv) {
    let healthy = Arc::new(AtomicBool::new(true));
    let service = start_service(healthy.clone()).await;
    let app = env.spawn().await;
    let admin = env.admin();
    create_source(
        &app,
        &admin,
        json!({"name": "app", "kind": "prometheus", "url": format!("{service}/metrics"), "interval_ms": 500,
               "allow": ["app_.*"], "deny": ["app_debug_.*"], "labels": {"env": "prod", "team": "mail"}}),
    )
    .await;
    create_source(
        &app,
        &admin,
        json!({"name": "svc", "kind": "http_probe", "url": format!("{service}/health"), "interval_ms": 500,
               "body_match": "green"}),
    )
    .await;

    // Allowed series only, with the target's labels winning over the page's.
    eventually(Duration::from_secs(10), "scraped samples", || async {
        let values = series_values(
            &app,
            "app_requests_total",
            &[("path", "/a"), ("env", "prod"), ("team", "mail")],
        )
        .await;
        values.contains(&10.0).then_some(())
    })
    .await;
    assert!(
        series_values(&app, "app_requests_total", &[("path", "/b\"q")])
            .await
            .contains(&5.0)
    );
    assert!(series_values(&app, "app_debug_info", &[]).await.is_empty());
    assert!(series_values(&app, "go_goroutines", &[]).await.is_empty());

    // The probe: up, then down (body no longer matches, status 503), then up again.
    eventually(Duration::from_secs(10), "probe up", || async {
        series_values(&app, "probe_success", &[("source", "svc")])
            .await
            .contains(&1.0)
            .then_some(())
    })
    .await;
    assert!(
        !series_values(&app, "probe_duration_ms", &[("source", "svc")])
            .await
            .is_empty()
    );
    healthy.store(false, Ordering::SeqCst);
    let down = eventually(Duration::from_secs(10), "health:update down", || async {
        events(&app, "health", "health:update")
            .await
            .into_iter()
            .find(|e| e["status"] == "down")
    })
    .await;
    assert_eq!(
        (down["service"].as_str(), down["host"].as_str()),
        (Some("svc"), Some("127.0.0.1"))
    );
    // The outcome is recorded just after the event is published.
    let svc = eventually(
        Duration::from_secs(5),
        "the probe's health down",
        || async {
            let health = lookout::sources::health(&app.state, "default").await.ok()?;
            health
                .into_iter()
                .find(|h| h.name == "svc" && h.status == "down")
        },
    )
    .await;
    assert_eq!(svc.kind, "http_probe");
    assert!(
        svc.detail.as_deref().is_some_and(|d| d.contains("503")),
        "{svc:?}"
    );
    healthy.store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "health:update up again",
        || async {
            let updates = events(&app, "health", "health:update").await;
            (updates.len() == 3 && updates[2]["status"] == "up").then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(5), "every source healthy", || async {
        let health = lookout::sources::health(&app.state, "default").await.ok()?;
        health.iter().all(|h| h.status == "up").then_some(())
    })
    .await;
    // No KumoMTA source: no queue totals for the dashboard.
    assert!(
        lookout::sources::queue_totals(&app.state, "default")
            .await
            .expect("totals")
            .is_none()
    );
}

both_modes!(prometheus_targets_and_probes);
