//! What the gateway did: one [`GatewayEvent`] per change, for the state, timelines, tests
//! and event streams.

use serde::Serialize;
use std::time::Duration;

/// How a message ended, in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    /// Sent or played in full.
    Completed,
    /// Cut short: the server stopped it, or the transmitter was found unkeyed during it.
    Interrupted,
    /// The server refused to start it.
    Refused,
    /// The connection dropped during it.
    Dropped,
    /// No answer in time from the server, or the time-out timer cut it.
    TimedOut,
    /// Ended before the server gave it a stream id: nothing was sent.
    Abandoned,
    /// The channel was not online when it started.
    ChannelNotReady,
    /// Not played, or cut: the operator inhibited the radio's transmitting.
    Inhibited,
    /// Not played: the radio was receiving and the busy policy drops such messages.
    Busy,
    /// Not played: it waited for a busy frequency longer than `queue_max_age_s`.
    TooOld,
}

impl MessageOutcome {
    /// Whether the message reached the air at all (in full or cut short), rather than being
    /// left out before keying.
    pub fn went_on_air(self) -> bool {
        !matches!(
            self,
            MessageOutcome::Inhibited | MessageOutcome::Busy | MessageOutcome::TooOld
        )
    }
}

/// Why the Zello connection ended, as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The same account logged on elsewhere and the server closed this session: give each
    /// gateway its own account.
    Kicked,
    /// The server closed the connection.
    ServerClosed,
    /// The connection broke (a socket or TLS error).
    Network,
    /// The server went silent, or did not answer the logon in time.
    Timeout,
    /// The server refused the logon.
    Refused,
    /// The gateway left Zello on purpose (Zello Alarms: radio hardware failed).
    HeldOffline,
    /// Anything else.
    Other,
}

impl DisconnectReason {
    /// Every reason.
    pub const ALL: [DisconnectReason; 7] = [
        DisconnectReason::Kicked,
        DisconnectReason::ServerClosed,
        DisconnectReason::Network,
        DisconnectReason::Timeout,
        DisconnectReason::Refused,
        DisconnectReason::HeldOffline,
        DisconnectReason::Other,
    ];

    /// Its snake_case name, as it serializes.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::ServerClosed => "server_closed",
            DisconnectReason::Network => "network",
            DisconnectReason::Timeout => "timeout",
            DisconnectReason::Refused => "refused",
            DisconnectReason::HeldOffline => "held_offline",
            DisconnectReason::Other => "other",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The codec of a message from the channel, from its codec header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCodec {
    pub sample_rate_hz: u32,
    pub frame_ms: u8,
    pub frames_per_packet: u8,
}

/// What a channel supports, as the server reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChannelFeatures {
    pub images: bool,
    pub texting: bool,
    pub locations: bool,
}

/// What the gateway did, for the state, timelines, tests and status displays.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum GatewayEvent {
    /// Every radio has started or waits for its hardware, and the Zello session runs: the
    /// gateway does its job from now on, connected or not.
    Started,
    LoggedOn,
    LogonRefused(String),
    /// The Zello connection ended (the session reconnects): why, and the session's words.
    Disconnected {
        reason: DisconnectReason,
        detail: String,
    },
    /// The Zello server could not be reached; the next try is in `retry_in`.
    ConnectFailed {
        error: String,
        #[serde(rename = "retry_in_ms", serialize_with = "duration_ms")]
        retry_in: Duration,
    },
    ChannelStatus {
        channel: String,
        online: bool,
        users_online: u32,
        features: ChannelFeatures,
    },
    CarrierUp {
        radio: String,
    },
    CarrierDown {
        radio: String,
    },
    /// A carrier too short to be a message (under `rx_min_ms`) was ignored.
    Kerchunk {
        radio: String,
    },
    /// The carrier stayed up longer than `rx_max_s`: the message was ended and the carrier
    /// is ignored until it drops (its `CarrierDown` clears this).
    CarrierStuck {
        radio: String,
    },
    /// Too many messages started within `flap_window_s`: new ones are suppressed for a
    /// while.
    CarrierFlapping {
        radio: String,
    },
    /// Our message got its stream id.
    StreamStarted {
        radio: String,
        stream_id: u32,
    },
    /// A message from the radio ended.
    Sent {
        radio: String,
        stream_id: Option<u32>,
        packets: u64,
        /// Packets left out while the channel was away too long (the message has a gap).
        dropped: u64,
        duration_ms: u64,
        peak_dbfs: f32,
        rms_dbfs: f32,
        outcome: MessageOutcome,
    },
    /// A message from the channel arrived for this radio. A [`GatewayEvent::Played`] with
    /// the same stream id always follows, whether the message was played or not.
    Incoming {
        radio: String,
        stream_id: u32,
        from: String,
        /// From the message's codec header.
        codec: MessageCodec,
    },
    PttOn {
        radio: String,
    },
    Playing {
        radio: String,
        stream_id: u32,
    },
    /// A message from the channel ended: played in full, cut short, or not played at all
    /// (`outcome` says which; one for every [`GatewayEvent::Incoming`]).
    Played {
        radio: String,
        stream_id: u32,
        from: String,
        /// How it ended: `Completed`, `Interrupted` (cut by an unkey, a failure or the
        /// transmitter found unkeyed), `TimedOut`, `Inhibited`, `Busy`, `TooOld`.
        outcome: MessageOutcome,
        /// Packets played (for a message cut short: the packets handed to the player).
        packets: u64,
        concealed: u64,
        /// Late, duplicate and flooded packets left out.
        dropped: u64,
        duration_ms: u64,
        /// How long the transmitter was found unkeyed while the message played (at most;
        /// 0: it stayed keyed, or its state cannot be read back): the message was
        /// interrupted, not played in full.
        unkeyed_ms: u64,
        /// Levels of the message as it went to the transmitter, in dBFS (-96 for silence;
        /// never infinite or NaN); `None` when it did not play out (dropped, or cut on the
        /// air: the player reports no levels then).
        peak_dbfs: Option<f32>,
        rms_dbfs: Option<f32>,
    },
    PttOff {
        radio: String,
    },
    /// The operator inhibited the radio's transmitting (`reason`: theirs): it never keys
    /// until [`GatewayEvent::TxAllowed`].
    TxInhibited {
        radio: String,
        reason: Option<String>,
    },
    TxAllowed {
        radio: String,
    },
    TimeOut {
        radio: String,
        stream_id: u32,
    },
    /// The radio's audio device failed (PTT released) or came back.
    DeviceLost {
        radio: String,
        error: String,
    },
    DeviceBack {
        radio: String,
    },
    /// The carrier detector failed (`Some`) or works again (`None`).
    CarrierFault {
        radio: String,
        error: Option<String>,
    },
    /// The PTT interface failed (`Some`: keying failed, or its periodic check did) or
    /// works again (`None`).
    PttFault {
        radio: String,
        error: Option<String>,
    },
    /// A radio's hardware (sound device, PTT line or carrier detect) could not be opened at
    /// start (`Some`: why): the radio waits for it and starts once it appears (`None`).
    HardwareWaiting {
        radio: String,
        error: Option<String>,
    },
    /// The gateway left Zello on purpose because radio hardware failed for longer than
    /// `[alarms] hardware_grace_s` (`Some`: why), or goes back online (`None`).
    HeldOffline {
        reason: Option<String>,
    },
    Text {
        channel: String,
        from: String,
        text: String,
    },
    /// A location shared on a channel (the Channel API's `on_location`).
    Location {
        channel: String,
        from: String,
        latitude: f64,
        longitude: f64,
        /// Meters.
        accuracy: Option<f64>,
        formatted_address: Option<String>,
    },
}

impl GatewayEvent {
    /// The radio the event is about, if one.
    pub fn radio(&self) -> Option<&str> {
        use GatewayEvent::*;
        match self {
            CarrierUp { radio }
            | CarrierDown { radio }
            | Kerchunk { radio }
            | CarrierStuck { radio }
            | CarrierFlapping { radio }
            | TxInhibited { radio, .. }
            | TxAllowed { radio }
            | StreamStarted { radio, .. }
            | Sent { radio, .. }
            | Incoming { radio, .. }
            | PttOn { radio }
            | Playing { radio, .. }
            | Played { radio, .. }
            | PttOff { radio }
            | TimeOut { radio, .. }
            | DeviceLost { radio, .. }
            | DeviceBack { radio }
            | CarrierFault { radio, .. }
            | PttFault { radio, .. }
            | HardwareWaiting { radio, .. } => Some(radio),
            Started
            | LoggedOn
            | LogonRefused(_)
            | Disconnected { .. }
            | ConnectFailed { .. }
            | ChannelStatus { .. }
            | HeldOffline { .. }
            | Text { .. }
            | Location { .. } => None,
        }
    }
}

fn duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
}
