//! The state as events change it, on made-up times, and the hub that publishes it.

use super::*;
use std::time::Duration;

const T: u64 = 1_700_000_000_000;

fn radio(name: &str) -> String {
    name.to_string()
}

fn state() -> GatewayState {
    GatewayState::new([(radio("vhf1"), "Dispatch".to_string())])
}

/// The configured radio's name, as events carry it.
fn vhf1() -> String {
    radio("vhf1")
}

/// What a radio is doing, as its state shows it: the stream (if any), who sends or where it
/// goes, and since when.
fn activity(stream_id: Option<u32>, peer: &str, since_ms: u64) -> Option<Activity> {
    Some(Activity {
        stream_id,
        peer: Some(peer.into()),
        since_ms,
    })
}

/// Applies `events` one a millisecond from `at` on.
fn apply_from(state: &mut GatewayState, at: u64, events: &[GatewayEvent]) {
    for (e, at) in events.iter().zip(at..) {
        apply(state, e, at);
    }
}

/// Applies `events` one a second from `T` on.
fn run(state: &mut GatewayState, events: &[GatewayEvent]) {
    for (i, e) in events.iter().enumerate() {
        let at = state.updated_ms.max(T) + if state.seq == 0 && i == 0 { 0 } else { 1000 };
        apply(state, e, at);
    }
}

#[test]
fn the_configured_radios_and_channels_are_there_before_any_event() {
    let s = state();
    assert_eq!(s.seq, 0);
    assert!(!s.gateway.started);
    assert_eq!(s.gateway.link, Link::Connecting);
    let r = s.radio("vhf1").expect("vhf1");
    assert_eq!(r.channel.as_deref(), Some("Dispatch"));
    assert!(!r.carrier && !r.ptt);
    assert_eq!(s.channel("Dispatch"), Some(&ChannelState::default()));
    assert!(s.radio("uhf1").is_none());
}

#[test]
fn each_event_gets_the_next_sequence_number_and_its_time() {
    let mut s = state();
    apply(&mut s, &GatewayEvent::Started, T);
    apply(&mut s, &GatewayEvent::LoggedOn, T + 5);
    assert_eq!((s.seq, s.updated_ms), (2, T + 5));
    assert!(s.gateway.started);
    // Events that change nothing else still count.
    apply(
        &mut s,
        &GatewayEvent::Text {
            channel: "Dispatch".into(),
            from: "alice".into(),
            text: "hi".into(),
        },
        T + 9,
    );
    assert_eq!(s.seq, 3);
}

#[test]
fn the_link_follows_the_session() {
    let mut s = state();
    apply(
        &mut s,
        &GatewayEvent::ConnectFailed {
            error: "refused".into(),
            retry_in: Duration::from_millis(7600),
        },
        T,
    );
    assert_eq!(
        s.gateway.link,
        Link::Unreachable {
            error: "refused".into(),
            retry_in_ms: 7600
        }
    );
    assert_eq!(s.gateway.link_since_ms, T);
    apply(
        &mut s,
        &GatewayEvent::LogonRefused("bad password".into()),
        T + 1,
    );
    assert_eq!(
        s.gateway.link,
        Link::Refused {
            code: "bad password".into()
        }
    );
    apply(&mut s, &GatewayEvent::LoggedOn, T + 2);
    let features = ChannelFeatures {
        images: true,
        texting: true,
        locations: false,
    };
    apply(
        &mut s,
        &GatewayEvent::ChannelStatus {
            channel: "Dispatch".into(),
            online: true,
            users_online: 3,
            features,
        },
        T + 3,
    );
    assert_eq!(s.gateway.link, Link::LoggedOn);
    assert_eq!(s.gateway.link_since_ms, T + 2);
    assert_eq!(
        s.channel("Dispatch"),
        Some(&ChannelState {
            online: true,
            users_online: 3,
            features: Some(features)
        })
    );
    apply(
        &mut s,
        &GatewayEvent::Disconnected {
            reason: DisconnectReason::ServerClosed,
            detail: "closed by the server: 1000 bye".into(),
        },
        T + 4,
    );
    assert_eq!(
        s.gateway.link,
        Link::Disconnected {
            reason: DisconnectReason::ServerClosed,
            detail: "closed by the server: 1000 bye".into(),
        }
    );
    assert!(
        !s.channel("Dispatch").unwrap().online,
        "offline with the link"
    );
    // A channel not configured is added when the server reports it.
    apply(
        &mut s,
        &GatewayEvent::ChannelStatus {
            channel: "Ops".into(),
            online: true,
            users_online: 1,
            features: ChannelFeatures::default(),
        },
        T + 5,
    );
    assert!(s.channel("Ops").unwrap().online);
    apply(
        &mut s,
        &GatewayEvent::HeldOffline {
            reason: Some("radio vhf1: PTT interface failing for 60 s".into()),
        },
        T + 6,
    );
    assert!(s.gateway.held_offline.is_some());
    apply(&mut s, &GatewayEvent::HeldOffline { reason: None }, T + 7);
    assert_eq!(s.gateway.held_offline, None);
}

#[test]
fn one_message_from_the_channel_incoming_ptt_on_played_ptt_off() {
    let mut s = state();
    apply(
        &mut s,
        &GatewayEvent::Incoming {
            radio: vhf1(),
            stream_id: 7,
            from: "alice".into(),
            codec: codec(),
        },
        T,
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(r.incoming, activity(Some(7), "alice", T));
    assert!(!r.ptt && r.transmitting.is_none());

    apply(&mut s, &GatewayEvent::PttOn { radio: vhf1() }, T + 100);
    apply(
        &mut s,
        &GatewayEvent::Playing {
            radio: vhf1(),
            stream_id: 7,
        },
        T + 200,
    );
    let r = s.radio("vhf1").unwrap();
    assert!(r.ptt);
    assert_eq!(r.transmitting, activity(Some(7), "alice", T + 100));
    assert_eq!(r.counters.key_ups, 1);

    apply(
        &mut s,
        &GatewayEvent::Played {
            radio: vhf1(),
            stream_id: 7,
            from: "alice".into(),
            outcome: MessageOutcome::Completed,
            packets: 50,
            concealed: 2,
            dropped: 1,
            duration_ms: 3000,
            unkeyed_ms: 0,
            peak_dbfs: Some(-4.0),
            rms_dbfs: Some(-19.5),
        },
        T + 3300,
    );
    let r = s.radio("vhf1").unwrap();
    assert!(r.ptt, "still keyed for the tail");
    assert_eq!(r.incoming, None);
    assert_eq!(
        r.last_played,
        Some(Message {
            direction: Direction::FromChannel,
            stream_id: Some(7),
            peer: Some("alice".into()),
            channel: Some("Dispatch".into()),
            started_ms: T,
            ended_ms: T + 3300,
            packets: 50,
            concealed: 2,
            dropped: 1,
            duration_ms: 3000,
            peak_dbfs: Some(-4.0),
            rms_dbfs: Some(-19.5),
            outcome: Some(MessageOutcome::Completed),
        })
    );

    apply(&mut s, &GatewayEvent::PttOff { radio: vhf1() }, T + 3600);
    let r = s.radio("vhf1").unwrap();
    assert!(!r.ptt);
    assert_eq!(r.transmitting, None);
    assert_eq!(
        r.counters,
        Counters {
            key_ups: 1,
            transmitted_ms: 3500,
            messages_played: 1,
            packets_played: 50,
            packets_concealed: 2,
            packets_dropped: 1,
            ..Counters::default()
        }
    );
    // A second PttOff (an unkey on the way out) counts no more time.
    apply(&mut s, &GatewayEvent::PttOff { radio: vhf1() }, T + 9000);
    assert_eq!(s.radio("vhf1").unwrap().counters.transmitted_ms, 3500);
}

#[test]
fn one_message_from_the_radio_carrier_up_stream_started_carrier_down_sent() {
    let mut s = state();
    apply(&mut s, &GatewayEvent::CarrierUp { radio: vhf1() }, T);
    let r = s.radio("vhf1").unwrap();
    assert!(r.carrier);
    assert_eq!(r.receiving, activity(None, "Dispatch", T));
    apply(
        &mut s,
        &GatewayEvent::StreamStarted {
            radio: vhf1(),
            stream_id: 42,
        },
        T + 300,
    );
    assert_eq!(
        s.radio("vhf1")
            .unwrap()
            .receiving
            .as_ref()
            .unwrap()
            .stream_id,
        Some(42)
    );
    apply(
        &mut s,
        &GatewayEvent::CarrierDown { radio: vhf1() },
        T + 4000,
    );
    let r = s.radio("vhf1").unwrap();
    assert!(!r.carrier);
    assert_eq!(r.receiving, None);
    apply(
        &mut s,
        &GatewayEvent::Sent {
            radio: vhf1(),
            stream_id: Some(42),
            packets: 70,
            dropped: 0,
            duration_ms: 4200,
            peak_dbfs: -3.5,
            rms_dbfs: -18.0,
            outcome: MessageOutcome::Completed,
        },
        T + 4500,
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(
        r.last_sent,
        Some(Message {
            direction: Direction::ToChannel,
            stream_id: Some(42),
            peer: Some("Dispatch".into()),
            channel: Some("Dispatch".into()),
            started_ms: T + 300,
            ended_ms: T + 4500,
            packets: 70,
            concealed: 0,
            dropped: 0,
            duration_ms: 4200,
            peak_dbfs: Some(-3.5),
            rms_dbfs: Some(-18.0),
            outcome: Some(MessageOutcome::Completed),
        })
    );
    assert_eq!(
        r.counters,
        Counters {
            received_ms: 4200,
            messages_sent: 1,
            packets_sent: 70,
            ..Counters::default()
        }
    );
    // A message cut off: its outcome and its gap.
    apply(
        &mut s,
        &GatewayEvent::Sent {
            radio: vhf1(),
            stream_id: None,
            packets: 3,
            dropped: 5,
            duration_ms: 180,
            peak_dbfs: -10.0,
            rms_dbfs: -30.0,
            outcome: MessageOutcome::Dropped,
        },
        T + 9000,
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(
        r.last_sent.as_ref().unwrap().outcome,
        Some(MessageOutcome::Dropped)
    );
    assert_eq!(
        (
            r.counters.messages_sent,
            r.counters.packets_sent,
            r.counters.packets_dropped
        ),
        (2, 73, 5)
    );
}

#[test]
fn kerchunks_time_outs_and_interrupted_messages_are_counted() {
    let mut s = state();
    run(
        &mut s,
        &[
            GatewayEvent::CarrierUp { radio: vhf1() },
            GatewayEvent::CarrierDown { radio: vhf1() },
            GatewayEvent::Kerchunk { radio: vhf1() },
            incoming(9, "bob"),
            GatewayEvent::PttOn { radio: vhf1() },
            GatewayEvent::TimeOut {
                radio: vhf1(),
                stream_id: 9,
            },
            played(9, "bob", MessageOutcome::TimedOut, 10),
            GatewayEvent::PttOff { radio: vhf1() },
        ],
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(r.counters.kerchunks, 1);
    assert_eq!(r.counters.time_outs, 1);
    assert_eq!(r.counters.key_ups, 1);
    assert_eq!(r.counters.transmitted_ms, 3000);
    assert_eq!(r.incoming, None);
    assert_eq!(
        r.last_played.as_ref().unwrap().outcome,
        Some(MessageOutcome::TimedOut)
    );
    // The transmitter found unkeyed during a message: interrupted (the bridge says so).
    run(
        &mut s,
        &[
            incoming(10, "bob"),
            played(10, "bob", MessageOutcome::Interrupted, 10),
        ],
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(
        r.last_played.as_ref().unwrap().outcome,
        Some(MessageOutcome::Interrupted)
    );
    assert_eq!(r.counters.messages_played, 2);
    assert_eq!(r.counters.messages_not_played, 0);
}

fn codec() -> MessageCodec {
    MessageCodec {
        sample_rate_hz: 16_000,
        frame_ms: 60,
        frames_per_packet: 1,
    }
}

fn incoming(stream_id: u32, from: &str) -> GatewayEvent {
    GatewayEvent::Incoming {
        radio: vhf1(),
        stream_id,
        from: from.into(),
        codec: codec(),
    }
}

/// A message from the channel ended with `packets` of 60 ms played.
fn played(stream_id: u32, from: &str, outcome: MessageOutcome, packets: u64) -> GatewayEvent {
    GatewayEvent::Played {
        radio: vhf1(),
        stream_id,
        from: from.into(),
        outcome,
        packets,
        concealed: 0,
        dropped: 0,
        duration_ms: packets * 60,
        unkeyed_ms: 0,
        peak_dbfs: Some(-6.0),
        rms_dbfs: Some(-20.0),
    }
}

fn sent(packets: u64) -> GatewayEvent {
    GatewayEvent::Sent {
        radio: vhf1(),
        stream_id: Some(1),
        packets,
        dropped: 0,
        duration_ms: packets * 60,
        peak_dbfs: -6.0,
        rms_dbfs: -20.0,
        outcome: MessageOutcome::Completed,
    }
}

#[test]
fn messages_not_played_are_counted_apart_and_leave_last_played_alone() {
    let mut s = state();
    apply_from(
        &mut s,
        T,
        &[
            incoming(1, "alice"),
            played(1, "alice", MessageOutcome::Completed, 5),
            incoming(2, "bob"),
            played(2, "bob", MessageOutcome::Busy, 0),
            incoming(3, "carol"),
            played(3, "carol", MessageOutcome::TooOld, 0),
            incoming(4, "dave"),
            played(4, "dave", MessageOutcome::Inhibited, 0),
        ],
    );
    let r = s.radio("vhf1").unwrap();
    assert_eq!(r.counters.messages_played, 1);
    assert_eq!(r.counters.messages_not_played, 3);
    assert_eq!(r.counters.messages_inhibited, 1);
    assert_eq!(
        r.last_played.as_ref().unwrap().peer.as_deref(),
        Some("alice")
    );
    assert_eq!(r.incoming, None, "every message ended");
    // The history has them all, each with its arrival as its start.
    let h: Vec<_> = r
        .history()
        .iter()
        .map(|m| (m.peer.clone().unwrap(), m.started_ms, m.ended_ms, m.outcome))
        .collect();
    assert_eq!(
        h,
        vec![
            ("alice".into(), T, T + 1, Some(MessageOutcome::Completed)),
            ("bob".into(), T + 2, T + 3, Some(MessageOutcome::Busy)),
            ("carol".into(), T + 4, T + 5, Some(MessageOutcome::TooOld)),
            ("dave".into(), T + 6, T + 7, Some(MessageOutcome::Inhibited)),
        ]
    );
    // A message cut by the inhibit went on the air: played, and inhibited.
    apply_from(
        &mut s,
        T + 10,
        &[
            incoming(5, "erin"),
            played(5, "erin", MessageOutcome::Inhibited, 3),
        ],
    );
    let r = s.radio("vhf1").unwrap();
    let c = &r.counters;
    assert_eq!((c.messages_played, c.messages_not_played), (2, 3));
    assert_eq!(c.messages_inhibited, 2);
    assert_eq!(
        r.last_played.as_ref().unwrap().peer.as_deref(),
        Some("erin")
    );
}

#[test]
fn the_history_keeps_the_last_messages_both_ways_bounded_and_out_of_the_json() {
    let mut s = state();
    for i in 0..(HISTORY_LEN as u32 + 7) {
        let at = T + u64::from(i) * 10_000;
        apply(&mut s, &incoming(i, "alice"), at);
        apply(
            &mut s,
            &played(i, "alice", MessageOutcome::Completed, 10),
            at + 1000,
        );
        apply(&mut s, &sent(20), at + 5000);
    }
    let r = s.radio("vhf1").unwrap();
    let h = r.history();
    assert_eq!(h.len(), HISTORY_LEN);
    // Oldest first; the oldest ones fell out.
    let last = h.back().unwrap();
    assert_eq!(last.direction, Direction::ToChannel);
    assert_eq!(last.packets, 20);
    assert_eq!(last.started_ms, last.ended_ms - 1200);
    assert_eq!(last.channel.as_deref(), Some("Dispatch"));
    assert_eq!(last.peak_dbfs, Some(-6.0));
    let from: Vec<_> = h
        .iter()
        .filter(|m| m.direction == Direction::FromChannel)
        .map(|m| m.stream_id.unwrap())
        .collect();
    assert_eq!(from.len(), HISTORY_LEN / 2);
    assert_eq!(*from.last().unwrap(), HISTORY_LEN as u32 + 6);
    assert!(from.windows(2).all(|w| w[0] < w[1]));
    // A copy of the state shares the ring until one of them changes.
    let copy = s.clone();
    assert!(std::ptr::eq(
        copy.radio("vhf1").unwrap().history(),
        s.radio("vhf1").unwrap().history()
    ));
    apply(&mut s, &sent(1), T + 999_999_999);
    assert_eq!(
        copy.radio("vhf1")
            .unwrap()
            .history()
            .back()
            .unwrap()
            .packets,
        20
    );
    assert_eq!(
        s.radio("vhf1").unwrap().history().back().unwrap().packets,
        1
    );
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["radios"]["vhf1"].get("history").is_none());
    assert!(json["radios"]["vhf1"].get("arrivals").is_none());
}

#[test]
fn tx_inhibit_and_carrier_stuck_show_in_the_radio_state() {
    let mut s = state();
    apply(
        &mut s,
        &GatewayEvent::TxInhibited {
            radio: vhf1(),
            reason: Some("interference on 146.52".into()),
        },
        T,
    );
    let inhibited = Some(Inhibit {
        reason: Some("interference on 146.52".into()),
        since_ms: T,
    });
    assert_eq!(s.radio("vhf1").unwrap().tx_inhibited, inhibited);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["radios"]["vhf1"]["tx_inhibited"],
        serde_json::json!({"reason": "interference on 146.52", "since_ms": T})
    );
    // Inhibited again with a new reason: still since the first time.
    apply(
        &mut s,
        &GatewayEvent::TxInhibited {
            radio: vhf1(),
            reason: None,
        },
        T + 50,
    );
    assert_eq!(
        s.radio("vhf1")
            .unwrap()
            .tx_inhibited
            .as_ref()
            .unwrap()
            .since_ms,
        T
    );
    apply(&mut s, &GatewayEvent::TxAllowed { radio: vhf1() }, T + 100);
    assert_eq!(s.radio("vhf1").unwrap().tx_inhibited, None);

    apply_from(
        &mut s,
        T + 200,
        &[
            GatewayEvent::CarrierUp { radio: vhf1() },
            GatewayEvent::CarrierStuck { radio: vhf1() },
            GatewayEvent::CarrierFlapping { radio: vhf1() },
        ],
    );
    assert!(s.radio("vhf1").unwrap().carrier_stuck);
    apply(
        &mut s,
        &GatewayEvent::CarrierDown { radio: vhf1() },
        T + 300,
    );
    assert!(!s.radio("vhf1").unwrap().carrier_stuck);
}

#[test]
fn a_location_changes_nothing_but_the_sequence() {
    let mut s = state();
    let before = s.clone();
    let location = GatewayEvent::Location {
        channel: "Dispatch".into(),
        from: "alice".into(),
        latitude: 52.5,
        longitude: 13.4,
        accuracy: Some(12.0),
        formatted_address: Some("Berlin".into()),
    };
    assert_eq!(location.radio(), None);
    apply(&mut s, &location, T);
    assert_eq!(s.seq, 1);
    assert_eq!(
        (s.radios.clone(), s.channels.clone()),
        (before.radios, before.channels)
    );
    assert_eq!(
        serde_json::to_value(&location).unwrap(),
        serde_json::json!({"kind": "location", "data": {"channel": "Dispatch", "from": "alice",
            "latitude": 52.5, "longitude": 13.4, "accuracy": 12.0, "formatted_address": "Berlin"}})
    );
    let disconnected = GatewayEvent::Disconnected {
        reason: DisconnectReason::Kicked,
        detail: "logged on elsewhere".into(),
    };
    assert_eq!(
        serde_json::to_value(&disconnected).unwrap(),
        serde_json::json!({"kind": "disconnected", "data": {"reason": "kicked", "detail": "logged on elsewhere"}})
    );
    for r in DisconnectReason::ALL {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

#[test]
fn faults_are_set_and_cleared_with_their_last_error_kept() {
    let mut s = state();
    apply_from(
        &mut s,
        T,
        &[
            GatewayEvent::DeviceLost {
                radio: vhf1(),
                error: "USB sound card gone".into(),
            },
            GatewayEvent::PttFault {
                radio: vhf1(),
                error: Some("rigctld unreachable".into()),
            },
            GatewayEvent::CarrierFault {
                radio: vhf1(),
                error: Some("gpio read failed".into()),
            },
            GatewayEvent::HardwareWaiting {
                radio: "uhf1".into(),
                error: Some("no such device".into()),
            },
        ],
    );
    let h = &s.radio("vhf1").unwrap().health;
    assert_eq!(h.audio.fault(), Some("USB sound card gone"));
    assert_eq!(h.audio.changed_ms, Some(T));
    assert_eq!(h.ptt.fault(), Some("rigctld unreachable"));
    assert_eq!(h.carrier.fault(), Some("gpio read failed"));
    assert_eq!(
        s.radio("uhf1")
            .unwrap()
            .health
            .waiting_for_hardware
            .as_deref(),
        Some("no such device"),
        "a radio not configured is added"
    );
    // A repeat keeps the time it started.
    apply(
        &mut s,
        &GatewayEvent::PttFault {
            radio: vhf1(),
            error: Some("rigctld unreachable".into()),
        },
        T + 50,
    );
    assert_eq!(s.radio("vhf1").unwrap().health.ptt.changed_ms, Some(T + 1));

    apply_from(
        &mut s,
        T + 10,
        &[
            GatewayEvent::DeviceBack { radio: vhf1() },
            GatewayEvent::PttFault {
                radio: vhf1(),
                error: None,
            },
            GatewayEvent::CarrierFault {
                radio: vhf1(),
                error: None,
            },
            GatewayEvent::HardwareWaiting {
                radio: "uhf1".into(),
                error: None,
            },
        ],
    );
    let h = &s.radio("vhf1").unwrap().health;
    assert_eq!(
        h.audio,
        PartHealth {
            failing: false,
            last_error: Some("USB sound card gone".into()),
            changed_ms: Some(T + 10)
        }
    );
    assert_eq!(h.ptt.fault(), None);
    assert_eq!(h.carrier.fault(), None);
    assert_eq!(h.ptt.last_error.as_deref(), Some("rigctld unreachable"));
    assert_eq!(s.radio("uhf1").unwrap().health.waiting_for_hardware, None);
}

#[test]
fn the_state_and_the_events_serialize_in_snake_case_by_name() {
    let mut s = state();
    apply(&mut s, &GatewayEvent::LoggedOn, T);
    apply(
        &mut s,
        &GatewayEvent::PttOn {
            radio: radio("vhf1"),
        },
        T,
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["seq"], 2);
    assert_eq!(json["gateway"]["link"]["state"], "logged_on");
    assert_eq!(json["radios"]["vhf1"]["ptt"], true);
    assert_eq!(json["radios"]["vhf1"]["counters"]["key_ups"], 1);
    assert_eq!(json["channels"]["Dispatch"]["online"], false);
    assert!(json["radios"]["vhf1"].get("timed_out").is_none());
    let event = serde_json::to_value(GatewayEvent::ConnectFailed {
        error: "refused".into(),
        retry_in: Duration::from_secs(2),
    })
    .unwrap();
    assert_eq!(
        event,
        serde_json::json!({"kind": "connect_failed", "data": {"error": "refused", "retry_in_ms": 2000}})
    );
    let sent = serde_json::to_value(MessageOutcome::TimedOut).unwrap();
    assert_eq!(sent, "timed_out");
    assert_eq!(
        serde_json::to_value(GatewayEvent::Started).unwrap(),
        serde_json::json!({"kind": "started"})
    );
}

#[tokio::test]
async fn the_hub_numbers_applies_then_streams_each_event() {
    let hub = StateHub::new(state());
    let mut events = hub.subscribe();
    let mut stamped = hub.subscribe_stamped();
    let mut watch = hub.watch();
    assert_eq!(hub.publish(GatewayEvent::Started), 1);
    assert_eq!(
        hub.publish(GatewayEvent::PttOn {
            radio: radio("vhf1")
        }),
        2
    );
    assert!(watch.has_changed().unwrap());
    let now = watch.borrow_and_update().clone();
    assert_eq!(now.seq, 2);
    assert!(now.radio("vhf1").unwrap().ptt);
    assert_eq!(hub.snapshot(), now);
    assert_eq!(events.recv().await.unwrap(), GatewayEvent::Started);
    let first = stamped.recv().await.unwrap();
    assert_eq!((first.seq, &first.event), (1, &GatewayEvent::Started));
    assert!(first.at_ms > 0);
    assert_eq!(stamped.recv().await.unwrap().seq, 2);
    assert_eq!(
        events.recv().await.unwrap(),
        GatewayEvent::PttOn {
            radio: radio("vhf1")
        }
    );
}

#[tokio::test]
async fn a_reader_far_behind_loses_events_but_never_the_latest_state() {
    let hub = StateHub::with_capacity(state(), 16);
    let mut events = hub.subscribe();
    let mut watch = hub.watch();
    for _ in 0..1000 {
        hub.publish(GatewayEvent::PttOn {
            radio: radio("vhf1"),
        });
        hub.publish(GatewayEvent::PttOff {
            radio: radio("vhf1"),
        });
    }
    hub.publish(GatewayEvent::PttFault {
        radio: radio("vhf1"),
        error: Some("gone".into()),
    });
    hub.publish(GatewayEvent::PttFault {
        radio: radio("vhf1"),
        error: None,
    });
    assert!(matches!(
        events.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
    ));
    let s = watch.borrow_and_update().clone();
    assert_eq!(s.seq, 2002);
    let r = s.radio("vhf1").unwrap();
    assert!(!r.ptt);
    assert_eq!(r.counters.key_ups, 1000);
    assert_eq!(r.health.ptt.fault(), None);
}

#[test]
fn publishers_on_several_threads_stream_in_sequence_order() {
    const EACH: u64 = 5000;
    let hub = StateHub::with_capacity(GatewayState::default(), 4 * EACH as usize);
    let mut stamped = hub.subscribe_stamped();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    hub.publish(GatewayEvent::PttOn {
                        radio: format!("r{i}"),
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for seq in 1..=4 * EACH {
        assert_eq!(stamped.try_recv().unwrap().seq, seq);
    }
    let s = hub.snapshot();
    assert_eq!(s.seq, 4 * EACH);
    assert_eq!(s.radios.len(), 4);
}
