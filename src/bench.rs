//! `zello-gateway bench`: what the gateway costs on this machine, beside what Opus alone
//! costs, in one run.
//!
//! Four phases, each measured on its own:
//! 1. **The floor**: bare libopus encoding and decoding the speech clip at 16 kHz mono on
//!    one thread, with the gateway's encoder settings. CPU time of that thread
//!    (`getrusage(RUSAGE_THREAD)`). Measured twice: as fast as it goes, and **paced** like
//!    the pipeline, with one sleep until the next deadline after every frame. A real-time
//!    pipeline pays for those sleeps (the sleep itself, and libopus finding its caches cold
//!    after it); the paced floor shows how much of the pipeline's ratio to the floor that
//!    is.
//! 2. **The pipeline**: the same clip, at the sound card's 48 kHz, through everything the
//!    gateway does for a radio in both directions, faster than real time: radio A's capture
//!    ring -> resampling to 16 kHz -> carrier detect -> Opus encode -> bridge -> session ->
//!    WebSocket to the emulator on loopback -> gateway B's session -> router -> bridge ->
//!    playout -> Opus decode at 48 kHz -> radio B's playback ring. Both radios are duplex:
//!    A's playback ring and B's capture ring (silence, carrier detect) run too. CPU time of
//!    the whole process (`getrusage(RUSAGE_SELF)`) less the emulator's thread
//!    (`RUSAGE_THREAD` on it), per second of audio carried. Every packet A sent must have
//!    been played by B, with nothing dropped anywhere, or the run fails.
//!    Beside it, the **wake-ups** per packet of each gateway's network threads and of the
//!    thread that ticks the engines: every time a thread went to sleep and was woken, or
//!    was preempted (voluntary and involuntary context switches, from
//!    `/proc/self/task/*/status`). Each costs tens of microseconds of CPU on a small
//!    machine, so the hand-offs between threads are counted, not only timed.
//!    In turns with it, the same pipeline with both gateways serving the **status API** as
//!    the daemon does, one dashboard on each subscribed to every room
//!    ([`dashboard`]: its thread's CPU left out, what it received counted): what the API
//!    adds, in percent of the pipeline.
//! 3. **Latency**, in real time: clicks through the same pipeline, with the gateways
//!    behind a relay that notes when each packet leaves gateway A's socket and reaches
//!    gateway B's (see [`BenchReport`] for what each figure covers).
//! 4. **Peak RSS** with 1 and with 10 active duplex radios, each in a child process of its
//!    own (`zello-gateway bench --rss-child N`), with the status API on as the daemon runs
//!    it and without.
//!
//! Besides, an **idle** gateway in real time, with its status API (nobody connected) and
//! without, in turns.
//!
//! The engines are ticked by the benchmark ([`gateway::run_with`] with
//! [`EngineDrive::Caller`](crate::gateway::EngineDrive::Caller)); everything else is the
//! daemon's own code.
//!
//! [`gateway::run_with`]: crate::gateway::run_with

mod dashboard;
mod device;
mod idle;
mod latency;
mod pipeline;
mod procstat;
mod report;
mod rig;
mod rss;
mod tap;
mod wakeups;

pub use device::{DeviceOptions, DeviceReport};
pub use report::{BenchReport, ThreadWakeups};
use report::{Measured, report};
pub use rss::{RssChildOptions, RssChildReport, rss_child};

use crate::audio::AudioError;
use crate::audio::CODEC_RATE;
use crate::audio::opus::{EncoderSettings, FRAME_MS, OpusDecoder, OpusEncoder, max_packet_samples};
use crate::audio::speech::speech_like;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed of the speech clip (the same talker every run).
const SEED: u64 = 7;

/// What to measure, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Seconds of speech for the floors and the pipeline, 1 to 600.
    pub seconds: f32,
    /// Opus encoder complexity, 0 to 10 (the gateway's default is 10).
    pub complexity: u8,
    /// Opus bitrate in bit/s; `None` lets libopus choose, as the gateway does by default.
    pub bitrate: Option<i32>,
    /// Opus in-band FEC, expecting 10 % packet loss (as the Zello apps' streams do); off by
    /// default, as in the gateway.
    pub fec: bool,
    /// Opus frame duration in ms: 10, 20, 40 or 60 (the gateway's default is 60). One frame
    /// per packet.
    pub frame_ms: u8,
    /// How many times faster than real time the pipeline and the paced floor are paced, 1
    /// to 100.
    pub speedup: f32,
    /// Times the floors and the pipeline are each measured, in turns, 1 to 9: the figures
    /// are the medians (the machine's load moves single runs by 10 % or more).
    pub runs: usize,
    /// Clicks sent for the latency figures, 0 (no latency phase) to 100. With 12 or more
    /// and 60 ms frames, every 5 ms phase of the frame is tried.
    pub clicks: usize,
    /// The `zello-gateway` binary to start the peak-RSS children with; `None` skips them.
    pub rss_exe: Option<PathBuf>,
    /// Seconds of speech each radio sends and then plays in a peak-RSS child, 1 to 60.
    pub rss_seconds: f32,
    /// Seconds of real time an idle gateway is watched for, 0 (no idle phase) to 600.
    pub idle_seconds: f32,
    /// The device phase (`--device`): the gateway started as a child on real sound
    /// devices; `None` skips it.
    pub device: Option<DeviceOptions>,
    /// Worker threads of each gateway's runtime in the pipeline, latency, idle and memory
    /// phases: 0 (the default) is the daemon's own current-thread runtime.
    pub runtime_workers: usize,
    /// Say on standard error what is being measured.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            seconds: 30.0,
            complexity: 10,
            bitrate: None,
            fec: false,
            frame_ms: 60,
            speedup: 10.0,
            runs: 3,
            clicks: 12,
            rss_exe: None,
            rss_seconds: 5.0,
            idle_seconds: 10.0,
            device: None,
            runtime_workers: 0,
            progress: false,
        }
    }
}

impl BenchOptions {
    /// The encoder settings these options describe (16 kHz mono, one frame per packet,
    /// otherwise the gateway's defaults).
    pub fn encoder_settings(&self) -> EncoderSettings {
        EncoderSettings {
            sample_rate: CODEC_RATE,
            frame_ms: self.frame_ms,
            frames_per_packet: 1,
            bitrate: self.bitrate,
            complexity: self.complexity,
            fec: self.fec,
            ..EncoderSettings::default()
        }
    }

    /// Checks every option; the error names the first bad one and what is accepted.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |option: &'static str, message: String| BenchError::Option { option, message };
        if !(self.seconds.is_finite() && (1.0..=600.0).contains(&self.seconds)) {
            return Err(bad("--seconds", format!("{} (use 1 to 600)", self.seconds)));
        }
        if !(self.speedup.is_finite() && (1.0..=100.0).contains(&self.speedup)) {
            return Err(bad("--speedup", format!("{} (use 1 to 100)", self.speedup)));
        }
        if !(1..=9).contains(&self.runs) {
            return Err(bad("--runs", format!("{} (use 1 to 9)", self.runs)));
        }
        if self.clicks > 100 {
            return Err(bad("--clicks", format!("{} (use 0 to 100)", self.clicks)));
        }
        if !(self.rss_seconds.is_finite() && (1.0..=60.0).contains(&self.rss_seconds)) {
            return Err(bad(
                "--rss-seconds",
                format!("{} (use 1 to 60)", self.rss_seconds),
            ));
        }
        if self.runtime_workers > 8 {
            return Err(bad(
                "--runtime-workers",
                format!(
                    "{} (use 0 to 8; 0 is the daemon's current-thread runtime)",
                    self.runtime_workers
                ),
            ));
        }
        if !(self.idle_seconds.is_finite() && (0.0..=600.0).contains(&self.idle_seconds)) {
            return Err(bad(
                "--idle-seconds",
                format!(
                    "{} (use 0 to 600; 0 skips the idle phase)",
                    self.idle_seconds
                ),
            ));
        }
        if !FRAME_MS.contains(&self.frame_ms) {
            return Err(bad(
                "--frame-ms",
                format!("{} (use 10, 20, 40 or 60)", self.frame_ms),
            ));
        }
        self.encoder_settings()
            .validate()
            .map_err(|e| bad("codec", e.to_string()))?;
        match &self.device {
            Some(d) => device::validate(self, d),
            None => Ok(()),
        }
    }
}

/// Command-line options of the `bench` subcommand.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  zello-gateway bench\n  zello-gateway bench --json --seconds 60 --complexity 5 --bitrate 16000\n  zello-gateway bench --fec --frame-ms 20 --complexity 5 --bitrate 16000\n  zello-gateway bench --device --frame-ms 20 --complexity 5 --bitrate 16000 --fec"
)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds of speech for the floors and the pipeline (1 to 600).
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f32,
    /// Opus encoder complexity, 0 to 10.
    #[arg(long, default_value_t = 10)]
    pub complexity: u8,
    /// Opus bitrate in bit/s (500 to 512000); without it libopus chooses, as the gateway
    /// does by default.
    #[arg(long)]
    pub bitrate: Option<i32>,
    /// Opus frame duration in ms: 10, 20, 40 or 60 (20, 40 or 60 with --device).
    #[arg(long, default_value_t = 60)]
    pub frame_ms: u8,
    /// Opus in-band forward error correction on, expecting 10 % packet loss as the Zello
    /// apps' streams do, in every phase: a run with and one without say what FEC costs.
    #[arg(long)]
    pub fec: bool,
    /// How many times faster than real time to pace the pipeline and the paced floor (1 to
    /// 100).
    #[arg(long, default_value_t = 10.0)]
    pub speedup: f32,
    /// Times to measure the floors and the pipeline, in turns (1 to 9); medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Clicks to time for the latency figures (0 to 100; 0 skips them).
    #[arg(long, default_value_t = 12)]
    pub clicks: usize,
    /// Seconds each radio sends and plays while peak memory is measured (1 to 60).
    #[arg(long, default_value_t = 5.0)]
    pub rss_seconds: f32,
    /// Seconds of real time an idle gateway (logged on, squelch closed, nothing on the
    /// channel) is watched for its CPU use (0 to 600; 0 skips it).
    #[arg(long, default_value_t = 10.0)]
    pub idle_seconds: f32,
    /// Skip the peak-memory measurement (it starts this program again, twice).
    #[arg(long)]
    pub no_rss: bool,
    /// Also run the gateway itself (this program, `zello-gateway run`, as a child) through real
    /// ALSA sound devices, against the emulator: idle cost beside arecord, CPU per audio
    /// second both ways, threads and wake-ups, start latency. Takes minutes; needs the test
    /// devices of scripts/pulse-test-env.sh (or others named below), pacat and arecord.
    #[arg(long)]
    pub device: bool,
    /// With --device: the ALSA capture device (it must hear the PulseAudio sink radio_mic,
    /// which the benchmark plays into).
    #[arg(long, default_value = device::DEFAULT_INPUT, requires = "device")]
    pub device_input: String,
    /// With --device: the ALSA playback device.
    #[arg(long, default_value = device::DEFAULT_OUTPUT, requires = "device")]
    pub device_output: String,
    /// With --device: the device period to ask the gateway for, in ms (its audio.period_ms);
    /// without it, the gateway's default.
    #[arg(long, requires = "device")]
    pub period_ms: Option<u32>,
    /// With --device: tone bursts for the start latency (1 to 50).
    #[arg(long, default_value_t = device::DEFAULT_ONSETS, requires = "device")]
    pub onsets: usize,
    /// Worker threads of the gateway's runtime (0 to 8): 0, the default, is the daemon's
    /// current-thread runtime; more compares a multi-thread runtime with that many workers.
    #[arg(long, default_value_t = 0)]
    pub runtime_workers: usize,
    /// Internal: be the peak-memory child with this many radios.
    #[arg(long, hide = true)]
    pub rss_child: Option<usize>,
    /// Internal: the emulator's URL, for --rss-child.
    #[arg(long, hide = true)]
    pub server: Option<String>,
    /// Internal: with --rss-child, serve the status API as the daemon does.
    #[arg(long, hide = true)]
    pub rss_api: bool,
}

impl BenchArgs {
    /// The benchmark's options; `exe` is this program, for the peak-memory children.
    pub fn options(&self, exe: Option<PathBuf>) -> BenchOptions {
        BenchOptions {
            seconds: self.seconds,
            complexity: self.complexity,
            bitrate: self.bitrate,
            fec: self.fec,
            frame_ms: self.frame_ms,
            speedup: self.speedup,
            runs: self.runs,
            clicks: self.clicks,
            rss_exe: if self.no_rss { None } else { exe.clone() },
            rss_seconds: self.rss_seconds,
            idle_seconds: self.idle_seconds,
            device: exe.filter(|_| self.device).map(|exe| DeviceOptions {
                input: self.device_input.clone(),
                output: self.device_output.clone(),
                period_ms: self.period_ms,
                onsets: self.onsets,
                ..DeviceOptions::new(exe)
            }),
            runtime_workers: self.runtime_workers,
            progress: true,
        }
    }

    /// With `--rss-child N`: what the child is to do.
    pub fn child_options(&self) -> Result<Option<RssChildOptions>, BenchError> {
        let Some(radios) = self.rss_child else {
            return Ok(None);
        };
        let opts = self.options(None);
        opts.validate()?;
        if !(1..=crate::zello::sim::MAX_CHANNELS).contains(&radios) {
            return Err(BenchError::Option {
                option: "--rss-child",
                message: format!("{radios} (use 1 to {})", crate::zello::sim::MAX_CHANNELS),
            });
        }
        let server = self.server.clone().ok_or(BenchError::Option {
            option: "--server",
            message: "needed with --rss-child".into(),
        })?;
        Ok(Some(RssChildOptions {
            radios,
            server,
            seconds: self.rss_seconds,
            settings: opts.encoder_settings(),
            api: self.rss_api,
        }))
    }
}

/// Why a benchmark could not be run, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range: change it.
    #[error("{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    /// Opus or the sound rings refused the settings.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Something the benchmark needs did not start (a thread, a socket, a gateway).
    #[error("cannot start {what}: {message}")]
    Setup { what: String, message: String },
    /// A phase did not complete; the message says what went wrong.
    #[error("{phase}: {message}")]
    Failed {
        phase: &'static str,
        message: String,
    },
    /// A peak-RSS child process failed.
    #[error("peak RSS with {radios} radios: {message}")]
    Child { radios: usize, message: String },
    /// A program the device phase runs is not installed.
    #[error("{tool} is not installed: install the {package} package (scripts/deps.sh does)")]
    Tool { tool: String, package: &'static str },
    /// A sound device of the device phase cannot be opened.
    #[error(
        "cannot open the sound device {device}: {message}; run scripts/pulse-test-env.sh to \
         create the test devices (radio_mic, radio_spk), or name others with --device-input \
         and --device-output"
    )]
    Device { device: String, message: String },
}

/// CPU time (user + system) of the process (`libc::RUSAGE_SELF`) or of the calling thread
/// (`libc::RUSAGE_THREAD`), from the kernel's nanosecond clocks (`CLOCK_PROCESS_CPUTIME_ID`,
/// `CLOCK_THREAD_CPUTIME_ID`): `getrusage` may count whole scheduler ticks (4 ms), coarse
/// beside the floor's half second.
pub(crate) fn cpu_time(who: libc::c_int) -> Result<Duration, BenchError> {
    let clock = if who == libc::RUSAGE_THREAD {
        libc::CLOCK_THREAD_CPUTIME_ID
    } else {
        libc::CLOCK_PROCESS_CPUTIME_ID
    };
    // SAFETY: `timespec` is a plain C struct for which all-zero bytes are a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid for writes; `clock` is a clock id the kernel knows.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(BenchError::Failed {
            phase: "clock_gettime",
            message: std::io::Error::last_os_error().to_string(),
        });
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
    Ok(Duration::new(secs, nanos))
}

/// The process's peak resident set in KiB: `VmHWM` from /proc/self/status, else
/// `ru_maxrss`.
pub fn peak_rss_kb() -> Option<u64> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if hwm.is_some() {
            return hwm;
        }
    }
    // SAFETY: `rusage` is a plain C struct for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writes; RUSAGE_SELF is a value getrusage takes.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    u64::try_from(usage.ru_maxrss).ok()
}

/// Absolute deadlines: step `k` is due `k` periods after the clock was made, so time spent
/// working never adds up to drift.
pub(crate) struct Clock {
    start: Instant,
    period: Duration,
}

impl Clock {
    pub(crate) fn new(period: Duration) -> Self {
        Clock {
            start: Instant::now(),
            period,
        }
    }

    /// Sleeps until step `k` is due (at once if it is late).
    pub(crate) fn wait(&self, k: u64) {
        let due = self.start + self.period.mul_f64(k as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The floor's result: CPU time and bytes encoded.
struct Floor {
    cpu: Duration,
    bytes: usize,
}

/// Encodes and decodes `clip` (16 kHz) packet by packet on this thread, as fast as it
/// goes.
fn floor(settings: &EncoderSettings, clip: &[i16]) -> Result<Floor, BenchError> {
    codec_loop(settings, clip, None)
}

/// The floor's work ticked like the pipeline: after every engine frame, one sleep until the
/// next absolute deadline, `speedup` times closer together than real time. What pacing
/// costs on this machine (the sleep itself, and libopus finding its caches cold after it)
/// is in the thread's CPU time, as it is in the pipeline's; the tight floor leaves it out.
fn paced_floor(
    settings: &EncoderSettings,
    clip: &[i16],
    speedup: f64,
) -> Result<Floor, BenchError> {
    codec_loop(settings, clip, Some(speedup))
}

/// The floors' loop. With `pace`, one wait per frame of `settings.frame_ms`, as the
/// pipeline's loop does, the packet encoded and decoded in the frame that completes it.
fn codec_loop(
    settings: &EncoderSettings,
    clip: &[i16],
    pace: Option<f64>,
) -> Result<Floor, BenchError> {
    let mut encoder = OpusEncoder::new(settings)?;
    let mut decoder = OpusDecoder::new(settings.sample_rate)?;
    let mut packet = Vec::with_capacity(4000);
    let mut pcm = vec![0i16; max_packet_samples(settings.sample_rate)];
    let mut bytes = 0;
    let frame = Duration::from_millis(u64::from(settings.frame_ms));
    let before = cpu_time(libc::RUSAGE_THREAD)?;
    let clock = pace.map(|speedup| Clock::new(frame.div_f64(speedup)));
    let mut k = 0u64;
    let mut frame_done = || {
        if let Some(clock) = &clock {
            k += 1;
            clock.wait(k);
        }
    };
    for chunk in clip.chunks_exact(encoder.samples_per_packet()) {
        // The packet's earlier frames: the engine gathers their samples and waits.
        for _ in 1..settings.frames_per_packet {
            frame_done();
        }
        encoder.encode_packet(chunk, &mut packet)?;
        bytes += packet.len();
        decoder.decode(Some(&packet), &mut pcm)?;
        frame_done();
    }
    let cpu = cpu_time(libc::RUSAGE_THREAD)?.saturating_sub(before);
    Ok(Floor { cpu, bytes })
}

/// The machine, for the report.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default();
    let mut m = format!("{}, {cores} cores", std::env::consts::ARCH);
    if !model.is_empty() {
        m.push_str(", ");
        m.push_str(&model);
    }
    m
}

/// The pipeline runs' wake-ups thread by thread: per role and thread name, the medians of
/// the runs per packet (a run without such a thread counts as none).
fn thread_wakeups(pipelines: &[pipeline::PipelineRun]) -> Vec<ThreadWakeups> {
    let mut out: Vec<ThreadWakeups> = Vec::new();
    let groups = |w: &pipeline::PipelineWakeups| -> Vec<(&'static str, wakeups::ThreadGroup)> {
        let single = |name: &str, switches| wakeups::ThreadGroup {
            name: name.into(),
            threads: 1,
            switches,
        };
        let mut g: Vec<(&'static str, wakeups::ThreadGroup)> = Vec::new();
        g.extend(
            w.radio_to_zello
                .iter()
                .map(|t| ("radio_to_zello", t.clone())),
        );
        g.extend(
            w.zello_to_radio
                .iter()
                .map(|t| ("zello_to_radio", t.clone())),
        );
        g.push(("engines", single("engines", w.engines)));
        g.push(("emulator", single(rig::EMULATOR_THREAD, w.emulator)));
        g
    };
    for p in pipelines {
        for (role, g) in groups(&p.wakeups) {
            if !out.iter().any(|o| o.role == role && o.thread == g.name) {
                out.push(ThreadWakeups {
                    role: role.into(),
                    thread: g.name.clone(),
                    threads: 0,
                    voluntary_per_packet: 0.0,
                    involuntary_per_packet: 0.0,
                });
            }
        }
    }
    for o in &mut out {
        let mut voluntary = Vec::new();
        let mut involuntary = Vec::new();
        for p in pipelines {
            let n = p.packets.max(1) as f64;
            let found = groups(&p.wakeups)
                .into_iter()
                .find(|(role, g)| *role == o.role && g.name == o.thread)
                .map(|(_, g)| g);
            let (threads, s) = found.map_or((0, wakeups::Switches::default()), |g| {
                (g.threads, g.switches)
            });
            o.threads = o.threads.max(threads);
            voluntary.push(s.voluntary as f64 / n);
            involuntary.push(s.involuntary as f64 / n);
        }
        o.voluntary_per_packet = round(median(&voluntary).unwrap_or(0.0), 2);
        o.involuntary_per_packet = round(median(&involuntary).unwrap_or(0.0), 2);
    }
    out
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn worst(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(f64::total_cmp)
}

/// Runs every phase and puts the figures together.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    opts.validate()?;
    rig::RUNTIME_WORKERS.store(opts.runtime_workers, std::sync::atomic::Ordering::Relaxed);
    let say = |what: &str| {
        if opts.progress {
            eprintln!("bench: {what}");
        }
    };
    if let Some(d) = &opts.device {
        device::preflight(opts, d)?;
    }
    let settings = opts.encoder_settings();
    let speedup = f64::from(opts.speedup);

    let clip16 = speech_like(CODEC_RATE, opts.seconds, SEED);
    let clip48: Arc<[i16]> = speech_like(rig::CARD_RATE, opts.seconds, SEED).into();
    let emulator = rig::Emulator::start()?;
    // The floors and the pipeline in turns, so a change in the machine's load falls on all.
    let mut floors: Vec<Floor> = Vec::new();
    let mut paced_floors: Vec<Floor> = Vec::new();
    let mut pipelines: Vec<pipeline::PipelineRun> = Vec::new();
    let mut api_pipelines: Vec<pipeline::PipelineRun> = Vec::new();
    for run in 0..opts.runs {
        say(&format!("the floor (libopus alone), run {}", run + 1));
        floors.push(floor(&settings, &clip16)?);
        say(&format!(
            "the floor paced like the pipeline, run {}",
            run + 1
        ));
        paced_floors.push(paced_floor(&settings, &clip16, speedup)?);
        say(&format!("the pipeline, run {}", run + 1));
        pipelines.push(pipeline::run(
            &emulator, &settings, &clip48, speedup, run, false,
        )?);
        say(&format!(
            "the pipeline with the status API and a dashboard, run {}",
            run + 1
        ));
        api_pipelines.push(pipeline::run(
            &emulator, &settings, &clip48, speedup, run, true,
        )?);
    }
    drop((clip16, clip48));

    let latencies = if opts.clicks > 0 {
        say("latency (real time)");
        latency::measure(&emulator, &settings, opts.clicks)?
    } else {
        latency::Latencies::default()
    };

    // Without and with the status API (nobody connected), in turns.
    let (mut idle, mut idle_api) = (Vec::new(), Vec::new());
    if opts.idle_seconds > 0.0 {
        for run in 0..opts.runs {
            for (api, runs) in [(false, &mut idle), (true, &mut idle_api)] {
                say(&format!(
                    "an idle gateway{} (real time), run {}",
                    if api { " with its status API" } else { "" },
                    run + 1
                ));
                runs.push(idle::run(
                    &emulator,
                    &settings,
                    f64::from(opts.idle_seconds),
                    api,
                    run,
                )?);
            }
        }
    }

    // With the status API, as the daemon runs, and without it, to tell what it adds.
    let (mut rss1, mut rss10, mut rss1_no_api, mut rss10_no_api) = (None, None, None, None);
    if let Some(exe) = &opts.rss_exe {
        for (n, api, slot) in [
            (1, true, &mut rss1),
            (1, false, &mut rss1_no_api),
            (10, true, &mut rss10),
            (10, false, &mut rss10_no_api),
        ] {
            let radios = if n == 1 { "radio" } else { "radios" };
            let with = if api { "with" } else { "without" };
            say(&format!(
                "peak RSS with {n} {radios}, {with} the status API (real time)"
            ));
            let r = rss::measure(&emulator, exe, n, opts.rss_seconds, &settings, api)?;
            *slot = Some(round(r.peak_rss_kb as f64 / 1024.0, 1));
        }
    }

    let device = match &opts.device {
        Some(d) => {
            // The second user on the channel runs in the background while the benchmark
            // watches the child.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("bench-dispatcher")
                .enable_all()
                .build()
                .map_err(|e| BenchError::Setup {
                    what: "the dispatcher's runtime".into(),
                    message: e.to_string(),
                })?;
            Some(device::run(&rt, &emulator, opts, d, &say)?)
        }
        None => None,
    };
    drop(emulator);

    Ok(report(
        opts,
        &Measured {
            floors,
            paced_floors,
            pipelines,
            api_pipelines,
            latencies,
            idle,
            idle_api,
            peak_rss_mb: (rss1, rss10),
            peak_rss_mb_no_api: (rss1_no_api, rss10_no_api),
            device,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_delivers_every_packet_and_times_every_click() {
        let report = run(&BenchOptions {
            seconds: 2.0,
            speedup: 4.0,
            runs: 2,
            clicks: 3,
            idle_seconds: 1.0,
            ..BenchOptions::default()
        })
        .expect("the benchmark runs");
        assert!(
            report
                .idle_cpu_percent_of_core
                .is_some_and(|p| p.is_finite() && p >= 0.0),
            "{report:?}"
        );
        assert!(report.idle_seconds >= 1.0, "{report:?}");
        assert!(
            report
                .idle_api_cpu_percent_of_core
                .is_some_and(|p| p.is_finite() && p >= 0.0),
            "{report:?}"
        );
        assert_eq!(report.idle_api_runs_cpu_percent_of_core.len(), 2);
        // The pipeline with the API ran as often, and its dashboards got the messages.
        assert_eq!(report.api_pipeline_runs_cpu_s_per_audio_s.len(), 2);
        assert!(report.api_pipeline_cpu_s_per_audio_s > 0.0, "{report:?}");
        assert_eq!(report.api_dashboard_message_starts, 4, "{report:?}");
        assert_eq!(report.api_dashboard_resyncs, 0, "{report:?}");
        assert_eq!(report.floor_runs_cpu_s_per_audio_s.len(), 2);
        assert_eq!(report.paced_floor_runs_cpu_s_per_audio_s.len(), 2);
        assert_eq!(report.pipeline_runs_cpu_s_per_audio_s.len(), 2);
        // 2 s of 60 ms packets, the last one partly silence; `run` itself fails unless B
        // played every packet A sent with nothing dropped.
        assert!((34..=35).contains(&report.packets), "{report:?}");
        for v in [
            report.floor_cpu_s_per_audio_s,
            report.paced_floor_cpu_s_per_audio_s,
            report.pipeline_cpu_s_per_audio_s,
            report.ratio_to_floor,
            report.ratio_to_paced_floor,
            report.realtime_factor,
        ] {
            assert!(v.is_finite() && v > 0.0, "{report:?}");
        }
        // Every packet wakes A's network side (the engine hands it over) and B's (it
        // arrives); the engines' thread sleeps once per frame.
        assert!(report.wakeups_radio_to_zello_per_packet > 0.0, "{report:?}");
        assert!(report.wakeups_zello_to_radio_per_packet > 0.0, "{report:?}");
        assert!(report.wakeups_engines_per_packet > 0.5, "{report:?}");
        assert_eq!(report.latency_clicks, 3);
        for v in [
            report.latency_radio_to_zello_ms,
            report.latency_radio_to_zello_median_ms,
            report.latency_zello_to_radio_ms,
            report.latency_zello_to_radio_median_ms,
            report.latency_server_median_ms,
            report.latency_end_to_end_median_ms,
        ] {
            assert!(v.is_some_and(|ms| ms.is_finite() && ms > 0.0), "{report:?}");
        }
        assert_eq!(report.latency_radio_to_zello_clicks_ms.len(), 3);
        assert_eq!(report.latency_zello_to_radio_clicks_ms.len(), 3);
        assert_eq!(report.playout_depth_ms, 120.0);
        assert_eq!(
            report.peak_rss_mb_1_radio, None,
            "no children without an exe"
        );

        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "floor_cpu_s_per_audio_s",
            "paced_floor_cpu_s_per_audio_s",
            "pipeline_cpu_s_per_audio_s",
            "ratio_to_floor",
            "ratio_to_paced_floor",
            "realtime_factor",
            "latency_radio_to_zello_ms",
            "latency_zello_to_radio_ms",
            "peak_rss_mb_1_radio",
            "peak_rss_mb_10_radios",
            "complexity",
            "bitrate",
            "frame_ms",
            "audio_seconds",
            "wakeups_radio_to_zello_per_packet",
            "wakeups_zello_to_radio_per_packet",
            "wakeups_engines_per_packet",
            "wakeups_threads",
            "api_pipeline_cpu_s_per_audio_s",
            "api_added_cpu_percent_of_pipeline",
            "api_dashboard_events",
            "api_dashboard_levels",
            "idle_api_cpu_percent_of_core",
            "peak_rss_mb_1_radio_no_api",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        let table = report.to_table();
        assert!(table.contains("latency radio -> Zello"), "{table}");
        assert!(table.contains("peak RSS, 10 radios"), "{table}");
    }

    #[test]
    fn the_ratios_are_of_the_medians() {
        let cpu = |ms: u64| Duration::from_millis(ms);
        let floor = |ms: u64| Floor {
            cpu: cpu(ms),
            bytes: 15_000,
        };
        let switches = |voluntary, involuntary| wakeups::Switches {
            voluntary,
            involuntary,
        };
        let group = |name: &str, threads, voluntary, involuntary| wakeups::ThreadGroup {
            name: name.into(),
            threads,
            switches: switches(voluntary, involuntary),
        };
        // 200 packets; A's network side wakes 2, 3 and 2.5 times per packet in the runs.
        let pipeline = |ms: u64| pipeline::PipelineRun {
            audio: Duration::from_secs(10),
            wall: Duration::from_secs(1),
            cpu: cpu(ms),
            engines_cpu: cpu(ms / 2),
            emulator_cpu: cpu(10),
            dashboard_cpu: Duration::ZERO,
            dashboard: None,
            packets: 200,
            concealed: 0,
            held_back: 0,
            wakeups: pipeline::PipelineWakeups {
                radio_to_zello: vec![
                    group("gw-a-net", 1, 2, 0),
                    group("gw-a-rt", 2, ms * 2 - 100, 98),
                ],
                zello_to_radio: vec![group("gw-b-rt", 2, 230, 20)],
                engines: switches(201, 3),
                emulator: switches(400, 0),
            },
        };
        let with_api = |mut p: pipeline::PipelineRun, events, levels| {
            p.dashboard_cpu = Duration::from_millis(5);
            p.dashboard = Some(dashboard::Received {
                events,
                levels,
                message_starts: 4,
                ..Default::default()
            });
            p
        };
        let idle = |ms: u64| idle::IdleRun {
            wall: Duration::from_secs(10),
            cpu: Duration::from_millis(ms),
        };
        let opts = BenchOptions {
            seconds: 10.0,
            runs: 3,
            ..BenchOptions::default()
        };
        // Per audio second: floor 0.010, 0.012, 0.014; paced 0.013, 0.015, 0.020; pipeline
        // 0.020, 0.030, 0.025. The medians' ratios (2.08, 1.67) are neither the means' nor
        // the median of the runs' ratios.
        let report = report(
            &opts,
            &Measured {
                floors: vec![floor(100), floor(120), floor(140)],
                paced_floors: vec![floor(130), floor(150), floor(200)],
                pipelines: vec![pipeline(200), pipeline(300), pipeline(250)],
                api_pipelines: vec![
                    with_api(pipeline(210), 30, 4),
                    with_api(pipeline(260), 28, 2),
                    with_api(pipeline(400), 31, 3),
                ],
                latencies: latency::Latencies::default(),
                idle: vec![idle(23), idle(30), idle(20)],
                idle_api: vec![idle(24), idle(21), idle(40)],
                peak_rss_mb: (Some(9.5), Some(21.0)),
                peak_rss_mb_no_api: (Some(8.25), Some(20.5)),
                device: None,
            },
        );
        assert_eq!(report.idle_cpu_percent_of_core, Some(0.23));
        assert_eq!(report.idle_api_cpu_percent_of_core, Some(0.24));
        assert_eq!(report.idle_runs_cpu_percent_of_core, [0.23, 0.3, 0.2]);
        assert_eq!(report.idle_seconds, 10.0);
        // With the API: 0.021, 0.026, 0.040 per audio second; the median's 0.001 more is
        // 4 % of the plain pipeline's median.
        assert_eq!(report.api_pipeline_cpu_s_per_audio_s, 0.026);
        assert_eq!(report.api_added_cpu_s_per_audio_s, 0.001);
        assert_eq!(report.api_added_cpu_percent_of_pipeline, 4.0);
        assert_eq!(report.api_dashboard_cpu_s_per_audio_s, 0.0005);
        assert_eq!(report.api_dashboard_events, 28);
        assert_eq!(report.api_dashboard_levels, 2);
        assert_eq!(report.api_dashboard_message_starts, 4);
        assert_eq!(report.api_dashboard_resyncs, 0);
        assert_eq!(report.peak_rss_mb_1_radio_no_api, Some(8.25));
        assert_eq!(report.floor_cpu_s_per_audio_s, 0.012);
        assert_eq!(report.paced_floor_cpu_s_per_audio_s, 0.015);
        assert_eq!(report.pipeline_cpu_s_per_audio_s, 0.025);
        assert_eq!(report.ratio_to_floor, 2.08);
        assert_eq!(report.ratio_to_paced_floor, 1.67);
        assert_eq!(
            report.paced_floor_runs_cpu_s_per_audio_s,
            [0.013, 0.015, 0.02]
        );
        // (2 + 300 + 98) / 200, (2 + 500 + 98) / 200, (2 + 400 + 98) / 200: median 2.5.
        assert_eq!(report.wakeups_radio_to_zello_per_packet, 2.5);
        assert_eq!(report.wakeups_zello_to_radio_per_packet, 1.25);
        assert_eq!(report.wakeups_engines_per_packet, 1.02);
        assert_eq!(report.wakeups_emulator_per_packet, 2.0);
        let a_rt = report
            .wakeups_threads
            .iter()
            .find(|w| w.thread == "gw-a-rt")
            .unwrap();
        assert_eq!(
            (a_rt.role.as_str(), a_rt.threads, a_rt.voluntary_per_packet),
            ("radio_to_zello", 2, 2.0)
        );
        assert_eq!(a_rt.involuntary_per_packet, 0.49);
        assert_eq!(
            report.wakeups_threads.len(),
            5,
            "{:?}",
            report.wakeups_threads
        );

        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["paced_floor_cpu_s_per_audio_s"], 0.015);
        assert_eq!(json["ratio_to_paced_floor"], 1.67);
        assert_eq!(json["ratio_to_floor"], 2.08);
        let table = report.to_table();
        let line = |what: &str| {
            table
                .lines()
                .find(|l| l.trim_start().starts_with(what))
                .unwrap_or_else(|| panic!("{what}: {table}"))
        };
        assert!(
            line("floor paced like the pipeline").contains("0.01500"),
            "{table}"
        );
        assert!(
            line("pipeline:").contains("2.08x the floor, 1.67x the paced floor"),
            "{table}"
        );
        assert!(line("idle gateway,").contains("0.23 %"), "{table}");
        assert!(line("idle gateway with").contains("0.24 %"), "{table}");
        assert!(
            line("pipeline with status API").contains("0.02600")
                && line("pipeline with status API").contains("+4.0 %"),
            "{table}"
        );
        assert!(line("what the dashboards").contains("28 events"), "{table}");
        assert!(line("peak RSS, 1 radio").contains("+1.2 MiB"), "{table}");
        assert_eq!(json["api_added_cpu_percent_of_pipeline"], 4.0);
        assert_eq!(json["idle_api_cpu_percent_of_core"], 0.24);
        assert_eq!(json["peak_rss_mb_10_radios_no_api"], 20.5);
        let row = line("wake-ups per packet, radio -> Zello");
        assert!(row.contains("2.50"), "{table}");
        assert!(row.contains("gw-a-rt 2.00 + 0.49"), "{table}");
        assert_eq!(json["wakeups_zello_to_radio_per_packet"], 1.25);
        assert_eq!(json["wakeups_threads"][0]["role"], "radio_to_zello");
    }

    #[test]
    fn fec_is_on_where_the_options_say_and_the_report_says_so() {
        assert!(!BenchOptions::default().encoder_settings().fec);
        let opts = BenchOptions {
            fec: true,
            ..BenchOptions::default()
        };
        assert!(opts.encoder_settings().fec);
        let report = report(
            &opts,
            &Measured {
                floors: Vec::new(),
                paced_floors: Vec::new(),
                pipelines: Vec::new(),
                api_pipelines: Vec::new(),
                latencies: latency::Latencies::default(),
                idle: Vec::new(),
                idle_api: Vec::new(),
                peak_rss_mb: (None, None),
                peak_rss_mb_no_api: (None, None),
                device: None,
            },
        );
        assert!(report.fec);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["fec"], true);
        assert!(report.to_table().contains("FEC on (10 % expected loss)"));
    }

    #[test]
    fn the_paced_floor_sleeps_once_per_frame() {
        // 1 s of 20 ms frames at 10x real time: 50 waits 2 ms apart, so at least 98 ms.
        let settings = BenchOptions {
            frame_ms: 20,
            ..BenchOptions::default()
        }
        .encoder_settings();
        let clip = speech_like(CODEC_RATE, 1.0, SEED);
        let start = Instant::now();
        let paced = paced_floor(&settings, &clip, 10.0).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(98));
        let tight = floor(&settings, &clip).unwrap();
        assert_eq!(paced.bytes, tight.bytes, "the same work");
        assert!(paced.cpu > Duration::ZERO && tight.cpu > Duration::ZERO);
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        let refused = |opts: BenchOptions, option: &str| match opts.validate() {
            Err(BenchError::Option { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        };
        let d = BenchOptions::default;
        refused(
            BenchOptions {
                seconds: f32::NAN,
                ..d()
            },
            "--seconds",
        );
        refused(
            BenchOptions {
                seconds: 0.5,
                ..d()
            },
            "--seconds",
        );
        refused(
            BenchOptions {
                speedup: 0.0,
                ..d()
            },
            "--speedup",
        );
        refused(
            BenchOptions {
                frame_ms: 30,
                ..d()
            },
            "--frame-ms",
        );
        refused(
            BenchOptions {
                runtime_workers: 9,
                ..d()
            },
            "--runtime-workers",
        );
        refused(
            BenchOptions {
                complexity: 11,
                ..d()
            },
            "codec",
        );
        refused(
            BenchOptions {
                bitrate: Some(100),
                ..d()
            },
            "codec",
        );
        refused(BenchOptions { clicks: 101, ..d() }, "--clicks");
        refused(
            BenchOptions {
                idle_seconds: -1.0,
                ..d()
            },
            "--idle-seconds",
        );
        refused(BenchOptions { runs: 0, ..d() }, "--runs");
        refused(BenchOptions { runs: 10, ..d() }, "--runs");
        refused(
            BenchOptions {
                rss_seconds: 0.0,
                ..d()
            },
            "--rss-seconds",
        );
        assert!(d().validate().is_ok());
        // `run` checks before doing anything.
        assert!(matches!(
            run(&BenchOptions { frame_ms: 0, ..d() }),
            Err(BenchError::Option { .. })
        ));
    }

    #[test]
    fn summaries_of_the_clicks() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(worst(&[1.0, 5.0, 2.0]), Some(5.0));
        assert_eq!(round(1.23456, 2), 1.23);
    }

    #[test]
    fn cpu_time_and_peak_memory_are_readable() {
        let before = cpu_time(libc::RUSAGE_THREAD).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(cpu_time(libc::RUSAGE_THREAD).unwrap() >= before);
        assert!(cpu_time(libc::RUSAGE_SELF).unwrap() > Duration::ZERO);
        assert!(peak_rss_kb().is_some_and(|kb| kb > 0));
    }
}
