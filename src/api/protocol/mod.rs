//! The API's WebSocket protocol as pure types and functions, with no I/O.
//!
//! - [`room`]: room names (`gateway`, `radio:{RADIO}`, `channel:{CHANNEL}`,
//!   `levels:{RADIO}`), wildcards (`radio:*`) and the bounded [`Subscriptions`] of a socket;
//! - [`client`]: what a client sends (`AUTH`, `SUBSCRIBE`, `UNSUBSCRIBE`, `PING`), checked for
//!   size before it is parsed;
//! - [`server`]: what the gateway sends back (`READY`, `SUBSCRIBED`, `SNAPSHOT`, `RESYNC`,
//!   `ERROR`, ...) and each room's snapshot of the [`GatewayState`](crate::state::GatewayState);
//! - [`event`]: the API events, their data and envelope, each serialized once per room
//!   whatever the number of subscribers;
//! - [`catalogue`]: the API events a [`GatewayEvent`](crate::state::GatewayEvent) gives;
//! - [`bindings`]: the listing `GET /api/v1/bindings` answers.

#![warn(missing_docs)]

pub mod bindings;
pub mod catalogue;
pub mod client;
pub mod event;
pub mod room;
pub mod server;

pub use bindings::Bindings;
pub use catalogue::Catalogue;
pub use client::{ClientOp, MAX_MESSAGE_BYTES, Rejected, parse_client};
pub use event::{ApiEvent, Codec, Encoded, EventData, EventType};
pub use room::{MAX_SUBSCRIPTIONS, Room, RoomKind, Subscription, Subscriptions};
pub use server::{ServerMessage, snapshot};

use serde::Serialize;

/// An error code of the protocol, as `ERROR` messages carry it in `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The `op` is none the gateway knows.
    UnknownOp,
    /// The room's kind is unknown, or no such radio or channel exists.
    UnknownRoom,
    /// The message is not JSON, or not shaped as the op needs.
    BadJson,
    /// An op other than `AUTH` before the socket authenticated.
    NotAuthenticated,
    /// The socket holds [`MAX_SUBSCRIPTIONS`] already.
    TooManySubscriptions,
    /// The message is over [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    /// A room the token may not see (reserved: no token is restricted in this version).
    ForbiddenRoom,
}

/// What is wrong with a client's message; its text is the `data` of the `ERROR` the gateway
/// answers, and never repeats what the client sent (a token sent in the wrong place stays out
/// of replies and logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The `op` is none of `AUTH`, `SUBSCRIBE`, `UNSUBSCRIBE`, `PING`.
    #[error("unknown op")]
    UnknownOp,
    /// No such room: see `GET /api/v1/bindings` for the rooms that exist.
    #[error("unknown room")]
    UnknownRoom,
    /// A room the token may not see.
    #[error("forbidden room")]
    ForbiddenRoom,
    /// Not JSON, or not shaped as the op needs; the text says what to send instead.
    #[error("bad json: {0}")]
    BadJson(&'static str),
    /// The socket must authenticate first.
    #[error("not authenticated: send {{\"op\":\"AUTH\",\"token\":\"...\"}} first")]
    NotAuthenticated,
    /// The socket holds [`MAX_SUBSCRIPTIONS`] subscriptions already.
    #[error(
        "too many subscriptions: at most {MAX_SUBSCRIPTIONS} per socket; unsubscribe from one or use a wildcard such as radio:*"
    )]
    TooManySubscriptions,
    /// The message is over [`MAX_MESSAGE_BYTES`].
    #[error("message too large: {size} bytes, at most {MAX_MESSAGE_BYTES}")]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
    },
}

impl ProtocolError {
    /// The code `ERROR` carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::UnknownOp => ErrorCode::UnknownOp,
            ProtocolError::UnknownRoom => ErrorCode::UnknownRoom,
            ProtocolError::ForbiddenRoom => ErrorCode::ForbiddenRoom,
            ProtocolError::BadJson(_) => ErrorCode::BadJson,
            ProtocolError::NotAuthenticated => ErrorCode::NotAuthenticated,
            ProtocolError::TooManySubscriptions => ErrorCode::TooManySubscriptions,
            ProtocolError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }
}

/// A message of the gateway could not be serialized. The protocol's types always serialize,
/// so this is a bug in the gateway: report it with the log line.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize an API message (a bug in the gateway; please report it): {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// `value` as JSON bytes, shared without copying by every socket that sends it.
pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Result<bytes::Bytes, EncodeError> {
    Ok(bytes::Bytes::from(serde_json::to_vec(value)?))
}

#[cfg(test)]
mod tests;
