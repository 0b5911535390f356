//! Audio levels in dBFS: the peak and RMS of a frame (for logs, VOX and the operator's "is
//! the cable plugged in" question). Levels that add up over a message or a live meter are in
//! [`meter`](super::meter).
//!
//! 0 dBFS is a full-scale sample (`i16::MAX`); digital silence reads [`SILENCE_DBFS`].

/// The level reported for digital silence (and anything quieter): -96 dBFS, about the
/// dynamic range of 16-bit audio.
pub const SILENCE_DBFS: f32 = -96.0;

/// Full scale as an amplitude.
const FULL_SCALE: f64 = i16::MAX as f64;

/// Converts an amplitude (in sample units) to dBFS, clamped to `SILENCE_DBFS..=0.0`.
fn amplitude_to_dbfs(amplitude: f64) -> f32 {
    if amplitude.is_nan() || amplitude <= 0.0 {
        return SILENCE_DBFS;
    }
    let db = 20.0 * (amplitude / FULL_SCALE).log10();
    (db as f32).clamp(SILENCE_DBFS, 0.0)
}

/// Absolute value of a sample as a wider integer (`i16::MIN` does not overflow).
fn magnitude(sample: i16) -> u16 {
    sample.unsigned_abs()
}

/// Peak level of `samples` in dBFS: 0.0 for a full-scale sample, [`SILENCE_DBFS`] for
/// silence or an empty slice.
pub fn peak_dbfs(samples: &[i16]) -> f32 {
    let peak = samples.iter().map(|&s| magnitude(s)).max().unwrap_or(0);
    amplitude_to_dbfs(f64::from(peak))
}

/// RMS level of `samples` in dBFS: 0.0 for a full-scale square wave, about -3 dBFS for a
/// full-scale sine, [`SILENCE_DBFS`] for silence or an empty slice.
pub fn rms_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return SILENCE_DBFS;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    amplitude_to_dbfs((sum / samples.len() as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64, len: usize) -> Vec<i16> {
        // 1 kHz at 16 kHz: an exact number of periods in `len` when len is a multiple of 16.
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
    fn silence_reads_the_floor() {
        let zeros = vec![0i16; 160];
        assert_eq!(peak_dbfs(&zeros), SILENCE_DBFS);
        assert_eq!(rms_dbfs(&zeros), SILENCE_DBFS);
        assert_eq!(peak_dbfs(&[]), SILENCE_DBFS);
        assert_eq!(rms_dbfs(&[]), SILENCE_DBFS);
    }

    #[test]
    fn one_lsb_is_above_the_floor() {
        let lsb = [1i16, -1, 1, -1];
        let peak = peak_dbfs(&lsb);
        assert!(close(peak, -90.3, 0.1), "{peak}");
        assert!(close(rms_dbfs(&lsb), -90.3, 0.1));
    }

    #[test]
    fn full_scale_square_is_zero_dbfs() {
        let square: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        assert_eq!(peak_dbfs(&square), 0.0);
        assert!(close(rms_dbfs(&square), 0.0, 0.001));
        let positive = vec![i16::MAX; 10];
        assert_eq!(peak_dbfs(&positive), 0.0);
        assert_eq!(rms_dbfs(&positive), 0.0);
    }

    #[test]
    fn sine_at_minus_six_dbfs() {
        let amplitude = FULL_SCALE * 10f64.powf(-6.0 / 20.0);
        let s = sine(amplitude, 1600);
        let peak = peak_dbfs(&s);
        let rms = rms_dbfs(&s);
        assert!(close(peak, -6.0, 0.05), "peak {peak}");
        assert!(close(rms, -9.01, 0.05), "rms {rms}");
    }

    #[test]
    fn half_scale_is_minus_six() {
        assert!(close(peak_dbfs(&[16384]), -6.02, 0.01));
        assert!(close(peak_dbfs(&[-16384]), -6.02, 0.01));
    }
}
