//! `lookout-bench realtime`: drives real replicas' `/ws` gateways.
//!
//! - `fanout`: C connections spread over the replica URLs, all subscribed to one topic;
//!   E events published through `POST /api/v1/topics/{topic}/events` at R per second
//!   (or as fast as possible with K requests in flight), each carrying its sequence
//!   number and send time. Reports deliveries/s, latency percentiles, lost and
//!   duplicated deliveries, and each replica's RSS per connection.
//! - `idle`: C authenticated, subscribed, silent connections; reports each replica's
//!   RSS per connection.
//!
//! The publisher is one caller: the replica it publishes through must not rate-limit it
//! (`LOOKOUT_SERVER__RATE_LIMIT_PER_SEC=0` disables the per-caller API limit), and the
//! connections use one subject per connection (`bench-<n>`) in tenant `bench`, so the
//! per-tenant quota (`LOOKOUT_REALTIME__MAX_CONNECTIONS_PER_TENANT`, default 20 000) must
//! allow C.

use super::procfs;
use clap::{Args, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Fan-out: publish events to one topic followed by every connection.
    Fanout(FanoutArgs),
    /// Idle connections: memory per connection.
    Idle(CommonArgs),
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Replica base URLs, e.g. http://127.0.0.1:3000 (connections are spread over them).
    #[arg(long, required = true, value_delimiter = ',')]
    urls: Vec<String>,
    /// The replicas' HS256 signing secret (JWT_SECRET): tokens are made per connection.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Connections to open.
    #[arg(long, short = 'c', default_value_t = 1000)]
    connections: usize,
    /// Topic to subscribe to.
    #[arg(long, default_value = "custom.bench")]
    topic: String,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Idle mode: how long to keep the connections open after measuring.
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Events to publish.
    #[arg(long, short = 'e', default_value_t = 10_000)]
    events: u64,
    /// Events per second; 0 publishes as fast as possible.
    #[arg(long, short = 'r', default_value_t = 0)]
    rate: u64,
    /// Publish requests in flight.
    #[arg(long, short = 'k', default_value_t = 16)]
    in_flight: usize,
    /// Replica to publish through (default: the first URL).
    #[arg(long)]
    publish_url: Option<String>,
    /// How long to wait for the last deliveries after the last publish.
    #[arg(long, default_value_t = 10)]
    drain_secs: u64,
}

pub async fn run(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Fanout(args) => fanout(args).await,
        Mode::Idle(args) => idle(args).await,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn token(secret: &str, sub: &str, role: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 24 * 3600;
    let claims = json!({"sub": sub, "role": role, "tenant": "bench", "exp": exp});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{base}/ws")
}

/// Opens, authenticates and subscribes one connection.
async fn open(url: &str, token: &str, topic: &str) -> anyhow::Result<Socket> {
    // Small client buffers: the load tool's own memory should not limit C, and
    // tungstenite zero-fills the read buffer's free room before each read: with 16 KiB
    // that memset was 16 % of the tool's CPU for ~200-byte frames.
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
        format!("{url}?token={token}"),
        Some(config),
        true,
    )
    .await?;
    let mut expect = async |kind: &str| -> anyhow::Result<()> {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message? {
                let value: serde_json::Value = serde_json::from_str(&text)?;
                if value["type"] == kind {
                    return Ok(());
                }
                anyhow::bail!("expected {kind}, got {text}");
            }
        }
        anyhow::bail!("closed before {kind}")
    };
    expect("auth_success").await?;
    let subscribe = json!({"type": "subscribe", "id": "b", "payload": {"topics": [topic]}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    let mut expect = async |kind: &str| -> anyhow::Result<()> {
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message? {
                if text.contains(&format!("\"type\":\"{kind}\"")) {
                    return Ok(());
                }
                anyhow::bail!("expected {kind}, got {text}");
            }
        }
        anyhow::bail!("closed before {kind}")
    };
    expect("subscribed").await?;
    Ok(socket)
}

/// Opens C connections over the URLs; returns them with the URL index of each.
async fn open_all(args: &CommonArgs) -> anyhow::Result<Vec<(usize, Socket)>> {
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.connections);
    for n in 0..args.connections {
        let index = n % args.urls.len();
        let url = ws_url(&args.urls[index]);
        let token = token(&args.jwt_secret, &format!("bench-{n}"), "viewer")?;
        let topic = args.topic.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            open(&url, &token, &topic).await.map(|s| (index, s))
        }));
    }
    let mut sockets = Vec::with_capacity(tasks.len());
    for task in tasks {
        sockets.push(task.await??);
    }
    Ok(sockets)
}

/// RSS of each replica's process (None when it is not visible from here).
fn rss_of(urls: &[String]) -> Vec<Option<u64>> {
    urls.iter()
        .map(|u| {
            procfs::port_of(u)
                .and_then(procfs::pid_listening_on)
                .and_then(procfs::rss_bytes)
        })
        .collect()
}

fn report_memory(urls: &[String], before: &[Option<u64>], after: &[Option<u64>], per: &[usize]) {
    for (i, url) in urls.iter().enumerate() {
        match (before[i], after[i]) {
            (Some(b), Some(a)) => println!(
                "replica {url}: rss {:.1} MiB -> {:.1} MiB, {} connections, {:.0} bytes ({:.2} KiB) per connection",
                b as f64 / 1048576.0,
                a as f64 / 1048576.0,
                per[i],
                (a as f64 - b as f64) / per[i].max(1) as f64,
                (a as f64 - b as f64) / per[i].max(1) as f64 / 1024.0,
            ),
            _ => println!("replica {url}: process not visible from here (RSS unknown)"),
        }
    }
}

fn per_replica(urls: &[String], sockets: &[(usize, Socket)]) -> Vec<usize> {
    let mut per = vec![0; urls.len()];
    for (i, _) in sockets {
        per[*i] += 1;
    }
    per
}

async fn idle(args: CommonArgs) -> anyhow::Result<()> {
    let before = rss_of(&args.urls);
    let started = Instant::now();
    let sockets = open_all(&args).await?;
    println!(
        "opened {} connections in {:.1} s",
        sockets.len(),
        started.elapsed().as_secs_f64()
    );
    // Let the replicas settle (allocator caches, deferred frees) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_of(&args.urls);
    report_memory(
        &args.urls,
        &before,
        &after,
        &per_replica(&args.urls, &sockets),
    );
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    Ok(())
}

/// What one connection saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    duplicates: u64,
    distinct: u64,
    last_at: Option<Instant>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The number after `"key":` in `text` (the frames are ours: no need for a JSON parser,
/// which would make the load tool the bottleneck).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn read_events(
    mut socket: Socket,
    events: u64,
    done: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Seen::default();
    let mut got = vec![false; events as usize];
    // Once, not per frame: each new `cancelled()` future takes the token's shared lock.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let message = tokio::select! {
            _ = &mut stopped => break,
            message = socket.next() => message,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let (Some(seq), Some(sent)) = (
            number_after(&text, "\"seq\":"),
            number_after(&text, "\"t\":"),
        ) else {
            continue;
        };
        let at = now_us();
        seen.last_at = Some(Instant::now());
        seen.latencies_us
            .push(at.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
        match got.get_mut(seq as usize) {
            Some(slot) if *slot => seen.duplicates += 1,
            Some(slot) => {
                *slot = true;
                seen.distinct += 1;
                if seen.distinct == events {
                    done.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            None => {}
        }
    }
    seen
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let before = rss_of(&common.urls);
    let sockets = open_all(common).await?;
    let per = per_replica(&common.urls, &sockets);
    let connected = sockets.len();
    println!("opened {connected} connections");
    let mid = rss_of(&common.urls);

    let done = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(_, s)| tokio::spawn(read_events(s, args.events, done.clone(), stop.clone())))
        .collect();

    let publish_url = format!(
        "{}/api/v1/topics/{}/events",
        args.publish_url
            .as_deref()
            .unwrap_or(&common.urls[0])
            .trim_end_matches('/'),
        common.topic
    );
    let admin = token(&common.jwt_secret, "bench-publisher", "admin")?;
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let publishers: Vec<_> = (0..args.in_flight.max(1))
        .map(|_| {
            let (client, url, admin, next, failures) = (
                client.clone(),
                publish_url.clone(),
                admin.clone(),
                next.clone(),
                failures.clone(),
            );
            let (events, rate) = (args.events, args.rate);
            tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= events {
                        return;
                    }
                    if rate > 0 {
                        // Event `seq` is due at seq / rate seconds after the start.
                        let due = started + Duration::from_secs_f64(seq as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let body = json!({"event": "bench:tick", "data": {"seq": seq, "t": now_us()}});
                    let ok = client
                        .post(&url)
                        .bearer_auth(&admin)
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await?;
    }
    let published_in = started.elapsed();
    let failed = failures.load(Ordering::Relaxed);
    println!(
        "published {} events in {:.2} s ({:.0}/s), {failed} failed",
        args.events,
        published_in.as_secs_f64(),
        args.events as f64 / published_in.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    while done.load(Ordering::Relaxed) < connected as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = rss_of(&common.urls);
    let mut latencies = Vec::new();
    let (mut delivered, mut duplicates, mut last_at) = (0u64, 0u64, started);
    let mut lost = 0u64;
    stop.cancel();
    for reader in readers {
        let seen = reader.await?;
        delivered += seen.distinct;
        duplicates += seen.duplicates;
        lost += (args.events - failed).saturating_sub(seen.distinct);
        latencies.extend(seen.latencies_us);
        if let Some(at) = seen.last_at {
            last_at = last_at.max(at);
        }
    }
    let elapsed = last_at.duration_since(started).as_secs_f64().max(1e-9);
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    println!(
        "deliveries {delivered} in {elapsed:.2} s: {:.0} deliveries/s",
        delivered as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!("lost {lost}  duplicated {duplicates}");
    println!("memory with {connected} connections subscribed (before publishing):");
    report_memory(&common.urls, &before, &mid, &per);
    println!("memory after the run:");
    report_memory(&common.urls, &before, &after, &per);
    Ok(())
}
