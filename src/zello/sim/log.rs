//! What the emulator did, kept for test assertions.

use crate::zello::protocol::ErrorCode;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many entries the log keeps; older ones are discarded.
pub const LOG_CAPACITY: usize = 10_000;

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The sender sent `stop_stream`.
    Client,
    /// The server stopped it ([`Faults::stop_stream`](super::Faults::stop_stream)).
    Server,
    /// The sender's connection ended mid-stream.
    SenderGone,
    /// The echo user finished replaying.
    EchoDone,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection (with or without a close frame).
    ClientClosed,
    /// Reading or writing failed.
    ConnectionLost,
    /// The client did not answer a Ping in time.
    PongTimeout,
    /// A newer logon of the same user, or [`Faults::kick`](super::Faults::kick).
    Kicked,
    /// [`Faults::drop_connection`](super::Faults::drop_connection).
    Dropped,
    /// The client's outgoing queue was full.
    SlowClient,
    /// The client sent a message over [`SimConfig::max_message_size`](super::SimConfig).
    MessageTooBig,
    /// The server is shutting down.
    Shutdown,
}

/// One thing that happened.
///
/// Fields: `user` is the username (`#<connection number>` before logon, `echo` for the echo
/// user); `channel`, `stream_id`, `packet_id`, `message_id`, `image_id` and `users_online` are
/// as on the wire; `recipient` is the `for` user; `len` is an audio payload's size in bytes.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A WebSocket handshake completed.
    Connected { conn: u64, peer: SocketAddr },
    /// A logon was answered; `error` says why it failed.
    Logon {
        user: String,
        ok: bool,
        error: Option<ErrorCode>,
    },
    /// An `on_channel_status` was sent.
    StatusSent {
        user: String,
        channel: String,
        online: bool,
        users_online: u32,
    },
    /// A stream started (also the echo user's replays).
    StreamStart {
        user: String,
        stream_id: u32,
        channel: String,
        recipient: Option<String>,
    },
    /// An audio packet was relayed with the server's `packet_id`.
    Packet {
        stream_id: u32,
        packet_id: u32,
        len: usize,
    },
    /// A stream ended.
    StreamStop {
        user: String,
        stream_id: u32,
        reason: StopReason,
    },
    /// A text message was delivered.
    Text {
        user: String,
        channel: String,
        message_id: u32,
    },
    /// A location was delivered.
    Location {
        user: String,
        channel: String,
        message_id: u32,
    },
    /// `send_image` was accepted.
    ImageStart {
        user: String,
        channel: String,
        image_id: u32,
    },
    /// Both parts of an image arrived and were delivered.
    Image {
        user: String,
        channel: String,
        image_id: u32,
    },
    /// An error reply or `on_error` was sent.
    Error { user: String, code: ErrorCode },
    /// A session was kicked (close code 3003).
    Kicked { user: String },
    /// A connection was frozen or thawed by a fault.
    Frozen { user: String, frozen: bool },
    /// A WebSocket Ping was sent.
    PingSent { user: String },
    /// A WebSocket Pong was received.
    PongReceived { user: String },
    /// A connection ended.
    Disconnected {
        user: String,
        reason: DisconnectReason,
    },
}

/// A log entry: a monotonic index, when, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SimLogEntry {
    /// Counts from 0 over the server's life; gaps mean entries were discarded.
    pub index: u64,
    /// When it happened (tokio's clock, so paused-clock tests see virtual time).
    pub at: Instant,
    /// What happened.
    pub event: SimEvent,
}

#[derive(Default)]
struct Inner {
    next: u64,
    entries: VecDeque<SimLogEntry>,
}

/// The bounded log and a wake-up for those waiting on it.
#[derive(Default)]
pub(crate) struct SimLog {
    inner: Mutex<Inner>,
    pub(crate) changed: Notify,
}

impl SimLog {
    pub(crate) fn push(&self, event: SimEvent) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let index = inner.next;
            inner.next += 1;
            if inner.entries.len() >= LOG_CAPACITY {
                inner.entries.pop_front();
            }
            inner.entries.push_back(SimLogEntry {
                index,
                at: Instant::now(),
                event,
            });
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn snapshot(&self) -> Vec<SimLogEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().cloned().collect()
    }

    /// The entries whose index is `next` or more (those still kept), oldest first.
    pub(crate) fn since(&self, next: u64) -> Vec<SimLogEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let first = inner.entries.front().map_or(inner.next, |e| e.index);
        let skip = usize::try_from(next.saturating_sub(first)).unwrap_or(usize::MAX);
        inner.entries.iter().skip(skip).cloned().collect()
    }

    pub(crate) fn find(&self, pred: &dyn Fn(&SimEvent) -> bool) -> Option<SimLogEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.iter().find(|e| pred(&e.event)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(n: u64) -> SimEvent {
        SimEvent::Kicked {
            user: n.to_string(),
        }
    }

    #[test]
    fn since_gives_the_newer_entries_even_after_older_ones_were_discarded() {
        let log = SimLog::default();
        for n in 0..3 {
            log.push(kick(n));
        }
        let indices = |v: Vec<SimLogEntry>| v.iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(indices(log.since(0)), [0, 1, 2]);
        assert_eq!(indices(log.since(2)), [2]);
        assert!(log.since(3).is_empty());
        assert!(log.since(u64::MAX).is_empty());
        for n in 3..LOG_CAPACITY as u64 + 5 {
            log.push(kick(n));
        }
        // Entries 0 to 4 are gone: asking for them gives what is kept.
        let kept = log.since(1);
        assert_eq!(kept.len(), LOG_CAPACITY);
        assert_eq!(kept[0].index, 5);
        assert_eq!(
            log.since(LOG_CAPACITY as u64 + 4)[0].event,
            kick(LOG_CAPACITY as u64 + 4)
        );
    }
}
