//! Live audio levels of one radio, read from any thread while its codec engine writes them:
//! the level setup aid (`monitor --levels`), the API's `levels:NAME` room and the dashboard's
//! level bars.
//!
//! A [`LiveMeter`] holds, for each direction (receive: the radio's audio into the gateway;
//! transmit: the channel's audio played to the radio), the latest frame's RMS and peak in
//! dBFS, whether the squelch was open for it, a running clip count and a frame count. It is
//! atomics only: the engine's thread never locks or allocates to update it, and a reader
//! never holds up the engine.
//!
//! While nobody [wants](LiveMeter::want) the levels the engine measures the receive side only
//! when it takes the audio anyway (squelch open); while someone does, it reads and measures
//! every frame, so an installer sees the noise floor with the squelch closed.
//!
//! Levels never read `-inf` or NaN: silence (and anything quieter) reads [`SILENCE_DBFS`]
//! (-96 dBFS), full scale reads 0.

use crate::audio::level::SILENCE_DBFS;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// A sample at or above this magnitude counts as clipped: full scale, or within 0.05 dB of
/// it (a clipped signal that went through a resampler or a filter no longer sits exactly at
/// `i16::MAX`).
pub const CLIP_MAGNITUDE: u16 = 32_604;

/// Full scale as an amplitude (`i16::MIN`'s magnitude, so that no sample reads above 0 dBFS).
const FULL_SCALE: f64 = 32_768.0;

/// Levels of a stretch of audio (a frame, a packet, a whole message): what is needed to merge
/// stretches and read their peak and RMS.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    /// Largest absolute sample.
    pub peak: u16,
    /// Sum of squared samples (normalised to full scale 1.0).
    pub sum_squares: f64,
    /// Samples measured.
    pub samples: u32,
    /// Samples at or near full scale ([`CLIP_MAGNITUDE`]).
    pub clips: u32,
}

impl Levels {
    /// The levels of `frame`, in one pass over it.
    pub fn measure(frame: &[i16]) -> Self {
        let mut l = Levels::default();
        l.add(frame);
        l
    }

    /// Adds `frame`'s samples.
    pub fn add(&mut self, frame: &[i16]) {
        let mut peak = self.peak;
        let mut sum = 0.0;
        let mut clips = 0u32;
        for &x in frame {
            let a = x.unsigned_abs();
            peak = peak.max(a);
            let f = f64::from(x) / FULL_SCALE;
            sum += f * f;
            clips += u32::from(a >= CLIP_MAGNITUDE);
        }
        self.peak = peak;
        self.sum_squares += sum;
        self.samples = self
            .samples
            .saturating_add(u32::try_from(frame.len()).unwrap_or(u32::MAX));
        self.clips = self.clips.saturating_add(clips);
    }

    /// Adds another stretch's levels (packets into a message).
    pub fn merge(&mut self, other: &Levels) {
        self.peak = self.peak.max(other.peak);
        self.sum_squares += other.sum_squares;
        self.samples = self.samples.saturating_add(other.samples);
        self.clips = self.clips.saturating_add(other.clips);
    }

    /// Peak level in dBFS: 0 at full scale, [`SILENCE_DBFS`] for silence or nothing measured.
    pub fn peak_dbfs(&self) -> f32 {
        to_dbfs(f64::from(self.peak) / FULL_SCALE)
    }

    /// RMS level in dBFS: about -3 for a full-scale sine, [`SILENCE_DBFS`] for silence or
    /// nothing measured.
    pub fn rms_dbfs(&self) -> f32 {
        if self.samples == 0 {
            return SILENCE_DBFS;
        }
        to_dbfs((self.sum_squares / f64::from(self.samples)).sqrt())
    }
}

/// An amplitude relative to full scale in dBFS, within `SILENCE_DBFS..=0.0` (never NaN).
fn to_dbfs(relative: f64) -> f32 {
    if relative.is_nan() || relative <= 0.0 {
        return SILENCE_DBFS;
    }
    ((20.0 * relative.log10()) as f32).clamp(SILENCE_DBFS, 0.0)
}

/// Which way the audio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterDirection {
    /// From the radio's receiver into the gateway (to the channel).
    Receive,
    /// From the channel, played to the radio's transmitter.
    Transmit,
}

/// One reading of a direction's levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelReading {
    /// RMS of the latest frame measured, in dBFS ([`SILENCE_DBFS`] before any).
    pub rms_dbfs: f32,
    /// Peak of the latest frame measured, in dBFS ([`SILENCE_DBFS`] before any).
    pub peak_dbfs: f32,
    /// Receive: the squelch (carrier detect) was open for that frame. Transmit: a message
    /// or a tone was playing.
    pub open: bool,
    /// Receive only, with a level-based detector (VOX): the level it compared with
    /// `open_dbfs` / `close_dbfs` for that frame (the peak after the receive high-pass, so
    /// without a CTCSS tone or hum), in dBFS. `None` otherwise.
    pub detector_dbfs: Option<f32>,
    /// Samples at or near full scale ([`CLIP_MAGNITUDE`]) since the gateway started.
    pub clips: u64,
    /// Frames measured since the gateway started: a reading whose `frames` has not moved
    /// since the last one holds nothing new.
    pub frames: u64,
}

/// The latest levels of one direction, written by one thread (the codec engine's) and read by
/// any: a sequence lock over atomics, so a reading never mixes two frames and the writer
/// never waits.
#[derive(Debug, Default)]
struct DirectionMeter {
    /// Twice the frames written; odd while a frame is being written.
    seq: AtomicU64,
    rms: AtomicU32,
    peak: AtomicU32,
    /// `f32` bits, NaN for none.
    detector: AtomicU32,
    open: AtomicBool,
    clips: AtomicU64,
    /// The largest sample magnitude plus one since the last [`LiveMeter::take_peak`]; 0:
    /// no frame since.
    peak_hold: AtomicU32,
}

/// Tries a reader makes for a reading that no write overlapped, before it takes the last one.
const READ_TRIES: usize = 8;

impl DirectionMeter {
    fn record(&self, levels: &Levels, open: bool, detector: Option<f32>) {
        // Sequence-lock write: odd, fields, even (one writer).
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.rms
            .store(levels.rms_dbfs().to_bits(), Ordering::Relaxed);
        self.peak
            .store(levels.peak_dbfs().to_bits(), Ordering::Relaxed);
        self.detector
            .store(detector.unwrap_or(f32::NAN).to_bits(), Ordering::Relaxed);
        self.open.store(open, Ordering::Relaxed);
        if levels.clips > 0 {
            self.clips
                .fetch_add(u64::from(levels.clips), Ordering::Relaxed);
        }
        self.seq.store(s.wrapping_add(2), Ordering::Release);
        self.peak_hold
            .fetch_max(u32::from(levels.peak) + 1, Ordering::Relaxed);
    }

    fn take_peak(&self) -> Option<f32> {
        match self.peak_hold.swap(0, Ordering::Relaxed) {
            0 => None,
            held => Some(
                Levels {
                    peak: u16::try_from(held - 1).unwrap_or(u16::MAX),
                    ..Levels::default()
                }
                .peak_dbfs(),
            ),
        }
    }

    fn read(&self) -> LevelReading {
        let mut reading = self.read_once().1;
        for _ in 0..READ_TRIES {
            let (consistent, r) = self.read_once();
            reading = r;
            if consistent {
                break;
            }
        }
        reading
    }

    /// A reading, and whether no write overlapped it.
    fn read_once(&self) -> (bool, LevelReading) {
        let before = self.seq.load(Ordering::Acquire);
        let rms = f32::from_bits(self.rms.load(Ordering::Relaxed));
        let peak = f32::from_bits(self.peak.load(Ordering::Relaxed));
        let detector = f32::from_bits(self.detector.load(Ordering::Relaxed));
        let open = self.open.load(Ordering::Relaxed);
        let clips = self.clips.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = self.seq.load(Ordering::Relaxed);
        let frames = after / 2;
        let reading = if frames == 0 {
            LevelReading {
                rms_dbfs: SILENCE_DBFS,
                peak_dbfs: SILENCE_DBFS,
                open,
                detector_dbfs: None,
                clips,
                frames,
            }
        } else {
            LevelReading {
                rms_dbfs: rms,
                peak_dbfs: peak,
                open,
                detector_dbfs: (!detector.is_nan()).then_some(detector),
                clips,
                frames,
            }
        };
        (before == after && before.is_multiple_of(2), reading)
    }
}

/// The live levels of one radio (see the [module](self)). Shared as `Arc<LiveMeter>` between
/// the radio's codec engine, which alone writes it, and any number of readers.
#[derive(Debug, Default)]
pub struct LiveMeter {
    receive: DirectionMeter,
    transmit: DirectionMeter,
    wanted: AtomicUsize,
}

impl LiveMeter {
    /// A meter that has measured nothing and that nobody wants.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one frame's levels (the codec engine, once per frame, one thread only).
    /// `detector` is the level a VOX compared, for the receive side.
    pub fn record(
        &self,
        direction: MeterDirection,
        levels: &Levels,
        open: bool,
        detector: Option<f32>,
    ) {
        self.side(direction).record(levels, open, detector);
    }

    /// The latest levels of `direction`.
    pub fn read(&self, direction: MeterDirection) -> LevelReading {
        self.side(direction).read()
    }

    /// The highest peak of `direction`'s frames measured since the last call, in dBFS;
    /// `None` if none was. For one sampler (the API's, at a few hertz): a meter that shows
    /// the latest frame at 5 Hz misses most frames, this misses no peak between samples.
    pub fn take_peak(&self, direction: MeterDirection) -> Option<f32> {
        self.side(direction).take_peak()
    }

    fn side(&self, direction: MeterDirection) -> &DirectionMeter {
        match direction {
            MeterDirection::Receive => &self.receive,
            MeterDirection::Transmit => &self.transmit,
        }
    }

    /// Someone wants the levels (a `levels:NAME` subscriber, `monitor --levels`): until the
    /// guard is dropped, the engine measures the receive level of every frame, squelch
    /// closed or open.
    pub fn want(self: &Arc<Self>) -> WantGuard {
        self.wanted.fetch_add(1, Ordering::Relaxed);
        WantGuard {
            meter: Arc::clone(self),
        }
    }

    /// Whether someone wants the levels now (one atomic load: the engine asks every frame).
    pub fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed) > 0
    }

    /// How many guards are alive.
    pub fn wanted_by(&self) -> usize {
        self.wanted.load(Ordering::Relaxed)
    }
}

/// Keeps the levels of a [`LiveMeter`] measured while alive ([`LiveMeter::want`]).
#[derive(Debug)]
#[must_use = "the levels are wanted only while the guard lives"]
pub struct WantGuard {
    meter: Arc<LiveMeter>,
}

impl WantGuard {
    /// The meter this guard keeps measuring.
    pub fn meter(&self) -> &Arc<LiveMeter> {
        &self.meter
    }
}

impl Drop for WantGuard {
    fn drop(&mut self) {
        self.meter.wanted.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64, len: usize) -> Vec<i16> {
        // 1 kHz at 16 kHz: whole periods when len is a multiple of 16.
        (0..len)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 16000.0;
                (amplitude * phase.sin()).round() as i16
            })
            .collect()
    }

    fn close(a: f32, b: f32, tolerance: f32) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn a_full_scale_sine_reads_minus_three_rms_and_zero_peak() {
        let s = sine(32767.0, 320);
        let l = Levels::measure(&s);
        assert!(close(l.peak_dbfs(), 0.0, 0.01), "{}", l.peak_dbfs());
        assert!(close(l.rms_dbfs(), -3.01, 0.02), "{}", l.rms_dbfs());
        assert_eq!(l.samples, 320);
        // Only the crests are within 0.05 dB of full scale: 1 kHz at 16 kHz has two per
        // period (at +-32767), 20 periods.
        assert_eq!(l.clips, 40);
        let half = Levels::measure(&sine(16384.0, 320));
        assert!(close(half.peak_dbfs(), -6.02, 0.01));
        assert!(close(half.rms_dbfs(), -9.03, 0.02));
        assert_eq!(half.clips, 0);
    }

    #[test]
    fn silence_reads_the_floor_never_infinity_or_nan() {
        for l in [
            Levels::measure(&[0; 160]),
            Levels::measure(&[]),
            Levels::default(),
        ] {
            assert_eq!(l.peak_dbfs(), SILENCE_DBFS);
            assert_eq!(l.rms_dbfs(), SILENCE_DBFS);
        }
        // Quieter than the floor still reads the floor.
        let lsb = Levels::measure(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(lsb.peak_dbfs() > SILENCE_DBFS);
        let tiny = Levels {
            peak: 0,
            sum_squares: 1e-30,
            samples: 1,
            clips: 0,
        };
        assert_eq!(tiny.rms_dbfs(), SILENCE_DBFS);
        let meter = LiveMeter::new();
        let r = meter.read(MeterDirection::Receive);
        assert_eq!(
            (r.rms_dbfs, r.peak_dbfs, r.frames),
            (SILENCE_DBFS, SILENCE_DBFS, 0)
        );
        assert_eq!(r.detector_dbfs, None);
        assert!(
            serde_json::to_string(&r.rms_dbfs)
                .unwrap()
                .starts_with("-96")
        );
    }

    #[test]
    fn clips_count_samples_at_or_near_full_scale_in_both_polarities() {
        let l = Levels::measure(&[i16::MAX, i16::MIN, -32_700, 32_604, 32_603, 0, -100]);
        assert_eq!(l.clips, 4);
        assert_eq!(l.peak_dbfs(), 0.0);
        let mut all = Levels::default();
        all.merge(&l);
        all.merge(&Levels::measure(&[i16::MAX; 3]));
        assert_eq!((all.clips, all.samples), (7, 10));
        let meter = LiveMeter::new();
        meter.record(MeterDirection::Receive, &l, true, None);
        meter.record(
            MeterDirection::Receive,
            &Levels::measure(&[0; 8]),
            false,
            None,
        );
        let r = meter.read(MeterDirection::Receive);
        assert_eq!(r.clips, 4, "the clip count runs on");
        assert_eq!(r.frames, 2);
        assert_eq!(r.peak_dbfs, SILENCE_DBFS, "the latest frame's level");
        assert!(!r.open);
        assert_eq!(meter.read(MeterDirection::Transmit).frames, 0);
    }

    #[test]
    fn merged_packets_read_as_the_whole() {
        let s = sine(8000.0, 1600);
        let mut parts = Levels::default();
        for frame in s.chunks(320) {
            parts.merge(&Levels::measure(frame));
        }
        let whole = Levels::measure(&s);
        assert_eq!(parts.peak, whole.peak);
        assert!(close(parts.rms_dbfs(), whole.rms_dbfs(), 1e-4));
        // As much silence again halves the power: -3 dB.
        parts.add(&[0; 1600]);
        assert!(close(parts.rms_dbfs(), whole.rms_dbfs() - 3.01, 0.02));
    }

    #[test]
    fn a_reading_holds_the_latest_frame_and_the_detector_level() {
        let meter = LiveMeter::new();
        let loud = Levels::measure(&sine(32767.0, 160));
        meter.record(MeterDirection::Receive, &loud, true, Some(-12.5));
        let r = meter.read(MeterDirection::Receive);
        assert!(close(r.rms_dbfs, -3.0, 0.05) && close(r.peak_dbfs, 0.0, 0.01));
        assert!(r.open);
        assert_eq!(r.detector_dbfs, Some(-12.5));
        assert_eq!(r.frames, 1);
        meter.record(MeterDirection::Transmit, &loud, true, None);
        meter.record(MeterDirection::Receive, &Levels::default(), false, None);
        let r = meter.read(MeterDirection::Receive);
        assert_eq!(r.detector_dbfs, None);
        assert_eq!(r.frames, 2);
        assert_eq!(meter.read(MeterDirection::Transmit).frames, 1);
    }

    #[test]
    fn the_peak_since_the_last_sample_is_held() {
        let meter = LiveMeter::new();
        let rx = MeterDirection::Receive;
        assert_eq!(meter.take_peak(rx), None, "nothing measured yet");
        meter.record(rx, &Levels::measure(&[16_384]), true, None);
        meter.record(rx, &Levels::measure(&[i16::MIN]), true, None);
        meter.record(rx, &Levels::measure(&[100]), true, None);
        assert!(
            meter.read(rx).peak_dbfs < -40.0,
            "the latest frame is quiet"
        );
        assert_eq!(
            meter.take_peak(rx),
            Some(0.0),
            "the loud one between samples"
        );
        assert_eq!(meter.take_peak(rx), None, "taken");
        meter.record(rx, &Levels::default(), false, None);
        assert_eq!(meter.take_peak(rx), Some(SILENCE_DBFS));
        assert_eq!(meter.take_peak(MeterDirection::Transmit), None);
    }

    #[test]
    fn want_guards_count_and_release_on_drop() {
        let meter = Arc::new(LiveMeter::new());
        assert!(!meter.is_wanted());
        let a = meter.want();
        let b = meter.want();
        assert!(meter.is_wanted());
        assert_eq!(meter.wanted_by(), 2);
        assert!(Arc::ptr_eq(a.meter(), &meter));
        drop(a);
        assert!(meter.is_wanted());
        // A guard moved to another thread and dropped there still counts down.
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert!(!meter.is_wanted());
        assert_eq!(meter.wanted_by(), 0);
    }

    #[test]
    fn readers_never_see_half_a_frame() {
        // The writer records frames whose RMS and peak are tied (one sample: peak == RMS);
        // a reading that mixed two frames would show them differ. Only the readings the
        // sequence says no write overlapped are checked (the public read retries until it
        // gets one, which a tight test loop cannot promise).
        let meter = Arc::new(LiveMeter::new());
        let writer = {
            let meter = meter.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let l = Levels::measure(&[(i % 30_000 + 1) as i16]);
                    meter.record(MeterDirection::Receive, &l, i % 2 == 0, None);
                }
            })
        };
        let (mut torn, mut checked) = (0, 0);
        while !writer.is_finished() {
            let (consistent, r) = meter.receive.read_once();
            if consistent && r.frames > 0 {
                checked += 1;
                if r.rms_dbfs != r.peak_dbfs {
                    torn += 1;
                }
            }
        }
        writer.join().unwrap();
        assert_eq!(torn, 0, "of {checked}");
        let last = meter.read(MeterDirection::Receive);
        assert_eq!(last.frames, 20_000);
        assert_eq!(last.rms_dbfs, last.peak_dbfs);
    }
}
