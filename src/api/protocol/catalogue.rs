//! The event catalogue: which API events each [`GatewayEvent`] gives, in which rooms, with
//! which `data` (see [`event`](super::event) for the types).

use super::Room;
use super::event::{
    ApiEvent, Codec, Direction, EventData, EventType, MessageStart, MessageStop, Nothing, Outcome,
};
use crate::state::{GatewayEvent, GatewayState, Stamped};
use std::collections::HashMap;

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
                peak_dbfs,
                rms_dbfs,
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
                    peak_dbfs: Some(*peak_dbfs),
                    rms_dbfs: Some(*rms_dbfs),
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
