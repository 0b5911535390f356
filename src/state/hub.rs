//! [`StateHub`]: the one way the gateway tells what happens. Each event is numbered,
//! applied to the [`GatewayState`] behind a watch (whose latest value is never lost,
//! however slow a reader), then sent to the event streams.

use super::event::GatewayEvent;
use super::model::GatewayState;
use serde::Serialize;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// How many events an event stream holds for a reader that falls behind; past that it
/// reads [`broadcast::error::RecvError::Lagged`] and should read the state again.
pub const EVENT_CAPACITY: usize = 4096;

/// An event with its sequence number and time, as the event stream hands it out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    /// The state's [`GatewayState::seq`] once this event was applied.
    pub seq: u64,
    /// When it was applied (unix ms).
    pub at_ms: u64,
    pub event: GatewayEvent,
}

/// The gateway's state and its event streams. Cheap to clone; every clone publishes into
/// the same state.
#[derive(Clone)]
pub struct StateHub {
    inner: Arc<Inner>,
}

struct Inner {
    state: watch::Sender<GatewayState>,
    events: broadcast::Sender<GatewayEvent>,
    stamped: broadcast::Sender<Stamped>,
}

impl Default for StateHub {
    fn default() -> Self {
        StateHub::new(GatewayState::default())
    }
}

impl StateHub {
    /// A hub starting from `state`, its event streams holding [`EVENT_CAPACITY`] events.
    pub fn new(state: GatewayState) -> Self {
        Self::with_capacity(state, EVENT_CAPACITY)
    }

    /// A hub whose event streams hold `capacity` events for a reader that falls behind.
    pub fn with_capacity(state: GatewayState, capacity: usize) -> Self {
        StateHub {
            inner: Arc::new(Inner {
                state: watch::Sender::new(state),
                events: broadcast::channel(capacity).0,
                stamped: broadcast::channel(capacity).0,
            }),
        }
    }

    /// An empty hub and an event stream subscribed before anything happens.
    pub fn channel(capacity: usize) -> (Self, broadcast::Receiver<GatewayEvent>) {
        let hub = Self::with_capacity(GatewayState::default(), capacity);
        let events = hub.subscribe();
        (hub, events)
    }

    /// Applies `event` to the state, then sends it to the event streams; returns its
    /// sequence number. Never blocks on a reader. Not to be called while holding a borrow
    /// of [`StateHub::watch`]'s value (the state is locked while it changes).
    pub fn publish(&self, event: GatewayEvent) -> u64 {
        let at_ms = unix_ms(SystemTime::now());
        let mut seq = 0;
        let inner = &self.inner;
        // Sent while the state is locked, so the streams carry the events in their order.
        inner.state.send_modify(|state| {
            super::model::apply(state, &event, at_ms);
            seq = state.seq;
            if inner.stamped.receiver_count() > 0 {
                let _ = inner.stamped.send(Stamped {
                    seq,
                    at_ms,
                    event: event.clone(),
                });
            }
            let _ = inner.events.send(event);
        });
        seq
    }

    /// The state as it changes: the latest value is always there, whatever was missed.
    pub fn watch(&self) -> watch::Receiver<GatewayState> {
        self.inner.state.subscribe()
    }

    /// The sequence number of the last event applied, without copying the state.
    pub fn seq(&self) -> u64 {
        self.inner.state.borrow().seq
    }

    /// A copy of the state now.
    pub fn snapshot(&self) -> GatewayState {
        self.inner.state.borrow().clone()
    }

    /// The events from now on. A reader that falls behind gets `Lagged` and should read
    /// the state ([`StateHub::snapshot`]) again.
    pub fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.inner.events.subscribe()
    }

    /// The events from now on with their sequence numbers: after `Lagged`, read the state
    /// and skip the events whose `seq` it already holds.
    pub fn subscribe_stamped(&self) -> broadcast::Receiver<Stamped> {
        self.inner.stamped.subscribe()
    }
}

/// `time` as milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}
