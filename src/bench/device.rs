//! `bench --device`: the gateway as it runs on a site, through a real sound device.
//!
//! This program is started again as a child, `zello-gateway run --config FILE`, with one
//! radio on the ALSA devices named by `--device-input` and `--device-output` (the test
//! devices of `scripts/pulse-test-env.sh` by default: PulseAudio null sinks behind ALSA's
//! `pulse` plugin), VOX as carrier detect, against the benchmark's emulator. Its threads are
//! measured from `/proc/PID/task/*` ([`procstat`](super::procstat)). The source the capture
//! device hears is fed by `pacat` into the PulseAudio sink [`FEED_SINK`].
//!
//! Each turn (`--runs`) measures, in this order:
//! 1. **Idle**, squelch closed, three ways: the source fed silence by a player asking for
//!    500 ms of latency (the server moves audio in large blocks), by one asking for 40 ms
//!    (small blocks, for every client of the sink), and with no player (the source
//!    stopped). For each, over the same seconds, `arecord` reads the same device at the
//!    period the gateway got: what any ALSA client pays for the device, which the gateway's
//!    excess is counted over.
//! 2. **Radio -> Zello**: speech played into the source (500 ms player, silence going on
//!    beside it); VOX opens and the gateway sends it. CPU time of the gateway from before the
//!    speech until its message has ended at the emulator, less its idle cost (500 ms player)
//!    over the same time, per second of audio sent.
//! 3. **Zello -> radio**: a user on the channel sends as much speech; the gateway plays it
//!    into the playback device. CPU time until the gateway logs `PTT off`, less idle, per
//!    second of audio received.
//! 4. **The paced floors**: libopus alone with the same settings, one frame per sleep in
//!    real time, in this process: the encoder on the speech (against which radio -> Zello
//!    is compared) and, on a thread beside it, the decoder at the card's rate (against
//!    which Zello -> radio is).
//!
//! Then, once, the **start latency**: tone bursts played into the source, each the start
//! of a message; a reader of the capture device of its own ([`onset`], 5 ms periods) notes
//! when each reaches the source, the emulator's log when the message's first packet arrives.
//! The reader's small periods make the server move audio in small blocks meanwhile, so this
//! comes after the CPU figures.

mod children;
mod floors;
mod onset;
mod report;

use floors::*;
pub use report::*;

use super::procstat::{self, ProcSnapshot, Usage};
use super::rig::{CARD_RATE, Emulator};
use super::{BenchError, BenchOptions, Clock, SEED, cpu_time, median, round};
use crate::audio::CODEC_RATE;
use crate::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder, max_packet_samples};
use crate::audio::speech::{speech_like, tone};
use crate::config::{Config, TimingConfig};
use crate::secret::Secret;
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{self, SessionConfig, SessionHandle};
use crate::zello::sim::{SimEvent, SimHandle};
use bytes::Bytes;
use children::{Feed, GatewayChild, Spawned, feeder, recorder};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The capture device of `--device-input` when not given.
pub const DEFAULT_INPUT: &str = "radio_mic";
/// The playback device of `--device-output` when not given.
pub const DEFAULT_OUTPUT: &str = "radio_spk";
/// The PulseAudio sink the benchmark plays into; the capture device hears its monitor.
pub const FEED_SINK: &str = "radio_mic";
/// Start-latency bursts when not given.
pub const DEFAULT_ONSETS: usize = 8;

/// The gateway's account, radio and channel on the emulator, and the channel's other user.
const USER: &str = "bench-device";
const RADIO: &str = "radio-device";
const CHANNEL: &str = "Bench-device";
const DISPATCHER: &str = "bench-dispatcher";

/// Latency the silence players ask for: large blocks and small blocks.
const LARGE_BLOCKS_MS: u32 = 500;
const SMALL_BLOCKS_MS: u32 = 40;
/// Time for the gateway and the sound server to settle after a change of player.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the gateway may take to start, log on and open its devices.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// A start-latency burst (1 kHz at -6 dBFS) and the time from one burst to the next: the
/// message ends (VOX hang and the gateway's rx hang) well before the next.
const BURST: f32 = 0.6;
const BURST_SPACING: f32 = 3.0;
/// The level of a burst.
const BURST_DBFS: f32 = -6.0;
/// The comparison the report states: `rx_min_ms` + one frame + this.
const START_MARGIN_MS: f64 = 20.0;

/// What the device phase runs, and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOptions {
    /// The `zello-gateway` binary to start as the gateway.
    pub exe: PathBuf,
    /// The ALSA capture device (the radio's receiver).
    pub input: String,
    /// The ALSA playback device (the radio's transmitter).
    pub output: String,
    /// The device period to ask the gateway for (`audio.period_ms`); `None` leaves the
    /// gateway's default.
    pub period_ms: Option<u32>,
    /// Start-latency bursts, 1 to 50.
    pub onsets: usize,
}

impl DeviceOptions {
    /// The test devices, the gateway's own period, [`DEFAULT_ONSETS`] bursts.
    pub fn new(exe: PathBuf) -> Self {
        DeviceOptions {
            exe,
            input: DEFAULT_INPUT.into(),
            output: DEFAULT_OUTPUT.into(),
            period_ms: None,
            onsets: DEFAULT_ONSETS,
        }
    }
}

/// The gateway's configuration for the device phase.
pub(crate) fn config_text(server: &str, d: &DeviceOptions, settings: &EncoderSettings) -> String {
    let quote = |s: &str| toml::Value::String(s.into()).to_string();
    let period = d
        .period_ms
        .map_or_else(String::new, |p| format!(", period_ms = {p}"));
    let bitrate = settings
        .bitrate
        .map_or_else(String::new, |b| format!("bitrate = {b}, "));
    format!(
        "# Written by zello-gateway bench --device.\n\
         [zello]\nserver = {server}\nusername = {USER:?}\npassword = \"bench\"\n\n\
         [[radio]]\nname = {RADIO:?}\nchannel = {CHANNEL:?}\n\
         audio = {{ backend = \"cpal\", input = {input}, output = {output}, sample_rate = {CARD_RATE}{period} }}\n\
         ptt = {{ type = \"sim\" }}\n\
         carrier = {{ type = \"vox\" }}\n\
         codec = {{ frame_ms = {frame}, frames_per_packet = {fpp}, complexity = {complexity}, {bitrate}fec = {fec}, vbr = {vbr} }}\n\
         # No limit on message starts (the bursts come every {BURST_SPACING} s), and no timer\n\
         # cuts a long run short.\n\
         timing = {{ flap_max_starts = 0, tot_s = 3600, rx_max_s = 3600 }}\n",
        server = quote(server),
        input = quote(&d.input),
        output = quote(&d.output),
        frame = settings.frame_ms,
        fpp = settings.frames_per_packet,
        complexity = settings.complexity,
        fec = settings.fec,
        vbr = settings.vbr,
    )
}

/// Checks the device options beside the others; the error names the option.
pub(crate) fn validate(opts: &BenchOptions, d: &DeviceOptions) -> Result<(), BenchError> {
    let bad = |option: &'static str, message: String| BenchError::Option { option, message };
    if ![20, 40, 60].contains(&opts.frame_ms) {
        return Err(bad(
            "--frame-ms",
            format!(
                "{} (with --device use 20, 40 or 60: the frames the gateway sends)",
                opts.frame_ms
            ),
        ));
    }
    if opts.idle_seconds < 1.0 {
        return Err(bad(
            "--idle-seconds",
            format!(
                "{} (with --device use 1 to 600: the device phase measures the idle cost to \
                 subtract it)",
                opts.idle_seconds
            ),
        ));
    }
    if !(1..=50).contains(&d.onsets) {
        return Err(bad("--onsets", format!("{} (use 1 to 50)", d.onsets)));
    }
    if let Some(p) = d.period_ms
        && !(1..=1000).contains(&p)
    {
        return Err(bad("--period-ms", format!("{p} (use 1 to 1000)")));
    }
    for (option, name) in [("--device-input", &d.input), ("--device-output", &d.output)] {
        if name.trim().is_empty() {
            return Err(bad(
                option,
                "an empty name (give an ALSA device name)".into(),
            ));
        }
    }
    // The gateway reads the same configuration code as this program: what it would refuse
    // is refused here, before anything starts.
    let text = config_text("ws://127.0.0.1:8800/ws", d, &opts.encoder_settings());
    if let Err(e) = Config::parse(&text, "the bench's gateway configuration", Path::new(".")) {
        let e = e.to_string();
        if d.period_ms.is_some() && e.contains("period_ms") {
            return Err(bad(
                "--period-ms",
                format!(
                    "this build of the gateway has no audio.period_ms setting ({e}); leave \
                     --period-ms out"
                ),
            ));
        }
        return Err(bad(
            "--device",
            format!("the gateway refuses these settings: {e}"),
        ));
    }
    Ok(())
}

/// Which sound device a gateway log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    Capture,
    Playback,
}

/// What the gateway's log says of a device it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Opened {
    /// The card's rate, Hz.
    pub rate: u32,
    /// Frames per period (per callback).
    pub period_frames: u32,
    /// Frames of buffer, when the log says.
    pub buffer_frames: Option<u32>,
}

/// The digits that end `text`.
fn trailing_number(text: &str) -> Option<u32> {
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    text[text.len() - digits..].parse().ok()
}

/// The digits that start `text`.
fn leading_number(text: &str) -> Option<u32> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// Reads `sound capture open: 48000 Hz, 1 channel(s), i16, period 960 frames (20.0 ms),
/// buffer 3840 frames` (and `sound playback open: ...`), or the older form ending in
/// `N frames per callback`, from a line of the gateway's log.
pub(crate) fn parse_open_line(line: &str, way: Way) -> Option<Opened> {
    let marker = match way {
        Way::Capture => "sound capture open: ",
        Way::Playback => "sound playback open: ",
    };
    let rest = &line[line.find(marker)? + marker.len()..];
    let rate = trailing_number(&rest[..rest.find(" Hz")?])?;
    let period = match rest.find("period ") {
        Some(i) => {
            let after = &rest[i + "period ".len()..];
            let n = leading_number(after)?;
            after[n.to_string().len()..]
                .starts_with(" frames")
                .then_some(n)?
        }
        None => trailing_number(&rest[..rest.find(" frames per callback")?])?,
    };
    let buffer = rest.find("buffer ").and_then(|i| {
        let after = &rest[i + "buffer ".len()..];
        let n = leading_number(after)?;
        after[n.to_string().len()..]
            .starts_with(" frames")
            .then_some(n)
    });
    (rate > 0 && period > 0).then_some(Opened {
        rate,
        period_frames: period,
        buffer_frames: buffer,
    })
}

/// Microseconds of `frames` at `rate`.
fn frames_us(frames: u32, rate: u32) -> u64 {
    (u64::from(frames) * 1_000_000).div_ceil(u64::from(rate.max(1)))
}

// --- Running it ---------------------------------------------------------------------------

fn failed(message: String) -> BenchError {
    BenchError::Failed {
        phase: "device",
        message,
    }
}

/// A folder of our own for the configuration and the audio files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, BenchError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "zello-gateway-bench-{}-{nanos}",
            std::process::id()
        ));
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path).map_err(|e| BenchError::Setup {
            what: format!("the folder {}", path.display()),
            message: e.to_string(),
        })?;
        Ok(TempDir(path))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, BenchError> {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).map_err(|e| BenchError::Setup {
            what: format!("the file {}", path.display()),
            message: e.to_string(),
        })?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn raw(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The start-latency bursts: a second of silence, then each burst followed by silence.
fn bursts(n: usize) -> Vec<i16> {
    let rate = CARD_RATE as usize;
    let gap = ((BURST_SPACING - BURST) * CARD_RATE as f32) as usize;
    let mut out = vec![0i16; rate];
    for _ in 0..n {
        out.extend(tone(CARD_RATE, 1000.0, BURST, BURST_DBFS));
        out.extend(std::iter::repeat_n(0i16, gap));
    }
    out
}

/// Fails unless `pacat` and `arecord` can be run.
fn check_tools() -> Result<(), BenchError> {
    for (tool, package) in [("pacat", "pulseaudio-utils"), ("arecord", "alsa-utils")] {
        match std::process::Command::new(tool)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BenchError::Tool {
                    tool: tool.into(),
                    package,
                });
            }
            Err(e) => {
                return Err(BenchError::Setup {
                    what: tool.into(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// What the device phase needs before it starts: the options, `pacat` and `arecord`, both
/// devices. Run first, so a missing piece is said before minutes of other phases.
pub(crate) fn preflight(opts: &BenchOptions, d: &DeviceOptions) -> Result<(), BenchError> {
    validate(opts, d)?;
    check_tools()?;
    check_devices(d)
}

/// Fails unless both devices open.
fn check_devices(d: &DeviceOptions) -> Result<(), BenchError> {
    onset::open_capture(&d.input, CARD_RATE, Duration::from_millis(20)).map_err(|e| {
        BenchError::Device {
            device: d.input.clone(),
            message: e.to_string(),
        }
    })?;
    onset::check_playback(&d.output).map_err(|e| BenchError::Device {
        device: d.output.clone(),
        message: e.to_string(),
    })
}

/// A message of the gateway's user seen at the emulator.
#[derive(Debug, Clone)]
struct Stream {
    id: u32,
    started: Instant,
    first_packet: Option<Instant>,
    packets: u64,
    stopped: bool,
}

/// The gateway's messages as the emulator logged them, read as the log grows.
#[derive(Default)]
struct Streams {
    next: u64,
    streams: Vec<Stream>,
}

impl Streams {
    fn poll(&mut self, sim: &SimHandle) {
        for e in sim.log_since(self.next) {
            self.next = e.index + 1;
            let at = e.at.into_std();
            match e.event {
                SimEvent::StreamStart {
                    user, stream_id, ..
                } if user == USER => self.streams.push(Stream {
                    id: stream_id,
                    started: at,
                    first_packet: None,
                    packets: 0,
                    stopped: false,
                }),
                SimEvent::Packet { stream_id, .. } => {
                    if let Some(s) = self.open(stream_id) {
                        s.first_packet.get_or_insert(at);
                        s.packets += 1;
                    }
                }
                SimEvent::StreamStop { stream_id, .. } => {
                    if let Some(s) = self.open(stream_id) {
                        s.stopped = true;
                    }
                }
                _ => {}
            }
        }
    }

    fn open(&mut self, id: u32) -> Option<&mut Stream> {
        self.streams
            .iter_mut()
            .rev()
            .find(|s| s.id == id && !s.stopped)
    }

    fn since(&self, since: Instant) -> impl Iterator<Item = &Stream> {
        self.streams.iter().filter(move |s| s.started >= since)
    }

    /// Whether at least one message started after `since` and all of them have ended.
    fn all_ended_since(&self, since: Instant) -> bool {
        let mut any = false;
        for s in self.since(since) {
            if !s.stopped {
                return false;
            }
            any = true;
        }
        any
    }
}

/// Each onset's start latency: from the onset to the first packet of the first message
/// that starts after it (and before the next onset), in ms. Onsets without one are left out.
pub(crate) fn match_onsets(
    onsets: &[Instant],
    messages: &[(Instant, Option<Instant>)],
) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, &onset) in onsets.iter().enumerate() {
        let next = onsets.get(i + 1).copied();
        let found = messages
            .iter()
            .find(|(start, _)| *start >= onset && next.is_none_or(|n| *start < n));
        if let Some((_, Some(first))) = found {
            out.push(first.saturating_duration_since(onset).as_secs_f64() * 1000.0);
        }
    }
    out
}

/// A user on the channel who sends the gateway messages.
struct Dispatcher {
    handle: SessionHandle,
    stop: CancellationToken,
}

impl Dispatcher {
    fn start(rt: &Runtime, emulator: &Emulator) -> Result<Dispatcher, BenchError> {
        let stop = CancellationToken::new();
        let _entered = rt.enter();
        let (handle, mut events, _task) = session::spawn(
            SessionConfig {
                server: emulator.url.clone(),
                username: DISPATCHER.into(),
                password: Secret::new("bench"),
                channels: vec![CHANNEL.into()],
                ..SessionConfig::default()
            },
            stop.clone(),
        )
        .map_err(|e| BenchError::Setup {
            what: "the channel's other user".into(),
            message: e.to_string(),
        })?;
        // What it hears (the gateway's messages) is not needed; the session waits for its
        // events to be taken.
        rt.spawn(async move { while events.recv().await.is_some() {} });
        let deadline = Instant::now() + READY_TIMEOUT;
        while !emulator
            .sim
            .online_users(CHANNEL)
            .iter()
            .any(|u| u == DISPATCHER)
        {
            if Instant::now() > deadline {
                return Err(failed(
                    "the channel's other user did not come online".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Dispatcher { handle, stop })
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The gateway child and what the phase needs to watch it.
struct Gateway {
    child: GatewayChild,
    pid: u32,
}

impl Gateway {
    fn gone(&mut self) -> Option<BenchError> {
        let status = self.child.process.exited()?;
        Some(failed(format!(
            "the gateway stopped ({status}); its last lines:\n{}",
            self.child.tail(15)
        )))
    }

    fn sample(&mut self) -> Result<ProcSnapshot, BenchError> {
        if let Some(e) = self.gone() {
            return Err(e);
        }
        procstat::sample(self.pid)
            .map_err(|e| failed(format!("cannot read /proc/{}: {e}", self.pid)))
    }
}

/// Starts the gateway and waits until it is on the channel with its devices open.
fn start_gateway(
    exe: &Path,
    config: &Path,
    emulator: &Emulator,
) -> Result<(Gateway, Opened, Option<Opened>), BenchError> {
    let child = GatewayChild::start(exe, config)?;
    let pid = child.process.pid();
    let mut gw = Gateway { child, pid };
    let start = Instant::now();
    loop {
        if let Some(e) = gw.gone() {
            return Err(e);
        }
        let online = emulator.sim.online_users(CHANNEL).iter().any(|u| u == USER);
        let capture = gw.child.find_map(|l| parse_open_line(l, Way::Capture));
        if online
            && gw.child.line_since(start, "radio ready").is_some()
            && let Some(capture) = capture
        {
            let playback = gw.child.find_map(|l| parse_open_line(l, Way::Playback));
            return Ok((gw, capture, playback));
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(failed(format!(
                "the gateway was not on the channel with its devices open within {} s \
                 (looking for `radio ready` and `sound capture open: ... frames` in its log); \
                 its last lines:\n{}",
                READY_TIMEOUT.as_secs(),
                gw.child.tail(15)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Watches the gateway and `arecord` for `seconds` after settling.
fn watch_idle(
    gw: &mut Gateway,
    arecord: &mut Spawned,
    seconds: f64,
) -> Result<IdleRun, BenchError> {
    std::thread::sleep(SETTLE);
    let sample_arecord = |a: &mut Spawned| {
        if let Some(status) = a.exited() {
            return Err(failed(format!("arecord stopped ({status})")));
        }
        procstat::sample(a.pid()).map_err(|e| failed(format!("cannot read arecord's /proc: {e}")))
    };
    let g0 = gw.sample()?;
    let a0 = sample_arecord(arecord)?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let g1 = gw.sample()?;
    let a1 = sample_arecord(arecord)?;
    Ok(IdleRun {
        gateway: Usage::between(&g0, &g1),
        arecord: Usage::between(&a0, &a1),
    })
}

/// Plays the speech into the source and measures the gateway until its message has ended.
fn radio_to_zello(
    gw: &mut Gateway,
    emulator: &Emulator,
    streams: &mut Streams,
    speech: &Path,
    seconds: f64,
) -> Result<MessageRun, BenchError> {
    streams.poll(&emulator.sim);
    let since = Instant::now();
    let before = gw.sample()?;
    let mut player = feeder(FEED_SINK, CARD_RATE, LARGE_BLOCKS_MS, Feed::File(speech))?;
    let limit = Duration::from_secs_f64(seconds) + Duration::from_secs(20);
    let mut played_at = None;
    loop {
        streams.poll(&emulator.sim);
        if played_at.is_none() && player.exited().is_some() {
            played_at = Some(Instant::now());
        }
        if played_at.is_some() && streams.all_ended_since(since) {
            break;
        }
        if let Some(e) = gw.gone() {
            return Err(e);
        }
        let heard = streams.since(since).count() > 0;
        if played_at.is_some_and(|p| p.elapsed() > Duration::from_secs(5)) && !heard {
            return Err(failed(
                "the gateway sent nothing while speech played into the source: VOX did not \
                 open. Does the capture device hear the PulseAudio sink radio_mic?"
                    .into(),
            ));
        }
        if since.elapsed() > limit {
            return Err(failed(format!(
                "the gateway's message did not end within {} s of the speech starting",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = gw.sample()?;
    let packets = streams.since(since).map(|s| s.packets).sum();
    Ok(MessageRun {
        usage: Usage::between(&before, &after),
        packets,
    })
}

/// Sends the packets on the channel, paced, and measures the gateway until it has played
/// them and released PTT.
fn zello_to_radio(
    gw: &mut Gateway,
    rt: &Runtime,
    dispatcher: &Dispatcher,
    settings: &EncoderSettings,
    packets: &[Bytes],
) -> Result<MessageRun, BenchError> {
    let header = CodecHeader::new(
        settings.sample_rate,
        settings.frames_per_packet,
        settings.frame_ms,
    )
    .map_err(|e| failed(e.to_string()))?;
    let packet_time =
        Duration::from_millis(u64::from(settings.frame_ms) * u64::from(settings.frames_per_packet));
    let since = Instant::now();
    let before = gw.sample()?;
    rt.block_on(async {
        let message = dispatcher
            .handle
            .start_message(CHANNEL, header, None)
            .await
            .map_err(|e| failed(format!("the channel's other user cannot send: {e}")))?;
        let mut tick = tokio::time::interval(packet_time);
        for p in packets {
            tick.tick().await;
            message.send(p.clone());
        }
        message.finish().await;
        Ok::<(), BenchError>(())
    })?;
    let limit = Duration::from_secs(20);
    let sent = Instant::now();
    while gw.child.line_since(since, "PTT off").is_none() {
        if let Some(e) = gw.gone() {
            return Err(e);
        }
        if sent.elapsed() > limit {
            return Err(failed(format!(
                "the gateway did not play the channel's message (no `PTT off` in its log \
                 within {} s of its end); its last lines:\n{}",
                limit.as_secs(),
                gw.child.tail(10)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = gw.sample()?;
    Ok(MessageRun {
        usage: Usage::between(&before, &after),
        packets: packets.len() as u64,
    })
}

/// Plays the bursts with a reader on the capture device and matches each onset with the
/// first packet of the message it started.
fn start_latencies(
    gw: &mut Gateway,
    emulator: &Emulator,
    streams: &mut Streams,
    d: &DeviceOptions,
    bursts: &Path,
) -> Result<Vec<f64>, BenchError> {
    let reader =
        onset::OnsetReader::start(&d.input, CARD_RATE).map_err(|e| BenchError::Device {
            device: d.input.clone(),
            message: e.to_string(),
        })?;
    std::thread::sleep(Duration::from_millis(500));
    streams.poll(&emulator.sim);
    let since = Instant::now();
    let mut player = feeder(FEED_SINK, CARD_RATE, LARGE_BLOCKS_MS, Feed::File(bursts))?;
    let limit = Duration::from_secs_f32(BURST_SPACING * d.onsets as f32 + 20.0);
    let mut played_at = None;
    loop {
        streams.poll(&emulator.sim);
        if played_at.is_none() && player.exited().is_some() {
            played_at = Some(Instant::now());
        }
        let settled = played_at.is_some_and(|p| p.elapsed() > Duration::from_secs(1));
        if settled && streams.since(since).all(|s| s.stopped) {
            break;
        }
        if let Some(e) = gw.gone() {
            return Err(e);
        }
        if let Some(e) = reader.failure() {
            return Err(BenchError::Device {
                device: d.input.clone(),
                message: e,
            });
        }
        if since.elapsed() > limit {
            return Err(failed(format!(
                "the start-latency bursts did not get through within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let onsets = reader.onsets();
    drop(reader);
    let messages: Vec<(Instant, Option<Instant>)> = streams
        .since(since)
        .map(|s| (s.started, s.first_packet))
        .collect();
    let latencies = match_onsets(&onsets, &messages);
    if latencies.is_empty() {
        return Err(failed(format!(
            "no start latency measured: the reader on {} heard {} of {} bursts, the emulator \
             saw {} messages",
            d.input,
            onsets.len(),
            d.onsets,
            messages.len()
        )));
    }
    Ok(latencies)
}

/// Runs the device phase.
pub(crate) fn run(
    rt: &Runtime,
    emulator: &Emulator,
    opts: &BenchOptions,
    d: &DeviceOptions,
    say: &dyn Fn(&str),
) -> Result<DeviceReport, BenchError> {
    preflight(opts, d)?;
    let settings = opts.encoder_settings();
    let dir = TempDir::new()?;
    let config = dir.write(
        "gateway.toml",
        config_text(&emulator.url, d, &settings).as_bytes(),
    )?;
    let speech = dir.write(
        "speech.raw",
        &raw(&speech_like(CARD_RATE, opts.seconds, SEED)),
    )?;
    let bursts = dir.write("bursts.raw", &raw(&bursts(d.onsets)))?;
    let clip16 = speech_like(CODEC_RATE, opts.seconds, SEED);
    let packets = encode(&settings, &clip16)?;
    let seconds = f64::from(opts.seconds);
    let idle_seconds = f64::from(opts.idle_seconds);

    say(&format!(
        "device: starting the gateway on {} / {} (a child process)",
        d.input, d.output
    ));
    let mut source = Some(feeder(
        FEED_SINK,
        CARD_RATE,
        LARGE_BLOCKS_MS,
        Feed::Silence,
    )?);
    let (mut gw, capture, playback) = start_gateway(&d.exe, &config, emulator)?;
    let dispatcher = Dispatcher::start(rt, emulator)?;
    let mut streams = Streams::default();
    let arecord_period_us = frames_us(capture.period_frames, capture.rate);
    let arecord_buffer_us = frames_us(
        capture
            .buffer_frames
            .unwrap_or(capture.period_frames.saturating_mul(4)),
        capture.rate,
    );
    say(&format!(
        "device: the gateway's capture period is {} frames at {} Hz; arecord gets \
         --period-time={arecord_period_us} --buffer-time={arecord_buffer_us}",
        capture.period_frames, capture.rate
    ));

    let mut runs = Vec::new();
    for run in 1..=opts.runs {
        let turn = format!("device, run {run} of {}", opts.runs);
        let mut arecord = recorder(&d.input, capture.rate, arecord_period_us, arecord_buffer_us)?;
        say(&format!(
            "{turn}: idle beside arecord, source fed in {LARGE_BLOCKS_MS} ms blocks ({idle_seconds} s)"
        ));
        let large = watch_idle(&mut gw, &mut arecord, idle_seconds)?;
        drop(source.take());
        source = Some(feeder(
            FEED_SINK,
            CARD_RATE,
            SMALL_BLOCKS_MS,
            Feed::Silence,
        )?);
        say(&format!(
            "{turn}: idle beside arecord, source fed in {SMALL_BLOCKS_MS} ms blocks"
        ));
        let small = watch_idle(&mut gw, &mut arecord, idle_seconds)?;
        drop(source.take());
        say(&format!("{turn}: idle beside arecord, source stopped"));
        let stopped = watch_idle(&mut gw, &mut arecord, idle_seconds)?;
        drop(arecord);
        source = Some(feeder(
            FEED_SINK,
            CARD_RATE,
            LARGE_BLOCKS_MS,
            Feed::Silence,
        )?);
        std::thread::sleep(SETTLE);
        say(&format!("{turn}: radio -> Zello, {seconds} s of speech"));
        let up = radio_to_zello(&mut gw, emulator, &mut streams, &speech, seconds)?;
        std::thread::sleep(Duration::from_secs(1));
        say(&format!("{turn}: Zello -> radio, {seconds} s of speech"));
        let down = zello_to_radio(&mut gw, rt, &dispatcher, &settings, &packets)?;
        say(&format!(
            "{turn}: libopus alone, paced in real time ({seconds} s)"
        ));
        let (encoder_floor, decoder_floor) = paced_floors(&settings, &clip16, &packets)?;
        runs.push(DeviceRun {
            idle: [large, small, stopped],
            radio_to_zello: up,
            zello_to_radio: down,
            encoder_floor,
            decoder_floor,
        });
    }

    say(&format!(
        "device: start latency, {} bursts with a reader on {}",
        d.onsets, d.input
    ));
    let start_latencies_ms = start_latencies(&mut gw, emulator, &mut streams, d, &bursts)?;
    let peak_rss_kb = procstat::peak_rss_kb(gw.pid);
    drop(dispatcher);
    gw.child.stop();
    drop(source);
    report(
        opts,
        d,
        &DeviceMeasured {
            runs,
            capture,
            playback,
            arecord_period_us,
            arecord_buffer_us,
            onsets_sent: d.onsets,
            start_latencies_ms,
            peak_rss_kb,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::procstat::ThreadUsage;

    #[test]
    fn the_open_line_is_read_in_both_forms() {
        let today = "2026-12-03T14:20:06.585642Z  INFO zello_gateway::audio::sound: sound \
                     capture open: 48000 Hz, 1 channel(s), i16, 2048 frames per callback \
                     device=radio_mic";
        assert_eq!(
            parse_open_line(today, Way::Capture),
            Some(Opened {
                rate: 48000,
                period_frames: 2048,
                buffer_frames: None
            })
        );
        assert_eq!(parse_open_line(today, Way::Playback), None);
        let tomorrow = "INFO zello_gateway::audio::sound: sound playback open: 44100 Hz, 1 \
                        channel(s), i16, period 960 frames (20.0 ms), buffer 3840 frames \
                        device=radio_spk engine_rate=48000";
        assert_eq!(
            parse_open_line(tomorrow, Way::Playback),
            Some(Opened {
                rate: 44100,
                period_frames: 960,
                buffer_frames: Some(3840)
            })
        );
        for bad in [
            "sound capture open: 48000 Hz, 1 channel(s), i16",
            "sound capture open: Hz, 0 frames per callback",
            "sound capture open: 48000 Hz, period many frames",
            "sound capture open: 48000 Hz, period 960 (20 ms)",
            "sound capture open: 48000 Hz, 0 frames per callback",
            "radio ready radio=r channel=C",
            "",
        ] {
            assert_eq!(parse_open_line(bad, Way::Capture), None, "{bad}");
        }
        assert_eq!(frames_us(960, 48000), 20_000);
        assert_eq!(frames_us(2048, 48000), 42_667);
    }

    #[test]
    fn the_configuration_is_one_the_gateway_takes() {
        let opts = BenchOptions {
            frame_ms: 20,
            complexity: 5,
            bitrate: Some(16000),
            fec: true,
            ..BenchOptions::default()
        };
        let d = DeviceOptions {
            input: "plughw:CARD=\"x\",DEV=0".into(),
            ..DeviceOptions::new(PathBuf::from("/bin/true"))
        };
        let text = config_text("ws://127.0.0.1:8800/ws", &d, &opts.encoder_settings());
        let config = Config::parse(&text, "test", Path::new(".")).expect(&text);
        let radio = &config.radios[0];
        assert_eq!(radio.codec.frame_ms, 20);
        assert_eq!(radio.codec.complexity, 5);
        assert_eq!(radio.codec.bitrate, Some(16000));
        assert!(radio.codec.fec);
        assert_eq!(radio.timing.rx_min_ms, TimingConfig::default().rx_min_ms);
        match &radio.audio {
            crate::config::AudioConfig::Cpal(s) => {
                assert_eq!(s.input, "plughw:CARD=\"x\",DEV=0");
                assert_eq!(s.output, DEFAULT_OUTPUT);
                assert_eq!(s.sample_rate, CARD_RATE);
            }
            other => panic!("{other:?}"),
        }
        assert!(validate(&opts, &d).is_ok());
    }

    #[test]
    fn bad_device_options_are_refused_naming_the_option() {
        let opts = BenchOptions {
            frame_ms: 20,
            ..BenchOptions::default()
        };
        let d = || DeviceOptions::new(PathBuf::from("/bin/true"));
        let refused = |opts: &BenchOptions, d: &DeviceOptions, option: &str| match validate(opts, d)
        {
            Err(BenchError::Option { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        };
        refused(
            &BenchOptions {
                frame_ms: 10,
                ..opts.clone()
            },
            &d(),
            "--frame-ms",
        );
        refused(
            &BenchOptions {
                idle_seconds: 0.0,
                ..opts.clone()
            },
            &d(),
            "--idle-seconds",
        );
        refused(&opts, &DeviceOptions { onsets: 0, ..d() }, "--onsets");
        refused(
            &opts,
            &DeviceOptions {
                period_ms: Some(0),
                ..d()
            },
            "--period-ms",
        );
        refused(
            &opts,
            &DeviceOptions {
                output: " ".into(),
                ..d()
            },
            "--device-output",
        );
        // The gateway's own limits: a bitrate libopus takes but the configuration does not.
        refused(
            &BenchOptions {
                bitrate: Some(500),
                ..opts.clone()
            },
            &d(),
            "--device",
        );
    }

    fn usage(wall_s: u64, cpu_ms: u64, wakeups: u64) -> Usage {
        Usage {
            wall: Duration::from_secs(wall_s),
            cpu: Duration::from_millis(cpu_ms),
            wakeups,
            threads: vec![ThreadUsage {
                name: "codec-radio".into(),
                threads: 1,
                cpu: Duration::from_millis(cpu_ms),
                wakeups,
            }],
        }
    }

    fn device_run(idle_ms: u64, up_ms: u64, floor_ms: u64) -> DeviceRun {
        let idle = |g: u64, a: u64| IdleRun {
            gateway: usage(10, g, 1000),
            arecord: usage(10, a, 500),
        };
        DeviceRun {
            // 10 s at idle_ms: idle_ms / 100 % of a core.
            idle: [idle(idle_ms, 30), idle(600, 40), idle(9000, 25)],
            // 10 s of wall, 400 packets of 20 ms (8 s of audio).
            radio_to_zello: MessageRun {
                usage: usage(10, up_ms, 2000),
                packets: 400,
            },
            // Half the idle cost: the idle cost moved.
            zello_to_radio: MessageRun {
                usage: usage(10, idle_ms / 2, 1000),
                packets: 400,
            },
            encoder_floor: PacedFloor {
                cpu: Duration::from_millis(floor_ms),
                audio: Duration::from_secs(8),
            },
            decoder_floor: PacedFloor {
                cpu: Duration::from_millis(40),
                audio: Duration::from_secs(8),
            },
        }
    }

    #[test]
    fn the_report_takes_idle_off_and_gives_medians_and_ratios_of_medians() {
        let opts = BenchOptions {
            frame_ms: 20,
            idle_seconds: 10.0,
            ..BenchOptions::default()
        };
        let d = DeviceOptions::new(PathBuf::from("/bin/true"));
        let measured = DeviceMeasured {
            // Idle 0.8, 1.0, 1.2 %; radio -> Zello less idle: (200-80)/8, (260-100)/8,
            // (300-120)/8 ms per s; the encoder's floor 80/8, 100/8, 90/8 ms per s.
            runs: vec![
                device_run(80, 200, 80),
                device_run(100, 260, 100),
                device_run(120, 300, 90),
            ],
            capture: Opened {
                rate: 48000,
                period_frames: 960,
                buffer_frames: Some(3840),
            },
            playback: None,
            arecord_period_us: 20_000,
            arecord_buffer_us: 80_000,
            onsets_sent: 4,
            start_latencies_ms: vec![300.0, 280.0, 310.0],
            peak_rss_kb: Some(11_520),
        };
        let r = report(&opts, &d, &measured).unwrap();
        assert_eq!(r.idle_large_blocks.gateway_percent_of_core, 1.0);
        assert_eq!(r.idle_large_blocks.arecord_percent_of_core, 0.3);
        assert_eq!(r.idle_large_blocks.excess_percent_of_core, 0.7);
        assert_eq!(r.idle_large_blocks.gateway_wakeups_per_s, 100.0);
        assert_eq!(r.idle_large_blocks.feeder_latency_ms, Some(500));
        assert_eq!(r.idle_small_blocks.gateway_percent_of_core, 6.0);
        assert_eq!(r.idle_source_stopped.gateway_percent_of_core, 90.0);
        assert_eq!(r.idle_source_stopped.feeder_latency_ms, None);
        assert_eq!(
            r.radio_to_zello.runs_cpu_s_per_audio_s,
            [0.015, 0.02, 0.0225]
        );
        assert_eq!(r.radio_to_zello.cpu_s_per_audio_s, 0.02);
        assert_eq!(r.radio_to_zello.gross_cpu_s_per_audio_s, 0.0325);
        assert_eq!(r.radio_to_zello.paced_floor_cpu_s_per_audio_s, 0.01125);
        assert_eq!(r.radio_to_zello.ratio_to_paced_floor, 1.78);
        assert_eq!(r.radio_to_zello.wakeups_per_packet, 5.0);
        assert_eq!(r.radio_to_zello.wakeups_per_s, 200.0);
        assert_eq!(r.radio_to_zello.packets, 1200);
        assert_eq!(r.radio_to_zello.turns_below_idle, 0);
        // Nothing above idle counts as zero, not less, and is said.
        assert_eq!(r.zello_to_radio.cpu_s_per_audio_s, 0.0);
        assert_eq!(r.zello_to_radio.turns_below_idle, 3);
        assert_eq!(r.zello_to_radio.paced_floor_cpu_s_per_audio_s, 0.005);
        assert_eq!(r.start_latency.median_ms, Some(300.0));
        assert_eq!(r.start_latency.min_ms, Some(280.0));
        assert_eq!(r.start_latency.max_ms, Some(310.0));
        assert_eq!(r.start_latency.measured, 3);
        assert_eq!(r.start_latency.rx_min_ms, 250);
        assert_eq!(r.start_latency.compare_ms, 290.0);
        assert_eq!(r.capture_period_ms, 20.0);
        assert_eq!(r.peak_rss_mb, Some(11.3));
        assert_eq!(r.threads.radio_to_zello[0].cpu_percent_of_core, 3.0);
        assert_eq!(r.threads.radio_to_zello[0].wakeups_per_s, 200.0);

        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "capture",
            "arecord_period_us",
            "idle_large_blocks",
            "idle_small_blocks",
            "idle_source_stopped",
            "radio_to_zello",
            "zello_to_radio",
            "threads",
            "peak_rss_mb",
            "start_latency",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        assert_eq!(json["capture"]["period_frames"], 960);
        assert_eq!(json["idle_small_blocks"]["excess_percent_of_core"], 5.6);
        assert_eq!(json["radio_to_zello"]["ratio_to_paced_floor"], 1.78);
        assert_eq!(json["start_latency"]["rx_min_ms"], 250);
        assert_eq!(
            json["threads"]["idle_large_blocks"][0]["name"],
            "codec-radio"
        );
        let mut table = String::new();
        r.write_table(&mut table);
        assert!(
            table.contains("start latency (median of 3 of 4)"),
            "{table}"
        );
        assert!(table.contains("1.78x the paced encoder"), "{table}");
        assert!(table.contains("excess +0.70 %"), "{table}");
        assert!(
            table.contains("3 of 3 turns cost less than idling did"),
            "{table}"
        );
    }

    #[test]
    fn each_onset_is_matched_with_the_message_it_started() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let onsets = [at(1000), at(4000), at(7000), at(10_000)];
        let messages = [
            // A message before any onset (an earlier phase's) is nobody's.
            (at(500), Some(at(520))),
            (at(1280), Some(at(1300))),
            // The second onset started no message; the third's came with its packet.
            (at(7270), Some(at(7290))),
            // A message with no packet yet gives nothing.
            (at(10_300), None),
        ];
        let got = match_onsets(&onsets, &messages);
        assert_eq!(got, [300.0, 290.0]);
        assert!(match_onsets(&[], &messages).is_empty());
        assert!(match_onsets(&onsets, &[]).is_empty());
    }

    #[test]
    fn the_bursts_start_after_a_second_of_silence_and_are_spaced() {
        let b = bursts(2);
        let rate = CARD_RATE as usize;
        assert_eq!(
            b.len(),
            rate + 2 * (BURST_SPACING * CARD_RATE as f32) as usize
        );
        let mut onsets = Vec::new();
        super::super::rig::Onsets::new(CARD_RATE).feed(&b, |i| onsets.push(i));
        assert_eq!(onsets.len(), 2);
        assert!(onsets[0] >= rate && onsets[0] < rate + 48, "{onsets:?}");
        assert_eq!(
            onsets[1] - onsets[0],
            (BURST_SPACING * CARD_RATE as f32) as usize
        );
    }
}
