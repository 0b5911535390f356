//! Audio: device backends behind the [`AudioInput`] / [`AudioOutput`] seams, Opus, WAV files,
//! levels, and the per-radio codec engine.
//!
//! All PCM here is mono, signed 16-bit. Backends report their own sample rate; the codec rate
//! of outgoing messages is [`CODEC_RATE`].

pub(crate) mod alsa_pcm;
pub mod dsp;
pub mod engine;
pub mod file;
pub mod level;
pub mod opus;
pub mod playout;
pub mod resample;
pub mod sound;
pub mod speech;
pub mod test_signal;
pub mod tones;
pub mod wav;

/// Sample rate of the messages the gateway sends (Zello apps use 16 kHz).
pub const CODEC_RATE: u32 = 16_000;

/// Errors of the audio backends and the codec.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("audio file {path}: {message}")]
    File { path: String, message: String },
    #[error("audio device {device}: {message}")]
    Device { device: String, message: String },
    /// A device could not be opened as configured: fix the configuration key `key`.
    #[error("{key} = \"{device}\": {message}")]
    DeviceOpen {
        key: String,
        device: String,
        message: String,
    },
    #[error("opus: {0} (check the codec settings or the incoming codec_header)")]
    Codec(String),
}

/// Where the radio's received audio comes from (the sound card's capture side, a file, ...).
pub trait AudioInput: Send {
    /// Sample rate of the frames this input delivers.
    fn sample_rate(&self) -> u32;
    /// Fill `frame` completely with the next samples. Returns `Ok(false)` when a whole frame is
    /// not available yet (the caller tries again on its next tick).
    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError>;
    /// Takes the next frame like [`read_frame`](Self::read_frame) when nothing needs its
    /// audio (the squelch is closed): `frame` is scratch space and holds nothing useful
    /// afterwards. A sound card's input leaves the frame unconverted, which is most of the
    /// cost of an idle radio; by default the frame is read.
    fn skip_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        self.read_frame(frame)
    }
    /// How long ago the last sample of the frame just taken reached the input: the audio
    /// that arrived after it and waits to be read. Zero for inputs that deliver on demand.
    fn age(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Where audio for the radio's transmitter goes (the sound card's playback side, a file, ...).
pub trait AudioOutput: Send {
    /// Sample rate this output expects.
    fn sample_rate(&self) -> u32;
    /// Queue one frame for playback.
    fn write_frame(&mut self, frame: &[i16]) -> Result<(), AudioError>;
    /// The current message has ended: everything written so far belongs to it.
    fn end_of_message(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
    /// How long from now until the first sample of a frame of `frame_len` samples written
    /// now is heard: what is queued ahead of it (a sound card's ring, the silence it puts
    /// ahead of a message, a resampler's delay). The engine starts a message that much early
    /// so that it plays when it is due. Zero for outputs that play what they get at once.
    fn delay(&self, frame_len: usize) -> std::time::Duration {
        let _ = frame_len;
        std::time::Duration::ZERO
    }
    /// Called once per tick while nothing plays: a sound card stops its stream once the last
    /// message has played out, so an idle transmitter path costs nothing.
    fn idle(&mut self) {}
}
