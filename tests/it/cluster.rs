//! Several replicas on one PostgreSQL and Redis: they see each other, share revocations
//! at once, hand leases over, and keep answering while Redis comes and goes.

use crate::cluster_only;
use crate::common::{TestEnv, eventually};
use crate::support::redis_server::RedisServer;
use lookout::auth::Role;
use lookout::config::Secret;
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Short enough that a killed replica leaves the registry quickly in tests.
fn fast_cluster(config: &mut lookout::config::Config) {
    config.cluster.lease_ttl = Duration::from_secs(2);
    config.cluster.lease_renew_interval = Duration::from_millis(500);
    config.cluster.heartbeat_interval = Duration::from_millis(500);
}

async fn replica_ids(app: &crate::common::TestApp, token: &str) -> Option<BTreeSet<String>> {
    let view = app.get("/api/v1/cluster", token).await;
    Some(
        view.body["replicas"]
            .as_array()?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect(),
    )
}

async fn three_replicas_list_each_other_and_forget_a_killed_one(env: TestEnv) {
    let a = env.spawn_with(fast_cluster).await;
    let b = env.spawn_with(fast_cluster).await;
    let c = env.spawn_with(fast_cluster).await;
    let viewer = env.token(Role::Viewer, "default", "v");
    let all: BTreeSet<String> = [a.replica_id(), b.replica_id(), c.replica_id()].into();
    for app in [&a, &b, &c] {
        eventually(Duration::from_secs(5), "every replica listed", || async {
            (replica_ids(app, &viewer).await? == all).then_some(())
        })
        .await;
    }
    let killed = c.replica_id();
    c.kill();
    eventually(
        Duration::from_secs(4),
        "the killed replica to drop out",
        || async {
            let ids = replica_ids(&a, &viewer).await?;
            (!ids.contains(&killed) && ids.len() == 2).then_some(())
        },
    )
    .await;
}

async fn a_revocation_holds_on_every_replica_at_once(env: TestEnv) {
    let a = env.spawn().await;
    let b = env.spawn().await;
    let c = env.spawn().await;
    let victim = env.token(Role::Viewer, "default", "mallory");
    for app in [&a, &b, &c] {
        assert_eq!(app.get("/api/v1/cluster", &victim).await.status, 200);
    }
    let jti = crate::api_edge::jti_of(&victim);
    let revoked = a
        .post("/api/v1/tokens/revoke", &env.admin(), json!({"jti": jti}))
        .await;
    assert_eq!(revoked.status, 200);
    // No waiting: the answer to the revocation means it holds everywhere.
    for app in [&b, &c, &a] {
        app.get("/api/v1/cluster", &victim)
            .await
            .assert_problem(401, "token_revoked");
    }
}

async fn a_stopped_replica_hands_its_leases_over_at_once(env: TestEnv) {
    let viewer = env.token(Role::Viewer, "default", "v");
    let a = env.spawn().await; // default TTL: 15 s
    let a_id = a.replica_id();
    eventually(Duration::from_secs(5), "a holds maintenance", || async {
        let view = a.get("/api/v1/cluster", &viewer).await;
        view.body["leases"]
            .as_array()?
            .iter()
            .any(|l| l["name"] == "maintenance" && l["holder"] == a_id.as_str())
            .then_some(())
    })
    .await;
    let b = env.spawn().await;
    let b_id = b.replica_id();
    let stopped_at = tokio::time::Instant::now();
    a.stop().await;
    eventually(
        Duration::from_secs(5),
        "b takes maintenance over",
        || async {
            let view = b.get("/api/v1/cluster", &viewer).await;
            view.body["leases"]
                .as_array()?
                .iter()
                .any(|l| l["name"] == "maintenance" && l["holder"] == b_id.as_str())
                .then_some(())
        },
    )
    .await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "released, not expired (TTL is 15 s)"
    );
}

async fn readiness_follows_redis_without_a_restart(env: TestEnv) {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let app = env
        .spawn_with(|c| c.redis.url = Some(Secret::new(url)))
        .await;
    let admin = env.admin();
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        200
    );

    redis.stop();
    let down = eventually(Duration::from_secs(10), "readyz 503", || async {
        let r = app.call(Method::GET, "/readyz", None, None).await;
        (r.status == 503).then_some(r)
    })
    .await;
    down.assert_problem(503, "unavailable");
    assert_eq!(down.body["checks"]["bus"]["status"], "down");
    assert_eq!(down.body["checks"]["store"]["status"], "up");
    assert!(down.headers.contains_key("retry-after"));
    // The API keeps answering from the database (auth falls back to it).
    let view = app.get("/api/v1/cluster", &admin).await;
    assert!(
        view.status == 503 || view.status == 200,
        "no hang, no 500: {}",
        view.text
    );

    redis.restart().await;
    eventually(Duration::from_secs(15), "readyz 200 again", || async {
        (app.call(Method::GET, "/readyz", None, None).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(app.get("/api/v1/cluster", &admin).await.status, 200);
}

cluster_only!(
    three_replicas_list_each_other_and_forget_a_killed_one,
    a_revocation_holds_on_every_replica_at_once,
    a_stopped_replica_hands_its_leases_over_at_once,
    readiness_follows_redis_without_a_restart,
);

/// The real binary: `lookout serve` with no settings answers `/readyz` within seconds and
/// exits 0 on SIGTERM.
#[tokio::test]
async fn the_binary_serves_embedded_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("lookout binary");
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually(
        Duration::from_secs(20),
        "readyz 200 from the binary",
        || async {
            let r = reqwest::get(&url).await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    assert!(
        dir.path().join("data/lookout.db").exists(),
        "SQLite under ./data"
    );
    let secret = dir.path().join("data/jwt-secret");
    assert!(secret.exists(), "a signing key was generated");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // A token made by the CLI works against the server.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["token", "issue", "--sub", "me", "--role", "viewer"])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let view = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/cluster"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 200);

    let pid = child.id().unwrap();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// `check-config` masks secrets and fails on invalid settings.
#[tokio::test]
async fn check_config_masks_secrets_and_rejects_bad_settings() {
    let run = |envs: Vec<(&'static str, &'static str)>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("check-config")
            .env_clear()
            .envs(envs)
            .output()
            .await
            .unwrap()
    };
    let ok = run(vec![(
        "JWT_SECRET",
        "a-very-long-secret-that-is-32-bytes-or-more",
    )])
    .await;
    assert!(ok.status.success());
    let printed = String::from_utf8(ok.stdout).unwrap();
    assert!(printed.contains("# mode: embedded"));
    assert!(!printed.contains("a-very-long-secret"));
    let bad = run(vec![("DATABASE_URL", "postgres://x@127.0.0.1/db")]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("REDIS_URL is required when DATABASE_URL is PostgreSQL")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
