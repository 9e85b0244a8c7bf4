//! Rules, alerts and their actions over REST, with the `alert:*` events they publish.

use super::support::*;
use crate::both_modes;
use crate::common::TestEnv;
use chrono::{Duration as ChronoDuration, Utc};
use lookout::auth::Role;
use reqwest::Method;
use serde_json::json;

both_modes!(
    rules_crud_with_defaults_roles_and_validation,
    acknowledge_snooze_resolve_delete_over_rest_and_as_events,
    alert_lists_filter_and_page_and_analytics_count,
);

async fn rules_crud_with_defaults_roles_and_validation(env: TestEnv) {
    let app = quiet_replica(&env).await;
    let admin = env.admin();
    let viewer = env.token(Role::Viewer, "default", "vera");

    // The default rules exist on first visit, and are disableable.
    let list = app.get("/api/v1/rules", &viewer).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Critical queue depth",
            "High bounce rate",
            "Low delivery rate",
            "System health degraded"
        ]
    );
    let first = list.body["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list.body["items"][0]["is_default"], true);
    let patched = app
        .call(
            Method::PATCH,
            &format!("/api/v1/rules/{first}"),
            Some(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["version"], 2);

    // Roles: viewers read, admins write.
    app.post(
        "/api/v1/rules",
        &viewer,
        threshold_rule("m", 1.0, "0s", "10s"),
    )
    .await
    .assert_problem(403, "forbidden");
    let operator = env.token(Role::Operator, "default", "olga");
    app.post(
        "/api/v1/rules",
        &operator,
        threshold_rule("m", 1.0, "0s", "10s"),
    )
    .await
    .assert_problem(403, "forbidden");

    // The seeds' shapes are accepted.
    let seed = app
        .post(
            "/api/v1/rules",
            &admin,
            json!({"name": "Deep", "condition": {"type": "queue_depth", "operator": ">", "threshold": 5000},
                   "throttle": {"period": 300000, "maxAlerts": 3}, "channels": ["email"]}),
        )
        .await;
    assert_eq!(seed.status, 201, "{}", seed.text);
    assert_eq!(seed.body["throttle"]["period"], "5m");
    assert_eq!(seed.body["condition"]["group_by"], json!(["queue"]));
    let id = seed.body["id"].as_str().unwrap().to_string();
    let metric = app
        .post(
            "/api/v1/rules",
            &admin,
            json!({"name": "Memory", "condition": {"metric": "system.memory.usedPercent", "operator": "greaterThan", "value": 85, "duration": 300}}),
        )
        .await;
    assert_eq!(metric.status, 201, "{}", metric.text);
    assert_eq!(metric.body["for"], "5m");

    // Validation names the fields.
    let bad = app
        .post(
            "/api/v1/rules",
            &admin,
            json!({"name": "", "condition": {"type": "queue_depth", "operator": ">", "threshold": 1}, "evaluation_interval": "100ms"}),
        )
        .await;
    bad.assert_problem(422, "validation");
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "evaluation_interval"]);
    app.post("/api/v1/rules", &admin, json!({"name": "x", "condition": {"type": "queue_depth", "operator": ">", "threshold": "high"}}))
        .await
        .assert_problem(422, "validation");
    let malformed = app
        .request(Method::POST, "/api/v1/rules", Some(&admin))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    // Read, replace, delete; another tenant sees none of it.
    let got = app.get(&format!("/api/v1/rules/{id}"), &viewer).await;
    assert_eq!(got.body["name"], "Deep");
    let replaced = app
        .call(
            Method::PUT,
            &format!("/api/v1/rules/{id}"),
            Some(&admin),
            Some(threshold_rule("depth", 10.0, "1m", "10s")),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["for"], "1m");
    let other = env.token(Role::Admin, "acme", "eve");
    app.get(&format!("/api/v1/rules/{id}"), &other)
        .await
        .assert_problem(404, "not_found");
    app.call(
        Method::DELETE,
        &format!("/api/v1/rules/{id}"),
        Some(&other),
        None,
    )
    .await
    .assert_problem(404, "not_found");
    app.get("/api/v1/rules/not-a-uuid", &viewer)
        .await
        .assert_problem(404, "not_found");
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/rules/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    app.get(&format!("/api/v1/rules/{id}"), &viewer)
        .await
        .assert_problem(404, "not_found");

    // Paging.
    let page = app.get("/api/v1/rules?limit=2", &viewer).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = app
        .get(&format!("/api/v1/rules?limit=2&cursor={cursor}"), &viewer)
        .await;
    assert_eq!(next.body["items"].as_array().unwrap().len(), 2);
    app.get("/api/v1/rules?limit=0", &viewer)
        .await
        .assert_problem(422, "validation");

    // The OpenAPI description has the routes.
    let openapi = app.call(Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/api/v1/rules",
        "/api/v1/alerts/{id}/acknowledge",
        "/api/v1/silences",
        "/api/v1/alerts/analytics",
    ] {
        assert!(openapi.body["paths"].get(path).is_some(), "{path} missing");
    }
}

/// Fires one alert per queue of `queues` with a test-driven engine; returns their ids.
async fn fire(app: &crate::common::TestApp, env: &TestEnv, queues: &[&str]) -> Vec<String> {
    create_rule(app, env, threshold_rule("depth", 100.0, "0s", "1s")).await;
    let now = Utc::now() - ChronoDuration::seconds(30);
    for q in queues {
        sample(app, "depth", &[("queue", q)], 500.0, now).await;
    }
    let report = engine(app, 1).tick(now).await.unwrap();
    assert_eq!(report.transitions, queues.len(), "{report:?}");
    let list = app.get("/api/v1/alerts?state=firing", &env.admin()).await;
    let mut items: Vec<(String, String)> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["queue"].as_str().unwrap().to_string(),
                a["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, id)| id).collect()
}

async fn acknowledge_snooze_resolve_delete_over_rest_and_as_events(env: TestEnv) {
    let app = quiet_replica(&env).await;
    let ids = fire(&app, &env, &["a", "b"]).await;
    let (a, b) = (&ids[0], &ids[1]);
    let mut events = alerts_subscription(&app);
    let viewer = env.token(Role::Viewer, "default", "vera");
    let operator = env.token(Role::Operator, "default", "olga");
    // A dashboard on the replica's `/ws` sees the same events.
    let (mut dashboard, _) = crate::realtime::client::Ws::open(&app, &viewer).await;
    dashboard.subscribe(&["alerts"], json!({})).await;

    app.post(
        &format!("/api/v1/alerts/{a}/acknowledge"),
        &viewer,
        json!({}),
    )
    .await
    .assert_problem(403, "forbidden");
    let acked = app
        .post(
            &format!("/api/v1/alerts/{a}/acknowledge"),
            &operator,
            json!({"comment": "looking"}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.text);
    assert_eq!(acked.body["acknowledged"], true);
    assert_eq!(acked.body["acknowledged_by"], "olga");
    assert_eq!(acked.body["ack_comment"], "looking");
    let (name, data) = next_alert_event(&mut events).await;
    assert_eq!(
        (name.as_str(), &data["id"]),
        ("alert:acknowledged", &json!(a))
    );
    let frame = dashboard.expect("event").await;
    assert_eq!(
        (&frame["topic"], &frame["event"], &frame["data"]["id"]),
        (&json!("alerts"), &json!("alert:acknowledged"), &json!(a)),
        "{frame}"
    );
    assert_eq!(frame["data"]["acknowledged_by"], "olga", "{frame}");
    // Acknowledged: a firing notification is held back at send time.
    let gate = lookout::rules::gate::check(
        &app.state.store,
        "default",
        a.parse().unwrap(),
        "firing",
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        gate,
        lookout::rules::gate::Gate::Suppress {
            reason: "acknowledged by olga".into()
        }
    );
    // Without a body too.
    let bare = app
        .request(
            Method::POST,
            &format!("/api/v1/alerts/{b}/acknowledge"),
            Some(&operator),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 200);
    let _ = next_alert_event(&mut events).await;

    // Snooze: for a duration, or until a time; bad input is a 422.
    let snoozed = app
        .post(
            &format!("/api/v1/alerts/{b}/snooze"),
            &operator,
            json!({"duration": "1h"}),
        )
        .await;
    assert_eq!(snoozed.status, 200, "{}", snoozed.text);
    assert!(snoozed.body["snoozed_until"].is_string());
    let (name, _) = next_alert_event(&mut events).await;
    assert_eq!(name, "alert:snoozed");
    app.post(&format!("/api/v1/alerts/{b}/snooze"), &operator, json!({}))
        .await
        .assert_problem(422, "validation");
    app.post(
        &format!("/api/v1/alerts/{b}/snooze"),
        &operator,
        json!({"until": "2001-01-01T00:00:00Z"}),
    )
    .await
    .assert_problem(422, "validation");
    app.post(
        &format!("/api/v1/alerts/{b}/snooze"),
        &operator,
        json!({"duration": "31days"}),
    )
    .await
    .assert_problem(422, "validation");

    // Resolve by hand: acknowledgement cleared; a second resolve is a conflict.
    let resolved = app
        .post(&format!("/api/v1/alerts/{a}/resolve"), &operator, json!({}))
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(resolved.body["state"], "resolved");
    assert_eq!(resolved.body["acknowledged"], false);
    let (name, _) = next_alert_event(&mut events).await;
    assert_eq!(name, "alert:resolved");
    app.post(&format!("/api/v1/alerts/{a}/resolve"), &operator, json!({}))
        .await
        .assert_problem(409, "conflict");
    app.post(
        &format!("/api/v1/alerts/{a}/acknowledge"),
        &operator,
        json!({}),
    )
    .await
    .assert_problem(409, "conflict");

    let timeline = app
        .get(&format!("/api/v1/alerts/{a}/events"), &viewer)
        .await;
    // The transitions and people's actions (notify's delivery entries are its tests').
    let entries: Vec<(String, Option<String>)> = timeline
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["kind"].as_str().unwrap().starts_with("notification_"))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("firing".to_string(), None),
            ("acknowledged".to_string(), Some("olga".to_string())),
            ("resolved_by_hand".to_string(), Some("olga".to_string())),
        ]
    );

    // Delete: admin only; gone afterwards, for every tenant.
    app.call(
        Method::DELETE,
        &format!("/api/v1/alerts/{b}"),
        Some(&operator),
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/alerts/{b}"),
            Some(&env.admin()),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    let (name, data) = next_alert_event(&mut events).await;
    assert_eq!(
        (name.as_str(), data["state"].as_str()),
        ("alert:updated", Some("deleted"))
    );
    app.get(&format!("/api/v1/alerts/{b}"), &viewer)
        .await
        .assert_problem(404, "not_found");
    let stranger = env.token(Role::Operator, "acme", "eve");
    app.post(
        &format!("/api/v1/alerts/{a}/acknowledge"),
        &stranger,
        json!({}),
    )
    .await
    .assert_problem(404, "not_found");
}

async fn alert_lists_filter_and_page_and_analytics_count(env: TestEnv) {
    let app = quiet_replica(&env).await;
    let ids = fire(&app, &env, &["gmail.com", "yahoo.com", "outlook.com"]).await;
    let viewer = env.token(Role::Viewer, "default", "vera");
    let operator = env.token(Role::Operator, "default", "olga");
    app.post(
        &format!("/api/v1/alerts/{}/acknowledge", ids[0]),
        &operator,
        json!({}),
    )
    .await;
    app.post(
        &format!("/api/v1/alerts/{}/resolve", ids[1]),
        &operator,
        json!({}),
    )
    .await;

    let ids_of = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = app.get("/api/v1/alerts", &viewer).await;
    assert_eq!(ids_of(&all.body).len(), 3);
    let firing = app
        .get("/api/v1/alerts?state=firing&severity=critical", &viewer)
        .await;
    assert_eq!(ids_of(&firing.body).len(), 2);
    let acked = app.get("/api/v1/alerts?acknowledged=true", &viewer).await;
    assert_eq!(ids_of(&acked.body), [ids[0].clone()]);
    let gmail = app
        .get("/api/v1/alerts?labels=queue%3D~gmail.*", &viewer)
        .await;
    assert_eq!(gmail.body["items"][0]["labels"]["queue"], "gmail.com");
    assert_eq!(ids_of(&gmail.body).len(), 1);
    let none = app
        .get("/api/v1/alerts?from=2100-01-01T00:00:00Z", &viewer)
        .await;
    assert!(ids_of(&none.body).is_empty());
    app.get("/api/v1/alerts?state=weird", &viewer)
        .await
        .assert_problem(422, "validation");
    app.get("/api/v1/alerts?labels=%3D%3D", &viewer)
        .await
        .assert_problem(422, "validation");
    app.get("/api/v1/alerts?cursor=zzz", &viewer)
        .await
        .assert_problem(422, "validation");

    // Paging newest first, across all three.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/alerts?limit=2&cursor={c}"),
            None => "/api/v1/alerts?limit=2".to_string(),
        };
        let page = app.get(&path, &viewer).await;
        seen.extend(ids_of(&page.body));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 3);

    let analytics = app.get("/api/v1/alerts/analytics", &viewer).await;
    assert_eq!(analytics.status, 200, "{}", analytics.text);
    assert_eq!(analytics.body["fired"], 3);
    assert_eq!(analytics.body["by_severity"]["critical"], 3);
    assert_eq!(analytics.body["by_rule"][0]["fired"], 3);
    assert!(analytics.body["mtta_seconds"].is_number());
    assert!(analytics.body["mttr_seconds"].is_number());
    assert_eq!(analytics.body["resolved_without_ack_share"], 1.0);
    app.get(
        "/api/v1/alerts/analytics?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        &viewer,
    )
    .await
    .assert_problem(422, "validation");

    let counts = lookout::rules::alert_counts(&app.state, "default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.get("critical"), Some(&2));
    assert!(
        lookout::rules::alert_counts(&app.state, "acme")
            .await
            .unwrap()
            .is_none()
    );
}
