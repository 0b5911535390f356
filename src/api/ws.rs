//! One WebSocket session of the status API (`GET /api/v1/ws`): authentication, `READY`,
//! the client's ops, the events of its rooms, resumes, `RESYNC`, pings, and the limits that
//! keep a bad client from costing the gateway anything.

use super::feed::{Feed, Item, Replay, is_new};
use super::guard::{Guard, WsAuth};
use super::levels::{LevelFeed, LevelFrame};
use super::protocol::{
    ClientOp, Encoded, ProtocolError, Room, RoomKind, ServerMessage, Subscription, Subscriptions,
    parse_client, snapshot,
};
use super::sockets::Seat;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// The largest frame or message the socket reads at all; past it the socket is closed with
/// 1009. Messages between [`MAX_MESSAGE_BYTES`](super::protocol::MAX_MESSAGE_BYTES) and this
/// are answered `message_too_large`.
pub const MAX_READ_BYTES: usize = 64 * 1024;

/// The API's timings; the defaults are what the daemon uses.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// An HTTP connection must send a request's headers within this time: a half-open or
    /// idle connection is closed after it.
    pub header: Duration,
    /// How long a client has to send its AUTH message.
    pub auth: Duration,
    /// How often the gateway pings the client.
    pub ping_every: Duration,
    /// The socket is closed after this long without anything from the client.
    pub dead_after: Duration,
    /// A socket whose sends do not complete for this long is closed (1013).
    pub stall: Duration,
    /// The least time between two `LEVEL`s of a radio.
    pub level_every: Duration,
    /// How much later than `level_every` the next `LEVEL`s may go: they wait for a moment
    /// the gateway's thread is awake anyway (a packet), and take a wake-up of their own only
    /// when none comes within this time ([`crate::service::slack`]).
    pub level_slack: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            header: Duration::from_secs(10),
            auth: super::guard::AUTH_TIMEOUT,
            ping_every: Duration::from_millis(super::protocol::server::HEARTBEAT_INTERVAL_MS),
            dead_after: Duration::from_secs(60),
            stall: Duration::from_secs(10),
            level_every: Duration::from_millis(200),
            level_slack: Duration::from_millis(100),
        }
    }
}

/// The socket settings every session gets.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_READ_BYTES))
        .max_frame_size(Some(MAX_READ_BYTES))
}

/// What a session needs from the server.
pub struct Context {
    pub feed: Arc<Feed>,
    pub guard: Arc<Guard>,
    pub levels: Arc<LevelFeed>,
    pub timings: Timings,
}

/// Why a session ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed, went away, or the connection failed.
    Gone,
    /// The server closed it (with the reason sent).
    Closed,
}

struct Session<S> {
    ws: WebSocketStream<S>,
    ctx: Arc<Context>,
    seat: Seat,
    subs: Subscriptions,
    /// The sequence number up to which each room's events are already held (from a
    /// snapshot or a replay): older ones from the feed are skipped.
    floors: HashMap<Room, u64>,
    last_heard: Instant,
}

/// Runs one session on an upgraded connection until the client leaves, a limit ends it or
/// `shutdown` (closed with 1001).
pub async fn run<S>(
    stream: S,
    ctx: Arc<Context>,
    seat: Seat,
    auth: WsAuth,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        Some(config()),
    )
    .await;
    let metrics_ctx = ctx.clone();
    metrics_ctx.feed.metrics().ws_opened();
    let id = seat.id();
    let mut session = Session {
        ws,
        ctx,
        seat,
        subs: Subscriptions::new(),
        floors: HashMap::new(),
        last_heard: Instant::now(),
    };
    debug!(socket = %id, "status API socket opened");
    let end = session.serve(auth, shutdown).await;
    debug!(socket = %id, ?end, "status API socket closed");
    metrics_ctx.feed.metrics().ws_closed();
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn serve(&mut self, auth: WsAuth, shutdown: CancellationToken) -> End {
        if matches!(auth, WsAuth::AwaitAuth)
            && let Err(end) = self.authenticate().await
        {
            return end;
        }
        // Taken before READY: whatever happens after READY's `seq` reaches the session.
        let mut items = self.ctx.feed.subscribe();
        let ready = ServerMessage::ready(self.seat.id(), &self.ctx.feed.hub().snapshot());
        if let Err(end) = self.send_message(&ready).await {
            return end;
        }
        let timings = self.ctx.timings;
        let mut pings = interval_at(Instant::now() + timings.ping_every, timings.ping_every);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The level frames, while the socket takes a levels room.
        let mut levels = None;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => {
                    return self.close(CloseCode::Away, "the gateway is stopping").await;
                }
                incoming = self.ws.next() => match incoming {
                    Some(Ok(message)) => self.on_message(message).await,
                    Some(Err(e)) => return self.on_read_error(e).await,
                    None => return End::Gone,
                },
                item = items.recv() => match item {
                    Ok(Item::Events(batch)) => self.forward(&batch).await,
                    Ok(Item::Missed(missed)) => self.resync(missed).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.resync(missed).await,
                    Err(broadcast::error::RecvError::Closed) => {
                        return self.close(CloseCode::Away, "the gateway is stopping").await;
                    }
                },
                _ = pings.tick() => self.ping().await,
                frame = next_frame(&mut levels) => match frame {
                    Some(frame) => self.send_levels(&frame).await,
                    None => Ok(()),
                },
            };
            if let Err(end) = result {
                return end;
            }
            // Levels are measured only while a session wants them.
            match (wants_levels(&self.subs), levels.is_some()) {
                (true, false) => levels = Some(self.ctx.levels.watch()),
                (false, true) => levels = None,
                _ => {}
            }
        }
    }

    /// Waits for the AUTH message; anything else, a wrong token or silence past the limit
    /// ends the session (1008).
    async fn authenticate(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + self.ctx.timings.auth;
        loop {
            let message = tokio::select! {
                m = self.ws.next() => m,
                _ = sleep_until(deadline) => {
                    let e = ServerMessage::error(None, None, &ProtocolError::NotAuthenticated);
                    self.send_message(&e).await?;
                    return Err(self.close(CloseCode::Policy, "no AUTH in time").await);
                }
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    let e = ServerMessage::error(None, None, &ProtocolError::NotAuthenticated);
                    self.send_message(&e).await?;
                    return Err(self.close(CloseCode::Policy, "not authenticated").await);
                }
                // Pings and pongs are fine meanwhile.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(self.on_read_error(e).await),
                None => return Err(End::Gone),
            };
            return match self.ctx.guard.authenticate(&text) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let message = ServerMessage::Error {
                        id: None,
                        code: super::protocol::ErrorCode::NotAuthenticated,
                        room: None,
                        data: e.to_string(),
                    };
                    self.send_message(&message).await?;
                    Err(self.close(CloseCode::Policy, "not authenticated").await)
                }
            };
        }
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        self.last_heard = Instant::now();
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let e = ServerMessage::error(None, None, &ProtocolError::BadJson("send text"));
                return self.send_message(&e).await;
            }
            Message::Close(_) => return Err(End::Gone),
            // tungstenite answers pings itself; a pong only proves the client is there.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(()),
        };
        match parse_client(&text) {
            Err(rejected) => {
                let e = ServerMessage::error(rejected.id, None, &rejected.error);
                self.send_message(&e).await
            }
            Ok(ClientOp::Auth { .. }) => Ok(()),
            Ok(ClientOp::Ping { id }) => self.send_message(&ServerMessage::Pong { id }).await,
            Ok(ClientOp::Subscribe { rooms, id, since }) => {
                for room in rooms {
                    self.subscribe(&room, id, since).await?;
                }
                self.seat.set_rooms(&self.subs);
                Ok(())
            }
            Ok(ClientOp::Unsubscribe { rooms, id }) => {
                for room in rooms {
                    match Subscription::parse(&room) {
                        Ok(sub) => {
                            self.subs.remove(&sub);
                            self.send_message(&ServerMessage::Unsubscribed { room, id })
                                .await?;
                        }
                        Err(e) => {
                            self.send_message(&ServerMessage::error(id, Some(room), &e))
                                .await?
                        }
                    }
                }
                self.floors.retain(|room, _| self.subs.wants(room));
                self.seat.set_rooms(&self.subs);
                Ok(())
            }
        }
    }

    /// One room of a SUBSCRIBE: `SUBSCRIBED`, then the events missed since `since` when
    /// they are all kept, else a `SNAPSHOT` of each room it covers.
    async fn subscribe(
        &mut self,
        name: &str,
        id: Option<u64>,
        since: Option<u64>,
    ) -> Result<(), End> {
        let state = self.ctx.feed.hub().snapshot();
        let sub = match Subscription::resolve(name, &state) {
            Ok(sub) => sub,
            Err(e) => {
                let e = ServerMessage::error(id, Some(name.to_string()), &e);
                return self.send_message(&e).await;
            }
        };
        if let Err(e) = self.subs.insert(sub.clone()) {
            let e = ServerMessage::error(id, Some(name.to_string()), &e);
            return self.send_message(&e).await;
        }
        let reply = ServerMessage::Subscribed {
            room: name.to_string(),
            id,
        };
        self.send_message(&reply).await?;
        let rooms = sub.rooms_in(&state);
        if let Some(since) = since {
            let mut only = Subscriptions::new();
            let _ = only.insert(sub.clone());
            if let Replay::Events(events, upto) = self.ctx.feed.replay(since, &only) {
                for room in rooms {
                    self.floors.insert(room, upto);
                }
                for e in &events {
                    self.send_event(e).await?;
                }
                return Ok(());
            }
        }
        for room in rooms {
            self.send_snapshot(&room, &state).await?;
        }
        Ok(())
    }

    async fn send_snapshot(
        &mut self,
        room: &Room,
        state: &crate::state::GatewayState,
    ) -> Result<(), End> {
        self.floors.insert(room.clone(), state.seq);
        match snapshot(room, state) {
            Ok(Some(message)) => self.send_message(&message).await,
            // A levels room holds no state; a room gone meanwhile has none to send.
            Ok(None) | Err(_) => Ok(()),
        }
    }

    async fn forward(&mut self, batch: &[Encoded]) -> Result<(), End> {
        for e in batch {
            if self.subs.wants(&e.room) && is_new(&self.floors, &e.room, e.seq) {
                self.send_event(e).await?;
            }
        }
        Ok(())
    }

    async fn send_event(&mut self, e: &Encoded) -> Result<(), End> {
        self.send_json(e.json.clone()).await?;
        self.seat
            .counters()
            .events_sent
            .fetch_add(1, Ordering::Relaxed);
        self.ctx.feed.metrics().ws_events_sent(1);
        Ok(())
    }

    /// The session fell behind by `missed` events: `RESYNC`, then each room's state.
    async fn resync(&mut self, missed: u64) -> Result<(), End> {
        let c = self.seat.counters();
        c.lag_events.fetch_add(1, Ordering::Relaxed);
        c.dropped.fetch_add(missed, Ordering::Relaxed);
        self.ctx.feed.metrics().ws_lagged();
        self.send_message(&ServerMessage::resync(missed)).await?;
        let state = self.ctx.feed.hub().snapshot();
        let rooms: Vec<Room> = self.subs.iter().flat_map(|s| s.rooms_in(&state)).collect();
        for room in rooms {
            self.send_snapshot(&room, &state).await?;
        }
        Ok(())
    }

    /// The `LEVEL`s of `frame` for the rooms the socket takes, sent together with one flush
    /// (each radio's serialized once for every socket).
    async fn send_levels(&mut self, frame: &LevelFrame) -> Result<(), End> {
        let subs = &self.subs;
        let messages: Vec<Message> = frame
            .messages(|room| subs.wants(room))
            .filter_map(|json| Utf8Bytes::try_from(json.clone()).ok().map(Message::Text))
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let ws = &mut self.ws;
        let all = async {
            for m in messages {
                ws.feed(m).await?;
            }
            ws.flush().await
        };
        match timeout(self.ctx.timings.stall, all).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(self.stalled().await),
        }
    }

    async fn ping(&mut self) -> Result<(), End> {
        if self.last_heard.elapsed() >= self.ctx.timings.dead_after {
            info!(socket = %self.seat.id(), "status API socket closed: no answer to pings");
            return Err(self.close(CloseCode::Away, "no answer to pings").await);
        }
        self.send(Message::Ping(Bytes::new())).await
    }

    async fn send_message(&mut self, message: &ServerMessage) -> Result<(), End> {
        match message.encode() {
            Ok(json) => self.send_json(json).await,
            Err(e) => {
                tracing::error!(error = %e, "status API: a reply left out");
                Ok(())
            }
        }
    }

    async fn send_json(&mut self, json: Bytes) -> Result<(), End> {
        match Utf8Bytes::try_from(json) {
            Ok(text) => self.send(Message::Text(text)).await,
            // serde_json writes UTF-8: never happens.
            Err(_) => Ok(()),
        }
    }

    /// Sends `message`; a client that does not take it within the stall limit is closed
    /// (1013), a broken connection ends the session.
    async fn send(&mut self, message: Message) -> Result<(), End> {
        match timeout(self.ctx.timings.stall, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(self.stalled().await),
        }
    }

    /// The client took nothing for the stall limit: closed with 1013.
    async fn stalled(&mut self) -> End {
        self.ctx.feed.metrics().ws_slow_consumer_disconnected();
        info!(socket = %self.seat.id(), stall_s = self.ctx.timings.stall.as_secs_f32(), "status API socket closed: it stopped reading (1013)");
        self.close(CloseCode::Again, "too slow: the socket stopped reading")
            .await
    }

    async fn on_read_error(&mut self, e: tokio_tungstenite::tungstenite::Error) -> End {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::CapacityError;
        match e {
            Error::Capacity(CapacityError::MessageTooLong { .. }) => {
                self.close(CloseCode::Size, "message too large").await
            }
            _ => End::Gone,
        }
    }

    /// Sends a close frame (given a second at most) and ends.
    async fn close(&mut self, code: CloseCode, reason: &'static str) -> End {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = timeout(Duration::from_secs(1), self.ws.close(Some(frame))).await;
        End::Closed
    }
}

/// The next level frame while `levels` watches (never, else). `None`: the feed is gone.
async fn next_frame(
    levels: &mut Option<watch::Receiver<Arc<LevelFrame>>>,
) -> Option<Arc<LevelFrame>> {
    match levels {
        Some(rx) => {
            rx.changed().await.ok()?;
            Some(rx.borrow_and_update().clone())
        }
        None => std::future::pending().await,
    }
}

/// Whether `subs` take a levels room.
fn wants_levels(subs: &Subscriptions) -> bool {
    subs.iter().any(|s| {
        matches!(
            s,
            Subscription::Every(RoomKind::Levels) | Subscription::Room(Room::Levels(_))
        )
    })
}
