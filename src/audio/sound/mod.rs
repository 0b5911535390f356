//! The sound-card backend: ALSA PCMs, the radio's receiver audio in ([`CpalInput`]) and its
//! transmitter audio out ([`CpalOutput`]). (cpal lists the devices; the streams are ALSA's own,
//! see [`super::alsa_pcm`].)
//!
//! # Threads and wake-ups
//! No thread waits on the device. The codec engine's thread, which ticks once per frame at
//! absolute deadlines anyway, takes what the capture side has gathered since its last tick and
//! queues its frame on the playback side, with non-blocking calls: capture and playback cost no
//! wake-up of their own, and nothing polls a plugin's descriptor (PulseAudio's and PipeWire's
//! ALSA plugins say "ready" with nothing to read, which makes a polling thread spin). Both
//! sides ask for a small period (`audio.period_ms`, 20 ms by default), so audio reaches the
//! engine a period after it reaches the card. The playback stream runs only while a message
//! plays: it starts with a lead of silence and is stopped once the message has played out.
//! Everything the engine's thread does here (downmix, resampling with [`Resampler`], sample
//! conversion) uses buffers allocated at open.
//!
//! Each side also has a device thread of its own that opens the PCM, watches the counters the
//! reader or writer keeps (a few times a second) and closes and reopens the PCM when it fails.
//!
//! # Device loss
//! USB sound cards vanish and come back (RF in the cable, hot plug). When a read or write says
//! the device is gone, or errors go on while it moves no audio, or it moves no audio for a
//! while though asked, the device thread closes it, logs once that the device is lost, and
//! tries to reopen it with a backoff of 1 s doubling up to 30 s. The next `read_frame` or
//! `write_frame` returns [`AudioError::Device`] once for that loss (the engine tells the bridge,
//! which unkeys the transmitter); later calls deliver nothing until the device is back. When it
//! is, the device thread hands the reader or writer the fresh PCM and logs once that it is
//! back. [`CpalInput::health`] / [`CpalOutput::health`] tell where things stand.
//!
//! # Files
//! - `realtime.rs`: everything that runs on the sound card's side of a ring (the callbacks,
//!   the ring copies): atomics and lock-free rings only.
//! - `counters.rs`: the counters and failure codes both sides share with the device thread.
//! - `device.rs`: the device thread that opens, watches and reopens a PCM with backoff.
//! - `open.rs`: opening a PCM, and the words for one that does not open.
//! - `convert.rs`: sample conversion, lengths between rates, downmix.
//! - `capture.rs`: [`CpalInput`] and its conversion to the codec rate.
//! - `playback.rs`: [`CpalOutput`] and its conversion to the card's rate.
//! - `list.rs`: the `devices` listing.
//! - `pulse.rs`: whether a PulseAudio server answers.
//! - `rings.rs`: the same paths driven without a device ([`rings`]).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::Deserialize;

use super::alsa_pcm::DEFAULT_PERIOD_MS;

/// The status accessors [`CpalInput`] and [`CpalOutput`] share: both keep their device
/// thread in `thread` and the card's rate in `card_rate`.
macro_rules! status_accessors {
    ($side:literal, $counters:literal, $rate_doc:literal) => {
        #[doc = $rate_doc]
        pub fn card_rate(&self) -> u32 {
            self.card_rate
        }

        /// Where the device stands.
        pub fn health(&self) -> DeviceHealth {
            self.thread.health()
        }

        #[doc = concat!($counters, ", losses and the other counters so far.")]
        pub fn stats(&self) -> SoundStats {
            self.thread.counters().snapshot()
        }

        #[doc = concat!(
                                    "A handle on health and counters that outlives handing the ",
                                    $side,
                                    " to the engine."
                                )]
        pub fn monitor(&self) -> SoundMonitor {
            self.thread.monitor()
        }

        /// Frames per device period of the stream open now (the device's nearest to
        /// `audio.period_ms`); 0 while the device is lost.
        pub fn period_frames(&self) -> usize {
            self.thread.end.link.period.load(Ordering::Relaxed)
        }
    };
}

mod capture;
mod convert;
mod counters;
mod device;
mod list;
mod open;
mod playback;
mod pulse;
mod realtime;
pub mod rings;

pub use capture::CpalInput;
pub use list::{
    AlsaCard, DeviceInfo, alsa_cards, describe_devices, list_devices, parse_asound_cards,
};
pub use playback::CpalOutput;
pub use pulse::pulse_server_running;

use counters::Counters;

/// The sound card's sample rate when the configuration names none.
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;

/// Rates Opus decodes to directly; an output card running at one of them gets the decoded audio
/// without resampling.
pub const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Configuration key of the capture device, named in errors.
pub const INPUT_KEY: &str = "audio.input";
/// Configuration key of the playback device, named in errors.
pub const OUTPUT_KEY: &str = "audio.output";
/// Configuration key of the sample rate, named in errors.
pub const RATE_KEY: &str = "audio.sample_rate";
/// The configuration key of the device period.
pub const PERIOD_KEY: &str = "audio.period_ms";

/// `audio = { backend = "cpal", input = "...", output = "...", sample_rate = 48000 }`: the
/// ALSA PCM names of the radio's sound card (see [`describe_devices`] for the names that exist)
/// and the rate to run the card at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundSettings {
    /// Capture device: the radio's receiver audio, e.g. `plughw:CARD=Device,DEV=0`.
    pub input: String,
    /// Playback device: audio for the radio's transmitter.
    pub output: String,
    /// Sample rate of the sound card in Hz (both directions); 48000 unless given.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// The device period in ms (how much audio the card moves at a time), both directions;
    /// 20 unless given. The device's nearest supported period is used, and said in the log.
    #[serde(default = "default_period_ms")]
    pub period_ms: u32,
}

fn default_period_ms() -> u32 {
    DEFAULT_PERIOD_MS
}

fn default_sample_rate() -> u32 {
    DEFAULT_SAMPLE_RATE
}

/// Where a sound device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceHealth {
    /// The stream runs.
    Open,
    /// The device failed; the device thread tries to reopen it.
    Lost {
        /// When the loss was noticed.
        since: SystemTime,
        /// What went wrong.
        reason: String,
        /// Reopen attempts that failed so far.
        attempts: u32,
        /// Why the last reopen attempt failed.
        last_error: Option<String>,
    },
    /// The backend was dropped.
    Closed,
}

/// Counters of one side of the sound card (see [`CpalInput::stats`], [`CpalOutput::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoundStats {
    /// Sound-card callbacks so far.
    pub callbacks: u64,
    /// Capture: callbacks whose samples did not all fit in the ring (the reader fell behind).
    pub overruns: u64,
    /// Capture: sample frames lost to overruns.
    pub overrun_frames: u64,
    /// Playback: times the ring ran dry while a message was playing (the writer fell behind);
    /// counted once until the next write.
    pub underruns: u64,
    /// Playback: samples that did not fit in the ring and were dropped, or that were written
    /// while the device was lost.
    pub dropped_samples: u64,
    /// Capture: sample frames discarded to keep the capture latency bounded (the sound card's
    /// clock runs faster than the system clock the engine ticks on).
    pub skipped_frames: u64,
    /// Overruns and underruns the driver itself reported.
    pub xruns: u64,
    /// Other errors the driver reported; the stream went on if it kept calling back.
    pub stream_errors: u64,
    /// Times the device was lost.
    pub losses: u64,
    /// Times the device came back.
    pub reopens: u64,
}

/// A handle on one side of the sound card that stays valid after the [`CpalInput`] or
/// [`CpalOutput`] has been handed to the codec engine: for status reports and health checks.
#[derive(Clone)]
pub struct SoundMonitor {
    key: &'static str,
    device: String,
    counters: Arc<Counters>,
    health: Arc<Mutex<DeviceHealth>>,
}

impl SoundMonitor {
    /// The configuration key of the device (`audio.input` or `audio.output`).
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Where the device stands.
    pub fn health(&self) -> DeviceHealth {
        lock(&self.health).clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> SoundStats {
        self.counters.snapshot()
    }
}

impl std::fmt::Debug for SoundMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundMonitor")
            .field("key", &self.key)
            .field("device", &self.device)
            .field("health", &self.health())
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_default_rate_and_reject_unknown_keys() {
        let s: SoundSettings =
            toml::from_str("input = \"plughw:CARD=Device,DEV=0\"\noutput = \"radio_spk\"").unwrap();
        assert_eq!(s.sample_rate, 48_000);
        assert_eq!(s.input, "plughw:CARD=Device,DEV=0");
        let e = toml::from_str::<SoundSettings>("input = \"a\"\noutput = \"b\"\nrate = 44100")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(toml::from_str::<SoundSettings>("input = \"a\"").is_err());
    }

    #[test]
    fn settings_fit_a_tagged_backend_table() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
        enum Audio {
            Cpal(SoundSettings),
        }
        #[derive(Debug, Deserialize)]
        struct Radio {
            audio: Audio,
        }
        let r: Radio = toml::from_str(
            "audio = { backend = \"cpal\", input = \"plughw:CARD=Device,DEV=0\", output = \"x\", sample_rate = 44100 }",
        )
        .unwrap();
        let Audio::Cpal(s) = r.audio;
        assert_eq!(s.sample_rate, 44_100);
        assert!(
            toml::from_str::<Radio>(
                "audio = { backend = \"cpal\", input = \"a\", output = \"b\", typo = 1 }"
            )
            .is_err()
        );
    }
}
