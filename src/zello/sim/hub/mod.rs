//! The emulator's shared state and everything that routes messages between connections.
//!
//! A [`Hub`] is the state behind its lock: every operation runs under it without waiting on
//! anything, and hands frames to the receivers' bounded queues with `try_send`, so a slow
//! client never holds up the others (a full queue disconnects that client).

mod channels;
mod ending;
mod logon;
mod messages;
mod streams;

use super::log::{DisconnectReason, SimEvent};
use super::server::Shared;
use super::{ConnStats, ECHO_USER};
use crate::zello::protocol::{ErrorCode, Event};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, OnceLock};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::Message;

/// Connection number, unique over the server's life.
pub(crate) type ConnId = u64;

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
