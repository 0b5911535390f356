//! Signals and measurements for testing audio code: sine tones, the level of one frequency
//! (Goertzel) and the RMS level. Small and free of I/O, so the library's tests and the
//! integration tests measure alike.

use std::f64::consts::PI;

/// A sample whose level can be measured, on a scale where full scale is 1.0.
pub trait Level: Copy {
    /// The sample on a scale where full scale is 1.0.
    fn unit(self) -> f64;
}

impl Level for i16 {
    fn unit(self) -> f64 {
        f64::from(self) / 32768.0
    }
}

impl Level for f32 {
    fn unit(self) -> f64 {
        f64::from(self)
    }
}

/// A sine of `freq` Hz at `rate` lasting `seconds`, its peak at `amplitude` (full scale 1.0).
pub fn tone(rate: u32, freq: f64, seconds: f64, amplitude: f64) -> Vec<f32> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Amplitude (peak, in the samples' own units) of the component of `samples` at `hz`, by the
/// Goertzel algorithm. Exact for a tone with a whole number of periods in `samples`.
pub fn goertzel<S: Copy + Into<f64>>(samples: &[S], rate: u32, hz: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * hz / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x.into() + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / samples.len().max(1) as f64
}

/// Power of `freq` in 16-bit `x`, normalised so a full-scale sine gives 0.5.
pub fn power_at(x: &[i16], rate: u32, freq: f64) -> f64 {
    let amplitude = goertzel(x, rate, freq) / 32768.0;
    amplitude * amplitude / 2.0
}

/// RMS level of `x`, full scale 1.0 (0 for no samples).
pub fn rms<S: Level>(x: &[S]) -> f64 {
    (x.iter().map(|&v| v.unit().powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_measures_at_its_own_frequency_only() {
        let x: Vec<i16> = tone(16_000, 1000.0, 1.0, 0.5)
            .iter()
            .map(|&s| (s * 32768.0).round() as i16)
            .collect();
        assert!((goertzel(&x, 16_000, 1000.0) - 16_384.0).abs() < 2.0);
        assert!(goertzel(&x, 16_000, 3000.0) < 2.0);
        assert!((power_at(&x, 16_000, 1000.0) - 0.125).abs() < 1e-3);
        assert!((rms(&x) - 0.5 / 2f64.sqrt()).abs() < 1e-3);
        let f = tone(48_000, 440.0, 0.5, 1.0);
        assert!((rms(&f) - 1.0 / 2f64.sqrt()).abs() < 1e-3);
        assert_eq!(rms::<f32>(&[]), 0.0);
    }
}
