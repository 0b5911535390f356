//! The sound-card path without a device, for benchmarks and tests: the same callbacks, rings,
//! downmix and resampling as [`CpalInput`] / [`CpalOutput`], driven by the caller instead of
//! a sound card.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

use super::SoundStats;
use super::capture::Capture;
use super::convert::samples_duration;
use super::counters::Counters;
use super::playback::{Playback, engine_rate_for};
use super::realtime::{capture_callback, playback_callback, push_samples, queued};
use crate::audio::{AudioError, AudioInput, AudioOutput, CODEC_RATE};

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
            capture: Capture::new(card_rate, channels)?,
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
        Ok(self
            .capture
            .read(&mut self.consumer, frame, 0, &self.counters))
    }

    fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        Ok(self
            .capture
            .skip(&mut self.consumer, frame.len(), 0, &self.counters))
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
        let engine_rate = engine_rate_for(card_rate);
        let (producer, consumer) = RingBuffer::new(card_rate as usize);
        Ok(RingPlayback {
            producer,
            consumer,
            playback: Playback::new(engine_rate, card_rate)?,
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
            .push(frame, &mut |s| push_samples(producer, s, counters));
        Ok(())
    }

    fn end_of_message(&mut self) -> Result<(), AudioError> {
        let (producer, counters) = (&mut self.producer, &self.counters);
        self.playback
            .flush(&mut |s| push_samples(producer, s, counters));
        Ok(())
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
