//! The gateway's state as its events tell it, and [`apply`], the one place it changes.

use super::event::{ChannelFeatures, DisconnectReason, GatewayEvent, MessageOutcome};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// How many finished messages (both ways) each radio's history keeps.
pub const HISTORY_LEN: usize = 50;
/// Messages from the channel whose arrival time is kept until they end (more are queued
/// only under a flood; their start then reads as their end minus their length).
const ARRIVALS_KEPT: usize = 16;

/// The whole gateway: the Zello link, each channel and each radio, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GatewayState {
    /// The sequence number of the last event applied (0: none yet). Events on the event
    /// stream carry theirs, so a reader of this state knows which events it already holds.
    pub seq: u64,
    /// When the last event was applied (unix ms; 0: never).
    pub updated_ms: u64,
    pub gateway: Gateway,
    pub channels: BTreeMap<String, ChannelState>,
    pub radios: BTreeMap<String, RadioState>,
}

/// The gateway as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gateway {
    /// Every radio started or waits for its hardware, and the Zello session runs.
    pub started: bool,
    pub link: Link,
    /// Since when the link is as it is (unix ms; 0: since the start).
    pub link_since_ms: u64,
    /// Why the gateway left Zello on purpose (Zello Alarms), while it stays away.
    pub held_offline: Option<String>,
}

/// Where the Zello session stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Link {
    #[default]
    Connecting,
    /// The server could not be reached: why, and when the next try is.
    Unreachable {
        error: String,
        retry_in_ms: u64,
    },
    LoggedOn,
    Refused {
        code: String,
    },
    Disconnected {
        reason: DisconnectReason,
        detail: String,
    },
}

/// A channel's last reported state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelState {
    pub online: bool,
    pub users_online: u32,
    /// What it supports, once the server has said.
    pub features: Option<ChannelFeatures>,
}

/// One radio.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RadioState {
    /// Its channel, when known from the configuration.
    pub channel: Option<String>,
    pub carrier: bool,
    pub ptt: bool,
    /// The radio hears a carrier (a message to the channel, once it has a stream id).
    pub receiving: Option<Activity>,
    /// The transmitter is keyed (a message from the channel, when one is playing).
    pub transmitting: Option<Activity>,
    /// The last message from the channel announced and not played yet.
    pub incoming: Option<Activity>,
    pub health: Health,
    /// The last message sent to the channel.
    pub last_sent: Option<Message>,
    /// The last message from the channel played on the air.
    pub last_played: Option<Message>,
    pub counters: Counters,
    /// The operator inhibited transmitting: the radio never keys while this is set.
    pub tx_inhibited: Option<Inhibit>,
    /// The carrier stayed up past `rx_max_s` and is ignored until it drops.
    pub carrier_stuck: bool,
    /// The last finished messages both ways, oldest first ([`RadioState::history`]); not
    /// in the serialized state (the API serves it on its own), and shared between copies
    /// of the state until one changes.
    #[serde(skip)]
    history: Arc<VecDeque<Message>>,
    /// When each message from the channel still under way arrived (stream id, unix ms).
    #[serde(skip)]
    arrivals: VecDeque<(u32, u64)>,
}

/// Transmitting inhibited by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inhibit {
    /// Their reason, if they gave one.
    pub reason: Option<String>,
    /// Since when (unix ms).
    pub since_ms: u64,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Heard by the radio, sent to the channel.
    #[default]
    ToChannel,
    /// From the channel, transmitted by the radio.
    FromChannel,
}

impl RadioState {
    /// The last finished messages both ways (at most [`HISTORY_LEN`]), oldest first.
    pub fn history(&self) -> &VecDeque<Message> {
        &self.history
    }

    fn remember(&mut self, message: Message) {
        let history = Arc::make_mut(&mut self.history);
        if history.len() >= HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(message);
    }
}

/// Something under way on a radio.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    pub stream_id: Option<u32>,
    /// Who sends (a message from the channel) or where it goes (the radio's channel).
    pub peer: Option<String>,
    /// Since when (unix ms).
    pub since_ms: u64,
}

/// The health of a radio's parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    /// The sound device.
    pub audio: PartHealth,
    /// The PTT interface.
    pub ptt: PartHealth,
    /// The carrier detector.
    pub carrier: PartHealth,
    /// Its hardware did not open at start (why); it starts once it does.
    pub waiting_for_hardware: Option<String>,
}

/// One part's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartHealth {
    pub failing: bool,
    /// The last error, kept after it recovered.
    pub last_error: Option<String>,
    /// When it last failed or recovered (unix ms; `None`: never).
    pub changed_ms: Option<u64>,
}

impl PartHealth {
    /// The error while failing.
    pub fn fault(&self) -> Option<&str> {
        self.failing
            .then_some(self.last_error.as_deref().unwrap_or_default())
    }

    fn set(&mut self, error: Option<&str>, at_ms: u64) {
        if self.failing != error.is_some() {
            self.changed_ms = Some(at_ms);
        }
        self.failing = error.is_some();
        if let Some(e) = error {
            self.last_error = Some(e.to_string());
        }
    }
}

/// A message that ended, with its figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Message {
    pub direction: Direction,
    pub stream_id: Option<u32>,
    /// Who sent it (from the channel) or where it went (to the channel).
    pub peer: Option<String>,
    /// The radio's channel.
    pub channel: Option<String>,
    /// When it started: carrier up (to the channel) or its arrival (from it) (unix ms).
    pub started_ms: u64,
    /// When it ended (unix ms).
    pub ended_ms: u64,
    pub packets: u64,
    pub concealed: u64,
    pub dropped: u64,
    pub duration_ms: u64,
    /// Levels of the message's audio: as sent (to the channel) or as played to the
    /// transmitter (from the channel).
    pub peak_dbfs: Option<f32>,
    pub rms_dbfs: Option<f32>,
    pub outcome: Option<MessageOutcome>,
}

/// Totals since the gateway started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Times the transmitter was keyed.
    pub key_ups: u64,
    /// Carriers too short to be a message.
    pub kerchunks: u64,
    /// Messages the time-out timer cut.
    pub time_outs: u64,
    /// Time the transmitter was keyed (ms).
    pub transmitted_ms: u64,
    /// Audio sent to the channel (ms).
    pub received_ms: u64,
    pub messages_sent: u64,
    /// Messages from the channel that went on the air, in full or cut short.
    pub messages_played: u64,
    /// Messages from the channel left out before any of it was played: the frequency was
    /// busy, they waited too long, or transmitting was inhibited.
    pub messages_not_played: u64,
    /// Messages from the channel cut or left out because transmitting was inhibited.
    pub messages_inhibited: u64,
    /// Packets sent to the channel.
    pub packets_sent: u64,
    /// Packets from the channel played on the air.
    pub packets_played: u64,
    /// Lost packets from the channel filled in by loss concealment.
    pub packets_concealed: u64,
    /// Packets left out: late, duplicate or flooded ones from the channel, and audio for
    /// the channel left out while it was away too long.
    pub packets_dropped: u64,
}

impl GatewayState {
    /// The state before the gateway starts, with these radios (name, channel) and their
    /// channels listed.
    pub fn new(radios: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut state = GatewayState::default();
        for (radio, channel) in radios {
            state.channels.entry(channel.clone()).or_default();
            state.radios.entry(radio).or_default().channel = Some(channel);
        }
        state
    }

    /// A radio by name.
    pub fn radio(&self, name: &str) -> Option<&RadioState> {
        self.radios.get(name)
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<&ChannelState> {
        self.channels.get(name)
    }

    /// Takes in one event at `at_ms` (unix ms); see [`apply`].
    pub fn apply(&mut self, event: &GatewayEvent, at_ms: u64) {
        apply(self, event, at_ms)
    }
}

fn set_link(g: &mut Gateway, link: Link, at_ms: u64) {
    if g.link != link {
        g.link = link;
        g.link_since_ms = at_ms;
    }
}

/// Takes in one event that happened at `at_ms` (unix ms): the next sequence number, and
/// whatever the event changes. A radio or channel not known yet is added.
pub fn apply(state: &mut GatewayState, event: &GatewayEvent, at_ms: u64) {
    state.seq += 1;
    state.updated_ms = at_ms;
    let g = &mut state.gateway;
    match event {
        GatewayEvent::Started => g.started = true,
        GatewayEvent::LoggedOn => set_link(g, Link::LoggedOn, at_ms),
        GatewayEvent::LogonRefused(code) => {
            set_link(g, Link::Refused { code: code.clone() }, at_ms)
        }
        GatewayEvent::Disconnected { reason, detail } => {
            set_link(
                g,
                Link::Disconnected {
                    reason: *reason,
                    detail: detail.clone(),
                },
                at_ms,
            );
            for c in state.channels.values_mut() {
                c.online = false;
            }
        }
        GatewayEvent::ConnectFailed { error, retry_in } => set_link(
            g,
            Link::Unreachable {
                error: error.clone(),
                retry_in_ms: retry_in.as_millis().try_into().unwrap_or(u64::MAX),
            },
            at_ms,
        ),
        GatewayEvent::HeldOffline { reason } => g.held_offline = reason.clone(),
        GatewayEvent::ChannelStatus {
            channel,
            online,
            users_online,
            features,
        } => {
            let c = state.channels.entry(channel.clone()).or_default();
            c.online = *online;
            c.users_online = *users_online;
            c.features = Some(*features);
        }
        GatewayEvent::Text { .. } | GatewayEvent::Location { .. } => {}
        _ => {
            if let Some(name) = event.radio() {
                let r = state.radios.entry(name.to_string()).or_default();
                apply_radio(r, event, at_ms);
            }
        }
    }
}

fn apply_radio(r: &mut RadioState, event: &GatewayEvent, at_ms: u64) {
    match event {
        GatewayEvent::CarrierUp { .. } => {
            r.carrier = true;
            if r.receiving.is_none() {
                r.receiving = Some(Activity {
                    stream_id: None,
                    peer: r.channel.clone(),
                    since_ms: at_ms,
                });
            }
        }
        GatewayEvent::CarrierDown { .. } => {
            r.carrier = false;
            r.carrier_stuck = false;
            r.receiving = None;
        }
        GatewayEvent::Kerchunk { .. } => r.counters.kerchunks += 1,
        GatewayEvent::CarrierStuck { .. } => r.carrier_stuck = true,
        GatewayEvent::CarrierFlapping { .. } => {}
        GatewayEvent::TxInhibited { reason, .. } => {
            // A repeat with a new reason keeps the first instant.
            let since_ms = r.tx_inhibited.as_ref().map_or(at_ms, |i| i.since_ms);
            r.tx_inhibited = Some(Inhibit {
                reason: reason.clone(),
                since_ms,
            });
        }
        GatewayEvent::TxAllowed { .. } => r.tx_inhibited = None,
        GatewayEvent::StreamStarted { stream_id, .. } => {
            if let Some(a) = &mut r.receiving {
                a.stream_id = Some(*stream_id);
            }
        }
        GatewayEvent::Sent {
            stream_id,
            packets,
            dropped,
            duration_ms,
            peak_dbfs,
            rms_dbfs,
            outcome,
            ..
        } => {
            let message = Message {
                direction: Direction::ToChannel,
                stream_id: *stream_id,
                peer: r.channel.clone(),
                channel: r.channel.clone(),
                started_ms: at_ms.saturating_sub(*duration_ms),
                ended_ms: at_ms,
                packets: *packets,
                concealed: 0,
                dropped: *dropped,
                duration_ms: *duration_ms,
                peak_dbfs: Some(*peak_dbfs),
                rms_dbfs: Some(*rms_dbfs),
                outcome: Some(*outcome),
            };
            r.remember(message.clone());
            r.last_sent = Some(message);
            let c = &mut r.counters;
            c.messages_sent += 1;
            c.packets_sent += packets;
            c.packets_dropped += dropped;
            c.received_ms += duration_ms;
        }
        GatewayEvent::Incoming {
            stream_id, from, ..
        } => {
            r.incoming = Some(Activity {
                stream_id: Some(*stream_id),
                peer: Some(from.clone()),
                since_ms: at_ms,
            });
            if r.arrivals.len() >= ARRIVALS_KEPT {
                r.arrivals.pop_front();
            }
            r.arrivals.push_back((*stream_id, at_ms));
        }
        GatewayEvent::PttOn { .. } => {
            if !r.ptt {
                r.ptt = true;
                r.counters.key_ups += 1;
                r.transmitting = Some(Activity {
                    since_ms: at_ms,
                    ..r.incoming.clone().unwrap_or_default()
                });
            }
        }
        GatewayEvent::Playing { stream_id, .. } => {
            let peer = r
                .incoming
                .as_ref()
                .filter(|i| i.stream_id == Some(*stream_id))
                .and_then(|i| i.peer.clone());
            if let Some(t) = &mut r.transmitting {
                t.stream_id = Some(*stream_id);
                t.peer = peer;
            }
        }
        GatewayEvent::Played {
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
            let arrived = r
                .arrivals
                .iter()
                .position(|(id, _)| id == stream_id)
                .and_then(|i| r.arrivals.remove(i))
                .map(|(_, at)| at);
            let message = Message {
                direction: Direction::FromChannel,
                stream_id: Some(*stream_id),
                peer: Some(from.clone()),
                channel: r.channel.clone(),
                started_ms: arrived.unwrap_or(at_ms.saturating_sub(*duration_ms)),
                ended_ms: at_ms,
                packets: *packets,
                concealed: *concealed,
                dropped: *dropped,
                duration_ms: *duration_ms,
                peak_dbfs: *peak_dbfs,
                rms_dbfs: *rms_dbfs,
                outcome: Some(*outcome),
            };
            r.remember(message.clone());
            if r.incoming.as_ref().and_then(|i| i.stream_id) == Some(*stream_id) {
                r.incoming = None;
            }
            let c = &mut r.counters;
            // Cut on the air (packets handed to the transmitter) counts as played.
            if outcome.went_on_air() || *packets > 0 {
                r.last_played = Some(message);
                c.messages_played += 1;
            } else {
                c.messages_not_played += 1;
            }
            if *outcome == MessageOutcome::Inhibited {
                c.messages_inhibited += 1;
            }
            c.packets_played += packets;
            c.packets_concealed += concealed;
            c.packets_dropped += dropped;
        }
        GatewayEvent::PttOff { .. } => {
            if r.ptt {
                let since = r.transmitting.as_ref().map_or(at_ms, |t| t.since_ms);
                r.counters.transmitted_ms += at_ms.saturating_sub(since);
            }
            r.ptt = false;
            r.transmitting = None;
        }
        GatewayEvent::TimeOut { .. } => r.counters.time_outs += 1,
        GatewayEvent::DeviceLost { error, .. } => r.health.audio.set(Some(error), at_ms),
        GatewayEvent::DeviceBack { .. } => r.health.audio.set(None, at_ms),
        GatewayEvent::CarrierFault { error, .. } => r.health.carrier.set(error.as_deref(), at_ms),
        GatewayEvent::PttFault { error, .. } => r.health.ptt.set(error.as_deref(), at_ms),
        GatewayEvent::HardwareWaiting { error, .. } => {
            r.health.waiting_for_hardware = error.clone()
        }
        // Not about one radio: handled by `apply`.
        GatewayEvent::Started
        | GatewayEvent::LoggedOn
        | GatewayEvent::LogonRefused(_)
        | GatewayEvent::Disconnected { .. }
        | GatewayEvent::ConnectFailed { .. }
        | GatewayEvent::ChannelStatus { .. }
        | GatewayEvent::HeldOffline { .. }
        | GatewayEvent::Text { .. }
        | GatewayEvent::Location { .. } => {}
    }
}
