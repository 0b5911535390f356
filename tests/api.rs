//! The status and event API over real loopback sockets, in front of a whole gateway on the
//! Zello emulator: every endpoint, the WebSocket protocol with a full duplex message, resumes,
//! errors and limits, lag and slow consumers, tokens, Origin and Host rules.

mod common;

use common::CHANNEL;
use common::api::{
    CONTROL_TOKEN, Closed, RADIO, READ_TOKEN, Rig, api_on, get, get_with, quick, request, tokens,
    try_ws, ws, ws_small_buffer,
};
use common::emulator::talk_pcm;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zello_gateway::audio::{CODEC_RATE, speech};
use zello_gateway::state::{GatewayEvent, GatewayState, StateHub};

const S: Duration = Duration::from_secs(1);

/// The types of `messages`, in order.
fn types(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The radio speaks for a moment (carrier up, then down): one message to the channel.
async fn radio_talks(rig: &Rig) {
    rig.carrier.set(true);
    tokio::time::sleep(Duration::from_millis(900)).await;
    rig.carrier.set(false);
}

/// The dispatcher talks for `packets` 60 ms packets: one message from the channel.
async fn dispatcher_talks(rig: &Rig, packets: usize) {
    let pcm = speech::speech_like(CODEC_RATE, packets as f32 * 0.06, 5);
    talk_pcm(&rig.app, &pcm[..packets * 960]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn every_rest_endpoint_answers_from_the_gateway_state() {
    let rig = Rig::start(&tokens(false, false), quick(), 3.0).await;
    let api = rig.api;

    assert_eq!(get(api, "/livez").await.data(), json!({"live": true}));
    assert_eq!(get(api, "/readyz").await.data(), json!({"ready": true}));
    let verbose = get(api, "/readyz?verbose").await.data();
    let checks = verbose["checks"].as_array().unwrap();
    assert_eq!(checks[0]["name"], "gateway started");
    assert_eq!(checks[0]["ok"], true);
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == format!("channel {CHANNEL} online") && c["ok"] == true),
        "{verbose}"
    );

    let status = get(api, "/api/v1/status").await.data();
    assert_eq!(status["gateway"]["link"]["state"], "logged_on");
    assert_eq!(status["channels"][CHANNEL]["online"], true);
    assert_eq!(status["radios"][RADIO]["channel"], CHANNEL);
    assert!(status["seq"].as_u64().unwrap() > 0);

    let radios = get(api, "/api/v1/radios").await.data();
    assert_eq!(radios.as_array().unwrap().len(), 1);
    assert_eq!(radios[0]["name"], RADIO);
    let radio = get(api, &format!("/api/v1/radios/{RADIO}")).await.data();
    assert_eq!(radio["name"], RADIO);
    assert_eq!(radio["ptt"], false);
    assert_eq!(
        get(api, "/api/v1/radios/nope").await.error(404),
        "unknown_radio"
    );

    let channels = get(api, "/api/v1/channels").await.data();
    assert_eq!(channels[0]["name"], CHANNEL);
    // A channel name with a space, encoded in the path.
    let channel = get(api, &format!("/api/v1/channels/{CHANNEL}"))
        .await
        .data();
    assert_eq!(channel["online"], true);
    assert_eq!(
        get(api, "/api/v1/channels/nope").await.error(404),
        "unknown_channel"
    );

    let bindings = get(api, "/api/v1/bindings").await.data();
    assert!(
        bindings["bindings"]["radio"]
            .as_array()
            .unwrap()
            .contains(&json!("radio.CARRIER_UP.{RADIO}")),
        "{bindings}"
    );
    assert_eq!(
        bindings["patterns"],
        json!([
            "gateway",
            "radio:{RADIO}",
            "channel:{CHANNEL}",
            "levels:{RADIO}"
        ])
    );
    assert!(
        bindings["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!("radio:vhf1"))
    );

    // Sockets: none, then the one opened, with its rooms, source and agent.
    assert_eq!(get(api, "/api/v1/sockets").await.data(), json!([]));
    let (mut sock, ready) = ws(api).await;
    let id = ready["data"]["session_id"].as_str().unwrap().to_string();
    sock.send(json!({"op": "SUBSCRIBE", "room": "radio:*", "id": 1}))
        .await;
    sock.until("SNAPSHOT", 5 * S).await;
    let listed = get(api, "/api/v1/sockets").await.data();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["rooms"], json!(["radio:*"]));
    assert!(
        listed[0]["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        listed[0]["connected_since"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let one = get(api, &format!("/api/v1/sockets/{id}")).await.data();
    assert_eq!(one["id"], id.as_str());
    assert_eq!(
        get(api, "/api/v1/sockets/ws-999").await.error(404),
        "unknown_socket"
    );

    // Metrics in the Prometheus text format.
    let metrics = get(api, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics.body.contains("zello_gateway_logged_on 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("zello_gateway_api_ws_connections 1"),
        "{}",
        metrics.body
    );

    // The dashboard, an unknown path, a method the path does not take, control disabled.
    let page = get(api, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(get(api, "/api/v1/nothing").await.error(404), "not_found");
    let posted = request(
        api,
        "POST",
        &format!("/api/v1/radios/{RADIO}/unkey"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(posted.error(403), "control_disabled");
    // A plain GET on the WebSocket's path.
    assert_eq!(
        get(api, "/api/v1/ws").await.error(426),
        "websocket_required"
    );

    drop(sock);
    rig.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_duplex_message_arrives_in_order_with_its_fields() {
    let rig = Rig::start(&tokens(false, false), quick(), 3.0).await;
    let (mut sock, ready) = ws(rig.api).await;
    assert_eq!(ready["data"]["heartbeat_interval_ms"], 25_000);
    assert_eq!(ready["data"]["version"], 1);
    assert!(
        ready["data"]["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!("gateway"))
    );
    sock.send(json!({"op": "SUBSCRIBE", "rooms": ["radio:vhf1", "channel:*"], "id": 7}))
        .await;
    let first = sock.until("SNAPSHOT", 5 * S).await;
    assert_eq!(
        first[0],
        json!({"type": "SUBSCRIBED", "room": "radio:vhf1", "id": 7})
    );
    assert_eq!(first[1]["room"], "radio:vhf1");
    assert_eq!(first[1]["data"]["radio"], RADIO);
    let second = sock.until("SNAPSHOT", 5 * S).await;
    assert_eq!(second[0]["room"], "channel:*");
    assert_eq!(second[1]["room"], format!("channel:{CHANNEL}"));
    assert_eq!(second[1]["data"]["online"], true);

    // The radio talks: CARRIER_UP, MESSAGE_START, CARRIER_DOWN, MESSAGE_STOP on its room,
    // the start and stop mirrored on the channel's.
    radio_talks(&rig).await;
    let mut seen = Vec::new();
    // The stop on the radio's room, then its mirror on the channel's (same seq).
    while !seen
        .iter()
        .any(|m: &Value| m["type"] == "MESSAGE_STOP" && m["room"] == format!("channel:{CHANNEL}"))
    {
        seen.push(sock.next_json(10 * S).await);
    }
    let on_radio: Vec<&Value> = seen.iter().filter(|m| m["room"] == "radio:vhf1").collect();
    assert_eq!(
        on_radio
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "CARRIER_UP",
            "MESSAGE_START",
            "CARRIER_DOWN",
            "MESSAGE_STOP"
        ],
        "{seen:#?}"
    );
    let start = &on_radio[1]["data"];
    assert_eq!(start["direction"], "to_channel");
    assert_eq!(start["channel"], CHANNEL);
    assert_eq!(start["sample_rate_hz"], 16000);
    assert!(start["stream_id"].as_u64().is_some(), "{start}");
    let stop = &on_radio[3]["data"];
    assert_eq!(stop["outcome"], "completed");
    assert!(stop["packets"].as_u64().unwrap() > 5, "{stop}");
    assert!(stop["duration_ms"].as_u64().unwrap() > 300, "{stop}");
    assert!(stop["peak_dbfs"].as_f64().unwrap() < 0.0, "{stop}");
    // Sequence numbers grow; each event has an RFC 3339 time.
    let seqs: Vec<u64> = seen.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    assert!(
        seen.iter()
            .all(|m| m["ts"].as_str().unwrap().ends_with('Z'))
    );
    let mirrored: Vec<&str> = seen
        .iter()
        .filter(|m| m["room"] == format!("channel:{CHANNEL}"))
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(mirrored, ["MESSAGE_START", "MESSAGE_STOP"], "{seen:#?}");

    // The dispatcher talks: MESSAGE_START (from_channel), PTT_ON, MESSAGE_STOP, PTT_OFF.
    dispatcher_talks(&rig, 10).await;
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["type"] == "PTT_OFF") {
        seen.push(sock.next_json(10 * S).await);
    }
    let on_radio: Vec<&Value> = seen.iter().filter(|m| m["room"] == "radio:vhf1").collect();
    assert_eq!(
        on_radio
            .iter()
            .map(|m| m["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["MESSAGE_START", "PTT_ON", "MESSAGE_STOP", "PTT_OFF"],
        "{seen:#?}"
    );
    let start = &on_radio[0]["data"];
    assert_eq!(start["direction"], "from_channel");
    assert_eq!(start["from"], "dispatcher");
    let stop = &on_radio[2]["data"];
    assert_eq!(stop["outcome"], "completed");
    assert_eq!(stop["packets"], 10);
    assert!(
        on_radio[3]["data"]["keyed_ms"].as_u64().unwrap() > 500,
        "{seen:#?}"
    );

    // The metrics counted both messages.
    let metrics = get(rig.api, "/metrics").await.body;
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} {labels:?} in {metrics}"))
    };
    let completed = |direction| {
        value(
            "zello_gateway_messages_total",
            &[
                ("radio", RADIO),
                ("direction", direction),
                ("outcome", "completed"),
            ],
        )
    };
    assert_eq!(completed("to_channel"), 1.0);
    assert_eq!(completed("from_channel"), 1.0);
    assert_eq!(
        value("zello_gateway_radio_keyups_total", &[("radio", RADIO)]),
        1.0
    );
    assert_eq!(
        value(
            "zello_gateway_audio_packets_total",
            &[("radio", RADIO), ("direction", "from_channel")]
        ),
        10.0
    );
    assert_eq!(value("zello_gateway_api_ws_connections", &[]), 1.0);
    assert!(value("zello_gateway_api_ws_events_sent_total", &[]) >= 10.0);

    drop(sock);
    rig.stop().await;
}

/// A hub with radio `vhf1` on `Dispatch` and its API, no gateway: events are published by
/// the test.
async fn bare_api(
    tokens: &zello_gateway::config::ApiTokens,
) -> (StateHub, std::net::SocketAddr, CancellationToken) {
    let hub = StateHub::new(GatewayState::new([(
        RADIO.to_string(),
        CHANNEL.to_string(),
    )]));
    let shutdown = CancellationToken::new();
    let addr = api_on(&hub, tokens, quick(), &shutdown).await;
    (hub, addr, shutdown)
}

fn carrier(up: bool) -> GatewayEvent {
    let radio = RADIO.to_string();
    if up {
        GatewayEvent::CarrierUp { radio }
    } else {
        GatewayEvent::CarrierDown { radio }
    }
}

/// Waits until the API's feed has taken in the state's last event (a status read sees it).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_resume_sends_the_missed_events_or_a_snapshot_when_too_old() {
    let (hub, api, shutdown) = bare_api(&tokens(false, false)).await;
    let (mut sock, _) = ws(api).await;
    sock.send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    sock.until("SNAPSHOT", 5 * S).await;
    hub.publish(carrier(true));
    let up = sock.until("CARRIER_UP", 5 * S).await;
    let last = up.last().unwrap()["seq"].as_u64().unwrap();
    drop(sock);

    // Missed while away: two events, then a resume from the last one seen.
    hub.publish(carrier(false));
    hub.publish(carrier(true));
    settle().await;
    let (mut sock, _) = ws(api).await;
    sock.send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1", "since": last, "id": 2}))
        .await;
    let replies = [
        sock.next_json(5 * S).await,
        sock.next_json(5 * S).await,
        sock.next_json(5 * S).await,
    ];
    assert_eq!(
        types(&replies),
        ["SUBSCRIBED", "CARRIER_DOWN", "CARRIER_UP"]
    );
    assert_eq!(replies[1]["seq"].as_u64(), Some(last + 1));
    assert_eq!(replies[2]["seq"].as_u64(), Some(last + 2));
    // Nothing twice: the next event is the next one.
    hub.publish(carrier(false));
    let next = sock.next_json(5 * S).await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("CARRIER_DOWN"), Some(last + 3))
    );

    // From before what the ring keeps: a snapshot instead.
    for i in 0..1100 {
        hub.publish(carrier(i % 2 == 0));
    }
    settle().await;
    let (mut late, _) = ws(api).await;
    late.send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1", "since": last}))
        .await;
    let replies = late.until("SNAPSHOT", 5 * S).await;
    assert_eq!(types(&replies), ["SUBSCRIBED", "SNAPSHOT"]);
    assert_eq!(replies[1]["seq"].as_u64(), Some(hub.snapshot().seq));
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn bad_messages_get_their_error_and_the_socket_stays_open() {
    let (hub, api, shutdown) = bare_api(&tokens(false, false)).await;
    let (mut sock, _) = ws(api).await;
    let mut expect = async |sent: Option<Value>, text: Option<String>, code: &str| {
        match (sent, text) {
            (Some(v), _) => sock.send(v).await,
            (None, Some(t)) => sock.send_text(t).await,
            _ => unreachable!(),
        }
        let reply = sock.next_json(5 * S).await;
        assert_eq!(reply["type"], "ERROR", "{reply}");
        assert_eq!(reply["code"], code, "{reply}");
        reply
    };
    expect(None, Some("{not json".into()), "bad_json").await;
    let e = expect(Some(json!({"op": "DANCE", "id": 4})), None, "unknown_op").await;
    assert_eq!(
        (e["id"].as_u64(), e["data"].as_str()),
        (Some(4), Some("unknown op"))
    );
    let e = expect(
        Some(json!({"op": "SUBSCRIBE", "room": "radio:nope", "id": 5})),
        None,
        "unknown_room",
    )
    .await;
    assert_eq!(e["data"], "unknown room");
    expect(
        Some(json!({"op": "SUBSCRIBE", "room": "planet:mars"})),
        None,
        "unknown_room",
    )
    .await;
    expect(Some(json!({"op": "SUBSCRIBE"})), None, "bad_json").await;
    expect(
        None,
        Some(format!(
            "{{\"op\":\"PING\",\"pad\":\"{}\"}}",
            "x".repeat(5000)
        )),
        "message_too_large",
    )
    .await;
    // Still open: PING answered.
    sock.send(json!({"op": "PING", "id": 9})).await;
    assert_eq!(
        sock.next_json(5 * S).await,
        json!({"type": "PONG", "id": 9})
    );

    // Over the largest frame read at all: closed with 1009.
    sock.send_text("x".repeat(70 * 1024)).await;
    assert_eq!(sock.closed(5 * S).await, Closed::Code(1009));
    drop(hub);
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_subscribe_stops_at_32_subscriptions() {
    let radios = (0..40).map(|i| (format!("r{i}"), CHANNEL.to_string()));
    let hub = StateHub::new(GatewayState::new(radios));
    let shutdown = CancellationToken::new();
    let api = api_on(&hub, &tokens(false, false), quick(), &shutdown).await;
    let (mut sock, _) = ws(api).await;
    let rooms: Vec<String> = (0..40).map(|i| format!("radio:r{i}")).collect();
    sock.send(json!({"op": "SUBSCRIBE", "rooms": rooms, "id": 1}))
        .await;
    let mut subscribed = 0;
    let mut refused = Vec::new();
    while subscribed + refused.len() < 40 {
        let m = sock.next_json(5 * S).await;
        match m["type"].as_str().unwrap() {
            "SUBSCRIBED" => subscribed += 1,
            "ERROR" => refused.push(m),
            "SNAPSHOT" => {}
            other => panic!("{other}: {m}"),
        }
    }
    assert_eq!(subscribed, 32);
    assert_eq!(refused.len(), 8);
    assert!(
        refused
            .iter()
            .all(|e| e["code"] == "too_many_subscriptions" && e["id"] == 1)
    );
    assert_eq!(refused[0]["room"], "radio:r32");
    // A wildcard instead still fits once one is dropped.
    sock.send(json!({"op": "UNSUBSCRIBE", "room": "radio:r0"}))
        .await;
    sock.until("UNSUBSCRIBED", 5 * S).await;
    sock.send(json!({"op": "SUBSCRIBE", "room": "radio:*"}))
        .await;
    sock.until("SUBSCRIBED", 5 * S).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_guard_everything_but_health_and_the_page_and_control_takes_the_control_token() {
    let (_hub, api, shutdown) = bare_api(&tokens(true, true)).await;
    // Health needs no token; not started yet: 503.
    assert_eq!(get(api, "/livez").await.status, 200);
    assert_eq!(get(api, "/readyz").await.error(503), "not_ready");
    let verbose = request(api, "GET", "/readyz?verbose", &[], "").await;
    assert_eq!(verbose.status, 503);
    assert_eq!(verbose.json()["data"]["checks"][0]["ok"], false);

    // The dashboard page itself is open (a browser cannot send a token to open it): the
    // token comes in its fragment and goes with each call the page makes.
    let page = get(api, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"), "{}", page.body);
    for path in ["/api/v1/status", "/metrics", "/api/v1/bindings"] {
        let missing = get(api, path).await;
        assert_eq!(missing.error(401), "unauthorized", "{path}");
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer realm=\"zello-gateway\"")
        );
        assert_eq!(
            get_with(api, path, "not-the-token-at-all-0000")
                .await
                .error(401),
            "unauthorized"
        );
        assert_eq!(get_with(api, path, READ_TOKEN).await.status, 200, "{path}");
        assert_eq!(
            get_with(api, path, CONTROL_TOKEN).await.status,
            200,
            "{path}"
        );
    }
    let basic = request(
        api,
        "GET",
        "/api/v1/status",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        "",
    )
    .await;
    assert_eq!(basic.error(401), "unauthorized");
    // Control endpoints: the read token is not enough.
    let unkey = format!("/api/v1/radios/{RADIO}/unkey");
    let bearer = format!("Bearer {READ_TOKEN}");
    let with_read = request(api, "POST", &unkey, &[("Authorization", &bearer)], "{}").await;
    assert_eq!(with_read.error(403), "forbidden");
    assert_eq!(
        request(api, "POST", &unkey, &[], "{}").await.error(401),
        "unauthorized"
    );

    // WebSocket: AUTH as the first message.
    let mut sock = try_ws(api, "/api/v1/ws", &[]).await.unwrap();
    sock.send(json!({"op": "AUTH", "token": READ_TOKEN})).await;
    assert_eq!(sock.next_json(5 * S).await["type"], "READY");
    // ?token= and the Authorization header.
    let mut sock = try_ws(api, &format!("/api/v1/ws?token={READ_TOKEN}"), &[])
        .await
        .unwrap();
    assert_eq!(sock.next_json(5 * S).await["type"], "READY");
    let mut sock = try_ws(api, "/api/ws", &[("Authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(sock.next_json(5 * S).await["type"], "READY");
    // A wrong token at the handshake: 401.
    let refused = try_ws(api, "/api/v1/ws?token=wrong-wrong-wrong-wrong", &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(401));
    // A wrong AUTH, another op first, or silence: ERROR not_authenticated, closed 1008.
    for first in [
        Some(json!({"op": "AUTH", "token": "wrong-wrong-wrong-wrong"})),
        Some(json!({"op": "SUBSCRIBE", "room": "gateway"})),
        None,
    ] {
        let mut sock = try_ws(api, "/api/v1/ws", &[]).await.unwrap();
        if let Some(m) = &first {
            sock.send(m.clone()).await;
        }
        let reply = sock.next_json(5 * S).await;
        assert_eq!(reply["code"], "not_authenticated", "{first:?}: {reply}");
        assert!(!reply.to_string().contains("wrong-wrong"), "{reply}");
        assert_eq!(sock.closed(5 * S).await, Closed::Code(1008), "{first:?}");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn foreign_origins_and_rebound_hosts_are_refused() {
    let (_hub, api, shutdown) = bare_api(&tokens(false, false)).await;
    let own = format!("http://{api}");
    let ok = request(api, "GET", "/api/v1/status", &[("Origin", &own)], "").await;
    assert_eq!(ok.status, 200);
    let evil = request(
        api,
        "GET",
        "/api/v1/status",
        &[("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(evil.error(403), "forbidden_origin");
    // DNS rebinding: a hostile name pointed at 127.0.0.1 still sends its name as Host.
    let rebound = format!("evil.example:{}", api.port());
    let host = request(api, "GET", "/api/v1/status", &[("Host", &rebound)], "").await;
    assert_eq!(host.error(403), "forbidden_host");
    let local = format!("localhost:{}", api.port());
    assert_eq!(
        request(api, "GET", "/api/v1/status", &[("Host", &local)], "")
            .await
            .status,
        200
    );
    // The same at the WebSocket handshake.
    let origin = try_ws(api, "/api/v1/ws", &[("Origin", "http://evil.example")]).await;
    assert_eq!(origin.err().map(|e| e.0), Some(403));
    let host = try_ws(api, "/api/v1/ws", &[("Host", &rebound)]).await;
    assert_eq!(host.err().map(|e| e.0), Some(403));
    let mut fine = try_ws(api, "/api/v1/ws", &[("Origin", &own)])
        .await
        .unwrap();
    assert_eq!(fine.next_json(5 * S).await["type"], "READY");
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn a_hundred_sockets_at_once_get_sixteen_seats_and_the_gateway_carries_on() {
    let rig = Rig::start(&tokens(false, false), quick(), 3.0).await;
    let attempts = (0..100).map(|_| try_ws(rig.api, "/api/v1/ws", &[]));
    let results = futures_util::future::join_all(attempts).await;
    let (open, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(open.len(), 16);
    // Refused with 503 at the handshake, or closed unanswered past the connection limit.
    assert!(
        refused.iter().all(|r| matches!(r, Err((503 | 0, _)))),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| matches!(r, Err((503, body)) if body.contains("too_many_sockets")))
    );
    let mut open: Vec<_> = open.into_iter().map(Result::unwrap).collect();
    // The gateway still carries a message, and the sockets see it.
    open[0]
        .send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    open[0].until("SNAPSHOT", 5 * S).await;
    radio_talks(&rig).await;
    open[0].until("MESSAGE_STOP", 10 * S).await;
    // A seat freed is a seat to take.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_again, _) = ws(rig.api).await;
    rig.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_socket_that_falls_behind_gets_resync_and_a_fresh_snapshot() {
    let hub = StateHub::new(GatewayState::new([(
        RADIO.to_string(),
        CHANNEL.to_string(),
    )]));
    let shutdown = CancellationToken::new();
    // Pings unanswered while the client does not read must not end it here.
    let timings = zello_gateway::api::ws::Timings {
        stall: Duration::from_secs(20),
        dead_after: Duration::from_secs(30),
        ..quick()
    };
    let api = api_on(&hub, &tokens(false, false), timings, &shutdown).await;
    let mut slow = ws_small_buffer(api).await;
    slow.send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    slow.until("SNAPSHOT", 5 * S).await;
    // A burst while the client does not read: the session's sends wait, its backlog overflows.
    for i in 0..6000 {
        hub.publish(carrier(i % 2 == 0));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = slow.until("RESYNC", 20 * S).await;
    let resync = seen.last().unwrap();
    assert!(resync["data"]["missed"].as_u64().unwrap() > 0, "{resync}");
    let snapshot = slow.next_json(5 * S).await;
    assert_eq!(snapshot["type"], "SNAPSHOT");
    assert_eq!(snapshot["room"], "radio:vhf1");
    let listed = get(api, "/api/v1/sockets").await.data();
    assert!(listed[0]["lag_events"].as_u64().unwrap() >= 1, "{listed}");
    assert!(listed[0]["dropped"].as_u64().unwrap() > 0, "{listed}");
    let metrics = get(api, "/metrics").await.body;
    assert!(
        !metrics.contains("zello_gateway_api_ws_lagged_total 0"),
        "{metrics}"
    );
    // Events after the snapshot follow, none older than it.
    let floor = snapshot["seq"].as_u64().unwrap();
    hub.publish(carrier(true));
    loop {
        let m = slow.next_json(5 * S).await;
        if m["type"] == "RESYNC" || m["type"] == "SNAPSHOT" {
            continue;
        }
        assert!(m["seq"].as_u64().unwrap() > floor, "{m}");
        if m["seq"].as_u64() == Some(hub.snapshot().seq) {
            break;
        }
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn a_socket_that_stops_reading_is_closed_and_the_others_carry_on() {
    let (hub, api, shutdown) = bare_api(&tokens(false, false)).await;
    let mut stalled = ws_small_buffer(api).await;
    stalled
        .send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    stalled.until("SNAPSHOT", 5 * S).await;
    let (mut healthy, _) = ws(api).await;
    healthy
        .send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    healthy.until("SNAPSHOT", 5 * S).await;
    let reader = tokio::spawn(async move {
        let mut count = 0u64;
        while let Some(m) = healthy.try_next_json(3 * S).await {
            if m["type"] == "CARRIER_UP" || m["type"] == "CARRIER_DOWN" {
                count += 1;
            }
        }
        count
    });
    for i in 0..4000 {
        hub.publish(carrier(i % 2 == 0));
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Closed within the stall limit (1 s here) and then some.
    let deadline = tokio::time::Instant::now() + 10 * S;
    loop {
        let listed = get(api, "/api/v1/sockets").await.data();
        if listed.as_array().unwrap().len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(api, "/metrics").await.body;
    assert!(
        metrics.contains("zello_gateway_api_ws_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
    // The healthy socket read every event (or was resynced; it was not cut off).
    let count = reader.await.unwrap();
    assert!(count > 1000, "{count}");
    // The stalled one ends (its close frame, if it got through, says 1013).
    let end = stalled.closed(10 * S).await;
    assert!(
        matches!(end, Closed::Code(1013) | Closed::Dropped),
        "{end:?}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "current_thread")]
async fn half_open_connections_are_closed() {
    let (_hub, api, shutdown) = bare_api(&tokens(false, false)).await;
    // A TCP connection that never sends its request: closed after the header limit (1 s).
    let mut idle = tokio::net::TcpStream::connect(api).await.unwrap();
    let mut buf = [0u8; 64];
    use tokio::io::AsyncReadExt as _;
    let read = tokio::time::timeout(5 * S, idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // A WebSocket whose client never answers pings: closed after 1.5 s without a word.
    let (silent, _) = ws(api).await;
    assert_eq!(
        get(api, "/api/v1/sockets")
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(3 * S).await;
    assert_eq!(get(api, "/api/v1/sockets").await.data(), json!([]));
    drop(silent);
    // One that answers stays.
    let (mut talking, _) = ws(api).await;
    let until = tokio::time::Instant::now() + 3 * S;
    while tokio::time::Instant::now() < until {
        let _ = talking.try_next_json(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(api, "/api/v1/sockets")
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    shutdown.cancel();
}

/// `POST path` with `body` and the bearer `token`.
async fn post(
    api: std::net::SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> common::api::Answer {
    let bearer = format!("Bearer {token}");
    request(api, "POST", path, &[("Authorization", &bearer)], body).await
}

/// Reads `sock` until a message for which `pred` holds, returning every message read.
async fn read_until(sock: &mut common::api::Ws, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = sock.next_json(15 * S).await;
        let done = pred(&m);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tx_inhibit_and_unkey_through_the_api_with_the_history_and_metrics_to_show() {
    let rig = Rig::start(&tokens(true, true), quick(), 3.0).await;
    let api = rig.api;
    let inhibit = format!("/api/v1/radios/{RADIO}/tx-inhibit");
    let mut sock = try_ws(api, &format!("/api/v1/ws?token={READ_TOKEN}"), &[])
        .await
        .unwrap();
    sock.until("READY", 5 * S).await;
    sock.send(json!({"op": "SUBSCRIBE", "room": "radio:vhf1"}))
        .await;
    sock.until("SNAPSHOT", 5 * S).await;

    // Refused: the read token, a bad body, an unknown radio.
    let body = r#"{"inhibit": true, "reason": "antenna work"}"#;
    assert_eq!(
        post(api, &inhibit, READ_TOKEN, body).await.error(403),
        "forbidden"
    );
    assert_eq!(
        post(api, &inhibit, CONTROL_TOKEN, "{\"inhibit\": 1}")
            .await
            .error(400),
        "bad_request"
    );
    let nope = post(api, "/api/v1/radios/nope/tx-inhibit", CONTROL_TOKEN, body).await;
    assert_eq!(nope.error(404), "unknown_radio");

    // Inhibited: the event, the radio's state, the gauge.
    let done = post(api, &inhibit, CONTROL_TOKEN, body).await.data();
    assert_eq!(
        done,
        json!({"radio": RADIO, "inhibited": true, "reason": "antenna work"})
    );
    let event = sock.until("TX_INHIBITED", 5 * S).await.pop().unwrap();
    assert_eq!(event["data"]["reason"], "antenna work");
    let radio = get_with(api, &format!("/api/v1/radios/{RADIO}"), READ_TOKEN)
        .await
        .data();
    assert_eq!(radio["tx_inhibited"]["reason"], "antenna work");
    let metrics = get_with(api, "/metrics", READ_TOKEN).await.body;
    assert!(
        metrics.contains("zello_gateway_radio_tx_inhibited{radio=\"vhf1\"} 1"),
        "{metrics}"
    );

    // A message from the channel never keys the radio.
    dispatcher_talks(&rig, 5).await;
    let seen = read_until(&mut sock, |m| m["type"] == "MESSAGE_STOP").await;
    assert_eq!(types(&seen), ["MESSAGE_START", "MESSAGE_STOP"], "{seen:#?}");
    assert_eq!(seen[1]["data"]["outcome"], "inhibited");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.ptt.key_count(), 0, "keyed while inhibited");

    // Allowed again: the next message keys and plays; an unkey cuts the one after.
    let allowed = post(api, &inhibit, CONTROL_TOKEN, r#"{"inhibit": false}"#)
        .await
        .data();
    assert_eq!(allowed["inhibited"], false);
    sock.until("TX_ALLOWED", 5 * S).await;
    dispatcher_talks(&rig, 5).await;
    let seen = read_until(&mut sock, |m| m["type"] == "PTT_OFF").await;
    let stop = seen.iter().find(|m| m["type"] == "MESSAGE_STOP").unwrap();
    assert_eq!(stop["data"]["outcome"], "completed");
    assert_eq!(rig.ptt.key_count(), 1);
    let long = {
        let pcm = speech::speech_like(CODEC_RATE, 4.0, 5);
        let app = &rig.app;
        async move { talk_pcm(app, &pcm[..60 * 960]).await }
    };
    let cut = async {
        read_until(&mut sock, |m| m["type"] == "PTT_ON").await;
        let unkeyed = post(
            api,
            &format!("/api/v1/radios/{RADIO}/unkey"),
            CONTROL_TOKEN,
            "",
        )
        .await;
        assert_eq!(unkeyed.data(), json!({"radio": RADIO, "unkeyed": true}));
        read_until(&mut sock, |m| m["type"] == "PTT_OFF").await
    };
    let (_, seen) = tokio::join!(long, cut);
    let stop = seen.iter().find(|m| m["type"] == "MESSAGE_STOP").unwrap();
    assert_eq!(stop["data"]["outcome"], "interrupted", "{seen:#?}");

    // The history, newest first, with the outcomes.
    let history = get_with(api, "/api/v1/history?room=radio:vhf1", READ_TOKEN)
        .await
        .data();
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["interrupted", "completed", "inhibited"],
        "{history:#}"
    );
    let newest = &history[0];
    assert_eq!(newest["direction"], "from_channel");
    assert_eq!(newest["from"], "dispatcher");
    assert_eq!(newest["channel"], CHANNEL);
    assert!(newest["start"].as_str().unwrap().ends_with('Z'));
    let one = get_with(api, "/api/v1/history?room=radio:vhf1&limit=1", READ_TOKEN)
        .await
        .data();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let everything = get_with(api, "/api/v1/history", READ_TOKEN).await.data();
    assert_eq!(everything.as_array().unwrap().len(), 3);
    let bad = get_with(api, "/api/v1/history?limit=many", READ_TOKEN).await;
    assert_eq!(bad.error(400), "bad_request");
    let unknown = get_with(api, "/api/v1/history?room=radio:nope", READ_TOKEN).await;
    assert_eq!(unknown.error(404), "unknown_radio");
    let metrics = get_with(api, "/metrics", READ_TOKEN).await.body;
    for outcome in ["inhibited", "completed", "interrupted"] {
        let line = format!(
            "zello_gateway_messages_total{{radio=\"vhf1\",channel=\"{CHANNEL}\",direction=\"from_channel\",outcome=\"{outcome}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_levels_room_shows_the_noise_floor_with_the_squelch_closed_only_while_watched() {
    let rig = Rig::start(&tokens(false, false), quick(), 6.0).await;
    let meter = rig.meters.meter(RADIO);
    assert_eq!(meter.wanted_by(), 0);
    let (mut sock, _) = ws(rig.api).await;
    sock.send(json!({"op": "SUBSCRIBE", "room": "levels:vhf1", "id": 3}))
        .await;
    assert_eq!(sock.next_json(5 * S).await["type"], "SUBSCRIBED");
    // Squelch closed: the receive level is measured anyway, at most five times a second.
    let start = tokio::time::Instant::now();
    let mut levels = Vec::new();
    while levels.len() < 5 {
        let m = sock.next_json(5 * S).await;
        assert_eq!(m["type"], "LEVEL", "{m}");
        assert_eq!(m["room"], "levels:vhf1");
        if m["data"]["direction"] == "to_channel" {
            levels.push(m);
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert!(
        levels.iter().all(|m| m["data"]["open"] == false),
        "{levels:#?}"
    );
    assert!(
        levels
            .iter()
            .any(|m| m["data"]["rms_dbfs"].as_f64().unwrap() > -60.0),
        "{levels:#?}"
    );
    assert_eq!(meter.wanted_by(), 1);
    // Unsubscribed: no more levels, and nobody asks the engine to measure.
    sock.send(json!({"op": "UNSUBSCRIBE", "room": "levels:vhf1"}))
        .await;
    read_until(&mut sock, |m| m["type"] == "UNSUBSCRIBED").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(meter.wanted_by(), 0);
    while let Some(m) = sock.try_next_json(Duration::from_millis(300)).await {
        assert_ne!(m["type"], "LEVEL", "{m}");
    }
    drop(sock);
    rig.stop().await;
}
