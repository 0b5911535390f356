//! What to publish, and when: the pure half of the MQTT publisher, free of I/O.
//!
//! [`Outbox`] turns the gateway's events into API events (the [`Catalogue`] the WebSocket
//! uses, each serialized once) for the `event` topics, and follows the state for the
//! retained `state` topics: a room's state is published when it differs from the last one
//! handed over, at most once per [`STATE_GAP`] per topic, the latest value winning. The
//! queue it hands messages to ([`Queue`]) may refuse them: an event refused is dropped and
//! counted; a state refused stays due and is tried again, so the broker always ends up with
//! the latest state.

use super::topics::{OFFLINE, ONLINE, Topics};
use crate::api::protocol::server::RoomState;
use crate::api::protocol::{Catalogue, Codec, Room, ServerMessage, snapshot};
use crate::state::{GatewayState, Stamped};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

/// The least time between two publications of one room's state: at most 4 a second per
/// topic, however fast the state changes (a chattering squelch).
pub const STATE_GAP: Duration = Duration::from_millis(250);

/// One message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload (JSON, or `online` / `offline`).
    pub payload: Bytes,
    /// Whether the broker keeps it for later subscribers.
    pub retain: bool,
}

/// Where messages go: rumqttc's bounded request queue, or a test's list.
pub trait Queue {
    /// Hands `message` over without waiting; `false` when the queue is full (or gone).
    fn offer(&mut self, message: Message) -> bool;
}

/// What an [`Outbox`] has handed over and dropped since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events handed to the queue (one per topic).
    pub events: u64,
    /// Room states handed to the queue.
    pub states: u64,
    /// Events lost: refused by a full queue, or missed by falling behind the gateway.
    pub dropped: u64,
}

/// The messages to publish, from the gateway's events and state. See the module's
/// documentation.
#[derive(Debug)]
pub struct Outbox {
    topics: Topics,
    codecs: Vec<(String, Codec)>,
    catalogue: Catalogue,
    /// The latest state.
    state: GatewayState,
    /// The state of each room as last handed over.
    sent: BTreeMap<Room, RoomState>,
    /// Rooms whose state differs from what was handed over.
    due: BTreeSet<Room>,
    /// When each room may be published again.
    next_at: BTreeMap<Room, Instant>,
    /// After falling behind: the sequence number of the state read again. Events up to it
    /// that were still queued are in that state, and missed as events.
    caught_up_at: u64,
    /// `online` is to be published, from this time on.
    online_at: Option<Instant>,
    /// Connected to the broker: states are only handed over then (on each connection they
    /// all go again anyway).
    connected: bool,
    counts: Counts,
}

impl Outbox {
    /// An outbox under `topics`, starting from `state`; `codecs` are the codecs of the
    /// radios' messages to the channel (from their configuration), which `MESSAGE_START`
    /// carries. Every room's state is due from `now`.
    pub fn new(
        topics: Topics,
        state: GatewayState,
        codecs: Vec<(String, Codec)>,
        now: Instant,
    ) -> Self {
        let catalogue = catalogue(&state, &codecs);
        let next_at = rooms(&state).into_iter().map(|r| (r, now)).collect();
        let mut outbox = Outbox {
            topics,
            codecs,
            catalogue,
            state: GatewayState::default(),
            sent: BTreeMap::new(),
            due: BTreeSet::new(),
            next_at,
            caught_up_at: 0,
            online_at: None,
            connected: false,
            counts: Counts::default(),
        };
        outbox.state(state);
        outbox
    }

    /// What was handed over and dropped so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Publishes the API events `stamped` gives on their rooms' `event` topics; those the
    /// queue refuses are dropped and counted. Returns how many were dropped.
    pub fn event(&mut self, stamped: &Stamped, queue: &mut impl Queue) -> u64 {
        if stamped.seq <= self.caught_up_at {
            self.counts.dropped += 1;
            return 1;
        }
        let mut dropped = 0;
        for event in self.catalogue.translate(stamped) {
            let encoded = match event.encode() {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, event = event.event.as_str(), "not published on MQTT");
                    dropped += 1;
                    continue;
                }
            };
            for one in encoded {
                let Some(topic) = self.topics.event(&one.room) else {
                    continue;
                };
                let message = Message {
                    topic,
                    payload: one.json,
                    retain: false,
                };
                if queue.offer(message) {
                    self.counts.events += 1;
                } else {
                    dropped += 1;
                }
            }
        }
        self.counts.dropped += dropped;
        dropped
    }

    /// The state changed: the rooms whose state differs from what was handed over become due.
    pub fn state(&mut self, state: GatewayState) {
        self.state = state;
        for room in rooms(&self.state) {
            match room_state(&room, &self.state) {
                Some(data) if self.sent.get(&room) != Some(&data) => {
                    self.due.insert(room);
                }
                _ => {
                    self.due.remove(&room);
                }
            }
        }
    }

    /// The event stream fell `missed` events behind: they are counted as dropped, the
    /// catalogue starts again from `state`, and every room's state is published again. The
    /// events still queued that `state` already holds are dropped and counted as they come.
    pub fn lagged(&mut self, missed: u64, state: GatewayState) {
        self.counts.dropped += missed;
        self.caught_up_at = state.seq;
        self.catalogue = catalogue(&state, &self.codecs);
        self.sent.clear();
        self.state(state);
    }

    /// A connection to the broker was made (a new session: nothing of the last one is
    /// kept): `online`, then every room's state, are due at once.
    pub fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.online_at = Some(now);
        self.sent.clear();
        for at in self.next_at.values_mut() {
            *at = now;
        }
        let state = std::mem::take(&mut self.state);
        self.state(state);
    }

    /// The connection to the broker was lost: states wait for the next one (events are
    /// still offered, and dropped while the queue is full).
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.online_at = None;
    }

    /// When something is due next: `Some(t <= now)` when something could go now (or is to
    /// be tried again), `None` when nothing is due.
    pub fn next_due(&self) -> Option<Instant> {
        if !self.connected {
            return None;
        }
        let mut next: Option<Instant> = self.online_at;
        for room in &self.due {
            // A room that appeared since: at once.
            let at = self.next_at.get(room).copied().unwrap_or_else(Instant::now);
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    /// Hands over what is due by `now`: `online` first, then each due room's state whose
    /// [`STATE_GAP`] has passed. What the queue refuses stays due and is tried again a
    /// [`STATE_GAP`] later.
    pub fn flush(&mut self, now: Instant, queue: &mut impl Queue) {
        if self.connected {
            self.flush_at(now, false, queue);
        }
    }

    /// The gateway stops: every due state goes now, whatever the [`STATE_GAP`], then
    /// `offline`. Whether everything was taken.
    pub fn finish(&mut self, now: Instant, queue: &mut impl Queue) -> bool {
        self.online_at = None;
        self.flush_at(now, true, queue);
        let offline = queue.offer(status(&self.topics, OFFLINE));
        offline && self.due.is_empty()
    }

    fn flush_at(&mut self, now: Instant, force: bool, queue: &mut impl Queue) {
        if let Some(at) = self.online_at
            && at <= now
        {
            if queue.offer(status(&self.topics, ONLINE)) {
                self.online_at = None;
            } else {
                self.online_at = Some(now + STATE_GAP);
            }
        }
        let ready: Vec<Room> = self
            .due
            .iter()
            .filter(|room| force || self.next_at.get(*room).is_none_or(|at| *at <= now))
            .cloned()
            .collect();
        for room in ready {
            let (Some(topic), Ok(Some(message))) =
                (self.topics.state(&room), snapshot(&room, &self.state))
            else {
                self.due.remove(&room);
                continue;
            };
            let ServerMessage::Snapshot { data, .. } = &message else {
                self.due.remove(&room);
                continue;
            };
            let data = data.clone();
            let payload = match message.encode() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, room = %room, "state not published on MQTT");
                    self.due.remove(&room);
                    continue;
                }
            };
            let accepted = queue.offer(Message {
                topic,
                payload,
                retain: true,
            });
            // Tried again (or published again) no sooner than a gap from now.
            self.next_at.insert(room.clone(), now + STATE_GAP);
            if accepted {
                self.counts.states += 1;
                self.due.remove(&room);
                self.sent.insert(room, data);
            }
        }
    }
}

/// `online` or `offline` on the status topic, retained.
pub fn status(topics: &Topics, payload: &'static str) -> Message {
    Message {
        topic: topics.status(),
        payload: Bytes::from_static(payload.as_bytes()),
        retain: true,
    }
}

/// The rooms with a retained state: the gateway's, each radio's, each channel's.
fn rooms(state: &GatewayState) -> Vec<Room> {
    let mut rooms = vec![Room::Gateway];
    rooms.extend(state.radios.keys().cloned().map(Room::Radio));
    rooms.extend(state.channels.keys().cloned().map(Room::Channel));
    rooms
}

/// `room`'s state in `state`, as its snapshot carries it.
fn room_state(room: &Room, state: &GatewayState) -> Option<RoomState> {
    match snapshot(room, state) {
        Ok(Some(ServerMessage::Snapshot { data, .. })) => Some(data),
        _ => None,
    }
}

fn catalogue(state: &GatewayState, codecs: &[(String, Codec)]) -> Catalogue {
    codecs
        .iter()
        .fold(Catalogue::new(state), |c, (radio, codec)| {
            c.with_codec(radio, *codec)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{GatewayEvent, StateHub};

    /// A queue taking up to `room` messages, keeping them.
    #[derive(Default)]
    struct List {
        taken: Vec<Message>,
        room: Option<usize>,
    }

    impl Queue for List {
        fn offer(&mut self, message: Message) -> bool {
            if self.room.is_some_and(|r| self.taken.len() >= r) {
                return false;
            }
            self.taken.push(message);
            true
        }
    }

    impl List {
        fn full() -> List {
            List {
                taken: Vec::new(),
                room: Some(0),
            }
        }

        fn topics(&self) -> Vec<&str> {
            self.taken.iter().map(|m| m.topic.as_str()).collect()
        }

        fn json(&self, i: usize) -> serde_json::Value {
            serde_json::from_slice(&self.taken[i].payload).unwrap()
        }
    }

    fn hub() -> StateHub {
        StateHub::new(GatewayState::new([(
            "vhf1".to_string(),
            "Dispatch".to_string(),
        )]))
    }

    fn codec() -> Vec<(String, Codec)> {
        vec![(
            "vhf1".into(),
            Codec {
                sample_rate_hz: 16000,
                frame_ms: 60,
                frames_per_packet: 1,
            },
        )]
    }

    fn outbox(hub: &StateHub) -> Outbox {
        Outbox::new(Topics::new("gw"), hub.snapshot(), codec(), Instant::now())
    }

    const STATES: [&str; 3] = [
        "gw/gateway/state",
        "gw/radio/vhf1/state",
        "gw/channel/Dispatch/state",
    ];

    #[test]
    fn on_each_connection_online_then_every_state() {
        let hub = hub();
        let mut o = outbox(&hub);
        let t0 = Instant::now();
        let mut q = List::default();
        // Not connected yet: nothing goes, nothing is due.
        o.flush(t0, &mut q);
        assert!(q.taken.is_empty());
        assert_eq!(o.next_due(), None);
        o.connected(t0);
        assert_eq!(o.next_due(), Some(t0));
        o.flush(t0, &mut q);
        let mut want = vec!["gw/status"];
        want.extend(STATES);
        assert_eq!(q.topics(), want);
        assert_eq!(&q.taken[0].payload[..], b"online");
        assert!(q.taken.iter().all(|m| m.retain));
        let radio = q.json(2);
        assert_eq!(radio["type"], "SNAPSHOT");
        assert_eq!(radio["room"], "radio:vhf1");
        assert_eq!(radio["data"]["radio"], "vhf1");
        assert_eq!(radio["data"]["channel"], "Dispatch");
        assert_eq!(radio["data"]["carrier"], false);
        // Nothing changed: nothing more.
        o.flush(t0 + Duration::from_secs(1), &mut q);
        assert_eq!(q.taken.len(), 4);
        assert_eq!(o.next_due(), None);
        // Away: changes wait for the connection.
        o.disconnected();
        hub.publish(GatewayEvent::CarrierUp {
            radio: "vhf1".into(),
        });
        o.state(hub.snapshot());
        o.flush(t0 + Duration::from_secs(2), &mut q);
        assert_eq!(q.taken.len(), 4);
        assert_eq!(o.next_due(), None);
        // Back: online first, then every state again, at once.
        let t1 = t0 + Duration::from_secs(3);
        o.connected(t1);
        assert_eq!(o.next_due(), Some(t1));
        let mut q = List::default();
        o.flush(t1, &mut q);
        assert_eq!(q.topics(), want);
        assert_eq!(q.json(2)["data"]["carrier"], true);
        assert_eq!(o.counts().states, 6);
    }

    #[test]
    fn a_state_changes_at_most_every_gap_and_the_latest_wins() {
        let hub = hub();
        let mut o = outbox(&hub);
        let t0 = Instant::now();
        o.connected(t0);
        o.flush(t0, &mut List::default());
        let mut q = List::default();
        // A chattering squelch: nine changes within 90 ms.
        for i in 0..9 {
            let event = if i % 2 == 0 {
                GatewayEvent::CarrierUp {
                    radio: "vhf1".into(),
                }
            } else {
                GatewayEvent::CarrierDown {
                    radio: "vhf1".into(),
                }
            };
            hub.publish(event);
            o.state(hub.snapshot());
            o.flush(t0 + Duration::from_millis(10 * i), &mut q);
        }
        // The states went out at t0: nothing more within the gap.
        assert!(q.taken.is_empty(), "{:?}", q.topics());
        // The gap since the first publication (at t0) ends at t0 + 250 ms.
        assert_eq!(o.next_due(), Some(t0 + STATE_GAP));
        o.flush(t0 + STATE_GAP, &mut q);
        assert_eq!(q.topics(), ["gw/radio/vhf1/state"]);
        // The latest: carrier up after the ninth change.
        assert_eq!(q.json(0)["data"]["carrier"], true);
        assert_eq!(q.json(0)["seq"], 9);
        // The carrier drops: due, but not before another gap.
        hub.publish(GatewayEvent::CarrierDown {
            radio: "vhf1".into(),
        });
        o.state(hub.snapshot());
        o.flush(t0 + STATE_GAP + Duration::from_millis(100), &mut q);
        assert_eq!(q.taken.len(), 1);
        assert_eq!(o.next_due(), Some(t0 + 2 * STATE_GAP));
        o.flush(t0 + 2 * STATE_GAP, &mut q);
        assert_eq!(q.taken.len(), 2);
        assert_eq!(q.json(1)["data"]["carrier"], false);
        // A change that comes back before it was published publishes nothing.
        hub.publish(GatewayEvent::CarrierUp {
            radio: "vhf1".into(),
        });
        o.state(hub.snapshot());
        hub.publish(GatewayEvent::CarrierDown {
            radio: "vhf1".into(),
        });
        o.state(hub.snapshot());
        assert_eq!(o.next_due(), None);
    }

    #[test]
    fn events_go_to_their_rooms_in_order_as_the_websocket_sends_them() {
        let hub = hub();
        let mut o = outbox(&hub);
        let mut events = hub.subscribe_stamped();
        hub.publish(GatewayEvent::CarrierUp {
            radio: "vhf1".into(),
        });
        hub.publish(GatewayEvent::StreamStarted {
            radio: "vhf1".into(),
            stream_id: 7,
        });
        hub.publish(GatewayEvent::CarrierDown {
            radio: "vhf1".into(),
        });
        let mut q = List::default();
        while let Ok(stamped) = events.try_recv() {
            assert_eq!(o.event(&stamped, &mut q), 0);
        }
        assert_eq!(
            q.topics(),
            [
                "gw/radio/vhf1/event",
                "gw/radio/vhf1/event",
                "gw/channel/Dispatch/event",
                "gw/radio/vhf1/event"
            ]
        );
        assert!(q.taken.iter().all(|m| !m.retain));
        let types: Vec<String> = (0..4).map(|i| q.json(i)["type"].to_string()).collect();
        assert_eq!(
            types,
            [
                "\"CARRIER_UP\"",
                "\"MESSAGE_START\"",
                "\"MESSAGE_START\"",
                "\"CARRIER_DOWN\""
            ]
        );
        let start = q.json(1);
        assert_eq!(start["room"], "radio:vhf1");
        assert_eq!(start["seq"], 2);
        assert_eq!(start["data"]["direction"], "to_channel");
        assert_eq!(start["data"]["stream_id"], 7);
        assert_eq!(start["data"]["frame_ms"], 60);
        assert!(start["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(q.json(2)["room"], "channel:Dispatch");
        assert_eq!(o.counts().events, 4);
        assert_eq!(o.counts().dropped, 0);
    }

    #[test]
    fn a_full_queue_drops_events_but_never_the_latest_state() {
        let hub = hub();
        let mut o = outbox(&hub);
        let t0 = Instant::now();
        o.connected(t0);
        o.flush(t0, &mut List::default());
        let mut events = hub.subscribe_stamped();
        hub.publish(GatewayEvent::CarrierUp {
            radio: "vhf1".into(),
        });
        let stamped = events.try_recv().unwrap();
        let mut full = List::full();
        assert_eq!(o.event(&stamped, &mut full), 1);
        assert_eq!(o.counts().dropped, 1);
        o.state(hub.snapshot());
        let t1 = t0 + Duration::from_secs(1);
        o.flush(t1, &mut full);
        // Refused: tried again a gap later, not in a loop.
        assert_eq!(o.next_due(), Some(t1 + STATE_GAP));
        o.flush(t1 + Duration::from_millis(100), &mut List::default());
        let mut q = List::default();
        o.flush(t1 + STATE_GAP, &mut q);
        assert_eq!(q.topics(), ["gw/radio/vhf1/state"]);
        assert_eq!(q.json(0)["data"]["carrier"], true);
        // Online refused on connecting: tried again too, before the states.
        let t2 = t1 + Duration::from_secs(1);
        o.connected(t2);
        o.flush(t2, &mut full);
        assert_eq!(o.next_due(), Some(t2 + STATE_GAP));
        let mut q = List::default();
        o.flush(t2 + STATE_GAP, &mut q);
        assert_eq!(q.topics()[0], "gw/status");
        assert_eq!(q.taken.len(), 4);
    }

    #[test]
    fn falling_behind_counts_the_missed_events_and_republishes_every_state() {
        let hub = hub();
        let mut o = outbox(&hub);
        let t0 = Instant::now();
        o.connected(t0);
        o.flush(t0, &mut List::default());
        for _ in 0..3 {
            hub.publish(GatewayEvent::PttOn {
                radio: "vhf1".into(),
            });
        }
        o.lagged(3, hub.snapshot());
        assert_eq!(o.counts().dropped, 3);
        let mut q = List::default();
        o.flush(t0 + STATE_GAP, &mut q);
        assert_eq!(q.topics(), STATES);
        assert_eq!(q.json(1)["data"]["ptt"], true);
        // The catalogue starts from the state: an event it holds is not published again but
        // counted as missed...
        let mut events = hub.subscribe_stamped();
        hub.publish(GatewayEvent::PttOff {
            radio: "vhf1".into(),
        });
        let mut q = List::default();
        let stamped = events.try_recv().unwrap();
        let mut old = stamped.clone();
        old.seq = 2;
        assert_eq!(o.event(&old, &mut q), 1);
        assert!(q.taken.is_empty());
        assert_eq!(o.counts().dropped, 4);
        // ...and a new one comes out.
        assert_eq!(o.event(&stamped, &mut q), 0);
        assert_eq!(q.json(0)["type"], "PTT_OFF");
        assert_eq!(o.counts().dropped, 4);
    }

    #[test]
    fn stopping_sends_the_last_states_at_once_then_offline() {
        let hub = hub();
        let mut o = outbox(&hub);
        let t0 = Instant::now();
        o.connected(t0);
        o.flush(t0, &mut List::default());
        hub.publish(GatewayEvent::PttOn {
            radio: "vhf1".into(),
        });
        o.state(hub.snapshot());
        let mut q = List::default();
        // Within the gap: finish does not wait for it.
        assert!(o.finish(t0 + Duration::from_millis(1), &mut q));
        assert_eq!(q.topics(), ["gw/radio/vhf1/state", "gw/status"]);
        assert_eq!(&q.taken[1].payload[..], b"offline");
        assert!(q.taken[1].retain);
        assert!(!o.finish(t0, &mut List::full()));
    }
}
