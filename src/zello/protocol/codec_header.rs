//! The 4-byte `codec_header` of an Opus stream, carried base64-encoded in `start_stream` and
//! `on_stream_start`: `{sample_rate u16 LE, frames_per_packet u8, frame_size_ms u8}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Sample rates Opus (and the Zello apps) accept.
pub const SAMPLE_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];
/// Opus frame sizes in milliseconds that fit the header's whole-millisecond field.
pub const FRAME_SIZES_MS: [u8; 5] = [5, 10, 20, 40, 60];

/// Why a codec header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecHeaderError {
    #[error("codec_header is not valid base64: {0}")]
    Base64(String),
    #[error("codec_header must be 4 bytes, got {0}")]
    Length(usize),
    #[error("codec_header sample rate {0} Hz is not one of 8000, 12000, 16000, 24000, 48000")]
    SampleRate(u32),
    #[error("codec_header frames per packet {0} must be 1 or 2")]
    FramesPerPacket(u8),
    #[error("codec_header frame size {0} ms is not one of 5, 10, 20, 40, 60")]
    FrameSize(u8),
}

/// Decoded, validated codec parameters of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecHeader {
    pub sample_rate: u32,
    pub frames_per_packet: u8,
    pub frame_ms: u8,
}

impl Default for CodecHeader {
    /// What the Zello apps send: 16 kHz, one 60 ms frame per packet.
    fn default() -> Self {
        CodecHeader {
            sample_rate: 16_000,
            frames_per_packet: 1,
            frame_ms: 60,
        }
    }
}

impl CodecHeader {
    /// Builds a header, refusing values the codec cannot use.
    pub fn new(
        sample_rate: u32,
        frames_per_packet: u8,
        frame_ms: u8,
    ) -> Result<Self, CodecHeaderError> {
        let header = CodecHeader {
            sample_rate,
            frames_per_packet,
            frame_ms,
        };
        header.validate()?;
        Ok(header)
    }

    /// Checks every field, naming the first wrong one.
    pub fn validate(&self) -> Result<(), CodecHeaderError> {
        if !SAMPLE_RATES.contains(&self.sample_rate) {
            return Err(CodecHeaderError::SampleRate(self.sample_rate));
        }
        if !(1..=2).contains(&self.frames_per_packet) {
            return Err(CodecHeaderError::FramesPerPacket(self.frames_per_packet));
        }
        if !FRAME_SIZES_MS.contains(&self.frame_ms) {
            return Err(CodecHeaderError::FrameSize(self.frame_ms));
        }
        Ok(())
    }

    /// The four raw bytes.
    pub fn to_bytes(&self) -> [u8; 4] {
        let rate = (self.sample_rate as u16).to_le_bytes();
        [rate[0], rate[1], self.frames_per_packet, self.frame_ms]
    }

    /// Parses and validates the four raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecHeaderError> {
        let [lo, hi, fpp, ms] =
            <[u8; 4]>::try_from(bytes).map_err(|_| CodecHeaderError::Length(bytes.len()))?;
        Self::new(u16::from_le_bytes([lo, hi]) as u32, fpp, ms)
    }

    /// The base64 form used in JSON.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }

    /// Parses the base64 form used in JSON.
    pub fn from_base64(text: &str) -> Result<Self, CodecHeaderError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| CodecHeaderError::Base64(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// Samples in one frame.
    pub fn frame_samples(&self) -> usize {
        self.sample_rate as usize * self.frame_ms as usize / 1000
    }

    /// Duration of one packet in milliseconds (the `packet_duration` to announce).
    pub fn packet_ms(&self) -> u32 {
        self.frame_ms as u32 * self.frames_per_packet as u32
    }

    /// Samples in one packet.
    pub fn packet_samples(&self) -> usize {
        self.frame_samples() * self.frames_per_packet as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_is_16k_one_frame_60ms() {
        let h = CodecHeader::from_base64("gD4BPA==").unwrap();
        assert_eq!(h, CodecHeader::new(16000, 1, 60).unwrap());
        assert_eq!(h.to_bytes(), [0x80, 0x3e, 0x01, 0x3c]);
        assert_eq!(h.to_base64(), "gD4BPA==");
        assert_eq!(h.frame_samples(), 960);
        assert_eq!(h.packet_ms(), 60);
    }

    #[test]
    fn every_valid_combination_round_trips() {
        for rate in SAMPLE_RATES {
            for fpp in 1..=2 {
                for ms in FRAME_SIZES_MS {
                    let h = CodecHeader::new(rate, fpp, ms).unwrap();
                    assert_eq!(CodecHeader::from_base64(&h.to_base64()).unwrap(), h);
                }
            }
        }
        let h = CodecHeader::new(48000, 2, 20).unwrap();
        assert_eq!(h.packet_samples(), 1920);
    }

    #[test]
    fn bad_values_are_named() {
        for ((rate, frames, ms), want) in [
            ((44100, 1, 20), CodecHeaderError::SampleRate(44100)),
            ((16000, 3, 20), CodecHeaderError::FramesPerPacket(3)),
            ((16000, 0, 20), CodecHeaderError::FramesPerPacket(0)),
            ((16000, 1, 120), CodecHeaderError::FrameSize(120)),
        ] {
            assert_eq!(
                CodecHeader::new(rate, frames, ms),
                Err(want),
                "{rate} Hz, {frames} frames of {ms} ms"
            );
        }
        let err = CodecHeader::new(16000, 1, 30).unwrap_err();
        assert!(err.to_string().contains("30 ms"), "{err}");
        assert!(
            CodecHeader::new(11025, 1, 20)
                .unwrap_err()
                .to_string()
                .contains("11025")
        );
    }

    #[test]
    fn bad_encodings_are_errors() {
        assert!(matches!(
            CodecHeader::from_base64("not base64!"),
            Err(CodecHeaderError::Base64(_))
        ));
        assert_eq!(
            CodecHeader::from_base64("gD4B"),
            Err(CodecHeaderError::Length(3))
        );
        assert_eq!(
            CodecHeader::from_base64("gD4BPAA="),
            Err(CodecHeaderError::Length(5))
        );
        assert_eq!(
            CodecHeader::from_base64(""),
            Err(CodecHeaderError::Length(0))
        );
        // 0 Hz
        assert_eq!(
            CodecHeader::from_bytes(&[0, 0, 1, 60]),
            Err(CodecHeaderError::SampleRate(0))
        );
    }
}
