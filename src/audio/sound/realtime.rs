//! What runs on the sound card's side of a ring: copies between the card's buffer and a
//! lock-free ring, and atomic counters. No allocation, no lock, no logging here.

use std::sync::atomic::Ordering;

use rtrb::{Consumer, Producer};

use super::counters::{Counters, DRAINING, IDLE, PLAYING, STARVED};

/// Sample formats the backend opens devices with.
pub(super) trait DeviceSample: cpal::SizedSample + Copy + Send + 'static {
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

/// The capture callback: copies whole sample frames into the ring, counts what did not fit.
/// Runs on the sound card's thread: no allocation, no lock.
pub(super) fn capture_callback<T: DeviceSample>(
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
pub(super) fn playback_callback<T: DeviceSample>(
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

/// Pushes what fits of `samples` into the ring; counts the rest as dropped.
pub(super) fn push_samples(ring: &mut Producer<i16>, samples: &[i16], counters: &Counters) {
    let (_, rest) = ring.push_partial_slice(samples);
    if !rest.is_empty() {
        counters
            .dropped_samples
            .fetch_add(rest.len() as u64, Ordering::Relaxed);
    }
}

/// Samples queued in a playback ring.
pub(super) fn queued(ring: &Producer<i16>) -> usize {
    ring.buffer().capacity() - ring.slots()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtrb::RingBuffer;

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
    fn push_counts_what_does_not_fit() {
        let c = Counters::default();
        let (mut p, q) = RingBuffer::<i16>::new(10);
        push_samples(&mut p, &[1; 4], &c);
        assert_eq!(q.slots(), 4);
        push_samples(&mut p, &[1; 8], &c);
        assert_eq!(q.slots(), 10);
        assert_eq!(c.dropped_samples.load(Ordering::Relaxed), 2);
    }
}
