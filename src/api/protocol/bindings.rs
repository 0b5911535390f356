//! What `GET /api/v1/bindings` lists: every event by room kind with placeholders (in
//! Kazoo's form, `radio.CARRIER_UP.{RADIO}`), the room patterns and wildcards, and the rooms
//! that exist now.

use super::{EventType, Room, RoomKind};
use crate::state::GatewayState;
use serde::Serialize;

/// The bindings listing, as the `data` of `GET /api/v1/bindings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bindings {
    /// Every event name, by the kind of room it goes to.
    pub bindings: ByKind,
    /// The room patterns: `gateway`, `radio:{RADIO}`, `channel:{CHANNEL}`, `levels:{RADIO}`.
    pub patterns: Vec<String>,
    /// The wildcards a client may subscribe to: `radio:*`, `channel:*`, `levels:*`.
    pub wildcards: Vec<String>,
    /// The rooms that exist now.
    pub rooms: Vec<Room>,
}

/// Event bindings by room kind, in the order of [`RoomKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ByKind {
    /// `gateway.LOGGED_ON`, ...
    pub gateway: Vec<String>,
    /// `radio.CARRIER_UP.{RADIO}`, ...
    pub radio: Vec<String>,
    /// `channel.CHANNEL_ONLINE.{CHANNEL}`, ...
    pub channel: Vec<String>,
    /// `levels.LEVEL.{RADIO}`.
    pub levels: Vec<String>,
}

/// The bindings of room `kind`: `KIND.EVENT` followed by `.{PLACEHOLDER}` when the kind has
/// one, for each event going to rooms of that kind.
pub fn bindings_of(kind: RoomKind) -> Vec<String> {
    EventType::ALL
        .into_iter()
        .filter(|e| e.room_kinds().contains(&kind))
        .map(|e| match kind.placeholder() {
            Some(p) => format!("{}.{}.{p}", kind.as_str(), e.as_str()),
            None => format!("{}.{}", kind.as_str(), e.as_str()),
        })
        .collect()
}

impl Bindings {
    /// The listing, with the rooms that exist in `state`.
    pub fn new(state: &GatewayState) -> Self {
        Bindings {
            bindings: ByKind {
                gateway: bindings_of(RoomKind::Gateway),
                radio: bindings_of(RoomKind::Radio),
                channel: bindings_of(RoomKind::Channel),
                levels: bindings_of(RoomKind::Levels),
            },
            patterns: RoomKind::ALL.into_iter().map(RoomKind::pattern).collect(),
            wildcards: RoomKind::ALL
                .into_iter()
                .filter_map(RoomKind::wildcard)
                .collect(),
            rooms: Room::all_in(state),
        }
    }
}
