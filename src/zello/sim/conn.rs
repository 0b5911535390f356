//! One client connection: the handshake, then a reader, a writer and a keepalive running side
//! by side in one task. The writer is fed by a bounded queue, so neither waits on the other.

use super::hub::{ConnId, ConnInfo, ConnLink, Control};
use super::log::{DisconnectReason, SimEvent};
use super::server::Shared;
use crate::zello::protocol::{
    Command, ErrorCode, Event, Incoming, Packet, ProtocolError, Reply, ServerError,
};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Time allowed for the TLS and WebSocket handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a closing frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames written before a flush.
const WRITE_BATCH: usize = 64;
/// Longer waits are cut to this, so no deadline overflows the clock.
const MAX_WAIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The close code of a kicked session.
const KICKED: u16 = 3003;

/// Why the connection's loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    Lost,
    TooBig,
    PongTimeout,
    Overflow,
    Shutdown,
    Control(Control),
}

/// Serves one accepted TCP connection, with TLS first if configured.
pub(crate) async fn serve_tcp(
    sh: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Some(acceptor) = tls else {
        return serve(sh, tcp, peer, id).await;
    };
    let accepted = tokio::select! {
        _ = sh.cancel.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
    };
    match accepted {
        Ok(Ok(stream)) => serve(sh, stream, peer, id).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The paths a Zello server serves its WebSocket at: `/ws` (consumer Zello), `/ws/NETWORK`
/// (Zello Work) and `/ws/mesh` (Zello Enterprise Server). The network name is only
/// informational here.
pub(crate) fn is_served_path(path: &str) -> bool {
    match path.strip_prefix("/ws") {
        Some("" | "/") => true,
        Some(rest) => rest.strip_prefix('/').is_some_and(|network| {
            network
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }),
        None => false,
    }
}

/// Anything but the served paths gets HTTP 404.
#[allow(clippy::result_large_err)]
fn check_path(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if is_served_path(req.uri().path()) {
        Ok(resp)
    } else {
        let mut err = ErrorResponse::new(Some(format!(
            "no WebSocket at {}; connect to /ws (or /ws/NETWORK, /ws/mesh)\n",
            req.uri().path()
        )));
        *err.status_mut() = StatusCode::NOT_FOUND;
        Err(err)
    }
}

async fn serve<S>(sh: Arc<Shared>, stream: S, peer: SocketAddr, id: ConnId)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = sh.config.max_message_size.max(1);
    // Small reads: tungstenite zero-fills its whole read buffer (128 KiB by default) before
    // every read of a few hundred bytes.
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(4096);
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config));
    let ws = tokio::select! {
        _ = sh.cancel.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => r,
    };
    let ws = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, conn = id, "connected");
    sh.log_event(SimEvent::Connected { conn: id, peer });
    run(sh, ws, id).await;
}

async fn run<S>(sh: Arc<Shared>, ws: WebSocketStream<S>, id: ConnId)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(sh.config.client_queue.max(8));
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel::<Control>();
    let info = Arc::new(ConnInfo::new(id));
    let link = ConnLink {
        info: Arc::clone(&info),
        tx,
        ctl: ctl_tx,
    };
    let mut reader = Reader {
        sh: Arc::clone(&sh),
        link: link.clone(),
        logged_on: false,
        overflow: false,
    };
    let mut frozen = false;
    let end = loop {
        let end = tokio::select! {
            end = reader.run(&mut stream) => end,
            end = write_loop(&sh, &info, &mut sink, &mut rx) => end,
            end = keepalive(&sh, &link) => end,
            ctl = ctl_rx.recv() => End::Control(ctl.unwrap_or(Control::Drop)),
            _ = sh.cancel.cancelled() => End::Shutdown,
        };
        match end {
            End::Control(Control::Thaw) => continue,
            End::Control(Control::Freeze) => {
                frozen = true;
                // A dead peer: hold the socket, touch nothing, until told otherwise.
                let next = loop {
                    tokio::select! {
                        ctl = ctl_rx.recv() => match ctl {
                            Some(Control::Freeze) => continue,
                            Some(other) => break End::Control(other),
                            None => break End::Control(Control::Drop),
                        },
                        _ = sh.cancel.cancelled() => break End::Shutdown,
                    }
                };
                if next == End::Control(Control::Thaw) {
                    frozen = false;
                    continue;
                }
                break next;
            }
            other => break other,
        }
    };
    let reason = match end {
        End::ClientClosed => {
            // Let tungstenite's answer to the client's close frame go out.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
            DisconnectReason::ClientClosed
        }
        End::Lost => DisconnectReason::ConnectionLost,
        End::TooBig => {
            close_with(&mut sink, CloseCode::Size, "message too big").await;
            DisconnectReason::MessageTooBig
        }
        End::PongTimeout => DisconnectReason::PongTimeout,
        End::Overflow | End::Control(Control::Overflow) => DisconnectReason::SlowClient,
        End::Shutdown => {
            if !frozen {
                close_with(&mut sink, CloseCode::Away, "server shutting down").await;
            }
            DisconnectReason::Shutdown
        }
        End::Control(Control::Kick) => {
            if !frozen {
                close_with(&mut sink, CloseCode::from(KICKED), "kicked").await;
            }
            DisconnectReason::Kicked
        }
        End::Control(Control::Drop | Control::Freeze | Control::Thaw) => DisconnectReason::Dropped,
    };
    let mut hub = sh.hub();
    hub.connection_ended(id);
    hub.log_disconnect(&info, reason);
    drop(hub);
    // Dropping both halves closes the socket; no close frame unless one was sent above.
    drop(sink);
    drop(stream);
}

async fn close_with<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    code: CloseCode,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// Writes queued frames, flushing after each batch.
async fn write_loop<S>(
    sh: &Shared,
    info: &ConnInfo,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    rx: &mut mpsc::Receiver<Message>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let Some(first) = rx.recv().await else {
            return End::Lost;
        };
        let mut next = Some(first);
        let mut written = 0;
        while let Some(msg) = next.take() {
            let ping = matches!(msg, Message::Ping(_));
            if let Err(e) = sink.feed(msg).await {
                tracing::debug!(user = %info.label(), error = %e, "write failed");
                return End::Lost;
            }
            if ping {
                info.pings_sent.fetch_add(1, Ordering::Relaxed);
                sh.log_event(SimEvent::PingSent { user: info.label() });
            }
            written += 1;
            if written < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::debug!(user = %info.label(), error = %e, "write failed");
            return End::Lost;
        }
    }
}

/// Pings every `ping_interval`; ends the connection when a ping has gone unanswered for
/// `pong_timeout`.
async fn keepalive(sh: &Shared, link: &ConnLink) -> End {
    let interval = sh.config.ping_interval;
    let Some(first) = Instant::now()
        .checked_add(interval)
        .filter(|_| !interval.is_zero())
    else {
        // Pings off (or so rare they never come).
        return std::future::pending().await;
    };
    let pong_timeout = sh.config.pong_timeout.min(MAX_WAIT);
    let mut tick = tokio::time::interval_at(first, interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The deadline of the oldest unanswered ping and the pong count when it was sent.
    let mut pending: Option<(Instant, u64)> = None;
    loop {
        let deadline = pending.map(|(d, _)| d);
        tokio::select! {
            _ = tick.tick() => {
                let pongs = link.info.pongs_received.load(Ordering::Relaxed);
                if pending.is_some_and(|(_, at)| pongs > at) {
                    pending = None;
                }
                if pending.is_none() {
                    pending = Some((Instant::now() + pong_timeout, pongs));
                }
                match link.tx.try_send(Message::Ping(Bytes::new())) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return End::Overflow,
                    Err(TrySendError::Closed(_)) => return End::Lost,
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let pongs = link.info.pongs_received.load(Ordering::Relaxed);
                match pending {
                    Some((_, at)) if pongs > at => pending = None,
                    _ => {
                        tracing::info!(user = %link.info.label(), "no pong in time: dropping the connection");
                        return End::PongTimeout;
                    }
                }
            }
        }
    }
}

/// Finds a `"seq": N` in text that is not valid JSON, to answer it properly.
fn recover_seq(text: &str) -> Option<u64> {
    let at = text.find("\"seq\"")?;
    let rest = text[at + 5..].trim_start().strip_prefix(':')?.trim_start();
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
}

/// The reading side: decodes each frame and acts on it at once, without waiting.
struct Reader {
    sh: Arc<Shared>,
    link: ConnLink,
    logged_on: bool,
    overflow: bool,
}

impl Reader {
    async fn run<S>(&mut self, stream: &mut SplitStream<WebSocketStream<S>>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            let Some(item) = stream.next().await else {
                return End::ClientClosed;
            };
            match item {
                Ok(Message::Text(text)) => self.on_text(text.as_str()),
                Ok(Message::Binary(data)) => self.on_binary(&data),
                Ok(Message::Pong(_)) => {
                    self.link.info.pongs_received.fetch_add(1, Ordering::Relaxed);
                    self.sh.log_event(SimEvent::PongReceived {
                        user: self.link.info.label(),
                    });
                }
                // tungstenite answers pings and close frames itself.
                Ok(Message::Ping(_) | Message::Close(_) | Message::Frame(_)) => {}
                Err(WsError::Capacity(e)) => {
                    tracing::info!(user = %self.link.info.label(), error = %e, "message too big: closing the connection");
                    return End::TooBig;
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return End::ClientClosed;
                }
                Err(WsError::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => return End::ClientClosed,
                Err(e) => {
                    tracing::debug!(user = %self.link.info.label(), error = %e, "read failed");
                    return End::Lost;
                }
            }
            if self.overflow {
                return End::Overflow;
            }
        }
    }

    /// Queues a frame for this client.
    fn send(&mut self, msg: Message) {
        if let Err(TrySendError::Full(_)) = self.link.tx.try_send(msg) {
            self.overflow = true;
        }
    }

    /// Answers an error: a reply if there is a seq, else an `on_error` event.
    fn fail(&mut self, seq: Option<u64>, code: ErrorCode) {
        tracing::debug!(user = %self.link.info.label(), error = %code, "error answered");
        self.sh.log_event(SimEvent::Error {
            user: self.link.info.label(),
            code: code.clone(),
        });
        let text = match seq {
            Some(seq) => Reply::err(seq, code).to_json(),
            None => Event::Error(ServerError { error: code }).to_json(),
        };
        self.send(Message::text(text));
    }

    fn on_text(&mut self, text: &str) {
        match Command::decode(text) {
            Err(e) => {
                let code = match &e {
                    ProtocolError::BadFields { command, .. }
                        if !self.logged_on && command != "logon" =>
                    {
                        ErrorCode::NotLoggedIn
                    }
                    _ => e.server_code(),
                };
                let seq = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64))
                    .or_else(|| recover_seq(text));
                self.fail(seq, code);
            }
            Ok(Incoming::Unknown { seq, command, .. }) => {
                tracing::debug!(%command, "unknown command");
                self.fail(seq, ErrorCode::UnknownCommand);
            }
            Ok(Incoming::Command(Command::Keepalive { .. })) => {}
            Ok(Incoming::Command(Command::Logon(logon))) => self.on_logon(&logon),
            Ok(Incoming::Command(cmd)) if !self.logged_on => {
                self.fail(cmd.seq(), ErrorCode::NotLoggedIn);
            }
            Ok(Incoming::Command(cmd)) => self.on_command(&cmd),
        }
    }

    fn on_logon(&mut self, logon: &crate::zello::protocol::Logon) {
        if self.logged_on {
            // One logon per connection.
            self.fail(logon.seq, ErrorCode::InvalidRequest);
            return;
        }
        let sh = Arc::clone(&self.sh);
        let mut hub = sh.hub();
        let ok = match hub.logon(&self.link, logon) {
            Ok(ok) => ok,
            Err(code) => {
                drop(hub);
                self.fail(logon.seq, code);
                return;
            }
        };
        self.logged_on = true;
        if let Some(seq) = logon.seq {
            let reply = Reply {
                refresh_token: Some(ok.refresh_token),
                ..Reply::ok(seq)
            };
            self.send(Message::text(reply.to_json()));
        }
        drop(hub);
        let conn = self.link.info.id;
        let task_sh = Arc::clone(&sh);
        sh.spawn(async move {
            let sh = task_sh;
            let delay = sh.config.status_delay;
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = sh.cancel.cancelled() => return,
                }
            }
            let mut hold = sh.hold_status.subscribe();
            loop {
                tokio::select! {
                    r = hold.wait_for(|held| !*held) => if r.is_err() { return },
                    _ = sh.cancel.cancelled() => return,
                }
                if sh.hub().join(conn, &ok.allowed, &ok.denied) {
                    return;
                }
            }
        });
        tracing::debug!(user = %ok.user, "logon answered");
    }

    fn on_command(&mut self, cmd: &Command) {
        let conn = self.link.info.id;
        let seq = cmd.seq();
        let sh = Arc::clone(&self.sh);
        let mut hub = sh.hub();
        let result: Result<Option<Reply>, ErrorCode> = match cmd {
            Command::StartStream(req) => {
                let delay = sh.faults().start_stream_delay();
                let reply = match hub.start_stream(conn, req) {
                    Ok(stream_id) => seq.map(|seq| Reply {
                        stream_id: Some(stream_id),
                        ..Reply::ok(seq)
                    }),
                    Err(code) => match seq {
                        Some(seq) => {
                            self.sh.log_event(SimEvent::Error {
                                user: self.link.info.label(),
                                code: code.clone(),
                            });
                            Some(Reply::err(seq, code))
                        }
                        None => {
                            drop(hub);
                            self.fail(None, code);
                            return;
                        }
                    },
                };
                match reply {
                    Some(reply) if !delay.is_zero() => {
                        let tx = self.link.tx.clone();
                        let task_sh = Arc::clone(&sh);
                        sh.spawn(async move {
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = task_sh.cancel.cancelled() => return,
                            }
                            let _ = tx.try_send(Message::text(reply.to_json()));
                        });
                        Ok(None)
                    }
                    other => Ok(other),
                }
            }
            Command::StopStream(req) => hub
                .stop_stream(conn, req.stream_id)
                .map(|()| seq.map(Reply::ok)),
            Command::SendTextMessage(req) => hub.text(conn, req).map(|()| seq.map(Reply::ok)),
            Command::SendLocation(req) => hub.location(conn, req).map(|()| seq.map(Reply::ok)),
            Command::SendImage(req) => hub.send_image(conn, req).map(|image_id| {
                seq.map(|seq| Reply {
                    image_id: Some(image_id),
                    ..Reply::ok(seq)
                })
            }),
            // Handled before logon is checked.
            Command::Logon(_) | Command::Keepalive { .. } => Ok(None),
        };
        match result {
            // Queued while the state is still locked, so the answer goes out before anything
            // the command set off (the echo user's answer, say).
            Ok(Some(reply)) => self.send(Message::text(reply.to_json())),
            Ok(None) => {}
            Err(code) => {
                drop(hub);
                self.fail(seq, code);
            }
        }
    }

    fn on_binary(&mut self, frame: &[u8]) {
        if !self.logged_on {
            self.fail(None, ErrorCode::NotLoggedIn);
            return;
        }
        let conn = self.link.info.id;
        let result = match Packet::parse(frame) {
            Err(e) => {
                tracing::debug!(user = %self.link.info.label(), error = %e, "bad binary frame");
                Err(ErrorCode::InvalidAudioPacket)
            }
            Ok(Packet::Audio {
                stream_id, data, ..
            }) => self.sh.hub().audio(conn, stream_id, data),
            Ok(Packet::Image {
                image_id,
                kind,
                data,
            }) => self.sh.hub().image_packet(conn, image_id, kind, data),
        };
        if let Err(code) = result {
            self.fail(None, code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recover_seq;

    #[test]
    fn seq_is_recovered_from_broken_json() {
        assert_eq!(recover_seq(r#"{"command":"x","seq": 42,"#), Some(42));
        assert_eq!(recover_seq(r#"{"seq":7"#), Some(7));
        assert_eq!(recover_seq(r#"{"seq":"7"}"#), None);
        assert_eq!(recover_seq(r#"{"seq""#), None);
        assert_eq!(recover_seq("garbage"), None);
        assert_eq!(recover_seq(r#"{"seq":99999999999999999999999}"#), None);
    }
}
