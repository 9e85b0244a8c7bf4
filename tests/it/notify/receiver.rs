//! An HTTP receiver on 127.0.0.1:0 standing in for Slack, a webhook consumer or Twilio:
//! it records every request (path, headers, body) and answers 200, or the statuses
//! queued with [`Receiver::fail_next`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived, for latency figures.
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Shared {
    // A std mutex: never held across an await.
    requests: Mutex<Vec<Request>>,
    /// Answers to give, in order, before answering 200 again: (status, Retry-After).
    failures: Mutex<VecDeque<(u16, Option<String>)>>,
    refused: Mutex<usize>,
}

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for the receiver");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next `count` requests are answered `status` (with `Retry-After` if given).
    pub fn fail_next(&self, count: usize, status: u16, retry_after: Option<&str>) {
        let mut failures = self.shared.failures.lock().unwrap();
        for _ in 0..count {
            failures.push_back((status, retry_after.map(str::to_string)));
        }
    }

    /// Every request answered 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn refused(&self) -> usize {
        *self.shared.refused.lock().unwrap()
    }

    /// Waits until at least `count` requests were accepted.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Request> {
        crate::common::eventually(
            timeout,
            &format!("{count} requests at the receiver"),
            || async {
                let got = self.accepted();
                (got.len() >= count).then_some(got)
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let failure = shared.failures.lock().unwrap().pop_front();
    if let Some((status, retry_after)) = failure {
        *shared.refused.lock().unwrap() += 1;
        let mut response = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "not now",
        )
            .into_response();
        if let Some(value) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", value.parse().unwrap());
        }
        return response;
    }
    shared.requests.lock().unwrap().push(Request {
        path: uri.path().to_string(),
        headers,
        body,
        at: Instant::now(),
    });
    (StatusCode::OK, "ok").into_response()
}
