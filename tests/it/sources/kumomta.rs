//! The KumoMTA poller against a kumod stand-in that changes the way a real node does.

use super::{create_source, events, queues_until, series_values};
use crate::both_modes;
use crate::common::{TestEnv, eventually};
use crate::support::kumod::{GMAIL, Kumod, MX, ReadyQueue};
use lookout::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;

fn queue<'a>(queues: &'a Value, name: &str) -> Option<&'a Value> {
    queues["items"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == name)
}

fn totals(queues: &Value) -> &Value {
    &queues["sources"][0]["totals"]
}

fn throughput(queues: &Value) -> &Value {
    &queues["sources"][0]["throughput"]
}

/// No rate in any `metrics:update` event or stored rate series is negative.
async fn assert_no_negative_rate(app: &crate::common::TestApp) {
    for update in events(app, "metrics", "metrics:update").await {
        // Ingest also announces each stored batch (generic series, no throughput).
        let Some(throughput) = update["throughput"].as_object() else {
            continue;
        };
        for (kind, rate) in throughput {
            if let Some(rate) = rate.as_f64() {
                assert!(rate >= 0.0, "negative {kind} rate in {update}");
            }
        }
    }
    for name in [
        "kumomta_delivered_rate",
        "kumomta_received_rate",
        "kumomta_bounced_rate",
    ] {
        for value in series_values(app, name, &[]).await {
            assert!(value >= 0.0, "negative {name}: {value}");
        }
    }
}

async fn queue_states_totals_and_rates_follow_the_node(env: TestEnv) {
    let kumod = Kumod::start().await;
    let app = env.spawn().await;
    let admin = env.admin();
    let viewer = env.token(Role::Viewer, "default", "v");
    create_source(
        &app,
        &admin,
        json!({"name": "node-1", "kind": "kumomta", "url": kumod.url(), "interval_ms": 500}),
    )
    .await;

    // The fixture node: four queues, totals from the aggregate series only.
    let first = queues_until(&app, &viewer, "the first poll", |q| {
        q["items"].as_array().is_some_and(|items| items.len() == 4)
    })
    .await;
    assert_eq!(
        totals(&first),
        &json!({"delivered": 1520.0, "bounced": 7.0, "deferred": 41.0, "received": 1600.0, "ready": 46.0, "scheduled": 242.0})
    );
    let gmail = queue(&first, GMAIL).expect("gmail ready queue");
    assert_eq!(
        (
            gmail["kind"].as_str(),
            gmail["size"].as_f64(),
            gmail["connection_count"].as_f64()
        ),
        (Some("ready"), Some(46.0), Some(5.0))
    );
    assert_eq!(gmail["throttles"][0]["name"], "connection_limited");
    assert!(
        gmail["suspended"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("postmaster"))
    );
    let campaign = queue(&first, "campaign_name:tenant_name@example.com").expect("scheduled queue");
    assert_eq!(
        (
            campaign["campaign"].as_str(),
            campaign["tenant"].as_str(),
            campaign["domain"].as_str()
        ),
        (
            Some("campaign_name"),
            Some("tenant_name"),
            Some("example.com")
        )
    );
    assert_eq!(
        first["sources"][0]["connection"],
        json!({"connected": true, "status": "ok"})
    );
    let added = events(&app, "queues", "queue:update").await;
    assert_eq!(added.iter().filter(|e| e["change"] == "added").count(), 4);
    assert_eq!(
        series_values(&app, "kumomta_delivered_total", &[("source", "node-1")])
            .await
            .first(),
        Some(&1520.0)
    );

    // Counters grow: totals follow, the rate is positive.
    kumod.change(|node| node.deliver(GMAIL, 300));
    let grown = queues_until(&app, &viewer, "the delivered total to grow", |q| {
        totals(q)["delivered"] == 1820.0
            && throughput(q)["delivered_per_s"]
                .as_f64()
                .is_some_and(|r| r > 0.0)
    })
    .await;
    assert_eq!(totals(&grown)["received"], 1900.0);

    // A ready queue goes idle: its series vanish, it is reported pruned (empty) and gone.
    kumod.change(|node| {
        node.ready_queues.remove(MX);
    });
    queues_until(&app, &viewer, "the idle queue to go", |q| {
        queue(q, MX).is_none()
    })
    .await;
    let pruned: Vec<Value> = events(&app, "queues", "queue:update")
        .await
        .into_iter()
        .filter(|e| e["queue"] == MX && e["change"] == "pruned")
        .collect();
    assert_eq!(pruned.len(), 1, "one pruned event for the idle queue");
    assert_eq!(pruned[0]["size"], 0.0);
    eventually(
        Duration::from_secs(5),
        "the vanished counter stored as 0",
        || async {
            let values =
                series_values(&app, "kumomta_queue_delivered_total", &[("queue", MX)]).await;
            (values.last() == Some(&0.0)).then_some(())
        },
    )
    .await;

    // …and comes back from zero.
    kumod.change(|node| {
        node.ready_queues.insert(
            MX.into(),
            ReadyQueue {
                delivered: Some(3),
                ..ReadyQueue::default()
            },
        );
    });
    let back = queues_until(&app, &viewer, "the queue to come back", |q| {
        queue(q, MX).is_some_and(|mx| mx["delivered"] == 3.0)
    })
    .await;
    assert_eq!(totals(&back)["delivered"], 1820.0);

    // kumod restarts: every counter from zero. Totals drop, rates stay non-negative.
    kumod.change(|node| {
        node.restart();
        node.delivered = 2;
        node.received = 2;
    });
    let restarted = queues_until(&app, &viewer, "the restart to show", |q| {
        totals(q)["delivered"] == 2.0 && q["items"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(
        throughput(&restarted)["delivered_per_s"]
            .as_f64()
            .is_some_and(|r| r >= 0.0)
    );
    kumod.change(|node| node.delivered += 10);
    queues_until(&app, &viewer, "growth after the restart", |q| {
        totals(q)["delivered"] == 12.0
    })
    .await;
    assert_no_negative_rate(&app).await;

    // Liveness turns 503 with kumod's reason.
    kumod.change(|node| node.not_live = Some("load shedding".into()));
    let shedding = eventually(
        Duration::from_secs(10),
        "connection:status load shedding",
        || async {
            events(&app, "connection", "connection:status")
                .await
                .into_iter()
                .find(|e| e["status"] == "load shedding")
        },
    )
    .await;
    assert_eq!(
        (shedding["connected"].as_bool(), shedding["source"].as_str()),
        (Some(false), Some("node-1"))
    );
    kumod.change(|node| node.not_live = None);
    eventually(Duration::from_secs(10), "connected again", || async {
        let statuses = events(&app, "connection", "connection:status").await;
        (statuses.last()?["connected"] == true && statuses.len() == 3).then_some(())
    })
    .await;

    // The admin endpoints answer 401: the poll fails as "not in trusted_hosts" and the
    // queues stay as last read.
    kumod.change(|node| node.admin_unauthorized = true);
    let refused = eventually(Duration::from_secs(10), "the 401 outcome", || async {
        let sources = app.get("/api/v1/sources", &viewer).await;
        let error = sources.body["items"][0]["last_outcome"]["error"]
            .as_str()?
            .to_string();
        error.contains("trusted_hosts").then_some(error)
    })
    .await;
    assert!(refused.contains("401"), "{refused}");
    let status = events(&app, "connection", "connection:status").await;
    assert!(
        status.last().expect("status")["status"]
            .as_str()
            .is_some_and(|s| s.contains("trusted_hosts"))
    );
    let unchanged = app.get("/api/v1/queues", &viewer).await;
    assert_eq!(totals(&unchanged.body)["delivered"], 12.0);
    assert_no_negative_rate(&app).await;

    // The dashboard contracts.
    let health = lookout::sources::health(&app.state, "default")
        .await
        .expect("health");
    assert_eq!(
        (health[0].kind.as_str(), health[0].status.as_str()),
        ("kumomta", "down")
    );
    let overview = lookout::sources::queue_totals(&app.state, "default")
        .await
        .expect("totals")
        .expect("some");
    assert_eq!(overview["delivered"], 12.0);
}

both_modes!(queue_states_totals_and_rates_follow_the_node);
