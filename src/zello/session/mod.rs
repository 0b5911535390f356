//! The gateway's Channel API client: one long-lived task that keeps a logged-on WebSocket
//! session, reconnects on every drop, and carries outgoing and incoming voice messages.
//!
//! Users talk to it through a [`SessionHandle`] (start a message, send text, ...) and read
//! [`SessionEvent`]s from a channel. Reading and writing the socket never wait on each other:
//! a writer task owns the sink, so server pings are answered during long transmissions.
//!
//! Inside: `core` decides what each frame, request and timeout means for one connection and
//! `retry` when to connect again, both free of I/O; `conn` is the task around them (socket,
//! timers, channels). An outgoing message's audio skips that task: `outlet` keeps it in the
//! message's start-of-message buffer until the stream id is known, then queues it straight
//! into `writer`'s bounded queue, where audio is dropped (and counted) when the socket falls
//! behind and commands never are.

mod conn;
mod core;
mod images;
mod outlet;
mod retry;
mod writer;

pub use outlet::{MAX_HEAD_MS, MessageHead, Sent};

use super::auth::{AuthError, TokenSource};
use super::protocol::{ChannelStatus, CodecHeader, ErrorCode, Image, Location, TextMessage};
use crate::secret::Secret;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Everything the session needs to know.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `wss://zello.io/ws`, `wss://zellowork.io/ws/NETWORK`, `wss://DOMAIN/ws/mesh`, or a
    /// local emulator's `ws://127.0.0.1:PORT/ws`.
    pub server: String,
    pub username: String,
    pub password: Secret,
    pub auth_token: TokenSource,
    pub channels: Vec<String>,
    pub listen_only: bool,
    /// Must contain "Gateway" so Zello Alarms tracks the gateway's presence.
    pub platform_name: String,
    pub platform_type: String,
    pub version: String,
    /// Allow plain `ws://` to hosts other than loopback.
    pub allow_insecure: bool,
    /// Extra PEM certificates to trust (a private CA, or the emulator's self-signed cert).
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the reply to a command.
    pub request_timeout: Duration,
    /// How long to wait for the TCP/TLS/WebSocket handshake.
    pub connect_timeout: Duration,
    /// The server's ping interval: a connection with no frame at all for two of these plus
    /// `liveness_margin` is dead.
    pub ping_interval: Duration,
    pub liveness_margin: Duration,
    /// An incoming message with no packet for this long has ended.
    pub incoming_idle: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A session that lasted this long resets the backoff.
    pub stable_after: Duration,
    /// Wait after a logon refused for a configuration reason (bad credentials, ...).
    pub config_retry: Duration,
    /// Wait after being kicked (the same account logged on elsewhere).
    pub kicked_retry: Duration,
    /// Largest WebSocket message accepted from the server.
    pub max_message_size: usize,
    /// Where the refresh token is kept across restarts (readable by the owner only), so a
    /// restarted gateway logs on with it; `None` keeps it in memory only. The daemon uses
    /// `$STATE_DIRECTORY/refresh-token` under systemd.
    pub refresh_token_file: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            server: "wss://zello.io/ws".into(),
            username: String::new(),
            password: Secret::default(),
            auth_token: TokenSource::None,
            channels: Vec::new(),
            listen_only: false,
            platform_name: DEFAULT_PLATFORM_NAME.into(),
            platform_type: std::env::consts::OS.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            allow_insecure: false,
            ca_file: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            ping_interval: Duration::from_secs(30),
            liveness_margin: Duration::from_secs(15),
            incoming_idle: Duration::from_secs(2),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            config_retry: Duration::from_secs(300),
            kicked_retry: Duration::from_secs(60),
            max_message_size: 256 * 1024,
            refresh_token_file: None,
        }
    }
}

/// The platform name the gateway logs on with by default.
pub const DEFAULT_PLATFORM_NAME: &str = "Zello Radio Gateway";

/// Errors of the session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    BadUrl(#[from] crate::net::tls::UrlError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("not connected to the server; the session is reconnecting")]
    NotConnected,
    #[error("channel {0:?} is not online")]
    ChannelNotReady(String),
    #[error("the server refused: {code} ({hint})", hint = code.hint())]
    Refused { code: ErrorCode },
    #[error("no reply from the server within {0:?}")]
    Timeout(Duration),
    #[error("the session has stopped")]
    Stopped,
}

impl SessionConfig {
    /// Checks what can be checked before connecting. (That the platform name says "Gateway"
    /// is checked with the configuration: test clients and the demo dispatcher use others.)
    pub fn validate(&self) -> Result<(), SessionError> {
        Self::check_server(&self.server, self.allow_insecure)
    }

    /// Checks a server URL: `wss://` anywhere, `ws://` to loopback or with `allow_insecure`.
    pub fn check_server(server: &str, allow_insecure: bool) -> Result<(), SessionError> {
        crate::net::tls::check_url(server, allow_insecure)?;
        Ok(())
    }
}

/// Why one of our outgoing messages ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OutgoingEnd {
    /// Sent completely and stopped with stop_stream.
    Completed,
    /// Ended before the server gave it a stream id (nothing was sent).
    Abandoned,
    /// The server refused start_stream.
    Rejected(ErrorCode),
    /// No reply to start_stream in time.
    Timeout,
    /// The server stopped it (on_stream_stop with our stream id).
    StoppedByServer,
    /// The connection dropped.
    Disconnected,
    /// The channel was not online when the message started.
    NotReady,
}

/// Why an incoming message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingEnd {
    Stopped,
    Idle,
    Disconnected,
}

/// What the session reports.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    /// Logon succeeded (with the refresh token or full credentials).
    LoggedOn {
        with_refresh_token: bool,
    },
    /// Logon refused; the session retries on its own schedule.
    LogonRefused {
        code: ErrorCode,
    },
    /// A channel's status; `ready` is true once logged on and the channel is online.
    Channel {
        status: ChannelStatus,
        ready: bool,
    },
    /// The connection ended; the session reconnects. `detail` says how, in words.
    Disconnected {
        reason: crate::state::DisconnectReason,
        detail: String,
    },
    /// The server could not be reached (no network, refused, TLS); the session tries again
    /// after `retry_in`.
    ConnectFailed {
        error: String,
        retry_in: Duration,
    },
    /// Our outgoing message got its stream id.
    OutgoingStarted {
        local_id: u64,
        stream_id: u32,
    },
    /// Our outgoing message ended.
    OutgoingEnded {
        local_id: u64,
        stream_id: Option<u32>,
        reason: OutgoingEnd,
        packets_sent: u64,
    },
    /// Someone started talking.
    IncomingStart {
        stream_id: u32,
        channel: String,
        from: String,
        recipient: Option<String>,
        header: CodecHeader,
        packet_duration: u32,
    },
    /// One packet of an incoming message.
    IncomingAudio {
        stream_id: u32,
        packet_id: u32,
        data: Bytes,
    },
    /// An incoming message ended.
    IncomingEnd {
        stream_id: u32,
        reason: IncomingEnd,
        packets: u64,
    },
    Text(TextMessage),
    Location(Location),
    Image {
        meta: Image,
        thumbnail: Bytes,
        full: Bytes,
    },
    /// An `on_error` from the server.
    ServerError(ErrorCode),
}

/// Counters the session keeps.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub packets_sent: AtomicU64,
    pub packets_dropped: AtomicU64,
    pub packets_received: AtomicU64,
    pub unknown_stream_packets: AtomicU64,
    pub bad_frames: AtomicU64,
    pub connects: AtomicU64,
    pub logons: AtomicU64,
}

impl SessionStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub(crate) enum Request {
    Start {
        id: u64,
        channel: String,
        header: CodecHeader,
        recipient: Option<String>,
        outlet: outlet::Outlet,
    },
    End {
        id: u64,
    },
    Send {
        command: Box<super::protocol::Command>,
        /// Binary frames to send right after a successful reply (image parts), tagged with
        /// the image id from the reply.
        image_parts: Option<(Bytes, Bytes)>,
        reply: oneshot::Sender<Result<super::protocol::Reply, SessionError>>,
    },
}

/// Talks to the session task. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::Sender<Request>,
    next_id: Arc<AtomicU64>,
    stats: Arc<SessionStats>,
    online: Arc<tokio::sync::watch::Sender<bool>>,
}

/// A started session: its handle, its events, and its task (which ends after shutdown).
pub type Spawned = (
    SessionHandle,
    mpsc::Receiver<SessionEvent>,
    tokio::task::JoinHandle<()>,
);

/// Starts the session task.
pub fn spawn(config: SessionConfig, shutdown: CancellationToken) -> Result<Spawned, SessionError> {
    spawn_watched(config, shutdown, None)
}

/// Starts the session task with a heartbeat for systemd's watchdog (see
/// [`crate::service::watchdog`]): the task beats it on every turn of its loops, and at least
/// every 10 s while it waits for the server, for requests or between connections. A session
/// that is stuck (its event receiver full and never read, say) stops beating.
pub fn spawn_watched(
    config: SessionConfig,
    shutdown: CancellationToken,
    heartbeat: Option<Arc<crate::service::Heartbeat>>,
) -> Result<Spawned, SessionError> {
    config.validate()?;
    let connector = crate::net::tls::connector(config.ca_file.as_deref())?;
    let (tx, rx) = mpsc::channel(512);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let stats = Arc::new(SessionStats::default());
    let (online, online_rx) = tokio::sync::watch::channel(true);
    let task = conn::SessionTask::new(
        config,
        connector,
        rx,
        ev_tx,
        stats.clone(),
        shutdown,
        (heartbeat, online_rx),
    );
    let task = tokio::spawn(task.run());
    Ok((
        SessionHandle {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
            online: Arc::new(online),
        },
        ev_rx,
        task,
    ))
}

impl SessionHandle {
    /// Starts an outgoing voice message. Packets given to it before the server's stream id
    /// arrives are kept (up to [`MAX_HEAD_MS`]) and sent right after it.
    pub async fn start_message(
        &self,
        channel: &str,
        header: CodecHeader,
        recipient: Option<String>,
    ) -> Result<OutgoingMessage, SessionError> {
        self.start_message_with(channel, header, recipient, MessageHead::default())
            .await
    }

    /// Starts an outgoing voice message whose first packets were kept in `head` while the
    /// channel was away: they go out first, and the message goes on filling the same buffer
    /// (with the same cap and count of packets left out) until the stream id arrives.
    pub async fn start_message_with(
        &self,
        channel: &str,
        header: CodecHeader,
        recipient: Option<String>,
        head: MessageHead,
    ) -> Result<OutgoingMessage, SessionError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outlet = outlet::Outlet::new(head, header.packet_ms(), self.stats.clone());
        self.tx
            .send(Request::Start {
                id,
                channel: channel.to_string(),
                header,
                recipient,
                outlet: outlet.clone(),
            })
            .await
            .map_err(|_| SessionError::Stopped)?;
        Ok(OutgoingMessage {
            id,
            tx: self.tx.clone(),
            outlet,
            ended: false,
        })
    }

    async fn request(
        &self,
        command: super::protocol::Command,
        image_parts: Option<(Bytes, Bytes)>,
    ) -> Result<super::protocol::Reply, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Send {
                command: Box::new(command),
                image_parts,
                reply,
            })
            .await
            .map_err(|_| SessionError::Stopped)?;
        rx.await.map_err(|_| SessionError::Stopped)?
    }

    /// Sends a text message and waits for the server's answer.
    pub async fn send_text(
        &self,
        channel: &str,
        text: &str,
        recipient: Option<String>,
    ) -> Result<(), SessionError> {
        use super::protocol::{Command, SendTextMessage};
        self.request(
            Command::SendTextMessage(SendTextMessage {
                seq: None,
                channel: channel.into(),
                text: text.into(),
                recipient,
            }),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Shares a location and waits for the server's answer.
    pub async fn send_location(
        &self,
        location: super::protocol::SendLocation,
    ) -> Result<(), SessionError> {
        self.request(super::protocol::Command::SendLocation(location), None)
            .await
            .map(|_| ())
    }

    /// Sends a JPEG image (thumbnail and full) and returns its image id.
    pub async fn send_image(
        &self,
        mut meta: super::protocol::SendImage,
        thumbnail: Bytes,
        full: Bytes,
    ) -> Result<u32, SessionError> {
        meta.thumbnail_content_length = thumbnail.len() as u32;
        meta.content_length = full.len() as u32;
        let reply = self
            .request(
                super::protocol::Command::SendImage(meta),
                Some((thumbnail, full)),
            )
            .await?;
        reply.image_id.ok_or(SessionError::Refused {
            code: ErrorCode::Other("no image_id in reply".into()),
        })
    }

    /// Whether the session should be online. `false` leaves Zello on purpose: messages being
    /// sent end (stop_stream), the connection closes and no reconnect is tried, so the account
    /// shows offline (what Zello Alarms watches for). `true` (the start) connects again.
    pub fn set_online(&self, online: bool) {
        self.online.send_if_modified(|now| {
            let changed = *now != online;
            *now = online;
            changed
        });
    }

    /// Whether the session is asked to be online ([`SessionHandle::set_online`]).
    pub fn wants_online(&self) -> bool {
        *self.online.borrow()
    }

    /// The session's counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }
}

/// One outgoing voice message. Dropping it ends the message.
pub struct OutgoingMessage {
    id: u64,
    tx: mpsc::Sender<Request>,
    outlet: outlet::Outlet,
    ended: bool,
}

impl OutgoingMessage {
    /// The local id that [`SessionEvent::OutgoingStarted`] and `OutgoingEnded` refer to.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues one Opus packet. Never blocks: before the stream id it is kept in the
    /// message's start-of-message buffer, after it goes straight to the writer's queue; when
    /// that is full the packet is dropped and counted.
    pub fn send(&self, packet: Bytes) -> Sent {
        self.outlet.send(packet)
    }

    /// Packets left out of the message because its start-of-message buffer was full.
    pub fn left_out(&self) -> u64 {
        self.outlet.left_out()
    }

    /// Ends the message (stop_stream once its stream id is known).
    pub async fn finish(mut self) {
        self.ended = true;
        let _ = self.tx.send(Request::End { id: self.id }).await;
    }
}

impl Drop for OutgoingMessage {
    fn drop(&mut self) {
        if !self.ended {
            // Best effort; the session also ends orphaned messages when the channel closes.
            let _ = self.tx.try_send(Request::End { id: self.id });
        }
    }
}
