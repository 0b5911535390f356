//! The Zello Channel API as typed values, free of I/O.
//!
//! - [`Command`]: what a client sends (the emulator decodes the same types);
//! - [`Reply`]: the server's answer to a command, matched by `seq`;
//! - [`Event`]: everything else the server sends;
//! - [`CodecHeader`], [`Packet`]: the codec header and binary packets;
//! - [`ErrorCode`]: the error strings and what to do about each.
//!
//! Decoding follows what servers really send: unknown fields are ignored, `for` may be a
//! string or `false`, `ct` stands for an image's `type` and `rgl` for a location's address, and
//! an unknown command becomes [`Event::Unknown`] with its raw JSON.

mod codec_header;
mod error_code;
mod packet;

pub use codec_header::{CodecHeader, CodecHeaderError, FRAME_SIZES_MS, SAMPLE_RATES};
pub use error_code::{ErrorClass, ErrorCode};
pub use packet::{HEADER_LEN, ImageKind, Packet, PacketError, audio_packet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

/// Why a text frame could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid json: {0}")]
    InvalidJson(String),
    #[error("message has neither a command nor a seq: {0}")]
    NotAMessage(String),
    #[error("{command}: {message}")]
    BadFields { command: String, message: String },
}

impl ProtocolError {
    /// The error string the server answers with for this kind of bad request.
    pub fn server_code(&self) -> ErrorCode {
        match self {
            ProtocolError::InvalidJson(_) => ErrorCode::InvalidJson,
            ProtocolError::NotAMessage(_) => ErrorCode::InvalidRequest,
            ProtocolError::BadFields { message, .. } if message.contains("missing field") => {
                ErrorCode::NotEnoughParams
            }
            ProtocolError::BadFields { .. } => ErrorCode::InvalidRequest,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `for`: a username, or `false` / absent for "everyone on the channel".

fn de_for<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    })
}

/// `for` as the server writes it in events: the username, or `false`.
mod for_or_false {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(name) => s.serialize_str(name),
            None => s.serialize_bool(false),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        super::de_for(d)
    }
}

/// Integers that some senders write as floats (`packet_duration` of 2.5 ms, say).
fn de_lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 && v <= u32::MAX as f64 {
        Ok(v.round() as u32)
    } else {
        Err(serde::de::Error::custom(format!(
            "{v} is not a valid duration"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Client commands.

/// `logon`. The Debug output hides every secret.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logon {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The older singular form, still accepted by servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_name: Option<String>,
}

impl Logon {
    /// Every channel named, through `channels` and the singular `channel`, without repeats.
    pub fn all_channels(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.channels.iter().chain(self.channel.iter()) {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

fn redact(v: &Option<String>) -> &'static str {
    if v.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

impl fmt::Debug for Logon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logon")
            .field("seq", &self.seq)
            .field("auth_token", &redact(&self.auth_token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("channels", &self.channels)
            .field("channel", &self.channel)
            .field("listen_only", &self.listen_only)
            .field("version", &self.version)
            .field("platform_type", &self.platform_type)
            .field("platform_name", &self.platform_name)
            .finish()
    }
}

/// `start_stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Required by the spec; Zello accepts its omission on a connection logged on to one
    /// channel (the official examples and SDK omit it), so it decodes as empty when missing.
    #[serde(default)]
    pub channel: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub codec: String,
    pub codec_header: String,
    #[serde(deserialize_with = "de_lenient_u32")]
    pub packet_duration: u32,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
}

impl StartStream {
    /// An Opus audio stream with the given header.
    pub fn audio(channel: &str, header: CodecHeader, recipient: Option<String>) -> Self {
        StartStream {
            seq: None,
            channel: channel.to_string(),
            kind: "audio".into(),
            codec: "opus".into(),
            codec_header: header.to_base64(),
            packet_duration: header.packet_ms(),
            recipient,
        }
    }
}

/// `stop_stream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopStream {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub stream_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `send_text_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendTextMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Required by the spec; Zello accepts its omission on a connection logged on to one
    /// channel (the official examples and SDK omit it), so it decodes as empty when missing.
    #[serde(default)]
    pub channel: String,
    pub text: String,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
}

/// `send_image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendImage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Required by the spec; Zello accepts its omission on a connection logged on to one
    /// channel (the official examples and SDK omit it), so it decodes as empty when missing.
    #[serde(default)]
    pub channel: String,
    #[serde(rename = "type", alias = "ct", default = "jpeg")]
    pub kind: String,
    pub thumbnail_content_length: u32,
    pub content_length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
}

fn jpeg() -> String {
    "jpeg".into()
}

/// `send_location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendLocation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Required by the spec; Zello accepts its omission on a connection logged on to one
    /// channel (the official examples and SDK omit it), so it decodes as empty when missing.
    #[serde(default)]
    pub channel: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, alias = "rgl", skip_serializing_if = "Option::is_none")]
    pub formatted_address: Option<String>,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
}

/// Everything a client sends as a text frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Logon(Logon),
    StartStream(StartStream),
    StopStream(StopStream),
    SendTextMessage(SendTextMessage),
    SendImage(SendImage),
    SendLocation(SendLocation),
    /// The newer SDKs' application-level keepalive; needs no answer.
    Keepalive {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
}

/// Result of decoding a client's text frame (the emulator's side).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Command(Command),
    /// A command name this protocol does not know, with the sender's seq if any.
    Unknown {
        command: String,
        seq: Option<u64>,
        raw: Value,
    },
}

const COMMANDS: [&str; 7] = [
    "logon",
    "start_stream",
    "stop_stream",
    "send_text_message",
    "send_image",
    "send_location",
    "keepalive",
];

impl Command {
    /// The sequence number, if the command carries one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Command::Logon(c) => c.seq,
            Command::StartStream(c) => c.seq,
            Command::StopStream(c) => c.seq,
            Command::SendTextMessage(c) => c.seq,
            Command::SendImage(c) => c.seq,
            Command::SendLocation(c) => c.seq,
            Command::Keepalive { seq } => *seq,
        }
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, value: u64) {
        let slot = match self {
            Command::Logon(c) => &mut c.seq,
            Command::StartStream(c) => &mut c.seq,
            Command::StopStream(c) => &mut c.seq,
            Command::SendTextMessage(c) => &mut c.seq,
            Command::SendImage(c) => &mut c.seq,
            Command::SendLocation(c) => &mut c.seq,
            Command::Keepalive { seq } => seq,
        };
        *slot = Some(value);
    }

    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Logon(_) => "logon",
            Command::StartStream(_) => "start_stream",
            Command::StopStream(_) => "stop_stream",
            Command::SendTextMessage(_) => "send_text_message",
            Command::SendImage(_) => "send_image",
            Command::SendLocation(_) => "send_location",
            Command::Keepalive { .. } => "keepalive",
        }
    }

    /// The JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("commands always serialize")
    }

    /// Decodes a client's text frame.
    pub fn decode(text: &str) -> Result<Incoming, ProtocolError> {
        let value = parse_json(text)?;
        let Some(name) = value.get("command").and_then(Value::as_str) else {
            return Err(ProtocolError::NotAMessage(truncate(text)));
        };
        if !COMMANDS.contains(&name) {
            return Ok(Incoming::Unknown {
                command: name.to_string(),
                seq: value.get("seq").and_then(Value::as_u64),
                raw: value,
            });
        }
        let name = name.to_string();
        // A null field counts as a missing one ("not enough params", as the server says).
        let mut value = value;
        if let Some(map) = value.as_object_mut() {
            map.retain(|_, v| !v.is_null());
        }
        fields(value, name).map(Incoming::Command)
    }
}

// ---------------------------------------------------------------------------------------------
// Server replies and events.

/// The server's answer to a command with a `seq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl Reply {
    /// A success reply.
    pub fn ok(seq: u64) -> Self {
        Reply {
            seq,
            success: true,
            ..Default::default()
        }
    }

    /// An error reply.
    pub fn err(seq: u64, code: ErrorCode) -> Self {
        Reply {
            seq,
            error: Some(code),
            ..Default::default()
        }
    }

    /// The error, if the reply is not a success. A reply with neither is treated as an error.
    pub fn failure(&self) -> Option<ErrorCode> {
        if self.success {
            None
        } else {
            Some(
                self.error
                    .clone()
                    .unwrap_or_else(|| ErrorCode::Other("no success flag".into())),
            )
        }
    }
}

/// Whether a channel is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    Online,
    Offline,
    #[serde(other)]
    Unknown,
}

/// `on_channel_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub channel: String,
    pub status: ChannelState,
    #[serde(default)]
    pub users_online: u32,
    #[serde(default)]
    pub images_supported: bool,
    #[serde(default)]
    pub texting_supported: bool,
    #[serde(default)]
    pub locations_supported: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

impl ChannelStatus {
    /// A channel online with `users_online` users, where texts, images and locations work.
    pub fn online(channel: &str, users_online: u32) -> Self {
        ChannelStatus {
            channel: channel.to_string(),
            status: ChannelState::Online,
            users_online,
            images_supported: true,
            texting_supported: true,
            locations_supported: true,
            error: None,
            error_type: None,
        }
    }
}

/// `on_stream_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStart {
    #[serde(rename = "type", default = "audio")]
    pub kind: String,
    #[serde(default = "opus")]
    pub codec: String,
    #[serde(default)]
    pub codec_header: String,
    #[serde(default, deserialize_with = "de_lenient_u32")]
    pub packet_duration: u32,
    pub stream_id: u32,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub from: String,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
}

fn audio() -> String {
    "audio".into()
}
fn opus() -> String {
    "opus".into()
}

/// `on_stream_stop`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStop {
    pub stream_id: u32,
}

/// `on_error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerError {
    pub error: ErrorCode,
}

/// `on_text_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextMessage {
    pub channel: String,
    #[serde(default)]
    pub from: String,
    #[serde(rename = "for", default, with = "for_or_false")]
    pub recipient: Option<String>,
    #[serde(default)]
    pub message_id: u32,
    #[serde(default)]
    pub text: String,
}

/// `on_image`; its thumbnail and full image follow as binary packets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub channel: String,
    #[serde(default)]
    pub from: String,
    #[serde(rename = "for", default, with = "for_or_false")]
    pub recipient: Option<String>,
    pub message_id: u32,
    #[serde(rename = "type", alias = "ct", default = "jpeg")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `on_location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub channel: String,
    #[serde(default)]
    pub from: String,
    #[serde(
        rename = "for",
        default,
        deserialize_with = "de_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub recipient: Option<String>,
    #[serde(default)]
    pub message_id: u32,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, alias = "rgl", skip_serializing_if = "Option::is_none")]
    pub formatted_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

/// Everything the server sends that is not a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command")]
pub enum Event {
    #[serde(rename = "on_channel_status")]
    ChannelStatus(ChannelStatus),
    #[serde(rename = "on_stream_start")]
    StreamStart(StreamStart),
    #[serde(rename = "on_stream_stop")]
    StreamStop(StreamStop),
    #[serde(rename = "on_error")]
    Error(ServerError),
    #[serde(rename = "on_text_message")]
    TextMessage(TextMessage),
    #[serde(rename = "on_image")]
    Image(Image),
    #[serde(rename = "on_location")]
    Location(Location),
    /// A command this client does not know, kept raw for the log.
    #[serde(skip)]
    Unknown { command: String, raw: Value },
}

const EVENTS: [&str; 7] = [
    "on_channel_status",
    "on_stream_start",
    "on_stream_stop",
    "on_error",
    "on_text_message",
    "on_image",
    "on_location",
];

impl Event {
    /// The JSON text frame (the emulator's side). `Unknown` events serialize to their raw JSON.
    pub fn to_json(&self) -> String {
        match self {
            Event::Unknown { raw, .. } => raw.to_string(),
            other => serde_json::to_string(other).expect("events always serialize"),
        }
    }
}

/// A decoded server text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Reply(Reply),
    Event(Event),
}

impl ServerMessage {
    /// Decodes a server's text frame. A frame with a `command` is an event (unknown ones become
    /// [`Event::Unknown`]); one without a command but with a `seq` is a reply.
    pub fn decode(text: &str) -> Result<ServerMessage, ProtocolError> {
        let value = parse_json(text)?;
        if let Some(name) = value.get("command").and_then(Value::as_str) {
            if !EVENTS.contains(&name) {
                return Ok(ServerMessage::Event(Event::Unknown {
                    command: name.to_string(),
                    raw: value,
                }));
            }
            let name = name.to_string();
            return fields(value, name).map(ServerMessage::Event);
        }
        if value.get("seq").is_some() {
            return fields(value, "reply".into()).map(ServerMessage::Reply);
        }
        Err(ProtocolError::NotAMessage(truncate(text)))
    }
}

impl Reply {
    /// The JSON text frame (the emulator's side).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("replies always serialize")
    }
}

/// A text frame's JSON.
fn parse_json(text: &str) -> Result<Value, ProtocolError> {
    serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))
}

/// The fields of `command` (or of a reply) from its JSON.
fn fields<T: serde::de::DeserializeOwned>(
    value: Value,
    command: String,
) -> Result<T, ProtocolError> {
    serde_json::from_value(value).map_err(|e| ProtocolError::BadFields {
        command,
        message: e.to_string(),
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests;
