//! Opus encoding and decoding for Zello voice messages, on libopus through `audiopus`.
//!
//! A Zello stream is described by its `codec_header`: sample rate, frames per packet and
//! frame duration. Each packet the gateway sends is ONE Opus packet (RFC 6716); with two
//! frames per packet it is one multi-frame packet (TOC code 1, 2 or 3), built with libopus's
//! repacketizer, never two packets glued together. The Zello apps normally send 16 kHz,
//! one 60 ms frame per packet ([`EncoderSettings::default`]).
//!
//! Decoding takes whatever the other side sends (any frame layout up to 120 ms per packet);
//! size buffers with [`max_packet_samples`].

use std::ptr::NonNull;

use audiopus::coder::{Decoder, Encoder, GenericCtl};
use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate, Signal, ffi};

use super::AudioError;
use super::debug_fields;

/// Longest packet Opus allows (and the longest the gateway accepts from the channel).
pub const MAX_PACKET_MS: u32 = 120;

/// Sample rates Opus works at.
pub const SAMPLE_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Frame durations the gateway encodes (Opus also has 2.5 and 5 ms, which Zello refuses).
pub const FRAME_MS: [u8; 4] = [10, 20, 40, 60];

/// Room for one encoded frame: libopus recommends 4000 bytes for any single encode call.
const MAX_FRAME_BYTES: usize = 4000;

/// Room for a two-frame packet: both frames and the longest code 3 header.
const MAX_PACKET_BYTES: usize = 2 * MAX_FRAME_BYTES + 16;

/// With forward error correction on, libopus only adds the redundancy when it expects loss:
/// the loss rate declared to the encoder.
const FEC_EXPECTED_LOSS_PERCENT: u8 = 10;

/// Concealment length before any packet has been decoded: 20 ms.
const DEFAULT_PLC_MS: u32 = 20;

/// Samples of `MAX_PACKET_MS` (120 ms) at `sample_rate`: the size of a decode buffer that
/// holds any Opus packet.
pub fn max_packet_samples(sample_rate: u32) -> usize {
    (u64::from(sample_rate) * u64::from(MAX_PACKET_MS) / 1000) as usize
}

/// What the encoder or decoder refused.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Settings Opus does not take (fix the codec settings).
    #[error("{0}")]
    Settings(String),
    /// A packet that cannot be decoded, or a frame that cannot be encoded: this one is lost,
    /// the next may pass.
    #[error("{0}")]
    Packet(String),
    /// libopus refused to set the codec up.
    #[error("{what}: {source}")]
    OpusSetup {
        /// What was being done, e.g. "cannot create the encoder".
        what: String,
        #[source]
        source: audiopus::Error,
    },
    /// libopus failed on one packet or frame.
    #[error("{what}: {source}")]
    OpusPacket {
        /// What was being done, e.g. "encoding failed".
        what: String,
        #[source]
        source: audiopus::Error,
    },
}

impl CodecError {
    /// True for a failure of one packet or frame (the codec stays usable), false for
    /// settings.
    pub fn is_packet(&self) -> bool {
        matches!(self, CodecError::Packet(_) | CodecError::OpusPacket { .. })
    }
}

fn codec_error(message: impl Into<String>) -> AudioError {
    AudioError::Codec(CodecError::Settings(message.into()))
}

fn packet_error(message: impl Into<String>) -> AudioError {
    AudioError::Codec(CodecError::Packet(message.into()))
}

/// libopus failed at `what` while setting up.
fn setup_error(what: impl Into<String>, source: audiopus::Error) -> AudioError {
    AudioError::Codec(CodecError::OpusSetup {
        what: what.into(),
        source,
    })
}

/// libopus failed at `what` on one packet or frame.
fn opus_packet_error(what: impl Into<String>, source: audiopus::Error) -> AudioError {
    AudioError::Codec(CodecError::OpusPacket {
        what: what.into(),
        source,
    })
}

fn sample_rate(rate: u32) -> Result<SampleRate, AudioError> {
    Ok(match rate {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => {
            return Err(codec_error(format!(
                "unsupported sample rate {other} Hz (Opus works at 8000, 12000, 16000, 24000 \
                 or 48000 Hz)"
            )));
        }
    })
}

/// How the gateway encodes its outgoing messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Sample rate in Hz: 8000, 12000, 16000, 24000 or 48000 (default 16000, as the apps).
    pub sample_rate: u32,
    /// Duration of one Opus frame in ms: 10, 20, 40 or 60 (default 60, as the apps).
    pub frame_ms: u8,
    /// Frames in each packet: 1 or 2 (default 1). Two 60 ms frames make a 120 ms packet,
    /// which the Zello apps have been seen not to play: keep packets at 60 ms or less.
    /// With 2, the audio bandwidth is capped at wideband (8 kHz, more than a radio channel
    /// carries) so both frames of a packet can share one configuration.
    pub frames_per_packet: u8,
    /// Target bitrate in bits per second, 500 to 512000; `None` lets libopus choose
    /// (default).
    pub bitrate: Option<i32>,
    /// Encoder complexity 0 (fastest) to 10 (best, default).
    pub complexity: u8,
    /// In-band forward error correction (default off): each packet also carries a coarse
    /// copy of the previous one for receivers that lost it. libopus only adds it when it
    /// expects loss, so this also declares an expected loss of 10 %.
    pub fec: bool,
    /// Variable bitrate (default on); off gives constant-size packets.
    pub vbr: bool,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            sample_rate: 16000,
            frame_ms: 60,
            frames_per_packet: 1,
            bitrate: None,
            complexity: 10,
            fec: false,
            vbr: true,
        }
    }
}

impl EncoderSettings {
    /// Checks every value; the error names the first bad one and what is accepted.
    pub fn validate(&self) -> Result<(), AudioError> {
        sample_rate(self.sample_rate)?;
        if !FRAME_MS.contains(&self.frame_ms) {
            return Err(codec_error(format!(
                "unsupported frame duration {} ms (use 10, 20, 40 or 60 ms)",
                self.frame_ms
            )));
        }
        if !(1..=2).contains(&self.frames_per_packet) {
            return Err(codec_error(format!(
                "unsupported frames per packet {} (use 1 or 2)",
                self.frames_per_packet
            )));
        }
        if let Some(bitrate) = self.bitrate
            && !(500..=512_000).contains(&bitrate)
        {
            return Err(codec_error(format!(
                "unsupported bitrate {bitrate} bit/s (use 500 to 512000, or leave it unset \
                 for automatic)"
            )));
        }
        if self.complexity > 10 {
            return Err(codec_error(format!(
                "unsupported complexity {} (use 0 to 10)",
                self.complexity
            )));
        }
        Ok(())
    }

    /// Samples in one frame.
    pub fn frame_samples(&self) -> usize {
        self.sample_rate as usize * usize::from(self.frame_ms) / 1000
    }

    /// Samples in one packet (all its frames).
    pub fn samples_per_packet(&self) -> usize {
        self.frame_samples() * usize::from(self.frames_per_packet)
    }
}

/// libopus's repacketizer, owned.
struct Repacketizer(NonNull<ffi::OpusRepacketizer>);

// SAFETY: the repacketizer is a plain block of memory with no thread affinity; it is only
// used through `&mut self` of its owner.
unsafe impl Send for Repacketizer {}

impl Repacketizer {
    fn new() -> Result<Self, AudioError> {
        // SAFETY: no preconditions; returns null when out of memory.
        let pointer = unsafe { ffi::opus_repacketizer_create() };
        NonNull::new(pointer)
            .map(Self)
            .ok_or_else(|| codec_error("cannot allocate the repacketizer (out of memory)"))
    }
}

impl Drop for Repacketizer {
    fn drop(&mut self) {
        // SAFETY: created by opus_repacketizer_create and destroyed only here.
        unsafe { ffi::opus_repacketizer_destroy(self.0.as_ptr()) }
    }
}

/// The TOC byte without the frame-count code: configuration (mode, bandwidth, frame size)
/// and the stereo flag, which every frame of one packet must share.
fn toc_config(toc: u8) -> u8 {
    toc & 0xFC
}

/// Mono Opus encoder producing one packet of `frames_per_packet` frames per call.
///
/// Application VOIP, signal type voice (the gateway carries speech; this also keeps
/// libopus's mode decision stable from frame to frame, which two-frame packets rely on: see
/// [`OpusEncoder::encode_packet`]), DTX off (the apps stop playing when packets stop).
pub struct OpusEncoder {
    encoder: Encoder,
    settings: EncoderSettings,
    frame_samples: usize,
    /// Scratch for the two frames of a two-frame packet.
    frames: [Vec<u8>; 2],
    repacketizer: Option<Repacketizer>,
}

debug_fields!(OpusEncoder { settings });

impl OpusEncoder {
    /// An encoder for these settings (validated first: see [`EncoderSettings::validate`]).
    pub fn new(settings: &EncoderSettings) -> Result<Self, AudioError> {
        settings.validate()?;
        let rate = sample_rate(settings.sample_rate)?;
        let setup = |what: &str, e: audiopus::Error| setup_error(format!("cannot {what}"), e);
        let mut encoder = Encoder::new(rate, Channels::Mono, Application::Voip)
            .map_err(|e| setup("create the encoder", e))?;
        encoder
            .set_bitrate(
                settings
                    .bitrate
                    .map_or(Bitrate::Auto, Bitrate::BitsPerSecond),
            )
            .map_err(|e| setup("set the bitrate", e))?;
        encoder
            .set_complexity(settings.complexity)
            .map_err(|e| setup("set the complexity", e))?;
        encoder
            .set_vbr(settings.vbr)
            .map_err(|e| setup("set VBR", e))?;
        encoder
            .set_inband_fec(settings.fec)
            .map_err(|e| setup("set FEC", e))?;
        encoder
            .set_packet_loss_perc(if settings.fec {
                FEC_EXPECTED_LOSS_PERCENT
            } else {
                0
            })
            .map_err(|e| setup("set the expected loss", e))?;
        encoder
            .set_encoder_ctl_request(ffi::OPUS_SET_DTX_REQUEST, 0)
            .map_err(|e| setup("turn DTX off", e))?;
        encoder
            .set_signal(Signal::Voice)
            .map_err(|e| setup("set the signal type", e))?;

        let two_frames = settings.frames_per_packet == 2;
        if two_frames {
            encoder
                .set_max_bandwidth(Bandwidth::Wideband)
                .map_err(|e| setup("limit the bandwidth", e))?;
        }
        Ok(Self {
            encoder,
            settings: settings.clone(),
            frame_samples: settings.frame_samples(),
            frames: if two_frames {
                [vec![0; MAX_FRAME_BYTES], vec![0; MAX_FRAME_BYTES]]
            } else {
                [Vec::new(), Vec::new()]
            },
            repacketizer: if two_frames {
                Some(Repacketizer::new()?)
            } else {
                None
            },
        })
    }

    /// The settings this encoder was made with.
    pub fn settings(&self) -> &EncoderSettings {
        &self.settings
    }

    /// Samples in one frame.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Samples `encode_packet` takes: sample rate x frame duration x frames per packet.
    pub fn samples_per_packet(&self) -> usize {
        self.frame_samples * usize::from(self.settings.frames_per_packet)
    }

    /// The codec's delay in samples: decoded audio lags the input by this much.
    pub fn lookahead(&self) -> Result<usize, AudioError> {
        self.encoder
            .lookahead()
            .map(|n| n as usize)
            .map_err(|e| setup_error("cannot query the lookahead", e))
    }

    /// Forgets the previous audio, for a new message.
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.encoder
            .reset_state()
            .map_err(|e| setup_error("cannot reset the encoder", e))
    }

    /// Encodes exactly [`samples_per_packet`](Self::samples_per_packet) samples into one
    /// Opus packet in `out` (cleared first; its capacity is reused, so nothing is allocated
    /// once it has grown to the largest packet size).
    ///
    /// With two frames per packet, the frames are encoded one after the other and joined by
    /// libopus's repacketizer into one packet (code 1, 2 or 3). All frames of a packet must
    /// share one configuration (mode, bandwidth, frame size), which libopus does not promise
    /// for separately encoded frames. Three things keep them together: the voice signal
    /// type makes the SILK/CELT choice depend on the settings only; the bandwidth cap at
    /// wideband rules out hybrid mode, whose 40 and 60 ms frames libopus splits into 20 ms
    /// ones; and the second frame is encoded with the first frame's bandwidth forced, so
    /// neither the bandwidth detector nor a SILK rate switch changes it in between. Should
    /// the frames still differ, the packet is refused with an error rather than sent
    /// malformed.
    pub fn encode_packet(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), AudioError> {
        out.clear();
        let expected = self.samples_per_packet();
        if pcm.len() != expected {
            return Err(codec_error(format!(
                "a packet needs exactly {expected} samples ({} x {} ms at {} Hz), got {}",
                self.settings.frames_per_packet,
                self.settings.frame_ms,
                self.settings.sample_rate,
                pcm.len()
            )));
        }
        let encode_error = |e: audiopus::Error| opus_packet_error("encoding failed", e);

        let Some(repacketizer) = self.repacketizer.as_ref() else {
            out.resize(MAX_FRAME_BYTES, 0);
            let len = self.encoder.encode(pcm, out).map_err(encode_error)?;
            out.truncate(len);
            return Ok(());
        };

        let n = self.frame_samples;
        let [first, second] = &mut self.frames;
        let first_len = self
            .encoder
            .encode(&pcm[..n], first)
            .map_err(encode_error)?;
        let bandwidth = audiopus::packet::bandwidth(&first[..first_len]).map_err(encode_error)?;
        self.encoder
            .set_bandwidth(bandwidth)
            .map_err(encode_error)?;
        let second_result = self.encoder.encode(&pcm[n..], second);
        // Back to automatic bandwidth whatever happened.
        self.encoder
            .set_bandwidth(Bandwidth::Auto)
            .map_err(encode_error)?;
        let second_len = second_result.map_err(encode_error)?;

        if toc_config(first[0]) != toc_config(second[0]) {
            return Err(codec_error(format!(
                "the two frames of a packet came out in different configurations (TOC {:#04x} \
                 and {:#04x}) and cannot share one packet; use one frame per packet",
                first[0], second[0]
            )));
        }

        out.resize(MAX_PACKET_BYTES, 0);
        let rp = repacketizer.0.as_ptr();
        // SAFETY: `rp` is a live repacketizer owned by `self`. The repacketizer keeps
        // pointers into `first` and `second`, which are neither moved nor modified until
        // `opus_repacketizer_out` has copied them into `out`, whose length is passed as the
        // limit. Lengths fit in i32 (at most MAX_FRAME_BYTES / MAX_PACKET_BYTES).
        let len = unsafe {
            ffi::opus_repacketizer_init(rp);
            for (frame, len) in [(&*first, first_len), (&*second, second_len)] {
                let ret = ffi::opus_repacketizer_cat(rp, frame.as_ptr(), len as i32);
                if ret < 0 {
                    out.clear();
                    return Err(codec_error(format!(
                        "cannot join the frames into one packet: {}",
                        audiopus::ErrorCode::from(ret)
                    )));
                }
            }
            ffi::opus_repacketizer_out(rp, out.as_mut_ptr(), out.len() as i32)
        };
        if len < 0 {
            out.clear();
            return Err(codec_error(format!(
                "cannot write the joined packet: {}",
                audiopus::ErrorCode::from(len)
            )));
        }
        out.truncate(len as usize);
        Ok(())
    }
}

/// Mono Opus decoder for incoming messages (stereo packets are mixed down by libopus).
pub struct OpusDecoder {
    decoder: Decoder,
    rate: u32,
    plc_samples: usize,
}

debug_fields!(OpusDecoder { rate, plc_samples });

impl OpusDecoder {
    /// A mono decoder producing samples at `sample_rate` (8000, 12000, 16000, 24000 or 48000
    /// Hz; any packet decodes at any of these rates).
    pub fn new(sample_rate: u32) -> Result<Self, AudioError> {
        let rate = self::sample_rate(sample_rate)?;
        let decoder = Decoder::new(rate, Channels::Mono)
            .map_err(|e| setup_error("cannot create the decoder", e))?;
        Ok(Self {
            decoder,
            rate: sample_rate,
            plc_samples: (u64::from(sample_rate) * u64::from(DEFAULT_PLC_MS) / 1000) as usize,
        })
    }

    /// Output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Samples one concealed (lost) packet produces: the duration of the last packet decoded
    /// (all its frames), or 20 ms before the first packet.
    pub fn plc_samples(&self) -> usize {
        self.plc_samples
    }

    /// Forgets the previous audio, for a new message (keeps the concealment length).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.decoder
            .reset_state()
            .map_err(|e| setup_error("cannot reset the decoder", e))
    }

    /// Decodes one packet into `out` and returns the number of samples written.
    ///
    /// `Some(packet)`: the packet's whole duration (all its frames) is decoded; `out` must
    /// hold it (a buffer of [`max_packet_samples`] always does). An empty, malformed or
    /// over-long packet is an error and leaves the decoder usable.
    ///
    /// `None`: the packet was lost; libopus's loss concealment fills
    /// [`plc_samples`](Self::plc_samples) samples (the duration of the last packet decoded,
    /// so timing is kept), which `out` must hold.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, AudioError> {
        let decode_error = |e: audiopus::Error| opus_packet_error("cannot decode", e);
        match packet {
            Some(packet) => {
                if packet.is_empty() {
                    return Err(packet_error("empty packet"));
                }
                if packet.len() > i32::MAX as usize {
                    return Err(packet_error("packet too large"));
                }
                // SAFETY: the pointer and length describe `packet`, which is not empty.
                let samples = unsafe {
                    ffi::opus_packet_get_nb_samples(
                        packet.as_ptr(),
                        packet.len() as i32,
                        self.rate as i32,
                    )
                };
                if samples == 0 {
                    return Err(packet_error(format!(
                        "malformed packet of {} bytes (TOC {:#04x}): it holds no frames",
                        packet.len(),
                        packet[0]
                    )));
                }
                if samples < 0 {
                    return Err(packet_error(format!(
                        "malformed packet of {} bytes (TOC {:#04x}): {}",
                        packet.len(),
                        packet[0],
                        audiopus::ErrorCode::from(samples)
                    )));
                }
                let samples = samples as usize;
                if samples > max_packet_samples(self.rate) {
                    return Err(packet_error(format!(
                        "packet of {} ms is longer than Opus allows",
                        samples * 1000 / self.rate as usize
                    )));
                }
                if samples > out.len() {
                    return Err(packet_error(format!(
                        "the packet holds {samples} samples but the buffer takes {} (size \
                         buffers with max_packet_samples)",
                        out.len()
                    )));
                }
                let n = self
                    .decoder
                    .decode(Some(packet), &mut out[..samples], false)
                    .map_err(|e| {
                        let what = format!(
                            "cannot decode a packet of {} bytes (TOC {:#04x})",
                            packet.len(),
                            packet[0]
                        );
                        opus_packet_error(what, e)
                    })?;
                self.plc_samples = n;
                Ok(n)
            }
            None => {
                let n = self.plc_samples;
                if out.len() < n {
                    return Err(packet_error(format!(
                        "concealing a lost packet needs {n} samples but the buffer takes {}",
                        out.len()
                    )));
                }
                self.decoder
                    .decode(None::<&[u8]>, &mut out[..n], false)
                    .map_err(decode_error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::level::rms_dbfs;
    use crate::audio::speech::{speech_like, tone};

    fn settings(rate: u32, frame_ms: u8, fpp: u8) -> EncoderSettings {
        EncoderSettings {
            sample_rate: rate,
            frame_ms,
            frames_per_packet: fpp,
            ..EncoderSettings::default()
        }
    }

    /// Encodes `pcm` packet by packet (the tail that does not fill a packet is dropped).
    fn encode_all(encoder: &mut OpusEncoder, pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        pcm.chunks_exact(encoder.samples_per_packet())
            .map(|chunk| {
                encoder.encode_packet(chunk, &mut out).unwrap();
                out.clone()
            })
            .collect()
    }

    /// Decodes packets, checking each gives `expected` samples.
    fn decode_all(rate: u32, packets: &[Vec<u8>], expected: usize) -> Vec<i16> {
        let mut decoder = OpusDecoder::new(rate).unwrap();
        let mut buffer = vec![0i16; max_packet_samples(rate)];
        let mut pcm = Vec::new();
        for packet in packets {
            let n = decoder.decode(Some(packet), &mut buffer).unwrap();
            assert_eq!(n, expected);
            pcm.extend_from_slice(&buffer[..n]);
        }
        pcm
    }

    /// Best normalized correlation of `decoded` against `input` delayed by the codec's
    /// `lookahead`, give or take 1 ms, skipping the first 100 ms (encoder start-up).
    /// Returns (correlation, delay found).
    fn aligned_correlation(
        input: &[i16],
        decoded: &[i16],
        rate: u32,
        lookahead: usize,
    ) -> (f64, usize) {
        let skip = rate as usize / 10;
        let slack = rate as usize / 1000;
        let len = decoded.len().min(input.len()) - skip - lookahead - slack;
        (lookahead - slack..=lookahead + slack)
            .map(|delay| {
                let a = &input[skip..skip + len];
                let b = &decoded[skip + delay..skip + delay + len];
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (&x, &y) in a.iter().zip(b) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                (ab / (aa * bb).sqrt().max(1e-9), delay)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap()
    }

    fn nb_frames(packet: &[u8]) -> i32 {
        // SAFETY: pointer and length describe `packet`.
        unsafe { ffi::opus_packet_get_nb_frames(packet.as_ptr(), packet.len() as i32) }
    }

    #[test]
    fn default_settings() {
        let s = EncoderSettings::default();
        assert_eq!(
            s,
            EncoderSettings {
                sample_rate: 16000,
                frame_ms: 60,
                frames_per_packet: 1,
                bitrate: None,
                complexity: 10,
                fec: false,
                vbr: true,
            }
        );
        assert!(s.validate().is_ok());
        let encoder = OpusEncoder::new(&s).unwrap();
        assert_eq!(encoder.samples_per_packet(), 960);
        assert_eq!(encoder.frame_samples(), 960);
        assert_eq!(encoder.settings(), &s);
    }

    #[test]
    fn samples_per_packet() {
        for (rate, ms, fpp, expected) in [
            (8000, 10, 1, 80),
            (8000, 60, 2, 960),
            (12000, 20, 1, 240),
            (16000, 40, 2, 1280),
            (24000, 20, 2, 960),
            (48000, 60, 1, 2880),
            (48000, 60, 2, 5760),
        ] {
            let encoder = OpusEncoder::new(&settings(rate, ms, fpp)).unwrap();
            assert_eq!(encoder.samples_per_packet(), expected, "{rate} {ms} {fpp}");
            assert_eq!(settings(rate, ms, fpp).samples_per_packet(), expected);
        }
    }

    /// The default settings, changed by `change`.
    fn with(change: impl FnOnce(&mut EncoderSettings)) -> EncoderSettings {
        let mut s = EncoderSettings::default();
        change(&mut s);
        s
    }

    #[test]
    fn invalid_settings_name_the_value() {
        let cases = [
            (with(|s| s.sample_rate = 44100), "44100"),
            (with(|s| s.frame_ms = 30), "30 ms"),
            (with(|s| s.frame_ms = 5), "5 ms"),
            (with(|s| s.frames_per_packet = 3), "frames per packet 3"),
            (with(|s| s.frames_per_packet = 0), "frames per packet 0"),
            (with(|s| s.bitrate = Some(100)), "bitrate 100"),
            (with(|s| s.bitrate = Some(-1)), "bitrate -1"),
            (with(|s| s.complexity = 11), "complexity 11"),
        ];
        for (settings, needle) in cases {
            let err = OpusEncoder::new(&settings).unwrap_err();
            assert!(matches!(err, AudioError::Codec(_)));
            let text = err.to_string();
            assert!(text.contains(needle), "{text} should name {needle}");
        }
        let text = OpusDecoder::new(44100).unwrap_err().to_string();
        assert!(text.contains("44100"), "{text}");
        assert!(OpusDecoder::new(0).is_err());
    }

    #[test]
    fn tone_round_trip_16k_60ms() {
        let s = EncoderSettings::default();
        let mut encoder = OpusEncoder::new(&s).unwrap();
        let input = tone(16000, 440.0, 2.0, -12.0);
        let packets = encode_all(&mut encoder, &input);
        assert_eq!(packets.len(), 33);
        let decoded = decode_all(16000, &packets, 960);
        assert_eq!(decoded.len(), 33 * 960);
        let (correlation, delay) =
            aligned_correlation(&input, &decoded, 16000, encoder.lookahead().unwrap());
        assert!(correlation > 0.9, "correlation {correlation} at {delay}");
        // The level survives within 2 dB.
        let level_in = rms_dbfs(&input[1600..30000]);
        let level_out = rms_dbfs(&decoded[1600..30000]);
        assert!(
            (level_in - level_out).abs() < 2.0,
            "{level_in} vs {level_out}"
        );
    }

    #[test]
    fn round_trip_at_every_rate_and_frame_size() {
        for rate in SAMPLE_RATES {
            for frame_ms in FRAME_MS {
                for fpp in [1, 2] {
                    let s = settings(rate, frame_ms, fpp);
                    let mut encoder = OpusEncoder::new(&s).unwrap();
                    let input = tone(rate, 440.0, 1.0, -12.0);
                    let packets = encode_all(&mut encoder, &input);
                    assert_eq!(packets.len(), input.len() / s.samples_per_packet());
                    for packet in &packets {
                        let frames = nb_frames(packet);
                        if fpp == 2 {
                            assert_ne!(packet[0] & 3, 0, "{rate} {frame_ms}x2: code 0");
                            assert!(frames >= 2, "{rate} {frame_ms}x2: {frames} frames");
                        }
                    }
                    let decoded = decode_all(rate, &packets, s.samples_per_packet());
                    let (correlation, delay) =
                        aligned_correlation(&input, &decoded, rate, encoder.lookahead().unwrap());
                    assert!(
                        correlation > 0.9,
                        "{rate} Hz {frame_ms} ms x{fpp}: correlation {correlation} at {delay}"
                    );
                }
            }
        }
    }

    #[test]
    fn speech_round_trip() {
        for (rate, frame_ms, fpp) in [
            (16000, 60, 1),
            (16000, 20, 2),
            (8000, 60, 1),
            (48000, 20, 1),
        ] {
            let s = settings(rate, frame_ms, fpp);
            let mut encoder = OpusEncoder::new(&s).unwrap();
            let input = speech_like(rate, 3.0, 42);
            let packets = encode_all(&mut encoder, &input);
            let decoded = decode_all(rate, &packets, s.samples_per_packet());
            let (correlation, delay) =
                aligned_correlation(&input, &decoded, rate, encoder.lookahead().unwrap());
            assert!(
                correlation > 0.9,
                "{rate} {frame_ms}x{fpp}: correlation {correlation} at {delay}"
            );
            let n = decoded.len().min(input.len());
            let level_in = rms_dbfs(&input[..n]);
            let level_out = rms_dbfs(&decoded[..n]);
            assert!(
                (level_in - level_out).abs() < 3.0,
                "{level_in} vs {level_out}"
            );
        }
    }

    #[test]
    fn two_frames_make_one_multi_frame_packet() {
        let s = settings(16000, 60, 2);
        let mut encoder = OpusEncoder::new(&s).unwrap();
        let input = speech_like(16000, 1.2, 3);
        let mut packet = Vec::new();
        encoder.encode_packet(&input[..1920], &mut packet).unwrap();
        // One packet: TOC code 1 (two equal frames), 2 (two frames) or 3 (several).
        assert_ne!(packet[0] & 3, 0);
        assert_eq!(nb_frames(&packet), 2);
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0; max_packet_samples(16000)];
        assert_eq!(decoder.decode(Some(&packet), &mut out).unwrap(), 1920);
        // Each frame alone is 60 ms: the packet really holds two frames of the header's size.
        // SAFETY: one-byte TOC read by libopus.
        let per_frame = unsafe { ffi::opus_packet_get_samples_per_frame(packet.as_ptr(), 16000) };
        assert_eq!(per_frame, 960);
    }

    #[test]
    fn two_frame_packets_survive_changing_signals_and_settings() {
        // Silence, speech, noise bursts and loud tones back to back: the encoder's choices
        // change, yet every packet must come out as one valid packet.
        for rate in SAMPLE_RATES {
            let mut signal = vec![0i16; rate as usize / 4];
            signal.extend(speech_like(rate, 1.0, 9));
            let mut rng = fastrand::Rng::with_seed(1);
            signal.extend((0..rate / 4).map(|_| rng.i16(-20000..20000)));
            signal.extend(tone(rate, 3000.0, 0.25, -1.0));
            signal.extend(vec![0i16; rate as usize / 10]);
            signal.extend(tone(rate, 200.0, 0.25, -30.0));
            for bitrate in [None, Some(6000), Some(24000), Some(96000)] {
                for frame_ms in FRAME_MS {
                    for (fec, vbr) in [(false, true), (true, false)] {
                        let s = EncoderSettings {
                            sample_rate: rate,
                            frame_ms,
                            frames_per_packet: 2,
                            bitrate,
                            complexity: 10,
                            fec,
                            vbr,
                        };
                        let mut encoder = OpusEncoder::new(&s).unwrap();
                        let mut decoder = OpusDecoder::new(rate).unwrap();
                        let mut out = Vec::new();
                        let mut pcm = vec![0; max_packet_samples(rate)];
                        for chunk in signal.chunks_exact(s.samples_per_packet()) {
                            encoder
                                .encode_packet(chunk, &mut out)
                                .unwrap_or_else(|e| panic!("{s:?}: {e}"));
                            assert_ne!(out[0] & 3, 0, "{s:?}");
                            let n = decoder.decode(Some(&out), &mut pcm).unwrap();
                            assert_eq!(n, s.samples_per_packet(), "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn cross_rate_decoding() {
        let mut encoder = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let input = tone(16000, 440.0, 0.5, -12.0);
        let packets = encode_all(&mut encoder, &input);
        let at_48k = decode_all(48000, &packets, 2880);
        assert_eq!(at_48k.len(), packets.len() * 2880);
        let at_8k = decode_all(8000, &packets, 480);
        assert_eq!(at_8k.len(), packets.len() * 480);
    }

    #[test]
    fn settings_are_applied() {
        // Constant bitrate gives packets of one size; a low bitrate gives small packets.
        let s = EncoderSettings {
            bitrate: Some(16000),
            vbr: false,
            ..EncoderSettings::default()
        };
        let mut encoder = OpusEncoder::new(&s).unwrap();
        let packets = encode_all(&mut encoder, &speech_like(16000, 1.0, 5));
        let sizes: Vec<usize> = packets.iter().map(Vec::len).collect();
        assert!(sizes.iter().all(|&n| n == sizes[0]), "{sizes:?}");
        // 16 kbit/s x 60 ms = 120 bytes.
        assert!((100..=125).contains(&sizes[0]), "{sizes:?}");

        let low = EncoderSettings {
            bitrate: Some(6000),
            ..EncoderSettings::default()
        };
        let mut encoder = OpusEncoder::new(&low).unwrap();
        let total: usize = encode_all(&mut encoder, &speech_like(16000, 1.0, 5))
            .iter()
            .map(Vec::len)
            .sum();
        // 6 kbit/s is 750 bytes a second.
        assert!(total < 1000, "{total} bytes for one second at 6 kbit/s");

        // FEC and the low complexity are accepted.
        let other = EncoderSettings {
            fec: true,
            complexity: 0,
            ..EncoderSettings::default()
        };
        let mut encoder = OpusEncoder::new(&other).unwrap();
        assert_eq!(
            encode_all(&mut encoder, &tone(16000, 440.0, 0.3, -12.0)).len(),
            5
        );
    }

    #[test]
    fn wrong_pcm_length_is_an_error() {
        for fpp in [1, 2] {
            let mut encoder = OpusEncoder::new(&settings(16000, 20, fpp)).unwrap();
            let needed = encoder.samples_per_packet();
            let mut out = vec![1, 2, 3];
            for len in [0, 1, needed - 1, needed + 1, 2 * needed] {
                let err = encoder.encode_packet(&vec![0; len], &mut out).unwrap_err();
                let text = err.to_string();
                assert!(text.contains(&needed.to_string()), "{text}");
                assert!(text.contains(&format!("got {len}")), "{text}");
                assert!(out.is_empty());
            }
            // Still usable afterwards.
            encoder.encode_packet(&vec![0; needed], &mut out).unwrap();
            assert!(!out.is_empty());
        }
    }

    #[test]
    fn output_buffer_is_reused() {
        for fpp in [1, 2] {
            let mut encoder = OpusEncoder::new(&settings(16000, 20, fpp)).unwrap();
            let input = speech_like(16000, 1.0, 8);
            let mut out = Vec::new();
            encoder
                .encode_packet(&input[..encoder.samples_per_packet()], &mut out)
                .unwrap();
            let (pointer, capacity) = (out.as_ptr(), out.capacity());
            for chunk in input.chunks_exact(encoder.samples_per_packet()) {
                encoder.encode_packet(chunk, &mut out).unwrap();
                assert_eq!(out.as_ptr(), pointer);
                assert_eq!(out.capacity(), capacity);
            }
        }
    }

    #[test]
    fn corrupt_packets_are_errors() {
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0; max_packet_samples(16000)];
        let bad: [&[u8]; 6] = [
            &[],
            // Code 3 without its frame-count byte.
            &[0x03],
            // Code 3 announcing 63 frames of 20 ms: longer than 120 ms.
            &[0xFB, 0x3F],
            // Code 1 (two equal frames) with an odd payload.
            &[0x01, 0x10, 0x20, 0x30],
            // Code 2 whose first frame is longer than the packet.
            &[0x02, 0xF0, 0x01],
            // Code 3 with zero frames.
            &[0x03, 0x00],
        ];
        for packet in bad {
            let err = decoder.decode(Some(packet), &mut out).unwrap_err();
            assert!(matches!(err, AudioError::Codec(_)), "{packet:?}");
        }
        // The decoder still works.
        let mut encoder = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let mut packet = Vec::new();
        encoder.encode_packet(&[0; 960], &mut packet).unwrap();
        assert_eq!(decoder.decode(Some(&packet), &mut out).unwrap(), 960);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(99);
        let mut decoder = OpusDecoder::new(48000).unwrap();
        let mut out = vec![0; max_packet_samples(48000)];
        let mut small = vec![0; 480];
        let mut packet = Vec::new();
        for _ in 0..3000 {
            packet.clear();
            let len = rng.usize(1..300);
            packet.extend((0..len).map(|_| rng.u8(..)));
            if let Ok(n) = decoder.decode(Some(&packet), &mut out) {
                assert!(n <= out.len());
            }
            let _ = decoder.decode(Some(&packet), &mut small);
            let _ = decoder.decode(None, &mut out);
        }
    }

    #[test]
    fn buffer_too_small_is_an_error() {
        let mut encoder = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let mut packet = Vec::new();
        encoder.encode_packet(&[0; 960], &mut packet).unwrap();
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0; 959];
        let text = decoder
            .decode(Some(&packet), &mut out)
            .unwrap_err()
            .to_string();
        assert!(text.contains("960") && text.contains("959"), "{text}");
        // Exactly the packet's size is enough.
        let mut out = vec![0; 960];
        assert_eq!(decoder.decode(Some(&packet), &mut out).unwrap(), 960);
    }

    #[test]
    fn loss_concealment_fills_the_last_packet_duration() {
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0; max_packet_samples(16000)];
        // Before any packet: 20 ms.
        assert_eq!(decoder.plc_samples(), 320);
        assert_eq!(decoder.decode(None, &mut out).unwrap(), 320);

        let mut encoder = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let input = tone(16000, 440.0, 0.6, -12.0);
        let packets = encode_all(&mut encoder, &input);
        for packet in &packets[..5] {
            decoder.decode(Some(packet), &mut out).unwrap();
        }
        assert_eq!(decoder.plc_samples(), 960);
        let n = decoder.decode(None, &mut out).unwrap();
        assert_eq!(n, 960);
        // Concealment continues the tone rather than going silent.
        assert!(rms_dbfs(&out[..n]) > -40.0, "{}", rms_dbfs(&out[..n]));
        // A buffer that cannot hold the concealed frame is an error.
        let text = decoder
            .decode(None, &mut [0i16; 100])
            .unwrap_err()
            .to_string();
        assert!(text.contains("960"), "{text}");
        // The next packet decodes normally.
        assert_eq!(decoder.decode(Some(&packets[6]), &mut out).unwrap(), 960);

        // Two-frame packets: concealment covers the whole packet.
        let mut encoder = OpusEncoder::new(&settings(16000, 20, 2)).unwrap();
        let packets = encode_all(&mut encoder, &input);
        decoder.decode(Some(&packets[0]), &mut out).unwrap();
        assert_eq!(decoder.decode(None, &mut out).unwrap(), 640);
    }

    #[test]
    fn reset_and_lookahead() {
        let mut encoder = OpusEncoder::new(&EncoderSettings::default()).unwrap();
        let lookahead = encoder.lookahead().unwrap();
        assert!(lookahead > 0 && lookahead < 320, "{lookahead}");
        let input = tone(16000, 440.0, 0.12, -12.0);
        let mut first = Vec::new();
        encoder.encode_packet(&input[..960], &mut first).unwrap();
        let mut other = Vec::new();
        encoder
            .encode_packet(&input[960..1920], &mut other)
            .unwrap();
        encoder.reset().unwrap();
        let mut again = Vec::new();
        encoder.encode_packet(&input[..960], &mut again).unwrap();
        assert_eq!(first, again, "a reset encoder starts over");

        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0; 1920];
        decoder.decode(Some(&first), &mut out).unwrap();
        decoder.reset().unwrap();
        assert_eq!(decoder.sample_rate(), 16000);
        assert_eq!(decoder.plc_samples(), 960);
    }

    #[test]
    fn max_packet_samples_is_120_ms() {
        assert_eq!(max_packet_samples(8000), 960);
        assert_eq!(max_packet_samples(16000), 1920);
        assert_eq!(max_packet_samples(48000), 5760);
    }

    #[test]
    fn codec_types_can_move_to_the_codec_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<OpusEncoder>();
        assert_send::<OpusDecoder>();
    }
}
