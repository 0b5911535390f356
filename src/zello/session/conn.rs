//! The session task: connect, log on, serve the connection, reconnect.

use super::{
    IncomingEnd, OutgoingEnd, Request, SessionConfig, SessionError, SessionEvent, SessionStats,
    refused_delay,
};
use crate::net::Backoff;
use crate::secret::Secret;
use crate::service::Heartbeat;
use crate::zello::protocol::{
    ChannelState, CodecHeader, Command, ErrorClass, ErrorCode, Event, Image, ImageKind, Logon,
    Packet, Reply, ServerMessage, StartStream, StopStream, audio_packet,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Close code the server uses when the same account logged on elsewhere.
pub const CLOSE_KICKED: u16 = 3003;
/// Audio frames allowed in the writer's queue before new ones are dropped.
const MAX_QUEUED_AUDIO: usize = 64;
/// Bytes the WebSocket reads from the socket at a time. tungstenite zero-fills that much of
/// its buffer before every read: with its default of 128 KiB that was a tenth of the network
/// side's CPU time in `zello-gateway bench`, for audio packets of a few hundred bytes.
/// Longer frames still get room for all of them.
const WS_READ_BUFFER: usize = 4096;
/// Leading audio kept while waiting for a stream id, in milliseconds.
const MAX_HEAD_MS: u32 = 10_000;
/// The longest the session task goes without beating its heartbeat while it is idle (no
/// frame, no request, no timer due): well within the watchdog's check period (15 s with
/// systemd's `WatchdogSec=30`).
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(10);

/// The session task's heartbeat for systemd's watchdog: beaten on every turn of each of its
/// loops, and by a timer when a loop has waited [`BEAT_EVERY`] for anything else.
struct Pulse {
    heartbeat: Option<Arc<Heartbeat>>,
    /// When the idle timer fires next.
    next: Instant,
}

impl Pulse {
    fn new(heartbeat: Option<Arc<Heartbeat>>) -> Self {
        Pulse {
            heartbeat,
            next: Instant::now() + BEAT_EVERY,
        }
    }

    /// Records progress and pushes the idle timer back.
    fn beat(&mut self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
        self.next = Instant::now() + BEAT_EVERY;
    }

    /// The session has stopped normally: no longer watched.
    fn retire(&self) {
        if let Some(h) = &self.heartbeat {
            h.retire();
        }
    }
}

/// The least a session must have lasted, besides logging on and getting its channel online
/// (or carrying audio), to count as working: a server that accepts the logon and drops the
/// connection at once is still backed off.
const WORKED_AFTER: Duration = Duration::from_secs(5);

/// A duration in seconds to one decimal, for log fields an operator reads.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// How one connection ended.
#[derive(Debug)]
enum ConnEnd {
    Shutdown,
    ConnectFailed(String),
    Auth(String),
    LogonRefused {
        code: ErrorCode,
        with_refresh: bool,
    },
    Kicked,
    Dead(Duration),
    Closed(String),
    /// Asked to go offline ([`super::SessionHandle::set_online`]).
    HeldOffline,
}

pub(crate) struct Core {
    config: SessionConfig,
    connector: Connector,
    rx: mpsc::Receiver<Request>,
    rx_open: bool,
    events: mpsc::Sender<SessionEvent>,
    stats: Arc<SessionStats>,
    shutdown: CancellationToken,
    refresh_token: Option<Secret>,
    backoff: Backoff,
    /// Whether the current connection logged on and had its channel online or carried audio.
    worked: bool,
    seq: u64,
    pulse: Pulse,
    /// Whether the session should be online; `online_open` until its sender is gone.
    online: tokio::sync::watch::Receiver<bool>,
    online_open: bool,
}

/// An outgoing message.
struct Out {
    channel: String,
    header: CodecHeader,
    stream_id: Option<u32>,
    head: Vec<Bytes>,
    finished: bool,
    sent: u64,
}

enum Pending {
    Logon,
    Start {
        id: u64,
    },
    Stop,
    Send {
        reply: oneshot::Sender<Result<Reply, SessionError>>,
        image_parts: Option<(Bytes, Bytes)>,
    },
}

struct Incoming {
    last: Instant,
    packets: u64,
    valid: bool,
}

#[derive(Default)]
struct PendingImage {
    meta: Option<Image>,
    thumbnail: Option<Bytes>,
    full: Option<Bytes>,
    since: Option<Instant>,
}

/// State of one connection.
struct Link {
    wtx: mpsc::UnboundedSender<Message>,
    queued_audio: Arc<AtomicUsize>,
    pending: HashMap<u64, (Pending, Instant)>,
    /// Seqs of start_stream requests we gave up on: a late success is stopped at once.
    abandoned_starts: HashSet<u64>,
    logged_on: bool,
    with_refresh: bool,
    /// The last status of each channel.
    online: HashMap<String, crate::zello::protocol::ChannelStatus>,
    out: HashMap<u64, Out>,
    incoming: HashMap<u32, Incoming>,
    images: HashMap<u32, PendingImage>,
    last_rx: Instant,
}

type Flow = Result<(), ConnEnd>;

impl Core {
    pub(crate) fn new(
        config: SessionConfig,
        connector: Connector,
        rx: mpsc::Receiver<Request>,
        events: mpsc::Sender<SessionEvent>,
        stats: Arc<SessionStats>,
        shutdown: CancellationToken,
        // The heartbeat for systemd's watchdog, and whether the session is to be online.
        control: (Option<Arc<Heartbeat>>, tokio::sync::watch::Receiver<bool>),
    ) -> Self {
        let (heartbeat, online) = control;
        let refresh_token = config
            .refresh_token_file
            .as_deref()
            .and_then(load_refresh_token);
        let backoff = Backoff::new(config.backoff_min, config.backoff_max);
        Core {
            config,
            connector,
            rx,
            rx_open: true,
            events,
            stats,
            shutdown,
            refresh_token,
            backoff,
            worked: false,
            seq: 0,
            pulse: Pulse::new(heartbeat),
            online,
            online_open: true,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    async fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event).await;
    }

    /// Runs until shut down.
    pub(crate) async fn run(mut self) {
        info!(server = %self.config.server, user = %self.config.username, "session starting");
        loop {
            self.pulse.beat();
            if self.shutdown.is_cancelled() {
                break;
            }
            if self.online_open && !*self.online.borrow_and_update() {
                if !self.hold_offline().await {
                    break;
                }
                continue;
            }
            let started = Instant::now();
            self.worked = false;
            let end = self.connect_and_serve().await;
            let lasted = started.elapsed();
            // A session that logged on and carried the channel says the server and the
            // link are fine: a drop after it is a blip, retried from the shortest wait
            // (radio messages wait meanwhile). A server that refuses, or drops before the
            // logon, keeps being backed off.
            let worked = self.worked && lasted >= WORKED_AFTER;
            if worked || lasted >= self.config.stable_after {
                if self.backoff.attempts() > 0 {
                    debug!(
                        lasted_s = secs(lasted),
                        "the last session worked: reconnecting from the shortest wait"
                    );
                }
                self.backoff.reset();
            }
            let delay = match end {
                ConnEnd::Shutdown => break,
                ConnEnd::ConnectFailed(e) => {
                    let d = self.backoff_delay();
                    warn!(event = "connect_failed", server = %self.config.server, error = %e, retry_in_s = secs(d), "cannot connect to the server");
                    self.emit(SessionEvent::ConnectFailed {
                        error: e,
                        retry_in: d,
                    })
                    .await;
                    d
                }
                ConnEnd::Auth(e) => {
                    let d = self.config.backoff_max;
                    error!(error = %e, retry_in_s = secs(d), "cannot read the auth token");
                    d
                }
                ConnEnd::LogonRefused { code, with_refresh }
                    if with_refresh && code.class() != ErrorClass::RetryNow =>
                {
                    info!(error = %code, "refresh token refused; logging on with full credentials");
                    self.refresh_token = None;
                    if let Some(path) = &self.config.refresh_token_file {
                        forget_refresh_token(path);
                    }
                    Duration::ZERO
                }
                ConnEnd::LogonRefused { code, .. } => {
                    self.emit(SessionEvent::LogonRefused { code: code.clone() })
                        .await;
                    if let Some(d) = refused_delay(&code, &self.config) {
                        let d = d.mul_f64(1.0 + 0.2 * fastrand::f64());
                        error!(event = "logon_refused", error = %code, hint = code.hint(), retry_in_s = secs(d),
                            "logon refused: this is a configuration problem");
                        d
                    } else {
                        let d = self.backoff_delay();
                        warn!(event = "logon_refused", error = %code, hint = code.hint(), retry_in_s = secs(d), "logon refused");
                        d
                    }
                }
                ConnEnd::Kicked => {
                    let d = self.config.kicked_retry.max(self.backoff_delay());
                    warn!(event = "kicked", user = %self.config.username, retry_in_s = secs(d),
                        "kicked: the same account logged on elsewhere; give each gateway its own account");
                    d
                }
                ConnEnd::Dead(silent) => {
                    let d = self.backoff_delay();
                    warn!(
                        event = "connection_dead",
                        silent_s = secs(silent),
                        retry_in_s = secs(d),
                        "no frame from the server, connection presumed dead; reconnecting"
                    );
                    d
                }
                ConnEnd::Closed(reason) => {
                    let d = self.backoff_delay();
                    info!(event = "disconnected", reason = %reason, retry_in_s = secs(d), "connection closed; reconnecting");
                    d
                }
                ConnEnd::HeldOffline => Duration::ZERO,
            };
            if !self.wait(delay).await {
                break;
            }
        }
        self.pulse.retire();
        info!("session stopped");
    }

    fn backoff_delay(&mut self) -> Duration {
        self.backoff.next_delay(fastrand::f64())
    }

    /// Stays disconnected while the session is asked to be offline, answering requests as
    /// "not connected". False when shut down meanwhile.
    async fn hold_offline(&mut self) -> bool {
        info!("staying offline on purpose until asked to connect again");
        self.backoff.reset();
        loop {
            self.pulse.beat();
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                changed = self.online.changed(), if self.online_open => match changed {
                    Ok(()) if *self.online.borrow_and_update() => {
                        info!("connecting again");
                        return true;
                    }
                    Ok(()) => {}
                    // The handle is gone: nobody can ask to come back, so come back now.
                    Err(_) => {
                        self.online_open = false;
                        return true;
                    }
                },
                _ = sleep_until(self.pulse.next) => {}
                req = self.rx.recv(), if self.rx_open => match req {
                    Some(req) => self.refuse_offline(req).await,
                    None => self.rx_open = false,
                },
            }
        }
    }

    /// Waits between connections, answering requests as "not connected". Cut short when
    /// the session is asked to go offline (the hold takes over).
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            self.pulse.beat();
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = sleep_until(until) => return true,
                changed = self.online.changed(), if self.online_open => match changed {
                    Ok(()) if !*self.online.borrow_and_update() => return true,
                    Ok(()) => {}
                    Err(_) => self.online_open = false,
                },
                _ = sleep_until(self.pulse.next) => {}
                req = self.rx.recv(), if self.rx_open => match req {
                    Some(req) => self.refuse_offline(req).await,
                    None => self.rx_open = false,
                },
            }
        }
    }

    async fn refuse_offline(&mut self, req: Request) {
        match req {
            Request::Start { id, .. } => {
                self.emit(SessionEvent::OutgoingEnded {
                    local_id: id,
                    stream_id: None,
                    reason: OutgoingEnd::NotReady,
                    packets_sent: 0,
                })
                .await
            }
            Request::Audio { .. } | Request::End { .. } => {}
            Request::Send { reply, .. } => {
                let _ = reply.send(Err(SessionError::NotConnected));
            }
        }
    }

    fn logon(&mut self) -> Result<(Logon, bool), ConnEnd> {
        let c = &self.config;
        let mut logon = Logon {
            channels: c.channels.clone(),
            listen_only: c.listen_only.then_some(true),
            version: Some(c.version.clone()),
            platform_type: Some(c.platform_type.clone()),
            platform_name: Some(c.platform_name.clone()),
            ..Default::default()
        };
        if !c.username.is_empty() {
            logon.username = Some(c.username.clone());
            logon.password = Some(c.password.expose().to_string());
        }
        let with_refresh = self.refresh_token.is_some();
        if let Some(r) = &self.refresh_token {
            logon.refresh_token = Some(r.expose().to_string());
        } else {
            let token = c
                .auth_token
                .token()
                .map_err(|e| ConnEnd::Auth(e.to_string()))?;
            logon.auth_token = token.map(|t| t.expose().to_string());
        }
        logon.seq = Some(self.next_seq());
        Ok((logon, with_refresh))
    }

    async fn connect_and_serve(&mut self) -> ConnEnd {
        let (logon, with_refresh) = match self.logon() {
            Ok(l) => l,
            Err(end) => return end,
        };
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
            .read_buffer_size(WS_READ_BUFFER);
        debug!(server = %self.config.server, timeout_s = self.config.connect_timeout.as_secs(),
            "connecting: TCP, then TLS for wss://, then the WebSocket handshake");
        let connected = {
            let connect = timeout(
                self.config.connect_timeout,
                tokio_tungstenite::connect_async_tls_with_config(
                    self.config.server.as_str(),
                    Some(ws_config),
                    true,
                    Some(self.connector.clone()),
                ),
            );
            tokio::pin!(connect);
            loop {
                self.pulse.beat();
                tokio::select! {
                    _ = self.shutdown.cancelled() => return ConnEnd::Shutdown,
                    _ = sleep_until(self.pulse.next) => {}
                    r = &mut connect => break r,
                }
            }
        };
        let ws = match connected {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return ConnEnd::ConnectFailed(e.to_string()),
            Err(_) => {
                return ConnEnd::ConnectFailed(format!(
                    "no answer within {:?}",
                    self.config.connect_timeout
                ));
            }
        };
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        debug!(server = %self.config.server, "connected: WebSocket handshake done; logging on");
        let (mut sink, mut stream) = ws.split();
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Message>();
        let queued_audio = Arc::new(AtomicUsize::new(0));
        let writer_queued = queued_audio.clone();
        let writer = tokio::spawn(async move {
            while let Some(msg) = wrx.recv().await {
                let audio = matches!(msg, Message::Binary(_));
                let close = matches!(msg, Message::Close(_));
                let result = sink.send(msg).await;
                if audio {
                    writer_queued.fetch_sub(1, Ordering::Relaxed);
                }
                if result.is_err() || close {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let mut link = Link {
            wtx,
            queued_audio,
            pending: HashMap::new(),
            abandoned_starts: HashSet::new(),
            logged_on: false,
            with_refresh,
            online: HashMap::new(),
            out: HashMap::new(),
            incoming: HashMap::new(),
            images: HashMap::new(),
            last_rx: Instant::now(),
        };
        let seq = logon.seq.unwrap_or_default();
        link.pending.insert(
            seq,
            (Pending::Logon, Instant::now() + self.config.request_timeout),
        );
        link.send_text(Command::Logon(logon).to_json());

        let end = loop {
            self.pulse.beat();
            let deadline = self.next_deadline(&link);
            let flow = tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.close_gracefully(&mut link);
                    Err(ConnEnd::Shutdown)
                }
                changed = self.online.changed(), if self.online_open => match changed {
                    Ok(()) if !*self.online.borrow_and_update() => {
                        info!(event = "leaving_on_purpose", "leaving Zello on purpose");
                        self.close_gracefully(&mut link);
                        Err(ConnEnd::HeldOffline)
                    }
                    Ok(()) => Ok(()),
                    Err(_) => {
                        self.online_open = false;
                        Ok(())
                    }
                },
                frame = stream.next() => {
                    link.last_rx = Instant::now();
                    match frame {
                        None => Err(ConnEnd::Closed("the server closed the connection".into())),
                        Some(Err(e)) => Err(ConnEnd::Closed(e.to_string())),
                        Some(Ok(msg)) => self.on_frame(&mut link, msg).await,
                    }
                }
                req = self.rx.recv(), if self.rx_open => match req {
                    Some(req) => { self.on_request(&mut link, req).await; Ok(()) }
                    None => { self.rx_open = false; Ok(()) }
                },
                _ = sleep_until(deadline) => self.on_timers(&mut link).await,
                _ = sleep_until(self.pulse.next) => Ok(()),
            };
            if let Err(end) = flow {
                break end;
            }
        };
        self.teardown(link, &end).await;
        // Let the writer send what is queued (a close frame, stop_stream) briefly.
        let _ = timeout(Duration::from_secs(1), writer).await;
        end
    }

    fn dead_after(&self) -> Duration {
        self.config.ping_interval * 2 + self.config.liveness_margin
    }

    fn next_deadline(&self, link: &Link) -> Instant {
        let mut next = link.last_rx + self.dead_after();
        for (_, at) in link.pending.values() {
            next = next.min(*at);
        }
        for inc in link.incoming.values() {
            next = next.min(inc.last + self.config.incoming_idle);
        }
        next
    }

    async fn on_timers(&mut self, link: &mut Link) -> Flow {
        let now = Instant::now();
        let silent = now.saturating_duration_since(link.last_rx);
        if silent >= self.dead_after() {
            return Err(ConnEnd::Dead(silent));
        }
        let expired: Vec<u64> = link
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            let Some((pending, _)) = link.pending.remove(&seq) else {
                continue;
            };
            match pending {
                Pending::Logon => {
                    return Err(ConnEnd::Closed(format!(
                        "no logon reply within {:?}",
                        self.config.request_timeout
                    )));
                }
                Pending::Start { id } => {
                    link.abandoned_starts.insert(seq);
                    if let Some(out) = link.out.remove(&id) {
                        warn!(channel = %out.channel, "no reply to start_stream in time; message dropped");
                        self.emit(SessionEvent::OutgoingEnded {
                            local_id: id,
                            stream_id: None,
                            reason: OutgoingEnd::Timeout,
                            packets_sent: 0,
                        })
                        .await;
                    }
                }
                Pending::Stop => {}
                Pending::Send { reply, .. } => {
                    let _ = reply.send(Err(SessionError::Timeout(self.config.request_timeout)));
                }
            }
        }
        let idle: Vec<u32> = link
            .incoming
            .iter()
            .filter(|(_, inc)| inc.last + self.config.incoming_idle <= now)
            .map(|(id, _)| *id)
            .collect();
        for stream_id in idle {
            if let Some(inc) = link.incoming.remove(&stream_id)
                && inc.valid
            {
                debug!(stream_id, "incoming message idle, ended");
                self.emit(SessionEvent::IncomingEnd {
                    stream_id,
                    reason: IncomingEnd::Idle,
                    packets: inc.packets,
                })
                .await;
            }
        }
        link.images.retain(|_, img| {
            img.since
                .is_none_or(|t| now.duration_since(t) < Duration::from_secs(60))
        });
        Ok(())
    }

    async fn on_frame(&mut self, link: &mut Link, msg: Message) -> Flow {
        match msg {
            Message::Text(text) => self.on_text(link, text.as_str()).await,
            Message::Binary(data) => {
                self.on_binary(link, data).await;
                Ok(())
            }
            // tungstenite answers pings by itself, on the read path.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Close(frame) => match frame {
                Some(f) if f.code == CloseCode::from(CLOSE_KICKED) => Err(ConnEnd::Kicked),
                Some(f) => Err(ConnEnd::Closed(format!(
                    "closed by the server: {} {}",
                    u16::from(f.code),
                    f.reason
                ))),
                None => Err(ConnEnd::Closed("closed by the server".into())),
            },
        }
    }

    async fn on_text(&mut self, link: &mut Link, text: &str) -> Flow {
        match ServerMessage::decode(text) {
            Err(e) => {
                self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "ignored a message the gateway could not decode");
                Ok(())
            }
            Ok(ServerMessage::Reply(reply)) => self.on_reply(link, reply).await,
            Ok(ServerMessage::Event(event)) => {
                self.on_event(link, event).await;
                Ok(())
            }
        }
    }

    async fn on_reply(&mut self, link: &mut Link, reply: Reply) -> Flow {
        let Some((pending, _)) = link.pending.remove(&reply.seq) else {
            if link.abandoned_starts.remove(&reply.seq)
                && let Some(stream_id) = reply.stream_id
            {
                // A start_stream we gave up on succeeded late: end it at once.
                let seq = self.next_seq();
                link.send_text(
                    Command::StopStream(StopStream {
                        seq: Some(seq),
                        stream_id,
                        channel: None,
                    })
                    .to_json(),
                );
            } else {
                debug!(seq = reply.seq, "reply to no pending request");
            }
            return Ok(());
        };
        match pending {
            Pending::Logon => match reply.failure() {
                None => {
                    link.logged_on = true;
                    self.stats.logons.fetch_add(1, Ordering::Relaxed);
                    if let Some(token) = reply.refresh_token {
                        let token = Secret::new(token);
                        let new =
                            self.refresh_token.as_ref().map(Secret::expose) != Some(token.expose());
                        if new && let Some(path) = &self.config.refresh_token_file {
                            store_refresh_token(path, &token);
                        }
                        self.refresh_token = Some(token);
                    }
                    info!(event = "logged_on", user = %self.config.username, with_refresh_token = link.with_refresh, "logged on");
                    self.emit(SessionEvent::LoggedOn {
                        with_refresh_token: link.with_refresh,
                    })
                    .await;
                    // A status that came before the logon reply: the channel is ready now.
                    let early: Vec<_> = link
                        .online
                        .values()
                        .filter(|s| s.status == ChannelState::Online)
                        .cloned()
                        .collect();
                    self.worked |= !early.is_empty();
                    for status in early {
                        self.emit(SessionEvent::Channel {
                            status,
                            ready: true,
                        })
                        .await;
                    }
                    Ok(())
                }
                Some(code) => Err(ConnEnd::LogonRefused {
                    code,
                    with_refresh: link.with_refresh,
                }),
            },
            Pending::Start { id } => {
                let Some(out) = link.out.get_mut(&id) else {
                    return Ok(());
                };
                match (reply.failure(), reply.stream_id) {
                    (None, Some(stream_id)) => {
                        debug!(stream_id, channel = %out.channel, head_packets = out.head.len(), "start_stream accepted");
                        out.stream_id = Some(stream_id);
                        let head = std::mem::take(&mut out.head);
                        let finished = out.finished;
                        for data in head {
                            if link.send_audio(stream_id, &data) {
                                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                                if let Some(out) = link.out.get_mut(&id) {
                                    out.sent += 1;
                                }
                            } else {
                                self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        self.emit(SessionEvent::OutgoingStarted {
                            local_id: id,
                            stream_id,
                        })
                        .await;
                        if finished {
                            self.stop_outgoing(link, id).await;
                        }
                    }
                    (failure, _) => {
                        let code = failure
                            .unwrap_or_else(|| ErrorCode::Other("no stream_id in reply".into()));
                        let out = link.out.remove(&id);
                        warn!(channel = out.as_ref().map(|o| o.channel.as_str()).unwrap_or(""),
                            error = %code, hint = code.hint(), "start_stream refused; message dropped");
                        self.emit(SessionEvent::OutgoingEnded {
                            local_id: id,
                            stream_id: None,
                            reason: OutgoingEnd::Rejected(code),
                            packets_sent: 0,
                        })
                        .await;
                    }
                }
                Ok(())
            }
            Pending::Stop => {
                if let Some(code) = reply.failure() {
                    debug!(error = %code, "stop_stream answered with an error (harmless)");
                }
                Ok(())
            }
            Pending::Send {
                reply: tx,
                image_parts,
            } => {
                match reply.failure() {
                    None => {
                        if let (Some((thumb, full)), Some(image_id)) = (image_parts, reply.image_id)
                        {
                            link.send_binary(
                                Packet::Image {
                                    image_id,
                                    kind: ImageKind::Thumbnail,
                                    data: &thumb,
                                }
                                .to_vec(),
                            );
                            link.send_binary(
                                Packet::Image {
                                    image_id,
                                    kind: ImageKind::Full,
                                    data: &full,
                                }
                                .to_vec(),
                            );
                        }
                        let _ = tx.send(Ok(reply));
                    }
                    Some(code) => {
                        let _ = tx.send(Err(SessionError::Refused { code }));
                    }
                }
                Ok(())
            }
        }
    }

    async fn on_event(&mut self, link: &mut Link, event: Event) {
        match event {
            Event::ChannelStatus(status) => {
                let online = status.status == ChannelState::Online;
                link.online.insert(status.channel.clone(), status.clone());
                let ready = online && link.logged_on;
                self.worked |= ready;
                if online {
                    info!(event = "channel_online", channel = %status.channel, users_online = status.users_online, "channel online");
                } else {
                    warn!(event = "channel_offline", channel = %status.channel, error = status.error.as_deref().unwrap_or(""),
                        error_type = status.error_type.as_deref().unwrap_or(""), "channel offline");
                }
                self.emit(SessionEvent::Channel { status, ready }).await;
            }
            Event::StreamStart(s) => {
                let header = CodecHeader::from_base64(&s.codec_header);
                let valid = match &header {
                    Ok(_) if s.codec.eq_ignore_ascii_case("opus") => true,
                    Ok(_) => {
                        warn!(stream_id = s.stream_id, codec = %s.codec, "incoming message in an unsupported codec ignored");
                        false
                    }
                    Err(e) => {
                        warn!(stream_id = s.stream_id, from = %s.from, error = %e, "incoming message with a bad codec_header ignored");
                        false
                    }
                };
                link.incoming.insert(
                    s.stream_id,
                    Incoming {
                        last: Instant::now(),
                        packets: 0,
                        valid,
                    },
                );
                if let (true, Ok(header)) = (valid, header) {
                    debug!(stream_id = s.stream_id, channel = %s.channel, from = %s.from, "incoming message");
                    self.emit(SessionEvent::IncomingStart {
                        stream_id: s.stream_id,
                        channel: s.channel,
                        from: s.from,
                        recipient: s.recipient,
                        header,
                        packet_duration: s.packet_duration,
                    })
                    .await;
                }
            }
            Event::StreamStop(s) => {
                if let Some(id) = link
                    .out
                    .iter()
                    .find(|(_, o)| o.stream_id == Some(s.stream_id))
                    .map(|(id, _)| *id)
                {
                    let out = link.out.remove(&id);
                    warn!(stream_id = s.stream_id, "the server stopped our message");
                    self.emit(SessionEvent::OutgoingEnded {
                        local_id: id,
                        stream_id: Some(s.stream_id),
                        reason: OutgoingEnd::StoppedByServer,
                        packets_sent: out.map(|o| o.sent).unwrap_or(0),
                    })
                    .await;
                } else if let Some(inc) = link.incoming.remove(&s.stream_id)
                    && inc.valid
                {
                    self.emit(SessionEvent::IncomingEnd {
                        stream_id: s.stream_id,
                        reason: IncomingEnd::Stopped,
                        packets: inc.packets,
                    })
                    .await;
                }
            }
            Event::Error(e) => {
                warn!(error = %e.error, hint = e.error.hint(), "server error");
                self.emit(SessionEvent::ServerError(e.error)).await;
            }
            Event::TextMessage(t) => {
                info!(channel = %t.channel, from = %t.from, "text message");
                self.emit(SessionEvent::Text(t)).await;
            }
            Event::Location(l) => {
                info!(channel = %l.channel, from = %l.from, "location");
                self.emit(SessionEvent::Location(l)).await;
            }
            Event::Image(meta) => {
                let id = meta.message_id;
                let entry = link.images.entry(id).or_default();
                entry.meta = Some(meta);
                entry.since.get_or_insert_with(Instant::now);
                self.complete_image(link, id).await;
            }
            Event::Unknown { command, .. } => {
                debug!(command = %command, "unknown event ignored");
            }
        }
    }

    async fn complete_image(&mut self, link: &mut Link, id: u32) {
        let done = link
            .images
            .get(&id)
            .is_some_and(|i| i.meta.is_some() && i.thumbnail.is_some() && i.full.is_some());
        if done
            && let Some(img) = link.images.remove(&id)
            && let (Some(meta), Some(thumbnail), Some(full)) = (img.meta, img.thumbnail, img.full)
        {
            info!(channel = %meta.channel, from = %meta.from, bytes = full.len(), "image");
            self.emit(SessionEvent::Image {
                meta,
                thumbnail,
                full,
            })
            .await;
        }
    }

    async fn on_binary(&mut self, link: &mut Link, data: Bytes) {
        match Packet::parse(&data) {
            Err(e) => {
                self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "bad binary frame ignored");
            }
            Ok(Packet::Audio {
                stream_id,
                packet_id,
                ..
            }) => match link.incoming.get_mut(&stream_id) {
                Some(inc) if inc.valid => {
                    inc.last = Instant::now();
                    inc.packets += 1;
                    self.worked = true;
                    self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
                    let payload = data.slice(crate::zello::protocol::HEADER_LEN..);
                    if self
                        .events
                        .try_send(SessionEvent::IncomingAudio {
                            stream_id,
                            packet_id,
                            data: payload,
                        })
                        .is_err()
                    {
                        self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(inc) => inc.last = Instant::now(),
                None => {
                    self.stats
                        .unknown_stream_packets
                        .fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Packet::Image { image_id, kind, .. }) => {
                let payload = data.slice(crate::zello::protocol::HEADER_LEN..);
                let entry = link.images.entry(image_id).or_default();
                entry.since.get_or_insert_with(Instant::now);
                match kind {
                    ImageKind::Thumbnail => entry.thumbnail = Some(payload),
                    ImageKind::Full => entry.full = Some(payload),
                }
                if link.images.len() > 16 {
                    // Keep memory bounded against a stream of image parts that never complete.
                    if let Some(oldest) = link
                        .images
                        .iter()
                        .min_by_key(|(_, i)| i.since)
                        .map(|(id, _)| *id)
                    {
                        link.images.remove(&oldest);
                    }
                }
                self.complete_image(link, image_id).await;
            }
        }
    }

    fn ready(&self, link: &Link, channel: &str) -> bool {
        link.logged_on
            && link
                .online
                .get(channel)
                .is_some_and(|s| s.status == ChannelState::Online)
    }

    async fn on_request(&mut self, link: &mut Link, req: Request) {
        match req {
            Request::Start {
                id,
                channel,
                header,
                recipient,
            } => {
                if !self.ready(link, &channel) {
                    self.emit(SessionEvent::OutgoingEnded {
                        local_id: id,
                        stream_id: None,
                        reason: OutgoingEnd::NotReady,
                        packets_sent: 0,
                    })
                    .await;
                    return;
                }
                let seq = self.next_seq();
                let mut cmd = Command::StartStream(StartStream::audio(&channel, header, recipient));
                cmd.set_seq(seq);
                link.pending.insert(
                    seq,
                    (
                        Pending::Start { id },
                        Instant::now() + self.config.request_timeout,
                    ),
                );
                link.send_text(cmd.to_json());
                link.out.insert(
                    id,
                    Out {
                        channel,
                        header,
                        stream_id: None,
                        head: Vec::new(),
                        finished: false,
                        sent: 0,
                    },
                );
            }
            Request::Audio { id, data } => {
                let Some(out) = link.out.get_mut(&id) else {
                    return;
                };
                match out.stream_id {
                    Some(stream_id) => {
                        if link.send_audio(stream_id, &data) {
                            if let Some(out) = link.out.get_mut(&id) {
                                out.sent += 1;
                            }
                            self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    None => {
                        let max = (MAX_HEAD_MS / out.header.packet_ms().max(1)) as usize;
                        if out.head.len() < max {
                            out.head.push(data);
                        } else {
                            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Request::End { id } => {
                let Some(out) = link.out.get_mut(&id) else {
                    return;
                };
                if out.stream_id.is_some() {
                    self.stop_outgoing(link, id).await;
                } else {
                    // Stopped once the stream id arrives; ends cleanly if it never does.
                    out.finished = true;
                }
            }
            Request::Send {
                mut command,
                image_parts,
                reply,
            } => {
                let channel = match command.as_ref() {
                    Command::SendTextMessage(c) => Some(c.channel.clone()),
                    Command::SendLocation(c) => Some(c.channel.clone()),
                    Command::SendImage(c) => Some(c.channel.clone()),
                    _ => None,
                };
                if !link.logged_on {
                    let _ = reply.send(Err(SessionError::NotConnected));
                    return;
                }
                if let Some(ch) = channel
                    && !self.ready(link, &ch)
                {
                    let _ = reply.send(Err(SessionError::ChannelNotReady(ch)));
                    return;
                }
                let seq = self.next_seq();
                command.set_seq(seq);
                link.pending.insert(
                    seq,
                    (
                        Pending::Send { reply, image_parts },
                        Instant::now() + self.config.request_timeout,
                    ),
                );
                link.send_text(command.to_json());
            }
        }
    }

    async fn stop_outgoing(&mut self, link: &mut Link, id: u64) {
        let Some(out) = link.out.remove(&id) else {
            return;
        };
        let Some(stream_id) = out.stream_id else {
            return;
        };
        let seq = self.next_seq();
        link.pending.insert(
            seq,
            (Pending::Stop, Instant::now() + self.config.request_timeout),
        );
        link.send_text(
            Command::StopStream(StopStream {
                seq: Some(seq),
                stream_id,
                channel: Some(out.channel.clone()),
            })
            .to_json(),
        );
        debug!(stream_id, channel = %out.channel, packets = out.sent, "stop_stream sent");
        self.emit(SessionEvent::OutgoingEnded {
            local_id: id,
            stream_id: Some(stream_id),
            reason: OutgoingEnd::Completed,
            packets_sent: out.sent,
        })
        .await;
    }

    /// On shutdown: end our messages properly and say goodbye.
    fn close_gracefully(&mut self, link: &mut Link) {
        for out in link.out.values() {
            if let Some(stream_id) = out.stream_id {
                self.seq += 1;
                link.send_text(
                    Command::StopStream(StopStream {
                        seq: Some(self.seq),
                        stream_id,
                        channel: Some(out.channel.clone()),
                    })
                    .to_json(),
                );
            }
        }
        let _ = link.wtx.send(Message::Close(None));
    }

    /// The connection is over: end everything that lived on it.
    async fn teardown(&mut self, mut link: Link, end: &ConnEnd) {
        let reason = match end {
            ConnEnd::Shutdown => "shutting down".to_string(),
            other => format!("{other:?}"),
        };
        let mut outs: Vec<(u64, Out)> = link.out.drain().collect();
        outs.sort_by_key(|(id, _)| *id);
        for (id, out) in outs {
            let reason = if matches!(end, ConnEnd::Shutdown) && out.stream_id.is_some() {
                OutgoingEnd::Completed
            } else {
                OutgoingEnd::Disconnected
            };
            self.emit(SessionEvent::OutgoingEnded {
                local_id: id,
                stream_id: out.stream_id,
                reason,
                packets_sent: out.sent,
            })
            .await;
        }
        for (stream_id, inc) in link.incoming.drain() {
            if inc.valid {
                self.emit(SessionEvent::IncomingEnd {
                    stream_id,
                    reason: IncomingEnd::Disconnected,
                    packets: inc.packets,
                })
                .await;
            }
        }
        for (pending, _) in link.pending.into_values() {
            if let Pending::Send { reply, .. } = pending {
                let _ = reply.send(Err(SessionError::NotConnected));
            }
        }
        let was_ready: Vec<String> = link
            .online
            .values()
            .filter(|s| s.status == ChannelState::Online)
            .map(|s| s.channel.clone())
            .collect();
        if link.logged_on {
            for channel in was_ready {
                self.emit(SessionEvent::Channel {
                    status: crate::zello::protocol::ChannelStatus {
                        channel,
                        status: ChannelState::Offline,
                        users_online: 0,
                        images_supported: false,
                        texting_supported: false,
                        locations_supported: false,
                        error: Some("disconnected".into()),
                        error_type: None,
                    },
                    ready: false,
                })
                .await;
            }
        }
        if !matches!(end, ConnEnd::Shutdown) {
            self.emit(SessionEvent::Disconnected { reason }).await;
        }
    }
}

/// The refresh token kept by an earlier run, if any.
fn load_refresh_token(path: &std::path::Path) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            debug!(file = %path.display(), "logging on with the refresh token kept by the last run");
            Some(Secret::new(text.trim()))
        }
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the kept refresh token; logging on with full credentials");
            None
        }
    }
}

/// Keeps the refresh token for the next run: written to a temporary file readable by the
/// owner only, then renamed over the old one.
fn store_refresh_token(path: &std::path::Path, token: &Secret) {
    if let Err(e) = crate::service::write_private_file(path, token.expose().as_bytes()) {
        warn!(file = %path.display(), error = %e,
            "cannot keep the refresh token for the next start (the state directory is not writable?); it stays in memory");
    }
}

/// Removes a kept refresh token the server no longer accepts.
fn forget_refresh_token(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot remove the refused refresh token")
        }
    }
}

impl Link {
    fn send_text(&self, text: String) {
        let _ = self.wtx.send(Message::text(text));
    }

    fn send_binary(&self, data: Vec<u8>) {
        self.queued_audio.fetch_add(1, Ordering::Relaxed);
        let _ = self.wtx.send(Message::binary(data));
    }

    /// Queues an audio packet unless the writer is backed up.
    fn send_audio(&self, stream_id: u32, data: &[u8]) -> bool {
        if self.queued_audio.load(Ordering::Relaxed) >= MAX_QUEUED_AUDIO {
            return false;
        }
        self.send_binary(audio_packet(stream_id, data));
        true
    }
}
