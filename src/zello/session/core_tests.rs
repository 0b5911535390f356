//! The connection's protocol decisions on made-up instants: no socket, no clock.

use super::*;
use tokio::sync::oneshot::error::TryRecvError;

const MS: Duration = Duration::from_millis(1);

struct Rig {
    link: Link,
    t0: Instant,
    acts: Vec<Action>,
}

fn link_config() -> LinkConfig {
    LinkConfig {
        user: "gateway1".into(),
        request_timeout: 10_000 * MS,
        incoming_idle: 2_000 * MS,
        dead_after: 75_000 * MS,
    }
}

impl Rig {
    /// A connection that sent its logon (seq 1) at t0.
    fn new() -> Rig {
        let t0 = Instant::now();
        let mut acts = Vec::new();
        let stats = Arc::new(SessionStats::default());
        let link = Link::new(link_config(), stats, t0, Logon::default(), false, &mut acts);
        Rig { link, t0, acts }
    }

    /// Logged on, with channel "Dispatch" online.
    fn ready() -> Rig {
        let mut r = Rig::new();
        r.text(0, r#"{"seq":1,"success":true}"#).unwrap();
        r.text(
            0,
            r#"{"command":"on_channel_status","channel":"Dispatch","status":"online","users_online":2}"#,
        )
        .unwrap();
        r.take();
        r
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn text(&mut self, ms: u64, text: &str) -> Flow {
        let now = self.at(ms);
        self.link.heard(now);
        self.link.on_text(now, text, &mut self.acts)
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.acts)
    }

    fn start(&mut self, ms: u64, id: u64) {
        let now = self.at(ms);
        self.link.start(
            now,
            id,
            "Dispatch".into(),
            CodecHeader::default(),
            None,
            &mut self.acts,
        );
    }

    /// Starts message `id` (start_stream with `seq`) and has the server give it `stream_id`.
    fn opened(&mut self, id: u64, seq: u64, stream_id: u32) {
        self.start(0, id);
        let reply = format!(r#"{{"seq":{seq},"success":true,"stream_id":{stream_id}}}"#);
        self.text(10, &reply).unwrap();
        self.take();
    }

    fn finish(&mut self, ms: u64, id: u64) {
        let now = self.at(ms);
        self.link.finish(now, id, &mut self.acts);
    }

    fn timers(&mut self, ms: u64) -> Flow {
        let now = self.at(ms);
        self.link.on_timers(now, &mut self.acts)
    }
}

/// The actions in short: what a test compares.
fn brief(acts: &[Action]) -> Vec<String> {
    acts.iter()
        .map(|a| match a {
            Action::Send(cmd) => format!("send {} seq {}", cmd.name(), cmd.seq().unwrap_or(0)),
            Action::SendBinary(_) => "binary".into(),
            Action::Emit(SessionEvent::OutgoingStarted {
                local_id,
                stream_id,
            }) => {
                format!("started {local_id} {stream_id}")
            }
            Action::Emit(e) => format!(
                "emit {}",
                format!("{e:?}").split([' ', '(', '{']).next().unwrap_or("")
            ),
            Action::Audio(_) => "audio".into(),
            Action::Answer(_, r) => format!("answer {}", if r.is_ok() { "ok" } else { "err" }),
            Action::Open {
                local_id,
                stream_id,
            } => format!("open {local_id} {stream_id}"),
            Action::Ended {
                local_id,
                stream_id,
                reason,
            } => format!("ended {local_id} {stream_id:?} {reason:?}"),
            Action::RefreshToken(_) => "refresh token".into(),
        })
        .collect()
}

#[test]
fn the_logon_reply_is_matched_by_its_seq() {
    let mut r = Rig::new();
    assert_eq!(brief(&r.take()), ["send logon seq 1"]);
    // A reply to another seq does not log on.
    r.text(5, r#"{"seq":7,"success":true}"#).unwrap();
    assert!(r.take().is_empty());
    r.text(6, r#"{"seq":1,"success":true,"refresh_token":"abc"}"#)
        .unwrap();
    assert_eq!(brief(&r.take()), ["refresh token", "emit LoggedOn"]);
    // The same reply again answers nothing: the seq is used up.
    r.text(7, r#"{"seq":1,"success":true}"#).unwrap();
    assert!(r.take().is_empty());
}

#[test]
fn a_refused_logon_ends_the_connection_with_its_code() {
    let mut r = Rig::new();
    let end = r.text(5, r#"{"seq":1,"error":"not authorized"}"#);
    assert!(
        matches!(
            end,
            Err(ConnEnd::LogonRefused {
                code: ErrorCode::NotAuthorized,
                with_refresh: false
            })
        ),
        "{end:?}"
    );
}

#[test]
fn no_logon_reply_in_time_closes_the_connection() {
    let mut r = Rig::new();
    assert_eq!(r.link.next_deadline(), r.at(10_000));
    r.timers(9_999).unwrap();
    let end = r.timers(10_000).unwrap_err();
    assert!(matches!(end, ConnEnd::NoLogonReply(_)), "{end:?}");
    assert_eq!(
        end.disconnect_reason(),
        (
            crate::state::DisconnectReason::Timeout,
            "no logon reply within 10 s".to_string()
        )
    );
}

#[test]
fn a_channel_online_before_the_logon_reply_is_ready_once_logged_on() {
    let mut r = Rig::new();
    r.text(
        1,
        r#"{"command":"on_channel_status","channel":"Dispatch","status":"online"}"#,
    )
    .unwrap();
    assert!(!r.link.worked());
    r.text(2, r#"{"seq":1,"success":true}"#).unwrap();
    let acts = r.take();
    assert!(matches!(
        acts.last(),
        Some(Action::Emit(SessionEvent::Channel { ready: true, .. }))
    ));
    assert!(r.link.worked());
}

#[test]
fn an_outgoing_message_opens_on_its_stream_id_and_stops() {
    let mut r = Rig::ready();
    r.start(100, 1);
    assert_eq!(brief(&r.take()), ["send start_stream seq 2"]);
    // The reply comes late compared with the audio (which waits in the message's own
    // buffer): the message opens then.
    r.text(400, r#"{"seq":2,"success":true,"stream_id":77}"#)
        .unwrap();
    assert_eq!(brief(&r.take()), ["open 1 77", "started 1 77"]);
    r.finish(3_000, 1);
    assert_eq!(
        brief(&r.take()),
        ["send stop_stream seq 3", "ended 1 Some(77) Completed"]
    );
    // Its stop's reply is matched and harmless; nothing is left open.
    r.text(3_100, r#"{"seq":3,"success":true}"#).unwrap();
    assert!(r.take().is_empty());
}

#[test]
fn a_message_ended_before_its_stream_id_is_stopped_when_it_comes() {
    let mut r = Rig::ready();
    r.start(100, 1);
    r.finish(200, 1);
    assert_eq!(brief(&r.take()), ["send start_stream seq 2"]);
    r.text(300, r#"{"seq":2,"success":true,"stream_id":5}"#)
        .unwrap();
    assert_eq!(
        brief(&r.take()),
        [
            "open 1 5",
            "started 1 5",
            "send stop_stream seq 3",
            "ended 1 Some(5) Completed"
        ]
    );
}

#[test]
fn a_message_on_a_channel_not_ready_ends_at_once() {
    let mut r = Rig::new();
    r.start(0, 4);
    assert_eq!(brief(&r.take())[1..], ["ended 4 None NotReady"]);
}

#[test]
fn a_refused_start_stream_ends_the_message() {
    let mut r = Rig::ready();
    r.start(0, 1);
    r.take();
    r.text(50, r#"{"seq":2,"error":"channel is not ready"}"#)
        .unwrap();
    let acts = r.take();
    assert!(
        matches!(
            acts.as_slice(),
            [Action::Ended {
                local_id: 1,
                stream_id: None,
                reason: OutgoingEnd::Rejected(_)
            }]
        ),
        "{acts:?}"
    );
}

#[test]
fn a_start_stream_unanswered_in_time_is_stopped_if_its_reply_comes_late() {
    let mut r = Rig::ready();
    r.start(0, 1);
    r.take();
    assert_eq!(r.link.next_deadline(), r.at(10_000));
    r.timers(10_000).unwrap();
    assert_eq!(brief(&r.take()), ["ended 1 None Timeout"]);
    r.text(12_000, r#"{"seq":2,"success":true,"stream_id":9}"#)
        .unwrap();
    assert_eq!(brief(&r.take()), ["send stop_stream seq 3"]);
    // An unknown seq is ignored.
    r.text(12_001, r#"{"seq":42,"success":true,"stream_id":10}"#)
        .unwrap();
    assert!(r.take().is_empty());
}

#[test]
fn the_server_stopping_our_message_ends_it() {
    let mut r = Rig::ready();
    r.opened(1, 2, 8);
    r.text(500, r#"{"command":"on_stream_stop","stream_id":8}"#)
        .unwrap();
    assert_eq!(brief(&r.take()), ["ended 1 Some(8) StoppedByServer"]);
    // Ending it afterwards does nothing more.
    r.finish(600, 1);
    assert!(r.take().is_empty());
}

fn audio(stream_id: u32, packet_id: u32) -> Bytes {
    Bytes::from(
        Packet::Audio {
            stream_id,
            packet_id,
            data: &[0xf8, 1, 2],
        }
        .to_vec(),
    )
}

#[test]
fn incoming_messages_carry_audio_and_end_when_idle() {
    let mut r = Rig::ready();
    r.text(
        0,
        r#"{"command":"on_stream_start","type":"audio","codec":"opus","codec_header":"gD4BPA==",
            "packet_duration":60,"stream_id":22,"channel":"Dispatch","from":"alice"}"#,
    )
    .unwrap();
    assert_eq!(brief(&r.take()), ["emit IncomingStart"]);
    r.link.on_binary(r.at(60), audio(22, 1), &mut r.acts);
    r.link.on_binary(r.at(60), audio(23, 1), &mut r.acts);
    assert_eq!(brief(&r.take()), ["audio"]);
    assert_eq!(SessionStats::get(&r.link.stats.unknown_stream_packets), 1);
    assert_eq!(r.link.next_deadline(), r.at(2_060));
    r.timers(2_059).unwrap();
    assert!(r.take().is_empty());
    r.timers(2_060).unwrap();
    let acts = r.take();
    assert!(matches!(
        acts.as_slice(),
        [Action::Emit(SessionEvent::IncomingEnd {
            stream_id: 22,
            reason: IncomingEnd::Idle,
            packets: 1
        })]
    ));
}

#[test]
fn a_silent_connection_is_dead() {
    let mut r = Rig::ready();
    r.timers(74_999).unwrap();
    assert!(matches!(r.timers(75_000), Err(ConnEnd::Dead(d)) if d == 75_000 * MS));
}

#[test]
fn requests_are_answered_by_seq_or_refused_before_sending() {
    let mut r = Rig::new();
    r.take();
    let text = |ch: &str| {
        Command::SendTextMessage(crate::zello::protocol::SendTextMessage {
            seq: None,
            channel: ch.into(),
            text: "hi".into(),
            recipient: None,
        })
    };
    let (tx, mut rx) = oneshot::channel();
    r.link
        .request(r.t0, text("Dispatch"), None, tx, &mut r.acts);
    assert_eq!(brief(&r.take()), ["answer err"], "not logged on yet");
    let mut r = Rig::ready();
    let (tx, _rx) = oneshot::channel();
    r.link.request(r.t0, text("Other"), None, tx, &mut r.acts);
    assert!(matches!(
        r.take().as_slice(),
        [Action::Answer(_, Err(SessionError::ChannelNotReady(c)))] if c == "Other"
    ));
    let (tx, _rx) = oneshot::channel();
    r.link
        .request(r.t0, text("Dispatch"), None, tx, &mut r.acts);
    assert_eq!(brief(&r.take()), ["send send_text_message seq 2"]);
    r.text(5, r#"{"seq":2,"success":true}"#).unwrap();
    assert_eq!(brief(&r.take()), ["answer ok"]);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
}

#[test]
fn an_accepted_image_sends_its_two_parts() {
    let mut r = Rig::ready();
    let (tx, _rx) = oneshot::channel();
    let cmd = Command::SendImage(crate::zello::protocol::SendImage {
        seq: None,
        channel: "Dispatch".into(),
        kind: "jpeg".into(),
        thumbnail_content_length: 1,
        content_length: 1,
        width: None,
        height: None,
        source: None,
        recipient: None,
    });
    let parts = (Bytes::from_static(b"t"), Bytes::from_static(b"f"));
    r.link.request(r.t0, cmd, Some(parts), tx, &mut r.acts);
    r.take();
    r.text(5, r#"{"seq":2,"success":true,"image_id":3}"#)
        .unwrap();
    assert_eq!(brief(&r.take()), ["binary", "binary", "answer ok"]);
}

#[test]
fn teardown_ends_everything_that_lived_on_the_connection() {
    let mut r = Rig::ready();
    r.opened(1, 2, 8);
    r.start(20, 2);
    r.take();
    r.link.close_gracefully(r.at(30), &mut r.acts);
    assert_eq!(brief(&r.take()), ["send stop_stream seq 4"]);
    let Rig { link, mut acts, .. } = r;
    link.teardown(&ConnEnd::Closed("gone".into()), &mut acts);
    assert_eq!(
        brief(&acts),
        [
            "ended 1 Some(8) Disconnected",
            "ended 2 None Disconnected",
            "emit Channel",
            "emit Disconnected"
        ]
    );
}

#[test]
fn a_kick_is_told_apart_from_other_closes() {
    assert!(matches!(
        ConnEnd::closed_by_server(Some((CLOSE_KICKED, ""))),
        ConnEnd::Kicked
    ));
    assert!(matches!(
        ConnEnd::closed_by_server(Some((1000, "bye"))),
        ConnEnd::Closed(r) if r == "closed by the server: 1000 bye"
    ));
}

#[test]
fn each_end_of_a_connection_has_its_typed_reason() {
    use crate::state::DisconnectReason as R;
    let reason = |end: ConnEnd| end.disconnect_reason().0;
    assert_eq!(
        reason(ConnEnd::closed_by_server(Some((CLOSE_KICKED, "")))),
        R::Kicked
    );
    assert_eq!(reason(ConnEnd::closed_by_server(None)), R::ServerClosed);
    assert_eq!(
        reason(ConnEnd::Broken("connection reset".into())),
        R::Network
    );
    assert_eq!(reason(ConnEnd::Dead(Duration::from_secs(75))), R::Timeout);
    assert_eq!(reason(ConnEnd::HeldOffline), R::HeldOffline);
    assert_eq!(
        reason(ConnEnd::LogonRefused {
            code: ErrorCode::NotAuthorized,
            with_refresh: false
        }),
        R::Refused
    );
    assert_eq!(
        ConnEnd::Dead(Duration::from_secs(75)).disconnect_reason().1,
        "no frame from the server for 75 s"
    );
}
