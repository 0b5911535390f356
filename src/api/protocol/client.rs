//! What a client sends: `{"op": ...}` text messages, checked for size before they are
//! parsed.

use super::ProtocolError;
use crate::secret::Secret;
use serde_json::{Map, Value};

/// The largest message a client may send, in bytes; a larger one is refused unread.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// One op a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// `{"op":"AUTH","token":"..."}`: the first message when a token is configured.
    Auth {
        /// The token, never printed.
        token: Secret,
    },
    /// `{"op":"SUBSCRIBE","room":"radio:vhf1","id":1,"since":1043}` (or `"rooms":[...]`).
    Subscribe {
        /// The room names as sent (`room` first, then `rooms`), each read with
        /// [`Subscription::resolve`](super::Subscription::resolve) and answered on its own.
        rooms: Vec<String>,
        /// Echoed in the replies.
        id: Option<u64>,
        /// The last sequence number the client holds: it wants the events after it.
        since: Option<u64>,
    },
    /// `{"op":"UNSUBSCRIBE","room":"radio:vhf1","id":2}` (or `"rooms":[...]`).
    Unsubscribe {
        /// The room names as sent.
        rooms: Vec<String>,
        /// Echoed in the replies.
        id: Option<u64>,
    },
    /// `{"op":"PING"}`, answered `PONG` (with the `id`, when one came).
    Ping {
        /// Echoed in the `PONG`.
        id: Option<u64>,
    },
}

/// A message the gateway refuses: the error, and the message's `id` when it could be read,
/// for the `ERROR` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// The message's `id`, when it had a readable one.
    pub id: Option<u64>,
    /// What is wrong.
    #[source]
    pub error: ProtocolError,
}

impl Rejected {
    fn new(id: Option<u64>, error: ProtocolError) -> Self {
        Rejected { id, error }
    }
}

/// Reads one text message of a client. Over [`MAX_MESSAGE_BYTES`] it is refused
/// ([`ProtocolError::MessageTooLarge`]) before being parsed; then not JSON, not an object, no
/// string `op`, fields of the wrong type or a missing `token`, `room` or `rooms` are
/// [`ProtocolError::BadJson`], an op it does not know [`ProtocolError::UnknownOp`]. Fields
/// it does not use are ignored.
pub fn parse_client(text: &str) -> Result<ClientOp, Rejected> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Rejected::new(
            None,
            ProtocolError::MessageTooLarge { size: text.len() },
        ));
    }
    let bad = |id, what| Rejected::new(id, ProtocolError::BadJson(what));
    let value: Value = serde_json::from_str(text).map_err(|_| bad(None, "not JSON"))?;
    let Value::Object(fields) = value else {
        return Err(bad(None, r#"send an object such as {"op":"PING"}"#));
    };
    let id = match fields.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad(None, "id must be a whole number from 0"))?,
        ),
    };
    let op = match fields.get("op") {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(bad(id, "op must be a string")),
        None => return Err(bad(id, r#"an "op" field is needed"#)),
    };
    match op {
        "AUTH" => match fields.get("token") {
            Some(Value::String(token)) => Ok(ClientOp::Auth {
                token: Secret::new(token.as_str()),
            }),
            _ => Err(bad(id, "AUTH needs a string token")),
        },
        "SUBSCRIBE" => {
            let since = match fields.get("since") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or_else(|| bad(id, "since must be a whole number from 0"))?,
                ),
            };
            let rooms = rooms(&fields).map_err(|what| bad(id, what))?;
            Ok(ClientOp::Subscribe { rooms, id, since })
        }
        "UNSUBSCRIBE" => {
            let rooms = rooms(&fields).map_err(|what| bad(id, what))?;
            Ok(ClientOp::Unsubscribe { rooms, id })
        }
        "PING" => Ok(ClientOp::Ping { id }),
        _ => Err(Rejected::new(id, ProtocolError::UnknownOp)),
    }
}

/// The names in `room` and `rooms`: at least one, each a string.
fn rooms(fields: &Map<String, Value>) -> Result<Vec<String>, &'static str> {
    let mut names = Vec::new();
    match fields.get("room") {
        None | Some(Value::Null) => {}
        Some(Value::String(room)) => names.push(room.clone()),
        Some(_) => return Err("room must be a string such as \"radio:vhf1\""),
    }
    match fields.get("rooms") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for room in list {
                match room {
                    Value::String(room) => names.push(room.clone()),
                    _ => return Err("rooms must be a list of strings such as [\"radio:*\"]"),
                }
            }
        }
        Some(_) => return Err("rooms must be a list of strings such as [\"radio:*\"]"),
    }
    if names.is_empty() {
        return Err("name a room (\"room\":\"radio:vhf1\") or rooms (\"rooms\":[...])");
    }
    Ok(names)
}
