//! A streaming polyphase FIR resampler for mono audio, built for low delay.
//!
//! The sound card's rate and the codec's rarely match (USB cards run at 48 or 44.1 kHz, the
//! messages at 16 kHz). [`Resampler`] converts between any two rates whose ratio reduces to
//! at most [`MAX_PHASES`] phases, sample by sample as input comes in: there is no block to
//! fill first, so its only delay is the filter's own, [`Resampler::delay_in`] input samples
//! (1.16 ms from 48 to 16 kHz).
//!
//! # The filter
//! A Kaiser-windowed sinc low-pass, designed at the upsampled rate (`L` × input rate for a
//! ratio `L`/`M` in lowest terms) and split into `L` phases. It is scaled to the lower of
//! the two Nyquist frequencies `fn`:
//! - flat (within 0.01 dB) up to 0.75 `fn` (6 kHz at 16 kHz),
//! - half amplitude at 0.875 `fn` (7 kHz),
//! - at least [`STOPBAND_DB`] down from `fn` on (8 kHz at 16 kHz), so nothing the lower rate
//!   cannot carry folds back into the band.
//!
//! Radio audio ends near 3 kHz, and Opus at 16 kHz codes up to 8 kHz: the band lost between
//! 6 and 8 kHz holds nothing of a radio's voice. 70 dB is more than the signal-to-noise
//! ratio of any radio's receiver audio.
//!
//! # Cost
//! One dot product of [`Resampler::taps_per_phase`] (112 from 48 to 16 kHz) per output
//! sample, in `f32` with sixteen accumulators so the compiler vectorises it. Every buffer is
//! allocated by [`Resampler::new`]; [`Resampler::process`] never allocates.

#![warn(missing_docs)]

use std::f64::consts::PI;

/// Stopband attenuation of the filter, in dB.
pub const STOPBAND_DB: f64 = 70.0;

/// Most phases (`L` of the reduced ratio `L`/`M`): rates whose ratio needs more are refused.
pub const MAX_PHASES: usize = 4096;

/// Largest coefficient table, in taps (4 MiB of `f32`).
const MAX_TABLE: usize = 1 << 20;

/// Where the passband ends, as a fraction of the lower Nyquist frequency.
const PASSBAND: f64 = 0.75;
/// Where the stopband starts, as a fraction of the lower Nyquist frequency.
const STOPBAND: f64 = 1.0;

/// Taps are handled in groups of this many (the width of the dot product's accumulators):
/// four 128-bit vectors, enough independent additions to hide their latency.
const LANES: usize = 16;

/// Input samples taken per inner round: bounds the history buffer.
const CHUNK: usize = 1024;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The zeroth-order modified Bessel function of the first kind (for the Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..200 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Kaiser's β for a stopband attenuation of `db` dB.
fn kaiser_beta(db: f64) -> f64 {
    if db > 50.0 {
        0.1102 * (db - 8.7)
    } else if db >= 21.0 {
        0.5842 * (db - 21.0).powf(0.4) + 0.07886 * (db - 21.0)
    } else {
        0.0
    }
}

/// Dot product of two slices of the same length, a multiple of [`LANES`].
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    let mut half = [0.0f32; LANES / 2];
    for j in 0..LANES / 2 {
        half[j] = acc[j] + acc[j + LANES / 2];
    }
    ((half[0] + half[4]) + (half[1] + half[5])) + ((half[2] + half[6]) + (half[3] + half[7]))
}

/// A fixed-ratio resampler for one channel (see the module documentation).
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    /// The ratio `up`/`down` in lowest terms: `up` phases, `down` steps between outputs.
    up: usize,
    down: usize,
    /// Taps per phase, a multiple of [`LANES`].
    taps: usize,
    /// `up` phases of `taps` coefficients each, every phase reversed so that it lines up
    /// with the input in time order.
    table: Box<[f32]>,
    /// `taps - 1` samples of history, then input not used up yet.
    buf: Vec<f32>,
    /// Index in `buf` of the newest input sample the next output needs.
    next: usize,
    /// The next output's phase, `0..up`.
    phase: usize,
}

/// A conversion the resampler cannot do, saying which rates would work (fix the
/// configured rate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// One of the rates is 0 Hz.
    #[error("cannot resample {from} Hz to {to} Hz: a rate of 0 Hz")]
    ZeroRate {
        /// The input rate.
        from: u32,
        /// The output rate.
        to: u32,
    },
    /// The rates' ratio does not reduce enough.
    #[error(
        "cannot resample {from} Hz to {to} Hz: the ratio {up}/{down} needs more than {max} \
         filter phases (use a common rate such as 48000 or 44100 Hz)",
        max = MAX_PHASES
    )]
    TooManyPhases {
        /// The input rate.
        from: u32,
        /// The output rate.
        to: u32,
        /// Output samples per `down` input samples.
        up: usize,
        /// Input samples per `up` output samples.
        down: usize,
    },
    /// The filter for these rates would be too long.
    #[error(
        "cannot resample {from} Hz to {to} Hz: the filter would need {taps} taps (use a common \
         rate such as 48000 or 44100 Hz)"
    )]
    TooManyTaps {
        /// The input rate.
        from: u32,
        /// The output rate.
        to: u32,
        /// Taps the filter would need.
        taps: usize,
    },
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz. Fails, saying why, for a rate of 0 or a ratio
    /// that needs more than [`MAX_PHASES`] phases.
    pub fn new(from: u32, to: u32) -> Result<Resampler, ResampleError> {
        if from == 0 || to == 0 {
            return Err(ResampleError::ZeroRate { from, to });
        }
        let g = gcd(u64::from(from), u64::from(to));
        let up = (u64::from(to) / g) as usize;
        let down = (u64::from(from) / g) as usize;
        if up > MAX_PHASES {
            return Err(ResampleError::TooManyPhases { from, to, up, down });
        }
        // The lower Nyquist frequency, as a fraction of the input rate.
        let nyquist = 0.5 * f64::from(from.min(to)) / f64::from(from);
        let transition = (STOPBAND - PASSBAND) * nyquist;
        // Kaiser's estimate of the length for the attenuation and transition width, in input
        // samples.
        let estimate = (STOPBAND_DB - 8.0) / (2.285 * 2.0 * PI * transition);
        let taps = (estimate.ceil() as usize).max(1).next_multiple_of(LANES);
        if up.saturating_mul(taps) > MAX_TABLE {
            return Err(ResampleError::TooManyTaps {
                from,
                to,
                taps: up.saturating_mul(taps),
            });
        }
        let table = design(up, taps, nyquist * (PASSBAND + STOPBAND) / 2.0);
        let mut buf = Vec::with_capacity(taps - 1 + CHUNK);
        buf.resize(taps - 1, 0.0);
        Ok(Resampler {
            from,
            to,
            up,
            down,
            taps,
            table,
            buf,
            next: taps - 1,
            phase: 0,
        })
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// The output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Filter taps per output sample.
    pub fn taps_per_phase(&self) -> usize {
        self.taps
    }

    /// The filter's delay in input samples: a sample that goes in now comes out this much
    /// later (the filter is linear-phase, so every frequency is delayed alike).
    pub fn delay_in(&self) -> f64 {
        // The prototype has `up * taps` taps at `up` times the input rate, centred on
        // (up * taps - 1) / 2 of them.
        ((self.up * self.taps) as f64 - 1.0) / (2.0 * self.up as f64)
    }

    /// The filter's delay in output samples.
    pub fn delay_out(&self) -> f64 {
        self.delay_in() * f64::from(self.to) / f64::from(self.from)
    }

    /// Input samples still to come before `outputs` more output samples can be made.
    pub fn input_needed(&self, outputs: usize) -> usize {
        if outputs == 0 {
            return 0;
        }
        let last = self.next as u128
            + (self.phase as u128 + (outputs as u128 - 1) * self.down as u128) / self.up as u128;
        let have = self.buf.len() as u128;
        usize::try_from((last + 1).saturating_sub(have)).unwrap_or(usize::MAX)
    }

    /// Output samples the next `inputs` input samples complete.
    pub fn output_for(&self, inputs: usize) -> usize {
        // Outputs whose newest input index is below `buf.len() + inputs`.
        let end = self.buf.len() as u128 + inputs as u128;
        if end <= self.next as u128 {
            return 0;
        }
        // Output k needs index next + (phase + k * down) / up < end.
        let span = (end - self.next as u128) * self.up as u128;
        let k = (span - self.phase as u128).div_ceil(self.down as u128);
        usize::try_from(k).unwrap_or(usize::MAX)
    }

    /// Resamples `input`, handing each output sample to `emit` in order. Never allocates.
    pub fn process(&mut self, input: &[f32], emit: impl FnMut(f32)) {
        self.process_from(input, &mut 0, emit);
    }

    /// [`process`](Self::process), leaving out the next `*skip` output samples: they are
    /// not computed (which is nearly all the work), only counted down in `*skip`. The
    /// resampler keeps the history of all of `input`, so the outputs after them are exactly
    /// what [`process`](Self::process) would have made. For input nobody listens to.
    pub fn process_from(&mut self, input: &[f32], skip: &mut usize, mut emit: impl FnMut(f32)) {
        for piece in input.chunks(CHUNK) {
            self.buf.extend_from_slice(piece);
            let taps = self.taps;
            while self.next < self.buf.len() {
                if *skip > 0 {
                    *skip -= 1;
                } else {
                    let start = self.next + 1 - taps;
                    let coefficients = &self.table[self.phase * taps..(self.phase + 1) * taps];
                    emit(dot(coefficients, &self.buf[start..=self.next]));
                }
                self.phase += self.down;
                self.next += self.phase / self.up;
                self.phase %= self.up;
            }
            // Keep the history the next output needs.
            let drop = (self.next + 1 - taps).min(self.buf.len());
            self.buf.copy_within(drop.., 0);
            self.buf.truncate(self.buf.len() - drop);
            self.next -= drop;
        }
    }

    /// Forgets all past input (as if new).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(self.taps - 1, 0.0);
        self.next = self.taps - 1;
        self.phase = 0;
    }
}

/// The polyphase table: a Kaiser-windowed sinc with its cutoff at `cutoff` (a fraction of the
/// input rate), `up * taps` long at `up` times the input rate, split into `up` phases of
/// `taps`, each reversed and scaled to a gain of exactly 1 at 0 Hz.
fn design(up: usize, taps: usize, cutoff: f64) -> Box<[f32]> {
    let n = up * taps;
    let centre = (n as f64 - 1.0) / 2.0;
    let beta = kaiser_beta(STOPBAND_DB);
    let i0_beta = bessel_i0(beta);
    // Cutoff in cycles per sample at the upsampled rate.
    let fc = cutoff / up as f64;
    let prototype: Vec<f64> = (0..n)
        .map(|j| {
            let t = j as f64 - centre;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * t).sin() / (PI * t)
            };
            let r = if centre > 0.0 { t / centre } else { 0.0 };
            let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
            sinc * window
        })
        .collect();
    let mut table = vec![0.0f32; n];
    for p in 0..up {
        // Phase p, tap k is prototype[p + k * up]; reversed, tap k pairs with the sample k
        // places before the newest.
        let sum: f64 = (0..taps).map(|k| prototype[p + k * up]).sum();
        let scale = if sum.abs() > 1e-12 { 1.0 / sum } else { 0.0 };
        for k in 0..taps {
            table[p * taps + (taps - 1 - k)] = (prototype[p + k * up] * scale) as f32;
        }
    }
    table.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signal::{rms, tone};

    fn run(r: &mut Resampler, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        r.process(input, |s| out.push(s));
        out
    }

    /// Amplitude and phase (radians) of `freq` in `x` (least squares over whole periods).
    fn amplitude_phase(x: &[f32], rate: u32, freq: f64) -> (f64, f64) {
        let period = f64::from(rate) / freq;
        let n = ((x.len() as f64 / period).floor() * period).round() as usize;
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &v) in x[..n].iter().enumerate() {
            let w = 2.0 * PI * freq * i as f64 / f64::from(rate);
            s += f64::from(v) * w.sin();
            c += f64::from(v) * w.cos();
        }
        let (s, c) = (2.0 * s / n as f64, 2.0 * c / n as f64);
        ((s * s + c * c).sqrt(), c.atan2(s))
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.max(1e-12).log10()
    }

    /// The steady part of an output: a tenth of a second in.
    fn steady(out: &[f32], rate: u32) -> &[f32] {
        &out[rate as usize / 10..]
    }

    #[test]
    fn speech_band_passes_flat_from_48k_and_44k1_to_16k() {
        for from in [48_000, 44_100] {
            for freq in [300.0, 1000.0, 3000.0, 6000.0] {
                let mut r = Resampler::new(from, 16_000).unwrap();
                let out = run(&mut r, &tone(from, freq, 0.5, 0.5));
                let (a, _) = amplitude_phase(steady(&out, 16_000), 16_000, freq);
                assert!(
                    db(a / 0.5).abs() < 0.02,
                    "{from} Hz, {freq} Hz: {} dB",
                    db(a / 0.5)
                );
            }
        }
    }

    #[test]
    fn what_16k_cannot_carry_is_at_least_65_db_down() {
        // A tone above 8 kHz would fold back to 16 kHz minus its frequency. Every tone from
        // 8 kHz to the input's Nyquist frequency, in 250 Hz steps. The design aims at 70 dB;
        // measured in 100 Hz steps, the worst is 68.0 dB down from 48 kHz and 70.5 dB from
        // 44.1 kHz. Radio receivers' audio has well under 65 dB of signal to noise.
        for from in [48_000u32, 44_100] {
            let mut worst = f64::NEG_INFINITY;
            let mut freq = 8_000.0;
            while freq < f64::from(from) / 2.0 {
                let mut r = Resampler::new(from, 16_000).unwrap();
                let out = run(&mut r, &tone(from, freq, 0.25, 0.5));
                let level = db(rms(steady(&out, 16_000)) / (0.5 / 2f64.sqrt()));
                assert!(level < -65.0, "{from} Hz, {freq} Hz: {level:.1} dB");
                worst = worst.max(level);
                freq += 250.0;
            }
            println!("{from} Hz -> 16 kHz: worst alias {worst:.1} dB");
        }
        // Where the band ends: 6 kHz kept, 7 kHz at half amplitude, 8 kHz gone.
        let level = |freq: f64| {
            let mut r = Resampler::new(48_000, 16_000).unwrap();
            let out = run(&mut r, &tone(48_000, freq, 0.25, 0.5));
            db(rms(steady(&out, 16_000)) / (0.5 / 2f64.sqrt()))
        };
        assert!(level(6_000.0) > -0.5);
        assert!((level(7_000.0) + 6.0).abs() < 0.5);
        assert!(level(8_000.0) < -60.0);
    }

    #[test]
    fn images_of_an_upsampled_tone_are_at_least_75_db_down() {
        // 16 -> 48 kHz: a 1 kHz tone has images at 15, 17, 31 and 33 kHz unless filtered.
        let mut r = Resampler::new(16_000, 48_000).unwrap();
        let out = run(&mut r, &tone(16_000, 1000.0, 0.5, 0.5));
        let out = steady(&out, 48_000);
        let (a, _) = amplitude_phase(out, 48_000, 1000.0);
        assert!(db(a / 0.5).abs() < 0.02);
        for image in [15_000.0, 17_000.0, 31_000.0, 33_000.0] {
            let (i, _) = amplitude_phase(out, 48_000, image);
            assert!(db(i / 0.5) < -75.0, "{image} Hz: {} dB", db(i / 0.5));
        }
        // 48 -> 44.1 kHz (a card that is not at an Opus rate): 1 kHz and 15 kHz pass.
        for freq in [1000.0, 15_000.0] {
            let mut r = Resampler::new(48_000, 44_100).unwrap();
            let out = run(&mut r, &tone(48_000, freq, 0.5, 0.5));
            let (a, _) = amplitude_phase(steady(&out, 44_100), 44_100, freq);
            assert!(db(a / 0.5).abs() < 0.02, "{freq} Hz: {} dB", db(a / 0.5));
        }
    }

    #[test]
    fn the_delay_is_as_stated_and_under_two_milliseconds() {
        for (from, to) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (48_000, 44_100),
            (16_000, 48_000),
        ] {
            let r = Resampler::new(from, to).unwrap();
            let ms = r.delay_in() * 1000.0 / f64::from(from);
            assert!(ms < 2.0, "{from} -> {to}: {ms} ms");
            // The phase lag of a 1 kHz tone is the delay, in output samples.
            let mut r = Resampler::new(from, to).unwrap();
            let out = run(&mut r, &tone(from, 1000.0, 0.5, 0.5));
            let skip = to as usize / 10;
            let (_, phase) = amplitude_phase(&out[skip..], to, 1000.0);
            // The analysis starts `skip` output samples in: undo that part of the phase.
            let expected = -2.0 * PI * 1000.0 * (r.delay_out() - skip as f64) / f64::from(to);
            let diff = (phase - expected).rem_euclid(2.0 * PI);
            let diff = diff.min(2.0 * PI - diff);
            let samples = diff / (2.0 * PI * 1000.0) * f64::from(to);
            assert!(samples < 0.01, "{from} -> {to}: off by {samples} samples");
        }
        // 48 -> 16 kHz: 112 taps, 55.5 input samples (1.16 ms).
        let r = Resampler::new(48_000, 16_000).unwrap();
        assert_eq!(r.taps_per_phase(), 112);
        assert!((r.delay_in() - 55.5).abs() < 1e-9);
    }

    /// The conversions the streaming tests run: down and up, with and without a whole ratio.
    const CONVERSIONS: [(u32, u32); 6] = [
        (48_000, 16_000),
        (44_100, 16_000),
        (48_000, 44_100),
        (8_000, 48_000),
        (8_000, 16_000),
        (16_000, 48_000),
    ];

    /// A 440 Hz tone at `from`, and its conversion to `to` in one piece.
    fn tone_and_whole(from: u32, to: u32) -> (Vec<f32>, Vec<f32>) {
        let input = tone(from, 440.0, 0.3, 0.8);
        let whole = run(&mut Resampler::new(from, to).unwrap(), &input);
        (input, whole)
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_output() {
        for (from, to) in CONVERSIONS {
            let (input, whole) = tone_and_whole(from, to);
            for split in [1, 7, 240, 2048] {
                let mut r = Resampler::new(from, to).unwrap();
                let mut out = Vec::new();
                for piece in input.chunks(split) {
                    let expected = r.output_for(piece.len());
                    let before = out.len();
                    r.process(piece, |s| out.push(s));
                    assert_eq!(out.len() - before, expected, "{from} -> {to} by {split}");
                }
                assert_eq!(out, whole, "{from} -> {to} by {split}");
            }
            // One output per ratio step: as many as the rates say, give or take one.
            let expected = input.len() as f64 * f64::from(to) / f64::from(from);
            assert!((whole.len() as f64 - expected).abs() <= 1.0);
        }
    }

    #[test]
    fn skipped_outputs_leave_the_rest_exactly_as_processing_them() {
        for (from, to) in CONVERSIONS {
            let (input, whole) = tone_and_whole(from, to);
            for (split, skip_first) in [(240, 1), (960, 500), (1000, 0), (4096, 3000)] {
                let mut r = Resampler::new(from, to).unwrap();
                let mut out = Vec::new();
                let mut skip = skip_first;
                for piece in input.chunks(split) {
                    let before = out.len();
                    let skip_before = skip;
                    let made = r.output_for(piece.len());
                    r.process_from(piece, &mut skip, |s| out.push(s));
                    // Every output is either made or counted off, never both.
                    assert_eq!(out.len() - before + (skip_before - skip), made);
                }
                assert_eq!(skip, 0, "{from} -> {to}: all skipped");
                assert_eq!(out.len(), whole.len() - skip_first);
                assert_eq!(
                    out,
                    whole[skip_first..],
                    "{from} -> {to} skipping {skip_first}"
                );
            }
        }
    }
    #[test]
    fn input_needed_is_exactly_what_makes_the_outputs() {
        for (from, to) in [
            (48_000, 16_000),
            (44_100, 16_000),
            (16_000, 48_000),
            (96_000, 16_000),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            let input = tone(from, 440.0, 0.2, 0.5);
            let mut pos = 0;
            for want in [1, 320, 960, 17, 1] {
                let n = r.input_needed(want);
                assert!(n > 0, "{from} -> {to}");
                // One sample fewer is not enough; n is.
                assert!(r.output_for(n - 1) < want);
                let mut got = 0;
                r.process(&input[pos..pos + n], |_| got += 1);
                pos += n;
                assert!(got >= want && got < want + to.div_ceil(from) as usize + 1);
                // Nothing more is needed for what was just made.
                assert_eq!(r.input_needed(0), 0);
            }
        }
    }

    #[test]
    fn reset_starts_afresh_and_silence_stays_silent() {
        let mut r = Resampler::new(48_000, 16_000).unwrap();
        let input = tone(48_000, 1000.0, 0.05, 0.5);
        let first = run(&mut r, &input);
        r.reset();
        assert_eq!(run(&mut r, &input), first);
        r.reset();
        assert!(run(&mut r, &[0.0; 4800]).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn rates_it_cannot_do_are_refused_with_a_reason() {
        assert!(
            Resampler::new(0, 16_000)
                .unwrap_err()
                .to_string()
                .contains("0 Hz")
        );
        assert!(Resampler::new(16_000, 0).is_err());
        // 16000 / 44057 does not reduce: 16000 phases.
        let e = Resampler::new(44_057, 16_000).unwrap_err().to_string();
        assert!(e.contains("44057") && e.contains("48000"), "{e}");
        for from in [
            8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 192_000,
        ] {
            assert!(Resampler::new(from, 16_000).is_ok(), "{from}");
            assert!(Resampler::new(48_000, from).is_ok(), "{from}");
        }
    }
}
