//! A test agent: a real WebSocket client speaking protocol.md's agent frames.

use crate::common::TestApp;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

pub struct Agent {
    pub ws: Ws,
}

/// The connect path for `agent_id` with optional provider and region.
pub fn connect_path(agent_id: &str, provider: Option<&str>, region: Option<&str>) -> String {
    let mut path = format!("/api/v1/agents/connect?agent_id={agent_id}");
    if let Some(p) = provider {
        path.push_str(&format!("&provider={p}"));
    }
    if let Some(r) = region {
        path.push_str(&format!("&region={r}"));
    }
    path
}

/// Opens a socket with the token in the `Authorization` header.
pub async fn try_connect(app: &TestApp, path: &str, token: Option<&str>) -> Result<Ws, u16> {
    let mut request = app
        .ws_url(path)
        .into_client_request()
        .expect("a WebSocket request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect failed: {e}"),
    }
}

impl Agent {
    /// Connects as `agent_id` and registers; returns the agent and its `registered` data.
    pub async fn register(
        app: &TestApp,
        token: &str,
        agent_id: &str,
        provider: Option<&str>,
        region: Option<&str>,
    ) -> (Agent, Value) {
        let ws = try_connect(app, &connect_path(agent_id, provider, region), Some(token))
            .await
            .expect("agent socket opens");
        let mut agent = Agent { ws };
        agent
            .send(
                "registration",
                json!({"hostname": format!("{agent_id}.example"), "version": "1.2.3",
                       "labels": {"env": "test"}, "capabilities": ["metrics"]}),
            )
            .await;
        let registered = agent.expect("registered").await;
        assert_eq!(registered["data"]["agent_id"], agent_id);
        (agent, registered["data"].clone())
    }

    pub async fn send(&mut self, kind: &str, data: Value) {
        self.send_raw(
            json!({"type": kind, "data": data, "timestamp": "2026-11-21T10:00:00Z"}).to_string(),
        )
        .await;
    }

    pub async fn send_raw(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("frame sent");
    }

    /// The next frame that is not a server `ping`.
    pub async fn next(&mut self) -> Frame {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if value["type"] == "ping" {
                        continue;
                    }
                    return Frame::Json(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Frame::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Closed(None),
            }
        }
    }

    /// The next frame, which must be of type `kind`.
    #[track_caller]
    pub fn expect(&mut self, kind: &str) -> impl Future<Output = Value> + '_ {
        let kind = kind.to_string();
        async move {
            match self.next().await {
                Frame::Json(value) if value["type"] == kind.as_str() => value,
                other => panic!("expected a {kind} frame, got {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Frame::Closed(Some(close)) => return close,
                Frame::Closed(None) => panic!("socket ended without a close frame"),
                Frame::Json(_) => continue,
            }
        }
    }

    /// Sends a metrics batch and returns the `ack` data.
    pub async fn batch(&mut self, batch_id: &str, metrics: Value) -> Value {
        self.send("metrics", json!({"batch_id": batch_id, "metrics": metrics}))
            .await;
        let ack = self.expect("ack").await;
        assert_eq!(ack["data"]["batch_id"], batch_id);
        ack["data"].clone()
    }
}

#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<(u16, String)>),
}
