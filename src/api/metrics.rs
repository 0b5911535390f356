//! The gateway's Prometheus metrics, served at `GET /metrics`.
//!
//! [`Metrics`] is built once from the configured radios and their channels, so every label
//! combination is there (counters at 0) from the first scrape on: a radio that never timed
//! out still shows `zello_gateway_time_outs_total{radio="vhf1"} 0`, and rates work from the
//! start. Labels only take values from the configuration or from short fixed lists
//! (`direction`, `outcome`, `device`, `reason`); a sender's name never becomes a label.
//!
//! Two inputs keep it current, both from the [`StateHub`](crate::state::StateHub):
//! - [`Metrics::set_from`] reads the [`GatewayState`]: every gauge, and the totals the state
//!   already keeps (key-ups, kerchunks, time-outs, transmit and receive time, packets). A
//!   reader that missed events loses nothing here: the state's latest value is enough.
//! - [`Metrics::observe`] counts what only the events tell: log-ons, disconnects by reason,
//!   messages by outcome, their durations and device failures. Events missed because the
//!   reader lagged behind the event stream are not counted.
//!
//! [`Metrics::render`] writes the Prometheus text format ([`CONTENT_TYPE`]).

use crate::state::{GatewayEvent, GatewayState, Link};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, prometheus_text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `Content-Type` of what [`Metrics::render`] writes: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The prefix of every metric name.
pub const PREFIX: &str = "zello_gateway";

/// Upper bounds (seconds) of `message_duration_seconds`' buckets: from a kerchunk-length
/// call to the longest a time-out timer is usually set to.
const DURATION_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// A counter of seconds, which may be fractional.
type Seconds = Counter<f64, AtomicU64>;
/// A gauge holding a level or a time, which may be fractional.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Heard on the radio, sent to the Zello channel.
    ToChannel,
    /// From the Zello channel, transmitted on the radio.
    FromChannel,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::ToChannel, Direction::FromChannel];

    /// The label value: `to_channel` or `from_channel`, as in the API's events.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToChannel => "to_channel",
            Direction::FromChannel => "from_channel",
        }
    }
}

/// How a message ended, as the `outcome` label tells it: the values of `MESSAGE_STOP`'s
/// `outcome` (`completed`, `interrupted`, `refused`, `dropped`, `timed_out`, `inhibited`).
pub use super::protocol::event::Outcome;

/// One of a radio's parts whose health is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The sound device.
    Audio,
    /// The PTT interface.
    Ptt,
    /// The carrier detector.
    Carrier,
}

impl Device {
    /// Every part.
    pub const ALL: [Device; 3] = [Device::Audio, Device::Ptt, Device::Carrier];

    /// The label value: `audio`, `ptt` or `carrier`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Audio => "audio",
            Device::Ptt => "ptt",
            Device::Carrier => "carrier",
        }
    }
}

/// Why the Zello session ended: the state's typed reason, as the `reason` label
/// (`kicked`, `server_closed`, `network`, `timeout`, `refused`, `held_offline`, `other`; the
/// words stay in the log).
pub use crate::state::DisconnectReason;

macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                self.as_str().encode(encoder)
            }
        }
    )*};
}
label_value!(Direction, Outcome, Device, DisconnectReason);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RadioLabels {
    radio: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RadioDirectionLabels {
    radio: String,
    direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    radio: String,
    channel: String,
    direction: Direction,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeviceLabels {
    radio: String,
    device: Device,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: DisconnectReason,
}

/// [`Metrics::render`] could not write the text format.
#[derive(Debug, thiserror::Error)]
#[error(
    "the metrics could not be written in the Prometheus text format; this is a bug in \
     zello-gateway, please report it with the gateway's version"
)]
pub struct RenderError(#[from] std::fmt::Error);

/// The gateway's Prometheus metrics. Shared between the task that feeds it and the
/// handler that renders it (every method takes `&self`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Each configured radio's channel.
    radios: BTreeMap<String, String>,
    channels: BTreeSet<String>,

    logged_on: Gauge,
    logons: Counter,
    disconnects: Family<ReasonLabels, Counter>,
    held_offline: Gauge,
    channel_online: Family<ChannelLabels, Gauge>,
    channel_users_online: Family<ChannelLabels, Gauge>,
    radio_carrier: Family<RadioLabels, Gauge>,
    radio_ptt: Family<RadioLabels, Gauge>,
    radio_tx_inhibited: Family<RadioLabels, Gauge>,
    keyups: Family<RadioLabels, Counter>,
    transmit_seconds: Family<RadioLabels, Seconds>,
    receive_seconds: Family<RadioLabels, Seconds>,
    kerchunks: Family<RadioLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    message_duration: Family<RadioDirectionLabels, Histogram, fn() -> Histogram>,
    audio_packets: Family<RadioDirectionLabels, Counter>,
    audio_packets_concealed: Family<RadioLabels, Counter>,
    time_outs: Family<RadioLabels, Counter>,
    device_up: Family<DeviceLabels, Gauge>,
    device_failures: Family<DeviceLabels, Counter>,
    last_peak: Family<RadioDirectionLabels, FloatGauge, fn() -> FloatGauge>,
    last_rms: Family<RadioDirectionLabels, FloatGauge, fn() -> FloatGauge>,

    ws_connections: Gauge,
    ws_events_sent: Counter,
    ws_lagged: Counter,
    ws_slow_consumer_disconnects: Counter,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A level gauge before any message: NaN, since 0 dBFS would read as full scale.
fn no_level() -> FloatGauge {
    let g = FloatGauge::default();
    g.set(f64::NAN);
    g
}

/// Raises `counter` to `total`, a total the state keeps; never lowers it.
fn raise(counter: &Counter, total: u64) {
    counter.inner().fetch_max(total, Ordering::Relaxed);
}

/// Raises a seconds counter to `total_ms`. The counter holds an f64's bits; for numbers
/// that are not negative, bits and values order alike, so the larger bits are the larger
/// value.
fn raise_seconds(counter: &Seconds, total_ms: u64) {
    let seconds = total_ms as f64 / 1000.0;
    counter
        .inner()
        .fetch_max(seconds.to_bits(), Ordering::Relaxed);
}

/// Makes the series `labels` of `family` exist (at its starting value).
fn create<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    drop(family.get_or_create(labels));
}

fn flag(on: bool) -> i64 {
    i64::from(on)
}

impl Metrics {
    /// The metrics of a gateway with these radios, each `(radio name, its channel)` as the
    /// configuration lists them, started at `start_unix_ms` (unix ms, e.g. from
    /// [`crate::state::unix_ms`]). Every label combination exists from now on: counters
    /// at 0, channels offline, radios idle with their parts up, the last message levels
    /// NaN (no message yet).
    pub fn new<R, C>(radios: impl IntoIterator<Item = (R, C)>, start_unix_ms: u64) -> Self
    where
        R: Into<String>,
        C: Into<String>,
    {
        let radios: BTreeMap<String, String> = radios
            .into_iter()
            .map(|(r, c)| (r.into(), c.into()))
            .collect();
        let channels: BTreeSet<String> = radios.values().cloned().collect();
        let mut registry = Registry::with_prefix(PREFIX);
        let mut m = Metrics {
            registry: Registry::default(),
            radios,
            channels,
            logged_on: Gauge::default(),
            logons: Counter::default(),
            disconnects: Family::default(),
            held_offline: Gauge::default(),
            channel_online: Family::default(),
            channel_users_online: Family::default(),
            radio_carrier: Family::default(),
            radio_ptt: Family::default(),
            radio_tx_inhibited: Family::default(),
            keyups: Family::default(),
            transmit_seconds: Family::default(),
            receive_seconds: Family::default(),
            kerchunks: Family::default(),
            messages: Family::default(),
            message_duration: Family::new_with_constructor(duration_histogram),
            audio_packets: Family::default(),
            audio_packets_concealed: Family::default(),
            time_outs: Family::default(),
            device_up: Family::default(),
            device_failures: Family::default(),
            last_peak: Family::new_with_constructor(no_level),
            last_rms: Family::new_with_constructor(no_level),
            ws_connections: Gauge::default(),
            ws_events_sent: Counter::default(),
            ws_lagged: Counter::default(),
            ws_slow_consumer_disconnects: Counter::default(),
        };

        let start = FloatGauge::default();
        start.set(start_unix_ms as f64 / 1000.0);
        let r = &mut registry;
        r.register(
            "build",
            "The gateway's version (always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "start_time_seconds",
            "When the gateway started (unix seconds)",
            start,
        );
        r.register(
            "logged_on",
            "1 while the gateway is logged on to Zello",
            m.logged_on.clone(),
        );
        r.register("logons", "Successful log-ons to Zello", m.logons.clone());
        r.register(
            "disconnects",
            "Zello sessions that ended, by reason",
            m.disconnects.clone(),
        );
        r.register(
            "held_offline",
            "1 while the gateway stays away from Zello on purpose because radio hardware failed",
            m.held_offline.clone(),
        );
        r.register(
            "channel_online",
            "1 while the channel is online",
            m.channel_online.clone(),
        );
        r.register(
            "channel_users_online",
            "Users online on the channel, as the server last reported",
            m.channel_users_online.clone(),
        );
        r.register(
            "radio_carrier",
            "1 while the radio hears a carrier",
            m.radio_carrier.clone(),
        );
        r.register(
            "radio_ptt",
            "1 while the radio's transmitter is keyed",
            m.radio_ptt.clone(),
        );
        r.register(
            "radio_tx_inhibited",
            "1 while the operator inhibits the radio's transmitting",
            m.radio_tx_inhibited.clone(),
        );
        r.register(
            "radio_keyups",
            "Times the radio's transmitter was keyed",
            m.keyups.clone(),
        );
        r.register(
            "radio_transmit_seconds",
            "Time the radio's transmitter was keyed",
            m.transmit_seconds.clone(),
        );
        r.register(
            "radio_receive_seconds",
            "Audio heard on the radio and sent to the channel",
            m.receive_seconds.clone(),
        );
        r.register(
            "radio_kerchunks",
            "Carriers too short to be a message (under rx_min_ms), ignored",
            m.kerchunks.clone(),
        );
        r.register(
            "messages",
            "Messages that ended, by direction and outcome",
            m.messages.clone(),
        );
        r.register(
            "message_duration_seconds",
            "How long messages lasted",
            m.message_duration.clone(),
        );
        r.register(
            "audio_packets",
            "Audio packets sent to the channel or played on the air",
            m.audio_packets.clone(),
        );
        r.register(
            "audio_packets_concealed",
            "Lost packets from the channel filled in by loss concealment",
            m.audio_packets_concealed.clone(),
        );
        r.register(
            "time_outs",
            "Messages from the channel cut by the time-out timer",
            m.time_outs.clone(),
        );
        r.register(
            "device_up",
            "1 while the radio's part works (audio: the sound device, ptt: the PTT interface, carrier: the carrier detector)",
            m.device_up.clone(),
        );
        r.register(
            "device_failures",
            "Times the radio's part failed",
            m.device_failures.clone(),
        );
        r.register(
            "last_message_peak_dbfs",
            "Peak level of the radio's last message each way, in dBFS (NaN: none yet)",
            m.last_peak.clone(),
        );
        r.register(
            "last_message_rms_dbfs",
            "RMS level of the radio's last message each way, in dBFS (NaN: none yet)",
            m.last_rms.clone(),
        );
        r.register(
            "api_ws_connections",
            "Open WebSocket sessions of the status API",
            m.ws_connections.clone(),
        );
        r.register(
            "api_ws_events_sent",
            "Events the status API sent over its WebSockets",
            m.ws_events_sent.clone(),
        );
        r.register(
            "api_ws_lagged",
            "Times a WebSocket subscriber fell behind and was sent a RESYNC",
            m.ws_lagged.clone(),
        );
        r.register(
            "api_ws_slow_consumer_disconnects",
            "WebSocket sessions closed because they stopped reading",
            m.ws_slow_consumer_disconnects.clone(),
        );

        for reason in DisconnectReason::ALL {
            create(&m.disconnects, &ReasonLabels { reason });
        }
        for channel in &m.channels {
            let l = ChannelLabels {
                channel: channel.clone(),
            };
            create(&m.channel_online, &l);
            create(&m.channel_users_online, &l);
        }
        for (radio, channel) in &m.radios {
            let l = RadioLabels {
                radio: radio.clone(),
            };
            for family in [&m.radio_carrier, &m.radio_ptt, &m.radio_tx_inhibited] {
                create(family, &l);
            }
            for family in [
                &m.keyups,
                &m.kerchunks,
                &m.audio_packets_concealed,
                &m.time_outs,
            ] {
                create(family, &l);
            }
            create(&m.transmit_seconds, &l);
            create(&m.receive_seconds, &l);
            for direction in Direction::ALL {
                let l = RadioDirectionLabels {
                    radio: radio.clone(),
                    direction,
                };
                create(&m.message_duration, &l);
                create(&m.audio_packets, &l);
                for outcome in Outcome::ALL {
                    create(
                        &m.messages,
                        &MessageLabels {
                            radio: radio.clone(),
                            channel: channel.clone(),
                            direction,
                            outcome,
                        },
                    );
                }
            }
            // Messages both ways carry levels.
            for direction in [Direction::ToChannel, Direction::FromChannel] {
                let l = RadioDirectionLabels {
                    radio: radio.clone(),
                    direction,
                };
                create(&m.last_peak, &l);
                create(&m.last_rms, &l);
            }
            for device in Device::ALL {
                let l = DeviceLabels {
                    radio: radio.clone(),
                    device,
                };
                m.device_up.get_or_create(&l).set(1);
                create(&m.device_failures, &l);
            }
        }
        m.registry = registry;
        m
    }

    /// Reads the gateway's state: every gauge, and the totals the state keeps. Radios and
    /// channels not in the configuration are left out. Totals never go down here, so a
    /// state older than one already read changes nothing.
    pub fn set_from(&self, state: &GatewayState) {
        self.logged_on
            .set(flag(matches!(state.gateway.link, Link::LoggedOn)));
        self.held_offline
            .set(flag(state.gateway.held_offline.is_some()));
        for (name, c) in &state.channels {
            if !self.channels.contains(name) {
                continue;
            }
            let l = ChannelLabels {
                channel: name.clone(),
            };
            self.channel_online.get_or_create(&l).set(flag(c.online));
            self.channel_users_online
                .get_or_create(&l)
                .set(i64::from(c.users_online));
        }
        for (name, r) in &state.radios {
            if !self.radios.contains_key(name) {
                continue;
            }
            let l = RadioLabels {
                radio: name.clone(),
            };
            self.radio_carrier.get_or_create(&l).set(flag(r.carrier));
            self.radio_ptt.get_or_create(&l).set(flag(r.ptt));
            self.radio_tx_inhibited
                .get_or_create(&l)
                .set(flag(r.tx_inhibited.is_some()));
            let c = &r.counters;
            raise(&self.keyups.get_or_create(&l), c.key_ups);
            raise(&self.kerchunks.get_or_create(&l), c.kerchunks);
            raise(&self.time_outs.get_or_create(&l), c.time_outs);
            raise(
                &self.audio_packets_concealed.get_or_create(&l),
                c.packets_concealed,
            );
            raise_seconds(&self.transmit_seconds.get_or_create(&l), c.transmitted_ms);
            raise_seconds(&self.receive_seconds.get_or_create(&l), c.received_ms);
            for (direction, total) in [
                (Direction::ToChannel, c.packets_sent),
                (Direction::FromChannel, c.packets_played),
            ] {
                let l = RadioDirectionLabels {
                    radio: name.clone(),
                    direction,
                };
                raise(&self.audio_packets.get_or_create(&l), total);
            }
            let h = &r.health;
            for (device, part) in [
                (Device::Audio, &h.audio),
                (Device::Ptt, &h.ptt),
                (Device::Carrier, &h.carrier),
            ] {
                self.device_up
                    .get_or_create(&DeviceLabels {
                        radio: name.clone(),
                        device,
                    })
                    .set(flag(!part.failing));
            }
            for (message, direction) in [
                (&r.last_sent, Direction::ToChannel),
                (&r.last_played, Direction::FromChannel),
            ] {
                let Some(m) = message else { continue };
                let l = RadioDirectionLabels {
                    radio: name.clone(),
                    direction,
                };
                if let Some(peak) = m.peak_dbfs {
                    self.last_peak.get_or_create(&l).set(f64::from(peak));
                }
                if let Some(rms) = m.rms_dbfs {
                    self.last_rms.get_or_create(&l).set(f64::from(rms));
                }
            }
        }
    }

    /// Counts what only the events tell: log-ons, disconnects by reason, messages by
    /// outcome and their durations, device failures. Events about radios not in the
    /// configuration are left out. Each event is to be observed once, in order.
    pub fn observe(&self, event: &GatewayEvent) {
        match event {
            GatewayEvent::LoggedOn => {
                self.logons.inc();
            }
            GatewayEvent::Disconnected { reason, .. } => {
                self.disconnects
                    .get_or_create(&ReasonLabels { reason: *reason })
                    .inc();
            }
            GatewayEvent::Sent {
                radio,
                duration_ms,
                outcome,
                ..
            } => self.message(radio, Direction::ToChannel, (*outcome).into(), *duration_ms),
            GatewayEvent::Played {
                radio,
                outcome,
                duration_ms,
                ..
            } => self.message(
                radio,
                Direction::FromChannel,
                (*outcome).into(),
                *duration_ms,
            ),
            GatewayEvent::DeviceLost { radio, .. } => self.failure(radio, Device::Audio),
            GatewayEvent::PttFault {
                radio,
                error: Some(_),
            } => self.failure(radio, Device::Ptt),
            GatewayEvent::CarrierFault {
                radio,
                error: Some(_),
            } => self.failure(radio, Device::Carrier),
            // Gauges or totals the state keeps (`set_from`), or nothing to count.
            GatewayEvent::Started
            | GatewayEvent::LogonRefused(_)
            | GatewayEvent::ConnectFailed { .. }
            | GatewayEvent::ChannelStatus { .. }
            | GatewayEvent::CarrierUp { .. }
            | GatewayEvent::CarrierDown { .. }
            | GatewayEvent::Kerchunk { .. }
            | GatewayEvent::CarrierStuck { .. }
            | GatewayEvent::CarrierFlapping { .. }
            | GatewayEvent::TxInhibited { .. }
            | GatewayEvent::TxAllowed { .. }
            | GatewayEvent::TimeOut { .. }
            | GatewayEvent::Location { .. }
            | GatewayEvent::StreamStarted { .. }
            | GatewayEvent::Incoming { .. }
            | GatewayEvent::PttOn { .. }
            | GatewayEvent::Playing { .. }
            | GatewayEvent::PttOff { .. }
            | GatewayEvent::DeviceBack { .. }
            | GatewayEvent::PttFault { error: None, .. }
            | GatewayEvent::CarrierFault { error: None, .. }
            | GatewayEvent::HardwareWaiting { .. }
            | GatewayEvent::HeldOffline { .. }
            | GatewayEvent::Text { .. } => {}
        }
    }

    fn message(&self, radio: &str, direction: Direction, outcome: Outcome, duration_ms: u64) {
        let Some(channel) = self.radios.get(radio) else {
            return;
        };
        self.messages
            .get_or_create(&MessageLabels {
                radio: radio.to_string(),
                channel: channel.clone(),
                direction,
                outcome,
            })
            .inc();
        self.message_duration
            .get_or_create(&RadioDirectionLabels {
                radio: radio.to_string(),
                direction,
            })
            .observe(duration_ms as f64 / 1000.0);
    }

    fn failure(&self, radio: &str, device: Device) {
        if self.radios.contains_key(radio) {
            self.device_failures
                .get_or_create(&DeviceLabels {
                    radio: radio.to_string(),
                    device,
                })
                .inc();
        }
    }

    /// A WebSocket session of the status API opened.
    pub fn ws_opened(&self) {
        self.ws_connections.inc();
    }

    /// A WebSocket session of the status API closed, however it ended.
    pub fn ws_closed(&self) {
        self.ws_connections.dec();
    }

    /// The status API sent `count` events over its WebSockets.
    pub fn ws_events_sent(&self, count: u64) {
        self.ws_events_sent.inc_by(count);
    }

    /// A WebSocket subscriber fell behind and was sent a `RESYNC`.
    pub fn ws_lagged(&self) {
        self.ws_lagged.inc();
    }

    /// A WebSocket session was closed because it stopped reading (close code 1013).
    pub fn ws_slow_consumer_disconnected(&self) {
        self.ws_slow_consumer_disconnects.inc();
    }

    /// The metrics in the Prometheus text format, to be served as [`CONTENT_TYPE`].
    pub fn render(&self) -> Result<String, RenderError> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MessageCodec, MessageOutcome};
    use prometheus_parse::{Sample, Scrape, Value};
    use std::time::Duration;

    const ALICE: &str = "W1AW-Alice";

    /// The gateway as the daemon will run it: each event applied to the state, then
    /// observed, then the state read.
    struct Rig {
        state: GatewayState,
        metrics: Metrics,
        at_ms: u64,
    }

    impl Rig {
        fn new() -> Self {
            let radios = [("vhf1", "dispatch"), ("uhf2", "club")];
            Rig {
                state: GatewayState::new(radios.map(|(r, c)| (r.to_string(), c.to_string()))),
                metrics: Metrics::new(radios, 1_700_000_000_000),
                at_ms: 1_700_000_000_000,
            }
        }

        /// `event`, `after_ms` after the last one.
        fn at(&mut self, after_ms: u64, event: GatewayEvent) {
            self.at_ms += after_ms;
            self.state.apply(&event, self.at_ms);
            self.metrics.observe(&event);
            self.metrics.set_from(&self.state);
        }

        fn scrape(&self) -> Scrape {
            let text = self.metrics.render().unwrap();
            Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
        }

        /// The value of the one sample `name{labels}` (with exactly these labels).
        fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let scrape = self.scrape();
            let found: Vec<&Sample> = scrape
                .samples
                .iter()
                .filter(|s| s.metric == name && same_labels(s, labels))
                .collect();
            assert_eq!(found.len(), 1, "{name}{labels:?} in {:#?}", scrape.samples);
            match &found[0].value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a single value: {other:?}"),
            }
        }

        /// A histogram's observation count: (`_count`, buckets) checked alike.
        fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (f64, f64) {
            let count = self.value(&format!("{name}_count"), labels);
            let sum = self.value(&format!("{name}_sum"), labels);
            (count, sum)
        }
    }

    fn same_labels(s: &Sample, labels: &[(&str, &str)]) -> bool {
        s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
    }

    fn radio(name: &str) -> String {
        name.to_string()
    }

    fn messages(rig: &Rig, radio: &str, channel: &str, direction: &str, outcome: &str) -> f64 {
        rig.value(
            "zello_gateway_messages_total",
            &[
                ("radio", radio),
                ("channel", channel),
                ("direction", direction),
                ("outcome", outcome),
            ],
        )
    }

    /// A full duplex message on vhf1: Alice talks on the channel while the radio hears a
    /// carrier. Each way's events in the order the issue gives.
    fn duplex_message(rig: &mut Rig) {
        rig.at(
            0,
            GatewayEvent::CarrierUp {
                radio: radio("vhf1"),
            },
        );
        rig.at(
            40,
            GatewayEvent::StreamStarted {
                radio: radio("vhf1"),
                stream_id: 11,
            },
        );
        rig.at(
            60,
            GatewayEvent::Incoming {
                radio: radio("vhf1"),
                stream_id: 22,
                from: ALICE.into(),
                codec: MessageCodec::default(),
            },
        );
        rig.at(
            100,
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            },
        );
        rig.at(
            20,
            GatewayEvent::Playing {
                radio: radio("vhf1"),
                stream_id: 22,
            },
        );
        // Both ways at once.
        assert_eq!(
            rig.value("zello_gateway_radio_carrier", &[("radio", "vhf1")]),
            1.0
        );
        assert_eq!(
            rig.value("zello_gateway_radio_ptt", &[("radio", "vhf1")]),
            1.0
        );
        rig.at(
            2_400,
            GatewayEvent::CarrierDown {
                radio: radio("vhf1"),
            },
        );
        rig.at(
            10,
            GatewayEvent::Sent {
                radio: radio("vhf1"),
                stream_id: Some(11),
                packets: 50,
                dropped: 0,
                duration_ms: 3_000,
                peak_dbfs: -3.5,
                rms_dbfs: -18.25,
                outcome: MessageOutcome::Completed,
            },
        );
        rig.at(
            100,
            GatewayEvent::Played {
                radio: radio("vhf1"),
                stream_id: 22,
                from: ALICE.into(),
                outcome: MessageOutcome::Completed,
                packets: 40,
                concealed: 2,
                dropped: 1,
                duration_ms: 2_400,
                unkeyed_ms: 0,
                peak_dbfs: Some(-1.5),
                rms_dbfs: Some(-14.75),
            },
        );
        rig.at(
            470,
            GatewayEvent::PttOff {
                radio: radio("vhf1"),
            },
        );
    }

    /// A message from the channel that the time-out timer cuts after 180 s.
    fn time_out(rig: &mut Rig) {
        rig.at(
            1_000,
            GatewayEvent::Incoming {
                radio: radio("vhf1"),
                stream_id: 23,
                from: ALICE.into(),
                codec: MessageCodec::default(),
            },
        );
        rig.at(
            100,
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            },
        );
        rig.at(
            20,
            GatewayEvent::Playing {
                radio: radio("vhf1"),
                stream_id: 23,
            },
        );
        rig.at(
            180_000,
            GatewayEvent::TimeOut {
                radio: radio("vhf1"),
                stream_id: 23,
            },
        );
        rig.at(
            50,
            GatewayEvent::Played {
                radio: radio("vhf1"),
                stream_id: 23,
                from: ALICE.into(),
                outcome: MessageOutcome::TimedOut,
                packets: 3_000,
                concealed: 0,
                dropped: 0,
                duration_ms: 180_000,
                unkeyed_ms: 0,
                peak_dbfs: Some(-2.0),
                rms_dbfs: Some(-16.0),
            },
        );
        rig.at(
            450,
            GatewayEvent::PttOff {
                radio: radio("vhf1"),
            },
        );
    }

    #[test]
    fn the_metrics_can_be_shared_between_the_feeder_and_the_handler() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Metrics>();
        let metrics = std::sync::Arc::new(Metrics::new([("vhf1", "dispatch")], 0));
        let feeder = metrics.clone();
        std::thread::spawn(move || feeder.observe(&GatewayEvent::LoggedOn))
            .join()
            .unwrap();
        assert!(
            metrics
                .render()
                .unwrap()
                .contains("zello_gateway_logons_total 1\n")
        );
    }

    #[test]
    fn the_content_type_is_the_prometheus_text_format() {
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }

    #[test]
    fn every_label_combination_is_there_from_the_start() {
        let rig = Rig::new();
        let scrape = rig.scrape();
        let count = |name: &str| scrape.samples.iter().filter(|s| s.metric == name).count();
        for (radio, channel) in [("vhf1", "dispatch"), ("uhf2", "club")] {
            let r = [("radio", radio)];
            for name in [
                "radio_carrier",
                "radio_ptt",
                "radio_tx_inhibited",
                "radio_keyups_total",
                "radio_transmit_seconds_total",
                "radio_receive_seconds_total",
                "radio_kerchunks_total",
                "audio_packets_concealed_total",
                "time_outs_total",
            ] {
                assert_eq!(
                    rig.value(&format!("zello_gateway_{name}"), &r),
                    0.0,
                    "{name}"
                );
            }
            for direction in ["to_channel", "from_channel"] {
                let rd = [("radio", radio), ("direction", direction)];
                assert_eq!(rig.value("zello_gateway_audio_packets_total", &rd), 0.0);
                assert_eq!(
                    rig.histogram("zello_gateway_message_duration_seconds", &rd),
                    (0.0, 0.0)
                );
                for outcome in Outcome::ALL {
                    assert_eq!(
                        messages(&rig, radio, channel, direction, outcome.as_str()),
                        0.0
                    );
                }
            }
            // No message yet: no level, rather than a 0 dBFS that reads as full scale.
            for direction in ["to_channel", "from_channel"] {
                let rd = [("radio", radio), ("direction", direction)];
                assert!(
                    rig.value("zello_gateway_last_message_peak_dbfs", &rd)
                        .is_nan()
                );
                assert!(
                    rig.value("zello_gateway_last_message_rms_dbfs", &rd)
                        .is_nan()
                );
            }
            for device in ["audio", "ptt", "carrier"] {
                let rd = [("radio", radio), ("device", device)];
                assert_eq!(rig.value("zello_gateway_device_failures_total", &rd), 0.0);
                assert_eq!(rig.value("zello_gateway_device_up", &rd), 1.0);
            }
            let c = [("channel", channel)];
            assert_eq!(rig.value("zello_gateway_channel_online", &c), 0.0);
            assert_eq!(rig.value("zello_gateway_channel_users_online", &c), 0.0);
        }
        for reason in DisconnectReason::ALL {
            assert_eq!(
                rig.value(
                    "zello_gateway_disconnects_total",
                    &[("reason", reason.as_str())]
                ),
                0.0
            );
        }
        for name in [
            "logged_on",
            "logons_total",
            "held_offline",
            "api_ws_connections",
            "api_ws_events_sent_total",
            "api_ws_lagged_total",
            "api_ws_slow_consumer_disconnects_total",
        ] {
            assert_eq!(
                rig.value(&format!("zello_gateway_{name}"), &[]),
                0.0,
                "{name}"
            );
        }
        assert_eq!(
            count("zello_gateway_messages_total"),
            2 * 2 * Outcome::ALL.len()
        );
        assert_eq!(count("zello_gateway_device_up"), 2 * 3);
        assert_eq!(
            count("zello_gateway_disconnects_total"),
            DisconnectReason::ALL.len()
        );
        assert_eq!(
            rig.value(
                "zello_gateway_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
        assert_eq!(
            rig.value("zello_gateway_start_time_seconds", &[]),
            1_700_000_000.0
        );
    }

    #[test]
    fn names_carry_the_prefix_and_counters_end_in_total() {
        let rig = Rig::new();
        let text = rig.metrics.render().unwrap();
        let mut counters = 0;
        for line in text.lines() {
            let name = match line.strip_prefix("# ") {
                Some(comment) => comment.split_whitespace().nth(1).unwrap_or_default(),
                None => line.split(['{', ' ']).next().unwrap_or_default(),
            };
            assert!(name.starts_with("zello_gateway_"), "{line}");
            if let Some(t) = line.strip_prefix("# TYPE ") {
                if t.ends_with(" counter") {
                    counters += 1;
                    assert!(name.ends_with("_total"), "{line}");
                } else {
                    assert!(!name.ends_with("_total"), "{line}");
                }
            }
        }
        // logons, disconnects, keyups, transmit and receive seconds, kerchunks, messages,
        // audio packets, concealed, time-outs, device failures and the API's three.
        assert_eq!(counters, 14, "{text}");
        for sample in rig.scrape().samples {
            if matches!(sample.value, Value::Counter(_)) {
                assert!(sample.metric.ends_with("_total"), "{}", sample.metric);
            }
        }
    }

    #[test]
    fn a_full_duplex_message_is_counted_both_ways() {
        let mut rig = Rig::new();
        duplex_message(&mut rig);
        for direction in ["to_channel", "from_channel"] {
            assert_eq!(
                messages(&rig, "vhf1", "dispatch", direction, "completed"),
                1.0,
                "{direction}"
            );
        }
        let r = [("radio", "vhf1")];
        assert_eq!(rig.value("zello_gateway_radio_carrier", &r), 0.0);
        assert_eq!(rig.value("zello_gateway_radio_ptt", &r), 0.0);
        assert_eq!(rig.value("zello_gateway_radio_keyups_total", &r), 1.0);
        // Keyed from PTT_ON to PTT_OFF: 20 + 2400 + 10 + 100 + 470 ms.
        assert_eq!(
            rig.value("zello_gateway_radio_transmit_seconds_total", &r),
            3.0
        );
        assert_eq!(
            rig.value("zello_gateway_radio_receive_seconds_total", &r),
            3.0
        );
        assert_eq!(
            rig.value("zello_gateway_audio_packets_concealed_total", &r),
            2.0
        );
        let to = [("radio", "vhf1"), ("direction", "to_channel")];
        let from = [("radio", "vhf1"), ("direction", "from_channel")];
        assert_eq!(rig.value("zello_gateway_audio_packets_total", &to), 50.0);
        assert_eq!(rig.value("zello_gateway_audio_packets_total", &from), 40.0);
        assert_eq!(
            rig.histogram("zello_gateway_message_duration_seconds", &to),
            (1.0, 3.0)
        );
        assert_eq!(
            rig.histogram("zello_gateway_message_duration_seconds", &from),
            (1.0, 2.4)
        );
        assert_eq!(rig.value("zello_gateway_last_message_peak_dbfs", &to), -3.5);
        assert_eq!(
            rig.value("zello_gateway_last_message_rms_dbfs", &to),
            -18.25
        );
        assert_eq!(
            rig.value("zello_gateway_last_message_peak_dbfs", &from),
            -1.5
        );
        assert_eq!(
            rig.value("zello_gateway_last_message_rms_dbfs", &from),
            -14.75
        );
        // The other radio saw nothing.
        assert_eq!(
            rig.value("zello_gateway_radio_keyups_total", &[("radio", "uhf2")]),
            0.0
        );
    }

    #[test]
    fn the_duration_histogram_puts_each_message_in_its_bucket() {
        let mut rig = Rig::new();
        duplex_message(&mut rig);
        let scrape = rig.scrape();
        let buckets = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "zello_gateway_message_duration_seconds"
                    && s.labels.get("radio") == Some("vhf1")
                    && s.labels.get("direction") == Some("to_channel")
            })
            .map(|s| s.value.clone());
        let Some(Value::Histogram(buckets)) = buckets else {
            panic!("no histogram in {:#?}", scrape.samples);
        };
        // 3 s: above the 2 s bucket, in the 5 s one and every one after.
        for b in buckets {
            let want = if b.less_than >= 5.0 { 1.0 } else { 0.0 };
            assert_eq!(b.count, want, "le {}", b.less_than);
        }
    }

    #[test]
    fn a_time_out_counts_once_and_marks_the_message() {
        let mut rig = Rig::new();
        time_out(&mut rig);
        let r = [("radio", "vhf1")];
        assert_eq!(rig.value("zello_gateway_time_outs_total", &r), 1.0);
        assert_eq!(
            messages(&rig, "vhf1", "dispatch", "from_channel", "timed_out"),
            1.0
        );
        assert_eq!(
            messages(&rig, "vhf1", "dispatch", "from_channel", "completed"),
            0.0
        );
        assert_eq!(rig.value("zello_gateway_radio_ptt", &r), 0.0);
        // The next message plays in full again.
        duplex_message(&mut rig);
        assert_eq!(
            messages(&rig, "vhf1", "dispatch", "from_channel", "completed"),
            1.0
        );
        assert_eq!(rig.value("zello_gateway_radio_keyups_total", &r), 2.0);
        assert_eq!(rig.value("zello_gateway_time_outs_total", &r), 1.0);
    }

    #[test]
    fn a_message_found_unkeyed_counts_as_interrupted() {
        let mut rig = Rig::new();
        rig.at(
            0,
            GatewayEvent::Played {
                radio: radio("uhf2"),
                stream_id: 5,
                from: ALICE.into(),
                outcome: MessageOutcome::Interrupted,
                packets: 10,
                concealed: 0,
                dropped: 0,
                duration_ms: 600,
                unkeyed_ms: 200,
                peak_dbfs: Some(-8.0),
                rms_dbfs: Some(-22.0),
            },
        );
        assert_eq!(
            messages(&rig, "uhf2", "club", "from_channel", "interrupted"),
            1.0
        );
    }

    #[test]
    fn a_device_failure_and_its_return_show_in_up_and_failures() {
        let mut rig = Rig::new();
        let audio = [("radio", "vhf1"), ("device", "audio")];
        let ptt = [("radio", "uhf2"), ("device", "ptt")];
        let carrier = [("radio", "uhf2"), ("device", "carrier")];
        rig.at(
            0,
            GatewayEvent::DeviceLost {
                radio: radio("vhf1"),
                error: "hw:1 gone".into(),
            },
        );
        rig.at(
            0,
            GatewayEvent::PttFault {
                radio: radio("uhf2"),
                error: Some("/dev/ttyUSB0: no such device".into()),
            },
        );
        rig.at(
            0,
            GatewayEvent::CarrierFault {
                radio: radio("uhf2"),
                error: Some("gpiochip0 line 17 busy".into()),
            },
        );
        for labels in [&audio, &ptt, &carrier] {
            assert_eq!(rig.value("zello_gateway_device_up", labels), 0.0);
            assert_eq!(
                rig.value("zello_gateway_device_failures_total", labels),
                1.0
            );
        }
        // The others stay up.
        assert_eq!(
            rig.value(
                "zello_gateway_device_up",
                &[("radio", "vhf1"), ("device", "ptt")]
            ),
            1.0
        );
        rig.at(
            5_000,
            GatewayEvent::DeviceBack {
                radio: radio("vhf1"),
            },
        );
        rig.at(
            0,
            GatewayEvent::PttFault {
                radio: radio("uhf2"),
                error: None,
            },
        );
        rig.at(
            0,
            GatewayEvent::CarrierFault {
                radio: radio("uhf2"),
                error: None,
            },
        );
        for labels in [&audio, &ptt, &carrier] {
            assert_eq!(rig.value("zello_gateway_device_up", labels), 1.0);
            assert_eq!(
                rig.value("zello_gateway_device_failures_total", labels),
                1.0
            );
        }
        rig.at(
            0,
            GatewayEvent::DeviceLost {
                radio: radio("vhf1"),
                error: "hw:1 gone".into(),
            },
        );
        assert_eq!(
            rig.value("zello_gateway_device_failures_total", &audio),
            2.0
        );
    }

    #[test]
    fn a_logon_and_a_disconnect_move_the_link_gauges() {
        let mut rig = Rig::new();
        rig.at(0, GatewayEvent::Started);
        rig.at(300, GatewayEvent::LoggedOn);
        rig.at(
            50,
            GatewayEvent::ChannelStatus {
                channel: "dispatch".into(),
                online: true,
                users_online: 7,
                features: Default::default(),
            },
        );
        assert_eq!(rig.value("zello_gateway_logged_on", &[]), 1.0);
        assert_eq!(rig.value("zello_gateway_logons_total", &[]), 1.0);
        let dispatch = [("channel", "dispatch")];
        assert_eq!(rig.value("zello_gateway_channel_online", &dispatch), 1.0);
        assert_eq!(
            rig.value("zello_gateway_channel_users_online", &dispatch),
            7.0
        );
        assert_eq!(
            rig.value("zello_gateway_channel_online", &[("channel", "club")]),
            0.0
        );

        rig.at(60_000, disconnected(DisconnectReason::Kicked));
        assert_eq!(rig.value("zello_gateway_logged_on", &[]), 0.0);
        assert_eq!(rig.value("zello_gateway_channel_online", &dispatch), 0.0);
        assert_eq!(
            rig.value("zello_gateway_disconnects_total", &[("reason", "kicked")]),
            1.0
        );
        rig.at(
            0,
            GatewayEvent::ConnectFailed {
                error: "connection refused".into(),
                retry_in: Duration::from_secs(2),
            },
        );
        rig.at(2_000, GatewayEvent::LoggedOn);
        assert_eq!(rig.value("zello_gateway_logged_on", &[]), 1.0);
        assert_eq!(rig.value("zello_gateway_logons_total", &[]), 2.0);
        rig.at(
            0,
            GatewayEvent::HeldOffline {
                reason: Some("vhf1: audio device failed".into()),
            },
        );
        rig.at(0, disconnected(DisconnectReason::HeldOffline));
        assert_eq!(rig.value("zello_gateway_held_offline", &[]), 1.0);
        assert_eq!(
            rig.value(
                "zello_gateway_disconnects_total",
                &[("reason", "held_offline")]
            ),
            1.0
        );
        rig.at(0, GatewayEvent::HeldOffline { reason: None });
        assert_eq!(rig.value("zello_gateway_held_offline", &[]), 0.0);
    }

    #[test]
    fn a_scripted_session_is_counted_as_it_happened() {
        let mut rig = Rig::new();
        rig.at(0, GatewayEvent::LoggedOn);
        duplex_message(&mut rig);
        time_out(&mut rig);
        rig.at(
            0,
            GatewayEvent::Kerchunk {
                radio: radio("uhf2"),
            },
        );
        rig.at(
            0,
            GatewayEvent::DeviceLost {
                radio: radio("vhf1"),
                error: "hw:1 gone".into(),
            },
        );
        rig.at(
            1_000,
            GatewayEvent::DeviceBack {
                radio: radio("vhf1"),
            },
        );
        rig.at(0, disconnected(DisconnectReason::Timeout));
        let r = [("radio", "vhf1")];
        assert_eq!(rig.value("zello_gateway_logons_total", &[]), 1.0);
        assert_eq!(
            rig.value("zello_gateway_disconnects_total", &[("reason", "timeout")]),
            1.0
        );
        assert_eq!(rig.value("zello_gateway_radio_keyups_total", &r), 2.0);
        assert_eq!(rig.value("zello_gateway_time_outs_total", &r), 1.0);
        // 3 s for the duplex message, 180.5 s for the one cut.
        assert_eq!(
            rig.value("zello_gateway_radio_transmit_seconds_total", &r),
            183.52
        );
        assert_eq!(
            rig.value("zello_gateway_radio_kerchunks_total", &[("radio", "uhf2")]),
            1.0
        );
        assert_eq!(
            rig.value(
                "zello_gateway_audio_packets_total",
                &[("radio", "vhf1"), ("direction", "from_channel")]
            ),
            3_040.0
        );
        assert_eq!(
            rig.value(
                "zello_gateway_device_failures_total",
                &[("radio", "vhf1"), ("device", "audio")]
            ),
            1.0
        );
        assert_eq!(
            rig.value(
                "zello_gateway_device_up",
                &[("radio", "vhf1"), ("device", "audio")]
            ),
            1.0
        );
        assert_eq!(
            rig.histogram(
                "zello_gateway_message_duration_seconds",
                &[("radio", "vhf1"), ("direction", "from_channel")]
            ),
            (2.0, 182.4)
        );
    }

    #[test]
    fn no_sender_name_appears_anywhere() {
        let mut rig = Rig::new();
        duplex_message(&mut rig);
        time_out(&mut rig);
        rig.at(
            0,
            GatewayEvent::Text {
                channel: "dispatch".into(),
                from: ALICE.into(),
                text: "on my way".into(),
            },
        );
        let text = rig.metrics.render().unwrap();
        assert!(!text.contains(ALICE), "{text}");
        assert!(!text.contains("W1AW"), "{text}");
        assert!(!text.contains("on my way"), "{text}");
    }

    #[test]
    fn radios_and_channels_not_configured_add_no_series() {
        let mut rig = Rig::new();
        let before = rig.scrape().samples.len();
        rig.at(
            0,
            GatewayEvent::CarrierUp {
                radio: radio("ghost"),
            },
        );
        rig.at(
            0,
            GatewayEvent::Sent {
                radio: radio("ghost"),
                stream_id: None,
                packets: 5,
                dropped: 0,
                duration_ms: 100,
                peak_dbfs: -1.0,
                rms_dbfs: -10.0,
                outcome: MessageOutcome::ChannelNotReady,
            },
        );
        rig.at(
            0,
            GatewayEvent::TimeOut {
                radio: radio("ghost"),
                stream_id: 1,
            },
        );
        rig.at(
            0,
            GatewayEvent::DeviceLost {
                radio: radio("ghost"),
                error: "x".into(),
            },
        );
        rig.at(
            0,
            GatewayEvent::ChannelStatus {
                channel: "elsewhere".into(),
                online: true,
                users_online: 3,
                features: Default::default(),
            },
        );
        let text = rig.metrics.render().unwrap();
        assert!(!text.contains("ghost"), "{text}");
        assert!(!text.contains("elsewhere"), "{text}");
        assert_eq!(rig.scrape().samples.len(), before);
    }

    fn disconnected(reason: DisconnectReason) -> GatewayEvent {
        GatewayEvent::Disconnected {
            reason,
            detail: "\"}\nzello_gateway_x 1".into(),
        }
    }

    #[test]
    fn disconnect_reasons_stay_a_short_fixed_list() {
        // Whatever the words, the series stay the seven made at the start.
        let mut rig = Rig::new();
        for reason in [
            DisconnectReason::Kicked,
            DisconnectReason::Other,
            DisconnectReason::Network,
            DisconnectReason::Kicked,
        ] {
            rig.at(0, disconnected(reason));
        }
        let scrape = rig.scrape();
        let reasons: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "zello_gateway_disconnects_total")
            .collect();
        assert_eq!(reasons.len(), DisconnectReason::ALL.len());
        for reason in DisconnectReason::ALL {
            let expected = match reason {
                DisconnectReason::Kicked => 2.0,
                DisconnectReason::Other | DisconnectReason::Network => 1.0,
                _ => 0.0,
            };
            assert_eq!(
                rig.value(
                    "zello_gateway_disconnects_total",
                    &[("reason", reason.as_str())]
                ),
                expected,
                "{reason}"
            );
        }
    }

    #[test]
    fn messages_not_played_and_inhibits_are_counted_by_outcome() {
        let mut rig = Rig::new();
        let r = [("radio", "vhf1")];
        assert_eq!(rig.value("zello_gateway_radio_tx_inhibited", &r), 0.0);
        rig.at(
            0,
            GatewayEvent::TxInhibited {
                radio: radio("vhf1"),
                reason: Some("site work".into()),
            },
        );
        assert_eq!(rig.value("zello_gateway_radio_tx_inhibited", &r), 1.0);
        for (stream_id, outcome) in [
            (30, MessageOutcome::Inhibited),
            (31, MessageOutcome::Inhibited),
            (32, MessageOutcome::Busy),
            (33, MessageOutcome::TooOld),
        ] {
            rig.at(
                10,
                GatewayEvent::Incoming {
                    radio: radio("vhf1"),
                    stream_id,
                    from: ALICE.into(),
                    codec: MessageCodec::default(),
                },
            );
            rig.at(
                0,
                GatewayEvent::Played {
                    radio: radio("vhf1"),
                    stream_id,
                    from: ALICE.into(),
                    outcome,
                    packets: 0,
                    concealed: 0,
                    dropped: 0,
                    duration_ms: 0,
                    unkeyed_ms: 0,
                    peak_dbfs: None,
                    rms_dbfs: None,
                },
            );
        }
        assert_eq!(
            messages(&rig, "vhf1", "dispatch", "from_channel", "inhibited"),
            2.0
        );
        assert_eq!(
            messages(&rig, "vhf1", "dispatch", "from_channel", "dropped"),
            2.0
        );
        rig.at(
            0,
            GatewayEvent::TxAllowed {
                radio: radio("vhf1"),
            },
        );
        assert_eq!(rig.value("zello_gateway_radio_tx_inhibited", &r), 0.0);
    }

    #[test]
    fn an_older_state_never_lowers_a_total() {
        let mut rig = Rig::new();
        let early = rig.state.clone();
        duplex_message(&mut rig);
        rig.metrics.set_from(&early);
        let r = [("radio", "vhf1")];
        assert_eq!(rig.value("zello_gateway_radio_keyups_total", &r), 1.0);
        assert_eq!(
            rig.value("zello_gateway_radio_transmit_seconds_total", &r),
            3.0
        );
    }

    #[test]
    fn odd_radio_and_channel_names_are_escaped() {
        let metrics = Metrics::new([("a\"b", "c\\d\ne")], 0);
        let text = metrics.render().unwrap();
        assert!(text.contains(r#"radio="a\"b""#), "{text}");
        assert!(text.contains(r#"channel="c\\d\ne""#), "{text}");
        assert!(!text.contains("d\ne"), "{text}");
    }

    #[test]
    fn the_api_counts_its_own_sockets() {
        let rig = Rig::new();
        let m = &rig.metrics;
        m.ws_opened();
        m.ws_opened();
        m.ws_closed();
        m.ws_events_sent(41);
        m.ws_events_sent(1);
        m.ws_lagged();
        m.ws_slow_consumer_disconnected();
        assert_eq!(rig.value("zello_gateway_api_ws_connections", &[]), 1.0);
        assert_eq!(
            rig.value("zello_gateway_api_ws_events_sent_total", &[]),
            42.0
        );
        assert_eq!(rig.value("zello_gateway_api_ws_lagged_total", &[]), 1.0);
        assert_eq!(
            rig.value("zello_gateway_api_ws_slow_consumer_disconnects_total", &[]),
            1.0
        );
    }
}
