//! A WebSocket client for the tests: real sockets, JSON frames, deadlines everywhere.

use crate::common::TestApp;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long a test waits for one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

pub struct Ws {
    pub stream: WebSocketStream<TcpStream>,
}

/// How the client authenticates.
pub enum Auth<'a> {
    Header(&'a str),
    Query(&'a str),
    None,
}

impl Ws {
    /// Connects to `/ws`; the handshake's error (e.g. HTTP 401) is returned as is.
    pub async fn try_connect(
        app: &TestApp,
        auth: Auth<'_>,
        recv_buffer: Option<u32>,
    ) -> Result<Ws, WsError> {
        let url = match auth {
            Auth::Query(token) => app.ws_url(&format!("/ws?token={token}")),
            _ => app.ws_url("/ws"),
        };
        let mut request = url.into_client_request()?;
        if let Auth::Header(token) = auth {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("recv buffer");
        }
        let tcp = socket.connect(app.addr).await.expect("tcp connect");
        let (stream, _) = tokio_tungstenite::client_async(request, tcp).await?;
        Ok(Ws { stream })
    }

    /// Connects with a token in the header and reads `auth_success`.
    pub async fn open(app: &TestApp, token: &str) -> (Ws, Value) {
        let mut ws = Ws::try_connect(app, Auth::Header(token), None)
            .await
            .expect("ws connect");
        let hello = ws.expect("auth_success").await;
        (ws, hello)
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("send frame");
    }

    /// The next text frame as JSON; panics on close or timeout.
    pub async fn next(&mut self) -> Value {
        match self.next_or_close().await {
            Ok(value) => value,
            Err(close) => panic!("connection closed while a frame was expected: {close:?}"),
        }
    }

    /// The next text frame, or the close (code, reason).
    pub async fn next_or_close(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.stream.next())
                .await
                .expect("a frame within the deadline");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((0, format!("error: {e}"))),
                None => return Err((0, "stream ended".into())),
            }
        }
    }

    /// The next frame, which must be of this type.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// Reads until the server closes; returns (code, reason).
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            if let Err(close) = self.next_or_close().await {
                return close;
            }
        }
    }

    /// Subscribes and returns the `subscribed` replies (one per topic).
    pub async fn subscribe(&mut self, topics: &[&str], extra: Value) -> Vec<Value> {
        let mut payload = json!({"topics": topics});
        if let Value::Object(extra) = extra {
            payload.as_object_mut().unwrap().extend(extra);
        }
        self.send(json!({"type": "subscribe", "id": "s", "payload": payload}))
            .await;
        let mut replies = Vec::new();
        for _ in topics {
            replies.push(self.expect("subscribed").await);
        }
        replies
    }
}
