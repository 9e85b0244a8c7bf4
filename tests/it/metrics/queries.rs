//! Every read route returns what was ingested; bad parameters are problems.

use super::{base_ms, metric, post_batch, tokens};
use crate::both_modes;
use crate::common::{TestApp, TestEnv};
use serde_json::{Value, json};

/// Two counters (one restarts) and a gauge, one sample every 10 s over two minutes.
async fn ingest_fixture(app: &TestApp, agent: &str, base: i64) {
    let mut metrics = Vec::new();
    // queue a: 0, 10, 20, ... 110 ; queue b: 100, 105, ..., restarts to 0 at 60 s.
    for i in 0..12i64 {
        let ts = base + i * 10_000;
        metrics.push(metric(
            "requests_total",
            &[("queue", "a"), ("host", "h1")],
            (i * 10) as f64,
            ts,
        ));
        let b = if i < 6 { 100 + i * 5 } else { (i - 6) * 2 };
        metrics.push(metric(
            "requests_total",
            &[("queue", "b"), ("host", "h1")],
            b as f64,
            ts,
        ));
        metrics.push(metric("queue_size", &[("queue", "a")], (i + 1) as f64, ts));
    }
    let stored = post_batch(app, agent, json!({ "metrics": metrics })).await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(stored.body["accepted"], 36, "{}", stored.text);
}

fn points(group: &Value) -> Vec<f64> {
    group["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect()
}

async fn every_query_returns_what_was_ingested(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    let base = base_ms();
    ingest_fixture(&app, &t.agent, base).await;
    let (from, to) = (base, base + 120_000);
    let get = |path: String| {
        let app = &app;
        let token = t.viewer.clone();
        async move {
            let response = app.get(&path, &token).await;
            assert_eq!(response.status, 200, "{path}: {}", response.text);
            response.body
        }
    };

    // Raw samples with matchers, paged.
    let page = get(format!(
        "/api/v1/metrics?name=requests_total&match=queue=b&from={from}&to={to}&limit=5"
    ))
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert_eq!(page["items"][0]["labels"]["queue"], "b");
    assert_eq!(page["items"][0]["value"], 100.0);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = get(format!(
        "/api/v1/metrics?name=requests_total&match=queue=b&from={from}&to={to}&limit=100&cursor={cursor}"
    ))
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 7);
    assert!(rest["next_cursor"].is_null());
    for (matcher, expected) in [
        ("match=queue!=a", 12),
        ("match=queue=~a|b", 24),
        ("match=queue!~a", 12),
        ("match=host=h1&match=queue=a", 12),
        ("match=queue=~c.*", 0),
    ] {
        let found = get(format!(
            "/api/v1/metrics?name=requests_total&{matcher}&from={from}&to={to}&limit=1000"
        ))
        .await;
        assert_eq!(
            found["items"].as_array().unwrap().len(),
            expected,
            "{matcher}"
        );
    }

    // increase and rate across the reset of queue b, per queue.
    let increase = get(format!(
        "/api/v1/metrics/aggregated?name=requests_total&fn=increase&step=60s&by=queue&from={from}&to={to}"
    ))
    .await;
    let groups = increase["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["labels"], json!({"queue": "a"}));
    // a: +50 in the first minute (0→50), +60 in the second (50→110).
    assert_eq!(points(&groups[0]), vec![50.0, 60.0]);
    // b: 100→125 (+25); then reset to 0 (+0), 2, 4, ... 10 (+10).
    assert_eq!(points(&groups[1]), vec![25.0, 10.0]);
    let rate = get(format!(
        "/api/v1/metrics/aggregated?name=requests_total&fn=rate&step=1m&match=queue=b&from={from}&to={to}"
    ))
    .await;
    let rates = points(&rate["groups"][0]);
    assert!(
        (rates[0] - 25.0 / 60.0).abs() < 1e-9 && (rates[1] - 10.0 / 60.0).abs() < 1e-9,
        "{rates:?}"
    );
    // Without `by`, one group sums every series.
    let total = get(format!(
        "/api/v1/metrics/aggregated?name=requests_total&fn=increase&step=120s&from={from}&to={to}"
    ))
    .await;
    assert_eq!(points(&total["groups"][0]), vec![145.0]);

    // Gauge functions: values 1..=6 in the first minute, 7..=12 in the second.
    for (func, expected) in [
        ("avg", vec![3.5, 9.5]),
        ("min", vec![1.0, 7.0]),
        ("max", vec![6.0, 12.0]),
        ("sum", vec![21.0, 57.0]),
        ("count", vec![6.0, 6.0]),
        ("p95", vec![6.0, 12.0]),
    ] {
        let body = get(format!(
            "/api/v1/metrics/aggregated?name=queue_size&fn={func}&step=60&from={from}&to={to}"
        ))
        .await;
        assert_eq!(points(&body["groups"][0]), expected, "{func}");
    }

    let history = get(format!(
        "/api/v1/metrics/history/requests_total?from={from}&to={to}"
    ))
    .await;
    let series = history["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["samples"].as_array().unwrap().len(), 12);
    assert_eq!(history["truncated"], false);
    let cut = get(format!(
        "/api/v1/metrics/history/requests_total?from={from}&to={to}&limit=5"
    ))
    .await;
    assert_eq!(cut["truncated"], true);

    let names = get("/api/v1/metrics/names".into()).await;
    assert_eq!(
        names["items"],
        json!([{"name": "queue_size", "series": 1}, {"name": "requests_total", "series": 2}])
    );
    let found = get("/api/v1/metrics/search?q=QUEUE".into()).await;
    assert_eq!(found["items"], json!([{"name": "queue_size", "series": 1}]));
    let none = get("/api/v1/metrics/search?q=%25".into()).await;
    assert_eq!(none["items"], json!([]), "LIKE wildcards are literal");

    let stats = get("/api/v1/metrics/stats".into()).await;
    assert_eq!(stats["series"], 3);
    assert_eq!(stats["active_series"], 3);
    assert_eq!(stats["names"], 2);
    assert_eq!(stats["samples"], 36);
    assert!(stats["ingest_rate_per_sec"].as_f64().unwrap() > 0.0);

    // Realtime: only what is recent (the fixture is half an hour old).
    let now = chrono::Utc::now().timestamp_millis();
    let fresh = post_batch(
        &app,
        &t.agent,
        json!({"metrics": [metric("queue_size", &[("queue", "a")], 42.0, now)]}),
    )
    .await;
    assert_eq!(fresh.status, 200);
    let live = get("/api/v1/metrics/realtime?name=queue_size".into()).await;
    assert_eq!(
        live["series"][0]["samples"],
        json!([{"timestamp": live["series"][0]["samples"][0]["timestamp"], "value": 42.0}])
    );

    // Export, both formats.
    let csv = app
        .get(
            &format!("/api/v1/metrics/export?format=csv&name=requests_total&from={from}&to={to}"),
            &t.viewer,
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "name,labels,timestamp,value");
    assert_eq!(lines.len(), 25);
    assert!(
        lines[1]
            .starts_with("requests_total,\"{\"\"host\"\":\"\"h1\"\",\"\"queue\"\":\"\"a\"\"}\","),
        "{}",
        lines[1]
    );
    let json_export = get(format!(
        "/api/v1/metrics/export?format=json&from={from}&to={to}"
    ))
    .await;
    assert_eq!(json_export.as_array().unwrap().len(), 36);

    // Another tenant sees nothing of it.
    let other = tokens(&env, "other");
    let theirs = app.get("/api/v1/metrics/names", &other.viewer).await;
    assert_eq!(theirs.body["items"], json!([]));
    let theirs = app
        .get(
            &format!("/api/v1/metrics?name=requests_total&from={from}&to={to}"),
            &other.viewer,
        )
        .await;
    assert_eq!(theirs.body["items"], json!([]));
}

async fn bad_query_parameters_are_problems(env: TestEnv) {
    let app = env.spawn().await;
    let t = tokens(&env, "acme");
    for (path, status, code) in [
        ("/api/v1/metrics?nmae=x", 400, "bad_request"),
        ("/api/v1/metrics?name=bad.name", 422, "validation"),
        ("/api/v1/metrics?match=queue", 422, "validation"),
        ("/api/v1/metrics?match=queue=~(", 422, "validation"),
        ("/api/v1/metrics?from=yesterday", 422, "validation"),
        (
            "/api/v1/metrics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            422,
            "validation",
        ),
        ("/api/v1/metrics?limit=0", 422, "validation"),
        ("/api/v1/metrics?limit=5000", 422, "validation"),
        ("/api/v1/metrics?cursor=garbage", 422, "validation"),
        ("/api/v1/metrics?name=a&name=b", 422, "validation"),
        ("/api/v1/metrics/aggregated", 422, "validation"),
        (
            "/api/v1/metrics/aggregated?name=x&fn=median",
            422,
            "validation",
        ),
        (
            "/api/v1/metrics/aggregated?name=x&step=0s",
            422,
            "validation",
        ),
        (
            "/api/v1/metrics/aggregated?name=x&step=soon",
            422,
            "validation",
        ),
        (
            "/api/v1/metrics/aggregated?name=x&by=bad-label",
            422,
            "validation",
        ),
        (
            "/api/v1/metrics/aggregated?name=x&step=1s&from=0&to=86400000",
            422,
            "query_too_large",
        ),
        ("/api/v1/metrics/history/bad.name", 422, "validation"),
        ("/api/v1/metrics/search", 422, "validation"),
        ("/api/v1/metrics/export?format=xml", 422, "validation"),
        ("/api/v1/metrics/stats?x=1", 200, ""),
    ] {
        let response = app.get(path, &t.viewer).await;
        if status == 200 {
            assert_eq!(response.status, 200, "{path}: {}", response.text);
        } else {
            response.assert_problem(status, code);
        }
    }
    // Agents may ingest, not read.
    app.get("/api/v1/metrics/names", &t.agent)
        .await
        .assert_problem(403, "forbidden");
}

async fn queries_are_bounded(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.metrics.max_query_series = 2;
            c.metrics.max_query_samples = 12;
        })
        .await;
    let t = tokens(&env, "acme");
    let base = base_ms();
    let metrics: Vec<_> = (0..12)
        .flat_map(|i| {
            ["a", "b", "c"]
                .map(|q| metric("queue_size", &[("queue", q)], i as f64, base + i * 1000))
        })
        .collect();
    assert_eq!(
        post_batch(&app, &t.agent, json!({ "metrics": metrics }))
            .await
            .status,
        200
    );
    let from = base;
    app.get(
        &format!("/api/v1/metrics?name=queue_size&from={from}"),
        &t.viewer,
    )
    .await
    .assert_problem(422, "query_too_large");
    app.get(
        &format!("/api/v1/metrics/aggregated?name=queue_size&match=queue=~a|b&from={from}"),
        &t.viewer,
    )
    .await
    .assert_problem(422, "query_too_large");
    let one = app
        .get(
            &format!("/api/v1/metrics/aggregated?name=queue_size&match=queue=a&fn=count&step=1h&from={from}"),
            &t.viewer,
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
}

both_modes!(
    every_query_returns_what_was_ingested,
    bad_query_parameters_are_problems,
    queries_are_bounded,
);
