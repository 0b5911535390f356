//! The gateway session against the emulator, over real loopback sockets. Timers (pings,
//! dead peers, backoff) run under tokio's paused clock.

mod common;

use bytes::Bytes;
use common::emulator::{with_gateway, with_gateway_and};
use common::{CHANNEL, Client, config, server};
use std::time::Duration;
use zello_gateway::zello::protocol::{CodecHeader, ErrorCode, SendImage, SendLocation};
use zello_gateway::zello::session::{IncomingEnd, OutgoingEnd, OutgoingMessage, SessionEvent};
use zello_gateway::zello::sim::{Accounts, SimConfig, SimEvent, SimHandle};

const S: Duration = Duration::from_secs(1);

fn packet(i: u8) -> Bytes {
    Bytes::from(vec![i, i.wrapping_mul(7), 0xfc, 0x00, i])
}

/// Sends `packets` packets one every `every`, then finishes the message.
async fn send_all(msg: OutgoingMessage, packets: u32, every: Duration) {
    for i in 0..packets {
        msg.send(packet(i as u8));
        tokio::time::sleep(every).await;
    }
    msg.finish().await;
}

/// Waits for the end of `client`'s own message: why it ended and how many packets went.
async fn outgoing_end(client: &mut Client, within: Duration) -> (OutgoingEnd, u64) {
    expect_event!(
        client,
        within,
        SessionEvent::OutgoingEnded {
            reason,
            packets_sent,
            ..
        }
    );
    (reason, packets_sent)
}

/// The gateway's session on the emulator, cut off by `fault` (which must find it), once it
/// has seen it.
async fn cut_off(fault: impl FnOnce(&SimHandle) -> bool) -> (SimHandle, Client) {
    let (sim, mut gw) = with_gateway().await;
    assert!(fault(&sim));
    gw.expect(5 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
        .await;
    (sim, gw)
}

/// Waits (two minutes at most) until `client` has logged on again: how long that took.
async fn logged_on_again(client: &mut Client) -> Duration {
    let start = tokio::time::Instant::now();
    client
        .expect(Duration::from_secs(120), |e| {
            matches!(e, SessionEvent::LoggedOn { .. })
        })
        .await;
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn logon_readiness_and_platform_name() {
    let sim = server(SimConfig::default()).await;
    sim.faults().hold_channel_status();
    let mut gw = Client::start(config(&sim, "gateway1"));
    gw.logged_on(5 * S, false).await;
    // Logged on but the channel is not online yet: no start_stream may go out.
    let msg = gw.start_message().await;
    let id = msg.id();
    msg.send(packet(1));
    gw.expect(5 * S, |e| {
        matches!(e, SessionEvent::OutgoingEnded { local_id, reason: OutgoingEnd::NotReady, .. } if *local_id == id)
    })
    .await;
    sim.faults().release_channel_status();
    expect_event!(gw, 5 * S, SessionEvent::Channel { status, ready });
    assert!(ready);
    assert_eq!(status.channel, CHANNEL);
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e, SimEvent::StreamStart { .. })),
        "no stream may start before the channel is online"
    );
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn voice_message_between_two_clients_keeps_bytes_and_server_numbering() {
    let (_sim, mut gw, mut app) = with_gateway_and("alice").await;
    let header = CodecHeader::new(16000, 1, 20).unwrap();
    let msg = gw
        .handle
        .start_message(CHANNEL, header, None)
        .await
        .unwrap();
    expect_event!(gw, 5 * S, SessionEvent::OutgoingStarted { stream_id, .. });
    send_all(msg, 10, Duration::from_millis(20)).await;
    expect_event!(
        app,
        5 * S,
        SessionEvent::IncomingStart {
            stream_id: sid,
            from,
            header: h,
            channel,
            ..
        }
    );
    assert_eq!(
        (sid, from.as_str(), h, channel.as_str()),
        (stream_id, "gateway1", header, CHANNEL)
    );
    let mut got = Vec::new();
    loop {
        match app.expect(5 * S, |_| true).await {
            SessionEvent::IncomingAudio {
                stream_id: s,
                packet_id,
                data,
            } => {
                assert_eq!(s, stream_id);
                got.push((packet_id, data));
            }
            SessionEvent::IncomingEnd {
                stream_id: s,
                reason,
                packets,
            } => {
                assert_eq!((s, reason, packets), (stream_id, IncomingEnd::Stopped, 10));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..10).collect::<Vec<u32>>(), "server numbers packets");
    for (i, (_, data)) in got.iter().enumerate() {
        assert_eq!(data, &packet(i as u8), "payload intact");
    }
    assert_eq!(
        outgoing_end(&mut gw, 5 * S).await,
        (OutgoingEnd::Completed, 10)
    );
    gw.shutdown().await;
    app.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn for_routing_reaches_only_the_recipient() {
    let (sim, gw, mut bob) = with_gateway_and("bob").await;
    let mut carol = Client::ready(config(&sim, "carol")).await;
    let msg = gw
        .handle
        .start_message(CHANNEL, CodecHeader::default(), Some("bob".into()))
        .await
        .unwrap();
    msg.send(packet(1));
    msg.send(packet(2));
    msg.finish().await;
    expect_event!(bob, 5 * S, SessionEvent::IncomingStart { recipient, .. });
    assert_eq!(recipient.as_deref(), Some("bob"));
    bob.expect(5 * S, |e| {
        matches!(e, SessionEvent::IncomingEnd { packets: 2, .. })
    })
    .await;
    carol
        .expect_none(3 * S, |e| {
            matches!(
                e,
                SessionEvent::IncomingStart { .. } | SessionEvent::IncomingAudio { .. }
            )
        })
        .await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn listen_only_connection_is_refused() {
    let sim = server(SimConfig::default()).await;
    let mut cfg = config(&sim, "gateway1");
    cfg.listen_only = true;
    let mut gw = Client::ready(cfg).await;
    let msg = gw.start_message().await;
    msg.send(packet(1));
    let e = gw
        .expect(5 * S, |e| matches!(e, SessionEvent::OutgoingEnded { .. }))
        .await;
    assert!(
        matches!(
            &e,
            SessionEvent::OutgoingEnded {
                reason: OutgoingEnd::Rejected(ErrorCode::ListenOnlyConnection),
                stream_id: None,
                ..
            }
        ),
        "{e:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn text_location_and_image_relay() {
    let (_sim, gw, mut app) = with_gateway_and("alice").await;
    gw.handle
        .send_text(CHANNEL, "Radio check", None)
        .await
        .unwrap();
    let t = app.expect_text(5 * S).await;
    assert_eq!(
        (t.from.as_str(), t.text.as_str()),
        ("gateway1", "Radio check")
    );

    gw.handle
        .send_location(SendLocation {
            seq: None,
            channel: CHANNEL.into(),
            latitude: 46.714475,
            longitude: 8.1806319,
            accuracy: Some(10.0),
            formatted_address: Some("Meiringen".into()),
            recipient: None,
        })
        .await
        .unwrap();
    expect_event!(app, 5 * S, SessionEvent::Location(l));
    assert_eq!(l.latitude, 46.714475);
    assert_eq!(l.formatted_address.as_deref(), Some("Meiringen"));

    let thumb = Bytes::from_static(b"\xff\xd8thumb");
    let full = Bytes::from(vec![0xab; 5000]);
    let image_id = gw
        .handle
        .send_image(
            SendImage {
                seq: None,
                channel: CHANNEL.into(),
                kind: "jpeg".into(),
                thumbnail_content_length: 0,
                content_length: 0,
                width: Some(64),
                height: Some(48),
                source: Some("camera".into()),
                recipient: None,
            },
            thumb.clone(),
            full.clone(),
        )
        .await
        .unwrap();
    expect_event!(
        app,
        5 * S,
        SessionEvent::Image {
            meta,
            thumbnail,
            full: got_full
        }
    );
    assert_eq!(meta.message_id, image_id);
    assert_eq!(thumbnail, thumb);
    assert_eq!(got_full, full);

    // An empty text is refused with the server's error.
    let e = gw.handle.send_text(CHANNEL, "", None).await.unwrap_err();
    assert!(e.to_string().contains("empty message"), "{e}");
    // A channel we did not join.
    let e = gw
        .handle
        .send_text("Elsewhere", "x", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not online"), "{e}");
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_during_a_long_transmission() {
    let sim = server(SimConfig {
        ping_interval: 2 * S,
        pong_timeout: 2 * S,
        ..SimConfig::default()
    })
    .await;
    let mut gw = Client::ready(config(&sim, "gateway1")).await;
    let _app = Client::ready(config(&sim, "alice")).await;
    // A 20 s message at 60 ms packets, with pings every 2 s.
    let msg = gw.start_message().await;
    send_all(msg, 333, Duration::from_millis(60)).await;
    assert_eq!(
        outgoing_end(&mut gw, 5 * S).await,
        (OutgoingEnd::Completed, 333)
    );
    let stats = sim.stats("gateway1").unwrap();
    assert!(stats.pings_sent >= 9, "{stats:?}");
    assert!(stats.pongs_received + 1 >= stats.pings_sent, "{stats:?}");
    assert!(
        !sim.events()
            .iter()
            .any(|e| matches!(e, SimEvent::Disconnected { user, .. } if user == "gateway1")),
        "the gateway stayed connected"
    );
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn silence_is_not_death_but_a_frozen_server_is() {
    let (sim, mut gw) = with_gateway().await;
    // Ten idle minutes with pings every 30 s: no reconnect.
    gw.expect_none(Duration::from_secs(600), |e| {
        matches!(e, SessionEvent::Disconnected { .. })
    })
    .await;
    // A server that stops sending anything (no pings either) is dead after 2 x 30 s + margin.
    sim.faults().freeze("gateway1");
    let start = tokio::time::Instant::now();
    gw.expect(Duration::from_secs(120), |e| {
        matches!(e, SessionEvent::Disconnected { .. })
    })
    .await;
    // Dead 2 x 30 s + 15 s after the last frame, which was a ping up to 30 s before the freeze.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(45) && waited <= Duration::from_secs(76),
        "dead after {waited:?}"
    );
    // And the session comes back.
    logged_on_again(&mut gw).await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reconnects_with_the_refresh_token_then_full_credentials() {
    let (sim, mut gw) = cut_off(|sim| sim.faults().drop_connection("gateway1")).await;
    let start = tokio::time::Instant::now();
    gw.logged_on(10 * S, true).await;
    assert!(start.elapsed() <= 2 * S, "fast reconnect after a blip");
    gw.expect(5 * S, |e| {
        matches!(e, SessionEvent::Channel { ready: true, .. })
    })
    .await;

    // The refresh token is refused: the session falls back to full credentials at once.
    sim.faults().refuse_refresh_tokens(true);
    assert!(sim.faults().drop_connection("gateway1"));
    gw.logged_on(10 * S, false).await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn bad_credentials_are_retried_only_slowly() {
    let accounts =
        Accounts::parse("[[user]]\nname = \"gateway1\"\npassword = \"right\"\n").unwrap();
    let sim = server(SimConfig {
        accounts: Some(accounts),
        ..SimConfig::default()
    })
    .await;
    let mut gw = Client::start(config(&sim, "gateway1")); // password "pw" is wrong
    let e = gw
        .expect(5 * S, |e| matches!(e, SessionEvent::LogonRefused { .. }))
        .await;
    assert!(matches!(
        e,
        SessionEvent::LogonRefused {
            code: ErrorCode::NotAuthorized
        }
    ));
    // No second attempt within the next four minutes.
    gw.expect_none(Duration::from_secs(240), |e| {
        matches!(e, SessionEvent::LogonRefused { .. })
    })
    .await;
    let attempts = sim
        .events()
        .iter()
        .filter(|e| matches!(e, SimEvent::Logon { ok: false, .. }))
        .count();
    assert_eq!(attempts, 1);
    // Then it does try again.
    gw.expect(Duration::from_secs(200), |e| {
        matches!(e, SessionEvent::LogonRefused { .. })
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn kicked_gets_a_longer_delay() {
    let (_sim, mut gw) = cut_off(|sim| sim.faults().kick("gateway1")).await;
    let waited = logged_on_again(&mut gw).await;
    assert!(
        waited >= Duration::from_secs(60),
        "reconnected after {waited:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn delayed_start_stream_keeps_the_leading_audio() {
    let (sim, gw, mut app) = with_gateway_and("alice").await;
    sim.faults().delay_start_stream(Duration::from_millis(500));
    let msg = gw.start_message().await;
    // Six packets (360 ms) captured before the stream id arrives, then four more.
    send_all(msg, 10, Duration::from_millis(60)).await;
    let mut got = Vec::new();
    loop {
        match app.expect(5 * S, |_| true).await {
            SessionEvent::IncomingAudio { data, .. } => got.push(data),
            SessionEvent::IncomingEnd { .. } => break,
            _ => {}
        }
    }
    assert_eq!(got, (0..10u8).map(packet).collect::<Vec<_>>());
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rejected_or_unanswered_start_stream_ends_cleanly() {
    let (sim, mut gw) = with_gateway().await;
    sim.faults()
        .reject_start_stream_once(ErrorCode::FailedToStartStream);
    let msg = gw.start_message().await;
    msg.send(packet(1));
    msg.finish().await;
    assert_eq!(
        outgoing_end(&mut gw, 5 * S).await.0,
        OutgoingEnd::Rejected(ErrorCode::FailedToStartStream)
    );
    // A server that never answers start_stream: the message times out, no stop_stream.
    sim.faults().delay_start_stream(Duration::from_secs(3600));
    let msg = gw.start_message().await;
    msg.send(packet(2));
    assert_eq!(outgoing_end(&mut gw, 30 * S).await.0, OutgoingEnd::Timeout);
    drop(msg);
    assert!(
        !sim.events().iter().any(|e| matches!(
            e,
            SimEvent::Error {
                code: ErrorCode::NotEnoughParams,
                ..
            }
        )),
        "no stop_stream without a stream id"
    );
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_server_can_stop_our_stream() {
    let (sim, mut gw) = with_gateway().await;
    let msg = gw.start_message().await;
    msg.send(packet(1));
    gw.expect(5 * S, |e| matches!(e, SessionEvent::OutgoingStarted { .. }))
        .await;
    assert_eq!(sim.faults().stop_stream("gateway1").len(), 1);
    assert_eq!(
        outgoing_end(&mut gw, 5 * S).await.0,
        OutgoingEnd::StoppedByServer
    );
    // Packets after that go nowhere, and finishing sends no stop_stream.
    msg.send(packet(2));
    msg.finish().await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn echo_user_replays_a_message() {
    let sim = common::emulator::echo_server().await;
    let mut gw = Client::ready(config(&sim, "gateway1")).await;
    let msg = gw.start_message().await;
    send_all(msg, 5, Duration::from_millis(60)).await;
    expect_event!(gw, 10 * S, SessionEvent::IncomingStart { from, .. });
    assert_eq!(from, "echo");
    gw.expect(10 * S, |e| {
        matches!(e, SessionEvent::IncomingEnd { packets: 5, .. })
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn held_offline_on_purpose_then_online_again() {
    let (sim, mut gw, _dispatcher) = with_gateway_and("dispatcher").await;
    assert!(sim.online_users(CHANNEL).contains(&"gateway1".to_string()));

    // A message is going out when the session is asked to leave: it ends properly.
    let msg = gw.start_message().await;
    msg.send(packet(1));
    let started = sim
        .wait_for(
            5 * S,
            |e| matches!(e, SimEvent::StreamStart { user, .. } if user == "gateway1"),
        )
        .await
        .expect("the message starts");
    let SimEvent::StreamStart { stream_id, .. } = started.event else {
        unreachable!()
    };
    gw.handle.set_online(false);
    assert!(!gw.handle.wants_online());
    sim.wait_for(
        5 * S,
        |e| matches!(e, SimEvent::StreamStop { stream_id: id, .. } if *id == stream_id),
    )
    .await
    .expect("stop_stream before leaving");
    gw.expect(5 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
        .await;
    drop(msg);

    // Offline for as long as asked: no reconnect, requests answered as not connected.
    let logons = |sim: &zello_gateway::zello::sim::SimHandle| {
        sim.events()
            .iter()
            .filter(|e| matches!(e, SimEvent::Logon { user, ok: true, .. } if user == "gateway1"))
            .count()
    };
    assert_eq!(logons(&sim), 1);
    gw.expect_none(600 * S, |e| matches!(e, SessionEvent::LoggedOn { .. }))
        .await;
    assert_eq!(logons(&sim), 1);
    assert!(!sim.online_users(CHANNEL).contains(&"gateway1".to_string()));
    assert!(gw.handle.send_text(CHANNEL, "hello", None).await.is_err());

    // Asked back: logs on at once, channel ready again.
    gw.handle.set_online(true);
    gw.expect(5 * S, |e| {
        matches!(e, SessionEvent::Channel { ready: true, .. })
    })
    .await;
    assert_eq!(logons(&sim), 2);
    assert!(sim.online_users(CHANNEL).contains(&"gateway1".to_string()));
    gw.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_refresh_token_is_kept_for_the_next_start() {
    let sim = server(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("refresh-token");
    let with_file = || {
        let mut c = config(&sim, "gateway1");
        c.refresh_token_file = Some(kept.clone());
        c
    };
    // First start: full credentials; the token the server gives is kept, owner-only.
    let mut gw = Client::start(with_file());
    gw.logged_on(5 * S, false).await;
    let token = std::fs::read_to_string(&kept).expect("token kept");
    assert!(!token.trim().is_empty());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    gw.shutdown().await;

    // The next start (a restart of the service) logs on with it.
    let mut gw = Client::start(with_file());
    gw.logged_on(5 * S, true).await;
    gw.shutdown().await;

    // Refused after a restart: full credentials at once, and the refused token is replaced.
    sim.faults().refuse_refresh_tokens(true);
    let mut gw = Client::start(with_file());
    gw.logged_on(10 * S, false).await;
    let after = std::fs::read_to_string(&kept).unwrap_or_default();
    assert_ne!(after.trim(), token.trim(), "the refused token is not kept");
    gw.shutdown().await;

    // A folder that cannot be written to: the session still logs on (token in memory).
    let mut c = config(&sim, "gateway2");
    c.refresh_token_file = Some(dir.path().join("missing-folder").join("refresh-token"));
    let gw = Client::ready(c).await;
    gw.shutdown().await;
}
