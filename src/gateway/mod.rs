//! The bridge between radios and their Zello channels.
//!
//! One session serves every radio; a router hands each radio the session events of its
//! channel. Each radio has a codec engine thread ([`engine`]), a PTT thread
//! ([`ptt_thread`]) and a bridge task (`bridge`) that keys PTT, starts and ends messages,
//! and keeps half duplex. All three run in the radio's span ([`radio_span`]), so every log
//! line they write names the radio.

mod bridge;
mod chatter;
pub mod control;
pub mod engine;
pub mod link;
pub mod machine;
pub mod meters;
pub mod ptt_thread;
pub mod ptt_watch;

use crate::audio::opus::EncoderSettings;
use crate::audio::{AudioInput, AudioOutput};
use crate::radio::{CarrierDetect, Ptt, RadioError};
use crate::service::Liveness;
pub use crate::state::GatewayEvent;
use crate::state::{ChannelFeatures, StateHub};
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{self, SessionConfig, SessionEvent, SessionHandle};
pub use control::{ControlError, Controls};
use engine::Engine;
pub use meters::Meters;
use ptt_thread::PttThread;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span, debug, error, info, warn};

/// The span of everything one radio does (its bridge task, codec thread and PTT thread):
/// its `radio` field is on every line written inside, and reaches journald as `RADIO`. At
/// error level so that no log filter leaves the lines inside without it; a root span, so a
/// radio started from inside another's span (one waiting for its hardware) names it once.
pub fn radio_span(name: &str) -> Span {
    tracing::error_span!(parent: None, "radio", radio = %name)
}

/// The span of one message (from the channel to the radio, or from the radio to the
/// channel) inside a radio's: its `stream_id` reaches journald as `STREAM_ID`.
pub fn message_span(stream_id: u32) -> Span {
    tracing::error_span!("message", stream_id)
}

/// Shows the operator's inhibit of `radio` (`Some`) or its absence in the state, unless the
/// state already shows just that: publishes `TxInhibited` with the reason, or `TxAllowed`.
fn show_inhibit(observer: &StateHub, radio: &str, inhibit: Option<&control::Inhibited>) {
    let shown = observer
        .watch()
        .borrow()
        .radio(radio)
        .and_then(|r| r.tx_inhibited.as_ref().map(|i| i.reason.clone()));
    let wanted = inhibit.map(|i| i.reason.clone());
    if shown == wanted {
        return;
    }
    let radio = radio.to_string();
    observer.publish(match inhibit {
        Some(i) => GatewayEvent::TxInhibited {
            radio,
            reason: i.reason.clone(),
        },
        None => GatewayEvent::TxAllowed { radio },
    });
}

/// The name the Zello session task's heartbeat is registered under.
pub const SESSION_PART: &str = "zello session";

/// Packets to play queued for a codec engine at most (about two minutes at 60 ms).
const ENGINE_AUDIO_QUEUE: usize = 2048;
/// Encoded packets queued for a bridge at most (about a minute at 60 ms).
const BRIDGE_AUDIO_QUEUE: usize = 1024;

/// Holds a PTT line and unkeys it when dropped, so every way out (return, error, panic
/// unwinding) releases the transmitter. The gateway's guards live on each radio's PTT
/// thread ([`ptt_thread`]).
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

    /// The line, for log lines ("gpio 17", "rigctld 127.0.0.1:4532", ...).
    pub fn describe(&self) -> String {
        self.ptt.describe()
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
    /// Settings no device can fix (the codec engine's): the gateway stops rather than
    /// trying again.
    #[error("radio {radio}: {message}; fix the radio's settings and restart the gateway")]
    Settings { radio: String, message: String },
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

/// A radio whose hardware could not be opened at start: the gateway tries again with
/// backoff ([`HARDWARE_RETRY_FIRST`] doubling up to [`HARDWARE_RETRY_MAX`]) and starts it
/// once its devices open, while the other radios and the Zello session run.
pub struct WaitingRadio {
    pub name: String,
    pub channel: String,
    /// Why its devices did not open (the first time).
    pub error: String,
    /// Opens the radio's devices again; called on a blocking thread.
    pub open: Box<dyn FnMut() -> Result<RadioParts, OpenError> + Send>,
}

/// Why a waiting radio's devices did not open this time (the composition root's own error,
/// with its sources).
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// The first wait before a radio's missing hardware is tried again.
pub const HARDWARE_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two tries: a USB card or rigctld that appears is picked up
/// within this time.
pub const HARDWARE_RETRY_MAX: Duration = Duration::from_secs(30);

/// The next wait before trying missing hardware again: doubled, capped.
pub fn next_hardware_retry(delay: Duration) -> Duration {
    (delay * 2).min(HARDWARE_RETRY_MAX)
}

/// A task started with the gateway's Zello session: it gets the session, the gateway's
/// state, and a token cancelled when the gateway stops.
pub type SessionHook = Box<
    dyn FnOnce(SessionHandle, StateHub, CancellationToken) -> tokio::task::JoinHandle<()> + Send,
>;

/// What [`run_with`] does beyond [`run`]; the default is what [`run`] does.
pub struct RunOptions {
    /// Who ticks the codec engines (default: a thread each).
    pub drive: EngineDrive,
    /// Where the Zello session task (`zello session`), each radio's codec thread
    /// (`codec NAME`) and each radio's bridge task (`bridge NAME`) beat, for systemd's
    /// [`Watchdog`](crate::service::Watchdog).
    pub liveness: Liveness,
    /// Started with the Zello session once it exists, before any radio, and given until
    /// the gateway stops (its token is cancelled) plus 200 ms to finish: what follows the
    /// state and acts with the session (the daemon's Zello Alarms). `None`: nothing.
    pub on_session: Option<SessionHook>,
    /// Radios waiting for their hardware; each gets a codec thread of its own once it
    /// starts, whatever [`RunOptions::drive`] says.
    pub waiting: Vec<WaitingRadio>,
    /// The operator's controls (TX inhibit, unkey), listing every radio; the inhibits in
    /// it apply from each radio's start. `None`: controls of the gateway's own, none
    /// inhibited, that nothing outside steers.
    pub controls: Option<Controls>,
    /// Where each radio's codec engine writes its live levels (`meters.meter(NAME)`); keep
    /// a clone to read them. Default: a registry of its own that nobody reads.
    pub meters: Meters,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            drive: EngineDrive::Threads,
            liveness: Liveness::new(),
            on_session: None,
            waiting: Vec::new(),
            controls: None,
            meters: Meters::new(),
        }
    }
}

/// The answer to a radio's first unkey, on its PTT thread.
struct FirstUnkey {
    radio: String,
    first: oneshot::Receiver<Result<(), RadioError>>,
}

impl FirstUnkey {
    fn into_error(
        radio: String,
        result: Result<Result<(), RadioError>, oneshot::error::RecvError>,
    ) -> Result<(), GatewayError> {
        let message = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the PTT thread stopped before unkeying the line".to_string(),
        };
        Err(GatewayError::Radio { radio, message })
    }

    /// Waits for it (async callers).
    async fn done(self) -> Result<(), GatewayError> {
        let result = self.first.await;
        Self::into_error(self.radio, result)
    }

    /// Waits for it (blocking callers).
    fn wait(self) -> Result<(), GatewayError> {
        let result = self.first.blocking_recv();
        Self::into_error(self.radio, result)
    }
}

/// Runs the gateway until `shutdown` is cancelled. What happens is published to `state`.
pub async fn run(
    session_config: SessionConfig,
    radios: Vec<RadioParts>,
    shutdown: CancellationToken,
    state: StateHub,
) -> Result<(), GatewayError> {
    run_with(
        session_config,
        radios,
        shutdown,
        state,
        RunOptions::default(),
    )
    .await
}

/// What every radio's start shares.
#[derive(Clone)]
struct Shared {
    session: SessionHandle,
    observer: StateHub,
    liveness: Liveness,
    engines_stop: CancellationToken,
    shutdown: CancellationToken,
    controls: Controls,
    meters: Meters,
}

impl Shared {
    /// A radio's codec engine and bridge, built but not started; the bridge takes the
    /// session events of its channel from `events`. The radio's PTT thread has started: the
    /// receiver says whether it could unkey the line (the radio is not to start if not).
    fn assemble(
        &self,
        r: RadioParts,
        events: mpsc::Receiver<SessionEvent>,
    ) -> Result<(Engine, bridge::Bridge, FirstUnkey), GatewayError> {
        let radio_err = |message: String| GatewayError::Radio {
            radio: r.name.clone(),
            message,
        };
        let controls = self.controls.subscribe(&r.name).ok_or_else(|| {
            radio_err("the gateway's controls do not list this radio".to_string())
        })?;
        // Only audio counts against these bounds: control is never dropped.
        let (cmd_tx, cmd_rx) = link::channel(ENGINE_AUDIO_QUEUE);
        let (ev_tx, ev_rx) = link::channel(BRIDGE_AUDIO_QUEUE);
        // The devices are open: what the engine refuses is its settings, which no device
        // can fix.
        let engine = Engine::new(r.input, r.output, r.carrier, &r.encoder, cmd_rx, ev_tx)
            .and_then(|e| e.with_audio(&r.rx_audio, &r.tx_audio, r.playout))
            .map_err(|e| GatewayError::Settings {
                radio: r.name.clone(),
                message: e.to_string(),
            })?
            .with_meter(self.meters.meter(&r.name));
        let (ptt, first) = PttThread::spawn(r.ptt, &r.name, radio_span(&r.name))
            .map_err(|e| radio_err(format!("cannot start the PTT thread: {e}")))?;
        let first = FirstUnkey {
            radio: r.name.clone(),
            first,
        };
        let bridge = bridge::Bridge {
            name: r.name,
            channel: r.channel,
            recipient: r.recipient,
            header: r.header,
            timers: r.timers,
            courtesy_tone: r.courtesy_tone,
            identification: r.identification,
            session: self.session.clone(),
            ptt,
            engine_tx: cmd_tx,
            engine_rx: ev_rx,
            events,
            observer: self.observer.clone(),
            controls,
            heartbeat: None,
        };
        Ok((engine, bridge, first))
    }

    /// Starts a radio's bridge task in the radio's span, watched as `bridge NAME`.
    fn spawn_bridge(&self, mut bridge: bridge::Bridge) -> tokio::task::JoinHandle<()> {
        let span = radio_span(&bridge.name);
        bridge.heartbeat = Some(self.liveness.register(format!("bridge {}", bridge.name)));
        tokio::spawn(bridge.run(self.shutdown.clone()).instrument(span))
    }

    /// Starts a radio's codec engine on a thread of its own.
    fn spawn_engine(
        &self,
        engine: Engine,
        name: &str,
    ) -> Result<std::thread::JoinHandle<()>, GatewayError> {
        let beat = self.liveness.register(format!("codec {name}"));
        engine::spawn(engine, name, self.engines_stop.clone(), Some(beat)).map_err(|e| {
            GatewayError::Radio {
                radio: name.to_string(),
                message: format!("cannot start the codec thread: {e}"),
            }
        })
    }

    /// Waits for a radio's hardware, then runs the radio until shutdown. Returns its codec
    /// thread, if it started. Settings that no device can fix stop the gateway (`shutdown`
    /// is cancelled) and are returned.
    async fn wait_and_run(
        self,
        radio: WaitingRadio,
        mut route: mpsc::Receiver<SessionEvent>,
    ) -> Result<Option<std::thread::JoinHandle<()>>, GatewayError> {
        let WaitingRadio {
            name,
            mut open,
            error: mut last_error,
            ..
        } = radio;
        let mut delay = HARDWARE_RETRY_FIRST;
        let mut next_try = tokio::time::Instant::now() + delay;
        // The channel's last status, for the bridge once it starts.
        let mut channel_status = None;
        // The operator may inhibit or allow the radio meanwhile: the state shows it.
        let mut inhibit = self.controls.subscribe(&name).map(|c| c.inhibit);
        let (bridge_tx, engine, bridge) = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                changed = async { inhibit.as_mut()?.changed().await.ok() }, if inhibit.is_some() => {
                    match changed {
                        Some(()) => {
                            let now = inhibit.as_mut().and_then(|i| i.borrow_and_update().clone());
                            show_inhibit(&self.observer, &name, now.as_ref());
                        }
                        None => inhibit = None,
                    }
                }
                ev = route.recv() => match ev {
                    Some(ev @ SessionEvent::Channel { .. }) => channel_status = Some(ev),
                    // Messages from the channel are missed while the radio is not there.
                    Some(_) => {}
                    None => return Ok(None),
                },
                _ = tokio::time::sleep_until(next_try) => {
                    let (tx, rx) = mpsc::channel(2048);
                    // Opening the devices and setting the PTT line unkeyed can block (a
                    // rigctld that does not answer), so it is done off the runtime's
                    // thread, which carries the other radios' audio meanwhile.
                    let shared = self.clone();
                    let job = tokio::task::spawn_blocking(move || {
                        let assembled = open().map(|p| {
                            shared.assemble(p, rx).and_then(|(engine, bridge, first)| {
                                first.wait().map(|()| (engine, bridge))
                            })
                        });
                        (open, assembled)
                    });
                    // A slow try (a connect timing out) never holds the stop back.
                    let tried = tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(None),
                        tried = job => tried,
                    };
                    let assembled = match tried {
                        Ok((back, assembled)) => {
                            open = back;
                            assembled
                        }
                        Err(e) => {
                            error!(error = %e, "opening the radio's hardware failed; the radio stays stopped");
                            return Ok(None);
                        }
                    };
                    let failed = match assembled {
                        Err(e) => e.to_string(),
                        Ok(Ok((engine, bridge))) => break (tx, engine, bridge),
                        Ok(Err(e @ GatewayError::Settings { .. })) => {
                            error!(error = %e, "the radio's settings cannot work with its devices: the gateway stops");
                            self.shutdown.cancel();
                            return Err(e);
                        }
                        Ok(Err(e)) => e.to_string(),
                    };
                    delay = next_hardware_retry(delay);
                    next_try = tokio::time::Instant::now() + delay;
                    // One line at warn per new error (a device that appeared but fails
                    // otherwise), not one per try.
                    if failed != last_error {
                        warn!(event = "hardware_waiting", error = %failed, retry_in_s = delay.as_secs(), "radio still waiting for its hardware, with a new error");
                        last_error = failed;
                    } else {
                        debug!(error = %failed, retry_in_s = delay.as_secs(), "hardware still missing");
                    }
                }
            }
        };
        let thread = match self.spawn_engine(engine, &name) {
            Ok(thread) => thread,
            Err(e) => {
                error!(error = %e, "the radio cannot start");
                return Ok(None);
            }
        };
        info!(event = "hardware_found", "hardware found: radio ready");
        self.observer.publish(GatewayEvent::HardwareWaiting {
            radio: name.clone(),
            error: None,
        });
        if let Some(status) = channel_status {
            let _ = bridge_tx.try_send(status);
        }
        let bridge = self.spawn_bridge(bridge);
        let forward = tokio::spawn(async move {
            while let Some(ev) = route.recv().await {
                if bridge_tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        if let Err(e) = bridge.await {
            error!(error = %e, "a radio bridge failed");
        }
        forward.abort();
        Ok(Some(thread))
    }
}

/// [`run`], with the watchdog's heartbeats, a task on the session, radios waiting for their
/// hardware, or the engines ticked by the caller (see [`RunOptions`]). A waiting radio whose
/// devices open but whose settings cannot work with them ([`GatewayError::Settings`]) stops
/// the gateway with that error.
pub async fn run_with(
    session_config: SessionConfig,
    radios: Vec<RadioParts>,
    shutdown: CancellationToken,
    observer: StateHub,
    options: RunOptions,
) -> Result<(), GatewayError> {
    let RunOptions {
        drive,
        liveness,
        on_session,
        waiting,
        controls,
        meters,
    } = options;
    let controls = controls.unwrap_or_else(|| {
        Controls::new(
            radios
                .iter()
                .map(|r| r.name.clone())
                .chain(waiting.iter().map(|w| w.name.clone())),
        )
    });
    // The caller's shutdown, or a radio's settings that no device can fix.
    let stop = shutdown.child_token();
    let session_stop = CancellationToken::new();
    let (handle, events, session_task) = session::spawn_watched(
        session_config,
        session_stop.clone(),
        Some(liveness.register(SESSION_PART)),
    )?;
    let hook_task = on_session.map(|hook| hook(handle.clone(), observer.clone(), stop.clone()));
    let shared = Shared {
        session: handle.clone(),
        observer: observer.clone(),
        liveness: liveness.clone(),
        engines_stop: CancellationToken::new(),
        shutdown: stop.clone(),
        controls,
        meters,
    };
    // The inhibits in force show in the state from the start, radios waiting for their
    // hardware included (each bridge applies its own before anything can key).
    for (radio, inhibit) in shared.controls.inhibits() {
        warn!(event = "tx_inhibited", radio = %radio, reason = inhibit.reason.as_deref().unwrap_or(""),
            "transmitting inhibited by the operator (kept from before): the radio does not key until allowed");
        observer.publish(GatewayEvent::TxInhibited {
            radio,
            reason: inhibit.reason,
        });
    }
    let mut routes: Vec<(String, mpsc::Sender<SessionEvent>)> = Vec::new();
    let mut bridges = Vec::new();
    let mut threads = Vec::new();
    let mut handed = Vec::new();
    for r in radios {
        let (route_tx, route_rx) = mpsc::channel(2048);
        routes.push((r.channel.clone(), route_tx));
        let (name, channel) = (r.name.clone(), r.channel.clone());
        let (engine, bridge, first) = shared.assemble(r, route_rx)?;
        // The first unkey runs on the radio's PTT thread; the runtime's thread only waits.
        first.done().await?;
        match drive {
            EngineDrive::Threads => threads.push(shared.spawn_engine(engine, &name)?),
            EngineDrive::Caller(_) => handed.push(engine),
        }
        info!(radio = %name, channel = %channel, "radio ready");
        bridges.push(shared.spawn_bridge(bridge));
    }
    let mut waiters = Vec::new();
    for w in waiting {
        let (route_tx, route_rx) = mpsc::channel(2048);
        routes.push((w.channel.clone(), route_tx));
        warn!(event = "hardware_waiting", radio = %w.name, channel = %w.channel, error = %w.error,
            "radio waiting for its hardware: it starts once its devices open (tried again every {} s at most); the other radios and Zello go on",
            HARDWARE_RETRY_MAX.as_secs());
        observer.publish(GatewayEvent::HardwareWaiting {
            radio: w.name.clone(),
            error: Some(w.error.clone()),
        });
        let span = radio_span(&w.name);
        waiters.push(tokio::spawn(
            shared.clone().wait_and_run(w, route_rx).instrument(span),
        ));
    }
    if let EngineDrive::Caller(to) = drive {
        // A caller that went away no longer ticks: the bridges notice the engines are gone.
        let _ = to.send(DrivenParts {
            engines: handed,
            session: handle.clone(),
        });
    }
    let router = tokio::spawn(route(events, routes, observer.clone()));
    observer.publish(GatewayEvent::Started);
    stop.cancelled().await;
    if let Some(task) = hook_task {
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }
    // Bridges unkey and end their messages first, then the session says goodbye.
    for b in bridges {
        if let Err(e) = b.await {
            error!(error = %e, "a radio bridge failed");
        }
    }
    let mut failed = None;
    for w in waiters {
        match w.await {
            Ok(Ok(thread)) => threads.extend(thread),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => error!(error = %e, "a radio waiting for its hardware failed"),
        }
    }
    session_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), session_task).await;
    router.abort();
    shared.engines_stop.cancel();
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    info!("gateway stopped");
    failed.map_or(Ok(()), Err)
}

/// Hands session events to the radios they concern.
async fn route(
    mut events: mpsc::Receiver<SessionEvent>,
    radios: Vec<(String, mpsc::Sender<SessionEvent>)>,
    observer: StateHub,
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
                observer.publish(GatewayEvent::ChannelStatus {
                    channel: status.channel.clone(),
                    online: status.status == crate::zello::protocol::ChannelState::Online,
                    users_online: status.users_online,
                    features: ChannelFeatures {
                        images: status.images_supported,
                        texting: status.texting_supported,
                        locations: status.locations_supported,
                    },
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
                observer.publish(GatewayEvent::LoggedOn);
                continue;
            }
            SessionEvent::LogonRefused { code } => {
                observer.publish(GatewayEvent::LogonRefused(code.to_string()));
                continue;
            }
            SessionEvent::Disconnected { reason, detail } => {
                observer.publish(GatewayEvent::Disconnected {
                    reason: *reason,
                    detail: detail.clone(),
                });
                continue;
            }
            SessionEvent::ConnectFailed { error, retry_in } => {
                observer.publish(GatewayEvent::ConnectFailed {
                    error: error.clone(),
                    retry_in: *retry_in,
                });
                continue;
            }
            SessionEvent::Text(t) => {
                observer.publish(GatewayEvent::Text {
                    channel: t.channel.clone(),
                    from: t.from.clone(),
                    text: t.text.clone(),
                });
                continue;
            }
            SessionEvent::Location(l) => {
                observer.publish(GatewayEvent::Location {
                    channel: l.channel.clone(),
                    from: l.from.clone(),
                    latitude: l.latitude,
                    longitude: l.longitude,
                    accuracy: l.accuracy,
                    formatted_address: l.formatted_address.clone(),
                });
                continue;
            }
            SessionEvent::Image { .. } => continue,
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
