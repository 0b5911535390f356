//! The API's event feed: one task follows the gateway's events, turns each into API events
//! ([`Catalogue`]), serializes each once per room, keeps the last ones for resumes
//! (`"since"`) and hands them to every WebSocket session, and counts them in the
//! [`Metrics`].
//!
//! The feed does its work once per gateway event, whoever listens: with no socket open it
//! only keeps the replay ring and the metrics. Sessions share the serialized bytes.

use super::metrics::Metrics;
use super::protocol::{Catalogue, Encoded, Room, Subscriptions};
use crate::state::{StateHub, unix_ms};
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// How many serialized events (one per room) the replay ring keeps for `"since"`.
pub const REPLAY_CAPACITY: usize = 1024;

/// How many batches a session may fall behind before it is sent `RESYNC`.
pub const SESSION_BACKLOG: usize = 256;

/// What the feed hands to the sessions.
#[derive(Debug, Clone)]
pub enum Item {
    /// The events one gateway event gave, serialized once per room.
    Events(Arc<[Encoded]>),
    /// The feed itself fell behind the gateway's events and missed `missed` of them: every
    /// session re-reads the state (`RESYNC` and a `SNAPSHOT` per room).
    Missed(u64),
}

/// The events a resume can be served from.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Encoded>,
    /// The highest sequence number whose events may be missing from the ring (evicted, or
    /// before the feed started): a resume from an older `since` gets a snapshot instead.
    floor: u64,
}

/// The answer to a resume.
#[derive(Debug, PartialEq)]
pub enum Replay {
    /// The events after `since` for the subscription, oldest first (possibly none), and the
    /// sequence number up to which the ring was read.
    Events(Vec<Encoded>, u64),
    /// Events after `since` are no longer all kept: send a snapshot.
    TooOld,
}

/// The feed, shared by the server and its sessions.
pub struct Feed {
    hub: StateHub,
    metrics: Arc<Metrics>,
    items: broadcast::Sender<Item>,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

impl Feed {
    /// A feed of `hub`'s events, counted in `metrics`. Nothing runs until [`Feed::run`].
    pub fn new(hub: StateHub, metrics: Arc<Metrics>) -> Arc<Feed> {
        let floor = hub.snapshot().seq;
        Arc::new(Feed {
            hub,
            metrics,
            items: broadcast::channel(SESSION_BACKLOG).0,
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                floor,
            }),
        })
    }

    /// The gateway's state hub.
    pub fn hub(&self) -> &StateHub {
        &self.hub
    }

    /// The metrics the feed counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The items from now on, for a session.
    pub fn subscribe(&self) -> broadcast::Receiver<Item> {
        self.items.subscribe()
    }

    /// Follows the gateway's events until `shutdown`. `catalogue` is set up with what the
    /// events do not carry (each radio's codec); it starts from the state now, and is
    /// rebuilt from the state after a lag.
    /// `events` is the hub's event stream, taken before the feed was made (so nothing
    /// between the two is missed).
    pub async fn run(
        self: Arc<Self>,
        mut events: broadcast::Receiver<crate::state::Stamped>,
        catalogue: Catalogue,
        shutdown: CancellationToken,
    ) {
        let mut catalogue = catalogue.rebased(&self.hub.snapshot());
        let template = catalogue.clone();
        loop {
            let stamped = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = events.recv() => next,
            };
            match stamped {
                Ok(stamped) => {
                    self.metrics.observe(&stamped.event);
                    let mut batch = Vec::new();
                    for event in catalogue.translate(&stamped) {
                        match event.encode() {
                            Ok(encoded) => batch.extend(encoded),
                            Err(e) => error!(error = %e, "status API: an event left out"),
                        }
                    }
                    if !batch.is_empty() {
                        self.push(batch);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "status API: fell behind the gateway's events; its sockets are sent the state again"
                    );
                    let state = self.hub.snapshot();
                    catalogue = template.rebased(&state);
                    {
                        let mut ring = lock(&self.ring);
                        ring.events.clear();
                        ring.floor = state.seq;
                    }
                    let _ = self.items.send(Item::Missed(missed));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Keeps `batch` for resumes and hands it to the sessions. Under the ring's lock, so
    /// that a session reading the ring then its receiver misses nothing in between.
    fn push(&self, batch: Vec<Encoded>) {
        let mut ring = lock(&self.ring);
        for e in &batch {
            if ring.events.len() == REPLAY_CAPACITY
                && let Some(old) = ring.events.pop_front()
            {
                ring.floor = ring.floor.max(old.seq);
            }
            ring.events.push_back(e.clone());
        }
        if self.items.receiver_count() > 0 {
            let _ = self.items.send(Item::Events(batch.into()));
        }
    }

    /// The kept events after `since` that `subscription` wants, when the ring still holds
    /// all of them.
    pub fn replay(&self, since: u64, subscription: &Subscriptions) -> Replay {
        let ring = lock(&self.ring);
        if since < ring.floor {
            return Replay::TooOld;
        }
        let upto = ring.events.back().map_or(ring.floor, |e| e.seq);
        let events = ring
            .events
            .iter()
            .filter(|e| e.seq > since && subscription.wants(&e.room))
            .cloned()
            .collect();
        Replay::Events(events, upto.max(since))
    }

    /// Now, in unix ms.
    pub fn now_ms() -> u64 {
        unix_ms(SystemTime::now())
    }
}

/// Whether an event for `room` at `seq` is new to a session whose per-room floors say which
/// sequence numbers it already holds (from a snapshot or a replay).
pub fn is_new(floors: &std::collections::HashMap<Room, u64>, room: &Room, seq: u64) -> bool {
    floors.get(room).is_none_or(|&floor| seq > floor)
}
