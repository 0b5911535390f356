//! Sample conversion, lengths between rates and downmixing, shared by capture and playback.

use std::time::Duration;

/// Sample frames taken from the capture ring, or engine samples converted for playback, per
/// round: bounds the conversion buffers.
pub(super) const CHUNK_FRAMES: usize = 1024;

pub(super) fn to_i16(sample: f32) -> i16 {
    // Adding and taking away 1.5 × 2^23 rounds to the nearest integer (ties to even) without
    // the library call `f32::round` is on processors without SSE4.1; `as` saturates at the
    // i16 range (values too large to round stay too large) and maps NaN to 0.
    const ROUND: f32 = 12_582_912.0;
    ((sample * 32768.0 + ROUND) - ROUND) as i16
}

/// The length of `len` samples at `from` Hz once converted to `to` Hz (no overflow on 32-bit
/// targets).
pub(super) fn convert_len(len: usize, from: u32, to: u32) -> usize {
    let n = len as u128 * u128::from(to) / u128::from(from.max(1));
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Averages the channels of interleaved `raw` into `mono` (one sample per frame).
pub(super) fn downmix(raw: &[f32], channels: usize, mono: &mut [f32]) {
    let channels = channels.max(1);
    if channels == 1 {
        let n = raw.len().min(mono.len());
        mono[..n].copy_from_slice(&raw[..n]);
        return;
    }
    let scale = 1.0 / channels as f32;
    for (m, frame) in mono.iter_mut().zip(raw.chunks_exact(channels)) {
        *m = frame.iter().sum::<f32>() * scale;
    }
}

/// `samples` at `rate` as a duration.
pub(super) fn samples_duration(samples: usize, rate: u32) -> Duration {
    Duration::from_secs_f64(samples as f64 / f64::from(rate.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_convert_between_rates_without_overflow() {
        assert_eq!(convert_len(960, 16_000, 48_000), 2880);
        assert_eq!(convert_len(2880, 48_000, 44_100), 2646);
        assert_eq!(convert_len(usize::MAX, 1, 384_000), usize::MAX);
        assert_eq!(convert_len(5, 0, 10), 50);
    }

    #[test]
    fn downmix_averages_channels() {
        let mut mono = [0.0f32; 2];
        downmix(&[1.0, 0.0, -0.5, -0.5], 2, &mut mono);
        assert_eq!(mono, [0.5, -0.5]);
        downmix(&[0.25, 0.75], 1, &mut mono);
        assert_eq!(mono, [0.25, 0.75]);
    }
}
