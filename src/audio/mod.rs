//! Audio: device backends behind the [`AudioInput`] / [`AudioOutput`] seams, Opus, WAV files,
//! levels, and the per-radio codec engine.
//!
//! All PCM here is mono, signed 16-bit. Backends report their own sample rate; the codec rate
//! of outgoing messages is [`CODEC_RATE`].

pub(crate) mod alsa_pcm;
pub mod dsp;
pub mod file;
pub use file::NullOutput;
pub mod level;
pub mod meter;
pub mod opus;
pub mod playout;
pub mod resample;
pub mod sound;
pub mod speech;
pub mod test_signal;
pub mod tones;
pub mod wav;

/// Implements `Debug` for a type whose other fields have nothing worth printing (a codec
/// state, an open file or device): it shows the fields named, or what a method of the type
/// says for `name: method`, and `..` for the rest. The audio and radio handles use it.
macro_rules! debug_fields {
    ($type:ident { $($name:ident $(: $method:ident)?),+ $(,)? }) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type))
                    $(.field(stringify!($name), &debug_fields!(@get self, $name $(, $method)?)))+
                    .finish_non_exhaustive()
            }
        }
    };
    (@get $self:ident, $field:ident) => {
        $self.$field
    };
    (@get $self:ident, $name:ident, $method:ident) => {
        $self.$method()
    };
}
pub(crate) use debug_fields;

/// Sample rate of the messages the gateway sends (Zello apps use 16 kHz).
pub const CODEC_RATE: u32 = 16_000;

/// What an audio error calls for, so that callers decide without reading its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// It may pass by itself: try again later (a sound device lost or busy, a packet that
    /// did not decode, a file system that failed).
    RetryLater,
    /// It will not pass by itself: fix the configuration (or the file) the message names.
    FixConfiguration,
}

/// Errors of the audio backends and the codec. Each says what failed; [`AudioError::remedy`]
/// tells a passing failure from one the configuration has to fix.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A WAV file whose content cannot be used (not WAV, no channels, an unsupported format).
    #[error("audio file {path}: {message}")]
    File { path: String, message: String },
    /// Reading or writing a WAV file failed.
    #[error("audio file {path}: {what}: {source}")]
    FileIo {
        path: String,
        /// What was being done, e.g. "write failed".
        what: &'static str,
        #[source]
        source: hound::Error,
    },
    /// A sound device failed while running (lost, reopened in the background).
    #[error("audio device {device}: {message}")]
    Device { device: String, message: String },
    /// The thread that opens and watches a sound device could not be started.
    #[error("audio device {device}: cannot start the device thread: {source}")]
    DeviceThread {
        device: String,
        #[source]
        source: std::io::Error,
    },
    /// A device could not be opened as configured: fix the configuration key `key`.
    #[error("{key} = \"{device}\": {message}")]
    DeviceOpen {
        key: String,
        device: String,
        message: String,
        /// What failed underneath (ALSA's error, the resampler's), when something did.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
        /// The device exists but is busy or gone for now: opening it later may work.
        transient: bool,
    },
    /// The Opus encoder or decoder refused its settings or a packet.
    #[error("opus: {0} (check the codec settings or the incoming codec_header)")]
    Codec(#[from] opus::CodecError),
    /// A receive or transmit chain setting out of range.
    #[error(transparent)]
    Dsp(#[from] dsp::DspError),
    /// A playout setting out of range.
    #[error(transparent)]
    Playout(#[from] playout::PlayoutSettingsError),
    /// Rates the resampler cannot convert between.
    #[error(transparent)]
    Resample(#[from] resample::ResampleError),
}

impl AudioError {
    /// Whether to try again later or fix the configuration.
    pub fn remedy(&self) -> Remedy {
        match self {
            AudioError::FileIo { .. } | AudioError::Device { .. } => Remedy::RetryLater,
            AudioError::DeviceThread { .. } => Remedy::RetryLater,
            AudioError::DeviceOpen { transient, .. } if *transient => Remedy::RetryLater,
            AudioError::Codec(e) if e.is_packet() => Remedy::RetryLater,
            AudioError::File { .. }
            | AudioError::DeviceOpen { .. }
            | AudioError::Codec(_)
            | AudioError::Dsp(_)
            | AudioError::Playout(_)
            | AudioError::Resample(_) => Remedy::FixConfiguration,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn errors_say_whether_to_retry_or_fix_the_configuration() {
        let busy = AudioError::DeviceOpen {
            key: "audio.input".into(),
            device: "hw:1".into(),
            message: "the device is busy".into(),
            source: None,
            transient: true,
        };
        assert_eq!(busy.remedy(), Remedy::RetryLater);
        let missing = AudioError::DeviceOpen {
            key: "audio.input".into(),
            device: "hw:1".into(),
            message: "the device cannot capture audio".into(),
            transient: false,
            source: Some(Box::new(alsa::Error::new(
                "snd_pcm_open",
                libc::ECONNREFUSED,
            ))),
        };
        assert_eq!(missing.remedy(), Remedy::FixConfiguration);
        assert!(missing.source().is_some(), "ALSA's error is kept");
        let lost = AudioError::Device {
            device: "hw:1".into(),
            message: "audio.input lost".into(),
        };
        assert_eq!(lost.remedy(), Remedy::RetryLater);
        let packet = opus::OpusDecoder::new(16_000)
            .unwrap()
            .decode(Some(&[]), &mut [0; 960])
            .unwrap_err();
        assert_eq!(packet.remedy(), Remedy::RetryLater, "{packet}");
        let rate = opus::OpusDecoder::new(44_100).err().unwrap();
        assert_eq!(rate.remedy(), Remedy::FixConfiguration, "{rate}");
        assert!(
            rate.to_string()
                .starts_with("opus: unsupported sample rate"),
            "{rate}"
        );
        let playout = playout::PlayoutSettings {
            max_packets: 1,
            ..Default::default()
        };
        let e = AudioError::from(playout.validate().unwrap_err());
        assert_eq!(e.remedy(), Remedy::FixConfiguration);
        assert_eq!(e.to_string(), "max_packets = 1: use 2 to 4096");
        let e = AudioError::from(resample::Resampler::new(0, 16_000).err().unwrap());
        assert_eq!(e.remedy(), Remedy::FixConfiguration);
        let e = AudioError::from(dsp::TxChain::new(&dsp::TxSettings::default(), 0).unwrap_err());
        assert_eq!(e.to_string(), "sample rate 0 Hz: use 8000 to 192000 Hz");
        let io = AudioError::FileIo {
            path: "/x.wav".into(),
            what: "write failed",
            source: hound::Error::IoError(std::io::Error::other("disk full")),
        };
        assert_eq!(io.to_string(), "audio file /x.wav: write failed: disk full");
        assert_eq!(io.remedy(), Remedy::RetryLater);
        assert!(io.source().is_some());
    }
}
