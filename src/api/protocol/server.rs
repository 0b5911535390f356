//! What the gateway sends besides events: `READY`, the replies to ops, `SNAPSHOT`,
//! `RESYNC` and `ERROR`, and each room's snapshot of the state.

use super::{EncodeError, ErrorCode, ProtocolError, Room, to_bytes};
use crate::state::{ChannelState, Gateway, GatewayState, RadioState};
use bytes::Bytes;
use serde::Serialize;

/// The protocol's version, in `READY`: it grows when a message or field changes meaning.
pub const API_VERSION: u32 = 1;

/// How often the gateway pings each socket (ms), in `READY`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 25_000;

/// A message of the gateway other than an event. Serializes as
/// `{"type":"READY","data":{...}}`, `{"type":"SUBSCRIBED","room":"radio:vhf1","id":1}`, ...
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerMessage {
    /// The first message of every socket, once authenticated.
    Ready {
        /// What the socket needs to know.
        data: Ready,
    },
    /// A subscription was taken (or was held already).
    Subscribed {
        /// The room or wildcard as subscribed.
        room: String,
        /// The op's `id`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// A subscription was dropped (or was not held).
    Unsubscribed {
        /// The room or wildcard as sent.
        room: String,
        /// The op's `id`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// A room's state now, after `SUBSCRIBED` when no replay could be sent, or after `RESYNC`.
    Snapshot {
        /// The room.
        room: Room,
        /// The sequence number of the last event the snapshot holds: events after it follow.
        seq: u64,
        /// The room's state.
        data: RoomState,
    },
    /// The answer to `PING`.
    Pong {
        /// The `PING`'s `id`.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// The socket fell behind and missed events; a `SNAPSHOT` of each of its rooms follows.
    Resync {
        /// How many.
        data: Resync,
    },
    /// A message was refused.
    Error {
        /// The `id` of the refused message, when it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// What kind of error.
        code: ErrorCode,
        /// The room the error is about, for an op naming several.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// What is wrong, in words (`unknown room`, ...).
        data: String,
    },
}

/// `READY`'s data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ready {
    /// The socket's id, as `GET /api/v1/sockets/{id}` names it.
    pub session_id: String,
    /// How often the gateway pings (ms).
    pub heartbeat_interval_ms: u64,
    /// The sequence number of the last event so far: `since` for a later resume.
    pub seq: u64,
    /// [`API_VERSION`].
    pub version: u32,
    /// The rooms that exist now.
    pub rooms: Vec<Room>,
}

/// `RESYNC`'s data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resync {
    /// How many events the socket missed.
    pub missed: u64,
}

impl ServerMessage {
    /// `READY` for socket `session_id`, with the state's sequence number and rooms.
    pub fn ready(session_id: impl Into<String>, state: &GatewayState) -> ServerMessage {
        ServerMessage::Ready {
            data: Ready {
                session_id: session_id.into(),
                heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                seq: state.seq,
                version: API_VERSION,
                rooms: Room::all_in(state),
            },
        }
    }

    /// The `ERROR` for `error`, about the message `id` (and `room`, when one of several).
    pub fn error(id: Option<u64>, room: Option<String>, error: &ProtocolError) -> ServerMessage {
        ServerMessage::Error {
            id,
            code: error.code(),
            room,
            data: error.to_string(),
        }
    }

    /// `RESYNC` after `missed` events.
    pub fn resync(missed: u64) -> ServerMessage {
        ServerMessage::Resync {
            data: Resync { missed },
        }
    }

    /// The message as JSON text.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        to_bytes(self)
    }
}

/// A room's state, as `SNAPSHOT` carries it: the state's own fields, named as in
/// `GET /api/v1/status`, with the radio's or channel's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RoomState {
    /// `gateway`: the Zello session and Zello Alarms.
    Gateway(Gateway),
    /// `radio:{RADIO}`.
    Radio {
        /// The radio's name.
        radio: String,
        /// Its state.
        #[serde(flatten)]
        state: Box<RadioState>,
    },
    /// `channel:{CHANNEL}`.
    Channel {
        /// The channel's name.
        channel: String,
        /// Its state.
        #[serde(flatten)]
        state: ChannelState,
    },
}

/// The `SNAPSHOT` of `room` in `state`; `Ok(None)` for a levels room, which holds no state
/// (its next `LEVEL` tells all). [`ProtocolError::UnknownRoom`] for a radio or channel the
/// state does not list.
pub fn snapshot(room: &Room, state: &GatewayState) -> Result<Option<ServerMessage>, ProtocolError> {
    let data = match room {
        Room::Gateway => RoomState::Gateway(state.gateway.clone()),
        Room::Radio(name) => RoomState::Radio {
            radio: name.clone(),
            state: Box::new(state.radio(name).ok_or(ProtocolError::UnknownRoom)?.clone()),
        },
        Room::Channel(name) => RoomState::Channel {
            channel: name.clone(),
            state: state
                .channel(name)
                .ok_or(ProtocolError::UnknownRoom)?
                .clone(),
        },
        Room::Levels(name) => {
            return match state.radio(name) {
                Some(_) => Ok(None),
                None => Err(ProtocolError::UnknownRoom),
            };
        }
    };
    Ok(Some(ServerMessage::Snapshot {
        room: room.clone(),
        seq: state.seq,
        data,
    }))
}
