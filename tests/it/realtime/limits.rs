//! Limits and close codes of `/ws` (protocol.md, "Errors, limits and closing").

use super::client::{Auth, Ws};
use super::next_event;
use crate::both_modes;
use crate::common::{TestApp, TestEnv, eventually};
use futures_util::SinkExt;
use lookout::auth::Role;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

async fn an_oversized_frame_closes_1009(env: TestEnv) {
    let app = env.spawn_with(|c| c.realtime.max_frame_bytes = 1024).await;
    let (mut ws, _) = Ws::open(&app, &env.admin()).await;
    let big = "x".repeat(4000);
    ws.send(json!({"type": "ping", "id": big})).await;
    assert_eq!(ws.expect_close().await, (1009, "frame_too_large".into()));
}

async fn malformed_frames_close_4000(env: TestEnv) {
    let app = env.spawn().await;
    let cases = [
        Message::Text("not json".into()),
        Message::Text("[1,2]".into()),
        Message::Text(r#"{"id":"no type"}"#.into()),
        Message::Binary(vec![1u8, 2, 3].into()),
    ];
    for case in cases {
        let (mut ws, _) = Ws::open(&app, &env.admin()).await;
        ws.send_raw(case.clone()).await;
        let (code, _) = ws.expect_close().await;
        assert_eq!(code, 4000, "after {case:?}");
    }
}

async fn a_flooding_client_gets_rate_limit_then_4008(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.realtime.rate_limit_per_sec = 5;
            c.realtime.rate_limit_burst = 5;
        })
        .await;
    let (mut ws, _) = Ws::open(&app, &env.admin()).await;
    for i in 0..50 {
        ws.stream
            .feed(Message::Text(
                json!({"type": "ping", "id": i}).to_string().into(),
            ))
            .await
            .unwrap();
    }
    ws.stream.flush().await.unwrap();
    let mut pongs = 0;
    let mut warned = None;
    let close = loop {
        match ws.next_or_close().await {
            Ok(frame) if frame["type"] == "pong" => pongs += 1,
            Ok(frame) if frame["type"] == "rate_limit" => warned = Some(frame),
            Ok(frame) => panic!("unexpected {frame}"),
            Err(close) => break close,
        }
    };
    assert!(
        (5..20).contains(&pongs),
        "the burst is served, not more ({pongs})"
    );
    let warned = warned.expect("a rate_limit frame before the close");
    assert!(warned["payload"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(close, (4008, "rate_limit".into()));
}

/// A client that answers nothing (a raw socket: no automatic pongs) is closed with 4004.
async fn a_silent_client_is_closed_4004(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.realtime.heartbeat_interval = Duration::from_millis(200))
        .await;
    let token = env.admin();
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        app.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut pings = 0;
    let close_code = tokio::time::timeout(Duration::from_secs(10), async {
        // Skip the HTTP response head.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));
        loop {
            let b0 = tcp.read_u8().await.unwrap();
            let mut len = u64::from(tcp.read_u8().await.unwrap() & 0x7f);
            if len == 126 {
                len = u64::from(tcp.read_u16().await.unwrap());
            } else if len == 127 {
                len = tcp.read_u64().await.unwrap();
            }
            let mut payload = vec![0; len as usize];
            tcp.read_exact(&mut payload).await.unwrap();
            match b0 & 0x0f {
                0x9 => pings += 1,
                0x8 => return u16::from_be_bytes([payload[0], payload[1]]),
                _ => {}
            }
        }
    })
    .await
    .expect("closed within the deadline");
    assert_eq!(close_code, 4004);
    assert!(pings >= 2, "pinged before giving up ({pings})");
}

/// A reader that stops reading is closed with 4005; the others get every event.
async fn a_stopped_reader_gets_4005_while_others_keep_receiving(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.realtime.send_queue_len = 8;
            c.bus.history_len = 500;
        })
        .await;
    let token = env.token(Role::Viewer, "acme", "alice");
    let mut stopped = Ws::try_connect(&app, Auth::Header(&token), Some(4096))
        .await
        .unwrap();
    stopped.expect("auth_success").await;
    stopped.subscribe(&["metrics"], json!({})).await;
    let (mut reader, _) = Ws::open(&app, &token).await;
    reader.subscribe(&["metrics"], json!({})).await;

    let padding = "p".repeat(32 * 1024);
    let events = 400u64;
    let bus = app.state.bus.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=events {
            bus.publish_json(
                "acme",
                "metrics",
                "metrics:update",
                &json!({"i": i, "pad": padding}),
            )
            .await
            .unwrap();
        }
    });
    for offset in 1..=events {
        assert_eq!(next_event(&mut reader).await["offset"], offset);
    }
    publisher.await.unwrap();
    // The stopped reader now reads what reached it, then the close.
    assert_eq!(stopped.expect_close().await, (4005, "slow_consumer".into()));
}

async fn connection_quotas_close_4006(env: TestEnv) {
    let app = env
        .spawn_with(|c| {
            c.realtime.max_connections_per_subject = 2;
            c.realtime.max_connections_per_tenant = 3;
        })
        .await;
    let alice = env.token(Role::Viewer, "acme", "alice");
    let (first, _) = Ws::open(&app, &alice).await;
    let (_second, _) = Ws::open(&app, &alice).await;
    let mut third = Ws::try_connect(&app, Auth::Header(&alice), None)
        .await
        .unwrap();
    assert_eq!(third.expect_close().await, (4006, "quota_exceeded".into()));
    // Per tenant: bob is the tenant's third, carol its fourth.
    let (_bob, _) = Ws::open(&app, &env.token(Role::Viewer, "acme", "bob")).await;
    let carol = env.token(Role::Viewer, "acme", "carol");
    let mut refused = Ws::try_connect(&app, Auth::Header(&carol), None)
        .await
        .unwrap();
    assert_eq!(refused.expect_close().await.0, 4006);
    // Another tenant is not affected; a closed connection frees its place.
    Ws::open(&app, &env.token(Role::Viewer, "other", "carol")).await;
    drop(first);
    eventually(Duration::from_secs(10), "a freed place", || async {
        let mut ws = Ws::try_connect(&app, Auth::Header(&carol), None)
            .await
            .ok()?;
        (ws.next().await["type"] == "auth_success").then_some(())
    })
    .await;
}

async fn a_full_replica_answers_1013(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.realtime.max_connections_per_replica = 1)
        .await;
    let (_first, _) = Ws::open(&app, &env.admin()).await;
    let mut second = Ws::try_connect(&app, Auth::Header(&env.admin()), None)
        .await
        .unwrap();
    assert_eq!(second.expect_close().await, (1013, "overloaded".into()));
}

async fn shutdown_says_reconnect_then_1012(env: TestEnv) {
    let app = env
        .spawn_with(|c| c.realtime.reconnect_spread = Duration::from_millis(1500))
        .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Ws::open(&app, &env.admin()).await.0);
    }
    let stopping = tokio::spawn(app.stop());
    for ws in &mut clients {
        let notice = ws.expect("reconnect").await;
        assert_eq!(notice["payload"]["reason"], "shutdown");
        assert!(notice["payload"]["after_ms"].as_u64().unwrap() < 1500);
        assert_eq!(ws.expect_close().await, (1012, "service_restart".into()));
    }
    stopping.await.unwrap();
}

async fn a_client_close_is_answered_1000(env: TestEnv) {
    let app: TestApp = env.spawn().await;
    let (mut ws, _) = Ws::open(&app, &env.admin()).await;
    ws.send_raw(Message::Close(Some(CloseFrame {
        code: 1000.into(),
        reason: "bye".into(),
    })))
    .await;
    assert_eq!(ws.expect_close().await.0, 1000);
}

both_modes!(
    an_oversized_frame_closes_1009,
    malformed_frames_close_4000,
    a_flooding_client_gets_rate_limit_then_4008,
    a_silent_client_is_closed_4004,
    a_stopped_reader_gets_4005_while_others_keep_receiving,
    connection_quotas_close_4006,
    a_full_replica_answers_1013,
    shutdown_says_reconnect_then_1012,
    a_client_close_is_answered_1000,
);
