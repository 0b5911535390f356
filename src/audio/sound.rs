//! The sound-card backend: ALSA PCMs, the radio's receiver audio in ([`CpalInput`]) and its
//! transmitter audio out ([`CpalOutput`]). (cpal lists the devices; the streams are ALSA's own,
//! see [`super::alsa_pcm`].)
//!
//! # Threads and wake-ups
//! No thread waits on the device. The codec engine's thread, which ticks once per frame at
//! absolute deadlines anyway, takes what the capture side has gathered since its last tick and
//! queues its frame on the playback side, with non-blocking calls: capture and playback cost no
//! wake-up of their own, and nothing polls a plugin's descriptor (PulseAudio's and PipeWire's
//! ALSA plugins say "ready" with nothing to read, which makes a polling thread spin). Both
//! sides ask for a small period (`audio.period_ms`, 20 ms by default), so audio reaches the
//! engine a period after it reaches the card. The playback stream runs only while a message
//! plays: it starts with a lead of silence and is stopped once the message has played out.
//! Everything the engine's thread does here (downmix, resampling with [`Resampler`], sample
//! conversion) uses buffers allocated at open.
//!
//! Each side also has a device thread of its own that opens the PCM, watches the counters the
//! reader or writer keeps (a few times a second) and closes and reopens the PCM when it fails.
//!
//! # Device loss
//! USB sound cards vanish and come back (RF in the cable, hot plug). When a read or write says
//! the device is gone, or errors go on while it moves no audio, or it moves no audio for a
//! while though asked, the device thread closes it, logs once that the device is lost, and
//! tries to reopen it with a backoff of 1 s doubling up to 30 s. The next `read_frame` or
//! `write_frame` returns [`AudioError::Device`] once for that loss (the engine tells the bridge,
//! which unkeys the transmitter); later calls deliver nothing until the device is back. When it
//! is, the device thread hands the reader or writer the fresh PCM and logs once that it is
//! back. [`CpalInput::health`] / [`CpalOutput::health`] tell where things stand.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use alsa::pcm::State;
use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{SampleFormat, SupportedStreamConfigRange};
use rtrb::{Consumer, Producer, RingBuffer};
use serde::Deserialize;

use super::alsa_pcm::{DEFAULT_PERIOD_MS, Direction, IoFailure, OpenFailure, PERIOD_MS_RANGE, Pcm};
use super::resample::Resampler;
use super::{AudioError, AudioInput, AudioOutput, CODEC_RATE};

/// The sound card's sample rate when the configuration names none.
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;

/// Rates Opus decodes to directly; an output card running at one of them gets the decoded audio
/// without resampling.
pub const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Configuration key of the capture device, named in errors.
pub const INPUT_KEY: &str = "audio.input";
/// Configuration key of the playback device, named in errors.
pub const OUTPUT_KEY: &str = "audio.output";
/// Configuration key of the sample rate, named in errors.
pub const RATE_KEY: &str = "audio.sample_rate";
/// The configuration key of the device period.
pub const PERIOD_KEY: &str = "audio.period_ms";

/// `audio = { backend = "cpal", input = "...", output = "...", sample_rate = 48000 }`: the
/// ALSA PCM names of the radio's sound card (see [`describe_devices`] for the names that exist)
/// and the rate to run the card at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundSettings {
    /// Capture device: the radio's receiver audio, e.g. `plughw:CARD=Device,DEV=0`.
    pub input: String,
    /// Playback device: audio for the radio's transmitter.
    pub output: String,
    /// Sample rate of the sound card in Hz (both directions); 48000 unless given.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// The device period in ms (how much audio the card moves at a time), both directions;
    /// 20 unless given. The device's nearest supported period is used, and said in the log.
    #[serde(default = "default_period_ms")]
    pub period_ms: u32,
}

fn default_period_ms() -> u32 {
    DEFAULT_PERIOD_MS
}

fn default_sample_rate() -> u32 {
    DEFAULT_SAMPLE_RATE
}

/// Where a sound device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceHealth {
    /// The stream runs.
    Open,
    /// The device failed; the device thread tries to reopen it.
    Lost {
        /// When the loss was noticed.
        since: SystemTime,
        /// What went wrong.
        reason: String,
        /// Reopen attempts that failed so far.
        attempts: u32,
        /// Why the last reopen attempt failed.
        last_error: Option<String>,
    },
    /// The backend was dropped.
    Closed,
}

/// Counters of one side of the sound card (see [`CpalInput::stats`], [`CpalOutput::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoundStats {
    /// Sound-card callbacks so far.
    pub callbacks: u64,
    /// Capture: callbacks whose samples did not all fit in the ring (the reader fell behind).
    pub overruns: u64,
    /// Capture: sample frames lost to overruns.
    pub overrun_frames: u64,
    /// Playback: times the ring ran dry while a message was playing (the writer fell behind);
    /// counted once until the next write.
    pub underruns: u64,
    /// Playback: samples that did not fit in the ring and were dropped, or that were written
    /// while the device was lost.
    pub dropped_samples: u64,
    /// Capture: sample frames discarded to keep the capture latency bounded (the sound card's
    /// clock runs faster than the system clock the engine ticks on).
    pub skipped_frames: u64,
    /// Overruns and underruns the driver itself reported.
    pub xruns: u64,
    /// Other errors the driver reported; the stream went on if it kept calling back.
    pub stream_errors: u64,
    /// Times the device was lost.
    pub losses: u64,
    /// Times the device came back.
    pub reopens: u64,
}

/// A handle on one side of the sound card that stays valid after the [`CpalInput`] or
/// [`CpalOutput`] has been handed to the codec engine: for status reports and health checks.
#[derive(Clone)]
pub struct SoundMonitor {
    key: &'static str,
    device: String,
    counters: Arc<Counters>,
    health: Arc<Mutex<DeviceHealth>>,
}

impl SoundMonitor {
    /// The configuration key of the device (`audio.input` or `audio.output`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Where the device stands.
    pub fn health(&self) -> DeviceHealth {
        lock(&self.health).clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> SoundStats {
        self.counters.snapshot()
    }
}

impl std::fmt::Debug for SoundMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundMonitor")
            .field("key", &self.key)
            .field("device", &self.device)
            .field("health", &self.health())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters and flags shared with the sound card's callbacks: atomics only.
#[derive(Debug, Default)]
struct Counters {
    /// Device path: reads or writes that moved samples. Rings: callbacks.
    callbacks: AtomicU64,
    /// Device path: reads or writes tried (a device that is asked and moves nothing for long
    /// has stalled).
    attempts: AtomicU64,
    overruns: AtomicU64,
    overrun_frames: AtomicU64,
    underruns: AtomicU64,
    dropped_samples: AtomicU64,
    skipped_frames: AtomicU64,
    xruns: AtomicU64,
    losses: AtomicU64,
    reopens: AtomicU64,
    /// Stream errors other than xruns.
    errors: AtomicU64,
    /// Set by the stream's error callback when the device is gone for sure.
    fatal: AtomicBool,
    /// The last error (see [`failure_code`]).
    failure: AtomicU8,
    /// Capture: the reader has started, so samples are kept (before, they are not counted as
    /// overruns).
    armed: AtomicBool,
    /// Playback: [`IDLE`], [`PLAYING`], [`DRAINING`] or [`STARVED`].
    play_state: AtomicU8,
}

impl Counters {
    fn snapshot(&self) -> SoundStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SoundStats {
            callbacks: get(&self.callbacks),
            overruns: get(&self.overruns),
            overrun_frames: get(&self.overrun_frames),
            underruns: get(&self.underruns),
            dropped_samples: get(&self.dropped_samples),
            skipped_frames: get(&self.skipped_frames),
            xruns: get(&self.xruns),
            stream_errors: get(&self.errors),
            losses: get(&self.losses),
            reopens: get(&self.reopens),
        }
    }
}

/// No message is playing: an empty ring is not an underrun.
const IDLE: u8 = 0;
/// A message is playing: an empty ring is an underrun.
const PLAYING: u8 = 1;
/// The message has ended; when the ring runs dry it is over.
const DRAINING: u8 = 2;
/// The ring ran dry while a message was playing (counted once); the next write queues a lead
/// of silence again.
const STARVED: u8 = 3;

const FAILURE_NONE: u8 = 0;
const FAILURE_GONE: u8 = 1;
const FAILURE_IO: u8 = 2;

/// Sorts a read or write failure: `None` for failures the stream survives, else the
/// failure code.
fn failure_code(f: &IoFailure) -> Option<u8> {
    match f {
        IoFailure::Xrun => None,
        IoFailure::Gone(_) => Some(FAILURE_GONE),
        IoFailure::Other(_) => Some(FAILURE_IO),
    }
}

fn failure_text(code: u8) -> &'static str {
    match code {
        FAILURE_GONE => "the device disappeared (unplugged?)",
        FAILURE_IO => "the driver reported an I/O error",
        _ => "the stream failed",
    }
}

/// Forgets the failure of a stream that is gone, before the next one opens.
fn clear_failure(counters: &Counters) {
    counters.failure.store(FAILURE_NONE, Ordering::Relaxed);
    counters.fatal.store(false, Ordering::Release);
}

/// Counts a failed read or write (atomics only).
///
/// A device that is gone is lost at once. Other errors (an I/O error from a driver or
/// plugin) are only counted: the device thread declares the device lost if they go on while
/// the device moves no samples (see [`watch`]), since some drivers report a transient error
/// and carry on.
fn on_io_failure(counters: &Counters, f: &IoFailure) {
    if *f == IoFailure::Xrun {
        counters.xruns.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(code) = failure_code(f) {
        counters.failure.store(code, Ordering::Relaxed);
        counters.errors.fetch_add(1, Ordering::Release);
        if code == FAILURE_GONE {
            counters.fatal.store(true, Ordering::Release);
        }
    }
}

/// Sample formats the backend opens devices with.
trait DeviceSample: cpal::SizedSample + Copy + Send + 'static {
    const SILENCE: Self;
    fn to_f32(self) -> f32;
    fn from_i16(sample: i16) -> Self;
}

impl DeviceSample for i16 {
    const SILENCE: Self = 0;
    fn to_f32(self) -> f32 {
        f32::from(self) / 32768.0
    }
    fn from_i16(sample: i16) -> Self {
        sample
    }
}

impl DeviceSample for f32 {
    const SILENCE: Self = 0.0;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_i16(sample: i16) -> Self {
        f32::from(sample) / 32768.0
    }
}

fn to_i16(sample: f32) -> i16 {
    // Adding and taking away 1.5 × 2^23 rounds to the nearest integer (ties to even) without
    // the library call `f32::round` is on processors without SSE4.1; `as` saturates at the
    // i16 range (values too large to round stay too large) and maps NaN to 0.
    const ROUND: f32 = 12_582_912.0;
    ((sample * 32768.0 + ROUND) - ROUND) as i16
}

/// The capture callback: copies whole sample frames into the ring, counts what did not fit.
/// Runs on the sound card's thread: no allocation, no lock.
fn capture_callback<T: DeviceSample>(
    data: &[T],
    channels: usize,
    ring: &mut Producer<f32>,
    counters: &Counters,
) {
    counters.callbacks.fetch_add(1, Ordering::Relaxed);
    if !counters.armed.load(Ordering::Relaxed) {
        return;
    }
    let channels = channels.max(1);
    let whole = data.len() / channels * channels;
    let room = ring.slots() / channels * channels;
    let n = whole.min(room);
    if let Ok(chunk) = ring.write_chunk_uninit(n) {
        chunk.fill_from_iter(data[..n].iter().map(|s| s.to_f32()));
    }
    if n < whole {
        counters.overruns.fetch_add(1, Ordering::Relaxed);
        counters
            .overrun_frames
            .fetch_add(((whole - n) / channels) as u64, Ordering::Relaxed);
    }
}

/// The playback callback: fills every channel of the device buffer from the mono ring, then
/// silence; counts an underrun when the ring runs short while a message plays. Runs on the
/// sound card's thread: no allocation, no lock.
fn playback_callback<T: DeviceSample>(
    out: &mut [T],
    channels: usize,
    ring: &mut Consumer<i16>,
    counters: &Counters,
) {
    counters.callbacks.fetch_add(1, Ordering::Relaxed);
    let channels = channels.max(1);
    let frames = out.len() / channels;
    let n = frames.min(ring.slots());
    if let Ok(chunk) = ring.read_chunk(n) {
        let (a, b) = chunk.as_slices();
        for (frame, &s) in out.chunks_exact_mut(channels).zip(a.iter().chain(b)) {
            frame.fill(T::from_i16(s));
        }
        chunk.commit_all();
    }
    out[n * channels..].fill(T::SILENCE);
    if n < frames {
        // PLAYING: an underrun (counted once, until the writer catches up). DRAINING: the
        // message's last sample has gone out.
        let next = |s| match s {
            PLAYING => Some(STARVED),
            DRAINING => Some(IDLE),
            _ => None,
        };
        if let Ok(PLAYING) =
            counters
                .play_state
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, next)
        {
            counters.underruns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the device thread and the reader (or writer) share. The ring end is handed over in
/// `slot`, which the reader locks only when `epoch` has changed; the callbacks never see it.
struct Link<E> {
    key: &'static str,
    device: String,
    counters: Arc<Counters>,
    /// Bumped each time a fresh ring end is put in `slot`.
    epoch: AtomicU64,
    /// Bumped each time the device is lost.
    losses: AtomicU64,
    /// Frames per sound-card callback of the current stream.
    period: AtomicUsize,
    slot: Mutex<Option<E>>,
    health: Arc<Mutex<DeviceHealth>>,
}

impl<E> Link<E> {
    fn new(key: &'static str, device: &str, counters: Arc<Counters>) -> Self {
        Self {
            key,
            device: device.to_string(),
            counters,
            epoch: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            period: AtomicUsize::new(0),
            slot: Mutex::new(None),
            health: Arc::new(Mutex::new(DeviceHealth::Closed)),
        }
    }

    fn lost_error(&self) -> AudioError {
        let reason = match &*lock(&self.health) {
            DeviceHealth::Lost { reason, .. } => reason.clone(),
            _ => "the stream failed".to_string(),
        };
        AudioError::Device {
            device: self.device.clone(),
            message: format!(
                "{} lost: {reason}; reopening it in the background",
                self.key
            ),
        }
    }
}

/// The reader's (or writer's) end of a [`Link`].
struct LinkEnd<E> {
    link: Arc<Link<E>>,
    epoch: u64,
    losses: u64,
    ring: Option<E>,
}

enum Poll<'a, E> {
    /// The device was lost since the last call: report it (once).
    Lost(AudioError),
    /// A ring from a newly opened stream: start afresh.
    Fresh(&'a mut E),
    /// The same ring as before.
    Ready(&'a mut E),
    /// No stream (lost, reopening).
    Absent,
}

impl<E> LinkEnd<E> {
    fn new(link: Arc<Link<E>>) -> Self {
        Self {
            link,
            epoch: 0,
            losses: 0,
            ring: None,
        }
    }

    fn poll(&mut self) -> Poll<'_, E> {
        let losses = self.link.losses.load(Ordering::Acquire);
        if losses != self.losses {
            self.losses = losses;
            self.ring = None;
            return Poll::Lost(self.link.lost_error());
        }
        let epoch = self.link.epoch.load(Ordering::Acquire);
        let fresh = epoch != self.epoch;
        if fresh {
            self.epoch = epoch;
            if let Some(ring) = lock(&self.link.slot).take() {
                self.ring = Some(ring);
            }
        }
        match self.ring.as_mut() {
            None => Poll::Absent,
            Some(ring) if fresh => Poll::Fresh(ring),
            Some(ring) => Poll::Ready(ring),
        }
    }
}

/// A stream that opened: the stream (kept on the device thread), the ring end for the reader or
/// writer, and the frames per callback.
struct Opened<E, S> {
    stream: S,
    ring: E,
    period: usize,
    description: String,
}

/// Reopen delays after a loss.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// First reopen attempt after this long, then twice as long each time...
    backoff_first: Duration,
    /// ...up to this.
    backoff_max: Duration,
    /// How often the device thread looks at the stream.
    poll: Duration,
    /// A stream that reports errors and has moved no samples for this long is lost.
    grace: Duration,
    /// A stream that has moved no samples for this long while asked is lost, errors or not.
    stall: Duration,
}

const TIMING: Timing = Timing {
    backoff_first: Duration::from_secs(1),
    backoff_max: Duration::from_secs(30),
    poll: Duration::from_millis(250),
    grace: Duration::from_millis(300),
    stall: Duration::from_secs(5),
};

/// Waits on `stop` for `d`; true when the thread should end (the backend was dropped).
fn stopped(stop: &Receiver<()>, d: Duration) -> bool {
    !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
}

/// How long closing a stream may take before the device thread stops waiting for it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes a stream on a helper thread and waits for it at most [`CLOSE_TIMEOUT`]: a driver
/// that hangs while closing a device that has gone away must not stop the device thread from
/// reopening it (or the gateway from shutting down). A stream that does not close in time is
/// left behind with its thread.
fn release<S: Send + 'static>(stream: S, key: &'static str, device: &str) {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let closer = std::thread::Builder::new()
        .name("sound-close".into())
        .spawn(move || {
            drop(stream);
            let _ = done_tx.send(());
        });
    // If the thread cannot start, the stream was dropped with the closure, here.
    if closer.is_ok() && done_rx.recv_timeout(CLOSE_TIMEOUT).is_err() {
        tracing::warn!(
            key,
            device,
            "the sound driver did not close the stream within {} s; leaving it behind",
            CLOSE_TIMEOUT.as_secs()
        );
    }
}

/// The device thread: opens the stream (reporting the first result through `first`), watches
/// it, and reopens it with backoff after a loss, until `stop` is dropped.
fn run_device<E, S: Send + 'static>(
    link: &Link<E>,
    mut open: impl FnMut() -> Result<Opened<E, S>, AudioError>,
    stop: &Receiver<()>,
    timing: Timing,
    first: SyncSender<Result<String, AudioError>>,
) {
    let counters = &link.counters;
    clear_failure(counters);
    let mut opened = match open() {
        Ok(o) => o,
        Err(e) => {
            let _ = first.send(Err(e));
            return;
        }
    };
    let mut first = Some(first);
    loop {
        let stream = opened.stream;
        link.period.store(opened.period, Ordering::Relaxed);
        *lock(&link.slot) = Some(opened.ring);
        *lock(&link.health) = DeviceHealth::Open;
        link.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(first) = first.take() {
            let _ = first.send(Ok(opened.description.clone()));
        }

        let Some(reason) = watch(counters, stop, timing) else {
            release(stream, link.key, &link.device);
            *lock(&link.health) = DeviceHealth::Closed;
            return;
        };
        release(stream, link.key, &link.device);
        lock(&link.slot).take();
        *lock(&link.health) = DeviceHealth::Lost {
            since: SystemTime::now(),
            reason: reason.clone(),
            attempts: 0,
            last_error: None,
        };
        counters.losses.fetch_add(1, Ordering::Relaxed);
        link.losses.fetch_add(1, Ordering::AcqRel);
        tracing::warn!(
            key = link.key,
            device = %link.device,
            "sound device lost: {reason}; reopening it in the background"
        );
        let lost_at = Instant::now();
        let mut delay = timing.backoff_first;
        let mut attempts = 0u32;
        opened = loop {
            if stopped(stop, delay) {
                *lock(&link.health) = DeviceHealth::Closed;
                return;
            }
            attempts = attempts.saturating_add(1);
            clear_failure(counters);
            match open() {
                Ok(o) => break o,
                Err(e) => {
                    tracing::debug!(key = link.key, device = %link.device, attempts, "reopen failed: {e}");
                    if let DeviceHealth::Lost {
                        attempts: a,
                        last_error,
                        ..
                    } = &mut *lock(&link.health)
                    {
                        *a = attempts;
                        *last_error = Some(e.to_string());
                    }
                    delay = (delay * 2).min(timing.backoff_max);
                }
            }
        };
        counters.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            key = link.key,
            device = %link.device,
            "sound device back after {:.1} s ({})",
            lost_at.elapsed().as_secs_f64(),
            opened.description
        );
    }
}

/// Watches a running stream; returns why it is lost, or `None` when the thread should end.
/// A stream is quiet while the reader or writer asks it for samples and it moves none; time
/// nobody asks does not count.
fn watch(counters: &Counters, stop: &Receiver<()>, timing: Timing) -> Option<String> {
    let mut last = counters.callbacks.load(Ordering::Relaxed);
    let mut last_attempts = counters.attempts.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let mut last_errors = counters.errors.load(Ordering::Acquire);
    loop {
        if stopped(stop, timing.poll) {
            return None;
        }
        let failure = || failure_text(counters.failure.load(Ordering::Relaxed)).to_string();
        if counters.fatal.load(Ordering::Acquire) {
            return Some(failure());
        }
        let now = counters.callbacks.load(Ordering::Relaxed);
        let attempts = counters.attempts.load(Ordering::Relaxed);
        if now != last || attempts == last_attempts {
            last_change = Instant::now();
        }
        last = now;
        last_attempts = attempts;
        let errors = counters.errors.load(Ordering::Acquire);
        let erring = errors != last_errors;
        last_errors = errors;
        let quiet = last_change.elapsed();
        if erring && quiet >= timing.grace {
            return Some(failure());
        }
        if quiet >= timing.stall {
            return Some(format!(
                "the device moved no audio for {} s",
                timing.stall.as_secs()
            ));
        }
    }
}

/// The device thread of one side, and the link to it.
struct DeviceThread<E> {
    end: LinkEnd<E>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl<E: Send + 'static> DeviceThread<E> {
    /// Starts the device thread and waits for the first open.
    fn start<S: Send + 'static>(
        link: Link<E>,
        timing: Timing,
        open: impl FnMut() -> Result<Opened<E, S>, AudioError> + Send + 'static,
    ) -> Result<(Self, String), AudioError> {
        let link = Arc::new(link);
        let (stop_tx, stop_rx) = mpsc::channel();
        let (first_tx, first_rx) = mpsc::sync_channel(1);
        let thread_link = link.clone();
        let name = format!("sound-{}", link.key.trim_start_matches("audio."));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run_device(&thread_link, open, &stop_rx, timing, first_tx))
            .map_err(|e| AudioError::Device {
                device: link.device.clone(),
                message: format!("cannot start the device thread: {e}"),
            })?;
        let description = match first_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(AudioError::Device {
                    device: link.device.clone(),
                    message: "the device thread ended without opening the device".into(),
                });
            }
        };
        Ok((
            Self {
                end: LinkEnd::new(link),
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            description,
        ))
    }
}

impl<E> DeviceThread<E> {
    fn health(&self) -> DeviceHealth {
        lock(&self.end.link.health).clone()
    }

    fn monitor(&self) -> SoundMonitor {
        let link = &self.end.link;
        SoundMonitor {
            key: link.key,
            device: link.device.clone(),
            counters: link.counters.clone(),
            health: link.health.clone(),
        }
    }

    fn counters(&self) -> &Counters {
        &self.end.link.counters
    }
}

impl<E> Drop for DeviceThread<E> {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sample frames taken from the capture ring, or engine samples converted for playback, per
/// round: bounds the conversion buffers.
const CHUNK_FRAMES: usize = 1024;

/// The reading side of capture: pops from the ring exactly the samples the next frame needs,
/// downmixes them to mono, resamples them to the codec rate and hands out frames.
struct Capture {
    card_rate: u32,
    channels: usize,
    resampler: Option<Resampler>,
    /// Raw interleaved samples of one round.
    raw: Vec<f32>,
    /// The same, downmixed.
    mono: Vec<f32>,
    /// Codec-rate samples made but not handed out yet.
    staged: VecDeque<i16>,
    /// The smallest backlog seen in the current window of reads: a backlog that never falls
    /// below the limit for a whole window is clock drift (trimmed); a burst after a late
    /// tick is caught up by the following ticks (kept).
    window_min: usize,
    window_reads: u32,
}

/// Reads per backlog window (about 1 to 3 s at 20 to 60 ms frames).
const BACKLOG_WINDOW_READS: u32 = 50;
/// A fresh stream's first window is 5 reads long: a sound server that hands over a large
/// first block (PulseAudio and PipeWire do, after idling) is latency from the start.
const FIRST_WINDOW_START: u32 = BACKLOG_WINDOW_READS - 5;

impl Capture {
    fn new(card_rate: u32, channels: usize) -> Result<Self, String> {
        let channels = channels.max(1);
        let resampler = if card_rate == CODEC_RATE {
            None
        } else {
            Some(Resampler::new(card_rate, CODEC_RATE)?)
        };
        Ok(Self {
            card_rate,
            channels,
            resampler,
            raw: vec![0.0; CHUNK_FRAMES * channels],
            mono: vec![0.0; CHUNK_FRAMES],
            staged: VecDeque::with_capacity(CODEC_RATE as usize),
            window_min: usize::MAX,
            window_reads: FIRST_WINDOW_START,
        })
    }

    fn reset(&mut self) {
        self.staged.clear();
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
        self.window_min = usize::MAX;
        self.window_reads = FIRST_WINDOW_START;
    }

    /// The audio waiting after the frame just taken: raw samples in `ring` and converted
    /// ones staged here.
    fn waiting(&self, ring: &Consumer<f32>) -> Duration {
        samples_duration(ring.slots() / self.channels, self.card_rate)
            + samples_duration(self.staged.len(), CODEC_RATE)
    }

    /// Raw samples the ring may hold before the oldest are discarded. Ticking once per
    /// frame, the engine finds between a frame and a frame plus a period waiting when the
    /// card keeps pace; more than that for a whole window (a burst the card delivered late,
    /// its clock running ahead) is latency that would otherwise stay, since each tick takes
    /// one frame. While the audio is skipped (squelch closed) that is the limit; while it is
    /// read, four frames and a period, so a message loses audio only to a backlog that
    /// would otherwise grow (the carrier is timed by its audio, so a backlog does not delay
    /// the start of a message on the wire).
    fn backlog_limit(&self, frame_len: usize, period: usize, reading: bool) -> usize {
        let frame_in = convert_len(frame_len, CODEC_RATE, self.card_rate);
        let frames = if reading { 4 } else { 1 };
        frame_in
            .saturating_mul(frames)
            .saturating_add(period)
            .saturating_mul(self.channels)
    }

    /// Fills `frame` with the next codec-rate samples; `Ok(false)` if the ring does not hold
    /// enough yet (nothing is taken from it then).
    fn read(
        &mut self,
        ring: &mut Consumer<f32>,
        frame: &mut [i16],
        period: usize,
        counters: &Counters,
    ) -> Result<bool, String> {
        self.take(ring, frame.len(), Some(frame), period, counters)
    }

    /// Takes the next `len` codec-rate samples' worth from the ring like [`read`](Self::read)
    /// but without converting them: the resampler only keeps its history, so the frames
    /// read after are exactly as if these had been read.
    fn skip(
        &mut self,
        ring: &mut Consumer<f32>,
        len: usize,
        period: usize,
        counters: &Counters,
    ) -> Result<bool, String> {
        self.take(ring, len, None, period, counters)
    }

    fn take(
        &mut self,
        ring: &mut Consumer<f32>,
        len: usize,
        frame: Option<&mut [i16]>,
        period: usize,
        counters: &Counters,
    ) -> Result<bool, String> {
        let limit = self.backlog_limit(len, period, frame.is_some());
        let backlog = ring.slots();
        self.window_min = self.window_min.min(backlog);
        self.window_reads += 1;
        if self.window_reads >= BACKLOG_WINDOW_READS {
            let floor = std::mem::replace(&mut self.window_min, usize::MAX);
            self.window_reads = 0;
            if floor > limit {
                let skip = (floor - limit) / self.channels * self.channels;
                if let Ok(chunk) = ring.read_chunk(skip) {
                    chunk.commit_all();
                    counters
                        .skipped_frames
                        .fetch_add((skip / self.channels) as u64, Ordering::Relaxed);
                }
            }
        }
        let missing = len.saturating_sub(self.staged.len());
        // Exactly the card's samples that complete the frame: whatever comes later stays in
        // the ring, where the backlog check sees it.
        let mut wanted = match self.resampler.as_ref() {
            Some(r) => r.input_needed(missing),
            None => missing,
        };
        if ring.slots() / self.channels < wanted {
            return Ok(false);
        }
        // Skipping: what is staged goes, and the outputs still missing are not made.
        let mut skip = 0;
        if frame.is_none() {
            self.staged.drain(..len.min(self.staged.len()));
            skip = missing;
        }
        while wanted > 0 {
            let n = wanted.min(CHUNK_FRAMES);
            wanted -= n;
            let raw = &mut self.raw[..n * self.channels];
            ring.pop_entire_slice(raw).map_err(|e| e.to_string())?;
            let mono = &mut self.mono[..n];
            downmix(raw, self.channels, mono);
            let staged = &mut self.staged;
            match self.resampler.as_mut() {
                Some(r) => r.process_from(mono, &mut skip, |s| staged.push_back(to_i16(s))),
                None => {
                    let skipped = skip.min(n);
                    skip -= skipped;
                    staged.extend(mono[skipped..].iter().map(|&s| to_i16(s)));
                }
            }
        }
        if let Some(frame) = frame {
            for (dst, src) in frame.iter_mut().zip(self.staged.drain(..len)) {
                *dst = src;
            }
        }
        Ok(true)
    }
}

/// The length of `len` samples at `from` Hz once converted to `to` Hz (no overflow on 32-bit
/// targets).
fn convert_len(len: usize, from: u32, to: u32) -> usize {
    let n = len as u128 * u128::from(to) / u128::from(from.max(1));
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Averages the channels of interleaved `raw` into `mono` (one sample per frame).
fn downmix(raw: &[f32], channels: usize, mono: &mut [f32]) {
    let channels = channels.max(1);
    if channels == 1 {
        let n = raw.len().min(mono.len());
        mono[..n].copy_from_slice(&raw[..n]);
        return;
    }
    let scale = 1.0 / channels as f32;
    for (m, frame) in mono.iter_mut().zip(raw.chunks_exact(channels)) {
        *m = frame.iter().sum::<f32>() * scale;
    }
}

/// The writing side of playback: converts the engine's frames to the card's rate when the card
/// does not run at an Opus rate.
struct Playback {
    resampler: Option<Resampler>,
    /// Samples resampled since the last flush (the resampler holds a tail).
    dirty: bool,
    input: Vec<f32>,
    converted: Vec<i16>,
}

impl Playback {
    fn new(engine_rate: u32, card_rate: u32) -> Result<Self, String> {
        let resampler = if engine_rate == card_rate {
            None
        } else {
            Some(Resampler::new(engine_rate, card_rate)?)
        };
        // At most one output more than the rates' ratio gives per round.
        let room = resampler
            .as_ref()
            .map_or(0, |_| convert_len(CHUNK_FRAMES, engine_rate, card_rate) + 2);
        Ok(Self {
            resampler,
            dirty: false,
            input: vec![0.0; CHUNK_FRAMES],
            converted: Vec::with_capacity(room),
        })
    }

    fn reset(&mut self) {
        self.dirty = false;
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
    }

    /// The resampler's delay.
    fn delay(&self) -> Duration {
        self.resampler.as_ref().map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(r.delay_in() / f64::from(r.from_rate()))
        })
    }

    /// Converts `frame` and hands the card-rate samples to `sink`.
    fn push(&mut self, frame: &[i16], sink: &mut dyn FnMut(&[i16])) -> Result<(), String> {
        let Some(r) = self.resampler.as_mut() else {
            sink(frame);
            return Ok(());
        };
        self.dirty = true;
        for piece in frame.chunks(CHUNK_FRAMES) {
            let input = &mut self.input[..piece.len()];
            for (f, &s) in input.iter_mut().zip(piece) {
                *f = f32::from(s) / 32768.0;
            }
            Self::convert(r, input, &mut self.converted, sink);
        }
        Ok(())
    }

    fn convert(
        r: &mut Resampler,
        input: &[f32],
        converted: &mut Vec<i16>,
        sink: &mut dyn FnMut(&[i16]),
    ) {
        converted.clear();
        r.process(input, |s| converted.push(to_i16(s)));
        if !converted.is_empty() {
            sink(converted);
        }
    }

    /// End of message: pushes out what the resampler still holds (its delay, as silence
    /// goes in after the message).
    fn flush(&mut self, sink: &mut dyn FnMut(&[i16])) -> Result<(), String> {
        let Some(r) = self.resampler.as_mut() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut owed = r.delay_in().ceil() as usize;
        while owed > 0 {
            let n = owed.min(CHUNK_FRAMES);
            owed -= n;
            let input = &mut self.input[..n];
            input.fill(0.0);
            Self::convert(r, input, &mut self.converted, sink);
        }
        self.reset();
        Ok(())
    }
}

/// Pushes what fits of `samples` into the ring; counts the rest as dropped.
fn push_samples(ring: &mut Producer<i16>, samples: &[i16], counters: &Counters) {
    let (_, rest) = ring.push_partial_slice(samples);
    if !rest.is_empty() {
        counters
            .dropped_samples
            .fetch_add(rest.len() as u64, Ordering::Relaxed);
    }
}

/// Samples queued in a playback ring.
fn queued(ring: &Producer<i16>) -> usize {
    ring.buffer().capacity() - ring.slots()
}

/// `samples` at `rate` as a duration.
fn samples_duration(samples: usize, rate: u32) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(rate.max(1)))
}

fn open_error(key: &str, device: &str, message: impl Into<String>) -> AudioError {
    AudioError::DeviceOpen {
        key: key.to_string(),
        device: device.to_string(),
        message: message.into(),
    }
}

/// Words for a PCM that did not open, saying what to do about it.
fn explain(f: &OpenFailure, rate: u32, direction: Direction) -> String {
    match f {
        OpenFailure::NotFound => {
            let names = alsa_host().map(|h| device_names(&h)).unwrap_or_default();
            let list = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "no such sound device. Devices that exist: {list} (the `devices` command \
                 describes them)"
            )
        }
        OpenFailure::Busy => "the device is busy: another program (or another radio of this \
             gateway) has it open. Stop that program, or share the card through a dsnoop \
             (capture) or dmix (playback) PCM"
            .to_string(),
        OpenFailure::Permission => {
            "permission denied: add the gateway's user to the `audio` group".to_string()
        }
        OpenFailure::Rate { min, max } => format!(
            "sample rate {rate} Hz ({RATE_KEY}) is not supported; the device supports {} \
             (a plughw: name converts any rate)",
            describe_rates(&[(*min, *max)])
        ),
        OpenFailure::Format => "the device offers neither 16-bit nor float samples; use its \
             plughw: name, which converts"
            .to_string(),
        OpenFailure::Other(text) => {
            format!("the device cannot {} audio: {text}", direction.verb())
        }
    }
}

fn alsa_host() -> Result<cpal::Host, cpal::Error> {
    cpal::host_from_id(cpal::HostId::Alsa)
}

/// Generic ALSA plugin templates that are never a radio's sound card; left out of listings.
const PLUGIN_TEMPLATES: [&str; 11] = [
    "null",
    "jack",
    "oss",
    "lavrate",
    "samplerate",
    "speexrate",
    "speex",
    "upmix",
    "vdownmix",
    "a52",
    "usbstream",
];

fn listed(name: &str) -> bool {
    !PLUGIN_TEMPLATES.contains(&name)
}

fn device_name(device: &cpal::Device) -> Option<String> {
    device.id().ok().map(|id| id.id().to_string())
}

/// The names of the ALSA devices that exist (plugin templates left out).
fn device_names(host: &cpal::Host) -> Vec<String> {
    host.devices()
        .map(|devices| {
            devices
                .filter_map(|d| device_name(&d))
                .filter(|n| listed(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Standard rates shown for devices that take any rate in a range.
const STANDARD_RATES: [u32; 13] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400,
    192_000,
];

/// Supported rates in words: discrete rates listed, continuous ranges as `min-max`.
fn describe_rates(ranges: &[(u32, u32)]) -> String {
    let mut discrete: Vec<u32> = ranges
        .iter()
        .filter(|(lo, hi)| lo == hi)
        .map(|(lo, _)| *lo)
        .collect();
    discrete.sort_unstable();
    discrete.dedup();
    let mut continuous: Vec<(u32, u32)> =
        ranges.iter().filter(|(lo, hi)| lo < hi).copied().collect();
    continuous.sort_unstable();
    continuous.dedup();
    let mut parts: Vec<String> = discrete.iter().map(u32::to_string).collect();
    parts.extend(continuous.iter().map(|(lo, hi)| format!("{lo}-{hi}")));
    if parts.is_empty() {
        "none".to_string()
    } else {
        format!("{} Hz", parts.join(", "))
    }
}

fn usable_format(f: SampleFormat) -> bool {
    matches!(f, SampleFormat::I16 | SampleFormat::F32)
}

/// The open PCM of one side, shared by the device thread (which opens and closes it) and the
/// reader or writer on the codec thread (which moves the samples without blocking). `None`
/// once the device thread has closed it.
type SharedPcm = Arc<Mutex<Option<Pcm>>>;

/// What the device thread keeps of an open stream: dropping it closes the PCM (on the helper
/// thread of [`release`], so a driver that hangs while closing cannot stop the device thread).
struct PcmHolder(SharedPcm);

impl Drop for PcmHolder {
    fn drop(&mut self) {
        let pcm = lock(&self.0).take();
        drop(pcm);
    }
}

/// Opens `name` for `direction`, saying what to do when it does not open.
fn open_pcm(
    key: &'static str,
    name: &str,
    rate: u32,
    period_ms: u32,
    direction: Direction,
) -> Result<Opened<SharedPcm, PcmHolder>, AudioError> {
    if name.trim().is_empty() {
        return Err(open_error(
            key,
            name,
            "no device named; put an ALSA device name here, e.g. plughw:CARD=Device,DEV=0 (the \
             `devices` command lists them)",
        ));
    }
    let pcm = Pcm::open(name, direction, rate, period_ms)
        .map_err(|f| open_error(key, name, explain(&f, rate, direction)))?;
    let period = pcm.opened.period;
    let description = pcm.opened.describe();
    let shared: SharedPcm = Arc::new(Mutex::new(Some(pcm)));
    Ok(Opened {
        stream: PcmHolder(shared.clone()),
        ring: shared,
        period,
        description,
    })
}

fn check_rate(key: &str, device: &str, rate: u32) -> Result<(), AudioError> {
    if rate == 0 {
        return Err(open_error(
            key,
            device,
            format!("{RATE_KEY} = 0 is not a sample rate; use the card's rate, e.g. 48000"),
        ));
    }
    Ok(())
}

fn check_period(key: &str, device: &str, period_ms: u32) -> Result<(), AudioError> {
    if !PERIOD_MS_RANGE.contains(&period_ms) {
        return Err(open_error(
            key,
            device,
            format!(
                "{PERIOD_KEY} = {period_ms} is out of range; use {} to {} ms (20 suits most \
                 cards)",
                PERIOD_MS_RANGE.start(),
                PERIOD_MS_RANGE.end()
            ),
        ));
    }
    Ok(())
}

/// The radio's receiver audio from a sound card's capture side, delivered at [`CODEC_RATE`].
///
/// Each read takes what the device has gathered since the last one (without waiting), then
/// hands out the next frame when there is enough: the codec thread's tick is the only wake-up
/// capture costs.
pub struct CpalInput {
    thread: DeviceThread<SharedPcm>,
    capture: Capture,
    card_rate: u32,
    /// Samples taken from the device and not converted yet (both ends on the reading thread).
    staged: (Producer<f32>, Consumer<f32>),
}

/// A staging ring for `channels` at `rate`: one second of audio.
fn staging(rate: u32, channels: usize) -> (Producer<f32>, Consumer<f32>) {
    RingBuffer::new((rate as usize * channels.max(1)).max(4096))
}

impl CpalInput {
    /// Opens `settings.input` at `settings.sample_rate` with a period near
    /// `settings.period_ms`. Errors name the configuration key and the device: unknown device
    /// (with the names that exist), rate not supported (with the rates that are), device busy.
    pub fn open(settings: &SoundSettings) -> Result<Self, AudioError> {
        Self::open_with(settings, TIMING)
    }

    fn open_with(settings: &SoundSettings, timing: Timing) -> Result<Self, AudioError> {
        let (name, rate, period_ms) = (
            settings.input.clone(),
            settings.sample_rate,
            settings.period_ms,
        );
        check_rate(INPUT_KEY, &name, rate)?;
        check_period(INPUT_KEY, &name, period_ms)?;
        let counters = Arc::new(Counters::default());
        let link = Link::new(INPUT_KEY, &name, counters.clone());
        let capture = Capture::new(rate, 1).map_err(|e| open_error(INPUT_KEY, &name, e))?;
        let (thread, description) = DeviceThread::start(link, timing, move || {
            open_pcm(INPUT_KEY, &name, rate, period_ms, Direction::Capture)
        })?;
        tracing::info!(device = %settings.input, "sound capture open: {description}");
        Ok(Self {
            thread,
            capture,
            card_rate: rate,
            staged: staging(rate, 1),
        })
    }

    /// The sound card's rate (frames are delivered at [`CODEC_RATE`]).
    pub fn card_rate(&self) -> u32 {
        self.card_rate
    }

    /// Where the device stands.
    pub fn health(&self) -> DeviceHealth {
        self.thread.health()
    }

    /// Overruns, losses and the other counters so far.
    pub fn stats(&self) -> SoundStats {
        self.thread.counters().snapshot()
    }

    /// A handle on health and counters that outlives handing the input to the engine.
    pub fn monitor(&self) -> SoundMonitor {
        self.thread.monitor()
    }

    /// Frames per device period of the stream open now (the device's nearest to
    /// `audio.period_ms`); 0 while the device is lost.
    pub fn period_frames(&self) -> usize {
        self.thread.end.link.period.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for CpalInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpalInput")
            .field("device", &self.thread.end.link.device)
            .field("card_rate", &self.card_rate)
            .finish_non_exhaustive()
    }
}

impl AudioInput for CpalInput {
    fn sample_rate(&self) -> u32 {
        CODEC_RATE
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        self.take(frame, true)
    }

    fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        self.take(frame, false)
    }

    fn age(&self) -> Duration {
        self.capture.waiting(&self.staged.1)
    }
}

impl CpalInput {
    /// Takes what the device holds, then reads the next frame into `frame` (`read`), or takes
    /// it unconverted.
    fn take(&mut self, frame: &mut [i16], read: bool) -> Result<bool, AudioError> {
        let link = self.thread.end.link.clone();
        let counters = &link.counters;
        let shared = match self.thread.end.poll() {
            Poll::Lost(e) => {
                self.capture.reset();
                return Err(e);
            }
            Poll::Absent => return Ok(false),
            Poll::Fresh(shared) => {
                let channels = lock(shared).as_ref().map_or(1, |p| p.opened.channels);
                self.capture = Capture::new(self.card_rate, channels)
                    .map_err(|e| open_error(INPUT_KEY, &link.device, e))?;
                self.staged = staging(self.card_rate, channels);
                shared
            }
            Poll::Ready(shared) => shared,
        };
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        let moved = match lock(shared).as_mut() {
            Some(pcm) => pcm.read_into(&mut self.staged.0),
            None => return Ok(false),
        };
        match moved {
            Ok(0) => {}
            Ok(_) => {
                counters.callbacks.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) => on_io_failure(counters, &f),
        }
        let period = link.period.load(Ordering::Relaxed);
        let taken = if read {
            self.capture
                .read(&mut self.staged.1, frame, period, counters)
        } else {
            self.capture
                .skip(&mut self.staged.1, frame.len(), period, counters)
        };
        taken.map_err(|message| AudioError::Device {
            device: link.device.clone(),
            message,
        })
    }
}

/// Audio for the radio's transmitter, played on a sound card. Runs the engine at the card's
/// rate when that is an Opus rate, else at 48 kHz with resampling to the card's rate.
///
/// A message starts the stream with a lead of silence ahead of its first frame; each frame
/// is queued in the device without waiting; once the message has played out the stream is
/// stopped, so an idle output costs nothing.
pub struct CpalOutput {
    thread: DeviceThread<SharedPcm>,
    playback: Playback,
    engine_rate: u32,
    card_rate: u32,
    /// A message is being written (since the first write after `end_of_message`).
    in_message: bool,
    /// The last message ends playing about then: the stream is stopped after it.
    drained_at: Option<Instant>,
}

/// Zeros for the silence queued ahead of a message.
const SILENCE: [i16; 1024] = [0; 1024];

/// How long the playback stream runs on silence after a message before it is stopped.
const KEEP_WARM: Duration = Duration::from_secs(2);

impl CpalOutput {
    /// Opens `settings.output` at `settings.sample_rate` with a period near
    /// `settings.period_ms`. Errors as for [`CpalInput::open`].
    pub fn open(settings: &SoundSettings) -> Result<Self, AudioError> {
        Self::open_with(settings, TIMING)
    }

    fn open_with(settings: &SoundSettings, timing: Timing) -> Result<Self, AudioError> {
        let (name, rate, period_ms) = (
            settings.output.clone(),
            settings.sample_rate,
            settings.period_ms,
        );
        check_rate(OUTPUT_KEY, &name, rate)?;
        check_period(OUTPUT_KEY, &name, period_ms)?;
        let engine_rate = engine_rate_for(rate);
        let playback =
            Playback::new(engine_rate, rate).map_err(|e| open_error(OUTPUT_KEY, &name, e))?;
        let counters = Arc::new(Counters::default());
        let link = Link::new(OUTPUT_KEY, &name, counters.clone());
        let (thread, description) = DeviceThread::start(link, timing, move || {
            open_pcm(OUTPUT_KEY, &name, rate, period_ms, Direction::Playback)
        })?;
        tracing::info!(
            device = %settings.output,
            engine_rate,
            "sound playback open: {description}"
        );
        Ok(Self {
            thread,
            playback,
            engine_rate,
            card_rate: rate,
            in_message: false,
            drained_at: None,
        })
    }

    /// The sound card's rate (frames are written at [`AudioOutput::sample_rate`]).
    pub fn card_rate(&self) -> u32 {
        self.card_rate
    }

    /// Where the device stands.
    pub fn health(&self) -> DeviceHealth {
        self.thread.health()
    }

    /// Underruns, dropped samples, losses and the other counters so far.
    pub fn stats(&self) -> SoundStats {
        self.thread.counters().snapshot()
    }

    /// A handle on health and counters that outlives handing the output to the engine.
    pub fn monitor(&self) -> SoundMonitor {
        self.thread.monitor()
    }

    /// Frames per device period of the stream open now (the device's nearest to
    /// `audio.period_ms`); 0 while the device is lost.
    pub fn period_frames(&self) -> usize {
        self.thread.end.link.period.load(Ordering::Relaxed)
    }

    /// Silence queued ahead of a message: two device periods, the frame itself and 10 ms, so
    /// the card never catches up with the engine's once-per-frame writes.
    fn lead(&self, frame_len: usize) -> usize {
        let frame_out = convert_len(frame_len, self.engine_rate, self.card_rate);
        let period = self.thread.end.link.period.load(Ordering::Relaxed);
        period
            .saturating_mul(2)
            .saturating_add(frame_out)
            .saturating_add(self.card_rate as usize / 100)
    }
}

/// Queues `samples` in the device; what does not fit is counted as dropped, failures as
/// stream errors (an underrun, while a message plays, as an underrun).
fn queue(pcm: &mut Pcm, samples: &[i16], counters: &Counters, playing: bool) {
    match pcm.write(samples) {
        Ok(n) => {
            if n > 0 {
                counters.callbacks.fetch_add(1, Ordering::Relaxed);
            }
            if n < samples.len() {
                counters
                    .dropped_samples
                    .fetch_add((samples.len() - n) as u64, Ordering::Relaxed);
            }
        }
        Err(f) => {
            if f == IoFailure::Xrun && playing {
                counters.underruns.fetch_add(1, Ordering::Relaxed);
            }
            counters
                .dropped_samples
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            on_io_failure(counters, &f);
        }
    }
}

/// The rate the engine decodes at for a card running at `card_rate`.
fn engine_rate_for(card_rate: u32) -> u32 {
    if OPUS_RATES.contains(&card_rate) {
        card_rate
    } else {
        48_000
    }
}

impl std::fmt::Debug for CpalOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpalOutput")
            .field("device", &self.thread.end.link.device)
            .field("engine_rate", &self.engine_rate)
            .field("card_rate", &self.card_rate)
            .finish_non_exhaustive()
    }
}

impl AudioOutput for CpalOutput {
    fn sample_rate(&self) -> u32 {
        self.engine_rate
    }

    /// Queues the frame without blocking; what does not fit is counted in
    /// [`SoundStats::dropped_samples`].
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        let lead = self.lead(frame.len());
        let link = self.thread.end.link.clone();
        let counters = &link.counters;
        let shared = match self.thread.end.poll() {
            Poll::Lost(e) => {
                self.in_message = false;
                self.drained_at = None;
                self.playback.reset();
                return Err(e);
            }
            Poll::Absent => {
                counters
                    .dropped_samples
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            Poll::Fresh(shared) => {
                self.in_message = false;
                self.drained_at = None;
                self.playback.reset();
                shared
            }
            Poll::Ready(shared) => shared,
        };
        let mut guard = lock(shared);
        let Some(pcm) = guard.as_mut() else {
            counters
                .dropped_samples
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
            return Ok(());
        };
        counters.attempts.fetch_add(1, Ordering::Relaxed);
        // A new message, or one the card ran ahead of: start the stream again with a lead
        // of silence.
        // A stream kept warm after the last message (see `idle`) runs on into this one.
        let state = pcm.state();
        let start = state != State::Running;
        if start {
            if self.in_message && state == State::XRun {
                counters.underruns.fetch_add(1, Ordering::Relaxed);
            }
            if state != State::Prepared
                && let Err(f) = pcm.prepare()
            {
                on_io_failure(counters, &f);
                return Ok(());
            }
            let mut owed = lead;
            while owed > 0 {
                let n = owed.min(SILENCE.len());
                owed -= n;
                queue(pcm, &SILENCE[..n], counters, false);
            }
        }
        let playing = self.in_message && !start;
        self.in_message = true;
        self.drained_at = None;
        let result = self
            .playback
            .push(frame, &mut |s| queue(pcm, s, counters, playing));
        if start && let Err(f) = pcm.start() {
            on_io_failure(counters, &f);
        }
        result.map_err(|message| AudioError::Device {
            device: link.device.clone(),
            message,
        })
    }

    /// What the device holds ahead (or the silence a new message starts with, see
    /// `write_frame`), and the resampler's delay.
    fn delay(&self, frame_len: usize) -> Duration {
        let queued = self
            .thread
            .end
            .ring
            .as_ref()
            .and_then(|shared| {
                let guard = lock(shared);
                let pcm = guard.as_ref()?;
                (self.in_message && pcm.state() == State::Running)
                    .then(|| pcm.delay())
                    .flatten()
            })
            .unwrap_or_else(|| self.lead(frame_len));
        samples_duration(queued, self.card_rate) + self.playback.delay()
    }

    /// Plays out what was written; the stream is stopped once it has (see `idle`).
    fn end_of_message(&mut self) -> Result<(), AudioError> {
        if !self.in_message {
            return Ok(());
        }
        self.in_message = false;
        let link = self.thread.end.link.clone();
        let counters = &link.counters;
        let Some(shared) = self.thread.end.ring.as_ref() else {
            self.playback.reset();
            return Ok(());
        };
        let mut guard = lock(shared);
        let Some(pcm) = guard.as_mut() else {
            self.playback.reset();
            return Ok(());
        };
        let result = self.playback.flush(&mut |s| queue(pcm, s, counters, false));
        let ahead = pcm.delay().unwrap_or(0) + pcm.opened.period;
        self.drained_at = Some(Instant::now() + samples_duration(ahead, self.card_rate));
        result.map_err(|message| AudioError::Device {
            device: link.device.clone(),
            message,
        })
    }

    /// Stops the stream once the last message has played out.
    /// For [`KEEP_WARM`] after the last message has played out, keeps the stream running on
    /// silence (an answer soon after finds it running: a sound server that has to wake a
    /// sink first can take a while to take a new stream's first audio); then stops it.
    fn idle(&mut self) {
        let Some(at) = self.drained_at else {
            return;
        };
        let now = Instant::now();
        if now < at {
            return;
        }
        let Some(shared) = self.thread.end.ring.as_ref() else {
            self.drained_at = None;
            return;
        };
        let mut guard = lock(shared);
        let Some(pcm) = guard.as_mut() else {
            self.drained_at = None;
            return;
        };
        if now >= at + KEEP_WARM || pcm.state() != State::Running {
            self.drained_at = None;
            pcm.stop();
            return;
        }
        // Enough silence queued to last until the idle engine's next wake-up.
        let period = self.thread.end.link.period.load(Ordering::Relaxed);
        let target = period.saturating_mul(2) + self.card_rate as usize * 8 / 100;
        let mut owed = target.saturating_sub(pcm.delay().unwrap_or(0));
        let counters = &self.thread.end.link.counters;
        while owed > 0 {
            let n = owed.min(SILENCE.len());
            owed -= n;
            queue(pcm, &SILENCE[..n], counters, false);
        }
    }
}

/// An ALSA device as the `devices` command shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to put in the configuration (`audio.input` / `audio.output`).
    pub name: String,
    /// ALSA's description.
    pub description: String,
    /// It opened for capture.
    pub input: bool,
    /// It opened for playback.
    pub output: bool,
    /// Sample rates it takes with 16-bit or float samples (for devices that take any rate in
    /// a range, the standard rates in it).
    pub sample_rates: Vec<u32>,
    /// Channel counts it takes.
    pub channels: Vec<u16>,
}

/// Every ALSA device with what it can do. Opens each device briefly to ask: a device in use
/// (by this gateway too) may show as neither input nor output.
pub fn list_devices() -> Vec<DeviceInfo> {
    let Ok(host) = alsa_host() else {
        return Vec::new();
    };
    let Ok(devices) = host.devices() else {
        return Vec::new();
    };
    devices
        .filter_map(|device| {
            let name = device_name(&device)?;
            if !listed(&name) {
                return None;
            }
            let description = device
                .description()
                .map(|d| {
                    std::iter::once(d.name().to_string())
                        .chain(d.extended().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let mut description = description;
            description.dedup();
            let input: Vec<SupportedStreamConfigRange> = device
                .supported_input_configs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let output: Vec<SupportedStreamConfigRange> = device
                .supported_output_configs()
                .map(Iterator::collect)
                .unwrap_or_default();
            let (sample_rates, channels) = capabilities(input.iter().chain(output.iter()));
            Some(DeviceInfo {
                name,
                description: description.join(" / "),
                input: !input.is_empty(),
                output: !output.is_empty(),
                sample_rates,
                channels,
            })
        })
        .collect()
}

fn capabilities<'a>(
    ranges: impl Iterator<Item = &'a SupportedStreamConfigRange>,
) -> (Vec<u32>, Vec<u16>) {
    let mut rates = Vec::new();
    let mut channels = Vec::new();
    for r in ranges.filter(|r| usable_format(r.sample_format())) {
        channels.push(r.channels());
        if r.min_sample_rate() == r.max_sample_rate() {
            rates.push(r.min_sample_rate());
        } else {
            rates.extend(STANDARD_RATES.iter().filter(|&&s| r.contains_rate(s)));
        }
    }
    rates.sort_unstable();
    rates.dedup();
    channels.sort_unstable();
    channels.dedup();
    (rates, channels)
}

/// A sound card from `/proc/asound/cards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlsaCard {
    /// Card number (may change between boots; prefer the id).
    pub index: u32,
    /// Card id, as in `plughw:CARD=<id>,DEV=0`.
    pub id: String,
    /// Driver and short name, e.g. `USB-Audio - USB Audio Device`.
    pub description: String,
    /// The long name (USB vendor, bus position...).
    pub long_name: String,
}

/// The sound cards the kernel knows (empty without `/proc/asound/cards`).
pub fn alsa_cards() -> Vec<AlsaCard> {
    std::fs::read_to_string("/proc/asound/cards")
        .map(|text| parse_asound_cards(&text))
        .unwrap_or_default()
}

/// Parses the text of `/proc/asound/cards`:
/// ```text
///  1 [Device         ]: USB-Audio - USB Audio Device
///                       C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2
/// ```
pub fn parse_asound_cards(text: &str) -> Vec<AlsaCard> {
    let mut cards: Vec<AlsaCard> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("---") {
            continue;
        }
        let head = (|| {
            let (index, rest) = trimmed.split_once(' ')?;
            let index: u32 = index.parse().ok()?;
            let rest = rest.trim_start().strip_prefix('[')?;
            let (id, rest) = rest.split_once(']')?;
            let description = rest.trim_start().strip_prefix(':')?.trim();
            Some(AlsaCard {
                index,
                id: id.trim().to_string(),
                description: description.to_string(),
                long_name: String::new(),
            })
        })();
        match head {
            Some(card) => cards.push(card),
            None => {
                if let Some(card) = cards.last_mut().filter(|c| c.long_name.is_empty()) {
                    card.long_name = trimmed.to_string();
                }
            }
        }
    }
    cards
}

fn describe_numbers<T: Copy + Into<u64> + PartialEq>(values: &[T]) -> String {
    let v: Vec<u64> = values.iter().map(|&x| x.into()).collect();
    if v.is_empty() {
        return "-".to_string();
    }
    let contiguous = v.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && v.len() > 2 {
        format!("{}-{}", v[0], v[v.len() - 1])
    } else {
        v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

/// A listing of the sound cards and ALSA devices, with the names to put in the configuration.
pub fn describe_devices() -> String {
    format_devices(
        &alsa_cards(),
        &list_devices(),
        crate::devices::pulse_server_running(),
    )
}

/// The listing; `pulse_running` tells whether a PulseAudio server answers, which is why
/// ALSA's `pulse` device would not open when none does.
fn format_devices(cards: &[AlsaCard], devices: &[DeviceInfo], pulse_running: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Sound cards (/proc/asound/cards):");
    if cards.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for c in cards {
        let _ = writeln!(s, "  card {} \"{}\": {}", c.index, c.id, c.description);
        if !c.long_name.is_empty() {
            let _ = writeln!(s, "      {}", c.long_name);
        }
        let _ = writeln!(
            s,
            "      use: plughw:CARD={},DEV=0 (converts rates and formats; stays the same when \
             card numbers change)",
            c.id
        );
    }
    let _ = writeln!(
        s,
        "\nALSA devices (the name goes in audio.input / audio.output):"
    );
    if devices.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for d in devices {
        let dir = match (d.input, d.output) {
            (true, true) => "capture+playback",
            (true, false) => "capture",
            (false, true) => "playback",
            (false, false) if d.name == "pulse" && !pulse_running => {
                "unavailable: no PulseAudio (or PipeWire) server is running for this user; \
                 start one, or use a card's plughw: name"
            }
            (false, false) => {
                "unavailable: another program has it open (busy), or it cannot be opened"
            }
        };
        let _ = writeln!(s, "  {}", d.name);
        let _ = writeln!(
            s,
            "      {dir}; rates: {}; channels: {}",
            describe_numbers(&d.sample_rates),
            describe_numbers(&d.channels)
        );
        if !d.description.is_empty() {
            let _ = writeln!(s, "      {}", d.description);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, freq: f32, seconds: f32, amplitude: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Power of `freq` in `x` (Goertzel), normalised so a full-scale sine gives about 0.5.
    fn power_at(x: &[i16], rate: u32, freq: f32) -> f64 {
        let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) / 32768.0 + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        2.0 * p / (x.len() as f64 * x.len() as f64)
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter()
            .map(|&v| (f64::from(v) / 32768.0).powi(2))
            .sum::<f64>()
            / x.len() as f64)
            .sqrt()
    }

    #[test]
    fn settings_parse_with_default_rate_and_reject_unknown_keys() {
        let s: SoundSettings =
            toml::from_str("input = \"plughw:CARD=Device,DEV=0\"\noutput = \"radio_spk\"").unwrap();
        assert_eq!(s.sample_rate, 48_000);
        assert_eq!(s.input, "plughw:CARD=Device,DEV=0");
        let e = toml::from_str::<SoundSettings>("input = \"a\"\noutput = \"b\"\nrate = 44100")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(toml::from_str::<SoundSettings>("input = \"a\"").is_err());
    }

    #[test]
    fn settings_fit_a_tagged_backend_table() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
        enum Audio {
            Cpal(SoundSettings),
        }
        #[derive(Debug, Deserialize)]
        struct Radio {
            audio: Audio,
        }
        let r: Radio = toml::from_str(
            "audio = { backend = \"cpal\", input = \"plughw:CARD=Device,DEV=0\", output = \"x\", sample_rate = 44100 }",
        )
        .unwrap();
        let Audio::Cpal(s) = r.audio;
        assert_eq!(s.sample_rate, 44_100);
        assert!(
            toml::from_str::<Radio>(
                "audio = { backend = \"cpal\", input = \"a\", output = \"b\", typo = 1 }"
            )
            .is_err()
        );
    }

    #[test]
    fn engine_rate_is_the_card_rate_only_for_opus_rates() {
        for r in OPUS_RATES {
            assert_eq!(engine_rate_for(r), r);
        }
        assert_eq!(engine_rate_for(44_100), 48_000);
        assert_eq!(engine_rate_for(96_000), 48_000);
    }

    #[test]
    fn stream_errors_sorted_into_survivable_and_fatal() {
        let c = Counters::default();
        on_io_failure(&c, &IoFailure::Xrun);
        assert_eq!(c.errors.load(Ordering::Relaxed), 0);
        assert_eq!(c.xruns.load(Ordering::Relaxed), 1);
        on_io_failure(&c, &IoFailure::Other("Input/output error".into()));
        assert!(!c.fatal.load(Ordering::Relaxed), "an I/O error may pass");
        assert_eq!(c.errors.load(Ordering::Relaxed), 1);
        assert_eq!(c.failure.load(Ordering::Relaxed), FAILURE_IO);
        on_io_failure(&c, &IoFailure::Gone("No such device".into()));
        assert!(c.fatal.load(Ordering::Relaxed));
        assert_eq!(
            failure_code(&IoFailure::Gone(String::new())),
            Some(FAILURE_GONE)
        );
        assert!(failure_text(FAILURE_GONE).contains("unplugged"));
    }

    #[test]
    fn capture_callback_keeps_whole_frames_and_counts_overruns() {
        let c = Counters::default();
        let (mut p, mut q) = RingBuffer::<f32>::new(7);
        let data: Vec<i16> = (1..=8).collect();
        // Not armed: nothing kept, nothing counted.
        capture_callback(&data, 2, &mut p, &c);
        assert_eq!(q.slots(), 0);
        assert_eq!(c.overruns.load(Ordering::Relaxed), 0);
        c.armed.store(true, Ordering::Relaxed);
        capture_callback(&data, 2, &mut p, &c);
        // Room for 7 samples: 3 whole stereo frames kept, 1 frame lost.
        assert_eq!(q.slots(), 6);
        assert_eq!(c.overruns.load(Ordering::Relaxed), 1);
        assert_eq!(c.overrun_frames.load(Ordering::Relaxed), 1);
        assert_eq!(c.callbacks.load(Ordering::Relaxed), 2);
        let mut got = [0.0f32; 6];
        q.pop_entire_slice(&mut got).unwrap();
        assert_eq!(got[0], 1.0 / 32768.0);
        assert_eq!(got[5], 6.0 / 32768.0);
        // Float samples pass through.
        capture_callback(&[0.5f32, -0.5], 2, &mut p, &c);
        assert_eq!(q.pop().unwrap(), 0.5);
    }

    #[test]
    fn playback_callback_fills_channels_and_counts_underruns_only_while_playing() {
        let c = Counters::default();
        let (mut p, mut q) = RingBuffer::<i16>::new(64);
        let mut out = [9i16; 8];
        // Idle and empty: silence, no underrun.
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(out, [0; 8]);
        assert_eq!(c.underruns.load(Ordering::Relaxed), 0);
        // Playing with 3 of 4 frames queued: duplicated to both channels, one underrun.
        p.push_entire_slice(&[1, 2, 3]).unwrap();
        c.play_state.store(PLAYING, Ordering::Relaxed);
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(out, [1, 1, 2, 2, 3, 3, 0, 0]);
        assert_eq!(c.underruns.load(Ordering::Relaxed), 1);
        assert_eq!(c.play_state.load(Ordering::Relaxed), STARVED);
        // Still dry: the same underrun, not another.
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(c.underruns.load(Ordering::Relaxed), 1);
        // The writer catches up; playing with enough: no underrun.
        c.play_state.store(PLAYING, Ordering::Relaxed);
        p.push_entire_slice(&[4, 5, 6, 7]).unwrap();
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(out, [4, 4, 5, 5, 6, 6, 7, 7]);
        assert_eq!(c.underruns.load(Ordering::Relaxed), 1);
        // Draining: running dry ends the message without an underrun.
        p.push_entire_slice(&[8]).unwrap();
        c.play_state.store(DRAINING, Ordering::Relaxed);
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(c.play_state.load(Ordering::Relaxed), IDLE);
        playback_callback(&mut out, 2, &mut q, &c);
        assert_eq!(c.underruns.load(Ordering::Relaxed), 1);
        // Float device.
        p.push_entire_slice(&[16384]).unwrap();
        let mut outf = [1.0f32; 2];
        playback_callback(&mut outf, 1, &mut q, &c);
        assert_eq!(outf, [0.5, 0.0]);
    }

    #[test]
    fn lengths_convert_between_rates_without_overflow() {
        assert_eq!(convert_len(960, 16_000, 48_000), 2880);
        assert_eq!(convert_len(2880, 48_000, 44_100), 2646);
        assert_eq!(convert_len(usize::MAX, 1, 384_000), usize::MAX);
        assert_eq!(convert_len(5, 0, 10), 50);
    }

    #[test]
    fn downmix_averages_channels() {
        let mut mono = [0.0f32; 2];
        downmix(&[1.0, 0.0, -0.5, -0.5], 2, &mut mono);
        assert_eq!(mono, [0.5, -0.5]);
        downmix(&[0.25, 0.75], 1, &mut mono);
        assert_eq!(mono, [0.25, 0.75]);
    }

    /// Pushes `x` (interleaved) through a capture converter and collects 20 ms frames.
    fn capture_all(card_rate: u32, channels: usize, x: &[f32]) -> (Vec<i16>, Counters) {
        let c = Counters::default();
        let mut cap = Capture::new(card_rate, channels).unwrap();
        let (mut p, mut q) = RingBuffer::<f32>::new(x.len() + 16);
        let mut out = Vec::new();
        let mut frame = vec![0i16; 320];
        // Feed 10 ms at a time, read a frame whenever one is there.
        let step = (card_rate as usize / 100) * channels;
        for chunk in x.chunks(step) {
            p.push_entire_slice(chunk).unwrap();
            while cap.read(&mut q, &mut frame, 0, &c).unwrap() {
                out.extend_from_slice(&frame);
            }
        }
        (out, c)
    }

    #[test]
    fn capture_resamples_a_stereo_48k_tone_to_16k_mono() {
        let t = tone(48_000, 1000.0, 1.0, 0.5);
        let stereo: Vec<f32> = t.iter().flat_map(|&s| [s, s]).collect();
        let (out, c) = capture_all(48_000, 2, &stereo);
        // One second in, about one second out (less the resampler's delay and a partial frame).
        assert!(out.len() >= 15_000 && out.len() <= 16_000, "{}", out.len());
        let steady = &out[1600..];
        assert!(power_at(steady, 16_000, 1000.0) > 0.1, "tone lost");
        let level = rms(steady);
        assert!((level - 0.5 / 2f64.sqrt()).abs() < 0.02, "rms {level}");
        assert_eq!(c.skipped_frames.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn capture_filters_what_16k_cannot_carry() {
        // 10 kHz at 44.1 kHz is above the 8 kHz Nyquist limit of the codec rate: a band-limited
        // resampler removes it instead of folding it down to 6 kHz.
        let t = tone(44_100, 10_000.0, 1.0, 0.5);
        let (out, _) = capture_all(44_100, 1, &t);
        let steady = &out[1600..];
        assert!(rms(steady) < 0.005, "alias rms {}", rms(steady));
        let t = tone(44_100, 3_000.0, 1.0, 0.5);
        let (out, _) = capture_all(44_100, 1, &t);
        assert!(power_at(&out[1600..], 16_000, 3000.0) > 0.1);
    }

    #[test]
    fn capture_at_16k_passes_samples_through() {
        let x: Vec<f32> = (0..3200).map(|i| (i % 100) as f32 / 1000.0).collect();
        let (out, _) = capture_all(16_000, 1, &x);
        assert_eq!(out.len(), 3200);
        assert_eq!(out[99], to_i16(0.099));
        assert_eq!(out[100], 0);
    }

    #[test]
    fn a_large_first_block_is_trimmed_within_a_few_reads() {
        let c = Counters::default();
        let mut cap = Capture::new(48_000, 1).unwrap();
        let (mut p, mut q) = RingBuffer::<f32>::new(96_000);
        let mut frame = vec![0i16; 960];
        // A second of audio at once, then a frame per read.
        p.push_entire_slice(&vec![0.1; 48_000]).unwrap();
        for _ in 0..5 {
            p.push_entire_slice(&vec![0.1; 2880]).unwrap();
            assert!(cap.read(&mut q, &mut frame, 960, &c).unwrap());
        }
        assert!(c.skipped_frames.load(Ordering::Relaxed) > 30_000);
        assert!(
            q.slots() <= cap.backlog_limit(960, 960, true),
            "{}",
            q.slots()
        );
    }

    #[test]
    fn capture_waits_for_a_whole_frame_and_bounds_the_backlog() {
        let c = Counters::default();
        let mut cap = Capture::new(48_000, 1).unwrap();
        let (mut p, mut q) = RingBuffer::<f32>::new(48_000);
        let mut frame = vec![0i16; 960];
        p.push_entire_slice(&vec![0.1; 960]).unwrap();
        assert!(!cap.read(&mut q, &mut frame, 0, &c).unwrap());
        // A burst (the card delivered late): kept at first...
        p.push_entire_slice(&vec![0.1; 20_000]).unwrap();
        assert!(cap.read(&mut q, &mut frame, 1024, &c).unwrap());
        assert_eq!(c.skipped_frames.load(Ordering::Relaxed), 0);
        // ...but a backlog that stays above a frame and a period for a whole window is
        // latency: trimmed.
        for _ in 0..2 * BACKLOG_WINDOW_READS {
            p.push_entire_slice(&vec![0.1; 2880]).unwrap();
            assert!(cap.read(&mut q, &mut frame, 1024, &c).unwrap());
        }
        let skipped = c.skipped_frames.load(Ordering::Relaxed);
        assert!(skipped > 5_000, "{skipped}");
        assert_eq!(cap.backlog_limit(960, 1024, true), 4 * 2880 + 1024);
        assert_eq!(cap.backlog_limit(960, 1024, false), 2880 + 1024);
        assert!(q.slots() <= cap.backlog_limit(960, 1024, true) + 2880);
        // A card that keeps pace (a frame arrives per read, a period apart): nothing trimmed.
        let before = c.skipped_frames.load(Ordering::Relaxed);
        let mut cap = Capture::new(48_000, 1).unwrap();
        let (mut p, mut q) = RingBuffer::<f32>::new(48_000);
        p.push_entire_slice(&vec![0.1; 1000]).unwrap();
        for _ in 0..3 * BACKLOG_WINDOW_READS {
            p.push_entire_slice(&vec![0.1; 2880]).unwrap();
            assert!(cap.read(&mut q, &mut frame, 1024, &c).unwrap());
        }
        assert_eq!(c.skipped_frames.load(Ordering::Relaxed), before);
    }

    #[test]
    fn playback_resamples_48k_to_44k1_and_flushes_the_tail() {
        let mut pb = Playback::new(48_000, 44_100).unwrap();
        let t: Vec<i16> = tone(48_000, 1000.0, 1.0, 0.5)
            .iter()
            .map(|&s| to_i16(s))
            .collect();
        let mut out = Vec::new();
        for frame in t.chunks(2880) {
            pb.push(frame, &mut |s| out.extend_from_slice(s)).unwrap();
        }
        pb.flush(&mut |s| out.extend_from_slice(s)).unwrap();
        assert!(out.len() >= 44_100, "{}", out.len());
        assert!(out.len() <= 44_100 + 882, "{}", out.len());
        let steady = &out[2000..40_000];
        assert!(power_at(steady, 44_100, 1000.0) > 0.1);
        assert!((rms(steady) - 0.5 / 2f64.sqrt()).abs() < 0.02);
        // A second flush without new audio adds nothing.
        let n = out.len();
        pb.flush(&mut |s| out.extend_from_slice(s)).unwrap();
        assert_eq!(out.len(), n);
        // Opus-rate cards need no conversion.
        let mut direct = Playback::new(48_000, 48_000).unwrap();
        let mut got = Vec::new();
        direct
            .push(&[1, 2, 3], &mut |s| got.extend_from_slice(s))
            .unwrap();
        direct.flush(&mut |s| got.extend_from_slice(s)).unwrap();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn push_counts_what_does_not_fit() {
        let c = Counters::default();
        let (mut p, q) = RingBuffer::<i16>::new(10);
        push_samples(&mut p, &[1; 4], &c);
        assert_eq!(q.slots(), 4);
        push_samples(&mut p, &[1; 8], &c);
        assert_eq!(q.slots(), 10);
        assert_eq!(c.dropped_samples.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn rates_and_numbers_described() {
        assert_eq!(
            describe_rates(&[(48_000, 48_000), (44_100, 44_100), (48_000, 48_000)]),
            "44100, 48000 Hz"
        );
        assert_eq!(describe_rates(&[(1, 384_000)]), "1-384000 Hz");
        assert_eq!(describe_rates(&[]), "none");
        assert_eq!(describe_numbers(&[1u16, 2, 3, 4]), "1-4");
        assert_eq!(describe_numbers(&[1u16, 2]), "1,2");
        assert_eq!(describe_numbers(&[44_100u32, 48_000]), "44100,48000");
        assert_eq!(describe_numbers::<u32>(&[]), "-");
    }

    #[test]
    fn busy_and_missing_devices_explained() {
        let explained = |f: OpenFailure| explain(&f, 16_000, Direction::Capture);
        assert!(explained(OpenFailure::Busy).contains("busy"));
        assert!(explained(OpenFailure::Permission).contains("audio` group"));
        assert!(explained(OpenFailure::Format).contains("plughw"));
        let e = explained(OpenFailure::Rate {
            min: 44_100,
            max: 48_000,
        });
        assert!(
            e.contains("16000 Hz (audio.sample_rate) is not supported"),
            "{e}"
        );
        assert!(e.contains("44100-48000 Hz"), "{e}");
        assert!(explained(OpenFailure::NotFound).contains("no such sound device"));
        let e = check_rate(INPUT_KEY, "x", 0).unwrap_err().to_string();
        assert!(e.contains("audio.sample_rate = 0"), "{e}");
        for bad in [0, 1, 101, 1000] {
            let e = check_period(INPUT_KEY, "x", bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("audio.period_ms = {bad} is out of range")),
                "{e}"
            );
        }
        for good in [2, 20, 100] {
            assert!(check_period(INPUT_KEY, "x", good).is_ok());
        }
    }

    #[test]
    fn asound_cards_parsed() {
        let text = " 0 [vc4hdmi        ]: vc4-hdmi - vc4-hdmi\n                      vc4-hdmi\n 1 [Device         ]: USB-Audio - USB Audio Device\n                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2, full speed\n";
        let cards = parse_asound_cards(text);
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[1].index, 1);
        assert_eq!(cards[1].id, "Device");
        assert_eq!(cards[1].description, "USB-Audio - USB Audio Device");
        assert!(cards[1].long_name.starts_with("C-Media"));
        assert!(parse_asound_cards("--- no soundcards ---\n").is_empty());
        assert!(parse_asound_cards("garbage [\n]]\n 7 [x").is_empty());
        let listing = format_devices(
            &cards,
            &[DeviceInfo {
                name: "plughw:CARD=Device,DEV=0".into(),
                description: "USB Audio Device".into(),
                input: true,
                output: true,
                sample_rates: vec![44_100, 48_000],
                channels: vec![1, 2],
            }],
            true,
        );
        assert!(listing.contains("plughw:CARD=Device,DEV=0"), "{listing}");
        assert!(
            listing.contains("capture+playback; rates: 44100,48000"),
            "{listing}"
        );
    }

    #[test]
    fn a_pulse_device_without_a_server_is_told_from_a_busy_one() {
        let pulse = DeviceInfo {
            name: "pulse".into(),
            description: "PulseAudio Sound Server".into(),
            input: false,
            output: false,
            sample_rates: vec![],
            channels: vec![],
        };
        let busy = DeviceInfo {
            name: "plughw:CARD=Device,DEV=0".into(),
            ..pulse.clone()
        };
        let listing = format_devices(&[], &[pulse.clone(), busy.clone()], false);
        assert!(
            listing.contains(
                "pulse\n      unavailable: no PulseAudio (or PipeWire) server is running"
            ),
            "{listing}"
        );
        assert!(
            listing.contains("DEV=0\n      unavailable: another program has it open (busy)"),
            "{listing}"
        );
        assert!(!listing.contains("busy?"), "{listing}");
        let listing = format_devices(&[], &[pulse], true);
        assert!(
            listing.contains("pulse\n      unavailable: another program has it open (busy)"),
            "{listing}"
        );
    }

    /// A stand-in for an open PCM in device-thread tests.
    struct FakeStream;

    fn fast() -> Timing {
        Timing {
            backoff_first: Duration::from_millis(20),
            backoff_max: Duration::from_millis(80),
            poll: Duration::from_millis(5),
            grace: Duration::from_millis(60),
            stall: Duration::from_millis(300),
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn loss_is_reported_once_and_the_device_comes_back_after_backoff() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(INPUT_KEY, "fake", counters.clone());
        // The device is there at first, then absent for three attempts, then back.
        let attempts = Arc::new(AtomicU64::new(0));
        let a = attempts.clone();
        let c = counters.clone();
        let (mut t, _) = DeviceThread::start(link, fast(), move || {
            let n = a.fetch_add(1, Ordering::Relaxed);
            if (1..4).contains(&n) {
                return Err(open_error(INPUT_KEY, "fake", "no such sound device"));
            }
            c.callbacks.fetch_add(1, Ordering::Relaxed);
            Ok(Opened {
                stream: FakeStream,
                ring: (),
                period: 0,
                description: String::new(),
            })
        })
        .unwrap();
        assert!(matches!(t.end.poll(), Poll::Fresh(_)));
        assert_eq!(t.health(), DeviceHealth::Open);
        // Keep the fake stream calling back while the test polls.
        let beat = || counters.callbacks.fetch_add(1, Ordering::Relaxed);
        beat();
        // The stream fails.
        on_io_failure(&counters, &IoFailure::Gone("No such device".into()));
        wait_for(|| matches!(t.health(), DeviceHealth::Lost { .. }));
        let Poll::Lost(e) = t.end.poll() else {
            panic!("loss not reported")
        };
        assert!(e.to_string().contains("disappeared"), "{e}");
        // Reported once; then nothing until the device is back.
        wait_for(|| {
            beat();
            match t.end.poll() {
                Poll::Absent => false,
                Poll::Fresh(_) => true,
                Poll::Lost(_) => panic!("loss reported twice"),
                Poll::Ready(_) => panic!("stale ring"),
            }
        });
        assert_eq!(t.health(), DeviceHealth::Open);
        assert_eq!(attempts.load(Ordering::Relaxed), 5);
        let stats = counters.snapshot();
        assert_eq!((stats.losses, stats.reopens), (1, 1));
        // A stream that is asked for samples and moves none is lost too.
        wait_for(|| {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            matches!(t.health(), DeviceHealth::Lost { ref reason, .. } if reason.contains("moved no audio"))
        });
        drop(t);
    }

    #[test]
    fn io_errors_are_a_loss_only_when_the_stream_stops() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(INPUT_KEY, "flaky", counters.clone());
        let (mut t, _) = DeviceThread::start(link, fast(), || {
            Ok(Opened {
                stream: FakeStream,
                ring: (),
                period: 0,
                description: String::new(),
            })
        })
        .unwrap();
        assert!(matches!(t.end.poll(), Poll::Fresh(_)));
        // Errors now and then while the stream keeps moving samples: carried on.
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            counters.callbacks.fetch_add(1, Ordering::Relaxed);
            on_io_failure(&counters, &IoFailure::Other("Input/output error".into()));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(t.health(), DeviceHealth::Open);
        assert!(matches!(t.end.poll(), Poll::Ready(_)));
        // Errors while asked, and no samples moved: lost.
        wait_for(|| {
            counters.attempts.fetch_add(1, Ordering::Relaxed);
            on_io_failure(&counters, &IoFailure::Other("Input/output error".into()));
            matches!(t.health(), DeviceHealth::Lost { .. })
        });
        let Poll::Lost(e) = t.end.poll() else {
            panic!("loss not reported")
        };
        assert!(e.to_string().contains("I/O error"), "{e}");
        assert!(counters.snapshot().stream_errors > 10);
    }

    /// A stream whose driver hangs while closing it.
    struct HangingStream(Arc<AtomicBool>);

    impl Drop for HangingStream {
        fn drop(&mut self) {
            while !self.0.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn a_stream_that_hangs_while_closing_does_not_stop_the_reopen() {
        let counters = Arc::new(Counters::default());
        let link = Link::new(OUTPUT_KEY, "hangs", counters.clone());
        let release_all = Arc::new(AtomicBool::new(false));
        let r = release_all.clone();
        let opens = Arc::new(AtomicU64::new(0));
        let o = opens.clone();
        let (mut t, _) = DeviceThread::start(link, fast(), move || {
            o.fetch_add(1, Ordering::Relaxed);
            Ok(Opened {
                stream: HangingStream(r.clone()),
                ring: (),
                period: 0,
                description: String::new(),
            })
        })
        .unwrap();
        let beat = || counters.callbacks.fetch_add(1, Ordering::Relaxed);
        on_io_failure(
            &counters,
            &IoFailure::Gone("File descriptor in bad state".into()),
        );
        let started = Instant::now();
        wait_for(|| {
            beat();
            opens.load(Ordering::Relaxed) == 2
        });
        // Reopened after the close timeout, not never.
        assert!(started.elapsed() >= CLOSE_TIMEOUT);
        assert!(matches!(t.end.poll(), Poll::Lost(_)));
        release_all.store(true, Ordering::Relaxed);
        drop(t);
    }

    #[test]
    fn first_open_failure_is_returned() {
        let link = Link::<()>::new(OUTPUT_KEY, "nothing", Arc::default());
        let e = DeviceThread::start(link, fast(), || -> Result<Opened<(), FakeStream>, _> {
            Err(open_error(OUTPUT_KEY, "nothing", "no such sound device"))
        })
        .err()
        .unwrap();
        assert_eq!(
            e.to_string(),
            "audio.output = \"nothing\": no such sound device"
        );
    }
}

/// The sound-card path without a device, for benchmarks and tests: the same callbacks, rings,
/// downmix and resampling as [`CpalInput`] / [`CpalOutput`], driven by the caller instead of
/// a sound card.
pub mod rings {
    use super::*;

    /// Capture: feed device-rate samples with [`RingCapture::callback`], read 16 kHz frames.
    pub struct RingCapture {
        producer: Producer<f32>,
        consumer: Consumer<f32>,
        capture: Capture,
        counters: Counters,
        channels: usize,
    }

    impl RingCapture {
        /// A capture path from a device running at `card_rate` with `channels`.
        pub fn new(card_rate: u32, channels: usize) -> Result<Self, AudioError> {
            let (producer, consumer) = RingBuffer::new(card_rate as usize * channels.max(1));
            let counters = Counters::default();
            counters.armed.store(true, Ordering::Relaxed);
            Ok(RingCapture {
                producer,
                consumer,
                capture: Capture::new(card_rate, channels).map_err(AudioError::Codec)?,
                counters,
                channels,
            })
        }

        /// What the sound card's capture callback does with one buffer.
        pub fn callback(&mut self, data: &[f32]) {
            capture_callback(data, self.channels, &mut self.producer, &self.counters);
        }

        /// The counters.
        pub fn stats(&self) -> SoundStats {
            self.counters.snapshot()
        }
    }

    impl AudioInput for RingCapture {
        fn sample_rate(&self) -> u32 {
            CODEC_RATE
        }

        fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
            self.capture
                .read(&mut self.consumer, frame, 0, &self.counters)
                .map_err(AudioError::Codec)
        }

        fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
            self.capture
                .skip(&mut self.consumer, frame.len(), 0, &self.counters)
                .map_err(AudioError::Codec)
        }

        fn age(&self) -> Duration {
            self.capture.waiting(&self.consumer)
        }
    }

    /// Playback: write engine frames, take device-rate samples with [`RingPlayback::callback`].
    pub struct RingPlayback {
        producer: Producer<i16>,
        consumer: Consumer<i16>,
        playback: Playback,
        engine_rate: u32,
        card_rate: u32,
        counters: Counters,
    }

    impl RingPlayback {
        /// A playback path to a device running at `card_rate` (the engine decodes at 48 kHz
        /// when the card's rate is not an Opus rate).
        pub fn new(card_rate: u32) -> Result<Self, AudioError> {
            let engine_rate = if OPUS_RATES.contains(&card_rate) {
                card_rate
            } else {
                48_000
            };
            let (producer, consumer) = RingBuffer::new(card_rate as usize);
            Ok(RingPlayback {
                producer,
                consumer,
                playback: Playback::new(engine_rate, card_rate).map_err(AudioError::Codec)?,
                engine_rate,
                card_rate,
                counters: Counters::default(),
            })
        }

        /// What the sound card's playback callback does with one mono buffer.
        pub fn callback(&mut self, out: &mut [i16]) {
            playback_callback(out, 1, &mut self.consumer, &self.counters);
        }

        /// The counters.
        pub fn stats(&self) -> SoundStats {
            self.counters.snapshot()
        }
    }

    impl AudioOutput for RingPlayback {
        fn sample_rate(&self) -> u32 {
            self.engine_rate
        }

        fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
            let (producer, counters) = (&mut self.producer, &self.counters);
            self.playback
                .push(frame, &mut |s| push_samples(producer, s, counters))
                .map_err(AudioError::Codec)
        }

        fn end_of_message(&mut self) -> Result<(), AudioError> {
            let (producer, counters) = (&mut self.producer, &self.counters);
            self.playback
                .flush(&mut |s| push_samples(producer, s, counters))
                .map_err(AudioError::Codec)
        }

        fn delay(&self, _frame_len: usize) -> Duration {
            samples_duration(queued(&self.producer), self.card_rate) + self.playback.delay()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rings_carry_a_tone_through_capture_and_playback() {
            let mut cap = RingCapture::new(48_000, 2).unwrap();
            let stereo: Vec<f32> = (0..96_000)
                .map(|i| (std::f32::consts::TAU * 1000.0 * (i / 2) as f32 / 48_000.0).sin() * 0.5)
                .collect();
            let mut frame = vec![0i16; 960];
            let mut got = 0;
            for chunk in stereo.chunks(2048) {
                cap.callback(chunk);
                while cap.read_frame(&mut frame).unwrap() {
                    got += frame.len();
                }
            }
            assert!(got >= 15_000, "{got}");
            assert_eq!(cap.stats().overruns, 0);
            let mut pb = RingPlayback::new(44_100).unwrap();
            assert_eq!(pb.sample_rate(), 48_000);
            pb.write_frame(&vec![1000; 2880]).unwrap();
            pb.end_of_message().unwrap();
            let mut out = vec![0i16; 4096];
            pb.callback(&mut out);
            assert!(out.iter().any(|&s| s != 0));
        }

        #[test]
        fn skipped_frames_leave_the_frames_after_them_as_if_read() {
            // 48 kHz stereo, 44.1 kHz mono and a card at the codec's own rate.
            for (rate, channels) in [(48_000u32, 2usize), (44_100, 1), (CODEC_RATE, 1)] {
                let samples: Vec<f32> = (0..rate as usize * channels)
                    .map(|i| {
                        let t = (i / channels) as f32 / rate as f32;
                        (std::f32::consts::TAU * 440.0 * t).sin() * 0.5
                    })
                    .collect();
                // Frames of 20 ms; the pattern says which ones are skipped.
                let run = |skips: &[bool]| {
                    let mut cap = RingCapture::new(rate, channels).unwrap();
                    let mut frames = Vec::new();
                    let mut frame = vec![0i16; 320];
                    let mut next = 0;
                    for chunk in samples.chunks(1000 * channels) {
                        cap.callback(chunk);
                        loop {
                            let skip = skips[next % skips.len()];
                            let taken = if skip {
                                cap.skip_frame(&mut frame).unwrap()
                            } else {
                                cap.read_frame(&mut frame).unwrap()
                            };
                            if !taken {
                                break;
                            }
                            frames.push((!skip).then(|| frame.clone()));
                            next += 1;
                        }
                    }
                    frames
                };
                let all = run(&[false]);
                let some = run(&[false, true, true, false, true]);
                assert!(all.len() >= 45, "{rate} Hz: {} frames", all.len());
                assert_eq!(all.len(), some.len(), "{rate} Hz");
                for (k, (a, s)) in all.iter().zip(&some).enumerate() {
                    if let Some(s) = s {
                        assert_eq!(a.as_ref(), Some(s), "{rate} Hz, frame {k}");
                    }
                }
            }
        }
    }
}
