//! Synthetic test signals: a speech-like signal for codec, VOX and pipeline tests (and the
//! demonstration), and a plain sine tone.
//!
//! [`speech_like`] is a crude vowel synthesiser: a glottal pulse train whose pitch drifts
//! slowly between about 120 and 220 Hz, shaped by three formant resonators that glide
//! between vowel targets, cut into syllables of about 150 to 210 ms (4 to 5 per second)
//! separated by short gaps of silence. It is not intelligible, but a codec, a level meter or
//! a VOX sees in it what it sees in a talker: voiced harmonics, formants, syllable-rate level
//! changes and pauses.

use std::f32::consts::PI;

/// Longest signal the generators produce; longer requests are cut to this length so a
/// mistyped duration cannot exhaust memory.
pub const MAX_SECONDS: f32 = 3600.0;

/// Highest sample rate the generators accept; higher rates give an empty signal.
pub const MAX_RATE: u32 = 384_000;

/// Peak level of [`speech_like`] in dBFS.
pub const SPEECH_PEAK_DBFS: f32 = -6.0;

/// Formant frequencies (F1, F2, F3 in Hz) of a few vowels of an adult voice.
const VOWELS: [[f32; 3]; 5] = [
    [730.0, 1090.0, 2440.0], // a
    [530.0, 1840.0, 2480.0], // e
    [270.0, 2290.0, 3010.0], // i
    [570.0, 840.0, 2410.0],  // o
    [300.0, 870.0, 2240.0],  // u
];

/// Formant bandwidths in Hz.
const FORMANT_BANDWIDTHS: [f32; 3] = [90.0, 110.0, 150.0];

/// Number of samples for `seconds` at `rate`, or `None` for nonsense input.
fn sample_count(rate: u32, seconds: f32) -> Option<usize> {
    if rate == 0 || rate > MAX_RATE || !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    let seconds = seconds.min(MAX_SECONDS);
    Some((f64::from(rate) * f64::from(seconds)).round() as usize)
}

/// Linear amplitude of `dbfs` relative to `i16::MAX`.
fn dbfs_to_amplitude(dbfs: f32) -> f32 {
    f32::from(i16::MAX) * 10f32.powf(dbfs / 20.0)
}

/// A sine tone of `hz` at `rate` lasting `seconds`, with its peak at `dbfs` (0 dBFS =
/// `i16::MAX`; higher values are limited to full scale). Returns an empty vector for a zero
/// rate or one above [`MAX_RATE`], a non-positive or non-finite duration, or a non-finite
/// frequency or level. Durations are cut to [`MAX_SECONDS`].
pub fn tone(rate: u32, hz: f32, seconds: f32, dbfs: f32) -> Vec<i16> {
    let Some(n) = sample_count(rate, seconds) else {
        return Vec::new();
    };
    if !hz.is_finite() || !dbfs.is_finite() {
        return Vec::new();
    }
    let amplitude = f64::from(dbfs_to_amplitude(dbfs.min(0.0)));
    let step = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    (0..n)
        .map(|i| (amplitude * (step * i as f64).sin()).round() as i16)
        .collect()
}

/// One stretch of the syllable plan.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Length in samples.
    len: usize,
    /// Voiced syllable (`true`) or gap (`false`).
    voiced: bool,
    /// Loudness of the syllable relative to the loudest (stress).
    gain: f32,
    /// Vowel at the start and at the end of the syllable (indices into `VOWELS`).
    vowels: [usize; 2],
    /// Pitch factor at the start and the end of the syllable (intonation).
    inflection: [f32; 2],
}

/// Plans syllables and gaps until `n` samples are covered.
fn plan(rng: &mut fastrand::Rng, rate: u32, n: usize) -> Vec<Segment> {
    let ms = |value: u32| (value as usize * rate as usize / 1000).max(1);
    let mut segments = Vec::new();
    let mut covered = 0;
    // A short silence first, as when a talker keys up and then speaks.
    let lead = Segment {
        len: ms(rng.u32(20..60)),
        voiced: false,
        gain: 0.0,
        vowels: [0, 0],
        inflection: [1.0, 1.0],
    };
    covered += lead.len;
    segments.push(lead);
    while covered < n {
        let first = rng.usize(..VOWELS.len());
        let second = if rng.f32() < 0.4 {
            rng.usize(..VOWELS.len())
        } else {
            first
        };
        let syllable = Segment {
            len: ms(rng.u32(150..210)),
            voiced: true,
            gain: 0.6 + 0.4 * rng.f32(),
            vowels: [first, second],
            inflection: [1.0 + 0.08 * rng.f32(), 0.88 + 0.08 * rng.f32()],
        };
        let gap = Segment {
            len: ms(rng.u32(30..70)),
            voiced: false,
            ..lead
        };
        covered += syllable.len + gap.len;
        segments.push(syllable);
        segments.push(gap);
    }
    segments
}

/// Two-pole resonator with unity gain at DC (Klatt's formant filter).
#[derive(Debug, Clone, Copy, Default)]
struct Resonator {
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn process(&mut self, x: f32, freq: f32, bandwidth: f32, rate: f32) -> f32 {
        let r = (-PI * bandwidth / rate).exp();
        let c = -r * r;
        let b = 2.0 * r * (2.0 * PI * freq / rate).cos();
        let a = 1.0 - b - c;
        let y = a * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Glottal flow over one pitch period (Rosenberg pulse): opening phase, closing phase, then
/// closed. `phase` runs from 0 to 1.
fn glottal_flow(phase: f32) -> f32 {
    const OPEN: f32 = 0.4;
    const CLOSE: f32 = 0.16;
    if phase < OPEN {
        0.5 * (1.0 - (PI * phase / OPEN).cos())
    } else if phase < OPEN + CLOSE {
        (0.5 * PI * (phase - OPEN) / CLOSE).cos()
    } else {
        0.0
    }
}

/// Raised-cosine syllable envelope: `pos` samples into a syllable of `len` samples.
fn envelope(pos: usize, len: usize, rate: f32) -> f32 {
    let attack = (0.025 * rate).min(len as f32 / 2.0).max(1.0);
    let release = (0.045 * rate).min(len as f32 / 2.0).max(1.0);
    let pos = pos as f32;
    let from_end = len as f32 - pos;
    if pos < attack {
        0.5 * (1.0 - (PI * pos / attack).cos())
    } else if from_end < release {
        0.5 * (1.0 - (PI * from_end / release).cos())
    } else {
        1.0
    }
}

/// A deterministic speech-like signal (see the module documentation) at `rate` lasting
/// `seconds`, peaking at [`SPEECH_PEAK_DBFS`]. The same `seed` always gives the same samples;
/// different seeds give different "talkers" (base pitch) and syllable sequences. Returns an
/// empty vector for a zero rate or one above [`MAX_RATE`], or a non-positive or non-finite
/// duration. Durations are cut to [`MAX_SECONDS`].
pub fn speech_like(rate: u32, seconds: f32, seed: u64) -> Vec<i16> {
    let Some(n) = sample_count(rate, seconds) else {
        return Vec::new();
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let fs = rate as f32;
    let nyquist_margin = 0.45 * fs;

    // The talker: a base pitch and a slow pitch drift.
    let base_pitch = 140.0 + 50.0 * rng.f32();
    let drift_hz = 0.4 + 0.4 * rng.f32();
    let drift_phase = 2.0 * PI * rng.f32();

    let segments = plan(&mut rng, rate, n);

    // Formant glide: one-pole smoothing towards the current vowel target, 35 ms.
    let glide = 1.0 - (-1.0 / (0.035 * fs)).exp();
    // DC blocker / high-pass at about 70 Hz.
    let hp = (-2.0 * PI * 70.0 / fs).exp();

    let mut formants = VOWELS[segments.get(1).map_or(0, |s| s.vowels[0])];
    let mut resonators = [Resonator::default(); 3];
    let mut phase = 0.0f32;
    let mut previous_flow = 0.0f32;
    let mut hp_x1 = 0.0f32;
    let mut hp_y1 = 0.0f32;

    let mut raw = Vec::with_capacity(n);
    let mut t = 0usize;
    'outer: for segment in &segments {
        for pos in 0..segment.len {
            if t >= n {
                break 'outer;
            }
            let time = t as f32 / fs;
            let progress = pos as f32 / segment.len as f32;

            let source = if segment.voiced {
                let vowel = if progress < 0.5 {
                    segment.vowels[0]
                } else {
                    segment.vowels[1]
                };
                for (f, target) in formants.iter_mut().zip(VOWELS[vowel]) {
                    *f += glide * (target - *f);
                }
                let inflection = segment.inflection[0]
                    + (segment.inflection[1] - segment.inflection[0]) * progress;
                let drift = 1.0 + 0.12 * (2.0 * PI * drift_hz * time + drift_phase).sin();
                let pitch = (base_pitch * drift * inflection).clamp(115.0, 225.0);
                phase += pitch / fs;
                if phase >= 1.0 {
                    phase -= 1.0;
                }
                let flow = glottal_flow(phase);
                // Lip radiation: the derivative of the flow.
                let excitation = flow - previous_flow;
                previous_flow = flow;
                let aspiration = 0.002 * (rng.f32() - 0.5);
                segment.gain * envelope(pos, segment.len, fs) * (excitation + aspiration)
            } else {
                previous_flow = 0.0;
                phase = 0.0;
                0.0
            };

            let mut y = source;
            for ((resonator, f), bandwidth) in
                resonators.iter_mut().zip(formants).zip(FORMANT_BANDWIDTHS)
            {
                y = resonator.process(y, f.min(nyquist_margin), bandwidth, fs);
            }
            let filtered = y - hp_x1 + hp * hp_y1;
            hp_x1 = y;
            hp_y1 = filtered;
            raw.push(filtered);
            t += 1;
        }
    }

    let peak = raw.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if !(peak.is_finite() && peak > 0.0) {
        return vec![0; n];
    }
    let scale = dbfs_to_amplitude(SPEECH_PEAK_DBFS) / peak;
    raw.iter().map(|&x| (x * scale).round() as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::level::{SILENCE_DBFS, peak_dbfs, rms_dbfs};

    /// Power spectrum of a Hann-windowed block (naive DFT; bins 0..len/2).
    fn power_spectrum(block: &[i16]) -> Vec<f64> {
        let len = block.len();
        let windowed: Vec<f64> = block
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / len as f64).cos();
                f64::from(s) * w
            })
            .collect();
        (0..len / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (i, x) in windowed.iter().enumerate() {
                    let angle = 2.0 * std::f64::consts::PI * (k * i) as f64 / len as f64;
                    re += x * angle.cos();
                    im -= x * angle.sin();
                }
                re * re + im * im
            })
            .collect()
    }

    /// Fraction of the energy of `signal` between `low` and `high` Hz, over its loudest blocks.
    fn band_fraction(signal: &[i16], rate: u32, low: f64, high: f64) -> f64 {
        let len = 512;
        let mut blocks: Vec<&[i16]> = signal.chunks_exact(len).collect();
        blocks.sort_by(|a, b| rms_dbfs(b).total_cmp(&rms_dbfs(a)));
        let (mut inside, mut total) = (0.0, 0.0);
        for block in blocks.iter().take(6) {
            for (k, p) in power_spectrum(block).into_iter().enumerate() {
                let freq = k as f64 * f64::from(rate) / len as f64;
                total += p;
                if (low..=high).contains(&freq) {
                    inside += p;
                }
            }
        }
        inside / total
    }

    #[test]
    fn same_seed_same_signal() {
        let a = speech_like(16000, 1.5, 7);
        let b = speech_like(16000, 1.5, 7);
        let c = speech_like(16000, 1.5, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 24000);
    }

    #[test]
    fn peak_is_about_minus_six_dbfs() {
        for rate in [8000, 16000, 48000] {
            let s = speech_like(rate, 2.0, 1);
            let peak = peak_dbfs(&s);
            assert!((peak - SPEECH_PEAK_DBFS).abs() < 0.1, "rate {rate}: {peak}");
            let rms = rms_dbfs(&s);
            assert!((-30.0..-10.0).contains(&rms), "rate {rate}: rms {rms}");
        }
    }

    #[test]
    fn has_syllables_and_gaps() {
        let rate = 16000;
        let s = speech_like(rate, 3.0, 3);
        // 20 ms frames: some silent (gaps), many loud (vowels).
        let levels: Vec<f32> = s.chunks(320).map(rms_dbfs).collect();
        let silent = levels.iter().filter(|&&l| l < -60.0).count();
        let loud = levels.iter().filter(|&&l| l > -30.0).count();
        assert!(silent >= 5, "only {silent} quiet frames: {levels:?}");
        assert!(loud >= levels.len() / 3, "only {loud} loud frames");
        // Count syllable onsets (quiet -> loud transitions): 4 to 5 per second.
        let mut onsets = 0;
        let mut in_syllable = false;
        for &l in &levels {
            if !in_syllable && l > -40.0 {
                onsets += 1;
                in_syllable = true;
            } else if in_syllable && l < -60.0 {
                in_syllable = false;
            }
        }
        assert!((10..=16).contains(&onsets), "{onsets} syllables in 3 s");
        // It starts quiet, as a talker after keying up.
        assert!(levels[0] < -60.0);
    }

    #[test]
    fn energy_is_in_the_voice_band() {
        for rate in [16000, 48000] {
            let s = speech_like(rate, 2.0, 5);
            let fraction = band_fraction(&s, rate, 100.0, 4000.0);
            assert!(fraction > 0.9, "rate {rate}: {fraction}");
        }
    }

    #[test]
    fn pitch_is_in_the_speaking_range() {
        // Autocorrelation of a loud 40 ms block peaks at the pitch period.
        let rate = 16000;
        let s = speech_like(rate, 2.0, 11);
        let block = s
            .chunks_exact(640)
            .max_by(|a, b| rms_dbfs(a).total_cmp(&rms_dbfs(b)))
            .unwrap();
        let corr = |lag: usize| -> f64 {
            block[..block.len() - lag]
                .iter()
                .zip(&block[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        // Lags for 100 .. 250 Hz.
        let best = (64..=160)
            .max_by(|&a, &b| corr(a).total_cmp(&corr(b)))
            .unwrap();
        let pitch = rate as f64 / best as f64;
        assert!((110.0..=235.0).contains(&pitch), "pitch {pitch} Hz");
    }

    #[test]
    fn bad_arguments_give_empty_signals() {
        assert!(speech_like(0, 1.0, 1).is_empty());
        assert!(speech_like(u32::MAX, 1.0, 1).is_empty());
        assert!(tone(MAX_RATE + 1, 440.0, 1.0, -6.0).is_empty());
        assert!(speech_like(16000, 0.0, 1).is_empty());
        assert!(speech_like(16000, -1.0, 1).is_empty());
        assert!(speech_like(16000, f32::NAN, 1).is_empty());
        assert!(speech_like(16000, f32::INFINITY, 1).is_empty());
        assert!(tone(0, 440.0, 1.0, -6.0).is_empty());
        assert!(tone(16000, f32::NAN, 1.0, -6.0).is_empty());
        assert!(tone(16000, 440.0, 1.0, f32::NAN).is_empty());
        // A very short request is fine and still deterministic.
        assert_eq!(speech_like(8000, 0.001, 2), speech_like(8000, 0.001, 2));
    }

    #[test]
    fn tone_level_and_frequency() {
        let s = tone(16000, 1000.0, 1.0, -6.0);
        assert_eq!(s.len(), 16000);
        assert!((peak_dbfs(&s) + 6.0).abs() < 0.05);
        assert!((rms_dbfs(&s) + 9.01).abs() < 0.05);
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((1995..=2005).contains(&crossings), "{crossings}");
        // Levels above full scale are limited, silence is silence.
        assert_eq!(peak_dbfs(&tone(16000, 1000.0, 0.1, 6.0)), 0.0);
        assert_eq!(peak_dbfs(&tone(16000, 1000.0, 0.1, -200.0)), SILENCE_DBFS);
    }
}
