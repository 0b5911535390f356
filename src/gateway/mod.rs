//! The bridge between radios and their Zello channels.
//!
//! One session serves every radio; a router hands each radio the session events of its
//! channel. Each radio has a codec engine thread ([`crate::audio::engine`]) and a bridge task
//! (`bridge`) that keys PTT, starts and ends messages, and keeps half duplex.

mod bridge;
mod chatter;
pub mod machine;
pub mod parts;
pub mod ptt_watch;

use crate::alarms::AlarmsConfig;
use crate::audio::engine::{self, Engine};
use crate::audio::opus::EncoderSettings;
use crate::audio::{AudioInput, AudioOutput};
use crate::radio::{CarrierDetect, Ptt, RadioError};
use crate::service::Liveness;
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{self, OutgoingEnd, SessionConfig, SessionEvent, SessionHandle};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The name the Zello session task's heartbeat is registered under.
pub const SESSION_PART: &str = "zello session";

/// What the gateway did, for timelines, tests and status displays.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent {
    LoggedOn,
    LogonRefused(String),
    Disconnected(String),
    ChannelStatus {
        channel: String,
        online: bool,
        users_online: u32,
    },
    CarrierUp {
        radio: String,
    },
    CarrierDown {
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
        duration_ms: u64,
        peak_dbfs: f32,
        rms_dbfs: f32,
        outcome: OutgoingEnd,
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
        duration_ms: u64,
        /// How long the transmitter was found unkeyed while the message played (at most;
        /// 0: it stayed keyed, or its state cannot be read back): the message was
        /// interrupted, not played in full.
        unkeyed_ms: u64,
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

/// Holds a PTT line and unkeys it when dropped, so every way out of a bridge (return, error,
/// panic unwinding) releases the transmitter.
pub struct PttGuard {
    ptt: Box<dyn Ptt>,
    keyed: bool,
}

impl PttGuard {
    /// Takes the line and makes sure it starts unkeyed.
    pub fn new(mut ptt: Box<dyn Ptt>) -> Result<Self, RadioError> {
        ptt.set(false)?;
        Ok(PttGuard { ptt, keyed: false })
    }

    /// Keys the transmitter.
    pub fn key(&mut self) -> Result<(), RadioError> {
        self.ptt.set(true)?;
        self.keyed = true;
        Ok(())
    }

    /// Unkeys the transmitter (always sent to the line, even if it should already be off).
    pub fn unkey(&mut self) -> Result<(), RadioError> {
        self.keyed = false;
        self.ptt.set(false)
    }

    /// Whether we keyed it.
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// A second handle reading the line's state back ([`Ptt::readback`]).
    pub fn readback(&self) -> Option<Box<dyn crate::radio::PttReadback>> {
        self.ptt.readback()
    }

    /// Checks that the interface answers ([`Ptt::check`]); only while unkeyed, so a
    /// check never touches a transmission of ours.
    pub fn check(&mut self) -> Result<(), RadioError> {
        if self.keyed {
            return Ok(());
        }
        self.ptt.check()
    }
}

impl Drop for PttGuard {
    fn drop(&mut self) {
        if let Err(e) = self.ptt.set(false) {
            error!(ptt = %self.ptt.describe(), error = %e, "cannot unkey the transmitter on the way out");
        }
    }
}

/// Everything one radio is made of.
pub struct RadioParts {
    pub name: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub header: CodecHeader,
    pub encoder: EncoderSettings,
    pub timers: machine::Timers,
    pub rx_audio: crate::audio::dsp::RxSettings,
    pub tx_audio: crate::audio::dsp::TxSettings,
    pub playout: crate::audio::playout::PlayoutSettings,
    /// Courtesy tone and station identification, at the output's sample rate.
    pub courtesy_tone: Option<Vec<i16>>,
    pub identification: Option<Vec<i16>>,
    pub input: Box<dyn AudioInput>,
    pub output: Box<dyn AudioOutput>,
    pub carrier: Box<dyn CarrierDetect>,
    pub ptt: Box<dyn Ptt>,
}

impl RadioParts {
    /// A radio on `channel` made of these devices, with every setting at its default (the
    /// apps' codec header and encoder, default timers, audio chains and playout, no tones).
    /// Set the other fields on the result.
    pub fn new(
        name: impl Into<String>,
        channel: impl Into<String>,
        input: Box<dyn AudioInput>,
        output: Box<dyn AudioOutput>,
        carrier: Box<dyn CarrierDetect>,
        ptt: Box<dyn Ptt>,
    ) -> RadioParts {
        RadioParts {
            name: name.into(),
            channel: channel.into(),
            recipient: None,
            header: CodecHeader::default(),
            encoder: EncoderSettings::default(),
            timers: machine::Timers::default(),
            rx_audio: Default::default(),
            tx_audio: Default::default(),
            playout: Default::default(),
            courtesy_tone: None,
            identification: None,
            input,
            output,
            carrier,
            ptt,
        }
    }
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error("radio {radio}: {message}")]
    Radio { radio: String, message: String },
}

/// Who ticks the radios' codec engines.
pub enum EngineDrive {
    /// Each engine ticks on a thread of its own at real-time deadlines
    /// ([`engine::spawn`]): what the daemon does.
    Threads,
    /// The engines are handed to the caller, who calls [`Engine::tick`] at a pace of its
    /// choosing (the benchmark runs them faster than real time). The caller keeps ticking
    /// until the gateway has stopped, then drops them.
    Caller(oneshot::Sender<DrivenParts>),
}

/// What [`run_with`] hands over with [`EngineDrive::Caller`], once every radio is set up.
pub struct DrivenParts {
    /// One engine per radio, in the order the radios were given.
    pub engines: Vec<Engine>,
    /// The gateway's session, for its counters ([`SessionHandle::stats`]).
    pub session: SessionHandle,
}

/// What [`run_with`] does beyond [`run`]; the default is what [`run`] does.
pub struct RunOptions {
    /// Who ticks the codec engines (default: a thread each).
    pub drive: EngineDrive,
    /// Where the Zello session task (`zello session`) and each radio's codec thread
    /// (`codec NAME`) beat, for systemd's [`Watchdog`](crate::service::Watchdog).
    pub liveness: Liveness,
    /// Leaving Zello while radio hardware has failed ([`crate::alarms`]), with settings a
    /// reload may change; `None`: never.
    pub alarms: Option<tokio::sync::watch::Receiver<AlarmsConfig>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            drive: EngineDrive::Threads,
            liveness: Liveness::new(),
            alarms: None,
        }
    }
}

/// Runs the gateway until `shutdown` is cancelled. `observer` receives what happens.
pub async fn run(
    session_config: SessionConfig,
    radios: Vec<RadioParts>,
    shutdown: CancellationToken,
    observer: broadcast::Sender<GatewayEvent>,
) -> Result<(), GatewayError> {
    run_with(
        session_config,
        radios,
        shutdown,
        observer,
        RunOptions::default(),
    )
    .await
}

/// [`run`], with the watchdog's heartbeats, Zello Alarms, or the engines ticked by the
/// caller (see [`RunOptions`]).
pub async fn run_with(
    session_config: SessionConfig,
    radios: Vec<RadioParts>,
    shutdown: CancellationToken,
    observer: broadcast::Sender<GatewayEvent>,
    options: RunOptions,
) -> Result<(), GatewayError> {
    let RunOptions {
        drive,
        liveness,
        alarms,
    } = options;
    let session_stop = CancellationToken::new();
    let (handle, events, session_task) = session::spawn_watched(
        session_config,
        session_stop.clone(),
        Some(liveness.register(SESSION_PART)),
    )?;
    // Subscribed before any radio starts, so no fault goes unseen.
    let alarms_task = alarms.map(|config| {
        tokio::spawn(crate::alarms::run(
            config,
            handle.clone(),
            observer.subscribe(),
            observer.clone(),
            shutdown.clone(),
        ))
    });
    let engines_stop = CancellationToken::new();
    let mut routes: Vec<(String, mpsc::Sender<SessionEvent>)> = Vec::new();
    let mut bridges = Vec::new();
    let mut threads = Vec::new();
    let mut handed = Vec::new();
    for r in radios {
        let radio_err = |message: String| GatewayError::Radio {
            radio: r.name.clone(),
            message,
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(2048);
        let (ev_tx, ev_rx) = mpsc::channel(1024);
        let engine = Engine::new(r.input, r.output, r.carrier, &r.encoder, cmd_rx, ev_tx)
            .and_then(|e| e.with_audio(&r.rx_audio, &r.tx_audio, r.playout))
            .map_err(|e| radio_err(e.to_string()))?;
        let ptt = PttGuard::new(r.ptt).map_err(|e| radio_err(e.to_string()))?;
        match drive {
            EngineDrive::Threads => {
                let beat = liveness.register(format!("codec {}", r.name));
                let thread = engine::spawn(engine, &r.name, engines_stop.clone(), Some(beat))
                    .map_err(|e| radio_err(format!("cannot start the codec thread: {e}")))?;
                threads.push(thread);
            }
            EngineDrive::Caller(_) => handed.push(engine),
        }
        let (route_tx, route_rx) = mpsc::channel(2048);
        routes.push((r.channel.clone(), route_tx));
        info!(radio = %r.name, channel = %r.channel, "radio ready");
        let bridge = bridge::Bridge {
            name: r.name,
            channel: r.channel,
            recipient: r.recipient,
            header: r.header,
            timers: r.timers,
            courtesy_tone: r.courtesy_tone,
            identification: r.identification,
            session: handle.clone(),
            ptt,
            engine_tx: cmd_tx,
            engine_rx: ev_rx,
            events: route_rx,
            observer: observer.clone(),
        };
        bridges.push(tokio::spawn(bridge.run(shutdown.clone())));
    }
    if let EngineDrive::Caller(to) = drive {
        // A caller that went away no longer ticks: the bridges notice the engines are gone.
        let _ = to.send(DrivenParts {
            engines: handed,
            session: handle.clone(),
        });
    }
    let router = tokio::spawn(route(events, routes, observer.clone()));
    shutdown.cancelled().await;
    if let Some(task) = alarms_task {
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }
    // Bridges unkey and end their messages first, then the session says goodbye.
    for b in bridges {
        if let Err(e) = b.await {
            error!(error = %e, "a radio bridge failed");
        }
    }
    session_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), session_task).await;
    router.abort();
    engines_stop.cancel();
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    info!("gateway stopped");
    Ok(())
}

/// Hands session events to the radios they concern.
async fn route(
    mut events: mpsc::Receiver<SessionEvent>,
    radios: Vec<(String, mpsc::Sender<SessionEvent>)>,
    observer: broadcast::Sender<GatewayEvent>,
) {
    let mut streams: HashMap<u32, Vec<usize>> = HashMap::new();
    let on_channel = |channel: &str| -> Vec<usize> {
        radios
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| c == channel)
            .map(|(i, _)| i)
            .collect()
    };
    while let Some(ev) = events.recv().await {
        let targets: Vec<usize> = match &ev {
            SessionEvent::Channel { status, .. } => {
                let _ = observer.send(GatewayEvent::ChannelStatus {
                    channel: status.channel.clone(),
                    online: status.status == crate::zello::protocol::ChannelState::Online,
                    users_online: status.users_online,
                });
                on_channel(&status.channel)
            }
            SessionEvent::IncomingStart {
                stream_id, channel, ..
            } => {
                let t = on_channel(channel);
                streams.insert(*stream_id, t.clone());
                t
            }
            SessionEvent::IncomingAudio { stream_id, .. } => {
                let Some(t) = streams.get(stream_id) else {
                    continue;
                };
                for &i in t {
                    // Audio never blocks the router; a radio that falls behind loses packets.
                    let _ = radios[i].1.try_send(ev.clone());
                }
                continue;
            }
            SessionEvent::IncomingEnd { stream_id, .. } => {
                streams.remove(stream_id).unwrap_or_default()
            }
            SessionEvent::OutgoingStarted { .. } | SessionEvent::OutgoingEnded { .. } => {
                (0..radios.len()).collect()
            }
            SessionEvent::LoggedOn { .. } => {
                let _ = observer.send(GatewayEvent::LoggedOn);
                continue;
            }
            SessionEvent::LogonRefused { code } => {
                let _ = observer.send(GatewayEvent::LogonRefused(code.to_string()));
                continue;
            }
            SessionEvent::Disconnected { reason } => {
                let _ = observer.send(GatewayEvent::Disconnected(reason.clone()));
                continue;
            }
            SessionEvent::Text(t) => {
                let _ = observer.send(GatewayEvent::Text {
                    channel: t.channel.clone(),
                    from: t.from.clone(),
                    text: t.text.clone(),
                });
                continue;
            }
            SessionEvent::Location(_) | SessionEvent::Image { .. } => continue,
            SessionEvent::ServerError(code) => {
                warn!(error = %code, "server error");
                continue;
            }
        };
        for i in targets {
            let _ = radios[i].1.send(ev.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests;
