//! Asymmetric keys: EdDSA with a public key file, RS256 with a JWKS (key chosen by
//! `kid`), and algorithm confusion (an HS256 token keyed with the public key) refused.
//! Also the per-caller rate limit. Embedded mode: none of this depends on the mode.

use crate::common::{Backend, TestEnv, token_for};
use lookout::auth::Role;
use lookout::config::JwtAlgorithm;
use std::path::PathBuf;
use std::time::Duration;

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn hs256_with(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims() -> serde_json::Value {
    serde_json::json!({"sub": "eve", "role": "admin", "tenant": "default",
                       "exp": chrono::Utc::now().timestamp() + 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_verify_and_confusion_is_refused() {
    let env = TestEnv::new(Backend::Embedded).await;
    let app = env
        .spawn_with(|c| {
            c.auth.algorithm = JwtAlgorithm::EdDSA;
            c.auth.jwt_secret = None;
            c.auth.public_key_file = Some(key("ed25519-public.pem"));
            c.auth.private_key_file = Some(key("ed25519-private.pem"));
        })
        .await;
    let good = token_for(
        &app.config,
        Role::Viewer,
        "default",
        "alice",
        Duration::from_secs(600),
    );
    assert_eq!(app.get("/api/v1/cluster", &good).await.status, 200);

    // The attacker knows the public key and signs HS256 with it as the secret.
    let public_pem = std::fs::read(key("ed25519-public.pem")).unwrap();
    let confused = hs256_with(&public_pem, &claims());
    let response = app.get("/api/v1/cluster", &confused).await;
    response.assert_problem(401, "unauthorized");
    assert!(
        response.body["detail"]
            .as_str()
            .unwrap()
            .contains("not accepted")
    );

    // A validly signed token of another asymmetric algorithm (RS256) is refused too.
    let mut other = app.config.clone();
    other.auth.algorithm = JwtAlgorithm::RS256;
    other.auth.private_key_file = Some(key("rsa-private.pem"));
    other.auth.public_key_file = Some(key("rsa-public.pem"));
    let rs = token_for(
        &other,
        Role::Viewer,
        "default",
        "alice",
        Duration::from_secs(600),
    );
    app.get("/api/v1/cluster", &rs)
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_verify_through_a_jwks_by_kid() {
    let env = TestEnv::new(Backend::Embedded).await;
    let app = env
        .spawn_with(|c| {
            c.auth.algorithm = JwtAlgorithm::RS256;
            c.auth.jwt_secret = None;
            c.auth.jwks_file = Some(key("jwks.json"));
        })
        .await;
    let private = std::fs::read(key("rsa-private.pem")).unwrap();
    let sign = |kid: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            &claims(),
            &jsonwebtoken::EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        app.get("/api/v1/cluster", &sign(Some("test-rsa-1")))
            .await
            .status,
        200
    );
    let unknown = app.get("/api/v1/cluster", &sign(Some("other"))).await;
    unknown.assert_problem(401, "unauthorized");
    assert!(unknown.body["detail"].as_str().unwrap().contains("kid"));
    app.get("/api/v1/cluster", &sign(None))
        .await
        .assert_problem(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_get_429_with_retry_after() {
    let env = TestEnv::new(Backend::Embedded).await;
    let app = env
        .spawn_with(|c| {
            c.server.rate_limit_per_sec = 2;
            c.server.rate_limit_burst = 5;
        })
        .await;
    let alice = env.token(Role::Viewer, "default", "alice");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/api/v1/cluster", &alice).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("some requests are limited");
    limited.assert_problem(429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert!(
        statuses.iter().filter(|r| r.status == 200).count() >= 5,
        "the burst passes"
    );
    let bob = env.token(Role::Viewer, "default", "bob");
    assert_eq!(
        app.get("/api/v1/cluster", &bob).await.status,
        200,
        "others are not affected"
    );
}
