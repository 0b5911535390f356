//! Rooms (`gateway`, `radio:vhf1`, ...), the wildcards a client may subscribe to
//! (`radio:*`), and a socket's bounded set of [`Subscriptions`].

use super::ProtocolError;
use crate::state::GatewayState;
use serde::{Serialize, Serializer};
use std::fmt;

/// How many subscriptions one socket may hold (a wildcard counts as one).
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// The kinds of room: the part of a room's name before the `:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomKind {
    /// The gateway as a whole: its Zello session and Zello Alarms.
    Gateway,
    /// One radio: carrier, PTT, messages, faults.
    Radio,
    /// One Zello channel: its state, users, texts, and the messages of its radios.
    Channel,
    /// One radio's live audio levels (opt-in: never in a snapshot, never queued).
    Levels,
}

impl RoomKind {
    /// Every kind, in the order listings show them.
    pub const ALL: [RoomKind; 4] = [
        RoomKind::Gateway,
        RoomKind::Radio,
        RoomKind::Channel,
        RoomKind::Levels,
    ];

    /// The kind's name: `gateway`, `radio`, `channel`, `levels`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Gateway => "gateway",
            RoomKind::Radio => "radio",
            RoomKind::Channel => "channel",
            RoomKind::Levels => "levels",
        }
    }

    /// The placeholder standing for a room's name in listings (`{RADIO}`), none for the
    /// gateway's one room.
    pub fn placeholder(self) -> Option<&'static str> {
        match self {
            RoomKind::Gateway => None,
            RoomKind::Radio | RoomKind::Levels => Some("{RADIO}"),
            RoomKind::Channel => Some("{CHANNEL}"),
        }
    }

    /// The room pattern: `gateway`, `radio:{RADIO}`, `channel:{CHANNEL}`, `levels:{RADIO}`.
    pub fn pattern(self) -> String {
        match self.placeholder() {
            Some(p) => format!("{}:{p}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }

    /// The wildcard subscribing to every room of this kind (`radio:*`); none for the gateway.
    pub fn wildcard(self) -> Option<String> {
        self.placeholder().map(|_| format!("{}:*", self.as_str()))
    }

    fn named(kind: &str) -> Option<RoomKind> {
        RoomKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// One room: where events go and what a client subscribes to. Serializes as its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Room {
    /// `gateway`.
    Gateway,
    /// `radio:{RADIO}`.
    Radio(String),
    /// `channel:{CHANNEL}`.
    Channel(String),
    /// `levels:{RADIO}`.
    Levels(String),
}

impl Room {
    /// Its kind.
    pub fn kind(&self) -> RoomKind {
        match self {
            Room::Gateway => RoomKind::Gateway,
            Room::Radio(_) => RoomKind::Radio,
            Room::Channel(_) => RoomKind::Channel,
            Room::Levels(_) => RoomKind::Levels,
        }
    }

    /// The radio's or channel's name; none for `gateway`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Room::Gateway => None,
            Room::Radio(n) | Room::Channel(n) | Room::Levels(n) => Some(n),
        }
    }

    /// A room from its name (`radio:vhf1`); a wildcard is no room ([`Subscription::parse`]
    /// reads those). Whether the radio or channel exists is [`Room::exists_in`]'s question.
    pub fn parse(text: &str) -> Result<Room, ProtocolError> {
        match Subscription::parse(text)? {
            Subscription::Room(room) => Ok(room),
            Subscription::Every(_) => Err(ProtocolError::UnknownRoom),
        }
    }

    /// Whether the room exists in `state`: `gateway` always, a radio's and a channel's rooms
    /// while the state lists them.
    pub fn exists_in(&self, state: &GatewayState) -> bool {
        match self {
            Room::Gateway => true,
            Room::Radio(n) | Room::Levels(n) => state.radios.contains_key(n),
            Room::Channel(n) => state.channels.contains_key(n),
        }
    }

    /// Every room that exists in `state`: `gateway`, then each radio's, each channel's and
    /// each radio's levels room, by name.
    pub fn all_in(state: &GatewayState) -> Vec<Room> {
        let mut rooms = vec![Room::Gateway];
        rooms.extend(state.radios.keys().cloned().map(Room::Radio));
        rooms.extend(state.channels.keys().cloned().map(Room::Channel));
        rooms.extend(state.radios.keys().cloned().map(Room::Levels));
        rooms
    }

    fn of_kind(kind: RoomKind, name: String) -> Room {
        match kind {
            RoomKind::Gateway => Room::Gateway,
            RoomKind::Radio => Room::Radio(name),
            RoomKind::Channel => Room::Channel(name),
            RoomKind::Levels => Room::Levels(name),
        }
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}:{name}", self.kind().as_str()),
            None => f.write_str(self.kind().as_str()),
        }
    }
}

impl Serialize for Room {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a client subscribes to: one room, or every room of a kind (`radio:*`, `channel:*`,
/// `levels:*`), those that exist now and those that appear later.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// One room.
    Room(Room),
    /// Every room of a kind other than [`RoomKind::Gateway`].
    Every(RoomKind),
}

impl Subscription {
    /// Reads `gateway`, `KIND:NAME` or `KIND:*`. An unknown kind, an empty name, a name
    /// after `gateway` or a wildcard of `gateway` is [`ProtocolError::UnknownRoom`].
    pub fn parse(text: &str) -> Result<Subscription, ProtocolError> {
        if text == RoomKind::Gateway.as_str() {
            return Ok(Subscription::Room(Room::Gateway));
        }
        let (kind, name) = text.split_once(':').ok_or(ProtocolError::UnknownRoom)?;
        let kind = RoomKind::named(kind)
            .filter(|k| *k != RoomKind::Gateway)
            .ok_or(ProtocolError::UnknownRoom)?;
        match name {
            "" => Err(ProtocolError::UnknownRoom),
            "*" => Ok(Subscription::Every(kind)),
            name => Ok(Subscription::Room(Room::of_kind(kind, name.to_string()))),
        }
    }

    /// Reads a subscription as [`Subscription::parse`] does, and refuses a room that does not
    /// exist in `state` ([`ProtocolError::UnknownRoom`]). Wildcards always exist.
    pub fn resolve(text: &str, state: &GatewayState) -> Result<Subscription, ProtocolError> {
        let sub = Subscription::parse(text)?;
        match &sub {
            Subscription::Room(room) if !room.exists_in(state) => Err(ProtocolError::UnknownRoom),
            _ => Ok(sub),
        }
    }

    /// Whether events of `room` go to this subscription.
    pub fn matches(&self, room: &Room) -> bool {
        match self {
            Subscription::Room(r) => r == room,
            Subscription::Every(kind) => room.kind() == *kind,
        }
    }

    /// The rooms of `state` it covers now (one snapshot each on subscribing).
    pub fn rooms_in(&self, state: &GatewayState) -> Vec<Room> {
        match self {
            Subscription::Room(room) => vec![room.clone()],
            Subscription::Every(_) => Room::all_in(state)
                .into_iter()
                .filter(|r| self.matches(r))
                .collect(),
        }
    }
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Room(room) => room.fmt(f),
            Subscription::Every(kind) => write!(f, "{}:*", kind.as_str()),
        }
    }
}

impl Serialize for Subscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A socket's subscriptions: at most [`MAX_SUBSCRIPTIONS`], each once, in the order taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    subs: Vec<Subscription>,
}

impl Subscriptions {
    /// No subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `sub`: `Ok(true)` when new, `Ok(false)` when already held (nothing changes);
    /// [`ProtocolError::TooManySubscriptions`] when a new one would be one too many.
    pub fn insert(&mut self, sub: Subscription) -> Result<bool, ProtocolError> {
        if self.subs.contains(&sub) {
            return Ok(false);
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Err(ProtocolError::TooManySubscriptions);
        }
        self.subs.push(sub);
        Ok(true)
    }

    /// Removes `sub` as it was subscribed (unsubscribing `radio:vhf1` leaves `radio:*` in
    /// place); whether it was held.
    pub fn remove(&mut self, sub: &Subscription) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s != sub);
        self.subs.len() != before
    }

    /// Whether events of `room` go to this socket.
    pub fn wants(&self, room: &Room) -> bool {
        self.subs.iter().any(|s| s.matches(room))
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Those held, in the order taken.
    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.subs.iter()
    }
}

impl Serialize for Subscriptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.subs)
    }
}
