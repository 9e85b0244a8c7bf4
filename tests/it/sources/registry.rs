//! The source registry: CRUD, roles, tenants, validation, write-only secrets, and the
//! default KumoMTA source from the configuration.

use crate::both_modes;
use crate::common::{TestEnv, eventually};
use crate::support::kumod::Kumod;
use lookout::auth::Role;
use lookout::config::Secret;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

async fn registry_crud_roles_and_write_only_secrets(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    let viewer = env.token(Role::Viewer, "default", "v");
    let other_tenant = env.token(Role::Admin, "other", "a");

    let body = json!({
        "name": "kumo-1", "kind": "kumomta", "url": "http://127.0.0.1:1",
        "auth": {"type": "bearer", "token": "kumod-bearer-secret"}, "enabled": false
    });
    app.post("/api/v1/sources", &viewer, body.clone())
        .await
        .assert_problem(403, "forbidden");
    let created = app.post("/api/v1/sources", &admin, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(!created.text.contains("kumod-bearer-secret"));
    let source = created.body;
    let id = source["id"].as_str().expect("id").to_string();
    assert_eq!(source["auth"], json!({"type": "bearer"}));
    assert_eq!(
        (
            source["interval_ms"].as_u64(),
            source["timeout_ms"].as_u64()
        ),
        (Some(5000), Some(4000))
    );
    assert_eq!(source["log_hook_token_set"], true);
    let generated = source["log_hook_token"]
        .as_str()
        .expect("generated log-hook token");
    assert!(generated.len() >= 32);
    assert_eq!(source["last_outcome"], serde_json::Value::Null);

    // Shown again: never the secrets, never the generated token.
    let shown = app.get(&format!("/api/v1/sources/{id}"), &viewer).await;
    assert_eq!(shown.status, 200);
    assert!(!shown.text.contains("kumod-bearer-secret") && !shown.text.contains(generated));
    assert!(shown.body.get("log_hook_token").is_none());
    let listed = app.get("/api/v1/sources", &viewer).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert!(!listed.text.contains("kumod-bearer-secret"));

    // Another tenant sees nothing, and cannot change it.
    app.get(&format!("/api/v1/sources/{id}"), &other_tenant)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        app.get("/api/v1/sources", &other_tenant).await.body["items"],
        json!([])
    );
    app.call(
        Method::DELETE,
        &format!("/api/v1/sources/{id}"),
        Some(&other_tenant),
        None,
    )
    .await
    .assert_problem(404, "not_found");

    // PUT without auth keeps the credentials; the kind cannot change.
    let updated = app
        .call(
            Method::PUT,
            &format!("/api/v1/sources/{id}"),
            Some(&admin),
            Some(json!({"name": "kumo-1", "kind": "kumomta", "url": "http://127.0.0.1:2", "interval_ms": 1000, "enabled": false})),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["auth"], json!({"type": "bearer"}));
    assert_eq!(updated.body["interval_ms"], 1000);
    assert_eq!(updated.body["version"], 2);
    app.call(
        Method::PUT,
        &format!("/api/v1/sources/{id}"),
        Some(&admin),
        Some(json!({"name": "kumo-1", "kind": "http_probe", "url": "http://127.0.0.1:2"})),
    )
    .await
    .assert_problem(422, "validation");

    // Validation names every field at fault; a duplicate name is a conflict.
    let invalid = app
        .post(
            "/api/v1/sources",
            &admin,
            json!({"name": "p", "kind": "prometheus", "url": "http://user:pw@h/metrics", "allow": ["("], "expected_status": 200}),
        )
        .await;
    invalid.assert_problem(422, "validation");
    let fields: Vec<&str> = invalid.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["url", "expected_status", "allow"]);
    app.post(
        "/api/v1/sources",
        &admin,
        json!({"name": "x", "kind": "nope", "url": "http://h"}),
    )
    .await
    .assert_problem(422, "validation");
    app.post("/api/v1/sources", &admin, body)
        .await
        .assert_problem(409, "conflict");
    app.get("/api/v1/sources/not-a-uuid", &viewer)
        .await
        .assert_problem(404, "not_found");

    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/sources/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("/api/v1/sources/{id}"), &viewer)
        .await
        .assert_problem(404, "not_found");
}

async fn the_configured_kumomta_source_is_created_once_and_polled_with_its_token(env: TestEnv) {
    let kumod = Kumod::start().await;
    let configure = |config: &mut lookout::config::Config| {
        config.kumomta.api_url = Some(kumod.url());
        config.kumomta.api_token = Some(Secret::new("config-token-123"));
    };
    let a = env.spawn_with(configure).await;
    let b = env.spawn_with(configure).await;
    let viewer = env.token(Role::Viewer, "default", "v");
    let listed = eventually(Duration::from_secs(10), "the default source", || async {
        let listed = a.get("/api/v1/sources", &viewer).await;
        (listed.body["items"].as_array()?.len() == 1).then_some(listed)
    })
    .await;
    let source = &listed.body["items"][0];
    assert_eq!(
        (source["name"].as_str(), source["origin"].as_str()),
        (Some("kumomta"), Some("config"))
    );
    assert_eq!(source["auth"], json!({"type": "bearer"}));
    assert!(!listed.text.contains("config-token-123"));
    assert_eq!(
        b.get("/api/v1/sources", &viewer).await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let polled = eventually(
        Duration::from_secs(15),
        "a poll of the configured node",
        || async { kumod.requests_to("/metrics").into_iter().next() },
    )
    .await;
    assert_eq!(
        polled.authorization.as_deref(),
        Some("Bearer config-token-123")
    );
}

both_modes!(
    registry_crud_roles_and_write_only_secrets,
    the_configured_kumomta_source_is_created_once_and_polled_with_its_token,
);
