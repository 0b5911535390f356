//! The open WebSocket sessions, as `GET /api/v1/sockets` lists them (Kazoo's discovery
//! endpoints): each one's id, rooms, connect time, source, user agent and counters.

use super::protocol::Subscriptions;
use super::protocol::event::rfc3339;
use crate::sync::lock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// At most this many WebSocket sessions at once; the next handshake is answered 503.
pub const MAX_SOCKETS: usize = 16;

/// A session's counters, updated by the session without taking the registry's lock.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events sent.
    pub events_sent: AtomicU64,
    /// Times it fell behind and was sent `RESYNC`.
    pub lag_events: AtomicU64,
    /// Events it missed by falling behind.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    source: SocketAddr,
    user_agent: Option<String>,
    connected_ms: u64,
    rooms: Subscriptions,
    counters: Arc<Counters>,
}

/// One session, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SocketInfo {
    /// The id `READY` gave it.
    pub id: String,
    /// Its subscriptions (rooms and wildcards), in the order taken.
    pub rooms: Subscriptions,
    /// Connected since (RFC 3339, UTC).
    pub connected_since: String,
    /// Connected since (unix ms).
    pub connected_ms: u64,
    /// The client's address.
    pub source: String,
    /// Its `User-Agent`, when it sent one.
    pub user_agent: Option<String>,
    pub events_sent: u64,
    pub lag_events: u64,
    pub dropped: u64,
}

/// The open sessions.
#[derive(Debug, Default)]
pub struct Sockets {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Entry>>,
}

/// A session's place in the registry: it leaves when dropped, however the session ends.
#[derive(Debug)]
pub struct Seat {
    sockets: Arc<Sockets>,
    id: u64,
    counters: Arc<Counters>,
}

/// No seat is free: [`MAX_SOCKETS`] sessions are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many WebSocket sessions: at most {MAX_SOCKETS} at once; close a dashboard or monitor and try again"
)]
pub struct Full;

impl Sockets {
    /// Takes a seat for a session from `source`, unless [`MAX_SOCKETS`] are open.
    pub fn join(
        self: &Arc<Self>,
        source: SocketAddr,
        user_agent: Option<String>,
        connected_ms: u64,
    ) -> Result<Seat, Full> {
        let mut open = lock(&self.open);
        if open.len() >= MAX_SOCKETS {
            return Err(Full);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let counters = Arc::new(Counters::default());
        open.insert(
            id,
            Entry {
                source,
                user_agent,
                connected_ms,
                rooms: Subscriptions::new(),
                counters: counters.clone(),
            },
        );
        Ok(Seat {
            sockets: self.clone(),
            id,
            counters,
        })
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open session, oldest first.
    pub fn list(&self) -> Vec<SocketInfo> {
        lock(&self.open)
            .iter()
            .map(|(id, e)| info(*id, e))
            .collect()
    }

    /// One session by the id `READY` gave it.
    pub fn get(&self, id: &str) -> Option<SocketInfo> {
        let number = parse_id(id)?;
        lock(&self.open).get(&number).map(|e| info(number, e))
    }
}

impl Seat {
    /// The session's id, as `READY` and the listing show it.
    pub fn id(&self) -> String {
        format_id(self.id)
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Records its subscriptions now.
    pub fn set_rooms(&self, rooms: &Subscriptions) {
        if let Some(e) = lock(&self.sockets.open).get_mut(&self.id) {
            e.rooms.clone_from(rooms);
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        lock(&self.sockets.open).remove(&self.id);
    }
}

fn format_id(id: u64) -> String {
    format!("ws-{id}")
}

fn parse_id(text: &str) -> Option<u64> {
    text.strip_prefix("ws-")?.parse().ok()
}

fn info(id: u64, e: &Entry) -> SocketInfo {
    let c = &e.counters;
    SocketInfo {
        id: format_id(id),
        rooms: e.rooms.clone(),
        connected_since: rfc3339(e.connected_ms),
        connected_ms: e.connected_ms,
        source: e.source.to_string(),
        user_agent: e.user_agent.clone(),
        events_sent: c.events_sent.load(Ordering::Relaxed),
        lag_events: c.lag_events.load(Ordering::Relaxed),
        dropped: c.dropped.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::Subscription;

    fn addr() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    #[test]
    fn seats_are_listed_until_dropped_and_the_seventeenth_is_refused() {
        let sockets = Arc::new(Sockets::default());
        let mut seats: Vec<Seat> = (0..MAX_SOCKETS)
            .map(|i| {
                sockets
                    .join(addr(), Some(format!("agent {i}")), 1_700_000_000_000)
                    .unwrap()
            })
            .collect();
        assert_eq!(sockets.join(addr(), None, 0).unwrap_err(), Full);
        assert_eq!(sockets.len(), MAX_SOCKETS);
        let first = seats.remove(0);
        let id = first.id();
        assert_eq!(id, "ws-1");
        let mut subs = Subscriptions::new();
        subs.insert(Subscription::parse("radio:*").unwrap())
            .unwrap();
        first.set_rooms(&subs);
        first.counters().events_sent.fetch_add(3, Ordering::Relaxed);
        let listed = sockets.get(&id).unwrap();
        assert_eq!(listed.events_sent, 3);
        assert_eq!(listed.user_agent.as_deref(), Some("agent 0"));
        assert_eq!(listed.connected_since, "2023-11-14T22:13:20.000Z");
        assert_eq!(
            serde_json::to_value(&listed.rooms).unwrap(),
            serde_json::json!(["radio:*"])
        );
        drop(first);
        assert!(sockets.get(&id).is_none());
        assert!(sockets.get("17").is_none());
        // A seat freed is a seat to take.
        assert!(sockets.join(addr(), None, 0).is_ok());
    }
}
