use super::bindings::bindings_of;
use super::event::{Direction, Level, Outcome, rfc3339};
use super::server::{API_VERSION, HEARTBEAT_INTERVAL_MS};
use super::*;
use crate::state::{
    ChannelFeatures, DisconnectReason, GatewayEvent, GatewayState, MessageCodec, MessageOutcome,
    Stamped,
};
use serde_json::{Value, json};
use std::time::Duration;

/// The codec header of the Zello apps' messages: 16 kHz, one 60 ms frame a packet.
fn apps() -> MessageCodec {
    MessageCodec {
        sample_rate_hz: 16_000,
        frame_ms: 60,
        frames_per_packet: 1,
    }
}

/// 2026-01-15T12:01:00Z in unix ms.
const T0: u64 = 1_768_478_460_000;

fn state() -> GatewayState {
    GatewayState::new([("vhf1".to_string(), "Dispatch".to_string())])
}

fn json_of(bytes: &bytes::Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn msg(m: &ServerMessage) -> Value {
    json_of(&m.encode().unwrap())
}

/// Feeds gateway events to a catalogue, numbered and timed as the hub would.
struct Feed {
    catalogue: Catalogue,
    state: GatewayState,
}

impl Feed {
    fn new() -> Self {
        let state = state();
        let catalogue = Catalogue::new(&state)
            .with_codec("vhf1", Codec::from(&crate::config::CodecConfig::default()));
        Feed { catalogue, state }
    }

    /// `event` at `at` ms after T0.
    fn at(&mut self, at: u64, event: GatewayEvent) -> Vec<ApiEvent> {
        self.state.apply(&event, T0 + at);
        self.catalogue.translate(&Stamped {
            seq: self.state.seq,
            at_ms: T0 + at,
            event,
        })
    }

    fn one(&mut self, at: u64, event: GatewayEvent) -> ApiEvent {
        let mut out = self.at(at, event);
        assert_eq!(out.len(), 1, "{out:#?}");
        out.remove(0)
    }
}

fn radio(name: &str) -> String {
    name.to_string()
}

// ---- rooms -------------------------------------------------------------------------------

#[test]
fn rooms_read_and_print_back() {
    for (text, room) in [
        ("gateway", Room::Gateway),
        ("radio:vhf1", Room::Radio(radio("vhf1"))),
        ("channel:Dispatch", Room::Channel("Dispatch".into())),
        ("levels:vhf1", Room::Levels(radio("vhf1"))),
        // Only the first colon separates: a channel name may hold one.
        ("channel:Ops:North", Room::Channel("Ops:North".into())),
    ] {
        assert_eq!(Room::parse(text), Ok(room.clone()), "{text}");
        assert_eq!(room.to_string(), text);
        assert_eq!(serde_json::to_value(&room).unwrap(), json!(text));
    }
}

#[test]
fn unknown_kinds_and_malformed_names_are_unknown_rooms() {
    for text in [
        "",
        "dm:1",
        "radio",
        "radio:",
        ":vhf1",
        "RADIO:vhf1",
        "gateway:",
        "gateway:x",
        "gateway:*",
        "gateways",
        "levels",
        " radio:vhf1",
    ] {
        assert_eq!(
            Subscription::parse(text),
            Err(ProtocolError::UnknownRoom),
            "{text:?}"
        );
    }
    // A wildcard is a subscription, not a room events go to.
    assert_eq!(Room::parse("radio:*"), Err(ProtocolError::UnknownRoom));
}

#[test]
fn wildcards_match_every_room_of_their_kind_and_no_other() {
    let every_radio = Subscription::parse("radio:*").unwrap();
    let every_channel = Subscription::parse("channel:*").unwrap();
    let every_levels = Subscription::parse("levels:*").unwrap();
    assert_eq!(every_radio, Subscription::Every(RoomKind::Radio));
    assert_eq!(every_levels.to_string(), "levels:*");
    let vhf1 = Room::Radio(radio("vhf1"));
    let uhf = Room::Radio(radio("uhf"));
    let dispatch = Room::Channel("Dispatch".into());
    let levels = Room::Levels(radio("vhf1"));
    assert!(every_radio.matches(&vhf1) && every_radio.matches(&uhf));
    assert!(!every_radio.matches(&dispatch) && !every_radio.matches(&levels));
    assert!(!every_radio.matches(&Room::Gateway));
    assert!(every_channel.matches(&dispatch) && !every_channel.matches(&vhf1));
    assert!(every_levels.matches(&levels) && !every_levels.matches(&vhf1));
    let one = Subscription::parse("radio:vhf1").unwrap();
    assert!(one.matches(&vhf1) && !one.matches(&uhf) && !one.matches(&levels));
    let gateway = Subscription::parse("gateway").unwrap();
    assert!(gateway.matches(&Room::Gateway) && !gateway.matches(&vhf1));
}

#[test]
fn only_rooms_the_state_lists_resolve() {
    let s = state();
    for ok in [
        "gateway",
        "radio:vhf1",
        "channel:Dispatch",
        "levels:vhf1",
        "radio:*",
        "channel:*",
        "levels:*",
    ] {
        assert!(Subscription::resolve(ok, &s).is_ok(), "{ok}");
    }
    for unknown in [
        "radio:uhf",
        "channel:Other",
        "levels:Dispatch",
        "radio:Dispatch",
    ] {
        assert_eq!(
            Subscription::resolve(unknown, &s),
            Err(ProtocolError::UnknownRoom),
            "{unknown}"
        );
    }
    assert_eq!(
        Subscription::parse("radio:*").unwrap().rooms_in(&s),
        [Room::Radio(radio("vhf1"))]
    );
    assert_eq!(
        Room::all_in(&s)
            .iter()
            .map(Room::to_string)
            .collect::<Vec<_>>(),
        ["gateway", "radio:vhf1", "channel:Dispatch", "levels:vhf1"]
    );
}

#[test]
fn a_socket_holds_at_most_32_subscriptions() {
    let mut subs = Subscriptions::new();
    for i in 0..MAX_SUBSCRIPTIONS {
        let sub = Subscription::parse(&format!("radio:r{i}")).unwrap();
        assert_eq!(subs.insert(sub), Ok(true));
    }
    assert_eq!(subs.len(), 32);
    let one_more = Subscription::parse("radio:*").unwrap();
    assert_eq!(
        subs.insert(one_more.clone()),
        Err(ProtocolError::TooManySubscriptions)
    );
    // Subscribing again to one held costs nothing, even when full.
    assert_eq!(
        subs.insert(Subscription::parse("radio:r0").unwrap()),
        Ok(false)
    );
    assert!(subs.remove(&Subscription::parse("radio:r0").unwrap()));
    assert_eq!(subs.insert(one_more), Ok(true));
    assert_eq!(subs.len(), 32);
    let err = ProtocolError::TooManySubscriptions;
    assert_eq!(err.code(), ErrorCode::TooManySubscriptions);
    assert!(err.to_string().contains("at most 32"), "{err}");
}

#[test]
fn unsubscribing_a_room_leaves_a_wildcard_in_place() {
    let mut subs = Subscriptions::new();
    subs.insert(Subscription::parse("radio:*").unwrap())
        .unwrap();
    subs.insert(Subscription::parse("radio:vhf1").unwrap())
        .unwrap();
    let vhf1 = Room::Radio(radio("vhf1"));
    assert!(subs.remove(&Subscription::parse("radio:vhf1").unwrap()));
    assert!(subs.wants(&vhf1));
    assert!(!subs.remove(&Subscription::parse("radio:vhf1").unwrap()));
    assert!(subs.remove(&Subscription::parse("radio:*").unwrap()));
    assert!(!subs.wants(&vhf1));
    assert!(subs.is_empty());
    assert!(!subs.wants(&Room::Gateway));
}

// ---- client ops -------------------------------------------------------------------------

#[test]
fn every_client_op_reads() {
    assert_eq!(
        parse_client(r#"{"op":"AUTH","token":"s3cret"}"#),
        Ok(ClientOp::Auth {
            token: crate::secret::Secret::new("s3cret")
        })
    );
    assert_eq!(
        parse_client(r#"{"op":"SUBSCRIBE","room":"radio:vhf1","id":1}"#),
        Ok(ClientOp::Subscribe {
            rooms: vec!["radio:vhf1".into()],
            id: Some(1),
            since: None
        })
    );
    assert_eq!(
        parse_client(
            r#"{"op":"SUBSCRIBE","room":"gateway","rooms":["radio:*","channel:*"],"id":2,"since":1043}"#
        ),
        Ok(ClientOp::Subscribe {
            rooms: vec!["gateway".into(), "radio:*".into(), "channel:*".into()],
            id: Some(2),
            since: Some(1043)
        })
    );
    assert_eq!(
        parse_client(r#"{"op":"UNSUBSCRIBE","rooms":["radio:vhf1"],"id":3}"#),
        Ok(ClientOp::Unsubscribe {
            rooms: vec!["radio:vhf1".into()],
            id: Some(3)
        })
    );
    // Zlikord's form: no id. Fields the op does not use are ignored.
    assert_eq!(
        parse_client(r#"{"op":"UNSUBSCRIBE","room":"channel:42","x":[1]}"#),
        Ok(ClientOp::Unsubscribe {
            rooms: vec!["channel:42".into()],
            id: None
        })
    );
    assert_eq!(
        parse_client(r#"{"op":"PING"}"#),
        Ok(ClientOp::Ping { id: None })
    );
    assert_eq!(
        parse_client(r#" {"op":"PING","id":7,"id2":null} "#),
        Ok(ClientOp::Ping { id: Some(7) })
    );
}

#[test]
fn the_token_never_prints() {
    let op = parse_client(r#"{"op":"AUTH","token":"s3cret"}"#).unwrap();
    assert!(!format!("{op:?}").contains("s3cret"));
    let ClientOp::Auth { token } = op else {
        panic!("{op:?}")
    };
    assert_eq!(token.expose(), "s3cret");
}

#[test]
fn an_oversized_message_is_refused_before_it_is_parsed() {
    // Not even JSON: the size is what is wrong.
    let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    let r = parse_client(&big).unwrap_err();
    assert_eq!(r.id, None);
    assert_eq!(
        r.error,
        ProtocolError::MessageTooLarge {
            size: MAX_MESSAGE_BYTES + 1
        }
    );
    assert_eq!(r.error.code(), ErrorCode::MessageTooLarge);
    assert_eq!(
        r.error.to_string(),
        "message too large: 4097 bytes, at most 4096"
    );
    // Exactly the limit is fine.
    let head = r#"{"op":"PING","pad":""#;
    let fits = format!(
        "{head}{}\"}}",
        "y".repeat(MAX_MESSAGE_BYTES - head.len() - 2)
    );
    assert_eq!(fits.len(), MAX_MESSAGE_BYTES);
    assert_eq!(parse_client(&fits), Ok(ClientOp::Ping { id: None }));
}

#[test]
fn malformed_messages_are_bad_json_and_keep_their_id_when_readable() {
    for (text, id) in [
        ("", None),
        ("not json", None),
        ("{\"op\":\"PING\"", None),
        ("[1,2]", None),
        ("\"PING\"", None),
        ("null", None),
        ("{}", None),
        (r#"{"op":1,"id":4}"#, Some(4)),
        (r#"{"op":null}"#, None),
        (r#"{"op":"PING","id":-1}"#, None),
        (r#"{"op":"PING","id":1.5}"#, None),
        (r#"{"op":"PING","id":"1"}"#, None),
        (r#"{"op":"AUTH","id":5}"#, Some(5)),
        (r#"{"op":"AUTH","token":12345}"#, None),
        (r#"{"op":"SUBSCRIBE","id":6}"#, Some(6)),
        (r#"{"op":"SUBSCRIBE","room":null,"rooms":[]}"#, None),
        (r#"{"op":"SUBSCRIBE","room":5}"#, None),
        (r#"{"op":"SUBSCRIBE","rooms":"radio:*"}"#, None),
        (r#"{"op":"SUBSCRIBE","rooms":["radio:*",1]}"#, None),
        (
            r#"{"op":"SUBSCRIBE","room":"gateway","since":"9","id":7}"#,
            Some(7),
        ),
        (r#"{"op":"SUBSCRIBE","room":"gateway","since":-9}"#, None),
        (r#"{"op":"UNSUBSCRIBE"}"#, None),
    ] {
        let r = parse_client(text).unwrap_err();
        assert!(
            matches!(r.error, ProtocolError::BadJson(_)),
            "{text}: {r:?}"
        );
        assert_eq!(r.error.code(), ErrorCode::BadJson);
        assert_eq!(r.id, id, "{text}");
        assert!(r.error.to_string().starts_with("bad json: "), "{r}");
    }
}

#[test]
fn errors_never_repeat_what_the_client_sent() {
    for text in [
        r#"{"op":"AUTH","token":["s3cret"]}"#,
        r#"{"op":"PING","id":"s3cret"}"#,
        r#"{"op":"s3cret"}"#,
        r#"{"op":"SUBSCRIBE","room":{"s3cret":1}}"#,
        r#"{"s3cret"#,
    ] {
        let r = parse_client(text).unwrap_err();
        let reply = msg(&ServerMessage::error(r.id, None, &r.error)).to_string();
        assert!(!reply.contains("s3cret"), "{reply}");
    }
}

#[test]
fn unknown_ops_are_unknown_op() {
    for text in [
        r#"{"op":"VOICE_SIGNAL","room":"channel:5","id":3}"#,
        r#"{"op":"subscribe","room":"gateway","id":3}"#,
        r#"{"op":"","id":3}"#,
    ] {
        let r = parse_client(text).unwrap_err();
        assert_eq!(r.error, ProtocolError::UnknownOp, "{text}");
        assert_eq!(r.id, Some(3));
    }
}

// ---- server messages --------------------------------------------------------------------

#[test]
fn ready_tells_the_session_heartbeat_seq_version_and_rooms() {
    let mut s = state();
    s.apply(&GatewayEvent::LoggedOn, T0);
    assert_eq!(
        msg(&ServerMessage::ready("ws-1", &s)),
        json!({"type": "READY", "data": {
            "session_id": "ws-1",
            "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "seq": 1,
            "version": API_VERSION,
            "rooms": ["gateway", "radio:vhf1", "channel:Dispatch", "levels:vhf1"],
        }})
    );
    assert_eq!(HEARTBEAT_INTERVAL_MS, 25_000);
}

#[test]
fn replies_are_shaped_as_the_issue_and_zlikord_show() {
    let cases = [
        (
            ServerMessage::Subscribed {
                room: "radio:vhf1".into(),
                id: Some(1),
            },
            r#"{"type":"SUBSCRIBED","room":"radio:vhf1","id":1}"#,
        ),
        (
            ServerMessage::Subscribed {
                room: "channel:42".into(),
                id: None,
            },
            r#"{"type":"SUBSCRIBED","room":"channel:42"}"#,
        ),
        (
            ServerMessage::Unsubscribed {
                room: "radio:*".into(),
                id: Some(2),
            },
            r#"{"type":"UNSUBSCRIBED","room":"radio:*","id":2}"#,
        ),
        (ServerMessage::Pong { id: None }, r#"{"type":"PONG"}"#),
        (
            ServerMessage::Pong { id: Some(9) },
            r#"{"type":"PONG","id":9}"#,
        ),
        (
            ServerMessage::resync(17),
            r#"{"type":"RESYNC","data":{"missed":17}}"#,
        ),
        (
            ServerMessage::error(Some(1), None, &ProtocolError::UnknownRoom),
            r#"{"type":"ERROR","id":1,"code":"unknown_room","data":"unknown room"}"#,
        ),
        (
            ServerMessage::error(None, None, &ProtocolError::UnknownOp),
            r#"{"type":"ERROR","code":"unknown_op","data":"unknown op"}"#,
        ),
        (
            ServerMessage::error(Some(4), Some("dm:1".into()), &ProtocolError::ForbiddenRoom),
            r#"{"type":"ERROR","id":4,"code":"forbidden_room","room":"dm:1","data":"forbidden room"}"#,
        ),
    ];
    for (m, text) in cases {
        assert_eq!(std::str::from_utf8(&m.encode().unwrap()).unwrap(), text);
    }
}

#[test]
fn every_error_code_has_its_name_and_a_text_that_says_what_to_do() {
    for (error, code, text) in [
        (ProtocolError::UnknownOp, "unknown_op", "unknown op"),
        (ProtocolError::UnknownRoom, "unknown_room", "unknown room"),
        (
            ProtocolError::ForbiddenRoom,
            "forbidden_room",
            "forbidden room",
        ),
        (
            ProtocolError::BadJson("not JSON"),
            "bad_json",
            "bad json: not JSON",
        ),
        (
            ProtocolError::NotAuthenticated,
            "not_authenticated",
            r#"not authenticated: send {"op":"AUTH","token":"..."} first"#,
        ),
        (
            ProtocolError::TooManySubscriptions,
            "too_many_subscriptions",
            "too many subscriptions: at most 32 per socket; unsubscribe from one or use a wildcard such as radio:*",
        ),
        (
            ProtocolError::MessageTooLarge { size: 5000 },
            "message_too_large",
            "message too large: 5000 bytes, at most 4096",
        ),
    ] {
        assert_eq!(
            msg(&ServerMessage::error(Some(1), None, &error)),
            json!({"type": "ERROR", "id": 1, "code": code, "data": text})
        );
    }
}

#[test]
fn snapshots_of_the_gateway_a_radio_and_a_channel() {
    let mut s = state();
    s.apply(&GatewayEvent::LoggedOn, T0);
    s.apply(
        &GatewayEvent::ChannelStatus {
            channel: "Dispatch".into(),
            online: true,
            users_online: 2,
            features: ChannelFeatures::default(),
        },
        T0 + 1,
    );
    s.apply(
        &GatewayEvent::CarrierUp {
            radio: radio("vhf1"),
        },
        T0 + 2,
    );

    let gateway = msg(&snapshot(&Room::Gateway, &s).unwrap().unwrap());
    assert_eq!(
        gateway,
        json!({"type": "SNAPSHOT", "room": "gateway", "seq": 3, "data": {
            "started": false,
            "link": {"state": "logged_on"},
            "link_since_ms": T0,
            "held_offline": null,
        }})
    );

    let vhf1 = msg(&snapshot(&Room::Radio(radio("vhf1")), &s).unwrap().unwrap());
    assert_eq!(vhf1["type"], "SNAPSHOT");
    assert_eq!(vhf1["room"], "radio:vhf1");
    let data = &vhf1["data"];
    assert_eq!(data["radio"], "vhf1");
    assert_eq!(data["channel"], "Dispatch");
    assert_eq!(data["carrier"], true);
    assert_eq!(data["ptt"], false);
    assert_eq!(
        data["receiving"],
        json!({"stream_id": null, "peer": "Dispatch", "since_ms": T0 + 2})
    );
    assert_eq!(data["health"]["audio"]["failing"], false);
    assert_eq!(data["counters"]["key_ups"], 0);

    let dispatch = msg(&snapshot(&Room::Channel("Dispatch".into()), &s)
        .unwrap()
        .unwrap());
    assert_eq!(
        dispatch,
        json!({"type": "SNAPSHOT", "room": "channel:Dispatch", "seq": 3, "data": {
            "channel": "Dispatch",
            "online": true,
            "users_online": 2,
            "features": {"images": false, "texting": false, "locations": false},
        }})
    );

    // A levels room holds no state; rooms the state does not list have no snapshot.
    assert_eq!(snapshot(&Room::Levels(radio("vhf1")), &s), Ok(None));
    for room in [
        Room::Radio(radio("uhf")),
        Room::Channel("Other".into()),
        Room::Levels(radio("uhf")),
    ] {
        assert_eq!(snapshot(&room, &s), Err(ProtocolError::UnknownRoom));
    }
}

// ---- events ------------------------------------------------------------------------------

#[test]
fn the_envelope_is_type_room_seq_ts_and_data() {
    let event = ApiEvent {
        event: EventType::CarrierUp,
        rooms: vec![Room::Radio(radio("vhf1"))],
        seq: 1043,
        at_ms: T0 + 250,
        data: EventData::Radio {
            radio: radio("vhf1"),
        },
    };
    let encoded = event.encode().unwrap();
    assert_eq!(encoded.len(), 1);
    assert_eq!(encoded[0].room, Room::Radio(radio("vhf1")));
    assert_eq!(encoded[0].seq, 1043);
    assert_eq!(encoded[0].event, EventType::CarrierUp);
    assert_eq!(
        std::str::from_utf8(&encoded[0].json).unwrap(),
        r#"{"type":"CARRIER_UP","room":"radio:vhf1","seq":1043,"ts":"2026-01-15T12:01:00.250Z","data":{"radio":"vhf1"}}"#
    );
}

#[test]
fn times_are_rfc3339_utc_to_the_millisecond() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(T0 + 7), "2026-01-15T12:01:00.007Z");
    // Past jiff's range: its last instant, not a panic.
    let last = rfc3339(u64::MAX);
    assert!(
        last.starts_with("9999-12-") && last.ends_with('Z'),
        "{last}"
    );
}

#[test]
fn a_mirrored_event_is_serialized_once_per_room() {
    let mut f = Feed::new();
    let start = f.one(
        0,
        GatewayEvent::Incoming {
            radio: radio("vhf1"),
            stream_id: 7,
            from: "dispatcher".into(),
            codec: apps(),
        },
    );
    let encoded = start.encode().unwrap();
    assert_eq!(
        encoded
            .iter()
            .map(|e| e.room.to_string())
            .collect::<Vec<_>>(),
        ["radio:vhf1", "channel:Dispatch"]
    );
    let (on_radio, on_channel) = (json_of(&encoded[0].json), json_of(&encoded[1].json));
    assert_eq!(on_radio["room"], "radio:vhf1");
    assert_eq!(on_channel["room"], "channel:Dispatch");
    assert_eq!(on_radio["data"], on_channel["data"]);
    assert_eq!(on_radio["seq"], on_channel["seq"]);
    // Each subscriber gets the same buffer, not a copy.
    let shared = encoded[0].json.clone();
    assert_eq!(shared.as_ptr(), encoded[0].json.as_ptr());
}

/// `(type, rooms, data)` of each event.
type Summary = Vec<(&'static str, Vec<String>, Value)>;

fn summary(events: &[ApiEvent]) -> Summary {
    events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.rooms.iter().map(Room::to_string).collect(),
                serde_json::to_value(&e.data).unwrap(),
            )
        })
        .collect()
}

#[test]
fn one_incoming_message_gives_start_ptt_on_stop_ptt_off() {
    let mut f = Feed::new();
    let mut events = Vec::new();
    // What the gateway emits for one message from the channel (see gateway/bridge).
    for (at, e) in [
        (
            0,
            GatewayEvent::Incoming {
                radio: radio("vhf1"),
                stream_id: 7,
                from: "dispatcher".into(),
                codec: apps(),
            },
        ),
        (
            5,
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            },
        ),
        (
            250,
            GatewayEvent::Playing {
                radio: radio("vhf1"),
                stream_id: 7,
            },
        ),
        (
            2300,
            GatewayEvent::Played {
                radio: radio("vhf1"),
                stream_id: 7,
                from: "dispatcher".into(),
                outcome: MessageOutcome::Completed,
                packets: 34,
                concealed: 1,
                dropped: 0,
                duration_ms: 2040,
                unkeyed_ms: 0,
                peak_dbfs: Some(-6.5),
                rms_dbfs: Some(-20.25),
            },
        ),
        (
            2405,
            GatewayEvent::PttOff {
                radio: radio("vhf1"),
            },
        ),
    ] {
        events.extend(f.at(at, e));
    }
    let both = vec!["radio:vhf1".to_string(), "channel:Dispatch".to_string()];
    let radio_only = vec!["radio:vhf1".to_string()];
    let start = json!({
        "radio": "vhf1", "channel": "Dispatch", "direction": "from_channel", "stream_id": 7,
        "from": "dispatcher", "sample_rate_hz": 16000, "frame_ms": 60,
        "frames_per_packet": 1,
    });
    let mut stop = start.clone();
    stop.as_object_mut().unwrap().extend(
        json!({
            "packets": 34, "concealed": 1, "dropped": 0, "duration_ms": 2040,
            "peak_dbfs": -6.5, "rms_dbfs": -20.25, "outcome": "completed",
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    assert_eq!(
        summary(&events),
        [
            ("MESSAGE_START", both.clone(), start),
            ("PTT_ON", radio_only.clone(), json!({"radio": "vhf1"})),
            ("MESSAGE_STOP", both, stop),
            (
                "PTT_OFF",
                radio_only,
                json!({"radio": "vhf1", "keyed_ms": 2400})
            ),
        ]
    );
    // Sequence numbers are the gateway's: increasing, with a gap for `Playing`.
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 4, 5]
    );
}

#[test]
fn one_radio_message_gives_carrier_up_start_carrier_down_stop() {
    let mut f = Feed::new();
    let mut events = Vec::new();
    for (at, e) in [
        (
            0,
            GatewayEvent::CarrierUp {
                radio: radio("vhf1"),
            },
        ),
        (
            250,
            GatewayEvent::StreamStarted {
                radio: radio("vhf1"),
                stream_id: 1,
            },
        ),
        (
            3240,
            GatewayEvent::CarrierDown {
                radio: radio("vhf1"),
            },
        ),
        (
            3640,
            GatewayEvent::Sent {
                radio: radio("vhf1"),
                stream_id: Some(1),
                packets: 61,
                dropped: 0,
                duration_ms: 3660,
                peak_dbfs: -4.5,
                rms_dbfs: -21.25,
                outcome: MessageOutcome::Completed,
            },
        ),
    ] {
        events.extend(f.at(at, e));
    }
    let both = vec!["radio:vhf1".to_string(), "channel:Dispatch".to_string()];
    let radio_only = vec!["radio:vhf1".to_string()];
    let start = json!({
        "radio": "vhf1", "channel": "Dispatch", "direction": "to_channel", "stream_id": 1,
        "sample_rate_hz": 16000, "frame_ms": 60, "frames_per_packet": 1,
    });
    let mut stop = start.clone();
    stop.as_object_mut().unwrap().extend(
        json!({
            "packets": 61, "concealed": 0, "dropped": 0, "duration_ms": 3660,
            "peak_dbfs": -4.5, "rms_dbfs": -21.25, "outcome": "completed",
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    assert_eq!(
        summary(&events),
        [
            ("CARRIER_UP", radio_only.clone(), json!({"radio": "vhf1"})),
            ("MESSAGE_START", both.clone(), start),
            ("CARRIER_DOWN", radio_only, json!({"radio": "vhf1"})),
            ("MESSAGE_STOP", both, stop),
        ]
    );
}

#[test]
fn queued_messages_give_one_ptt_off_after_the_last() {
    let mut f = Feed::new();
    let mut names = Vec::new();
    let played = |stream_id| GatewayEvent::Played {
        radio: radio("vhf1"),
        stream_id,
        from: "a".into(),
        outcome: MessageOutcome::Completed,
        packets: 10,
        concealed: 0,
        dropped: 0,
        duration_ms: 600,
        unkeyed_ms: 0,
        peak_dbfs: Some(-10.0),
        rms_dbfs: Some(-25.0),
    };
    let incoming = |stream_id| GatewayEvent::Incoming {
        radio: radio("vhf1"),
        stream_id,
        from: "a".into(),
        codec: apps(),
    };
    let mut last = Vec::new();
    for (at, e) in [
        (0, incoming(1)),
        (
            0,
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            },
        ),
        (100, incoming(2)),
        (700, played(1)),
        (1300, played(2)),
        (
            1500,
            GatewayEvent::PttOff {
                radio: radio("vhf1"),
            },
        ),
    ] {
        last = f.at(at, e);
        names.extend(last.iter().map(|e| e.event.as_str()));
    }
    assert_eq!(
        names,
        [
            "MESSAGE_START",
            "PTT_ON",
            "MESSAGE_START",
            "MESSAGE_STOP",
            "MESSAGE_STOP",
            "PTT_OFF"
        ]
    );
    assert_eq!(
        last[0].data,
        EventData::PttOff {
            radio: radio("vhf1"),
            keyed_ms: 1500
        }
    );
}

#[test]
fn a_message_the_time_out_timer_cut_stops_timed_out() {
    let mut f = Feed::new();
    f.at(
        0,
        GatewayEvent::Incoming {
            radio: radio("vhf1"),
            stream_id: 7,
            from: "a".into(),
            codec: apps(),
        },
    );
    f.at(
        0,
        GatewayEvent::PttOn {
            radio: radio("vhf1"),
        },
    );
    let time_out = f.one(
        180_000,
        GatewayEvent::TimeOut {
            radio: radio("vhf1"),
            stream_id: 7,
        },
    );
    assert_eq!(time_out.event, EventType::TimeOut);
    assert_eq!(
        serde_json::to_value(&time_out.data).unwrap(),
        json!({"radio": "vhf1", "stream_id": 7})
    );
    let played = |outcome| GatewayEvent::Played {
        radio: radio("vhf1"),
        stream_id: 7,
        from: "a".into(),
        outcome,
        packets: 3000,
        concealed: 0,
        dropped: 0,
        duration_ms: 180_000,
        unkeyed_ms: 0,
        peak_dbfs: Some(-10.0),
        rms_dbfs: Some(-25.0),
    };
    let stop = f.one(180_010, played(MessageOutcome::TimedOut));
    let EventData::MessageStop(stop) = stop.data else {
        panic!("{stop:?}")
    };
    assert_eq!(stop.outcome, Outcome::TimedOut);
    assert_eq!(stop.start.sample_rate_hz, Some(16_000), "the start's codec");
    // The outcome is the gateway's: the next message of the same stream id was cut.
    let stop = f.one(190_000, played(MessageOutcome::Interrupted));
    let EventData::MessageStop(stop) = stop.data else {
        panic!("{stop:?}")
    };
    assert_eq!(stop.outcome, Outcome::Interrupted);
    assert_eq!(stop.start.sample_rate_hz, None, "its start was not seen");
}

#[test]
fn messages_not_played_stop_with_their_outcome() {
    for (gateway, api) in [
        (MessageOutcome::Inhibited, "inhibited"),
        (MessageOutcome::Busy, "dropped"),
        (MessageOutcome::TooOld, "dropped"),
    ] {
        let mut f = Feed::new();
        let start = f.one(
            0,
            GatewayEvent::Incoming {
                radio: radio("vhf1"),
                stream_id: 9,
                from: "a".into(),
                codec: apps(),
            },
        );
        assert_eq!(start.event, EventType::MessageStart);
        let stop = f.one(
            1,
            GatewayEvent::Played {
                radio: radio("vhf1"),
                stream_id: 9,
                from: "a".into(),
                outcome: gateway,
                packets: 0,
                concealed: 0,
                dropped: 0,
                duration_ms: 0,
                unkeyed_ms: 0,
                peak_dbfs: None,
                rms_dbfs: None,
            },
        );
        assert_eq!(stop.event, EventType::MessageStop);
        let data = serde_json::to_value(&stop.data).unwrap();
        assert_eq!(data["outcome"], api);
        assert_eq!(data["frame_ms"], 60);
    }
}

#[test]
fn channel_statuses_give_online_users_and_offline_changes_only() {
    let mut f = Feed::new();
    let status = |online, users_online| GatewayEvent::ChannelStatus {
        channel: "Dispatch".into(),
        online,
        users_online,
        features: ChannelFeatures {
            images: false,
            texting: true,
            locations: true,
        },
    };
    let room = vec!["channel:Dispatch".to_string()];
    assert_eq!(
        summary(&f.at(0, status(true, 2))),
        [(
            "CHANNEL_ONLINE",
            room.clone(),
            json!({"channel": "Dispatch", "users_online": 2,
                "features": {"images": false, "texting": true, "locations": true}})
        )]
    );
    assert_eq!(f.at(1, status(true, 2)), []);
    assert_eq!(
        summary(&f.at(2, status(true, 3))),
        [(
            "USERS_ONLINE",
            room.clone(),
            json!({"channel": "Dispatch", "users_online": 3})
        )]
    );
    assert_eq!(
        summary(&f.at(3, status(false, 0))),
        [(
            "CHANNEL_OFFLINE",
            room.clone(),
            json!({"channel": "Dispatch"})
        )]
    );
    assert_eq!(f.at(4, status(false, 0)), []);
    // A disconnect takes the channels offline, as in the state.
    f.at(5, status(true, 3));
    assert_eq!(
        summary(&f.at(
            6,
            GatewayEvent::Disconnected {
                reason: DisconnectReason::ServerClosed,
                detail: "closed by the server".into(),
            }
        )),
        [
            ("CHANNEL_OFFLINE", room, json!({"channel": "Dispatch"})),
            (
                "DISCONNECTED",
                vec!["gateway".to_string()],
                json!({"reason": "server_closed", "detail": "closed by the server"})
            ),
        ]
    );
    assert!(!f.state.channels["Dispatch"].online);
}

#[test]
fn each_gateway_event_maps_to_its_api_events() {
    let gw = || vec!["gateway".to_string()];
    let r = || vec!["radio:vhf1".to_string()];
    let ch = || vec!["channel:Dispatch".to_string()];
    let cases: Vec<(GatewayEvent, Summary)> = vec![
        (GatewayEvent::Started, vec![]),
        (GatewayEvent::LoggedOn, vec![("LOGGED_ON", gw(), json!({}))]),
        (
            GatewayEvent::LogonRefused("invalid password".into()),
            vec![("LOGON_REFUSED", gw(), json!({"error": "invalid password"}))],
        ),
        (
            GatewayEvent::Disconnected {
                reason: DisconnectReason::Network,
                detail: "connection reset".into(),
            },
            vec![(
                "DISCONNECTED",
                gw(),
                json!({"reason": "network", "detail": "connection reset"}),
            )],
        ),
        (
            GatewayEvent::Disconnected {
                reason: DisconnectReason::Kicked,
                detail: "the same account logged on elsewhere".into(),
            },
            vec![
                (
                    "KICKED",
                    gw(),
                    json!({"reason": "kicked", "detail": "the same account logged on elsewhere"}),
                ),
                (
                    "DISCONNECTED",
                    gw(),
                    json!({"reason": "kicked", "detail": "the same account logged on elsewhere"}),
                ),
            ],
        ),
        (
            GatewayEvent::Location {
                channel: "Dispatch".into(),
                from: "dispatcher".into(),
                latitude: 52.52,
                longitude: 13.405,
                accuracy: Some(8.5),
                formatted_address: None,
            },
            vec![(
                "LOCATION",
                ch(),
                json!({"channel": "Dispatch", "from": "dispatcher", "latitude": 52.52,
                    "longitude": 13.405, "accuracy": 8.5, "formatted_address": null}),
            )],
        ),
        (
            GatewayEvent::TxInhibited {
                radio: radio("vhf1"),
                reason: Some("site work".into()),
            },
            vec![(
                "TX_INHIBITED",
                r(),
                json!({"radio": "vhf1", "reason": "site work"}),
            )],
        ),
        (
            GatewayEvent::TxAllowed {
                radio: radio("vhf1"),
            },
            vec![("TX_ALLOWED", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::CarrierStuck {
                radio: radio("vhf1"),
            },
            vec![("CARRIER_STUCK", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::CarrierFlapping {
                radio: radio("vhf1"),
            },
            vec![("CARRIER_FLAPPING", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::ConnectFailed {
                error: "refused".into(),
                retry_in: Duration::from_secs(2),
            },
            vec![],
        ),
        (
            GatewayEvent::HeldOffline {
                reason: Some("vhf1: audio device lost".into()),
            },
            vec![(
                "ALARM_OFFLINE",
                gw(),
                json!({"reason": "vhf1: audio device lost"}),
            )],
        ),
        (
            GatewayEvent::HeldOffline { reason: None },
            vec![("ALARM_ONLINE", gw(), json!({}))],
        ),
        (
            GatewayEvent::Text {
                channel: "Dispatch".into(),
                from: "dispatcher".into(),
                text: "radio check".into(),
            },
            vec![(
                "TEXT",
                ch(),
                json!({"channel": "Dispatch", "from": "dispatcher", "text": "radio check"}),
            )],
        ),
        (
            GatewayEvent::CarrierUp {
                radio: radio("vhf1"),
            },
            vec![("CARRIER_UP", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::CarrierDown {
                radio: radio("vhf1"),
            },
            vec![("CARRIER_DOWN", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::Kerchunk {
                radio: radio("vhf1"),
            },
            vec![],
        ),
        (
            GatewayEvent::Playing {
                radio: radio("vhf1"),
                stream_id: 7,
            },
            vec![],
        ),
        (
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            },
            vec![("PTT_ON", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::PttOff {
                radio: radio("vhf1"),
            },
            vec![("PTT_OFF", r(), json!({"radio": "vhf1", "keyed_ms": 0}))],
        ),
        (
            GatewayEvent::DeviceLost {
                radio: radio("vhf1"),
                error: "device unplugged".into(),
            },
            vec![(
                "DEVICE_LOST",
                r(),
                json!({"radio": "vhf1", "error": "device unplugged"}),
            )],
        ),
        (
            GatewayEvent::DeviceBack {
                radio: radio("vhf1"),
            },
            vec![("DEVICE_BACK", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::CarrierFault {
                radio: radio("vhf1"),
                error: Some("gpio read failed".into()),
            },
            vec![(
                "CARRIER_DETECT_FAILED",
                r(),
                json!({"radio": "vhf1", "error": "gpio read failed"}),
            )],
        ),
        (
            GatewayEvent::CarrierFault {
                radio: radio("vhf1"),
                error: None,
            },
            vec![("CARRIER_DETECT_BACK", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::PttFault {
                radio: radio("vhf1"),
                error: Some("rigctld gone".into()),
            },
            vec![(
                "PTT_INTERFACE_FAILED",
                r(),
                json!({"radio": "vhf1", "error": "rigctld gone"}),
            )],
        ),
        (
            GatewayEvent::PttFault {
                radio: radio("vhf1"),
                error: None,
            },
            vec![("PTT_INTERFACE_BACK", r(), json!({"radio": "vhf1"}))],
        ),
        (
            GatewayEvent::HardwareWaiting {
                radio: radio("vhf1"),
                error: Some("no sound card".into()),
            },
            vec![],
        ),
        (
            GatewayEvent::HardwareWaiting {
                radio: radio("vhf1"),
                error: None,
            },
            vec![],
        ),
    ];
    for (event, want) in cases {
        // Each from a fresh start, so that no earlier event changes the mapping.
        let mut f = Feed::new();
        let got = f.at(0, event.clone());
        assert_eq!(summary(&got), want, "{event:?}");
        for e in &got {
            assert_eq!((e.seq, e.at_ms), (1, T0));
            for room in &e.rooms {
                assert!(
                    e.event.room_kinds().contains(&room.kind()),
                    "{event:?} in {room}"
                );
            }
        }
    }
}

#[test]
fn outcomes_of_messages_to_the_channel() {
    for (gateway, api) in [
        (MessageOutcome::Completed, "completed"),
        (MessageOutcome::Interrupted, "interrupted"),
        (MessageOutcome::Refused, "refused"),
        (MessageOutcome::ChannelNotReady, "refused"),
        (MessageOutcome::Dropped, "dropped"),
        (MessageOutcome::Abandoned, "dropped"),
        (MessageOutcome::TimedOut, "timed_out"),
    ] {
        let mut f = Feed::new();
        let stop = f.one(
            0,
            GatewayEvent::Sent {
                radio: radio("vhf1"),
                stream_id: None,
                packets: 0,
                dropped: 0,
                duration_ms: 0,
                peak_dbfs: f32::NEG_INFINITY,
                rms_dbfs: f32::NEG_INFINITY,
                outcome: gateway,
            },
        );
        let data = serde_json::to_value(&stop.data).unwrap();
        assert_eq!(data["outcome"], api, "{gateway:?}");
        // A message that never got a stream id stops without one; silence has no level.
        assert_eq!(data["stream_id"], Value::Null);
        assert_eq!(data["peak_dbfs"], Value::Null);
    }
    assert_eq!(
        serde_json::to_value(Outcome::Inhibited).unwrap(),
        "inhibited"
    );
}

#[test]
fn events_the_starting_state_holds_give_nothing() {
    let mut s = state();
    s.apply(
        &GatewayEvent::PttOn {
            radio: radio("vhf1"),
        },
        T0,
    );
    let mut c = Catalogue::new(&s);
    let old = Stamped {
        seq: 1,
        at_ms: T0,
        event: GatewayEvent::PttOn {
            radio: radio("vhf1"),
        },
    };
    assert_eq!(c.translate(&old), []);
    // The keying it held still times PTT_OFF.
    let off = c.translate(&Stamped {
        seq: 2,
        at_ms: T0 + 900,
        event: GatewayEvent::PttOff {
            radio: radio("vhf1"),
        },
    });
    assert_eq!(
        off[0].data,
        EventData::PttOff {
            radio: radio("vhf1"),
            keyed_ms: 900
        }
    );
    // A repeat of a number already taken in gives nothing either.
    assert_eq!(c.translate(&old), []);
}

#[test]
fn a_radio_the_state_does_not_list_gets_no_channel_mirror() {
    let mut c = Catalogue::default();
    let start = c.translate(&Stamped {
        seq: 1,
        at_ms: T0,
        event: GatewayEvent::Incoming {
            radio: radio("uhf"),
            stream_id: 3,
            from: "a".into(),
            codec: apps(),
        },
    });
    assert_eq!(start[0].rooms, [Room::Radio(radio("uhf"))]);
    let EventData::MessageStart(start) = &start[0].data else {
        panic!("{start:?}")
    };
    assert_eq!(start.channel, None);
}

#[test]
fn a_level_goes_to_the_levels_room() {
    use crate::audio::meter::MeterDirection;
    assert_eq!(
        Direction::from(MeterDirection::Transmit),
        Direction::FromChannel
    );
    let level = ApiEvent::level(
        Level {
            radio: radio("vhf1"),
            direction: MeterDirection::Receive.into(),
            rms_dbfs: -48.5,
            peak_dbfs: -40.0,
            open: false,
            clips: 2,
        },
        12,
        T0,
    );
    let encoded = level.encode().unwrap();
    assert_eq!(
        json_of(&encoded[0].json),
        json!({"type": "LEVEL", "room": "levels:vhf1", "seq": 12,
            "ts": "2026-01-15T12:01:00.000Z",
            "data": {"radio": "vhf1", "direction": "to_channel", "rms_dbfs": -48.5,
                "peak_dbfs": -40.0, "open": false, "clips": 2}})
    );
}

// ---- bindings ----------------------------------------------------------------------------

#[test]
fn bindings_list_every_event_by_room_kind_the_patterns_and_the_rooms() {
    let b = serde_json::to_value(Bindings::new(&state())).unwrap();
    assert_eq!(
        b["bindings"]["gateway"],
        json!([
            "gateway.LOGGED_ON",
            "gateway.LOGON_REFUSED",
            "gateway.DISCONNECTED",
            "gateway.KICKED",
            "gateway.ALARM_OFFLINE",
            "gateway.ALARM_ONLINE"
        ])
    );
    assert_eq!(
        b["bindings"]["channel"],
        json!([
            "channel.CHANNEL_ONLINE.{CHANNEL}",
            "channel.CHANNEL_OFFLINE.{CHANNEL}",
            "channel.USERS_ONLINE.{CHANNEL}",
            "channel.TEXT.{CHANNEL}",
            "channel.LOCATION.{CHANNEL}",
            "channel.MESSAGE_START.{CHANNEL}",
            "channel.MESSAGE_STOP.{CHANNEL}"
        ])
    );
    assert_eq!(
        b["bindings"]["radio"],
        json!([
            "radio.CARRIER_UP.{RADIO}",
            "radio.CARRIER_DOWN.{RADIO}",
            "radio.MESSAGE_START.{RADIO}",
            "radio.MESSAGE_STOP.{RADIO}",
            "radio.PTT_ON.{RADIO}",
            "radio.PTT_OFF.{RADIO}",
            "radio.TIME_OUT.{RADIO}",
            "radio.TX_INHIBITED.{RADIO}",
            "radio.TX_ALLOWED.{RADIO}",
            "radio.DEVICE_LOST.{RADIO}",
            "radio.DEVICE_BACK.{RADIO}",
            "radio.PTT_INTERFACE_FAILED.{RADIO}",
            "radio.PTT_INTERFACE_BACK.{RADIO}",
            "radio.CARRIER_DETECT_FAILED.{RADIO}",
            "radio.CARRIER_DETECT_BACK.{RADIO}",
            "radio.CARRIER_STUCK.{RADIO}",
            "radio.CARRIER_FLAPPING.{RADIO}"
        ])
    );
    assert_eq!(b["bindings"]["levels"], json!(["levels.LEVEL.{RADIO}"]));
    assert_eq!(
        b["patterns"],
        json!([
            "gateway",
            "radio:{RADIO}",
            "channel:{CHANNEL}",
            "levels:{RADIO}"
        ])
    );
    assert_eq!(b["wildcards"], json!(["radio:*", "channel:*", "levels:*"]));
    assert_eq!(
        b["rooms"],
        json!(["gateway", "radio:vhf1", "channel:Dispatch", "levels:vhf1"])
    );
    // Every event is listed under at least one kind.
    let listed: usize = RoomKind::ALL
        .into_iter()
        .map(|k| bindings_of(k).len())
        .sum();
    assert_eq!(listed, EventType::ALL.len() + 2);
}

#[test]
fn event_names_match_the_journald_event_values_where_the_log_has_them() {
    // The EVENT= values the gateway logs today (src/gateway, src/zello, src/alarms).
    for name in [
        "logged_on",
        "logon_refused",
        "disconnected",
        "kicked",
        "alarm_offline",
        "alarm_online",
        "channel_online",
        "channel_offline",
        "carrier_up",
        "carrier_down",
        "ptt_on",
        "ptt_off",
        "time_out",
        "device_lost",
        "device_back",
        "ptt_interface_failed",
        "ptt_interface_back",
        "carrier_detect_failed",
        "carrier_detect_back",
        "carrier_stuck",
        "carrier_flapping",
    ] {
        assert!(
            EventType::ALL
                .iter()
                .any(|e| e.as_str() == name.to_uppercase()),
            "{name}"
        );
    }
}
