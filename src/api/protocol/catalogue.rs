//! The event catalogue: which API events each [`GatewayEvent`] gives, in which rooms, with
//! which `data`; and the event envelope `{type, room, seq, ts, data}`, serialized once per
//! room.
//!
//! Event names match the journald `EVENT=` values (upper-cased), so log and API agree. Every
//! radio event's data has `radio`; fields are snake_case and fixed.

use super::{EncodeError, Room, RoomKind, to_bytes};
use crate::config::CodecConfig;
use crate::state::{ChannelFeatures, GatewayEvent, GatewayState, MessageOutcome, Stamped};
use bytes::Bytes;
use serde::{Serialize, Serializer};
use std::collections::HashMap;

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

/// How a message ended, as `MESSAGE_STOP`'s `outcome` (and the metrics' label) says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

impl From<MessageOutcome> for Outcome {
    fn from(o: MessageOutcome) -> Self {
        match o {
            MessageOutcome::Completed => Outcome::Completed,
            MessageOutcome::Interrupted => Outcome::Interrupted,
            MessageOutcome::Refused | MessageOutcome::ChannelNotReady => Outcome::Refused,
            MessageOutcome::Dropped | MessageOutcome::Abandoned => Outcome::Dropped,
            MessageOutcome::TimedOut => Outcome::TimedOut,
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
    /// The audio's peak level; none when not measured (messages from the channel).
    pub peak_dbfs: Option<f32>,
    /// The audio's RMS level; none when not measured (messages from the channel).
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
    /// `DISCONNECTED`.
    Disconnected {
        /// Why the connection closed.
        reason: String,
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
    /// `CARRIER_DETECT_BACK`.
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

/// What the catalogue remembers of a radio: what a single gateway event does not carry.
#[derive(Debug, Clone, Default)]
struct RadioMemory {
    channel: Option<String>,
    codec: Option<Codec>,
    /// When the transmitter was keyed (unix ms), while keyed.
    keyed_at_ms: Option<u64>,
    /// The message from the channel the time-out timer cut, until it is played out.
    timed_out: Option<u32>,
}

/// What the catalogue remembers of a channel, to tell a change from a repeat.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelMemory {
    online: bool,
    users_online: u32,
}

/// Turns the gateway's events into API events. Pure, but with a memory: for `PTT_OFF`'s
/// `keyed_ms`, a message's outcome after a `TIME_OUT`, each radio's channel and codec, and
/// whether a channel status is a change (`CHANNEL_ONLINE`, `CHANNEL_OFFLINE`) or a new user
/// count (`USERS_ONLINE`).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    seq: u64,
    radios: HashMap<String, RadioMemory>,
    channels: HashMap<String, ChannelMemory>,
}

impl Catalogue {
    /// A catalogue starting from `state`: events up to its `seq` are already in it and give
    /// nothing.
    pub fn new(state: &GatewayState) -> Self {
        let radios = state
            .radios
            .iter()
            .map(|(name, r)| {
                let memory = RadioMemory {
                    channel: r.channel.clone(),
                    keyed_at_ms: r
                        .ptt
                        .then(|| r.transmitting.as_ref().map(|t| t.since_ms))
                        .flatten(),
                    ..RadioMemory::default()
                };
                (name.clone(), memory)
            })
            .collect();
        let channels = state
            .channels
            .iter()
            .map(|(name, c)| {
                let memory = ChannelMemory {
                    online: c.online,
                    users_online: c.users_online,
                };
                (name.clone(), memory)
            })
            .collect();
        Catalogue {
            seq: state.seq,
            radios,
            channels,
        }
    }

    /// Sets the codec of `radio`'s messages to the channel (from its configuration), which
    /// gateway events do not carry.
    pub fn with_codec(mut self, radio: &str, codec: Codec) -> Self {
        self.radios.entry(radio.to_string()).or_default().codec = Some(codec);
        self
    }

    /// The API events `stamped` gives, in order; none for an event at or before the
    /// sequence number already taken in, or one the API does not publish (`Started`,
    /// `ConnectFailed`, `Kerchunk`, `Playing`, `HardwareWaiting`).
    pub fn translate(&mut self, stamped: &Stamped) -> Vec<ApiEvent> {
        if stamped.seq <= self.seq {
            return Vec::new();
        }
        self.seq = stamped.seq;
        let mut out = Vec::new();
        let mut emit = |event: EventType, rooms: Vec<Room>, data: EventData| {
            out.push(ApiEvent {
                event,
                rooms,
                seq: stamped.seq,
                at_ms: stamped.at_ms,
                data,
            })
        };
        let radio_room = |radio: &str| vec![Room::Radio(radio.to_string())];
        let plain = |radio: &str| EventData::Radio {
            radio: radio.to_string(),
        };
        let fault = |radio: &str, error: &str| EventData::RadioFault {
            radio: radio.to_string(),
            error: error.to_string(),
        };
        use EventType as T;
        use GatewayEvent as G;
        match &stamped.event {
            G::Started | G::ConnectFailed { .. } | G::HardwareWaiting { .. } => {}
            G::Kerchunk { .. } | G::Playing { .. } => {}
            G::LoggedOn => emit(
                T::LoggedOn,
                vec![Room::Gateway],
                EventData::Nothing(Nothing {}),
            ),
            G::LogonRefused(code) => emit(
                T::LogonRefused,
                vec![Room::Gateway],
                EventData::Refused {
                    error: code.clone(),
                },
            ),
            G::Disconnected(reason) => {
                // The state takes every channel offline with the connection; so do the
                // channels' rooms, for those the session did not report offline itself.
                let mut gone: Vec<&String> = Vec::new();
                for (name, c) in self.channels.iter_mut() {
                    if c.online {
                        c.online = false;
                        gone.push(name);
                    }
                }
                gone.sort();
                for name in gone {
                    emit(
                        T::ChannelOffline,
                        vec![Room::Channel(name.clone())],
                        EventData::Channel {
                            channel: name.clone(),
                        },
                    );
                }
                emit(
                    T::Disconnected,
                    vec![Room::Gateway],
                    EventData::Disconnected {
                        reason: reason.clone(),
                    },
                );
            }
            G::HeldOffline { reason: Some(r) } => emit(
                T::AlarmOffline,
                vec![Room::Gateway],
                EventData::AlarmOffline { reason: r.clone() },
            ),
            G::HeldOffline { reason: None } => emit(
                T::AlarmOnline,
                vec![Room::Gateway],
                EventData::Nothing(Nothing {}),
            ),
            G::ChannelStatus {
                channel,
                online,
                users_online,
                features,
            } => {
                let memory = self.channels.entry(channel.clone()).or_default();
                let was = *memory;
                *memory = ChannelMemory {
                    online: *online,
                    users_online: *users_online,
                };
                let room = vec![Room::Channel(channel.clone())];
                if *online && !was.online {
                    emit(
                        T::ChannelOnline,
                        room,
                        EventData::ChannelOnline {
                            channel: channel.clone(),
                            users_online: *users_online,
                            features: *features,
                        },
                    );
                } else if *online && was.users_online != *users_online {
                    emit(
                        T::UsersOnline,
                        room,
                        EventData::UsersOnline {
                            channel: channel.clone(),
                            users_online: *users_online,
                        },
                    );
                } else if !*online && was.online {
                    emit(
                        T::ChannelOffline,
                        room,
                        EventData::Channel {
                            channel: channel.clone(),
                        },
                    );
                }
            }
            G::Text {
                channel,
                from,
                text,
            } => emit(
                T::Text,
                vec![Room::Channel(channel.clone())],
                EventData::Text {
                    channel: channel.clone(),
                    from: from.clone(),
                    text: text.clone(),
                },
            ),
            G::CarrierUp { radio } => emit(T::CarrierUp, radio_room(radio), plain(radio)),
            G::CarrierDown { radio } => emit(T::CarrierDown, radio_room(radio), plain(radio)),
            G::StreamStarted { radio, stream_id } => {
                let start = self.start(radio, Direction::ToChannel, Some(*stream_id), None);
                emit(
                    T::MessageStart,
                    self.message_rooms(radio),
                    EventData::MessageStart(start),
                );
            }
            G::Sent {
                radio,
                stream_id,
                packets,
                dropped,
                duration_ms,
                peak_dbfs,
                rms_dbfs,
                outcome,
            } => {
                let stop = MessageStop {
                    start: self.start(radio, Direction::ToChannel, *stream_id, None),
                    packets: *packets,
                    concealed: 0,
                    dropped: *dropped,
                    duration_ms: *duration_ms,
                    peak_dbfs: Some(*peak_dbfs),
                    rms_dbfs: Some(*rms_dbfs),
                    outcome: (*outcome).into(),
                };
                emit(
                    T::MessageStop,
                    self.message_rooms(radio),
                    EventData::MessageStop(stop),
                );
            }
            G::Incoming {
                radio,
                stream_id,
                from,
            } => {
                let start = self.start(
                    radio,
                    Direction::FromChannel,
                    Some(*stream_id),
                    Some(from.clone()),
                );
                emit(
                    T::MessageStart,
                    self.message_rooms(radio),
                    EventData::MessageStart(start),
                );
            }
            G::Played {
                radio,
                stream_id,
                from,
                packets,
                concealed,
                dropped,
                duration_ms,
                unkeyed_ms,
            } => {
                let memory = self.radios.entry(radio.clone()).or_default();
                let outcome = if memory.timed_out == Some(*stream_id) {
                    Outcome::TimedOut
                } else if *unkeyed_ms > 0 {
                    Outcome::Interrupted
                } else {
                    Outcome::Completed
                };
                memory.timed_out = None;
                let stop = MessageStop {
                    start: self.start(
                        radio,
                        Direction::FromChannel,
                        Some(*stream_id),
                        Some(from.clone()),
                    ),
                    packets: *packets,
                    concealed: *concealed,
                    dropped: *dropped,
                    duration_ms: *duration_ms,
                    peak_dbfs: None,
                    rms_dbfs: None,
                    outcome,
                };
                emit(
                    T::MessageStop,
                    self.message_rooms(radio),
                    EventData::MessageStop(stop),
                );
            }
            G::PttOn { radio } => {
                let memory = self.radios.entry(radio.clone()).or_default();
                memory.keyed_at_ms.get_or_insert(stamped.at_ms);
                emit(T::PttOn, radio_room(radio), plain(radio));
            }
            G::PttOff { radio } => {
                let memory = self.radios.entry(radio.clone()).or_default();
                let keyed_ms = memory
                    .keyed_at_ms
                    .take()
                    .map_or(0, |since| stamped.at_ms.saturating_sub(since));
                emit(
                    T::PttOff,
                    radio_room(radio),
                    EventData::PttOff {
                        radio: radio.clone(),
                        keyed_ms,
                    },
                );
            }
            G::TimeOut { radio, stream_id } => {
                self.radios.entry(radio.clone()).or_default().timed_out = Some(*stream_id);
                emit(
                    T::TimeOut,
                    radio_room(radio),
                    EventData::TimeOut {
                        radio: radio.clone(),
                        stream_id: *stream_id,
                    },
                );
            }
            G::DeviceLost { radio, error } => {
                emit(T::DeviceLost, radio_room(radio), fault(radio, error))
            }
            G::DeviceBack { radio } => emit(T::DeviceBack, radio_room(radio), plain(radio)),
            G::CarrierFault {
                radio,
                error: Some(e),
            } => emit(T::CarrierDetectFailed, radio_room(radio), fault(radio, e)),
            G::CarrierFault { radio, error: None } => {
                emit(T::CarrierDetectBack, radio_room(radio), plain(radio))
            }
            G::PttFault {
                radio,
                error: Some(e),
            } => emit(T::PttInterfaceFailed, radio_room(radio), fault(radio, e)),
            G::PttFault { radio, error: None } => {
                emit(T::PttInterfaceBack, radio_room(radio), plain(radio))
            }
        }
        out
    }

    /// A message's common fields on `radio`.
    fn start(
        &self,
        radio: &str,
        direction: Direction,
        stream_id: Option<u32>,
        from: Option<String>,
    ) -> MessageStart {
        let memory = self.radios.get(radio);
        // The codec of messages from the channel is not in the gateway's events.
        let codec = memory
            .and_then(|m| m.codec)
            .filter(|_| direction == Direction::ToChannel);
        MessageStart {
            radio: radio.to_string(),
            channel: memory.and_then(|m| m.channel.clone()),
            direction,
            stream_id,
            from,
            sample_rate_hz: codec.map(|c| c.sample_rate_hz),
            frame_ms: codec.map(|c| c.frame_ms),
            frames_per_packet: codec.map(|c| c.frames_per_packet),
        }
    }

    /// A message's rooms: the radio's, and its channel's when known.
    fn message_rooms(&self, radio: &str) -> Vec<Room> {
        let mut rooms = vec![Room::Radio(radio.to_string())];
        if let Some(channel) = self.radios.get(radio).and_then(|m| m.channel.clone()) {
            rooms.push(Room::Channel(channel));
        }
        rooms
    }
}
