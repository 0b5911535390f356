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
    Disconnected(String),
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
    /// A message from the channel arrived for this radio.
    Incoming {
        radio: String,
        stream_id: u32,
        from: String,
    },
    PttOn {
        radio: String,
    },
    Playing {
        radio: String,
        stream_id: u32,
    },
    Played {
        radio: String,
        stream_id: u32,
        from: String,
        packets: u64,
        concealed: u64,
        /// Late, duplicate and flooded packets left out.
        dropped: u64,
        duration_ms: u64,
        /// How long the transmitter was found unkeyed while the message played (at most;
        /// 0: it stayed keyed, or its state cannot be read back): the message was
        /// interrupted, not played in full.
        unkeyed_ms: u64,
        /// Levels of the message as it went to the transmitter, in dBFS (-96 for silence
        /// or nothing played; never infinite or NaN).
        peak_dbfs: f32,
        rms_dbfs: f32,
    },
    PttOff {
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
}

impl GatewayEvent {
    /// The radio the event is about, if one.
    pub fn radio(&self) -> Option<&str> {
        use GatewayEvent::*;
        match self {
            CarrierUp { radio }
            | CarrierDown { radio }
            | Kerchunk { radio }
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
            | Disconnected(_)
            | ConnectFailed { .. }
            | ChannelStatus { .. }
            | HeldOffline { .. }
            | Text { .. } => None,
        }
    }
}

fn duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
}
