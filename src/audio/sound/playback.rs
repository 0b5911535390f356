//! Audio for the radio's transmitter on the sound card: [`CpalOutput`], and [`Playback`],
//! which converts the engine's frames to the card's rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alsa::pcm::State;

use super::convert::{CHUNK_FRAMES, convert_len, samples_duration, to_i16};
use super::counters::{Counters, on_io_failure};
use super::device::{DeviceThread, Link, Poll, TIMING, Timing};
use super::open::{SharedPcm, check_period, check_rate, open_pcm, rate_error};
use super::{DeviceHealth, OPUS_RATES, OUTPUT_KEY, SoundMonitor, SoundSettings, SoundStats, lock};
use crate::audio::AudioError;
use crate::audio::AudioOutput;
use crate::audio::alsa_pcm::{Direction, IoFailure, Pcm};
use crate::audio::resample::{ResampleError, Resampler};

/// The writing side of playback: converts the engine's frames to the card's rate when the card
/// does not run at an Opus rate.
pub(super) struct Playback {
    resampler: Option<Resampler>,
    /// Samples resampled since the last flush (the resampler holds a tail).
    dirty: bool,
    input: Vec<f32>,
    converted: Vec<i16>,
}

impl Playback {
    pub(super) fn new(engine_rate: u32, card_rate: u32) -> Result<Self, ResampleError> {
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
    pub(super) fn delay(&self) -> Duration {
        self.resampler.as_ref().map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(r.delay_in() / f64::from(r.from_rate()))
        })
    }

    /// Converts `frame` and hands the card-rate samples to `sink`.
    pub(super) fn push(&mut self, frame: &[i16], sink: &mut dyn FnMut(&[i16])) {
        let Some(r) = self.resampler.as_mut() else {
            sink(frame);
            return;
        };
        self.dirty = true;
        for piece in frame.chunks(CHUNK_FRAMES) {
            let input = &mut self.input[..piece.len()];
            for (f, &s) in input.iter_mut().zip(piece) {
                *f = f32::from(s) / 32768.0;
            }
            Self::convert(r, input, &mut self.converted, sink);
        }
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
    pub(super) fn flush(&mut self, sink: &mut dyn FnMut(&[i16])) {
        let Some(r) = self.resampler.as_mut() else {
            return;
        };
        if !self.dirty {
            return;
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
            Playback::new(engine_rate, rate).map_err(|e| rate_error(OUTPUT_KEY, &name, e))?;
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

    status_accessors!(
        "output",
        "Underruns, dropped samples",
        "The sound card's rate (frames are written at [`AudioOutput::sample_rate`])."
    );

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
pub(super) fn engine_rate_for(card_rate: u32) -> u32 {
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
        self.playback
            .push(frame, &mut |s| queue(pcm, s, counters, playing));
        if start && let Err(f) = pcm.start() {
            on_io_failure(counters, &f);
        }
        Ok(())
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
        self.playback.flush(&mut |s| queue(pcm, s, counters, false));
        let ahead = pcm.delay().unwrap_or(0) + pcm.opened.period;
        self.drained_at = Some(Instant::now() + samples_duration(ahead, self.card_rate));
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signal::{power_at, rms, tone};

    #[test]
    fn engine_rate_is_the_card_rate_only_for_opus_rates() {
        for r in OPUS_RATES {
            assert_eq!(engine_rate_for(r), r);
        }
        assert_eq!(engine_rate_for(44_100), 48_000);
        assert_eq!(engine_rate_for(96_000), 48_000);
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
            pb.push(frame, &mut |s| out.extend_from_slice(s));
        }
        pb.flush(&mut |s| out.extend_from_slice(s));
        assert!(out.len() >= 44_100, "{}", out.len());
        assert!(out.len() <= 44_100 + 882, "{}", out.len());
        let steady = &out[2000..40_000];
        assert!(power_at(steady, 44_100, 1000.0) > 0.1);
        assert!((rms(steady) - 0.5 / 2f64.sqrt()).abs() < 0.02);
        // A second flush without new audio adds nothing.
        let n = out.len();
        pb.flush(&mut |s| out.extend_from_slice(s));
        assert_eq!(out.len(), n);
        // Opus-rate cards need no conversion.
        let mut direct = Playback::new(48_000, 48_000).unwrap();
        let mut got = Vec::new();
        direct.push(&[1, 2, 3], &mut |s| got.extend_from_slice(s));
        direct.flush(&mut |s| got.extend_from_slice(s));
        assert_eq!(got, [1, 2, 3]);
    }
}
