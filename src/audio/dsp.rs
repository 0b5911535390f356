//! The radio audio chains: what the gateway does to the receiver's audio before it is encoded
//! for the channel ([`RxChain`]), and to a channel message before it goes to the transmitter
//! ([`TxChain`]).
//!
//! Both work in place on mono `i16` frames of any length, one call per frame from the codec
//! thread. Internally the samples are `f64` scaled to ±1.0 (full scale); every buffer is
//! allocated when a chain is built, so [`RxChain::process`] and [`TxChain::process`] never
//! allocate, and their cost is a few dozen arithmetic operations per sample.
//!
//! The receive chain, in order:
//! 1. **High-pass** ([`ButterworthHighpass`], default 300 Hz, 4th order): removes the CTCSS
//!    and DCS signalling tones a receiver passes when its own tone filter is open or absent
//!    (discriminator audio). A 100 Hz tone comes out about 38 dB down, 1 kHz is untouched.
//!    With de-emphasis on, the high-pass is 6th order, since de-emphasis lifts 100 Hz by
//!    about 13 dB against 1 kHz.
//! 2. **De-emphasis** ([`Deemphasis`], off by default): for flat (discriminator) audio, the
//!    classic 750 µs first-order roll-off of -6 dB per octave, with 1 kHz kept at its level.
//! 3. **Input gain** in dB.
//! 4. **AGC** ([`Agc`], off by default): slowly brings speech to about -18 dBFS RMS, at most
//!    +20 dB; it measures only 10 ms blocks louder than -50 dBFS, so pauses, silence and
//!    receiver noise never push its gain up.
//! 5. **Peak limiter** ([`Limiter`], on by default): 1.5 ms look-ahead, 100 ms release,
//!    ceiling -1 dBFS; no sample leaves the chain above the ceiling.
//!
//! The transmit chain is the gain and the limiter.
//!
//! Digital silence stays exact silence: all state starts at zero, and state that decays
//! below 10⁻³⁰ is set to zero after each frame, so no denormal values linger (they are slow
//! on some processors) and nothing but zeros comes out of zeros.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Scale between `i16` samples and the chains' internal ±1.0.
const SCALE: f64 = 32768.0;

/// `i16::MAX` in internal units: 0 dBFS as [`crate::audio::level`] measures it.
const FULL_SCALE: f64 = i16::MAX as f64 / SCALE;

/// State smaller than this is set to zero after each frame (no denormals, exact silence).
const FLUSH_BELOW: f64 = 1e-30;

/// Lowest sample rate the chains accept.
pub const MIN_SAMPLE_RATE: u32 = 8000;
/// Highest sample rate the chains accept.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// Lowest high-pass cutoff [`RxSettings::highpass_hz`] accepts (0 turns the filter off).
pub const MIN_HIGHPASS_HZ: f32 = 50.0;
/// Highest high-pass cutoff [`RxSettings::highpass_hz`] accepts.
pub const MAX_HIGHPASS_HZ: f32 = 1000.0;
/// Order of the receive high-pass (two biquads).
pub const HIGHPASS_ORDER: usize = 4;
/// Order of the receive high-pass when de-emphasis is on (three biquads).
pub const HIGHPASS_ORDER_WITH_DEEMPHASIS: usize = 6;
/// Highest order [`ButterworthHighpass`] builds.
pub const MAX_HIGHPASS_ORDER: usize = 8;

/// Gains ([`RxSettings::gain_db`], [`TxSettings::gain_db`]) are accepted from minus to plus
/// this many dB.
pub const MAX_GAIN_DB: f32 = 40.0;

/// De-emphasis time constant: 750 µs (corner at 212 Hz, -6 dB per octave above it).
pub const DEEMPHASIS_TIME_CONSTANT_S: f64 = 750e-6;
/// De-emphasis leaves this frequency at its level.
pub const DEEMPHASIS_REFERENCE_HZ: f64 = 1000.0;

/// The limiter's ceiling: no sample leaves a chain above it.
pub const LIMITER_CEILING_DBFS: f64 = -1.0;
/// The limiter looks this far ahead (its attack time and the chains' latency).
pub const LIMITER_LOOKAHEAD_MS: f64 = 1.5;
/// Time constant of the limiter's release.
pub const LIMITER_RELEASE_MS: f64 = 100.0;

/// RMS level the AGC brings speech to.
pub const AGC_TARGET_DBFS: f64 = -18.0;
/// Most gain the AGC adds.
pub const AGC_MAX_GAIN_DB: f64 = 20.0;
/// Most gain the AGC takes away.
pub const AGC_MIN_GAIN_DB: f64 = -20.0;
/// Below this RMS level (measured at the AGC's input) the AGC holds its gain: noise and
/// silence are not raised.
pub const AGC_GATE_DBFS: f64 = -50.0;
/// The AGC measures the level in blocks of this length.
pub const AGC_BLOCK_MS: f64 = 10.0;
/// Time constant of the AGC's level measurement (over blocks above the gate).
pub const AGC_DETECTOR_S: f64 = 0.4;
/// Time constant with which the AGC lowers its gain (a louder talker).
pub const AGC_ATTACK_S: f64 = 0.3;
/// Time constant with which the AGC raises its gain (a quieter talker).
pub const AGC_RELEASE_S: f64 = 3.0;

/// A level in dBFS as an amplitude in internal units (0 dBFS = `i16::MAX`).
fn dbfs_to_amplitude(dbfs: f64) -> f64 {
    10f64.powf(dbfs / 20.0) * FULL_SCALE
}

/// A gain in dB as a factor.
fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// One-pole smoothing coefficient for a time constant of `seconds` at `rate`.
fn one_pole(seconds: f64, rate: f64) -> f64 {
    1.0 - (-1.0 / (seconds * rate)).exp()
}

/// Sets `x` to zero if it is tiny or not a number.
fn flush(x: &mut f64) {
    if x.is_nan() || x.abs() < FLUSH_BELOW {
        *x = 0.0;
    }
}

/// A DSP setting that cannot work: the message names the setting and the values it accepts
/// (fix the configuration).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DspError {
    /// The sample rate is outside what the filters are designed for.
    #[error("sample rate {0} Hz: use {min} to {max} Hz", min = MIN_SAMPLE_RATE, max = MAX_SAMPLE_RATE)]
    SampleRate(f64),
    /// A filter frequency at or beyond half the sample rate, or not above 0.
    #[error(
        "filter frequency {hz} Hz: use more than 0 and less than {nyquist} Hz (half the sample rate)"
    )]
    FilterFrequency {
        /// The frequency asked for.
        hz: f64,
        /// Half the sample rate.
        nyquist: f64,
    },
    /// A filter Q that is not positive, or above 100.
    #[error("filter Q {0}: use more than 0, up to 100")]
    FilterQ(f64),
    /// A high-pass order other than 2, 4, 6 or 8.
    #[error("high-pass order {0}: use 2, 4, 6 or 8 (up to {max})", max = MAX_HIGHPASS_ORDER)]
    HighpassOrder(usize),
    /// A limiter ceiling outside -60 to 0 dBFS.
    #[error("limiter ceiling {0} dBFS: use -60 to 0 dBFS")]
    LimiterCeiling(f64),
    /// `highpass_hz` outside its range.
    #[error("highpass_hz = {0}: use 0 (off) or {min} to {max} Hz", min = MIN_HIGHPASS_HZ, max = MAX_HIGHPASS_HZ)]
    HighpassHz(f32),
    /// `gain_db` outside its range.
    #[error("gain_db = {0}: use -{max} to {max} dB", max = MAX_GAIN_DB)]
    GainDb(f32),
}

fn check_rate(sample_rate: f64) -> Result<(), DspError> {
    if !(sample_rate.is_finite()
        && sample_rate >= f64::from(MIN_SAMPLE_RATE)
        && sample_rate <= f64::from(MAX_SAMPLE_RATE))
    {
        return Err(DspError::SampleRate(sample_rate));
    }
    Ok(())
}

/// A second-order IIR filter (biquad) from Robert Bristow-Johnson's "Audio EQ Cookbook", in
/// transposed direct form II with `f64` coefficients and state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    s1: f64,
    s2: f64,
}

impl Biquad {
    /// Checks a design's arguments: a supported rate, a frequency strictly between 0 and
    /// Nyquist, a positive finite Q.
    fn check(sample_rate: f64, freq_hz: f64, q: f64) -> Result<(), DspError> {
        check_rate(sample_rate)?;
        if !(freq_hz.is_finite() && freq_hz > 0.0 && freq_hz < sample_rate / 2.0) {
            return Err(DspError::FilterFrequency {
                hz: freq_hz,
                nyquist: sample_rate / 2.0,
            });
        }
        if !(q.is_finite() && q > 0.0 && q <= 100.0) {
            return Err(DspError::FilterQ(q));
        }
        Ok(())
    }

    /// `(cos w0, alpha)` of the cookbook.
    fn angle(sample_rate: f64, freq_hz: f64, q: f64) -> (f64, f64) {
        let w0 = 2.0 * PI * freq_hz / sample_rate;
        (w0.cos(), w0.sin() / (2.0 * q))
    }

    fn normalised(b: [f64; 3], a: [f64; 3]) -> Self {
        Biquad {
            b0: b[0] / a[0],
            b1: b[1] / a[0],
            b2: b[2] / a[0],
            a1: a[1] / a[0],
            a2: a[2] / a[0],
            s1: 0.0,
            s2: 0.0,
        }
    }

    /// A high-pass at `cutoff_hz` with quality `q` (0.7071 is Butterworth: -3 dB at the
    /// cutoff, no peak).
    pub fn highpass(sample_rate: f64, cutoff_hz: f64, q: f64) -> Result<Self, DspError> {
        Self::check(sample_rate, cutoff_hz, q)?;
        let (cos, alpha) = Self::angle(sample_rate, cutoff_hz, q);
        let b = (1.0 + cos) / 2.0;
        Ok(Self::normalised(
            [b, -(1.0 + cos), b],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        ))
    }

    /// A low-pass at `cutoff_hz` with quality `q`.
    pub fn lowpass(sample_rate: f64, cutoff_hz: f64, q: f64) -> Result<Self, DspError> {
        Self::check(sample_rate, cutoff_hz, q)?;
        let (cos, alpha) = Self::angle(sample_rate, cutoff_hz, q);
        let b = (1.0 - cos) / 2.0;
        Ok(Self::normalised(
            [b, 1.0 - cos, b],
            [1.0 + alpha, -2.0 * cos, 1.0 - alpha],
        ))
    }

    /// Filters one sample.
    #[inline]
    pub fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.s1;
        self.s1 = self.b1 * x - self.a1 * y + self.s2;
        self.s2 = self.b2 * x - self.a2 * y;
        y
    }

    /// Forgets the past input.
    pub fn reset(&mut self) {
        self.s1 = 0.0;
        self.s2 = 0.0;
    }

    /// The filter's gain at `freq_hz` (a factor, from the coefficients).
    pub fn magnitude_at(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        let w = 2.0 * PI * freq_hz / sample_rate;
        // H(e^jw) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2), z^-k = e^-jkw.
        let (c1, s1) = (w.cos(), -w.sin());
        let (c2, s2) = ((2.0 * w).cos(), -(2.0 * w).sin());
        let num = (self.b0 + self.b1 * c1 + self.b2 * c2).hypot(self.b1 * s1 + self.b2 * s2);
        let den = (1.0 + self.a1 * c1 + self.a2 * c2).hypot(self.a1 * s1 + self.a2 * s2);
        num / den
    }

    fn flush_state(&mut self) {
        flush(&mut self.s1);
        flush(&mut self.s2);
    }

    #[cfg(test)]
    fn is_silent(&self) -> bool {
        self.s1 == 0.0 && self.s2 == 0.0
    }
}

/// A Butterworth high-pass of even order (2 to [`MAX_HIGHPASS_ORDER`]): cascaded biquads at
/// the same cutoff, with the Qs that make the whole maximally flat and -3 dB at the cutoff.
/// Its slope is 6 dB per octave per order: the 4th-order filter at 300 Hz takes 38 dB off
/// 100 Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct ButterworthHighpass {
    sections: [Biquad; MAX_HIGHPASS_ORDER / 2],
    count: usize,
}

impl ButterworthHighpass {
    /// A high-pass of `order` (2, 4, 6 or 8) at `cutoff_hz`.
    pub fn new(sample_rate: f64, cutoff_hz: f64, order: usize) -> Result<Self, DspError> {
        if order == 0 || !order.is_multiple_of(2) || order > MAX_HIGHPASS_ORDER {
            return Err(DspError::HighpassOrder(order));
        }
        let count = order / 2;
        let mut sections = [Biquad::normalised([1.0, 0.0, 0.0], [1.0, 0.0, 0.0]); 4];
        for (k, section) in sections.iter_mut().take(count).enumerate() {
            // Pole pair k of an order-n Butterworth filter: Q = 1 / (2 cos((2k+1) pi / 2n)).
            let angle = (2 * k + 1) as f64 * PI / (2 * order) as f64;
            let q = 1.0 / (2.0 * angle.cos());
            *section = Biquad::highpass(sample_rate, cutoff_hz, q)?;
        }
        Ok(ButterworthHighpass { sections, count })
    }

    /// The filter's order.
    pub fn order(&self) -> usize {
        self.count * 2
    }

    /// Filters one sample.
    #[inline]
    pub fn process(&mut self, x: f64) -> f64 {
        self.sections[..self.count]
            .iter_mut()
            .fold(x, |x, section| section.process(x))
    }

    /// Forgets the past input.
    pub fn reset(&mut self) {
        self.sections.iter_mut().for_each(Biquad::reset);
    }

    /// The filter's gain at `freq_hz` (a factor).
    pub fn magnitude_at(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        self.sections[..self.count]
            .iter()
            .map(|s| s.magnitude_at(freq_hz, sample_rate))
            .product()
    }

    fn flush_state(&mut self) {
        self.sections.iter_mut().for_each(Biquad::flush_state);
    }

    #[cfg(test)]
    fn is_silent(&self) -> bool {
        self.sections.iter().all(Biquad::is_silent)
    }
}

/// First-order de-emphasis for flat (discriminator) audio: the classic 750 µs network, a
/// low-pass with its corner at 212 Hz falling 6 dB per octave above it, scaled so that
/// 1 kHz keeps its level. Relative to 1 kHz: 300 Hz +8.9 dB, 500 Hz +5.5 dB, 2 kHz -5.9 dB,
/// 3 kHz -9.4 dB (the analog curve). The digital filter is a one-pole low-pass whose pole
/// matches the analog one: within 0.5 dB of the analog curve up to 3 kHz at 16 kHz and
/// above; at 8 kHz the top of the band falls less (3 kHz at -7.5 dB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deemphasis {
    /// Input gain (includes the 1 kHz normalisation).
    b: f64,
    /// Pole.
    a: f64,
    y1: f64,
}

impl Deemphasis {
    /// The 750 µs de-emphasis at `sample_rate`.
    pub fn new(sample_rate: f64) -> Result<Self, DspError> {
        check_rate(sample_rate)?;
        let a = (-1.0 / (DEEMPHASIS_TIME_CONSTANT_S * sample_rate)).exp();
        // |1 - a e^-jw| at the reference frequency: dividing by it gives unity gain there.
        let w = 2.0 * PI * DEEMPHASIS_REFERENCE_HZ / sample_rate;
        let b = (1.0 - a * w.cos()).hypot(a * w.sin());
        Ok(Deemphasis { b, a, y1: 0.0 })
    }

    /// Filters one sample.
    #[inline]
    pub fn process(&mut self, x: f64) -> f64 {
        let y = self.b * x + self.a * self.y1;
        self.y1 = y;
        y
    }

    /// Forgets the past input.
    pub fn reset(&mut self) {
        self.y1 = 0.0;
    }

    /// The filter's gain at `freq_hz` (a factor).
    pub fn magnitude_at(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        let w = 2.0 * PI * freq_hz / sample_rate;
        self.b / (1.0 - self.a * w.cos()).hypot(self.a * w.sin())
    }

    fn flush_state(&mut self) {
        flush(&mut self.y1);
    }
}

/// `i` (less than `2 * len`) wrapped into a ring of `len` entries, without a division.
#[inline]
fn ring_index(i: usize, len: usize) -> usize {
    if i >= len { i - len } else { i }
}

/// A look-ahead peak limiter: no output sample is above the ceiling, and the gain moves
/// smoothly (no instant gain steps, which would distort).
///
/// How: each sample needs the gain `min(1, ceiling / |x|)`. The limiter takes the smallest
/// needed gain over the last `L` samples (the look-ahead, [`LIMITER_LOOKAHEAD_MS`]), lets it
/// recover towards 1 with the release time constant, and averages that over `L` samples;
/// the signal is delayed by `L - 1` samples. Every gain in the average is at most the gain
/// the delayed sample needs, so the average is too: the attack is a ramp of `L` samples
/// that ends exactly on the peak. A final clamp at the ceiling catches rounding.
#[derive(Debug, Clone)]
pub struct Limiter {
    ceiling: f64,
    release: f64,
    /// Look-ahead length `L` in samples.
    len: usize,
    /// The signal delayed by `L - 1` samples.
    delay: Box<[f64]>,
    delay_pos: usize,
    /// Sliding minimum of the needed gains: a monotonic queue in a ring of `L` entries.
    min_gain: Box<[f64]>,
    min_index: Box<[u64]>,
    min_head: usize,
    min_len: usize,
    /// The last `L` released gains and their sum.
    window: Box<[f64]>,
    window_pos: usize,
    window_sum: f64,
    /// The released gain.
    held: f64,
    /// Samples seen.
    index: u64,
    /// Gain applied to the last sample.
    gain: f64,
    /// Samples in a row that needed no gain reduction with the gain fully released: from
    /// `len` on, the limiter is a plain delay until a sample goes over the ceiling.
    settled: usize,
}

/// A released gain this close to 1 is 1 (-9·10⁻⁹ dB): the release would otherwise approach
/// 1 for ever, and the limiter could never settle into its plain-delay path.
const RELEASED: f64 = 1e-9;

impl Limiter {
    /// A limiter at `sample_rate` with its ceiling at `ceiling_dbfs` (at most 0).
    pub fn new(sample_rate: f64, ceiling_dbfs: f64) -> Result<Self, DspError> {
        check_rate(sample_rate)?;
        if !(ceiling_dbfs.is_finite() && (-60.0..=0.0).contains(&ceiling_dbfs)) {
            return Err(DspError::LimiterCeiling(ceiling_dbfs));
        }
        let len = ((LIMITER_LOOKAHEAD_MS / 1000.0 * sample_rate).round() as usize).max(1);
        // Whole samples: rounding the output cannot go above the ceiling.
        let ceiling = (dbfs_to_amplitude(ceiling_dbfs) * SCALE).floor() / SCALE;
        Ok(Limiter {
            ceiling,
            release: one_pole(LIMITER_RELEASE_MS / 1000.0, sample_rate),
            len,
            delay: vec![0.0; len - 1].into_boxed_slice(),
            delay_pos: 0,
            min_gain: vec![1.0; len].into_boxed_slice(),
            min_index: vec![0; len].into_boxed_slice(),
            min_head: 0,
            min_len: 0,
            window: vec![1.0; len].into_boxed_slice(),
            window_pos: 0,
            window_sum: len as f64,
            held: 1.0,
            index: 0,
            gain: 1.0,
            settled: len,
        })
    }

    /// The delay the limiter adds, in samples.
    pub fn latency(&self) -> usize {
        self.len - 1
    }

    /// The ceiling as an amplitude (1.0 = full scale).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The gain applied to the last sample, in dB (0 when not limiting).
    pub fn gain_db(&self) -> f64 {
        20.0 * self.gain.max(1e-10).log10()
    }

    /// The signal delayed by `L - 1` samples: `x` goes in, the sample of `L - 1` ago out.
    #[inline]
    fn delayed(&mut self, x: f64) -> f64 {
        if self.delay.is_empty() {
            return x;
        }
        let out = self.delay[self.delay_pos];
        self.delay[self.delay_pos] = x;
        self.delay_pos += 1;
        if self.delay_pos == self.delay.len() {
            self.delay_pos = 0;
        }
        out
    }

    /// Limits one sample; the result is the input of `L - 1` samples ago.
    #[inline]
    pub fn process(&mut self, x: f64) -> f64 {
        let magnitude = x.abs();
        if self.settled >= self.len && magnitude <= self.ceiling {
            // Nothing over the ceiling in the window and the gain released: every needed
            // gain in the window is 1, and so are the held gains and their average. The
            // sliding minimum's entries are all 1 and expire by themselves.
            self.index = self.index.wrapping_add(1);
            self.gain = 1.0;
            let delayed = self.delayed(x);
            return delayed.clamp(-self.ceiling, self.ceiling);
        }
        self.limit(x, magnitude)
    }

    /// [`process`](Self::process) while limiting or releasing.
    fn limit(&mut self, x: f64, magnitude: f64) -> f64 {
        let needed = if magnitude > self.ceiling {
            self.ceiling / magnitude
        } else {
            1.0
        };
        // Sliding minimum over the last `len` samples: drop what left the window, drop
        // entries the new one makes irrelevant, add the new one.
        let n = self.index;
        self.index = self.index.wrapping_add(1);
        let len = self.len;
        while self.min_len > 0 && self.min_index[self.min_head].wrapping_add(len as u64) <= n {
            self.min_head = if self.min_head + 1 == len {
                0
            } else {
                self.min_head + 1
            };
            self.min_len -= 1;
        }
        while self.min_len > 0 {
            let back = ring_index(self.min_head + self.min_len - 1, len);
            if self.min_gain[back] >= needed {
                self.min_len -= 1;
            } else {
                break;
            }
        }
        let slot = ring_index(self.min_head + self.min_len, len);
        self.min_gain[slot] = needed;
        self.min_index[slot] = n;
        self.min_len += 1;
        let peak_gain = self.min_gain[self.min_head];

        // Release towards 1, never above what the window needs.
        self.held = peak_gain.min(self.held + self.release * (1.0 - self.held));
        if self.held > 1.0 - RELEASED {
            self.held = 1.0;
        }

        // Moving average over `len` samples (the attack ramp).
        self.window_sum += self.held - self.window[self.window_pos];
        self.window[self.window_pos] = self.held;
        self.window_pos += 1;
        if self.window_pos == len {
            self.window_pos = 0;
            // Recompute now and then so rounding never accumulates.
            self.window_sum = self.window.iter().sum();
        }
        let gain = (self.window_sum / len as f64).min(1.0);
        self.gain = gain;
        if needed == 1.0 && self.held == 1.0 {
            self.settled += 1;
            if self.settled == len {
                // The window holds `len` gains of exactly 1.
                self.window_sum = len as f64;
            }
        } else {
            self.settled = 0;
        }

        let delayed = self.delayed(x);
        (delayed * gain).clamp(-self.ceiling, self.ceiling)
    }

    /// Forgets the past input.
    pub fn reset(&mut self) {
        self.delay.fill(0.0);
        self.delay_pos = 0;
        self.min_head = 0;
        self.min_len = 0;
        self.window.fill(1.0);
        self.window_pos = 0;
        self.window_sum = self.len as f64;
        self.held = 1.0;
        self.index = 0;
        self.gain = 1.0;
        self.settled = self.len;
    }

    fn flush_state(&mut self) {
        self.delay.iter_mut().for_each(flush);
        if !self.window_sum.is_finite() || !self.held.is_finite() {
            self.reset();
        }
    }

    #[cfg(test)]
    fn is_silent(&self) -> bool {
        self.delay.iter().all(|&x| x == 0.0)
    }
}

/// Slow automatic gain control for speech: brings the level of the speech towards
/// [`AGC_TARGET_DBFS`] RMS, within [`AGC_MIN_GAIN_DB`] to [`AGC_MAX_GAIN_DB`].
///
/// The input is measured in blocks of [`AGC_BLOCK_MS`]. Only blocks louder than
/// [`AGC_GATE_DBFS`] count: they update a running mean square ([`AGC_DETECTOR_S`]) from
/// which the wanted gain follows. Pauses, silence and a quiet noise floor leave the level
/// and the wanted gain where the speech put them, so they are never raised by more than the
/// speech was. The gain moves towards the wanted gain sample by sample, down with
/// [`AGC_ATTACK_S`], up with [`AGC_RELEASE_S`]. A fresh AGC starts at 0 dB.
#[derive(Debug, Clone, PartialEq)]
pub struct Agc {
    block_len: u32,
    detector: f64,
    attack: f64,
    release: f64,
    target: f64,
    gate_power: f64,
    min_gain: f64,
    max_gain: f64,
    /// Sum of squares and samples of the block being measured.
    block_sum: f64,
    block_fill: u32,
    /// Running mean square of the blocks above the gate.
    power: f64,
    gain: f64,
    wanted: f64,
}

impl Agc {
    /// An AGC at `sample_rate`.
    pub fn new(sample_rate: f64) -> Result<Self, DspError> {
        check_rate(sample_rate)?;
        let gate = dbfs_to_amplitude(AGC_GATE_DBFS);
        let block_len = (AGC_BLOCK_MS / 1000.0 * sample_rate).round().max(1.0);
        let target = dbfs_to_amplitude(AGC_TARGET_DBFS);
        Ok(Agc {
            block_len: block_len as u32,
            detector: 1.0 - (-block_len / (AGC_DETECTOR_S * sample_rate)).exp(),
            attack: one_pole(AGC_ATTACK_S, sample_rate),
            release: one_pole(AGC_RELEASE_S, sample_rate),
            target,
            gate_power: gate * gate,
            min_gain: db_to_gain(AGC_MIN_GAIN_DB),
            max_gain: db_to_gain(AGC_MAX_GAIN_DB),
            block_sum: 0.0,
            block_fill: 0,
            power: target * target,
            gain: 1.0,
            wanted: 1.0,
        })
    }

    /// The gain applied to the last sample, in dB.
    pub fn gain_db(&self) -> f64 {
        20.0 * self.gain.log10()
    }

    /// Applies the gain to one sample.
    #[inline]
    pub fn process(&mut self, x: f64) -> f64 {
        self.block_sum += x * x;
        self.block_fill += 1;
        if self.block_fill >= self.block_len {
            let block_power = self.block_sum / f64::from(self.block_fill);
            self.block_sum = 0.0;
            self.block_fill = 0;
            if block_power > self.gate_power {
                self.power += self.detector * (block_power - self.power);
                self.wanted = (self.target / self.power.sqrt()).clamp(self.min_gain, self.max_gain);
            }
        }
        let rate = if self.wanted < self.gain {
            self.attack
        } else {
            self.release
        };
        self.gain += rate * (self.wanted - self.gain);
        x * self.gain
    }

    /// Forgets the level and returns to 0 dB.
    pub fn reset(&mut self) {
        self.block_sum = 0.0;
        self.block_fill = 0;
        self.power = self.target * self.target;
        self.gain = 1.0;
        self.wanted = 1.0;
    }

    fn flush_state(&mut self) {
        let sane = |x: f64| x.is_finite() && x > 0.0;
        if !(sane(self.gain) && sane(self.wanted) && sane(self.power) && self.block_sum.is_finite())
        {
            self.reset();
        }
    }
}

/// Converts back to a sample, rounding and saturating.
#[inline]
fn to_sample(x: f64) -> i16 {
    // Adding and taking away 1.5 × 2^52 rounds to the nearest integer (ties to even) in two
    // additions; `f64::round` is a library call on processors without SSE4.1. `as`
    // saturates at the i16 range (huge values stay huge) and maps NaN to 0.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    ((x * SCALE + ROUND) - ROUND) as i16
}

/// Settings of the receive chain (`[radio.rx_audio]` or wherever the configuration puts it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RxSettings {
    /// High-pass cutoff in Hz against CTCSS/DCS tones: 0 (off) or 50 to 1000 (default 300).
    pub highpass_hz: f32,
    /// 750 µs de-emphasis, for flat (discriminator) audio (default off).
    pub deemphasis: bool,
    /// Input gain in dB, -40 to 40 (default 0).
    pub gain_db: f32,
    /// Peak limiter at -1 dBFS (default on).
    pub limiter: bool,
    /// Automatic gain control towards -18 dBFS RMS (default off).
    pub agc: bool,
}

impl Default for RxSettings {
    fn default() -> Self {
        RxSettings {
            highpass_hz: 300.0,
            deemphasis: false,
            gain_db: 0.0,
            limiter: true,
            agc: false,
        }
    }
}

fn check_gain(gain_db: f32) -> Result<(), DspError> {
    if !(gain_db.is_finite() && (-MAX_GAIN_DB..=MAX_GAIN_DB).contains(&gain_db)) {
        return Err(DspError::GainDb(gain_db));
    }
    Ok(())
}

impl RxSettings {
    /// Checks every value; the error names the first bad field and what it accepts.
    pub fn validate(&self) -> Result<(), DspError> {
        let hz = self.highpass_hz;
        if !(hz == 0.0 || (MIN_HIGHPASS_HZ..=MAX_HIGHPASS_HZ).contains(&hz)) {
            return Err(DspError::HighpassHz(hz));
        }
        check_gain(self.gain_db)
    }
}

/// Settings of the transmit chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TxSettings {
    /// Gain in dB, -40 to 40 (default 0).
    pub gain_db: f32,
    /// Peak limiter at -1 dBFS (default on).
    pub limiter: bool,
}

impl Default for TxSettings {
    fn default() -> Self {
        TxSettings {
            gain_db: 0.0,
            limiter: true,
        }
    }
}

impl TxSettings {
    /// Checks every value; the error names the first bad field and what it accepts.
    pub fn validate(&self) -> Result<(), DspError> {
        check_gain(self.gain_db)
    }
}

/// The limiter at the end of a chain, when the settings ask for one.
fn chain_limiter(enabled: bool, rate: f64) -> Result<Option<Limiter>, DspError> {
    enabled
        .then(|| Limiter::new(rate, LIMITER_CEILING_DBFS))
        .transpose()
}

/// The last step of a chain: the limiter, if any, then back to a sample.
#[inline]
fn limit(limiter: &mut Option<Limiter>, x: f64) -> i16 {
    match limiter {
        Some(limiter) => to_sample(limiter.process(x)),
        None => to_sample(x),
    }
}

fn check_chain_rate(sample_rate: u32) -> Result<f64, DspError> {
    check_rate(f64::from(sample_rate))?;
    Ok(f64::from(sample_rate))
}

/// The receive chain: high-pass, de-emphasis, gain, AGC, limiter (see the module
/// documentation). Built once per radio; [`process`](Self::process) per frame.
#[derive(Debug, Clone)]
pub struct RxChain {
    highpass: Option<ButterworthHighpass>,
    deemphasis: Option<Deemphasis>,
    gain: f64,
    agc: Option<Agc>,
    limiter: Option<Limiter>,
}

impl RxChain {
    /// A chain for audio at `sample_rate` (8000 to 192000 Hz). Fails with a message naming
    /// the bad setting.
    pub fn new(settings: &RxSettings, sample_rate: u32) -> Result<RxChain, DspError> {
        settings.validate()?;
        let rate = check_chain_rate(sample_rate)?;
        let highpass = if settings.highpass_hz > 0.0 {
            let order = if settings.deemphasis {
                HIGHPASS_ORDER_WITH_DEEMPHASIS
            } else {
                HIGHPASS_ORDER
            };
            Some(ButterworthHighpass::new(
                rate,
                f64::from(settings.highpass_hz),
                order,
            )?)
        } else {
            None
        };
        Ok(RxChain {
            highpass,
            deemphasis: settings
                .deemphasis
                .then(|| Deemphasis::new(rate))
                .transpose()?,
            gain: db_to_gain(f64::from(settings.gain_db)),
            agc: settings.agc.then(|| Agc::new(rate)).transpose()?,
            limiter: chain_limiter(settings.limiter, rate)?,
        })
    }

    /// Processes one frame in place (any length). Never allocates.
    pub fn process(&mut self, frame: &mut [i16]) {
        for sample in frame.iter_mut() {
            let mut x = f64::from(*sample) / SCALE;
            if let Some(highpass) = &mut self.highpass {
                x = highpass.process(x);
            }
            if let Some(deemphasis) = &mut self.deemphasis {
                x = deemphasis.process(x);
            }
            x *= self.gain;
            if let Some(agc) = &mut self.agc {
                x = agc.process(x);
            }
            *sample = limit(&mut self.limiter, x);
        }
        self.flush_state();
    }

    /// Forgets all past audio (filter state, AGC gain, limiter).
    pub fn reset(&mut self) {
        self.resume();
        if let Some(a) = &mut self.agc {
            a.reset();
        }
    }

    /// Audio resumes after a gap the chain did not see (the squelch was closed): the filters
    /// and the limiter forget the audio before the gap, as if it had been silence, so no
    /// stale state clicks into the new message. The AGC keeps its gain: the same station
    /// often talks again.
    pub fn resume(&mut self) {
        if let Some(h) = &mut self.highpass {
            h.reset();
        }
        if let Some(d) = &mut self.deemphasis {
            d.reset();
        }
        if let Some(l) = &mut self.limiter {
            l.reset();
        }
    }

    /// The filter VOX listens through: this chain's high-pass alone (see [`VoxFilter`]).
    pub fn vox_filter(&self) -> VoxFilter {
        VoxFilter {
            highpass: self.highpass.clone().map(|mut h| {
                h.reset();
                h
            }),
        }
    }

    /// The delay the chain adds, in samples (the limiter's look-ahead).
    pub fn latency(&self) -> usize {
        self.limiter.as_ref().map_or(0, Limiter::latency)
    }

    /// The AGC's current gain in dB (`None` when the AGC is off).
    pub fn agc_gain_db(&self) -> Option<f64> {
        self.agc.as_ref().map(Agc::gain_db)
    }

    fn flush_state(&mut self) {
        if let Some(h) = &mut self.highpass {
            h.flush_state();
        }
        if let Some(d) = &mut self.deemphasis {
            d.flush_state();
        }
        if let Some(a) = &mut self.agc {
            a.flush_state();
        }
        if let Some(l) = &mut self.limiter {
            l.flush_state();
        }
    }

    /// Whether every filter's memory is exactly zero (after long enough silence).
    #[cfg(test)]
    fn is_silent(&self) -> bool {
        self.highpass.as_ref().is_none_or(|h| h.is_silent())
            && self.deemphasis.as_ref().is_none_or(|d| d.y1 == 0.0)
            && self.limiter.as_ref().is_none_or(|l| l.is_silent())
    }
}

/// What VOX measures: the received audio through the receive chain's high-pass alone, so a
/// CTCSS tone or mains hum (below the high-pass) cannot hold VOX open, while the voice band
/// is measured at the card's level (before de-emphasis, gain and AGC move it). It runs on a
/// copy of each frame's samples, leaving the frame as captured; it sees every frame, so its
/// state is never stale. With the high-pass off (`highpass_hz = 0`) it measures the audio as
/// captured. Built by [`RxChain::vox_filter`].
#[derive(Debug, Clone)]
pub struct VoxFilter {
    highpass: Option<ButterworthHighpass>,
}

impl VoxFilter {
    /// The peak level of `frame` after the high-pass, in dBFS (see
    /// [`super::level::peak_dbfs`]). Never allocates.
    pub fn peak_dbfs(&mut self, frame: &[i16]) -> f32 {
        let Some(highpass) = &mut self.highpass else {
            return super::level::peak_dbfs(frame);
        };
        let mut peak = 0.0f64;
        for &sample in frame {
            peak = peak.max(highpass.process(f64::from(sample) / SCALE).abs());
        }
        highpass.flush_state();
        super::level::peak_dbfs(&[to_sample(peak)])
    }
}

/// `samples` rising from silence over [`FADE_IN_MS`] (a raised cosine), as a receiver's
/// audio does when its squelch opens: for tests of what is measured after the high-pass, which
/// would otherwise see the click of a tone that starts at full level.
#[cfg(test)]
pub(crate) fn fade_in(mut samples: Vec<i16>, rate: u32) -> Vec<i16> {
    let n = (rate * FADE_IN_MS / 1000) as usize;
    for (i, s) in samples.iter_mut().take(n).enumerate() {
        let g = 0.5 - 0.5 * (PI * i as f64 / n as f64).cos();
        *s = (f64::from(*s) * g).round() as i16;
    }
    samples
}

/// How long [`fade_in`] takes.
#[cfg(test)]
pub(crate) const FADE_IN_MS: u32 = 50;

/// The transmit chain: gain and limiter. Built once per radio; [`process`](Self::process)
/// per frame.
#[derive(Debug, Clone)]
pub struct TxChain {
    gain: f64,
    limiter: Option<Limiter>,
}

impl TxChain {
    /// A chain for audio at `sample_rate` (8000 to 192000 Hz). Fails with a message naming
    /// the bad setting.
    pub fn new(settings: &TxSettings, sample_rate: u32) -> Result<TxChain, DspError> {
        settings.validate()?;
        let rate = check_chain_rate(sample_rate)?;
        Ok(TxChain {
            gain: db_to_gain(f64::from(settings.gain_db)),
            limiter: chain_limiter(settings.limiter, rate)?,
        })
    }

    /// Processes one frame in place (any length). Never allocates.
    pub fn process(&mut self, frame: &mut [i16]) {
        for sample in frame.iter_mut() {
            let x = f64::from(*sample) / SCALE * self.gain;
            *sample = limit(&mut self.limiter, x);
        }
        if let Some(limiter) = &mut self.limiter {
            limiter.flush_state();
        }
    }

    /// Forgets all past audio.
    pub fn reset(&mut self) {
        if let Some(l) = &mut self.limiter {
            l.reset();
        }
    }

    /// The delay the chain adds, in samples (the limiter's look-ahead).
    pub fn latency(&self) -> usize {
        self.limiter.as_ref().map_or(0, Limiter::latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::level::{SILENCE_DBFS, peak_dbfs, rms_dbfs};
    use crate::audio::speech::{speech_like, tone};
    use crate::audio::test_signal::goertzel;

    /// Samples of a 60 ms frame at `rate`.
    fn frame_len(rate: u32) -> usize {
        rate as usize * 60 / 1000
    }

    /// Runs `input` through `process` in 60 ms frames.
    fn run(mut process: impl FnMut(&mut [i16]), rate: u32, input: &[i16]) -> Vec<i16> {
        let mut out = input.to_vec();
        for frame in out.chunks_mut(frame_len(rate)) {
            process(frame);
        }
        out
    }

    fn run_rx(settings: &RxSettings, rate: u32, input: &[i16]) -> Vec<i16> {
        let mut chain = RxChain::new(settings, rate).unwrap();
        run(|f| chain.process(f), rate, input)
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    /// One second of `signal` from 0.5 s on (after the filters have settled).
    fn settled(signal: &[i16], rate: u32) -> &[i16] {
        let start = rate as usize / 2;
        &signal[start..start + rate as usize]
    }

    /// Gain in dB at `hz` of `process`, measured with a -12 dBFS tone.
    fn measured_gain(process: impl FnMut(&mut [i16]), rate: u32, hz: f32) -> f64 {
        let input = tone(rate, hz, 1.6, -12.0);
        let output = run(process, rate, &input);
        let hz = f64::from(hz);
        db(goertzel(settled(&output, rate), rate, hz) / goertzel(settled(&input, rate), rate, hz))
    }

    fn mix(a: &[i16], b: &[i16]) -> Vec<i16> {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (i32::from(x) + i32::from(y)).clamp(-32768, 32767) as i16)
            .collect()
    }

    fn plain() -> RxSettings {
        RxSettings {
            highpass_hz: 0.0,
            deemphasis: false,
            gain_db: 0.0,
            limiter: false,
            agc: false,
        }
    }

    // ---- Biquad ----

    #[test]
    fn biquad_designs_match_their_measured_response() {
        for rate in [8000u32, 16000, 48000] {
            let r = f64::from(rate);
            let hp = Biquad::highpass(r, 300.0, std::f64::consts::FRAC_1_SQRT_2).unwrap();
            let lp = Biquad::lowpass(r, 1000.0, std::f64::consts::FRAC_1_SQRT_2).unwrap();
            // Butterworth second order: -3 dB at the cutoff.
            assert!((db(hp.magnitude_at(300.0, r)) + 3.01).abs() < 0.02);
            assert!((db(lp.magnitude_at(1000.0, r)) + 3.01).abs() < 0.02);
            for hz in [100.0f32, 300.0, 1000.0, 2500.0] {
                for (name, filter) in [("hp", hp), ("lp", lp)] {
                    let mut f = filter;
                    let gain = measured_gain(
                        |frame| {
                            frame
                                .iter_mut()
                                .for_each(|s| *s = to_sample(f.process(f64::from(*s) / SCALE)))
                        },
                        rate,
                        hz,
                    );
                    let expected = db(filter.magnitude_at(f64::from(hz), r));
                    assert!(
                        (gain - expected).abs() < 0.1,
                        "{name} {rate} {hz}: {gain} vs {expected}"
                    );
                }
            }
            // A low-pass passes DC, a high-pass blocks it.
            assert!((lp.magnitude_at(0.0, r) - 1.0).abs() < 1e-9);
            assert!(hp.magnitude_at(0.0, r) < 1e-9);
        }
    }

    #[test]
    fn biquad_rejects_impossible_designs() {
        let q = 0.7;
        for (rate, hz, q) in [
            (16000.0, 0.0, q),
            (16000.0, -5.0, q),
            (16000.0, 8000.0, q),
            (16000.0, 9000.0, q),
            (16000.0, f64::NAN, q),
            (16000.0, 300.0, 0.0),
            (16000.0, 300.0, f64::INFINITY),
            (0.0, 300.0, q),
            (f64::NAN, 300.0, q),
            (1e9, 300.0, q),
        ] {
            assert!(Biquad::highpass(rate, hz, q).is_err(), "{rate} {hz} {q}");
            assert!(Biquad::lowpass(rate, hz, q).is_err(), "{rate} {hz} {q}");
        }
        for order in [0, 1, 3, 10] {
            let err = ButterworthHighpass::new(16000.0, 300.0, order)
                .unwrap_err()
                .to_string();
            assert!(err.contains("order"), "{err}");
        }
    }

    // ---- High-pass ----

    #[test]
    fn butterworth_qs_give_a_flat_passband_and_the_right_slope() {
        for order in [2, 4, 6, 8] {
            let hp = ButterworthHighpass::new(16000.0, 300.0, order).unwrap();
            assert_eq!(hp.order(), order);
            // -3 dB at the cutoff, the analog Butterworth curve an octave or more away.
            assert!((db(hp.magnitude_at(300.0, 16000.0)) + 3.01).abs() < 0.02);
            for hz in [75.0, 150.0, 600.0, 1200.0] {
                let analog = -10.0 * (1.0 + (300.0f64 / hz).powi(2 * order as i32)).log10();
                let digital = db(hp.magnitude_at(hz, 16000.0));
                assert!(
                    (digital - analog).abs() < 0.5,
                    "{order} {hz}: {digital} vs {analog}"
                );
            }
            // No peak anywhere in the passband.
            let peak = (300..4000)
                .map(|hz| hp.magnitude_at(f64::from(hz), 16000.0))
                .fold(0.0, f64::max);
            assert!(peak <= 1.0 + 1e-9, "{order}: {peak}");
        }
    }

    #[test]
    fn highpass_takes_100_hz_down_30_db_and_keeps_1_khz() {
        for rate in [8000u32, 16000, 48000] {
            let mut chain = RxChain::new(
                &RxSettings {
                    limiter: false,
                    ..RxSettings::default()
                },
                rate,
            )
            .unwrap();
            let low = measured_gain(|f| chain.process(f), rate, 100.0);
            chain.reset();
            let mid = measured_gain(|f| chain.process(f), rate, 1000.0);
            chain.reset();
            let edge = measured_gain(|f| chain.process(f), rate, 300.0);
            // 4th-order Butterworth at 300 Hz: 100 Hz is 38.2 dB down.
            assert!(low < -30.0, "{rate} Hz: 100 Hz at {low:.1} dB");
            assert!((low + 38.2).abs() < 1.0, "{rate} Hz: 100 Hz at {low:.1} dB");
            assert!(mid.abs() < 1.0, "{rate} Hz: 1 kHz at {mid:.2} dB");
            assert!(mid.abs() < 0.05, "{rate} Hz: 1 kHz at {mid:.2} dB");
            assert!(
                (edge + 3.0).abs() < 0.2,
                "{rate} Hz: 300 Hz at {edge:.2} dB"
            );
            println!("{rate} Hz: 100 Hz {low:.1} dB, 300 Hz {edge:.2} dB, 1 kHz {mid:+.3} dB");
        }
    }

    #[test]
    fn every_ctcss_tone_is_taken_down() {
        // The CTCSS tones run from 67.0 to 254.1 Hz; the ones up to 203.5 Hz (most in use)
        // lose at least 13 dB, those to 150 Hz at least 28 dB.
        let mut chain = RxChain::new(
            &RxSettings {
                limiter: false,
                ..RxSettings::default()
            },
            16000,
        )
        .unwrap();
        for (hz, at_least) in [(67.0, 50.0), (100.0, 35.0), (150.0, 23.0), (203.5, 13.0)] {
            chain.reset();
            let gain = measured_gain(|f| chain.process(f), 16000, hz);
            assert!(gain < -at_least, "{hz} Hz: {gain:.1} dB");
        }
    }

    #[test]
    fn a_100_hz_tone_under_speech_is_removed() {
        let rate = 16000;
        let speech = speech_like(rate, 3.0, 4);
        let hum = tone(rate, 100.0, 3.0, -10.0);
        let input = mix(&speech, &hum);
        let output = run_rx(
            &RxSettings {
                limiter: false,
                ..RxSettings::default()
            },
            rate,
            &input,
        );
        let window = 1.0f64;
        let (a, b) = (rate as usize, rate as usize * 2);
        let before = goertzel(&input[a..b], rate, 100.0);
        let after = goertzel(&output[a..b], rate, 100.0);
        let attenuation = db(before / after);
        assert!(attenuation >= 30.0, "{attenuation:.1} dB over {window} s");
        // The speech itself (above 300 Hz) keeps its level.
        let speech_level = rms_dbfs(&speech[a..b]);
        let out_level = rms_dbfs(&output[a..b]);
        assert!(
            (speech_level - out_level).abs() < 1.5,
            "{speech_level} vs {out_level}"
        );
    }

    #[test]
    fn highpass_step_response_settles_to_zero() {
        for rate in [8000u32, 16000, 48000] {
            let mut input = vec![0i16; rate as usize / 10];
            input.extend(vec![20000i16; rate as usize]);
            let output = run_rx(
                &RxSettings {
                    limiter: false,
                    ..RxSettings::default()
                },
                rate,
                &input,
            );
            // The step comes through, then decays: the last 100 ms are exactly zero.
            assert!(output.iter().map(|s| s.unsigned_abs()).max().unwrap() > 10000);
            let tail = &output[output.len() - rate as usize / 10..];
            assert!(tail.iter().all(|&s| s == 0), "{rate}: {:?}", &tail[..10]);
            // A negative step too.
            let negative: Vec<i16> = input.iter().map(|&s| -s).collect();
            let output = run_rx(&RxSettings::default(), rate, &negative);
            assert!(output[output.len() - 100..].iter().all(|&s| s == 0));
        }
    }

    #[test]
    fn highpass_off_passes_low_tones() {
        let settings = RxSettings {
            highpass_hz: 0.0,
            limiter: false,
            ..RxSettings::default()
        };
        let mut chain = RxChain::new(&settings, 16000).unwrap();
        let gain = measured_gain(|f| chain.process(f), 16000, 100.0);
        assert!(gain.abs() < 0.01, "{gain}");
    }

    // ---- De-emphasis ----

    #[test]
    fn deemphasis_falls_6_db_per_octave_and_keeps_1_khz() {
        // Relative to 1 kHz, the analog 750 us curve.
        let analog = |hz: f64| {
            let corner = 1.0 / (2.0 * PI * DEEMPHASIS_TIME_CONSTANT_S);
            10.0 * ((1.0 + (1000.0 / corner).powi(2)) / (1.0 + (hz / corner).powi(2))).log10()
        };
        for (rate, tolerance) in [(16000u32, 0.6), (48000, 0.15), (8000, 2.0)] {
            let mut d = Deemphasis::new(f64::from(rate)).unwrap();
            let mut results = Vec::new();
            for hz in [300.0f32, 500.0, 1000.0, 2000.0, 3000.0] {
                d.reset();
                let gain = measured_gain(
                    |frame| {
                        frame
                            .iter_mut()
                            .for_each(|s| *s = to_sample(d.process(f64::from(*s) / SCALE)))
                    },
                    rate,
                    hz,
                );
                let expected = analog(f64::from(hz));
                assert!(
                    (gain - expected).abs() < tolerance,
                    "{rate}: {hz} Hz {gain:.2} dB, analog {expected:.2} dB"
                );
                results.push((hz, gain));
            }
            // 1 kHz keeps its level.
            assert!(results[2].1.abs() < 0.05, "{rate}: {results:?}");
            // One octave, 1 to 2 kHz: -6 dB give or take.
            let octave = results[3].1 - results[2].1;
            assert!((-6.5..=-5.0).contains(&octave), "{rate}: {octave}");
            println!("{rate} Hz: {results:?}");
        }
    }

    #[test]
    fn deemphasis_in_the_chain_still_removes_ctcss() {
        // De-emphasis lifts 100 Hz by about 13 dB against 1 kHz; the 6th-order high-pass
        // that comes with it more than makes up for that.
        for rate in [8000u32, 16000, 48000] {
            let settings = RxSettings {
                deemphasis: true,
                limiter: false,
                ..RxSettings::default()
            };
            let mut chain = RxChain::new(&settings, rate).unwrap();
            let low = measured_gain(|f| chain.process(f), rate, 100.0);
            chain.reset();
            let mid = measured_gain(|f| chain.process(f), rate, 1000.0);
            assert!(low < -30.0, "{rate}: 100 Hz {low:.1} dB");
            assert!(mid.abs() < 1.0, "{rate}: 1 kHz {mid:.2} dB");
            println!("{rate} Hz with de-emphasis: 100 Hz {low:.1} dB, 1 kHz {mid:+.2} dB");
        }
    }

    // ---- Gain ----

    #[test]
    fn gain_scales_the_level() {
        let input = tone(16000, 1000.0, 1.0, -20.0);
        for gain_db in [-20.0f32, -6.0, 0.0, 6.0, 12.0] {
            let settings = RxSettings { gain_db, ..plain() };
            let output = run_rx(&settings, 16000, &input);
            let change = rms_dbfs(&output) - rms_dbfs(&input);
            assert!((change - gain_db).abs() < 0.05, "{gain_db}: {change}");
            let mut tx = TxChain::new(
                &TxSettings {
                    gain_db,
                    limiter: false,
                },
                16000,
            )
            .unwrap();
            let output = run(|f| tx.process(f), 16000, &input);
            let change = rms_dbfs(&output) - rms_dbfs(&input);
            assert!((change - gain_db).abs() < 0.05, "tx {gain_db}: {change}");
        }
    }

    #[test]
    fn everything_off_is_bit_exact() {
        let input = speech_like(16000, 1.0, 2);
        assert_eq!(run_rx(&plain(), 16000, &input), input);
        let mut tx = TxChain::new(
            &TxSettings {
                gain_db: 0.0,
                limiter: false,
            },
            16000,
        )
        .unwrap();
        assert_eq!(run(|f| tx.process(f), 16000, &input), input);
        let extremes = [i16::MIN, i16::MAX, -1, 0, 1];
        let mut frame = extremes;
        RxChain::new(&plain(), 16000).unwrap().process(&mut frame);
        assert_eq!(frame, extremes);
    }

    #[test]
    fn without_the_limiter_gain_saturates_rather_than_wrapping() {
        let input = tone(16000, 1000.0, 0.5, -3.0);
        let settings = RxSettings {
            gain_db: 20.0,
            ..plain()
        };
        let output = run_rx(&settings, 16000, &input);
        for (&i, &o) in input.iter().zip(&output) {
            // Same sign, never wrapped around.
            assert!(i == 0 || (i > 0) == (o > 0), "{i} -> {o}");
        }
        assert!(output.contains(&i16::MAX) && output.contains(&i16::MIN));
    }

    // ---- Silence ----

    fn all_settings() -> Vec<RxSettings> {
        let mut all = Vec::new();
        for highpass_hz in [0.0, 300.0] {
            for deemphasis in [false, true] {
                for limiter in [false, true] {
                    for agc in [false, true] {
                        all.push(RxSettings {
                            highpass_hz,
                            deemphasis,
                            gain_db: 12.0,
                            limiter,
                            agc,
                        });
                    }
                }
            }
        }
        all
    }

    #[test]
    fn silence_stays_exact_silence() {
        for settings in all_settings() {
            for rate in [8000u32, 48000] {
                let output = run_rx(&settings, rate, &vec![0; rate as usize * 2]);
                assert!(output.iter().all(|&s| s == 0), "{settings:?} {rate}");
            }
        }
    }

    #[test]
    fn silence_after_sound_decays_to_exact_zero_state() {
        for settings in all_settings() {
            let rate = 16000;
            let mut chain = RxChain::new(&settings, rate).unwrap();
            let mut input = speech_like(rate, 1.0, 6);
            input.extend(tone(rate, 100.0, 0.5, -3.0));
            run(|f| chain.process(f), rate, &input);
            if settings.highpass_hz > 0.0 || settings.deemphasis || settings.limiter {
                assert!(!chain.is_silent());
            }
            let output = run(|f| chain.process(f), rate, &vec![0; rate as usize * 5]);
            // The output goes to exact zero within a second and the filters' memory follows:
            // no denormals, no residue.
            assert!(
                output[rate as usize..].iter().all(|&s| s == 0),
                "{settings:?}"
            );
            assert!(chain.is_silent(), "{settings:?}: {chain:?}");
        }
    }

    // ---- Limiter ----

    fn ceiling_sample() -> i16 {
        (10f64.powf(LIMITER_CEILING_DBFS / 20.0) * f64::from(i16::MAX)).floor() as i16
    }

    #[test]
    fn limiter_keeps_every_sample_under_the_ceiling() {
        let rate = 16000;
        let ceiling = ceiling_sample();
        let mut rng = fastrand::Rng::with_seed(5);
        let square: Vec<i16> = (0..rate)
            .map(|i| {
                if (i / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let noise: Vec<i16> = (0..rate).map(|_| rng.i16(..)).collect();
        let clicks: Vec<i16> = (0..rate)
            .map(|i| match i % 997 {
                0 => i16::MIN,
                1 => i16::MAX,
                _ => 0,
            })
            .collect();
        let signals = [
            tone(rate, 1000.0, 1.0, 0.0),
            tone(rate, 3000.0, 1.0, 0.0),
            tone(rate, 100.0, 1.0, 0.0),
            square,
            noise,
            clicks,
            speech_like(rate, 1.0, 3),
        ];
        for signal in &signals {
            for gain_db in [0.0f32, 20.0, 40.0] {
                let settings = RxSettings {
                    highpass_hz: 0.0,
                    gain_db,
                    ..RxSettings::default()
                };
                let output = run_rx(&settings, rate, signal);
                let peak = output.iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!(peak <= ceiling.unsigned_abs(), "{gain_db} dB: peak {peak}");
                assert!(peak_dbfs(&output) <= LIMITER_CEILING_DBFS as f32);
                let mut tx = TxChain::new(
                    &TxSettings {
                        gain_db,
                        limiter: true,
                    },
                    rate,
                )
                .unwrap();
                let output = run(|f| tx.process(f), rate, signal);
                let peak = output.iter().map(|s| s.unsigned_abs()).max().unwrap();
                assert!(
                    peak <= ceiling.unsigned_abs(),
                    "tx {gain_db} dB: peak {peak}"
                );
            }
        }
        println!(
            "limiter ceiling: {ceiling} = {:.3} dBFS",
            peak_dbfs(&[ceiling])
        );
    }

    #[test]
    fn after_a_peak_the_limiter_releases_fully_and_is_a_plain_delay_again() {
        let rate = 16000.0;
        let mut limiter = Limiter::new(rate, LIMITER_CEILING_DBFS).unwrap();
        // 100 ms far over the ceiling.
        for i in 0..1600 {
            limiter.process(if i % 2 == 0 { 1.5 } else { -1.5 });
        }
        assert!(limiter.gain_db() < -3.0, "{}", limiter.gain_db());
        // 4 s of a quiet tone: the 100 ms release reaches 1 (within 10^-9) in about 2 s.
        let quiet: Vec<f64> = (0..64_000)
            .map(|i| 0.3 * (f64::from(i) * 0.2).sin())
            .collect();
        let output: Vec<f64> = quiet.iter().map(|&x| limiter.process(x)).collect();
        assert_eq!(limiter.gain_db(), 0.0);
        assert!(limiter.settled >= limiter.len);
        // The last second is the input, delayed, bit for bit.
        let delay = limiter.latency();
        assert_eq!(&output[48_000..], &quiet[48_000 - delay..64_000 - delay]);
        // And the next peak is limited as before.
        let peak: f64 = (0..400)
            .map(|i| limiter.process(if i == 200 { 2.0 } else { 0.0 }).abs())
            .fold(0.0, f64::max);
        assert!(peak <= limiter.ceiling() && peak > 0.8, "{peak}");
    }

    #[test]
    fn limiter_leaves_quiet_audio_alone_apart_from_its_delay() {
        let rate = 16000;
        let input = speech_like(rate, 2.0, 8);
        let settings = RxSettings {
            highpass_hz: 0.0,
            ..RxSettings::default()
        };
        let mut chain = RxChain::new(&settings, rate).unwrap();
        let delay = chain.latency();
        assert_eq!(delay, 23, "1.5 ms look-ahead at 16 kHz");
        let output = run(|f| chain.process(f), rate, &input);
        assert_eq!(&output[delay..], &input[..input.len() - delay]);
        assert!(output[..delay].iter().all(|&s| s == 0));
    }

    #[test]
    fn limiter_attack_is_smooth_and_releases_in_about_100_ms() {
        let rate = 48000;
        let mut limiter = Limiter::new(f64::from(rate), LIMITER_CEILING_DBFS).unwrap();
        let lookahead = limiter.latency() + 1;
        // Quiet, a loud burst, quiet again.
        let quiet = 0.1;
        let mut gains = Vec::new();
        let mut outputs = Vec::new();
        for i in 0..rate {
            let loud = (rate / 4..rate / 4 + rate / 10).contains(&i);
            let x = if loud { 1.0 } else { quiet } * if i % 2 == 0 { 1.0 } else { -1.0 };
            outputs.push(limiter.process(x));
            gains.push(limiter.gain_db());
        }
        let ceiling = limiter.ceiling();
        assert!(outputs.iter().all(|y| y.abs() <= ceiling));
        // The attack is a ramp over the look-ahead: no gain step bigger than a fraction of
        // the reduction needed.
        let reduction = -20.0 * ceiling.log10();
        let steepest = gains
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f64::max);
        assert!(
            steepest < 2.0 * reduction / lookahead as f64 + 1e-9,
            "{steepest}"
        );
        // While loud, the gain holds at what the ceiling needs.
        let during = gains[rate as usize / 4 + rate as usize / 20];
        assert!((during + reduction).abs() < 0.01, "{during}");
        // Release: after the burst, back to within 1 dB of unity in a few time constants.
        let end = (rate / 4 + rate / 10) as usize + lookahead;
        let after = |ms: usize| gains[end + ms * rate as usize / 1000];
        assert!(after(100) > -reduction * 0.5, "{}", after(100));
        assert!(after(400) > -0.1, "{}", after(400));
        assert!(
            after(10) < -reduction * 0.8,
            "released too fast: {}",
            after(10)
        );
    }

    // ---- AGC ----

    fn agc_settings() -> RxSettings {
        RxSettings {
            agc: true,
            ..RxSettings::default()
        }
    }

    #[test]
    fn agc_brings_quiet_and_loud_tones_to_the_target() {
        let rate = 16000;
        for level in [-36.0f32, -30.0, -24.0, -12.0, -6.0] {
            // RMS of a sine is 3 dB below its peak.
            let input = tone(rate, 1000.0, 15.0, level + 3.01);
            let output = run_rx(&agc_settings(), rate, &input);
            let last = &output[output.len() - rate as usize..];
            let out = rms_dbfs(last);
            assert!(
                (f64::from(out) - AGC_TARGET_DBFS).abs() < 1.0,
                "input {level} dBFS RMS: output {out:.2}"
            );
            println!("AGC: {level} dBFS RMS in, {out:.2} dBFS RMS out after 14 s");
        }
    }

    #[test]
    fn agc_is_slow() {
        // After a second, a quiet talker has come up only part of the way.
        let rate = 16000;
        let input = tone(rate, 1000.0, 1.0, -30.0 + 3.01);
        let output = run_rx(&agc_settings(), rate, &input);
        let out = rms_dbfs(&output[output.len() - 1600..]);
        assert!(out > -30.0 + 1.0 && out < -18.0 - 3.0, "{out}");
    }

    #[test]
    fn agc_gain_is_capped_at_20_db() {
        let rate = 16000;
        let input = tone(rate, 1000.0, 20.0, -45.0 + 3.01);
        let mut chain = RxChain::new(&agc_settings(), rate).unwrap();
        let output = run(|f| chain.process(f), rate, &input);
        let out = rms_dbfs(&output[output.len() - rate as usize..]);
        assert!((out - (-25.0)).abs() < 0.5, "{out}");
        assert!((chain.agc_gain_db().unwrap() - AGC_MAX_GAIN_DB).abs() < 0.1);
    }

    #[test]
    fn agc_does_not_raise_a_noise_floor() {
        let rate = 16000;
        // White noise at about -70 dBFS RMS.
        let mut rng = fastrand::Rng::with_seed(9);
        let noise: Vec<i16> = (0..rate * 10).map(|_| rng.i16(-18..=18)).collect();
        let level_in = rms_dbfs(&noise);
        assert!((-72.0..-68.0).contains(&level_in), "{level_in}");
        let settings = RxSettings {
            highpass_hz: 0.0,
            ..agc_settings()
        };
        let mut chain = RxChain::new(&settings, rate).unwrap();
        let output = run(|f| chain.process(f), rate, &noise);
        let level_out = rms_dbfs(&output[output.len() - rate as usize..]);
        assert!(
            (level_out - level_in).abs() < 0.5,
            "{level_in} -> {level_out}"
        );
        assert_eq!(chain.agc_gain_db(), Some(0.0));

        // After a talker, the pause holds the talker's gain: noise is not raised further.
        chain.reset();
        let talker = tone(rate, 1000.0, 10.0, -30.0 + 3.01);
        run(|f| chain.process(f), rate, &talker);
        let learnt = chain.agc_gain_db().unwrap();
        assert!(learnt > 10.0, "{learnt}");
        let output = run(|f| chain.process(f), rate, &noise);
        let gain_after = chain.agc_gain_db().unwrap();
        assert!(
            (gain_after - learnt).abs() < 0.5,
            "{learnt} -> {gain_after}"
        );
        let level_out = rms_dbfs(&output[output.len() - rate as usize..]);
        assert!(level_out < level_in + learnt as f32 + 0.5, "{level_out}");
    }

    #[test]
    fn agc_on_speech_reaches_about_the_target() {
        let rate = 16000;
        let speech = speech_like(rate, 20.0, 12);
        let quiet: Vec<i16> = speech.iter().map(|&s| s / 4).collect(); // -12 dB
        for input in [&speech, &quiet] {
            let output = run_rx(&agc_settings(), rate, input);
            let level_in = rms_dbfs(input);
            let out = rms_dbfs(&output[output.len() - 5 * rate as usize..]);
            assert!(
                (f64::from(out) - AGC_TARGET_DBFS).abs() < 3.0,
                "{level_in} -> {out}"
            );
            println!("AGC on speech: {level_in:.1} dBFS RMS in, {out:.1} dBFS RMS out");
            // Speech peaks are limited.
            assert!(peak_dbfs(&output) <= LIMITER_CEILING_DBFS as f32);
        }
    }

    // ---- The whole chain ----

    #[test]
    fn rx_chain_removes_a_ctcss_tone_from_speech() {
        let rate = 16000;
        let speech = speech_like(rate, 4.0, 21);
        let ctcss = tone(rate, 100.0, 4.0, -10.0);
        let input = mix(&speech, &ctcss);
        for settings in [
            RxSettings::default(),
            RxSettings {
                agc: true,
                ..RxSettings::default()
            },
            RxSettings {
                deemphasis: true,
                ..RxSettings::default()
            },
        ] {
            let output = run_rx(&settings, rate, &input);
            // Two whole seconds after the first (200 periods of 100 Hz).
            let window = |s: &[i16]| s[rate as usize..3 * rate as usize].to_vec();
            let before = goertzel(&window(&input), rate, 100.0);
            let after = goertzel(&window(&output), rate, 100.0);
            let attenuation = db(before / after);
            assert!(attenuation >= 30.0, "{settings:?}: {attenuation:.1} dB");
            assert!(peak_dbfs(&output) <= LIMITER_CEILING_DBFS as f32);
            assert!(rms_dbfs(&output) > SILENCE_DBFS + 40.0);
            println!("{settings:?}: 100 Hz down {attenuation:.1} dB");
        }
    }

    #[test]
    fn frame_size_does_not_matter() {
        let rate = 16000;
        let input = mix(&speech_like(rate, 2.0, 30), &tone(rate, 100.0, 2.0, -10.0));
        let settings = RxSettings {
            deemphasis: true,
            gain_db: 10.0,
            agc: true,
            ..RxSettings::default()
        };
        let whole = run_rx(&settings, rate, &input);
        let mut chain = RxChain::new(&settings, rate).unwrap();
        let mut pieces = input.clone();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut rest: &mut [i16] = &mut pieces;
        while !rest.is_empty() {
            let n = rng.usize(0..=rest.len().min(500));
            let (head, tail) = rest.split_at_mut(n);
            chain.process(head);
            rest = tail;
        }
        assert_eq!(pieces, whole);
        chain.process(&mut []);
    }

    #[test]
    fn reset_starts_over() {
        let rate = 16000;
        let input = speech_like(rate, 1.0, 40);
        let settings = RxSettings {
            agc: true,
            deemphasis: true,
            ..RxSettings::default()
        };
        let mut chain = RxChain::new(&settings, rate).unwrap();
        let first = run(|f| chain.process(f), rate, &input);
        chain.reset();
        let again = run(|f| chain.process(f), rate, &input);
        assert_eq!(first, again);
        let mut tx = TxChain::new(
            &TxSettings {
                gain_db: 20.0,
                limiter: true,
            },
            rate,
        )
        .unwrap();
        let first = run(|f| tx.process(f), rate, &input);
        tx.reset();
        assert_eq!(run(|f| tx.process(f), rate, &input), first);
        assert_eq!(tx.latency(), 23);
    }

    #[test]
    fn resume_forgets_the_filters_but_keeps_the_agc_gain() {
        let rate = 16000;
        let before = speech_like(rate, 1.0, 41);
        let after = speech_like(rate, 0.5, 42);
        // Without the AGC, a resumed chain is a fresh one.
        let settings = RxSettings {
            deemphasis: true,
            gain_db: 12.0,
            ..RxSettings::default()
        };
        let mut chain = RxChain::new(&settings, rate).unwrap();
        run(|f| chain.process(f), rate, &before);
        chain.resume();
        let resumed = run(|f| chain.process(f), rate, &after);
        let mut fresh = RxChain::new(&settings, rate).unwrap();
        assert_eq!(resumed, run(|f| fresh.process(f), rate, &after));
        // Without resume the filters' memory of `before` shows in the first samples.
        let mut stale = RxChain::new(&settings, rate).unwrap();
        run(|f| stale.process(f), rate, &before);
        assert_ne!(run(|f| stale.process(f), rate, &after), resumed);
        // With it, the gain it had learnt stays.
        let settings = RxSettings {
            agc: true,
            ..RxSettings::default()
        };
        let mut chain = RxChain::new(&settings, rate).unwrap();
        let quiet: Vec<i16> = before.iter().map(|&s| s / 16).collect();
        run(|f| chain.process(f), rate, &quiet);
        let gain = chain.agc_gain_db().unwrap();
        assert!(gain > 0.5, "the AGC raised quiet audio: {gain} dB");
        chain.resume();
        assert_eq!(chain.agc_gain_db(), Some(gain));
    }

    // ---- Settings ----

    #[test]
    fn settings_defaults() {
        let rx = RxSettings::default();
        assert_eq!(rx.highpass_hz, 300.0);
        assert!(!rx.deemphasis && rx.limiter && !rx.agc);
        assert_eq!(rx.gain_db, 0.0);
        let tx = TxSettings::default();
        assert_eq!(tx.gain_db, 0.0);
        assert!(tx.limiter);
        assert!(rx.validate().is_ok() && tx.validate().is_ok());
    }

    #[test]
    fn settings_parse_from_toml() {
        let rx: RxSettings = toml::from_str("").unwrap();
        assert_eq!(rx, RxSettings::default());
        let rx: RxSettings =
            toml::from_str("highpass_hz = 250\ndeemphasis = true\ngain_db = -3.5\nagc = true")
                .unwrap();
        assert_eq!(
            rx,
            RxSettings {
                highpass_hz: 250.0,
                deemphasis: true,
                gain_db: -3.5,
                limiter: true,
                agc: true,
            }
        );
        let tx: TxSettings = toml::from_str("limiter = false").unwrap();
        assert_eq!(
            tx,
            TxSettings {
                gain_db: 0.0,
                limiter: false
            }
        );
        // Unknown keys are refused, naming them.
        let err = toml::from_str::<RxSettings>("highpass = 300")
            .unwrap_err()
            .to_string();
        assert!(err.contains("highpass"), "{err}");
        let err = toml::from_str::<TxSettings>("agc = true")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agc"), "{err}");
        // And what serialises parses back.
        let text = toml::to_string(&rx).unwrap();
        assert_eq!(toml::from_str::<RxSettings>(&text).unwrap(), rx);
    }

    #[test]
    fn bad_settings_name_the_field_and_the_range() {
        for hz in [-1.0f32, 10.0, 49.9, 1000.5, 5000.0, f32::NAN, f32::INFINITY] {
            let s = RxSettings {
                highpass_hz: hz,
                ..RxSettings::default()
            };
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains("highpass_hz") && err.contains("50 to 1000"),
                "{err}"
            );
            assert_eq!(RxChain::new(&s, 16000).unwrap_err().to_string(), err);
        }
        for hz in [0.0f32, 50.0, 1000.0] {
            assert!(
                RxSettings {
                    highpass_hz: hz,
                    ..RxSettings::default()
                }
                .validate()
                .is_ok()
            );
        }
        for gain_db in [-40.5f32, 41.0, f32::NAN, f32::NEG_INFINITY] {
            let err = RxSettings {
                gain_db,
                ..RxSettings::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("gain_db") && err.contains("-40 to 40"),
                "{err}"
            );
            let err = TxSettings {
                gain_db,
                limiter: true,
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("gain_db") && err.contains("-40 to 40"),
                "{err}"
            );
            assert!(
                TxChain::new(
                    &TxSettings {
                        gain_db,
                        limiter: true
                    },
                    16000
                )
                .is_err()
            );
        }
        for rate in [0u32, 7999, 192_001, u32::MAX] {
            let err = RxChain::new(&RxSettings::default(), rate)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("sample rate") && err.contains("8000 to 192000"),
                "{err}"
            );
            assert!(TxChain::new(&TxSettings::default(), rate).is_err());
        }
        // The extremes that are accepted work at the extreme rates.
        for rate in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] {
            for highpass_hz in [MIN_HIGHPASS_HZ, MAX_HIGHPASS_HZ] {
                let s = RxSettings {
                    highpass_hz,
                    deemphasis: true,
                    gain_db: MAX_GAIN_DB,
                    limiter: true,
                    agc: true,
                };
                let mut chain = RxChain::new(&s, rate).unwrap();
                let mut frame = tone(rate, 1000.0, 0.06, 0.0);
                chain.process(&mut frame);
                assert!(peak_dbfs(&frame) <= LIMITER_CEILING_DBFS as f32);
            }
        }
    }

    #[test]
    fn other_components_refuse_bad_arguments() {
        assert!(Deemphasis::new(0.0).is_err());
        assert!(Agc::new(f64::INFINITY).is_err());
        assert!(Limiter::new(16000.0, 1.0).is_err());
        assert!(Limiter::new(16000.0, f64::NAN).is_err());
        assert!(Limiter::new(100.0, -1.0).is_err());
        // A zero-delay limiter (at the lowest rate the look-ahead is still 12 samples).
        assert_eq!(Limiter::new(8000.0, -1.0).unwrap().latency(), 11);
    }

    // ---- Cost ----

    /// Run with `cargo test --release --lib audio::dsp::tests::cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run by hand in release mode"]
    fn cost_per_frame() {
        for rate in [16000u32, 48000] {
            let settings = RxSettings {
                deemphasis: true,
                gain_db: 6.0,
                agc: true,
                ..RxSettings::default()
            };
            for (name, settings) in [
                ("default", RxSettings::default()),
                ("everything on", settings),
            ] {
                let mut chain = RxChain::new(&settings, rate).unwrap();
                let input = speech_like(rate, 60.0, 1);
                let mut frame = vec![0i16; frame_len(rate)];
                // Each frame timed alone: the median is what a frame costs when the
                // machine is not busy with something else.
                let mut times = Vec::new();
                for chunk in input.chunks_exact(frame.len()) {
                    frame.copy_from_slice(chunk);
                    let start = std::time::Instant::now();
                    chain.process(&mut frame);
                    times.push(start.elapsed());
                }
                times.sort();
                let median = times[times.len() / 2];
                let per_sample = median.as_nanos() as f64 / frame.len() as f64;
                println!(
                    "RxChain {name} at {rate} Hz: median {median:?} per 60 ms frame \
                     ({per_sample:.1} ns per sample), fastest {:?}",
                    times[0]
                );
            }
        }
    }
}
