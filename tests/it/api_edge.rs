//! The HTTP edge in both modes: problem+json for every error, auth, limits, request ids,
//! idempotency, and the operations endpoints.

use crate::both_modes;
use crate::common::{JWT_SECRET, TestEnv, token_for};
use lookout::auth::Role;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

async fn operations_endpoints_answer(env: TestEnv) {
    let app = env.spawn().await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    let ready = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["checks"]["store"]["status"], "up");
    assert_eq!(ready.body["checks"]["bus"]["status"], "up");

    // Generate some traffic, then read the metrics.
    app.call(Method::GET, "/api/v1/cluster", None, None).await;
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("lookout_build_info"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("http_requests_total"));
    assert!(metrics.text.contains("route=\"/api/v1/cluster\""));
    assert!(
        metrics
            .text
            .contains("http_request_duration_seconds_bucket")
    );

    let openapi = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi.body["paths"]["/api/v1/cluster"]["get"].is_object());
    assert!(openapi.body["paths"]["/api/v1/tokens/revoke"]["post"].is_object());
    assert!(openapi.body["components"]["securitySchemes"]["bearer"].is_object());
}

async fn unknown_routes_and_methods_are_problems(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    app.call(Method::GET, "/nope", None, None)
        .await
        .assert_problem(404, "not_found");
    app.get("/api/v1/nope", &admin)
        .await
        .assert_problem(404, "not_found");
    app.call(Method::DELETE, "/api/v1/cluster", Some(&admin), None)
        .await
        .assert_problem(405, "method_not_allowed");
}

async fn every_response_has_a_request_id(env: TestEnv) {
    let app = env.spawn().await;
    let generated = app.call(Method::GET, "/healthz", None, None).await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    let given = app
        .request(Method::GET, "/nope", None)
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(
        given.headers()["x-request-id"],
        "abc-123",
        "a caller's id is kept"
    );
}

async fn bad_bodies_get_their_documented_status(env: TestEnv) {
    let app = env.spawn_with(|c| c.server.body_limit_bytes = 2048).await;
    let admin = env.admin();
    let send = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/api/v1/tokens/revoke", Some(&admin))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let malformed =
        crate::common::Response::read(send("{\"jti\":", "application/json").await.unwrap()).await;
    malformed.assert_problem(400, "bad_request");
    assert!(
        malformed.body["detail"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );

    let wrong_shape =
        crate::common::Response::read(send("{\"jti\": 5}", "application/json").await.unwrap())
            .await;
    wrong_shape.assert_problem(422, "validation");
    assert_eq!(wrong_shape.body["errors"][0]["field"], "jti");

    let missing =
        crate::common::Response::read(send("{}", "application/json").await.unwrap()).await;
    missing.assert_problem(422, "validation");
    assert_eq!(missing.body["errors"][0]["field"], "jti");

    let text = crate::common::Response::read(send("jti", "text/plain").await.unwrap()).await;
    text.assert_problem(415, "unsupported_media_type");

    let big = format!("{{\"jti\":\"{}\"}}", "x".repeat(4096));
    let too_large = app
        .post(
            "/api/v1/tokens/revoke",
            &admin,
            serde_json::from_str(&big).unwrap(),
        )
        .await;
    too_large.assert_problem(413, "payload_too_large");

    let empty_jti = app
        .post("/api/v1/tokens/revoke", &admin, json!({"jti": " "}))
        .await;
    empty_jti.assert_problem(422, "validation");
}

async fn auth_refuses_bad_tokens_with_problems(env: TestEnv) {
    let app = env.spawn().await;
    let config = env.config();

    app.call(Method::GET, "/api/v1/cluster", None, None)
        .await
        .assert_problem(401, "unauthorized");
    app.get("/api/v1/cluster", "not.a.token")
        .await
        .assert_problem(401, "unauthorized");

    let expired = token_for(&config, Role::Admin, "default", "a", Duration::ZERO);
    // Past the configured leeway.
    let mut claims = jsonwebtoken::decode::<serde_json::Value>(
        &expired,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &{
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            v.validate_exp = false;
            v
        },
    )
    .unwrap()
    .claims;
    claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let expired = sign_hs256(&claims, JWT_SECRET);
    app.get("/api/v1/cluster", &expired)
        .await
        .assert_problem(401, "token_expired");

    let valid_claims = json!({"sub": "a", "role": "admin", "tenant": "default",
                              "exp": chrono::Utc::now().timestamp() + 3600});
    let wrong_key = sign_hs256(&valid_claims, "another-secret-another-secret-another");
    let response = app.get("/api/v1/cluster", &wrong_key).await;
    response.assert_problem(401, "unauthorized");
    assert!(
        response.body["detail"]
            .as_str()
            .unwrap()
            .contains("signature")
    );

    // alg: none — header {"alg":"none"}, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid_claims)
    );
    app.get("/api/v1/cluster", &none)
        .await
        .assert_problem(401, "unauthorized");

    // Algorithm confusion: an HS384 token when the server uses HS256.
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &valid_claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let response = app.get("/api/v1/cluster", &hs384).await;
    response.assert_problem(401, "unauthorized");
    assert!(
        response.body["detail"]
            .as_str()
            .unwrap()
            .contains("not accepted")
    );

    let unknown_role = sign_hs256(
        &json!({"sub": "a", "role": "root", "exp": chrono::Utc::now().timestamp() + 60}),
        JWT_SECRET,
    );
    app.get("/api/v1/cluster", &unknown_role)
        .await
        .assert_problem(401, "unauthorized");

    // Wrong role: an agent may not read, a viewer may not revoke.
    let agent = env.token(Role::Agent, "default", "agent-1");
    app.get("/api/v1/cluster", &agent)
        .await
        .assert_problem(403, "forbidden");
    let viewer = env.token(Role::Viewer, "default", "v");
    app.post("/api/v1/tokens/revoke", &viewer, json!({"jti": "x"}))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(app.get("/api/v1/cluster", &viewer).await.status, 200);
}

fn b64(value: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_hs256(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn a_revoked_token_is_refused(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    let victim = env.token(Role::Operator, "default", "mallory");
    assert_eq!(app.get("/api/v1/cluster", &victim).await.status, 200);
    let jti = jti_of(&victim);
    let revoked = app
        .post("/api/v1/tokens/revoke", &admin, json!({"jti": jti}))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    app.get("/api/v1/cluster", &victim)
        .await
        .assert_problem(401, "token_revoked");
    // Revocation is per tenant: another tenant's token that happens to carry the same jti
    // still works.
    let same_jti_other_tenant = sign_hs256(
        &json!({"sub": "x", "role": "viewer", "tenant": "other", "jti": jti,
                "exp": chrono::Utc::now().timestamp() + 600}),
        JWT_SECRET,
    );
    assert_eq!(
        app.get("/api/v1/cluster", &same_jti_other_tenant)
            .await
            .status,
        200
    );
}

pub fn jti_of(token: &str) -> String {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap();
    data.claims["jti"].as_str().unwrap().to_string()
}

async fn idempotency_keys_replay_the_first_answer(env: TestEnv) {
    let app = env.spawn().await;
    let admin = env.admin();
    let send = |body: serde_json::Value, key: &'static str| {
        let request = app
            .request(Method::POST, "/api/v1/tokens/revoke", Some(&admin))
            .header("Idempotency-Key", key)
            .json(&body);
        async move { crate::common::Response::read(request.send().await.unwrap()).await }
    };
    let first = send(json!({"jti": "j1"}), "k-1").await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let replay = send(json!({"jti": "j1"}), "k-1").await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body, first.body, "the first answer, byte for byte");
    send(json!({"jti": "j2"}), "k-1")
        .await
        .assert_problem(422, "idempotency_key_reused");
    // Client errors are answers too, and are replayed (only a 5xx frees the key).
    send(json!({"jti": ""}), "k-2")
        .await
        .assert_problem(422, "validation");
    let replayed_error = send(json!({"jti": ""}), "k-2").await;
    assert_eq!(
        replayed_error.headers["idempotent-replayed"], "true",
        "4xx answers are kept too"
    );
    // Keys belong to their caller.
    let other_admin = env.token(Role::Admin, "default", "someone-else");
    let other = app
        .request(Method::POST, "/api/v1/tokens/revoke", Some(&other_admin))
        .header("Idempotency-Key", "k-1")
        .json(&json!({"jti": "j9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("idempotent-replayed").is_none());
}

async fn cors_follows_cors_origin(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.server.cors_origin = "https://dash.example".into())
        .await;
    let preflight = app
        .request(Method::OPTIONS, "/api/v1/cluster", None)
        .header("Origin", "https://dash.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
    let foreign = app
        .request(Method::OPTIONS, "/api/v1/cluster", None)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

async fn cluster_view_lists_this_replica_and_leases(env: TestEnv) {
    let app = env.spawn().await;
    let viewer = env.token(Role::Viewer, "default", "v");
    let view = app.get("/api/v1/cluster", &viewer).await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["replica"], app.replica_id());
    let replicas = view.body["replicas"].as_array().unwrap();
    assert!(replicas.iter().any(|r| r["id"] == app.replica_id()));
    let leases = view.body["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 3);
    // The maintenance work takes its lease at start-up.
    crate::common::eventually(Duration::from_secs(5), "maintenance lease held", || async {
        let view = app.get("/api/v1/cluster", &viewer).await;
        view.body["leases"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == "maintenance" && l["holder"] == app.replica_id())
            .map(|_| ())
    })
    .await;
}

async fn the_dashboard_is_served_with_a_strict_policy(env: TestEnv) {
    let app = env.spawn().await;
    let index = app.call(Method::GET, "/", None, None).await;
    assert_eq!(index.status, 200);
    assert!(index.content_type().starts_with("text/html"));
    assert!(index.text.contains("/assets/app.js"));
    let csp = index.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let script = app.call(Method::GET, "/assets/app.js", None, None).await;
    assert_eq!(script.status, 200);
    assert!(script.content_type().starts_with("text/javascript"));
    assert!(
        !script.text.contains("innerHTML"),
        "server data is only inserted as text"
    );
    app.call(Method::GET, "/assets/nope.js", None, None)
        .await
        .assert_problem(404, "not_found");
}

async fn graceful_stop_finishes_cleanly(env: TestEnv) {
    let app = env.spawn().await;
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    app.stop().await;
}

both_modes!(
    operations_endpoints_answer,
    unknown_routes_and_methods_are_problems,
    every_response_has_a_request_id,
    bad_bodies_get_their_documented_status,
    auth_refuses_bad_tokens_with_problems,
    a_revoked_token_is_refused,
    idempotency_keys_replay_the_first_answer,
    cors_follows_cors_origin,
    cluster_view_lists_this_replica_and_leases,
    the_dashboard_is_served_with_a_strict_policy,
    graceful_stop_finishes_cleanly,
);
