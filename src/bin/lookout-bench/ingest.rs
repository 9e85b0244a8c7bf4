//! `lookout-bench ingest`: samples per second through `POST /api/v1/metrics` (batches of
//! 5 000 by default) against a cluster-mode replica, compared in the same run with a raw
//! `COPY` of the same rows into the same PostgreSQL table.
//!
//! The HTTP side pays for everything a real client does: JSON encoding is done before
//! the clock starts, but the replica parses, validates, resolves series, writes and
//! commits each batch and publishes its `metrics:update`. The COPY side gets the rows
//! already encoded (binary COPY by default, the encoding the replica uses; `--copy-format
//! text` for the text format) for series that already exist, one COPY per connection,
//! with as many connections as the HTTP side has requests in flight: it is the ceiling
//! PostgreSQL allows on this machine.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use lookout::auth::{Keys, Role};
use lookout::config::{AuthConfig, Secret};
use lookout::series::{Labels, fingerprint};
use lookout::store::samples::{COPY_SAMPLES_BINARY, SampleRow, encode_copy_binary};
use sqlx::Connection;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Base URL of a cluster-mode replica.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// PostgreSQL URL the replica uses (for the COPY baseline and clean-up).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Bearer token (agent or admin role); or give --jwt-secret to sign one.
    #[arg(long, env = "LOOKOUT_BENCH_TOKEN")]
    token: Option<String>,
    /// The replica's HS256 secret, to sign an admin token for --tenant.
    #[arg(long, env = "JWT_SECRET")]
    jwt_secret: Option<String>,
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Samples to load, each way.
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Samples per HTTP batch.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Distinct series the samples are spread over.
    #[arg(long, default_value_t = 1_000)]
    series: usize,
    /// HTTP requests in flight (and COPY connections).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Keep the loaded rows instead of deleting them at the end.
    #[arg(long)]
    keep: bool,
    /// The baseline's COPY format. `binary` is what the replica itself sends (and the
    /// faster of the two for PostgreSQL), so it is the stricter ceiling.
    #[arg(long, value_enum, default_value_t = CopyFormat::Binary)]
    copy_format: CopyFormat,
    /// Runs both phases this many times, alternating, and reports the median ratio.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CopyFormat {
    Binary,
    Text,
}

struct SeriesDef {
    name: String,
    labels: Labels,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.series == 0 || args.concurrency == 0 || args.samples == 0 {
        bail!("--samples, --batch, --series and --concurrency must be positive");
    }
    let token = match (&args.token, &args.jwt_secret) {
        (Some(token), _) => token.clone(),
        (None, Some(secret)) => {
            let config = AuthConfig {
                jwt_secret: Some(Secret::new(secret)),
                ..AuthConfig::default()
            };
            Keys::from_config(&config, None)?.issue(
                "lookout-bench",
                Role::Admin,
                &args.tenant,
                Duration::from_secs(3600),
            )?
        }
        (None, None) => bail!("give --token or --jwt-secret"),
    };
    // On a shared machine one run's COPY rate alone varies by a third; rounds that
    // alternate the two phases and the median of their ratios say more.
    let mut ratios = Vec::new();
    for round in 1..=args.rounds.max(1) {
        if args.rounds > 1 {
            println!("round {round}:");
        }
        let (http_rate, copy_rate) = one_round(&args, &token).await?;
        ratios.push(100.0 * http_rate / copy_rate);
    }
    if ratios.len() > 1 {
        ratios.sort_by(f64::total_cmp);
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "median ratio {:.1} % over {} rounds ({} %)",
            ratios[ratios.len() / 2],
            ratios.len(),
            listed.join(", ")
        );
    }
    Ok(())
}

/// Both phases once, with rows of their own (deleted afterwards unless `--keep`):
/// the HTTP and the COPY rate in samples per second.
async fn one_round(args: &IngestArgs, token: &str) -> anyhow::Result<(f64, f64)> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let name = format!("bench_ingest_{run_id}");
    let series: Vec<SeriesDef> = (0..args.series)
        .map(|i| SeriesDef {
            name: name.clone(),
            labels: Labels::from([
                ("host".to_string(), format!("host-{:05}", i % 997)),
                ("queue".to_string(), format!("queue-{i:05}.example.com")),
            ]),
        })
        .collect();
    // Sample i: series i % series, one round of every series each 10 ms, ending a
    // minute ago (inside the accepted window).
    let rounds = args.samples.div_ceil(args.series) as i64;
    let start_ms = Utc::now().timestamp_millis() - 60_000 - rounds * 10;
    let row = |i: usize| -> (usize, i64, f64) {
        (
            i % args.series,
            start_ms + (i / args.series) as i64 * 10,
            (i % 1000) as f64 * 1.5,
        )
    };

    // HTTP bodies, built before the clock starts.
    let mut bodies = Vec::new();
    for (b, chunk_start) in (0..args.samples).step_by(args.batch).enumerate() {
        let end = (chunk_start + args.batch).min(args.samples);
        let metrics: Vec<serde_json::Value> = (chunk_start..end)
            .map(|i| {
                let (s, ts, value) = row(i);
                serde_json::json!({"name": series[s].name, "labels": series[s].labels, "value": value, "timestamp": ts})
            })
            .collect();
        let body = serde_json::json!({"batch_id": format!("{run_id}-{b}"), "metrics": metrics});
        bodies.push((
            end - chunk_start,
            bytes::Bytes::from(serde_json::to_vec(&body)?),
        ));
    }
    let body_bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();

    println!(
        "ingest benchmark: {} samples, {} series, batches of {}, {} in flight, {} JSON ({:.1} MiB)",
        args.samples,
        args.series,
        args.batch,
        args.concurrency,
        bodies.len(),
        body_bytes as f64 / 1048576.0
    );
    let http = http_phase(args, token, bodies).await?;
    let http_rate = args.samples as f64 / http.elapsed.as_secs_f64();
    println!(
        "HTTP  {:>10.0} samples/s  ({} samples in {:.2} s; {} retries after 429)",
        http_rate,
        args.samples,
        http.elapsed.as_secs_f64(),
        http.retries
    );

    let copy_tenant = format!("{}-copy-{run_id}", args.tenant);
    let copy = copy_phase(args, &copy_tenant, &series, start_ms, row).await?;
    let copy_rate = args.samples as f64 / copy.as_secs_f64();
    println!(
        "COPY  {:>10.0} samples/s  ({} samples in {:.2} s)",
        copy_rate,
        args.samples,
        copy.as_secs_f64()
    );
    println!(
        "ratio {:>9.1} %  of the COPY rate (target >= 70 %)",
        100.0 * http_rate / copy_rate
    );

    if !args.keep {
        let mut conn = sqlx::PgConnection::connect(&args.database_url).await?;
        sqlx::query(
            "DELETE FROM samples WHERE series_id IN
               (SELECT id FROM series WHERE name = $1 AND tenant IN ($2, $3))",
        )
        .bind(&name)
        .bind(&args.tenant)
        .bind(&copy_tenant)
        .execute(&mut conn)
        .await?;
        sqlx::query("DELETE FROM series WHERE name = $1 AND tenant IN ($2, $3)")
            .bind(&name)
            .bind(&args.tenant)
            .bind(&copy_tenant)
            .execute(&mut conn)
            .await?;
    }
    Ok((http_rate, copy_rate))
}

struct HttpOutcome {
    elapsed: Duration,
    retries: u64,
}

async fn http_phase(
    args: &IngestArgs,
    token: &str,
    bodies: Vec<(usize, bytes::Bytes)>,
) -> anyhow::Result<HttpOutcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("{}/api/v1/metrics", args.url.trim_end_matches('/'));
    let queue = Arc::new(std::sync::Mutex::new(bodies.into_iter()));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url, token) = (client.clone(), url.clone(), token.to_string());
        let (queue, retries) = (queue.clone(), retries.clone());
        workers.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((count, body)) = next else {
                    return anyhow::Ok(());
                };
                loop {
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .context("POST /api/v1/metrics")?;
                    let status = response.status();
                    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let wait = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(1u64);
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                        continue;
                    }
                    let text = response.text().await?;
                    if !status.is_success() {
                        bail!("ingest answered {status}: {text}");
                    }
                    let outcome: serde_json::Value = serde_json::from_str(&text)?;
                    if outcome["accepted"].as_u64() != Some(count as u64) {
                        bail!("not every sample was accepted: {text:.500}");
                    }
                    break;
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(HttpOutcome {
        elapsed: started.elapsed(),
        retries: retries.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Creates the series for `tenant` (not timed), formats the rows as COPY text (not
/// timed), then times their COPY into `samples` over `concurrency` connections.
async fn copy_phase(
    args: &IngestArgs,
    tenant: &str,
    series: &[SeriesDef],
    start_ms: i64,
    row: impl Fn(usize) -> (usize, i64, f64),
) -> anyhow::Result<Duration> {
    let mut conn = sqlx::PgConnection::connect(&args.database_url)
        .await
        .context("connect to --database-url")?;
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let labels: Vec<String> = series
        .iter()
        .map(|s| serde_json::to_string(&s.labels).unwrap_or_default())
        .collect();
    let fingerprints: Vec<i64> = series
        .iter()
        .map(|s| fingerprint(&s.name, &s.labels))
        .collect();
    let now = Utc::now();
    let ids: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO series (tenant, name, labels, fingerprint, created_at, last_seen_at)
         SELECT $1, n, l::jsonb, f, $5, $5 FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS t(n, l, f)
         ON CONFLICT (tenant, fingerprint) DO UPDATE SET last_seen_at = excluded.last_seen_at
         RETURNING fingerprint, id",
    )
    .bind(tenant)
    .bind(&names)
    .bind(&labels)
    .bind(&fingerprints)
    .bind(now)
    .fetch_all(&mut conn)
    .await?;
    let by_fingerprint: std::collections::HashMap<i64, i64> = ids.into_iter().collect();
    let series_ids: Vec<i64> = fingerprints.iter().map(|f| by_fingerprint[f]).collect();
    // The HTTP phase created the day partitions these timestamps fall in.
    let _ = start_ms;

    let per_connection = args.samples.div_ceil(args.concurrency);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for c in 0..args.concurrency {
        let rows = (c * per_connection)..((c + 1) * per_connection).min(args.samples);
        let part = match args.copy_format {
            CopyFormat::Binary => {
                let rows: Vec<SampleRow> = rows
                    .map(|i| {
                        let (s, ts_ms, value) = row(i);
                        SampleRow {
                            series_id: series_ids[s],
                            ts_ms,
                            value,
                        }
                    })
                    .collect();
                encode_copy_binary(&rows)
            }
            CopyFormat::Text => {
                let mut text = String::new();
                for i in rows {
                    let (s, ts, value) = row(i);
                    let ts = DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or_default();
                    let _ = writeln!(
                        text,
                        "{}\t{}\t{}",
                        series_ids[s],
                        ts.format("%Y-%m-%d %H:%M:%S%.3f+00"),
                        value
                    );
                }
                text.into_bytes()
            }
        };
        parts.push(part);
    }
    let statement = match args.copy_format {
        CopyFormat::Binary => COPY_SAMPLES_BINARY,
        CopyFormat::Text => "COPY samples (series_id, ts, value) FROM STDIN",
    };
    let mut connections = Vec::new();
    for _ in 0..args.concurrency {
        connections.push(sqlx::PgConnection::connect(&args.database_url).await?);
    }
    let started = Instant::now();
    let mut copies = tokio::task::JoinSet::new();
    for (mut conn, data) in connections.into_iter().zip(parts) {
        copies.spawn(async move {
            let mut copy = conn.copy_in_raw(statement).await?;
            for chunk in data.chunks(1 << 20) {
                copy.send(chunk).await?;
            }
            copy.finish().await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = copies.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}
