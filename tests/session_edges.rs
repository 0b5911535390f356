//! The session over TLS, and against a hostile or silent server: every bad input is a typed,
//! logged error; the session survives where the real server would keep it; nothing panics.

mod common;

use common::{CHANNEL, Client, config, server};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use zello_gateway::secret::Secret;
use zello_gateway::zello::session::{SessionConfig, SessionEvent};
use zello_gateway::zello::sim::{SimConfig, load_tls};

const S: Duration = Duration::from_secs(1);

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn wss_to_the_emulator_with_a_private_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = temp_dir("wss");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let sim = server(SimConfig {
        tls: Some(load_tls(&cert_path, &key_path).unwrap()),
        ..SimConfig::default()
    })
    .await;
    assert!(sim.url().starts_with("wss://localhost:"));

    // Trusting the certificate through ca_file: logs on.
    let mut cfg = config(&sim, "gateway1");
    cfg.ca_file = Some(cert_path.clone());
    let gw = Client::ready(cfg).await;
    gw.shutdown().await;

    // Without it, the handshake fails and the session keeps retrying, never logging on.
    let mut untrusting = Client::start(config(&sim, "gateway2"));
    untrusting
        .expect_none(3 * S, |e| matches!(e, SessionEvent::LoggedOn { .. }))
        .await;
    untrusting.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A server that logs the client on, reports the channel online, then sends `frames`.
async fn hostile_server(frames: Vec<Message>) -> (String, Arc<AtomicUsize>) {
    scripted_server(frames, false).await
}

/// Like [`hostile_server`]; with `status_first` the channel status precedes the logon reply.
async fn scripted_server(frames: Vec<Message>, status_first: bool) -> (String, Arc<AtomicUsize>) {
    counting_server(move |tcp| {
        let frames = frames.clone();
        async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let Some(Ok(Message::Text(logon))) = ws.next().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(logon.as_str()).unwrap();
            let seq = v["seq"].as_u64().unwrap();
            let reply = Message::text(format!(r#"{{"seq":{seq},"success":true}}"#));
            let status = Message::text(format!(
                r#"{{"command":"on_channel_status","channel":"{CHANNEL}","status":"online","users_online":1}}"#
            ));
            let (first, second) = if status_first {
                (status, reply)
            } else {
                (reply, status)
            };
            let _ = ws.send(first).await;
            let _ = ws.send(second).await;
            for f in frames {
                if ws.send(f).await.is_err() {
                    return;
                }
            }
            // Keep the connection open, reading whatever comes.
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await
}

/// A server on a loopback port that hands each connection (no delay on it) to `serve` on
/// a task of its own: its `ws://` URL, and how many connections it has accepted.
async fn counting_server<F, Fut>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tcp.set_nodelay(true).ok();
            tokio::spawn(serve(tcp));
        }
    });
    (url, connections)
}

fn hostile_config(url: String) -> SessionConfig {
    SessionConfig {
        server: url,
        username: "gateway1".into(),
        password: Secret::new("pw"),
        channels: vec![CHANNEL.into()],
        max_message_size: 64 * 1024,
        ..SessionConfig::default()
    }
}

#[tokio::test]
async fn garbage_from_the_server_is_survived() {
    let frames = vec![
        Message::text("{not json"),
        Message::text("[]"),
        Message::text(r#"{"command":"on_stream_stop","stream_id":"nope"}"#),
        Message::text(r#"{"command":"on_something_new","x":1}"#),
        Message::text(r#"{"seq":999,"success":true}"#),
        Message::text(
            r#"{"command":"on_stream_start","stream_id":5,"codec":"opus","codec_header":"AAAAAA==","packet_duration":60,"channel":"Dispatch","from":"x"}"#,
        ),
        Message::binary(vec![0x01, 0, 0]),
        Message::binary(vec![0x07; 20]),
        Message::binary(vec![0x01, 0, 0, 0, 5, 0, 0, 0, 0, 1, 2, 3]),
        Message::binary(vec![0x01, 0, 0, 0, 77, 0, 0, 0, 0, 1, 2, 3]),
        Message::text(r#"{"command":"on_error","error":"invalid audio packet"}"#),
        Message::text(
            r#"{"command":"on_text_message","channel":"Dispatch","from":"a","for":false,"message_id":1,"text":"still here"}"#,
        ),
    ];
    let (url, connections) = hostile_server(frames).await;
    let mut gw = Client::start(hostile_config(url));
    gw.expect(5 * S, |e| {
        matches!(e, SessionEvent::Channel { ready: true, .. })
    })
    .await;
    assert_eq!(gw.expect_text(5 * S).await.text, "still here");
    let stats = gw.handle.stats();
    // Three undecodable text frames, two undecodable binary frames; the stream with the
    // impossible codec header is ignored, so its packet and the unknown stream's are counted.
    assert_eq!(stats.bad_frames.load(Ordering::Relaxed), 5);
    assert_eq!(stats.unknown_stream_packets.load(Ordering::Relaxed), 1);
    assert_eq!(stats.packets_received.load(Ordering::Relaxed), 0);
    gw.expect_none(S, |e| {
        matches!(
            e,
            SessionEvent::Disconnected { .. } | SessionEvent::IncomingStart { .. }
        )
    })
    .await;
    assert_eq!(connections.load(Ordering::SeqCst), 1, "no reconnect needed");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_drops_the_connection_and_the_session_reconnects() {
    let (url, connections) = hostile_server(vec![Message::binary(vec![1u8; 200 * 1024])]).await;
    let mut gw = Client::start(hostile_config(url));
    gw.expect(5 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
        .await;
    gw.expect(10 * S, |e| matches!(e, SessionEvent::LoggedOn { .. }))
        .await;
    assert!(connections.load(Ordering::SeqCst) >= 2);
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_the_logon_is_left_and_retried_with_backoff() {
    let (url, attempts) = counting_server(|tcp| async move {
        if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
            // Read and never answer.
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
    let mut gw = Client::start(hostile_config(url));
    gw.expect(15 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
        .await;
    // Over two minutes: one attempt per (10 s logon timeout + growing backoff), not a storm.
    let _ = gw.collect(Duration::from_secs(120)).await;
    let n = attempts.load(Ordering::SeqCst);
    assert!((3..=8).contains(&n), "{n} attempts in about 135 s");
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_server_is_retried_with_growing_delays() {
    // Bind and drop to get a port nobody listens on.
    let port = common::free_port();
    let mut gw = Client::start(hostile_config(format!("ws://127.0.0.1:{port}/ws")));
    gw.expect_none(Duration::from_secs(10), |e| {
        matches!(e, SessionEvent::LoggedOn { .. })
    })
    .await;
    // Requests while offline are answered at once, not queued forever.
    let e = gw.handle.send_text(CHANNEL, "x", None).await.unwrap_err();
    assert!(e.to_string().contains("not connected"), "{e}");
    gw.shutdown().await;
}

#[test]
fn bad_urls_are_refused_before_connecting() {
    let stop = tokio_util::sync::CancellationToken::new();
    for url in ["http://zello.io/ws", "ws://192.0.2.7/ws", "not a url"] {
        let cfg = SessionConfig {
            server: url.into(),
            ..SessionConfig::default()
        };
        let err = zello_gateway::zello::session::spawn(cfg, stop.clone())
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert!(err.to_string().contains(url), "{err}");
    }
}

#[tokio::test]
async fn a_channel_status_before_the_logon_reply_still_makes_the_channel_ready() {
    let (url, _) = scripted_server(vec![], true).await;
    let mut gw = Client::start(hostile_config(url));
    let first = gw
        .expect(5 * S, |e| matches!(e, SessionEvent::Channel { .. }))
        .await;
    assert!(
        matches!(first, SessionEvent::Channel { ready: false, .. }),
        "not ready before the logon reply: {first:?}"
    );
    gw.expect(5 * S, |e| matches!(e, SessionEvent::LoggedOn { .. }))
        .await;
    gw.expect(5 * S, |e| {
        matches!(e, SessionEvent::Channel { ready: true, .. })
    })
    .await;
    gw.shutdown().await;
}
