//! One rule-engine tick over 10 000 rules × 10 series each (target < 1 s), on SQLite
//! (embedded mode) and, when `RULES_BENCH_POSTGRES_URL` names an empty database, on
//! PostgreSQL.
//!
//! `cargo bench --bench rules`

use chrono::{Duration as ChronoDuration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use lookout::bus::{Bus, memory::MemoryBus};
use lookout::config::{DatabaseConfig, Mode};
use lookout::ingest::{Ingest, Limits, SampleIn};
use lookout::rules::engine::Engine;
use lookout::rules::model::RuleInput;
use lookout::rules::repo;
use lookout::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RULES: usize = 10_000;
const SERIES_PER_RULE: usize = 10;
/// Samples per series in the window (a scrape every 10 s over 30 s).
const SAMPLES_PER_SERIES: i64 = 3;

async fn prepare(store: &Store) -> chrono::DateTime<Utc> {
    store.migrate().await.expect("migrate");
    let now = Utc::now();
    let ingest = Ingest::new(store.clone(), Limits::default());
    let mut batch = Vec::new();
    for rule in 0..RULES {
        for series in 0..SERIES_PER_RULE {
            for k in 0..SAMPLES_PER_SERIES {
                batch.push(SampleIn {
                    name: format!("bench_metric_{rule}"),
                    labels: [("instance".to_string(), format!("host-{series}"))].into(),
                    value: (rule + series) as f64,
                    timestamp_ms: Some((now - ChronoDuration::seconds(10 * k)).timestamp_millis()),
                });
            }
        }
        if batch.len() >= 9_000 {
            ingest
                .write("bench", None, std::mem::take(&mut batch), Vec::new(), now)
                .await
                .expect("ingest");
        }
    }
    ingest
        .write("bench", None, batch, Vec::new(), now)
        .await
        .expect("ingest");
    let mut tx = store.begin().await.expect("tx");
    for rule in 0..RULES {
        let input: RuleInput = serde_json::from_value(serde_json::json!({
            "name": format!("bench {rule}"),
            "condition": {
                "expr": {"single": {"selector": {"name": format!("bench_metric_{rule}")}, "function": "avg", "window": "1h"}},
                "operator": ">", "threshold": 1e9, "group_by": ["instance"]
            },
            "evaluation_interval": "1s"
        }))
        .expect("rule json");
        let spec = input.into_spec().expect("valid rule");
        repo::insert_rule(&mut tx, "bench", &spec, false, now)
            .await
            .expect("rule");
    }
    tx.commit().await.expect("commit");
    now
}

fn bench_store(c: &mut Criterion, label: &str, runtime: &tokio::runtime::Runtime, store: Store) {
    let now = runtime.block_on(prepare(&store));
    let bus = Bus::Memory(Arc::new(MemoryBus::new(1000, Duration::from_secs(3600))));
    let mut engine = Engine::new(store, bus, 1);
    // The first tick loads the rule cache; later ticks are the steady state.
    let first = runtime.block_on(engine.tick(now)).expect("tick");
    assert_eq!(first.rules_evaluated, RULES);
    assert_eq!(first.instances, RULES * SERIES_PER_RULE);
    let mut step = 0i64;
    let mut group = c.benchmark_group("rules");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function(format!("tick_10000_rules_x_10_series_{label}"), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                // Each tick a second later, so every rule is due again.
                step += 1;
                let at = now + ChronoDuration::seconds(step);
                let started = Instant::now();
                let report = runtime.block_on(engine.tick(at)).expect("tick");
                total += started.elapsed();
                assert_eq!(report.rules_evaluated, RULES);
            }
            total
        })
    });
    group.finish();
}

fn ticks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let sqlite = runtime
        .block_on(Store::connect(
            &Mode::Embedded {
                sqlite_path: dir.path().join("bench.db"),
            },
            &config,
        ))
        .expect("sqlite");
    bench_store(c, "sqlite", &runtime, sqlite);
    if let Ok(url) = std::env::var("RULES_BENCH_POSTGRES_URL") {
        let postgres = runtime
            .block_on(Store::connect(
                &Mode::Cluster {
                    postgres_url: url,
                    redis_url: String::new(),
                },
                &config,
            ))
            .expect("postgres");
        bench_store(c, "postgres", &runtime, postgres);
    }
}

criterion_group!(benches, ticks);
criterion_main!(benches);
