//! `lookout-bench sources`: CPU and poll lateness of the replica that polls N KumoMTA
//! sources.
//!
//! Starts kumod stand-ins in this process (one HTTP server; node `i` lives under
//! `/node/<i>` and serves the busy fixture with a delivered counter that grows at each
//! poll), registers N kumomta sources on the replica, lets it poll for a warm-up, then
//! measures over a window: the replica process's CPU time (`/proc/<pid>/stat`, the process
//! found by its listening port), the lateness histogram the poller exports
//! (`lookout_source_poll_lateness_seconds` on the replica's `/metrics`) and the polls the
//! stand-ins answered. The sources are deleted at the end.

use crate::procfs;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use lookout::sources::prometheus_text::{ParseOptions, parse};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const METRICS_BUSY: &str = include_str!("../../../tests/fixtures/kumomta/metrics-busy.txt");
const READY_Q_STATES: &str = include_str!("../../../tests/fixtures/kumomta/ready-q-states.json");
const SUSPEND_READY_Q: &str = include_str!("../../../tests/fixtures/kumomta/suspend-ready-q.json");
const BOUNCE: &str = include_str!("../../../tests/fixtures/kumomta/bounce.json");
const LATENESS: &str = "lookout_source_poll_lateness_seconds";
/// `/proc/<pid>/stat` counts CPU time in USER_HZ, which Linux fixes at 100 for userland.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, clap::Args)]
pub struct SourcesArgs {
    /// Base URL of the replica, e.g. http://127.0.0.1:3000 (it must run on this host).
    #[arg(long)]
    url: String,
    /// An admin token for that replica (`lookout token issue --sub bench --role admin`).
    #[arg(long, env = "LOOKOUT_BENCH_TOKEN")]
    token: String,
    /// Sources to register.
    #[arg(long, default_value_t = 200)]
    sources: usize,
    /// Poll interval of every source, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Polling before the measurement starts, in seconds.
    #[arg(long, default_value_t = 15)]
    warmup_secs: u64,
    /// Length of the measurement, in seconds.
    #[arg(long, default_value_t = 60)]
    measure_secs: u64,
}

/// Polls answered per stand-in node, and the delivered counter each serves.
struct StandIns {
    polls: Vec<AtomicU64>,
}

pub async fn run(args: SourcesArgs) -> anyhow::Result<()> {
    let port = procfs::port_of(&args.url).ok_or_else(|| anyhow::anyhow!("no port in --url"))?;
    let pid = procfs::pid_listening_on(port)
        .ok_or_else(|| anyhow::anyhow!("no process of this user listens on port {port}"))?;

    let stand_ins = Arc::new(StandIns {
        polls: (0..args.sources).map(|_| AtomicU64::new(0)).collect(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let stand_in_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .fallback(serve_node)
        .with_state(stand_ins.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", args.url.trim_end_matches('/'));
    let run_id = format!("{:08x}", rand::random::<u32>());
    let mut created = Vec::with_capacity(args.sources);
    for i in 0..args.sources {
        let response = client
            .post(api("/api/v1/sources"))
            .bearer_auth(&args.token)
            .json(&json!({
                "name": format!("bench-{run_id}-{i}"),
                "kind": "kumomta",
                "url": format!("http://{stand_in_addr}/node/{i}"),
                "interval_ms": args.interval_ms,
            }))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(status == 201, "creating a source: {status} {body}");
        created.push(body["id"].as_str().unwrap_or_default().to_string());
    }
    println!(
        "registered {} kumomta sources at {} ms; warming up {} s",
        args.sources, args.interval_ms, args.warmup_secs
    );
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;

    let polls_before: u64 = stand_ins
        .polls
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .sum();
    let cpu_before = cpu_ticks(pid)?;
    let lateness_before = lateness_histogram(&client, &api("/metrics")).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.measure_secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(pid)?;
    let lateness_after = lateness_histogram(&client, &api("/metrics")).await?;
    let polls_after: u64 = stand_ins
        .polls
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .sum();

    for id in &created {
        let _ = client
            .delete(api(&format!("/api/v1/sources/{id}")))
            .bearer_auth(&args.token)
            .send()
            .await;
    }

    let cpu_seconds = (cpu_after - cpu_before) as f64 / TICKS_PER_SECOND;
    let polls = polls_after - polls_before;
    let expected = args.sources as f64 * elapsed * 1000.0 / args.interval_ms as f64;
    let window = lateness_after.minus(&lateness_before);
    println!("replica pid {pid}, window {elapsed:.1} s");
    println!(
        "cpu: {cpu_seconds:.2} s = {:.1}% of one core",
        100.0 * cpu_seconds / elapsed
    );
    println!(
        "polls: {polls} answered (/metrics), {expected:.0} expected ({:.1}%)",
        100.0 * polls as f64 / expected.max(1.0)
    );
    println!(
        "lateness over {} polls: mean {:.1} ms, p50 <= {} ms, p99 <= {} ms, max bucket <= {} ms",
        window.count,
        1000.0 * window.sum / window.count.max(1.0),
        window.quantile_ms(0.5),
        window.quantile_ms(0.99),
        window.quantile_ms(1.0)
    );
    Ok(())
}

/// One kumod stand-in endpoint of node `/node/<i>/...`.
async fn serve_node(State(stand_ins): State<Arc<StandIns>>, uri: Uri) -> Response {
    let mut parts = uri.path().trim_start_matches("/node/").splitn(2, '/');
    let node: Option<usize> = parts.next().and_then(|n| n.parse().ok());
    let rest = format!("/{}", parts.next().unwrap_or_default());
    let Some(counter) = node.and_then(|n| stand_ins.polls.get(n)) else {
        return (StatusCode::NOT_FOUND, "no such node").into_response();
    };
    let json = |body: &'static str| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    match rest.as_str() {
        "/metrics" => {
            let polls = counter.fetch_add(1, Ordering::Relaxed) + 1;
            // The node delivers 10 messages between two polls.
            let delivered = 1520 + 10 * polls;
            METRICS_BUSY
                .replace(
                    "total_messages_delivered{service=\"smtp_client\"} 1520",
                    &format!("total_messages_delivered{{service=\"smtp_client\"}} {delivered}"),
                )
                .into_response()
        }
        "/api/check-liveness/v1" => "OK".into_response(),
        "/api/admin/ready-q-states/v1" => json(READY_Q_STATES),
        "/api/admin/suspend/v1" => json("[]"),
        "/api/admin/suspend-ready-q/v1" => json(SUSPEND_READY_Q),
        "/api/admin/bounce/v1" => json(BOUNCE),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// utime + stime of `pid`, in ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its ')' are fixed.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the ')'.
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

/// A cumulative histogram read from the replica's `/metrics`.
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// (upper bound in seconds, cumulative count), by bound.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn minus(&self, earlier: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, count)| {
                    let before = earlier
                        .buckets
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, count - before)
                })
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The upper bound (ms) of the bucket holding quantile `q`.
    fn quantile_ms(&self, q: f64) -> String {
        let rank = q * self.count;
        self.buckets
            .iter()
            .find(|(_, count)| *count >= rank && *count > 0.0)
            .map(|(le, _)| {
                if le.is_infinite() {
                    "+Inf".to_string()
                } else {
                    format!("{}", le * 1000.0)
                }
            })
            .unwrap_or_else(|| "-".into())
    }
}

async fn lateness_histogram(client: &reqwest::Client, url: &str) -> anyhow::Result<Histogram> {
    let text = client.get(url).send().await?.text().await?;
    let exposition = parse(&text, ParseOptions::PROMETHEUS);
    let mut histogram = Histogram::default();
    for sample in exposition.samples {
        match sample.name.strip_prefix(LATENESS) {
            Some("_bucket") => {
                let le = sample.labels.get("le").and_then(|le| {
                    le.parse::<f64>()
                        .ok()
                        .or((le == "+Inf").then_some(f64::INFINITY))
                });
                if let Some(le) = le {
                    histogram.buckets.push((le, sample.value));
                }
            }
            Some("_sum") => histogram.sum = sample.value,
            Some("_count") => histogram.count = sample.value,
            _ => {}
        }
    }
    histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(histogram)
}
