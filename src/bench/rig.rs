//! What the benchmark drives: the emulator on a thread of its own, gateways whose codec
//! engines the benchmark ticks itself, and radios whose audio goes through the sound card's
//! rings ([`RingCapture`], [`RingPlayback`]) with the benchmark playing the sound card.

use super::dashboard::Dashboard;
use super::{BenchError, cpu_time};
use crate::api::protocol::Codec;
use crate::api::server::ApiRadio;
use crate::audio::opus::EncoderSettings;
use crate::audio::sound::rings::{RingCapture, RingPlayback};
use crate::audio::{AudioError, AudioInput, AudioOutput, CODEC_RATE};
use crate::config::{ApiConfig, ApiTokens};
use crate::gateway::engine::Engine;
use crate::gateway::machine::Timers;
use crate::gateway::{self, DrivenParts, EngineDrive, GatewayError, RadioParts};
use crate::radio::sim::{FlagCarrier, SimPtt};
use crate::secret::Secret;
use crate::state::{GatewayEvent, GatewayState, StateHub};
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{SessionConfig, SessionHandle};
use crate::zello::sim::{SimConfig, SimHandle, SimServer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The sound card's rate, both ways (what most USB cards run at).
pub(crate) const CARD_RATE: u32 = 48_000;
/// One sound-card callback: 5 ms at [`CARD_RATE`].
pub(crate) const CALLBACK_FRAMES: usize = 240;
/// The duration of one callback.
pub(crate) const CALLBACK: Duration = Duration::from_millis(5);
/// Level a click crosses and silence stays below (a quarter of full scale).
pub(crate) const CLICK_THRESHOLD: u16 = 8192;
/// How long setting up a gateway (connect, log on, channel online) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) use crate::sync::lock;

/// The bridge's timers for the benchmark: messages start and end with the carrier and
/// play at once (no kerchunk filter, hang, transmitter lead or tail), and no timer cuts a
/// long run short. These are radio settings, not pipeline costs.
pub(crate) fn bench_timers() -> Timers {
    Timers {
        tx_delay: Duration::ZERO,
        tx_tail: Duration::ZERO,
        rx_hang: Duration::ZERO,
        rx_min: Duration::ZERO,
        rx_start_delay: Duration::ZERO,
        rx_max: Duration::from_secs(3600),
        tot: Duration::from_secs(3600),
        ..Timers::default()
    }
}

/// Starts a thread named `name` that builds a runtime with `build` and hands it to `run`,
/// and waits up to [`SETUP_TIMEOUT`] for `run` to send what it started, or why it could not,
/// on its channel: the thread and what it started. A runtime that cannot be built is
/// reported the same way; `what` names what is started in the error.
pub(crate) fn start_runtime_thread<T: Send + 'static>(
    name: String,
    what: String,
    build: impl FnOnce() -> std::io::Result<tokio::runtime::Runtime> + Send + 'static,
    run: impl FnOnce(tokio::runtime::Runtime, std::sync::mpsc::Sender<Result<T, String>>)
    + Send
    + 'static,
) -> Result<(JoinHandle<()>, T), BenchError> {
    let setup = |message: String| BenchError::Setup {
        what: what.clone(),
        message,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || match build() {
            Ok(rt) => run(rt, ready_tx),
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
            }
        })
        .map_err(|e| setup(e.to_string()))?;
    let started = ready_rx
        .recv_timeout(SETUP_TIMEOUT)
        .map_err(|e| setup(e.to_string()))?
        .map_err(setup)?;
    Ok((thread, started))
}

/// What a [`TimedThread`]'s runtime hears: requests for its thread's CPU time.
pub(crate) type CpuRequests = mpsc::UnboundedReceiver<std::sync::mpsc::Sender<Duration>>;

/// Answers a CPU-time request with this thread's own time (every task of a
/// current-thread runtime runs on its thread).
pub(crate) fn answer_cpu(reply: std::sync::mpsc::Sender<Duration>) {
    let _ = reply.send(cpu_time(libc::RUSAGE_THREAD).unwrap_or_default());
}

/// A thread running something beside the gateways (the emulator, a dashboard), whose CPU
/// time can be asked for so it is left out of the gateways'. Dropping it closes the request
/// channel, which stops the thread, and waits for it.
pub(crate) struct TimedThread {
    /// What runs there, for errors.
    phase: &'static str,
    requests: Option<mpsc::UnboundedSender<std::sync::mpsc::Sender<Duration>>>,
    thread: Option<JoinHandle<()>>,
}

impl TimedThread {
    /// The request channel: the sender for [`TimedThread::new`], the receiver for the
    /// thread's runtime (it answers with [`answer_cpu`] and stops once it closes).
    pub(crate) fn channel() -> (
        mpsc::UnboundedSender<std::sync::mpsc::Sender<Duration>>,
        CpuRequests,
    ) {
        mpsc::unbounded_channel()
    }

    pub(crate) fn new(
        phase: &'static str,
        requests: mpsc::UnboundedSender<std::sync::mpsc::Sender<Duration>>,
        thread: JoinHandle<()>,
    ) -> Self {
        TimedThread {
            phase,
            requests: Some(requests),
            thread: Some(thread),
        }
    }

    /// The CPU time the thread has used so far.
    pub(crate) fn cpu(&self) -> Result<Duration, BenchError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let failed = || BenchError::Failed {
            phase: self.phase,
            message: format!("the {}'s thread stopped", self.phase),
        };
        self.requests
            .as_ref()
            .ok_or_else(failed)?
            .send(tx)
            .map_err(|_| failed())?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| failed())
    }
}

impl Drop for TimedThread {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The name of the emulator's thread.
pub(crate) const EMULATOR_THREAD: &str = "bench-emulator";

/// The emulator, on a single-threaded runtime of its own so its CPU time can be told apart
/// from the gateways'.
pub(crate) struct Emulator {
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    /// The emulator itself: its log and who is online.
    pub(crate) sim: SimHandle,
    thread: TimedThread,
}

impl Emulator {
    /// Starts the emulator on 127.0.0.1 with a free port.
    pub(crate) fn start() -> Result<Emulator, BenchError> {
        let (commands, mut command_rx) = TimedThread::channel();
        let (thread, sim) = start_runtime_thread(
            EMULATOR_THREAD.into(),
            "the Zello emulator".into(),
            || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            },
            move |rt, ready_tx| {
                rt.block_on(async move {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                    let handle = match SimServer::start(addr, SimConfig::default()).await {
                        Ok(h) => h,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(handle.clone()));
                    while let Some(reply) = command_rx.recv().await {
                        answer_cpu(reply);
                    }
                    handle.shutdown();
                    handle.closed(Duration::from_secs(2)).await;
                });
            },
        )?;
        Ok(Emulator {
            addr: sim.local_addr(),
            url: sim.url(),
            sim,
            thread: TimedThread::new("emulator", commands, thread),
        })
    }

    /// The CPU time the emulator's thread has used so far.
    pub(crate) fn cpu(&self) -> Result<Duration, BenchError> {
        self.thread.cpu()
    }
}

/// Finds where clicks start in a stream of samples: a sample at or above
/// [`CLICK_THRESHOLD`] after at least 50 ms below it (a click's cycles cross the threshold
/// many times; clicks are half a second apart).
#[derive(Debug)]
pub(crate) struct Onsets {
    quiet: usize,
    hold: usize,
}

impl Onsets {
    /// A detector for audio at `rate`.
    pub(crate) fn new(rate: u32) -> Self {
        let hold = rate as usize / 20;
        Onsets { quiet: hold, hold }
    }

    /// Feeds the next samples; calls `on(index)` for each click starting in them.
    pub(crate) fn feed(&mut self, samples: &[i16], mut on: impl FnMut(usize)) {
        for (i, s) in samples.iter().enumerate() {
            if s.unsigned_abs() >= CLICK_THRESHOLD {
                if self.quiet >= self.hold {
                    on(i);
                }
                self.quiet = 0;
            } else {
                self.quiet = self.quiet.saturating_add(1);
            }
        }
    }
}

/// Notes, for the latency figures, which frames read from the capture ring hold the start
/// of a click, counted from the frame the carrier came up with.
#[derive(Debug)]
pub(crate) struct ClickWatch {
    /// Frames read since the carrier came up (`None`: not counting).
    frames: Option<u64>,
    clicks: Onsets,
    /// The index of each frame where a click starts.
    pub(crate) onsets: Vec<u64>,
}

impl Default for ClickWatch {
    fn default() -> Self {
        ClickWatch {
            frames: None,
            clicks: Onsets::new(CODEC_RATE),
            onsets: Vec::new(),
        }
    }
}

impl ClickWatch {
    fn frame_read(&mut self, frame: &[i16]) {
        let Some(n) = self.frames.as_mut() else {
            return;
        };
        let index = *n;
        let mut click = false;
        self.clicks.feed(frame, |_| click = true);
        if click {
            self.onsets.push(index);
        }
        *n += 1;
    }
}

/// The engine's side of the capture ring. The benchmark plays the sound card on the thread
/// that ticks the engine, so the lock is never contended.
struct SharedCapture {
    ring: Arc<Mutex<RingCapture>>,
    watch: Arc<Mutex<ClickWatch>>,
}

impl AudioInput for SharedCapture {
    fn sample_rate(&self) -> u32 {
        lock(&self.ring).sample_rate()
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        let ok = lock(&self.ring).read_frame(frame)?;
        if ok {
            lock(&self.watch).frame_read(frame);
        }
        Ok(ok)
    }

    fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        lock(&self.ring).skip_frame(frame)
    }
}

/// The engine's side of the playback ring.
struct SharedPlayback(Arc<Mutex<RingPlayback>>);

impl AudioOutput for SharedPlayback {
    fn sample_rate(&self) -> u32 {
        lock(&self.0).sample_rate()
    }

    fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        lock(&self.0).write_frame(frame)
    }

    fn end_of_message(&mut self) -> Result<(), AudioError> {
        lock(&self.0).end_of_message()
    }

    fn delay(&self, frame_len: usize) -> Duration {
        lock(&self.0).delay(frame_len)
    }
}

/// What a radio's receiver hears.
pub(crate) enum Source {
    Silence,
    /// `left` more samples of `samples` from `pos`, the clip repeated as needed; then silence.
    Clip {
        samples: Arc<[i16]>,
        pos: usize,
        left: usize,
    },
}

impl Source {
    /// `seconds` of `clip` at the card's rate, repeated as needed.
    pub(crate) fn clip(clip: &Arc<[i16]>, seconds: f64) -> Source {
        Source::Clip {
            samples: clip.clone(),
            pos: 0,
            left: (seconds * f64::from(CARD_RATE)).round() as usize,
        }
    }

    fn fill(&mut self, out: &mut [i16]) {
        match self {
            Source::Silence => out.fill(0),
            Source::Clip { samples, pos, left } => {
                // Whole runs of the clip at a time: the sound card's side of the benchmark
                // should cost next to nothing beside the gateway's.
                let mut out = out;
                while !out.is_empty() && *left > 0 && !samples.is_empty() {
                    let n = out.len().min(*left).min(samples.len() - *pos);
                    out[..n].copy_from_slice(&samples[*pos..*pos + n]);
                    *pos = (*pos + n) % samples.len();
                    *left -= n;
                    out = &mut out[n..];
                }
                out.fill(0);
            }
        }
    }

    /// Whether audio is left to play.
    pub(crate) fn has_audio(&self) -> bool {
        match self {
            Source::Silence => false,
            Source::Clip { samples, left, .. } => *left > 0 && !samples.is_empty(),
        }
    }
}

/// One radio as the benchmark's sound card sees it.
pub(crate) struct BenchRadio {
    pub(crate) name: String,
    capture: Arc<Mutex<RingCapture>>,
    playback: Arc<Mutex<RingPlayback>>,
    carrier: FlagCarrier,
    carrier_up: bool,
    pub(crate) watch: Arc<Mutex<ClickWatch>>,
    pub(crate) source: Source,
    click: bool,
    click_burst: Vec<i16>,
    period: Vec<i16>,
    period_f32: Vec<f32>,
    played: Vec<i16>,
}

impl BenchRadio {
    /// The sound card's capture callback: one period of the radio's source (or a click).
    pub(crate) fn capture_period(&mut self) {
        if std::mem::take(&mut self.click) {
            self.period.copy_from_slice(&self.click_burst);
        } else {
            self.source.fill(&mut self.period);
        }
        for (f, &s) in self.period_f32.iter_mut().zip(&self.period) {
            *f = f32::from(s) * (1.0 / 32768.0);
        }
        lock(&self.capture).callback(&self.period_f32);
    }

    /// The sound card's playback callback: one period taken from the ring.
    pub(crate) fn play_period(&mut self) -> &[i16] {
        lock(&self.playback).callback(&mut self.played);
        &self.played
    }

    /// The next capture period is a click: 5 ms of 1 kHz at -1 dBFS after silence.
    pub(crate) fn click_next(&mut self) {
        self.click = true;
    }

    /// Raises the carrier; the click watch counts frames from the next one read.
    pub(crate) fn raise_carrier(&mut self) {
        lock(&self.watch).frames = Some(0);
        self.carrier.set(true);
        self.carrier_up = true;
    }

    pub(crate) fn lower_carrier(&mut self) {
        self.carrier.set(false);
        self.carrier_up = false;
    }

    pub(crate) fn carrier_up(&self) -> bool {
        self.carrier_up
    }

    /// Sound-card counters that must stay at zero: capture overruns and playback samples
    /// that did not fit.
    pub(crate) fn ring_losses(&self) -> u64 {
        lock(&self.capture).stats().overrun_frames + lock(&self.playback).stats().dropped_samples
    }
}

fn click_burst() -> Vec<i16> {
    (0..CALLBACK_FRAMES)
        .map(|i| {
            let t = i as f32 / CARD_RATE as f32;
            (0.9 * 32767.0 * (std::f32::consts::TAU * 1000.0 * t).sin()) as i16
        })
        .collect()
}

/// A gateway's network side as the daemon runs it: the daemon's runtime
/// ([`crate::service::runtime_builder`]) with its own threads. The thread named `NAME-net`
/// stays in the runtime's `block_on` as the daemon's main thread does (on a current-thread
/// runtime the gateway's tasks run there); the runtime's other threads, worker or blocking,
/// are named `NAME-rt`. Names stay within the kernel's 15 bytes, so the bench finds them in
/// `/proc`.
/// Worker threads of the runtimes [`Net::start`] builds (0: the daemon's current-thread
/// runtime), set once per `bench` run from `--runtime-workers`.
pub(crate) static RUNTIME_WORKERS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

pub(crate) struct Net {
    handle: Handle,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Net {
    pub(crate) fn start(name: &str) -> Result<Net, BenchError> {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let workers = format!("{name}-rt");
        let (thread, handle) = start_runtime_thread(
            format!("{name}-net"),
            format!("the runtime of {name}"),
            move || {
                let workers_wanted = RUNTIME_WORKERS.load(std::sync::atomic::Ordering::Relaxed);
                crate::service::runtime_builder_with(workers_wanted)
                    .thread_name(workers)
                    .build()
            },
            move |rt, ready_tx| {
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                rt.block_on(stopped.cancelled());
                rt.shutdown_timeout(Duration::from_secs(2));
            },
        )?;
        Ok(Net {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a gateway serves its status API, and whether anyone watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ApiMode {
    /// No API (the daemon with `[api] enabled = false`).
    #[default]
    Off,
    /// The API as the daemon runs it, nobody connected.
    On,
    /// The API and one [`Dashboard`] subscribed to every room.
    Dashboard,
}

/// One gateway to set up.
pub(crate) struct SideSpec {
    /// The start of its threads' names (see [`Net`]), at most 8 bytes.
    pub(crate) threads: String,
    pub(crate) server: String,
    pub(crate) user: String,
    /// (radio name, channel) of each radio.
    pub(crate) radios: Vec<(String, String)>,
    pub(crate) settings: EncoderSettings,
    /// The status API beside the gateway, on the gateway's runtime as in the daemon.
    pub(crate) api: ApiMode,
}

/// What the API serves beside the state, as `api::service::setup` builds it from the
/// configuration: metrics, the catalogue with each radio's codec, the radios' meters.
fn api_setup(spec: &SideSpec, meters: &gateway::Meters) -> crate::api::Setup {
    let codec = Codec {
        sample_rate_hz: spec.settings.sample_rate,
        frame_ms: spec.settings.frame_ms,
        frames_per_packet: spec.settings.frames_per_packet,
    };
    let radios: Vec<ApiRadio> = spec
        .radios
        .iter()
        .map(|(name, channel)| ApiRadio {
            name: name.clone(),
            channel: channel.clone(),
            codec,
        })
        .collect();
    crate::api::Setup::for_radios(&radios, meters, None)
}

/// A gateway whose engines the benchmark ticks, with its radios.
pub(crate) struct Side {
    pub(crate) radios: Vec<BenchRadio>,
    pub(crate) engines: Vec<Engine>,
    pub(crate) session: SessionHandle,
    observer: broadcast::Receiver<GatewayEvent>,
    /// Everything the gateway reported so far.
    pub(crate) events: Vec<GatewayEvent>,
    channels: Vec<String>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), GatewayError>>>,
    /// The start of the names of the gateway's network threads.
    pub(crate) threads: String,
    /// The dashboard watching the API, when there is one (on a thread of its own, named
    /// `dash-` and the gateway's threads).
    pub(crate) dashboard: Option<Dashboard>,
    /// Dropped last: the gateway's tasks stop before their runtime does.
    net: Net,
}

impl Side {
    /// Starts a gateway on a runtime of its own and takes its engines.
    pub(crate) fn start(spec: SideSpec) -> Result<Side, BenchError> {
        let setup = |message: String| BenchError::Setup {
            what: format!("gateway {}", spec.user),
            message,
        };
        let header = CodecHeader::new(
            spec.settings.sample_rate,
            spec.settings.frames_per_packet,
            spec.settings.frame_ms,
        )
        .map_err(|e| setup(e.to_string()))?;
        let mut radios = Vec::new();
        let mut parts = Vec::new();
        let mut channels: Vec<String> = Vec::new();
        for (name, channel) in &spec.radios {
            let capture = Arc::new(Mutex::new(RingCapture::new(CARD_RATE, 1)?));
            let playback = Arc::new(Mutex::new(RingPlayback::new(CARD_RATE)?));
            let carrier = FlagCarrier::new();
            let watch = Arc::new(Mutex::new(ClickWatch::default()));
            parts.push(RadioParts {
                header,
                encoder: spec.settings.clone(),
                timers: bench_timers(),
                ..RadioParts::new(
                    name.clone(),
                    channel.clone(),
                    Box::new(SharedCapture {
                        ring: capture.clone(),
                        watch: watch.clone(),
                    }),
                    Box::new(SharedPlayback(playback.clone())),
                    Box::new(carrier.clone()),
                    Box::new(SimPtt::new()),
                )
            });
            radios.push(BenchRadio {
                name: name.clone(),
                capture,
                playback,
                carrier,
                carrier_up: false,
                watch,
                source: Source::Silence,
                click: false,
                click_burst: click_burst(),
                period: vec![0; CALLBACK_FRAMES],
                period_f32: vec![0.0; CALLBACK_FRAMES],
                played: vec![0; CALLBACK_FRAMES],
            });
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let config = SessionConfig {
            server: spec.server.clone(),
            username: spec.user.clone(),
            password: Secret::new("bench"),
            channels: channels.clone(),
            ..SessionConfig::default()
        };
        let net = Net::start(&spec.threads)?;
        let rt = net.handle();
        let shutdown = CancellationToken::new();
        // As the daemon starts it: the state knows the radios from the start.
        let hub = StateHub::with_capacity(GatewayState::new(spec.radios.iter().cloned()), 4096);
        let observer = hub.subscribe();
        let meters = gateway::Meters::new();
        let api = match spec.api {
            ApiMode::Off => None,
            ApiMode::On | ApiMode::Dashboard => {
                let config = ApiConfig {
                    listen: "127.0.0.1:0".into(),
                    ..ApiConfig::default()
                };
                let setup_api = api_setup(&spec, &meters);
                let running = rt
                    .block_on(crate::api::start(
                        &config,
                        &ApiTokens::default(),
                        hub.clone(),
                        setup_api,
                        shutdown.clone(),
                    ))
                    .map_err(|e| setup(format!("the status API: {e}")))?;
                Some(running.addr)
            }
        };
        // Connected before the gateway starts, so it gets every event.
        let dashboard = match (spec.api, api) {
            (ApiMode::Dashboard, Some(addr)) => {
                Some(Dashboard::start(addr, &format!("dash-{}", spec.threads))?)
            }
            _ => None,
        };
        let (to, from) = oneshot::channel::<DrivenParts>();
        let task = rt.spawn(gateway::run_with(
            config,
            parts,
            shutdown.clone(),
            hub,
            gateway::RunOptions {
                drive: EngineDrive::Caller(to),
                meters,
                ..Default::default()
            },
        ));
        let driven = rt.block_on(async { tokio::time::timeout(SETUP_TIMEOUT, from).await });
        let driven = match driven {
            Ok(Ok(d)) => d,
            Ok(Err(_)) => {
                // The gateway stopped before handing its engines over: say why.
                let why = match rt.block_on(task) {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => "it stopped at once".into(),
                    Err(e) => e.to_string(),
                };
                return Err(setup(why));
            }
            Err(_) => {
                shutdown.cancel();
                return Err(setup("no engines within 15 s".into()));
            }
        };
        Ok(Side {
            radios,
            engines: driven.engines,
            session: driven.session,
            observer,
            events: Vec::new(),
            channels,
            shutdown,
            task: Some(task),
            threads: spec.threads,
            dashboard,
            net,
        })
    }

    /// Collects what the gateway reported since the last call.
    pub(crate) fn poll(&mut self) {
        loop {
            match self.observer.try_recv() {
                Ok(e) => self.events.push(e),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    }

    /// How many reported events match `pred`.
    pub(crate) fn count(&self, pred: impl Fn(&GatewayEvent) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }

    /// Waits until every channel of the gateway is online, then a moment more so the
    /// bridges have heard it too (the observer hears it first).
    pub(crate) fn wait_online(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        loop {
            self.poll();
            if self.channels.iter().all(|c| self.online(c)) {
                std::thread::sleep(Duration::from_millis(50));
                self.poll();
                return Ok(());
            }
            if let Some(reason) = self.events.iter().find_map(|e| match e {
                GatewayEvent::LogonRefused(r) | GatewayEvent::Disconnected { detail: r, .. } => {
                    Some(r.clone())
                }
                _ => None,
            }) {
                return Err(BenchError::Failed {
                    phase: "setup",
                    message: format!("the gateway could not log on: {reason}"),
                });
            }
            if Instant::now() > deadline {
                return Err(BenchError::Failed {
                    phase: "setup",
                    message: "the gateway's channels did not come online within 15 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn online(&self, channel: &str) -> bool {
        self.events.iter().any(|e| {
            matches!(e, GatewayEvent::ChannelStatus { channel: c, online: true, .. } if c == channel)
        })
    }

    /// Ticks every engine once.
    pub(crate) fn tick(&mut self) {
        for e in &mut self.engines {
            e.tick();
        }
    }

    /// One engine frame, sound card included: the capture callbacks of a frame for every
    /// radio, every engine's tick, then the playback callbacks of a frame.
    pub(crate) fn frame(&mut self, periods: usize) {
        for r in &mut self.radios {
            for _ in 0..periods {
                r.capture_period();
            }
        }
        self.tick();
        for r in &mut self.radios {
            for _ in 0..periods {
                r.play_period();
            }
        }
    }

    /// Stops the gateway, then lets go of its engines and its runtime.
    pub(crate) fn stop(mut self) -> Result<(), BenchError> {
        self.shutdown.cancel();
        let rt = self.net.handle();
        let result = match self.task.take() {
            Some(task) => rt.block_on(async { tokio::time::timeout(SETUP_TIMEOUT, task).await }),
            None => return Ok(()),
        };
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(BenchError::Failed {
                phase: "shutdown",
                message: e.to_string(),
            }),
            Ok(Err(e)) => Err(BenchError::Failed {
                phase: "shutdown",
                message: e.to_string(),
            }),
            Err(_) => Err(BenchError::Failed {
                phase: "shutdown",
                message: "the gateway did not stop within 15 s".into(),
            }),
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_source_repeats_the_clip_then_falls_silent() {
        let clip: Arc<[i16]> = vec![1, 2, 3].into();
        let mut source = Source::Clip {
            samples: clip,
            pos: 0,
            left: 7,
        };
        let mut out = [9i16; 4];
        source.fill(&mut out);
        assert_eq!(out, [1, 2, 3, 1]);
        assert!(source.has_audio());
        source.fill(&mut out);
        assert_eq!(out, [2, 3, 1, 0]);
        assert!(!source.has_audio());
        source.fill(&mut out);
        assert_eq!(out, [0; 4]);
    }
}
