//! A stand-in for a kumod node's HTTP listener, on port 0.
//!
//! It starts as the busy fixture (`tests/fixtures/kumomta/metrics-busy.txt` and the admin
//! JSON fixtures) and a test then changes it as a real node changes: counters grow, a
//! ready queue goes idle (its series vanish) and comes back from zero, kumod restarts (every
//! counter from zero), liveness turns 503 with a reason, the admin endpoints answer 401.
//! `/metrics` is written the way kumod writes it (`", "` between labels, no escaping, no
//! `_total`). Every request is logged with the time and the `x-lookout-replica` header, so
//! a test can see who polled when.

#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const GMAIL: &str =
    "unspecified->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com@smtp_client";
pub const MX: &str = "unspecified->mx.example.com@smtp_client";

const READY_Q_STATES: &str = include_str!("../../fixtures/kumomta/ready-q-states.json");
const SUSPEND_READY_Q: &str = include_str!("../../fixtures/kumomta/suspend-ready-q.json");
const BOUNCE: &str = include_str!("../../fixtures/kumomta/bounce.json");

/// A ready queue's series; `None` = kumod does not write that series.
#[derive(Debug, Clone, Default)]
pub struct ReadyQueue {
    pub ready: Option<u64>,
    pub connections: Option<u64>,
    pub delivered: Option<u64>,
    pub transfail: Option<u64>,
    pub fail: Option<u64>,
}

/// What the node serves now.
#[derive(Debug, Clone)]
pub struct Node {
    pub delivered: u64,
    pub transfail: u64,
    pub fail: u64,
    pub received: u64,
    pub ready_queues: BTreeMap<String, ReadyQueue>,
    pub scheduled: BTreeMap<String, u64>,
    /// `None`: live (200 OK); `Some(reason)`: 503 with that text.
    pub not_live: Option<String>,
    /// The admin endpoints answer 401, as for a poller outside `trusted_hosts`.
    pub admin_unauthorized: bool,
}

impl Node {
    /// The busy fixture's numbers.
    pub fn busy() -> Node {
        Node {
            delivered: 1520,
            transfail: 41,
            fail: 7,
            received: 1600,
            ready_queues: BTreeMap::from([
                (
                    GMAIL.to_string(),
                    ReadyQueue {
                        ready: Some(46),
                        connections: Some(5),
                        delivered: Some(1200),
                        transfail: Some(41),
                        fail: None,
                    },
                ),
                (
                    MX.to_string(),
                    ReadyQueue {
                        delivered: Some(320),
                        ..ReadyQueue::default()
                    },
                ),
            ]),
            scheduled: BTreeMap::from([
                ("campaign_name:tenant_name@example.com".to_string(), 12),
                ("gmail.com".to_string(), 230),
            ]),
            not_live: None,
            admin_unauthorized: false,
        }
    }

    /// `n` more messages received and delivered through `queue` (which must exist).
    pub fn deliver(&mut self, queue: &str, n: u64) {
        self.delivered += n;
        self.received += n;
        let queue = self.ready_queues.get_mut(queue).expect("known queue");
        queue.delivered = Some(queue.delivered.unwrap_or(0) + n);
    }

    /// kumod restarted: every counter from zero, queues empty.
    pub fn restart(&mut self) {
        self.delivered = 0;
        self.transfail = 0;
        self.fail = 0;
        self.received = 0;
        self.ready_queues.clear();
        self.scheduled.clear();
    }

    /// The Prometheus text kumod would serve.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        let service = |name: &str| format!("smtp_client:{name}");
        let family = |out: &mut String, name: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {name}\n# TYPE {name} {kind}");
        };
        family(&mut out, "total_messages_delivered", "counter");
        let _ = writeln!(
            out,
            "total_messages_delivered{{service=\"smtp_client\"}} {}",
            self.delivered
        );
        for (name, q) in &self.ready_queues {
            if let Some(v) = q.delivered {
                let _ = writeln!(
                    out,
                    "total_messages_delivered{{service=\"{}\"}} {v}",
                    service(name)
                );
            }
        }
        family(&mut out, "total_messages_transfail", "counter");
        let _ = writeln!(
            out,
            "total_messages_transfail{{service=\"smtp_client\"}} {}",
            self.transfail
        );
        for (name, q) in &self.ready_queues {
            if let Some(v) = q.transfail {
                let _ = writeln!(
                    out,
                    "total_messages_transfail{{service=\"{}\"}} {v}",
                    service(name)
                );
            }
        }
        family(&mut out, "total_messages_fail", "counter");
        let _ = writeln!(
            out,
            "total_messages_fail{{service=\"smtp_client\"}} {}",
            self.fail
        );
        for (name, q) in &self.ready_queues {
            if let Some(v) = q.fail {
                let _ = writeln!(
                    out,
                    "total_messages_fail{{service=\"{}\"}} {v}",
                    service(name)
                );
            }
        }
        family(&mut out, "total_messages_received", "counter");
        let _ = writeln!(
            out,
            "total_messages_received{{service=\"esmtp_listener\"}} {}",
            self.received
        );
        let _ = writeln!(
            out,
            "total_messages_received{{service=\"esmtp_listener:127.0.0.1:25\"}} {}",
            self.received
        );
        family(&mut out, "ready_count", "gauge");
        let ready_total: u64 = self.ready_queues.values().filter_map(|q| q.ready).sum();
        let _ = writeln!(out, "ready_count{{service=\"smtp_client\"}} {ready_total}");
        for (name, q) in &self.ready_queues {
            if let Some(v) = q.ready {
                let _ = writeln!(out, "ready_count{{service=\"{}\"}} {v}", service(name));
            }
        }
        family(&mut out, "scheduled_count", "gauge");
        for (name, v) in &self.scheduled {
            let _ = writeln!(out, "scheduled_count{{queue=\"{name}\"}} {v}");
        }
        family(&mut out, "scheduled_count_total", "gauge");
        let _ = writeln!(
            out,
            "scheduled_count_total {}",
            self.scheduled.values().sum::<u64>()
        );
        family(&mut out, "connection_count", "gauge");
        for (name, q) in &self.ready_queues {
            if let Some(v) = q.connections {
                let _ = writeln!(out, "connection_count{{service=\"{}\"}} {v}", service(name));
            }
        }
        // A series with kumod's ", " label separator that the poller does not use.
        family(
            &mut out,
            "total_messages_delivered_by_provider_and_source",
            "counter",
        );
        let _ = writeln!(
            out,
            "total_messages_delivered_by_provider_and_source{{provider=\"(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com\", source=\"unspecified\", pool=\"unspecified\"}} {}",
            self.delivered
        );
        out
    }
}

/// One request the stand-in answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub path: String,
    /// The `x-lookout-replica` header.
    pub replica: Option<String>,
    pub authorization: Option<String>,
}

struct Shared {
    node: Mutex<Node>,
    log: Mutex<Vec<Request>>,
}

/// A running stand-in; stops when dropped.
pub struct Kumod {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Kumod {
    pub async fn start() -> Kumod {
        Self::start_with(Node::busy()).await
    }

    pub async fn start_with(node: Node) -> Kumod {
        let shared = Arc::new(Shared {
            node: Mutex::new(node),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Kumod { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes what the node serves from now on.
    pub fn change(&self, change: impl FnOnce(&mut Node)) {
        change(&mut self.shared.node.lock().expect("node"));
    }

    pub fn node(&self) -> Node {
        self.shared.node.lock().expect("node").clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().expect("log").clone()
    }

    /// Requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

impl Drop for Kumod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    shared.log.lock().expect("log").push(Request {
        at: Instant::now(),
        path: uri.path().to_string(),
        replica: header("x-lookout-replica"),
        authorization: header("authorization"),
    });
    let node = shared.node.lock().expect("node").clone();
    let json = |body: &str| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    let path = uri.path();
    if node.admin_unauthorized && path.starts_with("/api/admin/") {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    match path {
        "/metrics" => node.metrics_text().into_response(),
        "/api/check-liveness/v1" => match &node.not_live {
            None => "OK".into_response(),
            Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason.clone()).into_response(),
        },
        "/api/admin/ready-q-states/v1" => {
            // The throttle flag is only there while the gmail queue exists.
            if node.ready_queues.contains_key(GMAIL) {
                json(READY_Q_STATES)
            } else {
                json(r#"{"states_by_ready_queue":{}}"#)
            }
        }
        "/api/admin/suspend/v1" => json("[]"),
        "/api/admin/suspend-ready-q/v1" => json(SUSPEND_READY_Q),
        "/api/admin/bounce/v1" => json(BOUNCE),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
