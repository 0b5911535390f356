//! The emulator over real loopback sockets, driven by a small raw WebSocket client. Anything
//! with timers runs under tokio's paused clock.

use super::*;
use crate::zello::protocol::{
    ChannelState, ChannelStatus, CodecHeader, Command, ErrorCode, Event, HEADER_LEN, ImageKind,
    Logon, Packet, Reply, SendImage, SendLocation, SendTextMessage, ServerMessage, StartStream,
    StopStream, audio_packet,
};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something that should come.
const WAIT: Duration = Duration::from_secs(5);

/// A frame as the test client sees it (pings and pongs are left out).
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Reply(Reply),
    Event(Event),
    Binary(Vec<u8>),
    /// The connection ended: with a close frame's code and reason, or without one.
    Closed(Option<(u16, String)>),
}

struct Client {
    name: String,
    ws: Ws,
    seq: u64,
    backlog: VecDeque<Frame>,
    closed: bool,
}

async fn start(config: SimConfig) -> SimHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("zello_gateway=debug")
        .with_test_writer()
        .try_init();
    SimServer::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// The emulator with `config`, and alice then bob online on channel A.
async fn alice_and_bob(config: SimConfig) -> (SimHandle, Client, Client) {
    let h = start(config).await;
    let alice = Client::online(&h, "alice", "A").await;
    let bob = Client::online(&h, "bob", "A").await;
    (h, alice, bob)
}

/// The emulator with its defaults, and a client `name` connected but not logged on.
async fn connected(name: &str) -> (SimHandle, Client) {
    let h = start(SimConfig::default()).await;
    let c = Client::connect(&h, name).await;
    (h, c)
}

fn header20() -> CodecHeader {
    CodecHeader::new(16000, 1, 20).unwrap()
}

fn logon_cmd(user: &str, password: &str, channels: &[&str]) -> Command {
    Command::Logon(Logon {
        username: Some(user.into()),
        password: Some(password.into()),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    })
}

fn start_cmd(channel: &str, recipient: Option<&str>) -> Command {
    Command::StartStream(StartStream::audio(
        channel,
        header20(),
        recipient.map(String::from),
    ))
}

fn text_cmd(channel: &str, text: &str, recipient: Option<&str>) -> Command {
    Command::SendTextMessage(SendTextMessage {
        seq: None,
        channel: channel.into(),
        text: text.into(),
        recipient: recipient.map(String::from),
    })
}

fn is_status_event(channel: &str, users_online: u32) -> Event {
    Event::ChannelStatus(ChannelStatus::online(channel, users_online))
}

fn is_status(channel: &str, users: u32) -> impl Fn(&Event) -> bool {
    let channel = channel.to_string();
    move |e| {
        matches!(e, Event::ChannelStatus(s)
            if s.channel == channel && s.status == ChannelState::Online && s.users_online == users)
    }
}

impl Client {
    /// Connects with Nagle off: under the paused clock a small frame held back waiting for a
    /// delayed ACK (40 ms of real time) would look like a frame that never came.
    async fn connect(h: &SimHandle, name: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(h.url(), None, true)
            .await
            .unwrap();
        Client::wrap(ws, name)
    }

    fn wrap(ws: Ws, name: &str) -> Client {
        Client {
            name: name.into(),
            ws,
            seq: 0,
            backlog: VecDeque::new(),
            closed: false,
        }
    }

    /// Connects, logs on with a password and waits for the channel to be online.
    async fn online(h: &SimHandle, user: &str, channel: &str) -> Client {
        let mut c = Client::connect(h, user).await;
        let reply = c.logon(user, "pw", &[channel]).await;
        assert!(reply.success, "{user}: {reply:?}");
        c.event(|e| matches!(e, Event::ChannelStatus(s) if s.channel == channel && s.status == ChannelState::Online))
            .await;
        c
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::binary(data)).await.unwrap();
    }

    /// Sends a command with the next seq; returns the seq.
    async fn send_cmd(&mut self, mut cmd: Command) -> u64 {
        self.seq += 1;
        cmd.set_seq(self.seq);
        self.send_text(&cmd.to_json()).await;
        self.seq
    }

    /// Sends a command and waits for its reply.
    async fn call(&mut self, cmd: Command) -> Reply {
        let seq = self.send_cmd(cmd).await;
        self.reply(seq).await
    }

    /// Logs on to `channel` with only the fields `with` sets (to check what a logon needs).
    async fn bare_logon(&mut self, channel: &str, with: impl FnOnce(&mut Logon)) -> Reply {
        let mut logon = Logon {
            channels: vec![channel.into()],
            ..Default::default()
        };
        with(&mut logon);
        self.call(Command::Logon(logon)).await
    }

    async fn logon(&mut self, user: &str, password: &str, channels: &[&str]) -> Reply {
        self.call(logon_cmd(user, password, channels)).await
    }

    /// Reads the next frame from the socket, or `None` if nothing came within `wait`.
    async fn read(&mut self, wait: Duration) -> Option<Frame> {
        if self.closed {
            return Some(Frame::Closed(None));
        }
        let deadline = Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            let frame = match msg {
                Some(Ok(Message::Text(t))) => match ServerMessage::decode(t.as_str()) {
                    Ok(ServerMessage::Reply(r)) => Frame::Reply(r),
                    Ok(ServerMessage::Event(e)) => Frame::Event(e),
                    Err(e) => panic!("{}: undecodable frame {t}: {e}", self.name),
                },
                Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                Some(Ok(Message::Close(c))) => {
                    self.closed = true;
                    Frame::Closed(c.map(|c| (u16::from(c.code), c.reason.to_string())))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.closed = true;
                    Frame::Closed(None)
                }
            };
            return Some(frame);
        }
    }

    /// The first frame matching `pred`, from the backlog or the socket; others are kept.
    async fn find(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            match self.read(WAIT).await {
                Some(f) if pred(&f) => return f,
                Some(Frame::Closed(c)) => {
                    panic!(
                        "{}: closed ({c:?}) while waiting for {what}; backlog {:?}",
                        self.name, self.backlog
                    )
                }
                Some(f) => self.backlog.push_back(f),
                None => panic!(
                    "{}: no {what} within {WAIT:?}; backlog {:?}",
                    self.name, self.backlog
                ),
            }
        }
    }

    async fn reply(&mut self, seq: u64) -> Reply {
        match self
            .find("reply", |f| matches!(f, Frame::Reply(r) if r.seq == seq))
            .await
        {
            Frame::Reply(r) => r,
            _ => unreachable!(),
        }
    }

    async fn event(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        match self
            .find("event", |f| matches!(f, Frame::Event(e) if pred(e)))
            .await
        {
            Frame::Event(e) => e,
            _ => unreachable!(),
        }
    }

    async fn binary(&mut self) -> Vec<u8> {
        match self
            .find("binary frame", |f| matches!(f, Frame::Binary(_)))
            .await
        {
            Frame::Binary(b) => b,
            _ => unreachable!(),
        }
    }

    /// Waits for the end of the connection; returns the close frame's code and reason.
    async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            match self.read(WAIT).await {
                Some(Frame::Closed(c)) => return c,
                Some(_) => {}
                None => panic!("{}: still open after {WAIT:?}", self.name),
            }
        }
    }

    /// Everything that arrives within `wait` (the backlog included).
    async fn drain(&mut self, wait: Duration) -> Vec<Frame> {
        let mut out: Vec<Frame> = self.backlog.drain(..).collect();
        let deadline = Instant::now() + wait;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Some(f) => out.push(f),
                None => break,
            }
        }
        out
    }

    async fn expect_quiet(&mut self, wait: Duration) {
        let got = self.drain(wait).await;
        assert!(
            got.is_empty(),
            "{}: expected nothing, got {got:?}",
            self.name
        );
    }
}

fn count(h: &SimHandle, pred: impl Fn(&SimEvent) -> bool) -> usize {
    h.events().iter().filter(|e| pred(e)).count()
}

// ---------------------------------------------------------------------------------------------
// Logon.

#[tokio::test(start_paused = true)]
async fn open_logon_replies_with_refresh_token_then_channel_status() {
    let (h, mut c) = connected("alice").await;
    let reply = c.logon("alice", "anything", &["Dispatch"]).await;
    assert!(reply.success);
    assert!(
        reply
            .refresh_token
            .as_deref()
            .is_some_and(|t| t.len() >= 20)
    );
    let status = c.event(is_status("Dispatch", 1)).await;
    assert_eq!(
        status,
        Event::ChannelStatus(ChannelStatus {
            channel: "Dispatch".into(),
            status: ChannelState::Online,
            users_online: 1,
            images_supported: true,
            texting_supported: true,
            locations_supported: true,
            error: None,
            error_type: None,
        })
    );
    assert_eq!(h.online_users("Dispatch"), vec!["alice".to_string()]);
    // Logon is logged before the status.
    let events = h.events();
    let logon = events
        .iter()
        .position(|e| matches!(e, SimEvent::Logon { user, ok: true, .. } if user == "alice"))
        .unwrap();
    let status = events
        .iter()
        .position(
            |e| matches!(e, SimEvent::StatusSent { user, online: true, .. } if user == "alice"),
        )
        .unwrap();
    assert!(logon < status);
    let log = h.log();
    assert!(log.windows(2).all(|w| w[0].index < w[1].index));
}

#[tokio::test(start_paused = true)]
async fn singular_channel_field_and_several_channels_are_accepted() {
    let (h, mut c) = connected("a").await;
    c.send_text(r#"{"command":"logon","seq":1,"username":"a","password":"p","channel":"One"}"#)
        .await;
    assert!(c.reply(1).await.success);
    c.event(is_status("One", 1)).await;

    let mut d = Client::connect(&h, "b").await;
    assert!(d.logon("b", "p", &["One", "Two"]).await.success);
    d.event(is_status("One", 2)).await;
    d.event(is_status("Two", 1)).await;
}

#[tokio::test(start_paused = true)]
async fn logon_failures_answer_with_the_spec_errors() {
    let (h, mut c) = connected("c").await;
    // No password.
    let r = c.bare_logon("A", |l| l.username = Some("x".into())).await;
    assert_eq!(r.error, Some(ErrorCode::NotEnoughParams));
    // No channel.
    let r = c.logon("x", "p", &[]).await;
    assert_eq!(r.error, Some(ErrorCode::NotEnoughParams));
    // No credentials at all.
    let r = c.bare_logon("A", |_| {}).await;
    assert_eq!(r.error, Some(ErrorCode::NotEnoughParams));
    // Too many channels.
    let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("ch{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = c.logon("x", "p", &many).await;
    assert_eq!(r.error, Some(ErrorCode::ChannelsLimitExceeded));
    // The connection is still usable.
    assert!(c.logon("x", "p", &["A"]).await.success);
    assert_eq!(
        count(&h, |e| matches!(e, SimEvent::Logon { ok: false, .. })),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn anonymous_token_logon_is_listen_only() {
    let (_h, mut c) = connected("anon").await;
    let r = c
        .bare_logon("A", |l| l.auth_token = Some("token".into()))
        .await;
    assert!(r.success);
    c.event(is_status("A", 1)).await;
    let r = c.call(start_cmd("A", None)).await;
    assert_eq!(r.error, Some(ErrorCode::ListenOnlyConnection));
}

#[tokio::test(start_paused = true)]
async fn accounts_are_enforced() {
    let h = start(SimConfig {
        accounts: Some(Accounts::parse(super::accounts::SAMPLE).unwrap()),
        ..SimConfig::default()
    })
    .await;
    let mut c = Client::connect(&h, "gateway1").await;
    assert_eq!(
        c.logon("gateway1", "wrong", &["Dispatch"]).await.error,
        Some(ErrorCode::NotAuthorized)
    );
    assert_eq!(
        c.logon("stranger", "secret", &["Dispatch"]).await.error,
        Some(ErrorCode::NotAuthorized)
    );
    // Anonymous logons are refused when accounts are enforced.
    let r = c
        .bare_logon("Dispatch", |l| l.auth_token = Some("t".into()))
        .await;
    assert_eq!(r.error, Some(ErrorCode::NotAuthorized));

    let r = c
        .logon("gateway1", "secret", &["Dispatch", "Secret Ops"])
        .await;
    assert!(r.success);
    c.event(is_status("Dispatch", 1)).await;
    let refused = c
        .event(|e| matches!(e, Event::ChannelStatus(s) if s.channel == "Secret Ops"))
        .await;
    let Event::ChannelStatus(s) = refused else {
        unreachable!()
    };
    assert_eq!(s.status, ChannelState::Offline);
    assert_eq!(s.error_type.as_deref(), Some("configuration"));
    assert!(s.error.is_some());
    assert!(h.online_users("Secret Ops").is_empty());

    // A listen-only account may listen but not talk.
    let mut m = Client::connect(&h, "monitor").await;
    assert!(m.logon("monitor", "pw", &["Dispatch"]).await.success);
    m.event(is_status("Dispatch", 2)).await;
    assert_eq!(
        m.call(start_cmd("Dispatch", None)).await.error,
        Some(ErrorCode::ListenOnlyConnection)
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_token_works_until_the_fault_refuses_it() {
    let (h, mut c) = connected("alice").await;
    let token = c.logon("alice", "pw", &["A"]).await.refresh_token.unwrap();
    drop(c);

    let by_token = |token: &str| {
        Command::Logon(Logon {
            refresh_token: Some(token.into()),
            username: Some("alice".into()),
            channels: vec!["A".into()],
            ..Default::default()
        })
    };
    let mut c = Client::connect(&h, "alice").await;
    let r = c.call(by_token(&token)).await;
    assert!(r.success, "{r:?}");
    let token2 = r.refresh_token.unwrap();
    assert_ne!(token, token2);
    drop(c);

    let mut c = Client::connect(&h, "alice").await;
    assert_eq!(
        c.call(by_token("never-issued")).await.error,
        Some(ErrorCode::NotAuthorized)
    );
    h.faults().refuse_refresh_tokens(true);
    // Refused even with the password beside it: the client must fall back.
    let mut with_password = by_token(&token2);
    if let Command::Logon(l) = &mut with_password {
        l.password = Some("pw".into());
    }
    assert_eq!(
        c.call(with_password).await.error,
        Some(ErrorCode::NotAuthorized)
    );
    assert!(c.logon("alice", "pw", &["A"]).await.success);
}

#[tokio::test(start_paused = true)]
async fn commands_before_logon_get_not_logged_in() {
    let (_h, mut c) = connected("c").await;
    assert_eq!(
        c.call(start_cmd("A", None)).await.error,
        Some(ErrorCode::NotLoggedIn)
    );
    // Missing fields too: the command is known but logon comes first.
    c.send_text(r#"{"command":"stop_stream","seq":50}"#).await;
    assert_eq!(c.reply(50).await.error, Some(ErrorCode::NotLoggedIn));
    // Without a seq the answer is an on_error event.
    c.send_text(&text_cmd("A", "hi", None).to_json()).await;
    c.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::NotLoggedIn))
        .await;
    c.send_binary(audio_packet(1, b"x")).await;
    c.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::NotLoggedIn))
        .await;
    // The keepalive needs no logon and no answer.
    c.send_text(r#"{"command":"keepalive"}"#).await;
    c.expect_quiet(Duration::from_secs(1)).await;
    assert!(c.logon("c", "p", &["A"]).await.success);
}

#[tokio::test(start_paused = true)]
async fn users_online_updates_reach_everyone_in_the_channel() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    a.event(is_status("A", 2)).await;
    assert_eq!(h.online_users("A"), vec!["alice", "bob"]);
    // Someone in another channel changes nothing here.
    let _z = Client::online(&h, "zed", "Z").await;
    b.send_cmd(Command::Keepalive { seq: None }).await;
    drop(b);
    a.event(is_status("A", 1)).await;
    assert_eq!(h.online_users("A"), vec!["alice"]);
    a.expect_quiet(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn duplicate_logon_kicks_the_older_session_with_3003() {
    let h = start(SimConfig::default()).await;
    let mut old = Client::online(&h, "alice", "A").await;
    let mut new = Client::online(&h, "alice", "A").await;
    assert_eq!(old.closed().await, Some((3003, "kicked".to_string())));
    assert!(h.events().contains(&SimEvent::Kicked {
        user: "alice".into()
    }));
    assert_eq!(h.online_users("A"), vec!["alice"]);
    // The new session works.
    assert!(new.call(start_cmd("A", None)).await.success);
}

// ---------------------------------------------------------------------------------------------
// Voice.

#[tokio::test(start_paused = true)]
async fn voice_is_relayed_with_server_packet_ids_and_intact_payloads() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    a.event(is_status("A", 2)).await;
    let r = a.call(start_cmd("A", None)).await;
    assert!(r.success);
    let id = r.stream_id.unwrap();
    let start = b.event(|e| matches!(e, Event::StreamStart(_))).await;
    let Event::StreamStart(s) = start else {
        unreachable!()
    };
    assert_eq!(s.stream_id, id);
    assert_eq!(s.from, "alice");
    assert_eq!(s.channel, "A");
    assert_eq!(s.codec, "opus");
    assert_eq!(s.kind, "audio");
    assert_eq!(s.codec_header, header20().to_base64());
    assert_eq!(s.packet_duration, 20);
    assert_eq!(s.recipient, None);

    let payloads: Vec<Vec<u8>> = vec![vec![0xfc, 1, 2, 3], vec![], (0..=255).collect()];
    for p in &payloads {
        // Clients may put anything in packet_id; the server numbers its own.
        let mut frame = audio_packet(id, p);
        frame[5..9].copy_from_slice(&[9, 9, 9, 9]);
        a.send_binary(frame).await;
    }
    for (i, p) in payloads.iter().enumerate() {
        let frame = b.binary().await;
        assert_eq!(
            Packet::parse(&frame).unwrap(),
            Packet::Audio {
                stream_id: id,
                packet_id: i as u32,
                data: p
            }
        );
    }
    assert!(
        a.call(Command::StopStream(StopStream {
            seq: None,
            stream_id: id,
            channel: Some("A".into()),
        }))
        .await
        .success
    );
    b.event(|e| matches!(e, Event::StreamStop(s) if s.stream_id == id))
        .await;
    // Nothing comes back to the sender.
    a.expect_quiet(Duration::from_secs(1)).await;
    let packets: Vec<u32> = h
        .events()
        .iter()
        .filter_map(|e| match e {
            SimEvent::Packet {
                stream_id,
                packet_id,
                ..
            } if *stream_id == id => Some(*packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(packets, vec![0, 1, 2]);
    assert!(h.events().contains(&SimEvent::StreamStop {
        user: "alice".into(),
        stream_id: id,
        reason: StopReason::Client
    }));
}

#[tokio::test(start_paused = true)]
async fn for_sends_to_that_user_only() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    let mut c = Client::online(&h, "carol", "A").await;
    let id = a.call(start_cmd("A", Some("bob"))).await.stream_id.unwrap();
    a.send_binary(audio_packet(id, b"opus")).await;
    let start = b.event(|e| matches!(e, Event::StreamStart(_))).await;
    assert!(matches!(start, Event::StreamStart(s) if s.recipient.as_deref() == Some("bob")));
    assert_eq!(
        b.binary().await,
        Packet::Audio {
            stream_id: id,
            packet_id: 0,
            data: b"opus"
        }
        .to_vec()
    );
    assert!(a.call(text_cmd("A", "psst", Some("bob"))).await.success);
    let text = b.event(|e| matches!(e, Event::TextMessage(_))).await;
    assert!(matches!(text, Event::TextMessage(t) if t.recipient.as_deref() == Some("bob")));
    // Carol sees only the status updates she got while the others joined.
    let got = c.drain(Duration::from_secs(1)).await;
    assert!(
        got.iter()
            .all(|f| matches!(f, Frame::Event(Event::ChannelStatus(_)))),
        "{got:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn start_stream_is_validated() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    // Not in that channel.
    assert_eq!(
        a.call(start_cmd("B", None)).await.error,
        Some(ErrorCode::ChannelIsNotReady)
    );
    // Wrong codec, bad header, bad duration.
    let mut bad = StartStream::audio("A", header20(), None);
    bad.codec = "speex".into();
    assert_eq!(
        a.call(Command::StartStream(bad)).await.error,
        Some(ErrorCode::InvalidRequest)
    );
    let mut bad = StartStream::audio("A", header20(), None);
    bad.codec_header = "AAAA".into();
    assert_eq!(
        a.call(Command::StartStream(bad)).await.error,
        Some(ErrorCode::InvalidRequest)
    );
    let mut bad = StartStream::audio("A", header20(), None);
    bad.packet_duration = 0;
    assert_eq!(
        a.call(Command::StartStream(bad)).await.error,
        Some(ErrorCode::InvalidRequest)
    );
    // Missing fields.
    a.send_text(r#"{"command":"start_stream","seq":70,"channel":"A","type":"audio","codec":"opus","packet_duration":20}"#)
        .await;
    assert_eq!(a.reply(70).await.error, Some(ErrorCode::NotEnoughParams));
    // stop_stream of a stream that is not ours or does not exist; null id.
    assert_eq!(
        a.call(Command::StopStream(StopStream {
            seq: None,
            stream_id: 4242,
            channel: None
        }))
        .await
        .error,
        Some(ErrorCode::FailedToStopStream)
    );
    a.send_text(r#"{"command":"stop_stream","seq":71,"stream_id":null}"#)
        .await;
    assert_eq!(a.reply(71).await.error, Some(ErrorCode::NotEnoughParams));
    // Listen-only by request.
    let mut l = Client::connect(&h, "lo").await;
    let r = l
        .call(Command::Logon(Logon {
            username: Some("lo".into()),
            password: Some("p".into()),
            channels: vec!["A".into()],
            listen_only: Some(true),
            ..Default::default()
        }))
        .await;
    assert!(r.success);
    l.event(is_status("A", 2)).await;
    assert_eq!(
        l.call(start_cmd("A", None)).await.error,
        Some(ErrorCode::ListenOnlyConnection)
    );
    assert_eq!(
        l.call(text_cmd("A", "hi", None)).await.error,
        Some(ErrorCode::ListenOnlyConnection)
    );
}

#[tokio::test(start_paused = true)]
async fn packets_for_unknown_or_foreign_streams_are_refused() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    let mut c = Client::online(&h, "carol", "A").await;
    a.send_binary(audio_packet(999, b"x")).await;
    a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidAudioPacket))
        .await;
    let id = a.call(start_cmd("A", None)).await.stream_id.unwrap();
    // Carol sending into Alice's stream.
    c.send_binary(audio_packet(id, b"intruder")).await;
    c.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidAudioPacket))
        .await;
    b.event(|e| matches!(e, Event::StreamStart(_))).await;
    let got = b.drain(Duration::from_secs(1)).await;
    assert!(
        !got.iter().any(|f| matches!(f, Frame::Binary(_))),
        "{got:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sender_that_disconnects_mid_stream_has_its_stream_stopped() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    let id = a.call(start_cmd("A", None)).await.stream_id.unwrap();
    a.send_binary(audio_packet(id, b"1")).await;
    b.binary().await;
    drop(a);
    b.event(|e| matches!(e, Event::StreamStop(s) if s.stream_id == id))
        .await;
    b.event(is_status("A", 1)).await;
    assert!(h.events().contains(&SimEvent::StreamStop {
        user: "alice".into(),
        stream_id: id,
        reason: StopReason::SenderGone
    }));
}

#[tokio::test(start_paused = true)]
async fn a_slow_client_is_disconnected_without_holding_up_the_others() {
    let h = start(SimConfig {
        client_queue: 8,
        ..SimConfig::default()
    })
    .await;
    let mut a = Client::online(&h, "alice", "A").await;
    let _bob_never_reads = Client::online(&h, "bob", "A").await;
    let mut c = Client::online(&h, "carol", "A").await;
    a.event(is_status("A", 3)).await;
    let id = a.call(start_cmd("A", None)).await.stream_id.unwrap();
    c.event(|e| matches!(e, Event::StreamStart(_))).await;
    let payload = vec![0x5a; 200 * 1024];
    let bob_dropped = |h: &SimHandle| {
        h.events().contains(&SimEvent::Disconnected {
            user: "bob".into(),
            reason: DisconnectReason::SlowClient,
        })
    };
    let mut sent = 0;
    // Enough to fill any loopback socket buffers (a few MB) and then Bob's queue.
    while sent < 300 && !bob_dropped(&h) {
        a.send_binary(audio_packet(id, &payload)).await;
        sent += 1;
        // Carol keeps up and gets every packet in order.
        let frame = c.binary().await;
        assert_eq!(&frame[5..9], &(sent - 1u32).to_be_bytes());
        assert_eq!(frame.len(), HEADER_LEN + payload.len());
    }
    assert!(bob_dropped(&h), "bob still connected after {sent} packets");
    c.event(is_status("A", 2)).await;
    assert!(a.call(text_cmd("A", "still flowing", None)).await.success);
    c.event(|e| matches!(e, Event::TextMessage(_))).await;
}

// ---------------------------------------------------------------------------------------------
// Texts, locations, images.

#[tokio::test(start_paused = true)]
async fn texts_and_locations_are_relayed() {
    let (_h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    a.event(is_status("A", 2)).await;
    assert!(a.call(text_cmd("A", "Hello Zello!", None)).await.success);
    let Event::TextMessage(t) = b.event(|e| matches!(e, Event::TextMessage(_))).await else {
        unreachable!()
    };
    assert_eq!(
        (t.from.as_str(), t.channel.as_str(), t.text.as_str()),
        ("alice", "A", "Hello Zello!")
    );
    assert_eq!(t.recipient, None);
    assert!(t.message_id > 0);
    assert_eq!(
        a.call(text_cmd("A", "  ", None)).await.error,
        Some(ErrorCode::EmptyMessage)
    );
    let loc = SendLocation {
        seq: None,
        channel: "A".into(),
        latitude: 46.714475,
        longitude: 8.1806319,
        accuracy: Some(10.0),
        formatted_address: Some("Hausenstrasse 34".into()),
        recipient: None,
    };
    assert!(a.call(Command::SendLocation(loc)).await.success);
    let Event::Location(l) = b.event(|e| matches!(e, Event::Location(_))).await else {
        unreachable!()
    };
    assert_eq!(l.from, "alice");
    assert_eq!(l.latitude, 46.714475);
    assert_eq!(l.longitude, 8.1806319);
    assert_eq!(l.accuracy, Some(10.0));
    assert_eq!(l.formatted_address.as_deref(), Some("Hausenstrasse 34"));
    assert_ne!(l.message_id, t.message_id);
    a.expect_quiet(Duration::from_millis(500)).await;
}

#[tokio::test(start_paused = true)]
async fn images_are_delivered_after_both_parts_arrive() {
    let (_h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    let r = a
        .call(Command::SendImage(SendImage {
            seq: None,
            channel: "A".into(),
            kind: "jpeg".into(),
            thumbnail_content_length: 3,
            content_length: 5,
            width: Some(640),
            height: Some(480),
            source: Some("camera".into()),
            recipient: None,
        }))
        .await;
    assert!(r.success);
    let image_id = r.image_id.unwrap();
    let thumb = Packet::Image {
        image_id,
        kind: ImageKind::Thumbnail,
        data: &[0xff, 0xd8, 1],
    }
    .to_vec();
    let full = Packet::Image {
        image_id,
        kind: ImageKind::Full,
        data: &[0xff, 0xd8, 1, 2, 3],
    }
    .to_vec();
    a.send_binary(thumb.clone()).await;
    // Nothing until the full image is in.
    let got = b.drain(Duration::from_millis(500)).await;
    assert!(got.is_empty(), "{got:?}");
    a.send_binary(full.clone()).await;
    let Some(Frame::Event(Event::Image(img))) = b.read(WAIT).await else {
        panic!("on_image first")
    };
    assert_eq!(img.message_id, image_id);
    assert_eq!((img.from.as_str(), img.channel.as_str()), ("alice", "A"));
    assert_eq!((img.width, img.height), (Some(640), Some(480)));
    assert_eq!(b.read(WAIT).await, Some(Frame::Binary(thumb)));
    assert_eq!(b.read(WAIT).await, Some(Frame::Binary(full.clone())));
    // A part of an image that was never announced.
    let mut stray = full;
    stray[1..5].copy_from_slice(&7777u32.to_be_bytes());
    a.send_binary(stray).await;
    a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidAudioPacket))
        .await;
}

// ---------------------------------------------------------------------------------------------
// Pings.

#[tokio::test(start_paused = true)]
async fn pings_are_sent_and_answered() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    // Reading answers the pings (tungstenite sends the pongs).
    let got = a.drain(Duration::from_secs(95)).await;
    assert!(got.is_empty(), "{got:?}");
    let stats = h.stats("alice").unwrap();
    assert_eq!(stats.pings_sent, 3);
    assert_eq!(stats.pongs_received, 3);
    assert_eq!(
        count(
            &h,
            |e| matches!(e, SimEvent::PingSent { user } if user == "alice")
        ),
        3
    );
    assert_eq!(
        count(
            &h,
            |e| matches!(e, SimEvent::PongReceived { user } if user == "alice")
        ),
        3
    );
    assert_eq!(h.online_users("A"), vec!["alice"]);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_answer_pings_is_dropped() {
    let h = start(SimConfig::default()).await;
    let mut b = Client::online(&h, "bob", "A").await;
    let a = Client::online(&h, "alice", "A").await;
    b.event(is_status("A", 2)).await;
    let t0 = Instant::now();
    // Alice stops reading, so no pong goes back; Bob keeps reading (and answering).
    let (entry, bob_got) = tokio::join!(
        h.wait_for(Duration::from_secs(120), |e| {
            matches!(e, SimEvent::Disconnected { user, reason: DisconnectReason::PongTimeout } if user == "alice")
        }),
        b.drain(Duration::from_secs(70)),
    );
    let after = entry.expect("alice dropped").at - t0;
    // Pinged at 30 s, unanswered by 60 s.
    assert!(
        after >= Duration::from_secs(60) && after <= Duration::from_secs(61),
        "{after:?}"
    );
    // Bob stays; he saw Alice go.
    assert_eq!(bob_got, vec![Frame::Event(is_status_event("A", 1))]);
    assert_eq!(h.online_users("A"), vec!["bob"]);
    assert!(h.stats("bob").unwrap().pongs_received >= 2);
    drop(a);
}

// ---------------------------------------------------------------------------------------------
// Echo.

#[tokio::test(start_paused = true)]
async fn echo_replays_voice_texts_and_locations() {
    let h = start(SimConfig {
        echo: true,
        ..SimConfig::default()
    })
    .await;
    let mut a = Client::connect(&h, "alice").await;
    assert!(a.logon("alice", "pw", &["A"]).await.success);
    a.event(is_status("A", 2)).await;
    assert_eq!(h.online_users("A"), vec!["alice", "echo"]);

    let id = a.call(start_cmd("A", None)).await.stream_id.unwrap();
    let payloads: [&[u8]; 3] = [b"one", b"two", b"three"];
    for p in payloads {
        a.send_binary(audio_packet(id, p)).await;
    }
    a.call(Command::StopStream(StopStream {
        seq: None,
        stream_id: id,
        channel: None,
    }))
    .await;
    let Event::StreamStart(s) = a.event(|e| matches!(e, Event::StreamStart(_))).await else {
        unreachable!()
    };
    assert_eq!(s.from, ECHO_USER);
    assert_ne!(s.stream_id, id);
    assert_eq!(s.codec_header, header20().to_base64());
    assert_eq!(s.packet_duration, 20);
    for (i, p) in payloads.iter().enumerate() {
        let frame = a.binary().await;
        assert_eq!(
            Packet::parse(&frame).unwrap(),
            Packet::Audio {
                stream_id: s.stream_id,
                packet_id: i as u32,
                data: p
            }
        );
    }
    a.event(|e| matches!(e, Event::StreamStop(x) if x.stream_id == s.stream_id))
        .await;
    // Paced in real time: 20 ms between packets.
    let times: Vec<Instant> = h
        .log()
        .iter()
        .filter(
            |e| matches!(e.event, SimEvent::Packet { stream_id, .. } if stream_id == s.stream_id),
        )
        .map(|e| e.at)
        .collect();
    assert_eq!(times.len(), 3);
    assert_eq!(times[1] - times[0], Duration::from_millis(20));
    assert_eq!(times[2] - times[1], Duration::from_millis(20));

    assert!(a.call(text_cmd("A", "ping?", None)).await.success);
    let Event::TextMessage(t) = a.event(|e| matches!(e, Event::TextMessage(_))).await else {
        unreachable!()
    };
    assert_eq!((t.from.as_str(), t.text.as_str()), (ECHO_USER, "ping?"));
    let loc = SendLocation {
        seq: None,
        channel: "A".into(),
        latitude: 1.5,
        longitude: 2.5,
        accuracy: None,
        formatted_address: None,
        recipient: None,
    };
    assert!(a.call(Command::SendLocation(loc)).await.success);
    let Event::Location(l) = a.event(|e| matches!(e, Event::Location(_))).await else {
        unreachable!()
    };
    assert_eq!(
        (l.from.as_str(), l.latitude, l.longitude),
        (ECHO_USER, 1.5, 2.5)
    );

    // Nobody may log on as the echo user.
    let mut e = Client::connect(&h, "echo").await;
    assert_eq!(
        e.logon(ECHO_USER, "pw", &["A"]).await.error,
        Some(ErrorCode::NotAuthorized)
    );
}

// ---------------------------------------------------------------------------------------------
// Faults.

#[tokio::test(start_paused = true)]
async fn fault_delay_start_stream_reply() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    h.faults().delay_start_stream(Duration::from_secs(2));
    let t0 = Instant::now();
    let seq = a.send_cmd(start_cmd("A", None)).await;
    b.event(|e| matches!(e, Event::StreamStart(_))).await;
    assert!(Instant::now() - t0 < Duration::from_millis(100));
    let r = a.reply(seq).await;
    assert!(r.success);
    assert!(Instant::now() - t0 >= Duration::from_secs(2));
    h.faults().delay_start_stream(Duration::ZERO);
    let t1 = Instant::now();
    assert!(a.call(start_cmd("A", None)).await.success);
    assert!(Instant::now() - t1 < Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn fault_reject_start_stream_once_and_always() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    h.faults()
        .reject_start_stream_once(ErrorCode::WoodpeckerProhibited);
    assert_eq!(
        a.call(start_cmd("A", None)).await.error,
        Some(ErrorCode::WoodpeckerProhibited)
    );
    assert!(a.call(start_cmd("A", None)).await.success);
    h.faults()
        .reject_start_stream_always(ErrorCode::FailedToStartStream);
    for _ in 0..3 {
        assert_eq!(
            a.call(start_cmd("A", None)).await.error,
            Some(ErrorCode::FailedToStartStream)
        );
    }
    h.faults().accept_start_stream();
    assert!(a.call(start_cmd("A", None)).await.success);
}

#[tokio::test(start_paused = true)]
async fn fault_refuse_logon() {
    let (h, mut a) = connected("alice").await;
    h.faults().refuse_logon_once(ErrorCode::InternalServerError);
    assert_eq!(
        a.logon("alice", "pw", &["A"]).await.error,
        Some(ErrorCode::InternalServerError)
    );
    assert!(a.logon("alice", "pw", &["A"]).await.success);
    h.faults().refuse_logon_always(ErrorCode::NotAuthorized);
    let mut b = Client::connect(&h, "bob").await;
    for _ in 0..2 {
        assert_eq!(
            b.logon("bob", "pw", &["A"]).await.error,
            Some(ErrorCode::NotAuthorized)
        );
    }
    h.faults().accept_logon();
    assert!(b.logon("bob", "pw", &["A"]).await.success);
}

#[tokio::test(start_paused = true)]
async fn fault_drop_connection_closes_without_a_close_frame() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    assert!(h.faults().drop_connection("alice"));
    assert!(!h.faults().drop_connection("nobody"));
    assert_eq!(a.closed().await, None);
    b.event(is_status("A", 1)).await;
    h.wait_for(WAIT, |e| {
        matches!(e, SimEvent::Disconnected { user, reason: DisconnectReason::Dropped } if user == "alice")
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn fault_kick() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    assert!(h.faults().kick("alice"));
    assert_eq!(a.closed().await, Some((3003, "kicked".into())));
    assert!(h.online_users("A").is_empty());
}

#[tokio::test(start_paused = true)]
async fn fault_stop_stream_ends_the_senders_stream() {
    let (h, mut a, mut b) = alice_and_bob(SimConfig::default()).await;
    let id = a.call(start_cmd("A", None)).await.stream_id.unwrap();
    a.send_binary(audio_packet(id, b"1")).await;
    b.event(|e| matches!(e, Event::StreamStart(_))).await;
    b.binary().await;
    assert_eq!(h.faults().stop_stream("alice"), vec![id]);
    a.event(|e| matches!(e, Event::StreamStop(s) if s.stream_id == id))
        .await;
    b.event(|e| matches!(e, Event::StreamStop(s) if s.stream_id == id))
        .await;
    // Late packets are dropped quietly; stopping it again is the harmless error.
    a.send_binary(audio_packet(id, b"2")).await;
    assert_eq!(
        a.call(Command::StopStream(StopStream {
            seq: None,
            stream_id: id,
            channel: None
        }))
        .await
        .error,
        Some(ErrorCode::FailedToStopStream)
    );
    let got = b.drain(Duration::from_millis(500)).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(h.faults().stop_stream("alice").is_empty());
}

#[tokio::test(start_paused = true)]
async fn fault_freeze_stops_all_traffic_without_closing() {
    // Bob does not read during the long wait; a long pong timeout keeps him on.
    let (h, mut a, mut b) = alice_and_bob(SimConfig {
        pong_timeout: Duration::from_secs(1000),
        ..SimConfig::default()
    })
    .await;
    a.event(is_status("A", 2)).await;
    assert!(h.faults().freeze("alice"));
    h.wait_for(WAIT, |e| matches!(e, SimEvent::Frozen { frozen: true, .. }))
        .await
        .unwrap();
    let pings_before = h.stats("alice").unwrap().pings_sent;
    assert!(b.call(text_cmd("A", "anyone?", None)).await.success);
    // No pings, no relays, no replies, and no close for well over the ping timeout.
    a.send_text(&text_cmd("A", "hello", None).to_json()).await;
    let got = a.drain(Duration::from_secs(100)).await;
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(h.stats("alice").unwrap().pings_sent, pings_before);
    assert_eq!(h.online_users("A"), vec!["alice", "bob"]);
    // Thawed, it works again, and what it sent meanwhile is read then.
    assert!(h.faults().thaw("alice"));
    assert!(a.call(text_cmd("A", "back", None)).await.success);
    b.event(|e| matches!(e, Event::TextMessage(t) if t.text == "hello"))
        .await;
}

#[tokio::test(start_paused = true)]
async fn fault_hold_channel_status_until_released() {
    let h = start(SimConfig::default()).await;
    h.faults().hold_channel_status();
    let mut a = Client::connect(&h, "alice").await;
    assert!(a.logon("alice", "pw", &["A"]).await.success);
    a.expect_quiet(Duration::from_secs(5)).await;
    assert_eq!(
        a.call(start_cmd("A", None)).await.error,
        Some(ErrorCode::ChannelIsNotReady)
    );
    assert!(h.online_users("A").is_empty());
    h.faults().release_channel_status();
    a.event(is_status("A", 1)).await;
    assert!(a.call(start_cmd("A", None)).await.success);
}

#[tokio::test(start_paused = true)]
async fn status_delay_postpones_the_first_status() {
    let h = start(SimConfig {
        status_delay: Duration::from_secs(3),
        ..SimConfig::default()
    })
    .await;
    let mut a = Client::connect(&h, "alice").await;
    assert!(a.logon("alice", "pw", &["A"]).await.success);
    let t0 = Instant::now();
    a.event(is_status("A", 1)).await;
    let waited = Instant::now() - t0;
    assert!(waited >= Duration::from_millis(2900), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn faults_clear_puts_everything_back() {
    let h = start(SimConfig::default()).await;
    let f = h.faults();
    f.refuse_logon_always(ErrorCode::NotAuthorized);
    f.reject_start_stream_always(ErrorCode::FailedToStartStream);
    f.hold_channel_status();
    f.refuse_refresh_tokens(true);
    f.clear();
    let mut a = Client::online(&h, "alice", "A").await;
    assert!(a.call(start_cmd("A", None)).await.success);
    assert!(format!("{f:?}").contains("status_held: false"));
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[tokio::test(start_paused = true)]
async fn bad_input_is_answered_and_never_kills_the_server() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    a.send_text(r#"{"command":"start_stream","seq":5,"#).await;
    assert_eq!(a.reply(5).await.error, Some(ErrorCode::InvalidJson));
    a.send_text("not json at all").await;
    a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidJson))
        .await;
    a.send_text(r#"{"command":"launch_rocket","seq":6}"#).await;
    assert_eq!(a.reply(6).await.error, Some(ErrorCode::UnknownCommand));
    a.send_text(r#"{"command":"launch_rocket"}"#).await;
    a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::UnknownCommand))
        .await;
    a.send_text("[1,2,3]").await;
    a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidRequest))
        .await;
    a.send_text(r#"{"command":"send_text_message","seq":7,"channel":"A","text":5}"#)
        .await;
    assert_eq!(a.reply(7).await.error, Some(ErrorCode::InvalidRequest));
    for short in [vec![], vec![1u8], vec![1, 0, 0, 0], vec![9; HEADER_LEN + 3]] {
        a.send_binary(short).await;
        a.event(|e| matches!(e, Event::Error(err) if err.error == ErrorCode::InvalidAudioPacket))
            .await;
    }
    // A second logon on the same connection.
    assert_eq!(
        a.logon("alice", "pw", &["A"]).await.error,
        Some(ErrorCode::InvalidRequest)
    );
    // Still usable.
    assert!(a.call(start_cmd("A", None)).await.success);

    // An oversized frame closes that connection only.
    let mut b = Client::online(&h, "bob", "A").await;
    b.send_binary(vec![1u8; 300 * 1024]).await;
    let close = b.closed().await;
    assert!(matches!(close, None | Some((1009, _))), "{close:?}");
    h.wait_for(WAIT, |e| {
        matches!(
            e,
            SimEvent::Disconnected {
                reason: DisconnectReason::MessageTooBig,
                ..
            }
        )
    })
    .await
    .unwrap();
    assert!(a.call(text_cmd("A", "still here", None)).await.success);
    let _c = Client::online(&h, "carol", "A").await;
}

#[tokio::test(start_paused = true)]
async fn other_paths_get_404() {
    let h = start(SimConfig::default()).await;
    let url = h.url().replace("/ws", "/other");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 404)
        }
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
    // The right path still works.
    let _a = Client::online(&h, "alice", "A").await;
}

/// What Zello's official examples send (zello-channel-api `examples/py/main.py` and
/// `examples/js/index.js`), byte for byte: the singular `channel` at logon, a `start_stream`
/// without `channel`, packets numbered by the client, a `stop_stream` without `seq`. The JS
/// SDK sends texts, locations and images without `channel` too.
#[tokio::test(start_paused = true)]
async fn what_the_official_examples_send_is_accepted_on_a_one_channel_connection() {
    let h = start(SimConfig::default()).await;
    let mut listener = Client::online(&h, "dispatcher", "Example").await;
    let mut c = Client::connect(&h, "example").await;
    c.send_text(
        r#"{"command": "logon", "seq": 1, "auth_token": null, "username": "example", "password": "pw", "channel": "Example"}"#,
    )
    .await;
    assert!(c.reply(1).await.success);
    c.event(is_status("Example", 2)).await;
    // gD4BPA== : 16000 Hz, 1 frame per packet, 60 ms.
    c.send_text(
        r#"{"command": "start_stream", "seq": 2, "type": "audio", "codec": "opus", "codec_header": "gD4BPA==", "packet_duration": 60}"#,
    )
    .await;
    let reply = c.reply(2).await;
    assert!(reply.success, "{reply:?}");
    let id = reply.stream_id.unwrap();
    let Event::StreamStart(s) = listener.event(|e| matches!(e, Event::StreamStart(_))).await else {
        unreachable!()
    };
    assert_eq!((s.stream_id, s.channel.as_str()), (id, "Example"));
    for packet_id in 0u32..3 {
        let mut frame = vec![1u8];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&packet_id.to_be_bytes());
        frame.extend_from_slice(&[0xfc, 0xff, 0xfe]);
        c.send_binary(frame).await;
    }
    for _ in 0..3 {
        let frame = listener.binary().await;
        assert!(
            matches!(Packet::parse(&frame).unwrap(), Packet::Audio { stream_id, .. } if stream_id == id)
        );
    }
    c.send_text(&format!(
        r#"{{"command": "stop_stream", "stream_id": {id}}}"#
    ))
    .await;
    listener
        .event(|e| matches!(e, Event::StreamStop(s) if s.stream_id == id))
        .await;

    c.send_text(r#"{"command": "send_text_message", "seq": 3, "text": "hello"}"#)
        .await;
    assert!(c.reply(3).await.success);
    let text = listener.event(|e| matches!(e, Event::TextMessage(_))).await;
    assert!(matches!(text, Event::TextMessage(t) if t.channel == "Example" && t.text == "hello"));
    c.send_text(r#"{"command": "send_location", "seq": 4, "latitude": 32.8, "longitude": -96.8, "accuracy": 10}"#)
        .await;
    assert!(c.reply(4).await.success);
    let loc = listener.event(|e| matches!(e, Event::Location(_))).await;
    assert!(matches!(loc, Event::Location(l) if l.channel == "Example"));
    c.send_text(r#"{"command": "send_image", "seq": 5, "type": "jpeg", "thumbnail_content_length": 3, "content_length": 3, "width": 1, "height": 1}"#)
        .await;
    let reply = c.reply(5).await;
    assert!(reply.success && reply.image_id.is_some(), "{reply:?}");
}

/// With several channels the server cannot tell which one is meant: the spec's error stays.
#[tokio::test(start_paused = true)]
async fn a_command_without_channel_on_a_several_channel_connection_is_not_enough_params() {
    let (_h, mut c) = connected("multi").await;
    assert!(c.logon("multi", "pw", &["One", "Two"]).await.success);
    c.event(is_status("One", 1)).await;
    c.event(is_status("Two", 1)).await;
    for (seq, cmd) in [
        (
            2,
            r#"{"command": "start_stream", "seq": 2, "type": "audio", "codec": "opus", "codec_header": "gD4BPA==", "packet_duration": 60}"#,
        ),
        (
            3,
            r#"{"command": "send_text_message", "seq": 3, "text": "hello"}"#,
        ),
        (
            4,
            r#"{"command": "send_location", "seq": 4, "latitude": 1.0, "longitude": 2.0}"#,
        ),
    ] {
        c.send_text(cmd).await;
        let reply = c.reply(seq).await;
        assert_eq!(reply.error, Some(ErrorCode::NotEnoughParams), "{cmd}");
    }
    // Naming the channel works as before.
    assert!(c.call(start_cmd("Two", None)).await.success);
}

/// A gateway configured with a Zello Work or enterprise server URL can be tried against the
/// emulator: `/ws/NETWORK` and `/ws/mesh` are served like `/ws`.
#[tokio::test(start_paused = true)]
async fn zello_work_and_enterprise_paths_are_served() {
    let h = start(SimConfig::default()).await;
    for path in ["/ws/acme", "/ws/mesh", "/ws/"] {
        let url = h.url().replace("/ws", path);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut c = Client::wrap(ws, path);
        let user = format!("user{}", path.len());
        assert!(c.logon(&user, "pw", &["A"]).await.success, "{path}");
    }
    for path in ["/ws/acme/more", "/wsx", "/ws/a%20b"] {
        let url = h.url().replace("/ws", path);
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 404, "{path}")
            }
            other => panic!("{path}: expected 404, got {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_connections_with_1001() {
    let h = start(SimConfig::default()).await;
    let mut a = Client::online(&h, "alice", "A").await;
    h.shutdown();
    assert!(matches!(a.closed().await, Some((1001, _))));
    assert!(h.closed(WAIT).await);
    assert!(
        tokio::net::TcpStream::connect(h.local_addr())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn url_names_the_served_scheme() {
    let h = start(SimConfig::default()).await;
    assert_eq!(
        h.url(),
        format!("ws://127.0.0.1:{}/ws", h.local_addr().port())
    );
    let any = SimServer::start("0.0.0.0:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    assert_eq!(
        any.url(),
        format!("ws://127.0.0.1:{}/ws", any.local_addr().port())
    );
}

// ---------------------------------------------------------------------------------------------
// TLS.

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "zg-sim-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = TempDir::new("tls");
    let cert_path = dir.0.join("cert.pem");
    let key_path = dir.0.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = load_tls(&cert_path, &key_path).unwrap();
    let h = start(SimConfig {
        tls: Some(tls),
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        h.url(),
        format!("wss://localhost:{}/ws", h.local_addr().port())
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        h.url(),
        None,
        true,
        Some(Connector::Rustls(Arc::new(client))),
    )
    .await
    .unwrap();
    let mut a = Client::wrap(ws, "alice");
    assert!(a.logon("alice", "pw", &["A"]).await.success);
    a.event(is_status("A", 1)).await;

    // A client that does not trust the certificate gets nowhere, and the server carries on.
    assert!(tokio_tungstenite::connect_async(h.url()).await.is_err());
    assert!(a.call(start_cmd("A", None)).await.success);
}

#[test]
fn load_tls_explains_bad_files() {
    let dir = TempDir::new("badtls");
    let missing = dir.0.join("missing.pem");
    let err = load_tls(&missing, &missing).unwrap_err();
    assert!(matches!(err, SimError::TlsUnreadable { .. }), "{err}");
    assert!(err.to_string().contains("missing.pem"));

    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let err = load_tls(&junk, &junk).unwrap_err();
    assert!(matches!(err, SimError::TlsInvalid { .. }), "{err}");
    assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.0.join("cert.pem");
    let key_path = dir.0.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, other.signing_key.serialize_pem()).unwrap();
    let err = load_tls(&cert_path, &key_path).unwrap_err();
    assert!(err.to_string().contains("key.pem"), "{err}");
    std::fs::write(&key_path, cert.cert.pem()).unwrap();
    let err = load_tls(&cert_path, &key_path).unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Command line.

#[test]
fn served_paths_are_the_zello_url_shapes() {
    for path in ["/ws", "/ws/", "/ws/acme", "/ws/mesh", "/ws/acme-2.test_net"] {
        assert!(conn::is_served_path(path), "{path}");
    }
    for path in ["/", "/wsx", "/ws/a/b", "/ws/a%20b", "/other", "/ws//"] {
        assert!(!conn::is_served_path(path), "{path}");
    }
}
