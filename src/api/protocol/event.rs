//! The API's events: their names ([`EventType`]), their `data` ([`EventData`]), and the
//! envelope `{type, room, seq, ts, data}`, serialized once per room ([`ApiEvent::encode`]).
//!
//! Event names match the journald `EVENT=` values (upper-cased), so log and API agree. Every
//! radio event's data has `radio`; fields are snake_case and fixed.

use super::{EncodeError, Room, RoomKind, to_bytes};
use crate::config::CodecConfig;
use crate::state::{ChannelFeatures, DisconnectReason, MessageCodec, MessageOutcome};
use bytes::Bytes;
use serde::{Serialize, Serializer};

/// An API event's name, the `type` of its envelope: the upper-cased journald `EVENT=` of
/// the same name where the log has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The gateway logged on to Zello.
    LoggedOn,
    /// The Zello server refused the logon.
    LogonRefused,
    /// The Zello connection closed; the gateway reconnects.
    Disconnected,
    /// The account logged on elsewhere and the server closed this session.
    Kicked,
    /// The gateway left Zello on purpose: radio hardware failed (Zello Alarms).
    AlarmOffline,
    /// The gateway goes back online after leaving on purpose.
    AlarmOnline,
    /// A channel came online.
    ChannelOnline,
    /// A channel went offline.
    ChannelOffline,
    /// The number of users online on a channel changed.
    UsersOnline,
    /// A text message on a channel.
    Text,
    /// A location shared on a channel.
    Location,
    /// A message began, to or from the channel.
    MessageStart,
    /// A message ended, with its figures and outcome.
    MessageStop,
    /// The radio hears a carrier.
    CarrierUp,
    /// The carrier dropped.
    CarrierDown,
    /// The transmitter was keyed.
    PttOn,
    /// The transmitter was unkeyed.
    PttOff,
    /// The time-out timer cut a message from the channel.
    TimeOut,
    /// Transmitting was inhibited by the operator.
    TxInhibited,
    /// Transmitting is allowed again.
    TxAllowed,
    /// The radio's sound device failed (PTT released).
    DeviceLost,
    /// The sound device works again.
    DeviceBack,
    /// The PTT interface failed.
    PttInterfaceFailed,
    /// The PTT interface works again.
    PttInterfaceBack,
    /// The carrier detector failed.
    CarrierDetectFailed,
    /// The carrier detector works again.
    CarrierDetectBack,
    /// The carrier stayed up past `rx_max_s` and is ignored until it drops.
    CarrierStuck,
    /// Too many short messages: new ones are suppressed for a while.
    CarrierFlapping,
    /// A radio's audio level, at most 5 a second.
    Level,
}

impl EventType {
    /// Every event of the catalogue, by room kind in the order.
    pub const ALL: [EventType; 29] = {
        use EventType::*;
        [
            LoggedOn,
            LogonRefused,
            Disconnected,
            Kicked,
            AlarmOffline,
            AlarmOnline,
            ChannelOnline,
            ChannelOffline,
            UsersOnline,
            Text,
            Location,
            CarrierUp,
            CarrierDown,
            MessageStart,
            MessageStop,
            PttOn,
            PttOff,
            TimeOut,
            TxInhibited,
            TxAllowed,
            DeviceLost,
            DeviceBack,
            PttInterfaceFailed,
            PttInterfaceBack,
            CarrierDetectFailed,
            CarrierDetectBack,
            CarrierStuck,
            CarrierFlapping,
            Level,
        ]
    };

    /// The name, as `type` carries it: `CARRIER_UP`.
    pub fn as_str(self) -> &'static str {
        use EventType::*;
        match self {
            LoggedOn => "LOGGED_ON",
            LogonRefused => "LOGON_REFUSED",
            Disconnected => "DISCONNECTED",
            Kicked => "KICKED",
            AlarmOffline => "ALARM_OFFLINE",
            AlarmOnline => "ALARM_ONLINE",
            ChannelOnline => "CHANNEL_ONLINE",
            ChannelOffline => "CHANNEL_OFFLINE",
            UsersOnline => "USERS_ONLINE",
            Text => "TEXT",
            Location => "LOCATION",
            MessageStart => "MESSAGE_START",
            MessageStop => "MESSAGE_STOP",
            CarrierUp => "CARRIER_UP",
            CarrierDown => "CARRIER_DOWN",
            PttOn => "PTT_ON",
            PttOff => "PTT_OFF",
            TimeOut => "TIME_OUT",
            TxInhibited => "TX_INHIBITED",
            TxAllowed => "TX_ALLOWED",
            DeviceLost => "DEVICE_LOST",
            DeviceBack => "DEVICE_BACK",
            PttInterfaceFailed => "PTT_INTERFACE_FAILED",
            PttInterfaceBack => "PTT_INTERFACE_BACK",
            CarrierDetectFailed => "CARRIER_DETECT_FAILED",
            CarrierDetectBack => "CARRIER_DETECT_BACK",
            CarrierStuck => "CARRIER_STUCK",
            CarrierFlapping => "CARRIER_FLAPPING",
            Level => "LEVEL",
        }
    }

    /// The kinds of room it goes to: `MESSAGE_START` and `MESSAGE_STOP` go to the radio's
    /// room and are mirrored on its channel's.
    pub fn room_kinds(self) -> &'static [RoomKind] {
        use EventType::*;
        match self {
            LoggedOn | LogonRefused | Disconnected | Kicked | AlarmOffline | AlarmOnline => {
                &[RoomKind::Gateway]
            }
            ChannelOnline | ChannelOffline | UsersOnline | Text | Location => &[RoomKind::Channel],
            MessageStart | MessageStop => &[RoomKind::Radio, RoomKind::Channel],
            Level => &[RoomKind::Levels],
            CarrierUp | CarrierDown | PttOn | PttOff | TimeOut | TxInhibited | TxAllowed
            | DeviceLost | DeviceBack | PttInterfaceFailed | PttInterfaceBack
            | CarrierDetectFailed | CarrierDetectBack | CarrierStuck | CarrierFlapping => {
                &[RoomKind::Radio]
            }
        }
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Heard by the radio, sent to the channel.
    ToChannel,
    /// From the channel, transmitted by the radio.
    FromChannel,
}

impl From<crate::audio::meter::MeterDirection> for Direction {
    /// A live meter's receive side is what goes to the channel, its transmit side what
    /// comes from it.
    fn from(d: crate::audio::meter::MeterDirection) -> Self {
        match d {
            crate::audio::meter::MeterDirection::Receive => Direction::ToChannel,
            crate::audio::meter::MeterDirection::Transmit => Direction::FromChannel,
        }
    }
}

/// How a message ended, as `MESSAGE_STOP`'s `outcome` (and the metrics' label) says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Sent or played in full.
    Completed,
    /// Cut short: the server stopped it, or the transmitter was found unkeyed during it.
    Interrupted,
    /// Not accepted: the server refused it, or the channel was not online.
    Refused,
    /// Lost: the connection dropped during it, or it ended before the server gave it a
    /// stream id.
    Dropped,
    /// The server did not answer in time, or the time-out timer cut it.
    TimedOut,
    /// The radio's transmitting was inhibited.
    Inhibited,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Outcome::Completed,
        Outcome::Interrupted,
        Outcome::Refused,
        Outcome::Dropped,
        Outcome::TimedOut,
        Outcome::Inhibited,
    ];

    /// The name, as `outcome` carries it (and the metrics' label).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Interrupted => "interrupted",
            Outcome::Refused => "refused",
            Outcome::Dropped => "dropped",
            Outcome::TimedOut => "timed_out",
            Outcome::Inhibited => "inhibited",
        }
    }
}

impl From<MessageOutcome> for Outcome {
    fn from(o: MessageOutcome) -> Self {
        match o {
            MessageOutcome::Completed => Outcome::Completed,
            MessageOutcome::Interrupted => Outcome::Interrupted,
            MessageOutcome::Refused | MessageOutcome::ChannelNotReady => Outcome::Refused,
            MessageOutcome::Dropped
            | MessageOutcome::Abandoned
            | MessageOutcome::Busy
            | MessageOutcome::TooOld => Outcome::Dropped,
            MessageOutcome::TimedOut => Outcome::TimedOut,
            MessageOutcome::Inhibited => Outcome::Inhibited,
        }
    }
}

/// A message's codec, as `MESSAGE_START` and `MESSAGE_STOP` carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// Samples per second.
    pub sample_rate_hz: u32,
    /// Milliseconds of audio per Opus frame.
    pub frame_ms: u8,
    /// Opus frames per packet.
    pub frames_per_packet: u8,
}

impl From<&CodecConfig> for Codec {
    /// The codec of the messages a radio sends, from its `codec = { ... }`.
    fn from(c: &CodecConfig) -> Self {
        Codec {
            sample_rate_hz: crate::audio::CODEC_RATE,
            frame_ms: c.frame_ms,
            frames_per_packet: c.frames_per_packet,
        }
    }
}

impl From<MessageCodec> for Codec {
    /// The codec of a message from the channel, from its codec header.
    fn from(c: MessageCodec) -> Self {
        Codec {
            sample_rate_hz: c.sample_rate_hz,
            frame_ms: c.frame_ms,
            frames_per_packet: c.frames_per_packet,
        }
    }
}

/// `data` of an event with nothing to tell but its name: `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Nothing {}

/// `MESSAGE_START`'s data, which `MESSAGE_STOP` repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageStart {
    /// The radio.
    pub radio: String,
    /// The radio's channel, when the state lists it.
    pub channel: Option<String>,
    /// Which way.
    pub direction: Direction,
    /// The Zello stream id; none for a message to the channel that never got one.
    pub stream_id: Option<u32>,
    /// Who talks (messages from the channel only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Samples per second; none when not known.
    pub sample_rate_hz: Option<u32>,
    /// Milliseconds per Opus frame; none when not known.
    pub frame_ms: Option<u8>,
    /// Opus frames per packet; none when not known.
    pub frames_per_packet: Option<u8>,
}

/// `MESSAGE_STOP`'s data: the start's fields and the message's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageStop {
    /// As in `MESSAGE_START`.
    #[serde(flatten)]
    pub start: MessageStart,
    /// Packets sent (to the channel) or played (from it).
    pub packets: u64,
    /// Lost packets filled in by loss concealment (from the channel; 0 to it).
    pub concealed: u64,
    /// Packets left out: late, duplicate or flooded ones, or audio captured while the
    /// channel was away too long.
    pub dropped: u64,
    /// The audio's length.
    pub duration_ms: u64,
    /// The audio's peak level: as sent (to the channel) or as played to the transmitter
    /// (from the channel); none when not measured.
    pub peak_dbfs: Option<f32>,
    /// The audio's RMS level, measured like `peak_dbfs`.
    pub rms_dbfs: Option<f32>,
    /// How it ended.
    pub outcome: Outcome,
}

/// `LEVEL`'s data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// The radio.
    pub radio: String,
    /// `to_channel`: what the receiver hears; `from_channel`: what the transmitter plays.
    pub direction: Direction,
    /// RMS level over the last period.
    pub rms_dbfs: f32,
    /// Peak level over the last period.
    pub peak_dbfs: f32,
    /// Whether the squelch was open (`to_channel`: a carrier or voice was heard; levels are
    /// measured with it closed too while someone watches, to show the noise floor) or the
    /// transmitter keyed (`from_channel`).
    pub open: bool,
    /// Samples at full scale so far (clipping): a rising count means the level is too high.
    pub clips: u64,
}

/// An event's `data`, shaped by its type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// `LOGGED_ON`, `ALARM_ONLINE`: `{}`.
    Nothing(Nothing),
    /// `LOGON_REFUSED`.
    Refused {
        /// The server's error code.
        error: String,
    },
    /// `DISCONNECTED`, `KICKED`.
    Disconnected {
        /// Why the connection closed: `kicked`, `server_closed`, `network`, `timeout`,
        /// `refused`, `held_offline`, `other`.
        reason: DisconnectReason,
        /// How, in words.
        detail: String,
    },
    /// `LOCATION`: a location shared on a channel.
    Location {
        /// The channel.
        channel: String,
        /// The sender.
        from: String,
        /// Degrees.
        latitude: f64,
        /// Degrees.
        longitude: f64,
        /// Meters, when the sender's device gave it.
        accuracy: Option<f64>,
        /// The address, when the server resolved one.
        formatted_address: Option<String>,
    },
    /// `TX_INHIBITED`.
    TxInhibited {
        /// The radio.
        radio: String,
        /// The operator's reason, if they gave one.
        reason: Option<String>,
    },
    /// `ALARM_OFFLINE`.
    AlarmOffline {
        /// Why the gateway left Zello on purpose.
        reason: String,
    },
    /// `CHANNEL_ONLINE`.
    ChannelOnline {
        /// The channel.
        channel: String,
        /// Users online on it.
        users_online: u32,
        /// What it supports.
        features: ChannelFeatures,
    },
    /// `CHANNEL_OFFLINE`.
    Channel {
        /// The channel.
        channel: String,
    },
    /// `USERS_ONLINE`.
    UsersOnline {
        /// The channel.
        channel: String,
        /// Users online on it now.
        users_online: u32,
    },
    /// `TEXT`.
    Text {
        /// The channel.
        channel: String,
        /// The sender.
        from: String,
        /// What they wrote.
        text: String,
    },
    /// `CARRIER_UP`, `CARRIER_DOWN`, `PTT_ON`, `DEVICE_BACK`, `PTT_INTERFACE_BACK`,
    /// `CARRIER_DETECT_BACK`, `TX_ALLOWED`, `CARRIER_STUCK`, `CARRIER_FLAPPING`.
    Radio {
        /// The radio.
        radio: String,
    },
    /// `DEVICE_LOST`, `PTT_INTERFACE_FAILED`, `CARRIER_DETECT_FAILED`.
    RadioFault {
        /// The radio.
        radio: String,
        /// What failed, in words.
        error: String,
    },
    /// `TIME_OUT`.
    TimeOut {
        /// The radio.
        radio: String,
        /// The message the time-out timer cut.
        stream_id: u32,
    },
    /// `PTT_OFF`.
    PttOff {
        /// The radio.
        radio: String,
        /// How long the transmitter was keyed (0 when the gateway did not see it keyed).
        keyed_ms: u64,
    },
    /// `MESSAGE_START`.
    MessageStart(MessageStart),
    /// `MESSAGE_STOP`.
    MessageStop(MessageStop),
    /// `LEVEL`.
    Level(Level),
}

/// One API event, before serialization: its type, the rooms it goes to, and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiEvent {
    /// Its name.
    pub event: EventType,
    /// Where it goes: one room, or a radio's and its channel's for `MESSAGE_START`/`STOP`.
    pub rooms: Vec<Room>,
    /// The sequence number of the gateway event it comes from (shared by every API event
    /// that one gives).
    pub seq: u64,
    /// When it happened (unix ms).
    pub at_ms: u64,
    /// Its data.
    pub data: EventData,
}

/// One event serialized for one room: what every subscriber of the room is sent, shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The room.
    pub room: Room,
    /// The event's sequence number.
    pub seq: u64,
    /// The event's name.
    pub event: EventType,
    /// `{"type":..,"room":..,"seq":..,"ts":..,"data":..}`.
    pub json: Bytes,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event: EventType,
    room: &'a Room,
    seq: u64,
    ts: String,
    data: &'a EventData,
}

/// `at_ms` (unix ms) in RFC 3339, UTC, to the millisecond: `2026-01-15T12:01:00.250Z`.
/// Times past jiff's range (the year 9999) read as its last instant.
pub fn rfc3339(at_ms: u64) -> String {
    let ts = i64::try_from(at_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    format!("{ts:.3}")
}

impl ApiEvent {
    /// The event serialized once for each of its rooms.
    pub fn encode(&self) -> Result<Vec<Encoded>, EncodeError> {
        let ts = rfc3339(self.at_ms);
        self.rooms
            .iter()
            .map(|room| {
                let json = to_bytes(&Envelope {
                    event: self.event,
                    room,
                    seq: self.seq,
                    ts: ts.clone(),
                    data: &self.data,
                })?;
                Ok(Encoded {
                    room: room.clone(),
                    seq: self.seq,
                    event: self.event,
                    json,
                })
            })
            .collect()
    }

    /// A `LEVEL` of `radio` at `at_ms`. Levels are not gateway events: they carry `seq`, the
    /// state's sequence number when measured, and never advance it.
    pub fn level(level: Level, seq: u64, at_ms: u64) -> ApiEvent {
        ApiEvent {
            event: EventType::Level,
            rooms: vec![Room::Levels(level.radio.clone())],
            seq,
            at_ms,
            data: EventData::Level(level),
        }
    }
}
