//! The event catalogue: which API events each [`GatewayEvent`] gives, in which rooms, with
//! which `data` (see [`event`](super::event) for the types).

use super::Room;
use super::event::{
    ApiEvent, Codec, Direction, EventData, EventType, MessageStart, MessageStop, Nothing,
};
use crate::state::{DisconnectReason, GatewayEvent, GatewayState, Stamped};
use std::collections::HashMap;

/// What the catalogue remembers of a radio: what a single gateway event does not carry.
#[derive(Debug, Clone, Default)]
struct RadioMemory {
    channel: Option<String>,
    codec: Option<Codec>,
    /// When the transmitter was keyed (unix ms), while keyed.
    keyed_at_ms: Option<u64>,
    /// The codec of each message from the channel under way, until it ends.
    incoming: HashMap<u32, Codec>,
}

/// What the catalogue remembers of a channel, to tell a change from a repeat.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelMemory {
    online: bool,
    users_online: u32,
}

/// Turns the gateway's events into API events. Pure, but with a memory: for `PTT_OFF`'s
/// `keyed_ms`, each radio's channel and codec, the codec of the messages from the channel
/// under way (for their `MESSAGE_STOP`), and
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

    /// A catalogue starting from `state` (as [`Catalogue::new`]) that keeps the codecs set
    /// on this one: what a reader that fell behind starts again from.
    pub fn rebased(&self, state: &GatewayState) -> Self {
        let mut fresh = Catalogue::new(state);
        for (name, memory) in &self.radios {
            if let Some(codec) = memory.codec {
                fresh.radios.entry(name.clone()).or_default().codec = Some(codec);
            }
        }
        fresh
    }

    /// Sets the codec of `radio`'s messages to the channel (from its configuration), which
    /// gateway events do not carry.
    pub fn with_codec(mut self, radio: &str, codec: Codec) -> Self {
        self.radios.entry(radio.to_string()).or_default().codec = Some(codec);
        self
    }

    /// The API events `stamped` gives, in order (a kick gives `KICKED` then
    /// `DISCONNECTED`); none for an event at or before the
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
            G::Disconnected { reason, detail } => {
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
                let data = EventData::Disconnected {
                    reason: *reason,
                    detail: detail.clone(),
                };
                if *reason == DisconnectReason::Kicked {
                    emit(T::Kicked, vec![Room::Gateway], data.clone());
                }
                emit(T::Disconnected, vec![Room::Gateway], data);
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
            G::Location {
                channel,
                from,
                latitude,
                longitude,
                accuracy,
                formatted_address,
            } => emit(
                T::Location,
                vec![Room::Channel(channel.clone())],
                EventData::Location {
                    channel: channel.clone(),
                    from: from.clone(),
                    latitude: *latitude,
                    longitude: *longitude,
                    accuracy: *accuracy,
                    formatted_address: formatted_address.clone(),
                },
            ),
            G::TxInhibited { radio, reason } => emit(
                T::TxInhibited,
                radio_room(radio),
                EventData::TxInhibited {
                    radio: radio.clone(),
                    reason: reason.clone(),
                },
            ),
            G::TxAllowed { radio } => emit(T::TxAllowed, radio_room(radio), plain(radio)),
            G::CarrierStuck { radio } => emit(T::CarrierStuck, radio_room(radio), plain(radio)),
            G::CarrierFlapping { radio } => {
                emit(T::CarrierFlapping, radio_room(radio), plain(radio))
            }
            G::CarrierUp { radio } => emit(T::CarrierUp, radio_room(radio), plain(radio)),
            G::CarrierDown { radio } => emit(T::CarrierDown, radio_room(radio), plain(radio)),
            G::StreamStarted { radio, stream_id } => {
                let codec = self.own_codec(radio);
                let start = self.start(radio, Direction::ToChannel, Some(*stream_id), None, codec);
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
                    start: self.start(
                        radio,
                        Direction::ToChannel,
                        *stream_id,
                        None,
                        self.own_codec(radio),
                    ),
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
                codec,
            } => {
                let codec = Codec::from(*codec);
                self.radios
                    .entry(radio.clone())
                    .or_default()
                    .incoming
                    .insert(*stream_id, codec);
                let start = self.start(
                    radio,
                    Direction::FromChannel,
                    Some(*stream_id),
                    Some(from.clone()),
                    Some(codec),
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
                outcome,
                packets,
                concealed,
                dropped,
                duration_ms,
                peak_dbfs,
                rms_dbfs,
                ..
            } => {
                let codec = self
                    .radios
                    .get_mut(radio)
                    .and_then(|m| m.incoming.remove(stream_id));
                let stop = MessageStop {
                    start: self.start(
                        radio,
                        Direction::FromChannel,
                        Some(*stream_id),
                        Some(from.clone()),
                        codec,
                    ),
                    packets: *packets,
                    concealed: *concealed,
                    dropped: *dropped,
                    duration_ms: *duration_ms,
                    peak_dbfs: *peak_dbfs,
                    rms_dbfs: *rms_dbfs,
                    outcome: (*outcome).into(),
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

    /// The codec of `radio`'s messages to the channel, from its configuration.
    fn own_codec(&self, radio: &str) -> Option<Codec> {
        self.radios.get(radio).and_then(|m| m.codec)
    }

    /// A message's common fields on `radio`.
    fn start(
        &self,
        radio: &str,
        direction: Direction,
        stream_id: Option<u32>,
        from: Option<String>,
        codec: Option<Codec>,
    ) -> MessageStart {
        let memory = self.radios.get(radio);
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
