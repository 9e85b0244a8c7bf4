//! `lookout-bench agents`: samples per second through agents' sockets
//! (`/api/v1/agents/connect`), counting only what was acknowledged, i.e. committed.
//!
//! A agents spread over the replica URLs each register, then send B batches of S
//! samples one after another, each waiting for its `ack` (what a real agent does). The
//! samples of each agent are distinct series, timestamps now. Reports acknowledged
//! samples/s over all agents and the ack latency (send → ack) percentiles.
//!
//! Needs `LOOKOUT_AGENTS__RATE_LIMIT_*` high enough for the agents' frames (the default
//! 50/s is plenty) and the series limit of tenant `bench` to allow A × S series.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Replica base URLs, e.g. http://127.0.0.1:3000 (agents are spread over them).
    #[arg(long, required = true, value_delimiter = ',')]
    urls: Vec<String>,
    /// The replicas' HS256 signing secret (JWT_SECRET).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Agents (sockets) sending at once.
    #[arg(long, short = 'a', default_value_t = 4)]
    agents: usize,
    /// Batches each agent sends.
    #[arg(long, short = 'b', default_value_t = 20)]
    batches: usize,
    /// Samples per batch.
    #[arg(long, short = 's', default_value_t = 5000)]
    samples: usize,
}

fn token(secret: &str, sub: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let claims = json!({"sub": sub, "role": "agent", "tenant": "bench", "exp": exp});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let started = Instant::now();
    let mut workers = Vec::new();
    for n in 0..args.agents {
        let url = args.urls[n % args.urls.len()].clone();
        let agent_id = format!("bench-{run_id}-{n}");
        let token = token(&args.jwt_secret, &agent_id)?;
        let (batches, samples) = (args.batches, args.samples);
        workers.push(tokio::spawn(async move {
            one_agent(&url, &agent_id, &token, batches, samples).await
        }));
    }
    let mut latencies = Vec::new();
    let mut acked = 0usize;
    for worker in workers {
        let (accepted, mut waits) = worker.await??;
        acked += accepted;
        latencies.append(&mut waits);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "agents {}  batches/agent {}  samples/batch {}  acked samples {acked}  in {elapsed:.2} s",
        args.agents, args.batches, args.samples
    );
    println!("acked samples/s {:.0}", acked as f64 / elapsed);
    println!(
        "ack latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

async fn one_agent(
    url: &str,
    agent_id: &str,
    token: &str,
    batches: usize,
    samples: usize,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let ws_url = format!(
        "{}/api/v1/agents/connect?agent_id={agent_id}&token={token}",
        url.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let send = |kind: &str, data: Value| {
        Message::Text(json!({"type": kind, "data": data}).to_string().into())
    };
    ws.send(send("registration", json!({"hostname": agent_id})))
        .await?;
    next_of(&mut ws, "registered").await?;
    let mut accepted = 0;
    let mut waits = Vec::with_capacity(batches);
    for b in 0..batches {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        let metrics: Vec<Value> = (0..samples)
            .map(|i| {
                json!({"name": "bench_agent_value", "value": i, "timestamp": now_ms,
                            "labels": {"agent": agent_id, "series": i.to_string()}})
            })
            .collect();
        let frame = send(
            "metrics",
            json!({"batch_id": format!("{agent_id}-{b}"), "metrics": metrics}),
        );
        let sent = Instant::now();
        ws.send(frame).await?;
        let ack = next_of(&mut ws, "ack").await?;
        waits.push(sent.elapsed());
        accepted += ack["data"]["accepted"].as_u64().unwrap_or(0) as usize;
    }
    let _ = ws.close(None).await;
    Ok((accepted, waits))
}

/// The next frame of `kind`, skipping pings; an `error` frame fails the run.
async fn next_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    kind: &str,
) -> anyhow::Result<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no {kind} frame within 60 s"))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())?;
                if value["type"] == kind {
                    return Ok(value);
                }
                if value["type"] == "error" || value["type"] == "auth_error" {
                    anyhow::bail!("server answered {value}");
                }
            }
            Some(Ok(Message::Close(close))) => anyhow::bail!("closed: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("socket ended"),
        }
    }
}
