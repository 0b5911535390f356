//! The session task: connect, log on, serve the connection, reconnect. A thin shell around
//! [`super::core::Link`] (what each frame and request means) and [`super::retry::Retry`]
//! (when to connect again): this file owns the socket, the timers and the channels.

use super::core::{Action, ConnEnd, Flow, Link, LinkConfig};
use super::outlet::Outlet;
use super::retry::Retry;
use super::writer::{self, Inbox, Outbox};
use super::{OutgoingEnd, Request, SessionConfig, SessionError, SessionEvent, SessionStats};
use crate::secret::Secret;
use crate::service::Heartbeat;
use crate::zello::protocol::Logon;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Bytes the WebSocket reads from the socket at a time. tungstenite zero-fills that much of
/// its buffer before every read: with its default of 128 KiB that was a tenth of the network
/// side's CPU time in `zello-gateway bench`, for audio packets of a few hundred bytes.
/// Longer frames still get room for all of them.
const WS_READ_BUFFER: usize = 4096;
/// The longest the session task goes without beating its heartbeat while it is idle (no
/// frame, no request, no timer due): well within the watchdog's check period (15 s with
/// systemd's `WatchdogSec=30`).
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

pub(crate) struct SessionTask {
    config: SessionConfig,
    connector: Connector,
    rx: mpsc::Receiver<Request>,
    rx_open: bool,
    events: mpsc::Sender<SessionEvent>,
    stats: Arc<SessionStats>,
    shutdown: CancellationToken,
    refresh_token: Option<Secret>,
    retry: Retry,
    pulse: Pulse,
    /// Whether the session should be online; `online_open` until its sender is gone.
    online: tokio::sync::watch::Receiver<bool>,
    online_open: bool,
    /// The outgoing messages started and not yet ended, by local id.
    outlets: HashMap<u64, Outlet>,
}

impl SessionTask {
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
        SessionTask {
            retry: Retry::new(&config),
            config,
            connector,
            rx,
            rx_open: true,
            events,
            stats,
            shutdown,
            refresh_token,
            pulse: Pulse::new(heartbeat),
            online,
            online_open: true,
            outlets: HashMap::new(),
        }
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
            let (end, worked) = self.connect_and_serve().await;
            let Some(next) = self
                .retry
                .after(end, started.elapsed(), worked, &mut fastrand::f64)
            else {
                break;
            };
            if next.forget_refresh_token {
                self.refresh_token = None;
                if let Some(path) = &self.config.refresh_token_file {
                    forget_refresh_token(path);
                }
            }
            if let Some(event) = next.event {
                self.emit(event).await;
            }
            if !self.wait(next.delay).await {
                break;
            }
        }
        self.pulse.retire();
        info!("session stopped");
    }

    /// Stays disconnected while the session is asked to be offline, answering requests as
    /// "not connected". False when shut down meanwhile.
    async fn hold_offline(&mut self) -> bool {
        info!("staying offline on purpose until asked to connect again");
        self.retry.reset();
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
            Request::Start { id, outlet, .. } => {
                outlet.end();
                self.emit(SessionEvent::OutgoingEnded {
                    local_id: id,
                    stream_id: None,
                    reason: OutgoingEnd::NotReady,
                    packets_sent: 0,
                })
                .await
            }
            Request::End { .. } => {}
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
        Ok((logon, with_refresh))
    }

    /// One connection, from the TCP connect to its end; true with it if it worked (logged
    /// on and carried the channel).
    async fn connect_and_serve(&mut self) -> (ConnEnd, bool) {
        let (logon, with_refresh) = match self.logon() {
            Ok(l) => l,
            Err(end) => return (end, false),
        };
        match self.connect().await {
            Ok(ws) => self.serve(ws, logon, with_refresh).await,
            Err(end) => (end, false),
        }
    }

    async fn connect(&mut self) -> Result<Ws, ConnEnd> {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_size))
            .max_frame_size(Some(self.config.max_message_size))
            .read_buffer_size(WS_READ_BUFFER);
        debug!(server = %self.config.server, timeout_s = self.config.connect_timeout.as_secs(),
            "connecting: TCP, then TLS for wss://, then the WebSocket handshake");
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
        let connected = loop {
            self.pulse.beat();
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(ConnEnd::Shutdown),
                _ = sleep_until(self.pulse.next) => {}
                r = &mut connect => break r,
            }
        };
        match connected {
            Ok(Ok((ws, _))) => {
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                debug!(server = %self.config.server, "connected: WebSocket handshake done; logging on");
                Ok(ws)
            }
            Ok(Err(e)) => Err(ConnEnd::ConnectFailed(e.to_string())),
            Err(_) => Err(ConnEnd::ConnectFailed(format!(
                "no answer within {:?}",
                self.config.connect_timeout
            ))),
        }
    }

    fn link_config(&self) -> LinkConfig {
        LinkConfig {
            user: self.config.username.clone(),
            request_timeout: self.config.request_timeout,
            incoming_idle: self.config.incoming_idle,
            dead_after: self.config.ping_interval * 2 + self.config.liveness_margin,
        }
    }

    /// Serves a connection until it ends: logs on, then carries frames and requests.
    async fn serve(&mut self, ws: Ws, logon: Logon, with_refresh: bool) -> (ConnEnd, bool) {
        let (sink, mut stream) = ws.split();
        let (outbox, inbox) = writer::queue(writer::AUDIO_CAPACITY);
        let writer = tokio::spawn(write_frames(sink, inbox));
        let mut acts = Vec::new();
        let stats = self.stats.clone();
        let now = Instant::now();
        let mut link = Link::new(
            self.link_config(),
            stats,
            now,
            logon,
            with_refresh,
            &mut acts,
        );
        self.apply(&outbox, &mut acts).await;
        let end = loop {
            self.pulse.beat();
            let flow = self.turn(&mut link, &mut stream, &mut acts).await;
            self.apply(&outbox, &mut acts).await;
            if let Err(end) = flow {
                break end;
            }
        };
        if matches!(end, ConnEnd::Shutdown | ConnEnd::HeldOffline) {
            outbox.push_control(Message::Close(None));
        }
        let worked = link.worked();
        link.teardown(&end, &mut acts);
        self.apply(&outbox, &mut acts).await;
        drop(outbox);
        // Let the writer send what is queued (a close frame, stop_stream) briefly.
        let _ = timeout(Duration::from_secs(1), writer).await;
        (end, worked)
    }

    /// Waits for the next thing to happen on the connection and hands it to the link.
    async fn turn(
        &mut self,
        link: &mut Link,
        stream: &mut SplitStream<Ws>,
        acts: &mut Vec<Action>,
    ) -> Flow {
        let deadline = link.next_deadline();
        tokio::select! {
            _ = self.shutdown.cancelled() => {
                link.close_gracefully(Instant::now(), acts);
                Err(ConnEnd::Shutdown)
            }
            changed = self.online.changed(), if self.online_open => match changed {
                Ok(()) if !*self.online.borrow_and_update() => {
                    info!(event = "leaving_on_purpose", "leaving Zello on purpose");
                    link.close_gracefully(Instant::now(), acts);
                    Err(ConnEnd::HeldOffline)
                }
                Ok(()) => Ok(()),
                Err(_) => {
                    self.online_open = false;
                    Ok(())
                }
            },
            frame = stream.next() => {
                let now = Instant::now();
                link.heard(now);
                match frame {
                    None => Err(ConnEnd::Closed("the server closed the connection".into())),
                    Some(Err(e)) => Err(ConnEnd::Broken(e.to_string())),
                    Some(Ok(msg)) => on_frame(link, now, msg, acts),
                }
            }
            req = self.rx.recv(), if self.rx_open => {
                match req {
                    Some(req) => self.on_request(link, req, acts),
                    None => self.rx_open = false,
                }
                Ok(())
            }
            _ = sleep_until(deadline) => link.on_timers(Instant::now(), acts),
            _ = sleep_until(self.pulse.next) => Ok(()),
        }
    }

    fn on_request(&mut self, link: &mut Link, req: Request, acts: &mut Vec<Action>) {
        let now = Instant::now();
        match req {
            Request::Start {
                id,
                channel,
                header,
                recipient,
                outlet,
            } => {
                self.outlets.insert(id, outlet);
                link.start(now, id, channel, header, recipient, acts);
            }
            Request::End { id } => link.finish(now, id, acts),
            Request::Send {
                command,
                image_parts,
                reply,
            } => link.request(now, *command, image_parts, reply, acts),
        }
    }

    /// Carries out the link's actions, in order.
    async fn apply(&mut self, outbox: &Outbox, acts: &mut Vec<Action>) {
        for act in acts.drain(..) {
            match act {
                Action::Send(cmd) => outbox.push_control(Message::text(cmd.to_json())),
                Action::SendBinary(frame) => outbox.push_control(Message::binary(frame)),
                Action::Emit(event) => self.emit(event).await,
                Action::Audio(event) => {
                    if self.events.try_send(event).is_err() {
                        self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Action::Answer(to, result) => {
                    let _ = to.send(result);
                }
                Action::Open {
                    local_id,
                    stream_id,
                } => {
                    if let Some(outlet) = self.outlets.get(&local_id) {
                        outlet.open(stream_id, outbox);
                    }
                }
                Action::Ended {
                    local_id,
                    stream_id,
                    reason,
                } => {
                    let outlet = self.outlets.remove(&local_id);
                    let packets_sent = outlet.map_or(0, |o| o.end());
                    let event = SessionEvent::OutgoingEnded {
                        local_id,
                        stream_id,
                        reason,
                        packets_sent,
                    };
                    self.emit(event).await;
                }
                Action::RefreshToken(token) => self.keep_refresh_token(Secret::new(token)),
            }
        }
    }

    fn keep_refresh_token(&mut self, token: Secret) {
        let new = self.refresh_token.as_ref().map(Secret::expose) != Some(token.expose());
        if new && let Some(path) = &self.config.refresh_token_file {
            store_refresh_token(path, &token);
        }
        self.refresh_token = Some(token);
    }
}

/// A frame from the server.
fn on_frame(link: &mut Link, now: Instant, msg: Message, acts: &mut Vec<Action>) -> Flow {
    match msg {
        Message::Text(text) => link.on_text(now, text.as_str(), acts),
        Message::Binary(data) => {
            link.on_binary(now, data, acts);
            Ok(())
        }
        // tungstenite answers pings by itself, on the read path.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        Message::Close(frame) => Err(ConnEnd::closed_by_server(
            frame
                .as_ref()
                .map(|f| (u16::from(f.code), f.reason.as_str())),
        )),
    }
}

/// The writer task: sends what is queued, in order, until the queue closes, a close frame
/// went out or the socket fails.
async fn write_frames(mut sink: SplitSink<Ws, Message>, mut inbox: Inbox) {
    while let Some(msg) = inbox.next().await {
        let close = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || close {
            break;
        }
    }
    let _ = sink.close().await;
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
