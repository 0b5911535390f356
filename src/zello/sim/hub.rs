//! The emulator's shared state and everything that routes messages between connections.
//!
//! A [`Hub`] is the state behind its lock: every operation runs under it without waiting on
//! anything, and hands frames to the receivers' bounded queues with `try_send`, so a slow
//! client never holds up the others (a full queue disconnects that client).

use super::echo::{self, Recording};
use super::log::{DisconnectReason, SimEvent, StopReason};
use super::server::Shared;
use super::{ConnStats, ECHO_USER, MAX_CHANNELS};
use crate::zello::protocol::{
    ChannelState, ChannelStatus, CodecHeader, ErrorCode, Event, Image, ImageKind, Location, Logon,
    Packet, SendImage, SendLocation, SendTextMessage, StartStream, StreamStart, StreamStop,
    TextMessage,
};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, OnceLock};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Message;

/// Connection number, unique over the server's life.
pub(crate) type ConnId = u64;

/// Texts longer than this are refused (the spec's 30 Kb).
const MAX_TEXT_BYTES: usize = 30 * 1024;
/// Packets the echo user keeps of one message (six minutes of 60 ms packets).
const MAX_ECHO_PACKETS: usize = 6_000;
/// Images one connection may have announced but not finished sending.
const MAX_PENDING_IMAGES: usize = 16;
/// Refresh tokens remembered before the oldest are forgotten.
const MAX_REFRESH_TOKENS: usize = 10_000;

/// What the hub or a fault asks of a connection task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Close with 3003 `kicked`.
    Kick,
    /// Close the TCP connection without a close frame.
    Drop,
    /// Stop reading and writing, keep the socket open.
    Freeze,
    /// Resume after a freeze.
    Thaw,
    /// The outgoing queue overflowed: disconnect.
    Overflow,
}

/// Facts about one connection shared by its task, the hub and the handle.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) id: ConnId,
    pub(crate) name: OnceLock<String>,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
}

impl ConnInfo {
    pub(crate) fn new(id: ConnId) -> Self {
        ConnInfo {
            id,
            name: OnceLock::new(),
            pings_sent: AtomicU64::new(0),
            pongs_received: AtomicU64::new(0),
        }
    }

    /// The username, or `#<id>` before logon.
    pub(crate) fn label(&self) -> String {
        self.name
            .get()
            .cloned()
            .unwrap_or_else(|| format!("#{}", self.id))
    }

    pub(crate) fn stats(&self) -> ConnStats {
        ConnStats {
            pings_sent: self.pings_sent.load(Ordering::Relaxed),
            pongs_received: self.pongs_received.load(Ordering::Relaxed),
        }
    }
}

/// How the hub reaches a connection.
#[derive(Clone)]
pub(crate) struct ConnLink {
    pub(crate) info: Arc<ConnInfo>,
    pub(crate) tx: mpsc::Sender<Message>,
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
}

struct Session {
    link: ConnLink,
    user: String,
    listen_only: bool,
    /// The channels the logon named, joined or not.
    logon_channels: Vec<String>,
    joined: BTreeSet<String>,
    /// users_online last sent per channel, so only changes are sent.
    last_status: HashMap<String, u32>,
    frozen: bool,
    overflowed: bool,
}

struct StreamRec {
    owner: ConnId,
    user: String,
    channel: String,
    recipient: Option<String>,
    codec_header: String,
    packet_duration: u32,
    receivers: Vec<ConnId>,
    next_packet_id: u32,
    /// What the echo user heard, if it listens to this stream.
    echo: Option<Vec<Bytes>>,
    /// Stopped by the server: the sender's late packets are dropped quietly.
    stopped: bool,
}

struct PendingImage {
    owner: ConnId,
    user: String,
    channel: String,
    recipient: Option<String>,
    kind: String,
    width: Option<u32>,
    height: Option<u32>,
    source: Option<String>,
    thumbnail: Option<Bytes>,
    full: Option<Bytes>,
}

/// Everything the server knows.
#[derive(Default)]
pub(crate) struct State {
    sessions: HashMap<ConnId, Session>,
    by_user: HashMap<String, ConnId>,
    streams: HashMap<u32, StreamRec>,
    images: HashMap<u32, PendingImage>,
    refresh_tokens: HashMap<String, String>,
    last_stream_id: u32,
    last_message_id: u32,
}

impl State {
    fn next_stream_id(&mut self) -> u32 {
        self.last_stream_id = self.last_stream_id.wrapping_add(1).max(1);
        self.last_stream_id
    }

    fn next_message_id(&mut self) -> u32 {
        self.last_message_id = self.last_message_id.wrapping_add(1).max(1);
        self.last_message_id
    }
}

/// A successful logon, for the connection task to answer and to schedule the status.
pub(crate) struct LogonOk {
    pub(crate) user: String,
    pub(crate) refresh_token: String,
    pub(crate) allowed: Vec<String>,
    pub(crate) denied: Vec<String>,
}

/// Who a logon authenticated as.
struct Identity {
    user: String,
    listen_only: bool,
    allowed: Vec<String>,
    denied: Vec<String>,
}

/// The state, locked, with the server it belongs to.
pub(crate) struct Hub<'a> {
    pub(crate) st: MutexGuard<'a, State>,
    pub(crate) sh: &'a Arc<Shared>,
}

/// Queues `msg` for `to` unless it is gone, frozen or already overflowing; a full queue
/// disconnects that client.
fn deliver(sessions: &mut HashMap<ConnId, Session>, to: ConnId, msg: Message) {
    let Some(s) = sessions.get_mut(&to) else {
        return;
    };
    if s.frozen || s.overflowed {
        return;
    }
    match s.link.tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            s.overflowed = true;
            tracing::warn!(user = %s.user, "client too slow: its queue is full, disconnecting it");
            let _ = s.link.ctl.send(Control::Overflow);
        }
        Err(TrySendError::Closed(_)) => {}
    }
}

/// The sessions in `channel` that receive a message, never `exclude`, only `recipient` if set.
fn members(
    sessions: &HashMap<ConnId, Session>,
    channel: &str,
    exclude: Option<ConnId>,
    recipient: Option<&str>,
) -> Vec<ConnId> {
    let mut out: Vec<ConnId> = sessions
        .iter()
        .filter(|(id, s)| {
            Some(**id) != exclude
                && s.joined.contains(channel)
                && recipient.is_none_or(|r| r == s.user)
        })
        .map(|(id, _)| *id)
        .collect();
    // Deterministic order keeps logs and tests readable.
    out.sort_unstable();
    out
}

fn text_msg(event: &Event) -> Message {
    Message::text(event.to_json())
}

fn random_token() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect()
}

impl Hub<'_> {
    fn echo_on(&self) -> bool {
        self.sh.config.echo
    }

    /// Whether the echo user receives a message sent with this `for`.
    fn echo_hears(&self, recipient: Option<&str>) -> bool {
        self.echo_on() && recipient.is_none_or(|r| r == ECHO_USER)
    }

    fn session(&self, conn: ConnId) -> Result<&Session, ErrorCode> {
        self.st.sessions.get(&conn).ok_or(ErrorCode::NotLoggedIn)
    }

    /// The sender's name after the checks every outgoing message shares, and the channel it
    /// goes to: as named, or, when the command leaves `channel` out, the one channel the
    /// connection logged on to (as Zello does; with several, the channel is needed).
    fn sender(&self, conn: ConnId, channel: &str) -> Result<(String, String), ErrorCode> {
        let s = self.session(conn)?;
        if s.listen_only {
            return Err(ErrorCode::ListenOnlyConnection);
        }
        let channel = match (channel, s.logon_channels.as_slice()) {
            ("", [only]) => only.as_str(),
            ("", _) => return Err(ErrorCode::NotEnoughParams),
            (named, _) => named,
        };
        if !s.joined.contains(channel) {
            return Err(ErrorCode::ChannelIsNotReady);
        }
        Ok((s.user.clone(), channel.to_string()))
    }

    pub(crate) fn log(&self, event: SimEvent) {
        self.sh.log.push(event);
    }

    // -----------------------------------------------------------------------------------------
    // Logon and channel status.

    fn authenticate(&self, conn: ConnId, req: &Logon) -> Result<Identity, ErrorCode> {
        let nonempty =
            |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let username = nonempty(&req.username);
        let password = nonempty(&req.password);
        let auth_token = nonempty(&req.auth_token);
        let refresh_token = nonempty(&req.refresh_token);
        let accounts = self.sh.config.accounts.as_ref();

        let user = if let Some(token) = refresh_token {
            if self.sh.faults().refuse_refresh_tokens() {
                return Err(ErrorCode::NotAuthorized);
            }
            let owner = self
                .st
                .refresh_tokens
                .get(&token)
                .ok_or(ErrorCode::NotAuthorized)?;
            if username.as_ref().is_some_and(|u| u != owner) {
                return Err(ErrorCode::NotAuthorized);
            }
            owner.clone()
        } else {
            match (username, password) {
                (Some(user), Some(password)) => {
                    if let Some(accounts) = accounts
                        && accounts.check(&user, &password).is_none()
                    {
                        return Err(ErrorCode::NotAuthorized);
                    }
                    user
                }
                // Open server: a token stands in for the password.
                (Some(user), None) if auth_token.is_some() && accounts.is_none() => user,
                (Some(_), None) => return Err(ErrorCode::NotEnoughParams),
                (None, _) if auth_token.is_some() => {
                    if accounts.is_some() {
                        return Err(ErrorCode::NotAuthorized);
                    }
                    // Anonymous: listen-only, under a name of its own.
                    let channels = req.all_channels();
                    return Ok(Identity {
                        user: format!("anonymous-{conn}"),
                        listen_only: true,
                        allowed: channels,
                        denied: Vec::new(),
                    });
                }
                (None, _) => return Err(ErrorCode::NotEnoughParams),
            }
        };
        if self.echo_on() && user == ECHO_USER {
            return Err(ErrorCode::NotAuthorized);
        }
        let channels = req.all_channels();
        let (listen_only, allowed, denied) = match accounts {
            Some(accounts) => {
                let account = accounts.get(&user).ok_or(ErrorCode::NotAuthorized)?;
                let (allowed, denied) = channels.into_iter().partition(|c| account.may_join(c));
                (account.listen_only, allowed, denied)
            }
            None => (false, channels, Vec::new()),
        };
        Ok(Identity {
            user,
            listen_only: listen_only || req.listen_only.unwrap_or(false),
            allowed,
            denied,
        })
    }

    /// Checks a logon and, if it is good, registers the session (kicking an older session of
    /// the same user). The caller answers and schedules [`Hub::join`].
    pub(crate) fn logon(&mut self, link: &ConnLink, req: &Logon) -> Result<LogonOk, ErrorCode> {
        let conn = link.info.id;
        let result = self.check_logon(conn, req);
        let id = match result {
            Ok(id) => id,
            Err(code) => {
                let user = req.username.clone().unwrap_or_else(|| link.info.label());
                tracing::info!(%user, error = %code, "logon refused");
                self.log(SimEvent::Logon {
                    user,
                    ok: false,
                    error: Some(code.clone()),
                });
                return Err(code);
            }
        };
        if let Some(&old) = self.st.by_user.get(&id.user)
            && old != conn
        {
            tracing::info!(user = %id.user, "newer logon of the same user: kicking the older session");
            self.kick_conn(old);
        }
        let _ = link.info.name.set(id.user.clone());
        self.st.sessions.insert(
            conn,
            Session {
                link: link.clone(),
                user: id.user.clone(),
                listen_only: id.listen_only,
                logon_channels: req.all_channels(),
                joined: BTreeSet::new(),
                last_status: HashMap::new(),
                frozen: false,
                overflowed: false,
            },
        );
        self.st.by_user.insert(id.user.clone(), conn);
        let token = random_token();
        if self.st.refresh_tokens.len() >= MAX_REFRESH_TOKENS {
            self.st.refresh_tokens.clear();
        }
        self.st
            .refresh_tokens
            .insert(token.clone(), id.user.clone());
        tracing::info!(user = %id.user, channels = ?id.allowed, listen_only = id.listen_only, "logon");
        self.log(SimEvent::Logon {
            user: id.user.clone(),
            ok: true,
            error: None,
        });
        Ok(LogonOk {
            user: id.user,
            refresh_token: token,
            allowed: id.allowed,
            denied: id.denied,
        })
    }

    fn check_logon(&mut self, conn: ConnId, req: &Logon) -> Result<Identity, ErrorCode> {
        if let Some(code) = self.sh.faults().take_logon_refusal() {
            return Err(code);
        }
        let channels = req.all_channels();
        if channels.is_empty() || channels.iter().any(|c| c.trim().is_empty()) {
            return Err(ErrorCode::NotEnoughParams);
        }
        if channels.len() > MAX_CHANNELS {
            return Err(ErrorCode::ChannelsLimitExceeded);
        }
        self.authenticate(conn, req)
    }

    /// Puts a logged-on session into its channels and sends the channel status: offline with a
    /// configuration error for the channels its account may not join.
    /// Returns `false` (doing nothing) while channel status is held back.
    pub(crate) fn join(&mut self, conn: ConnId, allowed: &[String], denied: &[String]) -> bool {
        if *self.sh.hold_status.borrow() {
            return false;
        }
        let st = &mut *self.st;
        let Some(s) = st.sessions.get_mut(&conn) else {
            return true;
        };
        let user = s.user.clone();
        for channel in allowed {
            s.joined.insert(channel.clone());
        }
        for channel in denied {
            let event = Event::ChannelStatus(ChannelStatus {
                channel: channel.clone(),
                status: ChannelState::Offline,
                users_online: 0,
                images_supported: false,
                texting_supported: false,
                locations_supported: false,
                error: Some(ErrorCode::NotAuthorized.as_str().to_string()),
                error_type: Some("configuration".into()),
            });
            deliver(&mut st.sessions, conn, text_msg(&event));
            tracing::info!(%user, %channel, "channel refused: the account may not join it");
            self.sh.log.push(SimEvent::StatusSent {
                user: user.clone(),
                channel: channel.clone(),
                online: false,
                users_online: 0,
            });
        }
        for channel in allowed {
            self.refresh_status(channel);
        }
        true
    }

    /// How many users `channel` has, the echo user included.
    fn users_online(&self, channel: &str) -> u32 {
        let n = self
            .st
            .sessions
            .values()
            .filter(|s| s.joined.contains(channel))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX) + u32::from(self.echo_on())
    }

    /// Sends `on_channel_status` to every member of `channel` whose last one is out of date.
    pub(crate) fn refresh_status(&mut self, channel: &str) {
        if *self.sh.hold_status.borrow() {
            return;
        }
        let users_online = self.users_online(channel);
        let st = &mut *self.st;
        let mut targets: Vec<ConnId> = st
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.joined.contains(channel)
                    && !s.frozen
                    && s.last_status.get(channel) != Some(&users_online)
            })
            .map(|(id, _)| *id)
            .collect();
        targets.sort_unstable();
        let event = Event::ChannelStatus(ChannelStatus {
            channel: channel.to_string(),
            status: ChannelState::Online,
            users_online,
            images_supported: true,
            texting_supported: true,
            locations_supported: true,
            error: None,
            error_type: None,
        });
        let msg = text_msg(&event);
        for id in targets {
            let Some(s) = st.sessions.get_mut(&id) else {
                continue;
            };
            s.last_status.insert(channel.to_string(), users_online);
            let user = s.user.clone();
            deliver(&mut st.sessions, id, msg.clone());
            self.sh.log.push(SimEvent::StatusSent {
                user,
                channel: channel.to_string(),
                online: true,
                users_online,
            });
        }
    }

    /// Brings every channel's status up to date (after a hold is released).
    pub(crate) fn refresh_all_statuses(&mut self) {
        let channels: BTreeSet<String> = self
            .st
            .sessions
            .values()
            .flat_map(|s| s.joined.iter().cloned())
            .collect();
        for channel in channels {
            self.refresh_status(&channel);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sessions ending.

    /// Removes a session: its streams stop for their receivers, its half-sent images are
    /// forgotten, and its channels' users_online is updated. Returns the session's link.
    fn detach(&mut self, conn: ConnId) -> Option<(String, ConnLink)> {
        let s = self.st.sessions.remove(&conn)?;
        if self.st.by_user.get(&s.user) == Some(&conn) {
            self.st.by_user.remove(&s.user);
        }
        let mut owned: Vec<u32> = self
            .st
            .streams
            .iter()
            .filter(|(_, r)| r.owner == conn)
            .map(|(id, _)| *id)
            .collect();
        owned.sort_unstable();
        for id in owned {
            if let Some(rec) = self.st.streams.remove(&id)
                && !rec.stopped
            {
                self.finish_stream(id, rec, StopReason::SenderGone);
            }
        }
        self.st.images.retain(|_, img| img.owner != conn);
        for channel in &s.joined {
            self.refresh_status(channel);
        }
        Some((s.user, s.link))
    }

    /// The connection's task ended on its own: forget its session if it still has one.
    pub(crate) fn connection_ended(&mut self, conn: ConnId) {
        self.detach(conn);
    }

    fn kick_conn(&mut self, conn: ConnId) -> bool {
        let Some((user, link)) = self.detach(conn) else {
            return false;
        };
        self.log(SimEvent::Kicked { user: user.clone() });
        tracing::info!(%user, "kicked");
        let _ = link.ctl.send(Control::Kick);
        true
    }

    pub(crate) fn kick_user(&mut self, user: &str) -> bool {
        match self.st.by_user.get(user) {
            Some(&conn) => self.kick_conn(conn),
            None => false,
        }
    }

    pub(crate) fn drop_user(&mut self, user: &str) -> bool {
        let Some(&conn) = self.st.by_user.get(user) else {
            return false;
        };
        match self.detach(conn) {
            Some((user, link)) => {
                tracing::info!(%user, "dropping the connection without a close frame");
                let _ = link.ctl.send(Control::Drop);
                true
            }
            None => false,
        }
    }

    pub(crate) fn set_frozen(&mut self, user: &str, frozen: bool) -> bool {
        let Some(&conn) = self.st.by_user.get(user) else {
            return false;
        };
        let Some(s) = self.st.sessions.get_mut(&conn) else {
            return false;
        };
        if s.frozen == frozen {
            return true;
        }
        s.frozen = frozen;
        let _ = s.link.ctl.send(if frozen {
            Control::Freeze
        } else {
            Control::Thaw
        });
        let channels: Vec<String> = s.joined.iter().cloned().collect();
        tracing::info!(%user, frozen, "connection frozen or thawed");
        self.log(SimEvent::Frozen {
            user: user.to_string(),
            frozen,
        });
        if !frozen {
            for channel in channels {
                self.refresh_status(&channel);
            }
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // Voice.

    /// Validates and starts a stream, announcing it to its receivers.
    pub(crate) fn start_stream(
        &mut self,
        conn: ConnId,
        req: &StartStream,
    ) -> Result<u32, ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if req.kind != "audio" || req.codec != "opus" {
            return Err(ErrorCode::InvalidRequest);
        }
        if CodecHeader::from_base64(&req.codec_header).is_err() {
            return Err(ErrorCode::InvalidRequest);
        }
        if req.packet_duration == 0 || req.packet_duration > 120 {
            return Err(ErrorCode::InvalidRequest);
        }
        if let Some(code) = self.sh.faults().take_start_stream_rejection() {
            return Err(code);
        }
        let echo = self.echo_hears(req.recipient.as_deref());
        let st = &mut *self.st;
        let stream_id = st.next_stream_id();
        let receivers = members(&st.sessions, &channel, Some(conn), req.recipient.as_deref());
        let event = Event::StreamStart(StreamStart {
            kind: req.kind.clone(),
            codec: req.codec.clone(),
            codec_header: req.codec_header.clone(),
            packet_duration: req.packet_duration,
            stream_id,
            channel: channel.clone(),
            from: user.clone(),
            recipient: req.recipient.clone(),
        });
        let msg = text_msg(&event);
        for &r in &receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        st.streams.insert(
            stream_id,
            StreamRec {
                owner: conn,
                user: user.clone(),
                channel: channel.clone(),
                recipient: req.recipient.clone(),
                codec_header: req.codec_header.clone(),
                packet_duration: req.packet_duration,
                receivers,
                next_packet_id: 0,
                echo: echo.then(Vec::new),
                stopped: false,
            },
        );
        tracing::info!(%user, stream_id, channel = %channel, recipient = ?req.recipient, "stream start");
        self.log(SimEvent::StreamStart {
            user,
            stream_id,
            channel: channel.clone(),
            recipient: req.recipient.clone(),
        });
        Ok(stream_id)
    }

    /// Relays one audio packet of the sender's stream, numbered by the server.
    pub(crate) fn audio(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        data: &[u8],
    ) -> Result<(), ErrorCode> {
        let st = &mut *self.st;
        let Some(rec) = st.streams.get_mut(&stream_id).filter(|r| r.owner == conn) else {
            return Err(ErrorCode::InvalidAudioPacket);
        };
        if rec.stopped {
            return Ok(());
        }
        let packet_id = rec.next_packet_id;
        rec.next_packet_id = rec.next_packet_id.wrapping_add(1);
        let frame = Bytes::from(
            Packet::Audio {
                stream_id,
                packet_id,
                data,
            }
            .to_vec(),
        );
        if let Some(echo) = rec.echo.as_mut()
            && echo.len() < MAX_ECHO_PACKETS
        {
            echo.push(Bytes::copy_from_slice(data));
        }
        for &r in &rec.receivers {
            deliver(&mut st.sessions, r, Message::Binary(frame.clone()));
        }
        tracing::debug!(stream_id, packet_id, len = data.len(), "audio packet");
        self.log(SimEvent::Packet {
            stream_id,
            packet_id,
            len: data.len(),
        });
        Ok(())
    }

    /// The sender's `stop_stream`.
    pub(crate) fn stop_stream(&mut self, conn: ConnId, stream_id: u32) -> Result<(), ErrorCode> {
        match self.st.streams.get(&stream_id) {
            Some(rec) if rec.owner == conn => {}
            _ => return Err(ErrorCode::FailedToStopStream),
        }
        let Some(rec) = self.st.streams.remove(&stream_id) else {
            return Err(ErrorCode::FailedToStopStream);
        };
        if rec.stopped {
            // The server had ended it already.
            return Err(ErrorCode::FailedToStopStream);
        }
        self.finish_stream(stream_id, rec, StopReason::Client);
        Ok(())
    }

    /// Ends a stream for its receivers and hands what the echo user heard to a replay.
    fn finish_stream(&mut self, stream_id: u32, mut rec: StreamRec, reason: StopReason) {
        let msg = text_msg(&Event::StreamStop(StreamStop { stream_id }));
        let st = &mut *self.st;
        for &r in &rec.receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(user = %rec.user, stream_id, ?reason, "stream stop");
        self.log(SimEvent::StreamStop {
            user: rec.user.clone(),
            stream_id,
            reason,
        });
        if let Some(packets) = rec.echo.take().filter(|p| !p.is_empty()) {
            let recording = Recording {
                channel: rec.channel,
                sender: rec.user,
                private: rec.recipient.is_some(),
                codec_header: rec.codec_header,
                packet_duration: rec.packet_duration,
                packets,
            };
            let sh = Arc::clone(self.sh);
            self.sh.spawn(echo::replay(sh, recording));
        }
    }

    /// The server stops `user`'s outgoing streams (a fault).
    pub(crate) fn server_stop_streams(&mut self, user: &str) -> Vec<u32> {
        let Some(&conn) = self.st.by_user.get(user) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = self
            .st
            .streams
            .iter()
            .filter(|(_, r)| r.owner == conn && !r.stopped)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for &id in &ids {
            let Some(rec) = self.st.streams.get_mut(&id) else {
                continue;
            };
            rec.stopped = true;
            let snapshot = StreamRec {
                owner: rec.owner,
                user: rec.user.clone(),
                channel: rec.channel.clone(),
                recipient: rec.recipient.clone(),
                codec_header: rec.codec_header.clone(),
                packet_duration: rec.packet_duration,
                receivers: rec.receivers.clone(),
                next_packet_id: rec.next_packet_id,
                echo: rec.echo.take(),
                stopped: true,
            };
            let msg = text_msg(&Event::StreamStop(StreamStop { stream_id: id }));
            deliver(&mut self.st.sessions, conn, msg);
            self.finish_stream(id, snapshot, StopReason::Server);
        }
        ids
    }

    /// Starts a stream from the echo user; returns its id and receivers.
    pub(crate) fn echo_stream_start(&mut self, rec: &Recording) -> (u32, Vec<ConnId>) {
        let recipient = rec.private.then(|| rec.sender.clone());
        let st = &mut *self.st;
        let stream_id = st.next_stream_id();
        let receivers = members(&st.sessions, &rec.channel, None, recipient.as_deref());
        let event = Event::StreamStart(StreamStart {
            kind: "audio".into(),
            codec: "opus".into(),
            codec_header: rec.codec_header.clone(),
            packet_duration: rec.packet_duration,
            stream_id,
            channel: rec.channel.clone(),
            from: ECHO_USER.into(),
            recipient: recipient.clone(),
        });
        let msg = text_msg(&event);
        for &r in &receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(stream_id, channel = %rec.channel, "echo replay start");
        self.log(SimEvent::StreamStart {
            user: ECHO_USER.into(),
            stream_id,
            channel: rec.channel.clone(),
            recipient,
        });
        (stream_id, receivers)
    }

    /// Sends one packet of an echo replay.
    pub(crate) fn echo_packet(
        &mut self,
        stream_id: u32,
        packet_id: u32,
        receivers: &[ConnId],
        data: &[u8],
    ) {
        let frame = Bytes::from(
            Packet::Audio {
                stream_id,
                packet_id,
                data,
            }
            .to_vec(),
        );
        for &r in receivers {
            deliver(&mut self.st.sessions, r, Message::Binary(frame.clone()));
        }
        self.log(SimEvent::Packet {
            stream_id,
            packet_id,
            len: data.len(),
        });
    }

    /// Ends an echo replay.
    pub(crate) fn echo_stream_stop(&mut self, stream_id: u32, receivers: &[ConnId]) {
        let msg = text_msg(&Event::StreamStop(StreamStop { stream_id }));
        for &r in receivers {
            deliver(&mut self.st.sessions, r, msg.clone());
        }
        tracing::info!(stream_id, "echo replay stop");
        self.log(SimEvent::StreamStop {
            user: ECHO_USER.into(),
            stream_id,
            reason: StopReason::EchoDone,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Texts, locations, images.

    /// Delivers a text message to its receivers and lets the echo user answer.
    pub(crate) fn text(&mut self, conn: ConnId, req: &SendTextMessage) -> Result<(), ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if req.text.trim().is_empty() {
            return Err(ErrorCode::EmptyMessage);
        }
        if req.text.len() > MAX_TEXT_BYTES {
            return Err(ErrorCode::InvalidRequest);
        }
        self.deliver_text(
            Some(conn),
            &user,
            &channel,
            req.recipient.clone(),
            &req.text,
        );
        if self.echo_hears(req.recipient.as_deref()) {
            let private = req.recipient.is_some();
            let sh = Arc::clone(self.sh);
            let (channel, text) = (channel.clone(), req.text.clone());
            self.sh.spawn(async move {
                let recipient = private.then_some(user);
                sh.hub()
                    .deliver_text(None, ECHO_USER, &channel, recipient, &text);
            });
        }
        Ok(())
    }

    pub(crate) fn deliver_text(
        &mut self,
        from_conn: Option<ConnId>,
        from: &str,
        channel: &str,
        recipient: Option<String>,
        text: &str,
    ) {
        let st = &mut *self.st;
        let message_id = st.next_message_id();
        let event = Event::TextMessage(TextMessage {
            channel: channel.to_string(),
            from: from.to_string(),
            recipient: recipient.clone(),
            message_id,
            text: text.to_string(),
        });
        let msg = text_msg(&event);
        for r in members(&st.sessions, channel, from_conn, recipient.as_deref()) {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(user = %from, %channel, message_id, "text message");
        self.log(SimEvent::Text {
            user: from.to_string(),
            channel: channel.to_string(),
            message_id,
        });
    }

    /// Delivers a location to its receivers and lets the echo user answer.
    pub(crate) fn location(&mut self, conn: ConnId, req: &SendLocation) -> Result<(), ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if !req.latitude.is_finite() || !req.longitude.is_finite() {
            return Err(ErrorCode::InvalidRequest);
        }
        let mut loc = Location {
            channel: channel.clone(),
            from: user.clone(),
            recipient: req.recipient.clone(),
            message_id: 0,
            latitude: req.latitude,
            longitude: req.longitude,
            formatted_address: req.formatted_address.clone(),
            accuracy: req.accuracy,
        };
        self.deliver_location(Some(conn), loc.clone());
        if self.echo_hears(req.recipient.as_deref()) {
            loc.recipient = req.recipient.is_some().then_some(user);
            loc.from = ECHO_USER.into();
            let sh = Arc::clone(self.sh);
            self.sh.spawn(async move {
                sh.hub().deliver_location(None, loc);
            });
        }
        Ok(())
    }

    pub(crate) fn deliver_location(&mut self, from_conn: Option<ConnId>, mut loc: Location) {
        let st = &mut *self.st;
        loc.message_id = st.next_message_id();
        let (user, channel, message_id) = (loc.from.clone(), loc.channel.clone(), loc.message_id);
        let receivers = members(&st.sessions, &channel, from_conn, loc.recipient.as_deref());
        let msg = text_msg(&Event::Location(loc));
        for r in receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(%user, %channel, message_id, "location");
        self.log(SimEvent::Location {
            user,
            channel,
            message_id,
        });
    }

    /// Accepts a `send_image`; its two packets follow.
    pub(crate) fn send_image(&mut self, conn: ConnId, req: &SendImage) -> Result<u32, ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        let st = &mut *self.st;
        if st.images.values().filter(|i| i.owner == conn).count() >= MAX_PENDING_IMAGES {
            return Err(ErrorCode::InvalidRequest);
        }
        let image_id = st.next_message_id();
        st.images.insert(
            image_id,
            PendingImage {
                owner: conn,
                user: user.clone(),
                channel: channel.clone(),
                recipient: req.recipient.clone(),
                kind: req.kind.clone(),
                width: req.width,
                height: req.height,
                source: req.source.clone(),
                thumbnail: None,
                full: None,
            },
        );
        tracing::info!(%user, channel = %channel, image_id, "image announced");
        self.log(SimEvent::ImageStart {
            user,
            channel: channel.clone(),
            image_id,
        });
        Ok(image_id)
    }

    /// Takes one part of an announced image; once both parts are in, delivers `on_image`
    /// followed by the thumbnail and the full image.
    pub(crate) fn image_packet(
        &mut self,
        conn: ConnId,
        image_id: u32,
        kind: ImageKind,
        data: &[u8],
    ) -> Result<(), ErrorCode> {
        let st = &mut *self.st;
        let Some(img) = st.images.get_mut(&image_id).filter(|i| i.owner == conn) else {
            return Err(ErrorCode::InvalidAudioPacket);
        };
        let frame = Bytes::from(
            Packet::Image {
                image_id,
                kind,
                data,
            }
            .to_vec(),
        );
        match kind {
            ImageKind::Thumbnail => img.thumbnail = Some(frame),
            ImageKind::Full => img.full = Some(frame),
        }
        if img.thumbnail.is_none() || img.full.is_none() {
            return Ok(());
        }
        let Some(img) = st.images.remove(&image_id) else {
            return Ok(());
        };
        let receivers = members(
            &st.sessions,
            &img.channel,
            Some(conn),
            img.recipient.as_deref(),
        );
        let event = Event::Image(Image {
            channel: img.channel.clone(),
            from: img.user.clone(),
            recipient: img.recipient.clone(),
            message_id: image_id,
            kind: img.kind.clone(),
            height: img.height,
            width: img.width,
            source: img.source.clone(),
        });
        let msg = text_msg(&event);
        let parts = [img.thumbnail, img.full];
        for r in receivers {
            deliver(&mut st.sessions, r, msg.clone());
            for part in parts.iter().flatten() {
                deliver(&mut st.sessions, r, Message::Binary(part.clone()));
            }
        }
        tracing::info!(user = %img.user, channel = %img.channel, image_id, "image");
        self.log(SimEvent::Image {
            user: img.user,
            channel: img.channel,
            image_id,
        });
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Queries for the handle.

    pub(crate) fn online_users(&self, channel: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .st
            .sessions
            .values()
            .filter(|s| s.joined.contains(channel))
            .map(|s| s.user.clone())
            .collect();
        if self.echo_on() {
            users.push(ECHO_USER.into());
        }
        users.sort();
        users
    }

    pub(crate) fn stats(&self, user: &str) -> Option<ConnStats> {
        let conn = self.st.by_user.get(user)?;
        self.st.sessions.get(conn).map(|s| s.link.info.stats())
    }

    /// Logs a disconnect with the name the connection had.
    pub(crate) fn log_disconnect(&self, info: &ConnInfo, reason: DisconnectReason) {
        tracing::info!(user = %info.label(), ?reason, "disconnected");
        self.log(SimEvent::Disconnected {
            user: info.label(),
            reason,
        });
    }
}
