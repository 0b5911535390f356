//! The radio's receiver audio from the sound card: [`CpalInput`], and [`Capture`], which
//! turns the card's samples into codec-rate frames.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

use super::convert::{CHUNK_FRAMES, convert_len, downmix, samples_duration, to_i16};
use super::counters::{Counters, on_io_failure};
use super::device::{DeviceThread, Link, Poll, TIMING, Timing};
use super::open::{SharedPcm, check_period, check_rate, open_pcm, rate_error};
use super::{DeviceHealth, INPUT_KEY, SoundMonitor, SoundSettings, SoundStats, lock};
use crate::audio::alsa_pcm::Direction;
use crate::audio::resample::{ResampleError, Resampler};
use crate::audio::{AudioError, AudioInput, CODEC_RATE};

/// The reading side of capture: pops from the ring exactly the samples the next frame needs,
/// downmixes them to mono, resamples them to the codec rate and hands out frames.
pub(super) struct Capture {
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
    pub(super) fn new(card_rate: u32, channels: usize) -> Result<Self, ResampleError> {
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
    pub(super) fn waiting(&self, ring: &Consumer<f32>) -> Duration {
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

    /// Fills `frame` with the next codec-rate samples; false if the ring does not hold
    /// enough yet (nothing is taken from it then).
    pub(super) fn read(
        &mut self,
        ring: &mut Consumer<f32>,
        frame: &mut [i16],
        period: usize,
        counters: &Counters,
    ) -> bool {
        self.take(ring, frame.len(), Some(frame), period, counters)
    }

    /// Takes the next `len` codec-rate samples' worth from the ring like [`read`](Self::read)
    /// but without converting them: the resampler only keeps its history, so the frames
    /// read after are exactly as if these had been read.
    pub(super) fn skip(
        &mut self,
        ring: &mut Consumer<f32>,
        len: usize,
        period: usize,
        counters: &Counters,
    ) -> bool {
        self.take(ring, len, None, period, counters)
    }

    fn take(
        &mut self,
        ring: &mut Consumer<f32>,
        len: usize,
        frame: Option<&mut [i16]>,
        period: usize,
        counters: &Counters,
    ) -> bool {
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
            return false;
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
            if ring.pop_entire_slice(raw).is_err() {
                // Cannot happen: the ring held every frame wanted (checked above) and only
                // this reader takes from it.
                return false;
            }
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
        true
    }
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
        let capture = Capture::new(rate, 1).map_err(|e| rate_error(INPUT_KEY, &name, e))?;
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

    status_accessors!(
        "input",
        "Overruns",
        "The sound card's rate (frames are delivered at [`CODEC_RATE`])."
    );
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
                    .map_err(|e| rate_error(INPUT_KEY, &link.device, e))?;
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
        Ok(if read {
            self.capture
                .read(&mut self.staged.1, frame, period, counters)
        } else {
            self.capture
                .skip(&mut self.staged.1, frame.len(), period, counters)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signal::{power_at, rms, tone};

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
            while cap.read(&mut q, &mut frame, 0, &c) {
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
            assert!(cap.read(&mut q, &mut frame, 960, &c));
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
        assert!(!cap.read(&mut q, &mut frame, 0, &c));
        // A burst (the card delivered late): kept at first...
        p.push_entire_slice(&vec![0.1; 20_000]).unwrap();
        assert!(cap.read(&mut q, &mut frame, 1024, &c));
        assert_eq!(c.skipped_frames.load(Ordering::Relaxed), 0);
        // ...but a backlog that stays above a frame and a period for a whole window is
        // latency: trimmed.
        for _ in 0..2 * BACKLOG_WINDOW_READS {
            p.push_entire_slice(&vec![0.1; 2880]).unwrap();
            assert!(cap.read(&mut q, &mut frame, 1024, &c));
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
            assert!(cap.read(&mut q, &mut frame, 1024, &c));
        }
        assert_eq!(c.skipped_frames.load(Ordering::Relaxed), before);
    }
}
