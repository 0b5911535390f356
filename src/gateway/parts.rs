//! Builds each radio's parts (audio, PTT, carrier detect) from the configuration.

use super::{RadioParts, WaitingRadio};
use crate::audio::CODEC_RATE;
use crate::audio::file::{FileInput, FileOutput};
use crate::audio::opus::EncoderSettings;
use crate::audio::sound::{CpalInput, CpalOutput};
use crate::audio::{AudioInput, AudioOutput};
use crate::config::{AudioConfig, CarrierConfig, Config, PttConfig, RadioConfig};
use crate::radio::sim::{FlagCarrier, ScheduleCarrier, SimPtt};
use crate::radio::vox::Vox;
use crate::radio::{CarrierDetect, Ptt, RadioError, cm108, gpio, rigctld, serial};

/// A radio that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("radio[{index}] ({name}).{key}: {message}")]
pub struct PartsError {
    pub index: usize,
    pub name: String,
    pub key: String,
    pub message: String,
}

/// A PTT line that does nothing: radios keyed by their own VOX.
#[derive(Debug, Default)]
pub struct NoPtt;

impl Ptt for NoPtt {
    fn set(&mut self, _keyed: bool) -> Result<(), RadioError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "none".into()
    }
}

/// An output that discards audio, for radios configured without one.
#[derive(Debug, Default)]
pub struct NullOutput;

impl AudioOutput for NullOutput {
    fn sample_rate(&self) -> u32 {
        CODEC_RATE
    }

    fn write_frame(&mut self, _frame: &[i16]) -> Result<(), crate::audio::AudioError> {
        Ok(())
    }
}

/// A silent input for radios configured without one.
fn silence() -> Box<dyn AudioInput> {
    Box::new(FileInput::from_samples(Vec::new(), CODEC_RATE))
}

/// Encoder settings for a radio.
pub fn encoder_settings(r: &RadioConfig) -> EncoderSettings {
    EncoderSettings {
        sample_rate: CODEC_RATE,
        frame_ms: r.codec.frame_ms,
        frames_per_packet: r.codec.frames_per_packet,
        bitrate: r.codec.bitrate,
        complexity: r.codec.complexity,
        fec: r.codec.fec,
        vbr: r.codec.vbr,
    }
}

/// The sound card a radio uses, for CM108 `device = "auto"` without a `card`.
fn card_of(r: &RadioConfig) -> Option<String> {
    match &r.audio {
        AudioConfig::File { .. } => None,
        AudioConfig::Cpal(s) => Some(s.input.clone()),
    }
}

fn radio_err(index: usize, r: &RadioConfig, key: &str, e: impl std::fmt::Display) -> PartsError {
    PartsError {
        index,
        name: r.name.clone(),
        key: key.to_string(),
        message: e.to_string(),
    }
}

/// Opens a radio's PTT line, unkeyed.
pub fn build_ptt(index: usize, r: &RadioConfig) -> Result<Box<dyn Ptt>, PartsError> {
    let err = |e: RadioError| radio_err(index, r, "ptt", e);
    Ok(match &r.ptt {
        PttConfig::Sim {} => Box::new(SimPtt::new()),
        PttConfig::None {} => Box::new(NoPtt),
        PttConfig::Gpio(s) => Box::new(gpio::GpioPtt::open(s).map_err(err)?),
        PttConfig::Gpiochip(s) => Box::new(gpio::GpioPtt::open_chip(s).map_err(err)?),
        PttConfig::Serial(s) => Box::new(serial::SerialPtt::open(s).map_err(err)?),
        PttConfig::Cm108(s) => {
            let mut s = s.clone();
            if s.card.is_none() {
                s.card = card_of(r);
            }
            Box::new(cm108::Cm108Ptt::open(&s).map_err(err)?)
        }
        PttConfig::Rigctld(s) => Box::new(rigctld::RigctldPtt::open(s).map_err(err)?),
    })
}

/// Opens a radio's carrier detect.
pub fn build_carrier(index: usize, r: &RadioConfig) -> Result<Box<dyn CarrierDetect>, PartsError> {
    let err = |e: RadioError| radio_err(index, r, "carrier", e);
    Ok(match &r.carrier {
        CarrierConfig::Vox(v) => Box::new(Vox::new(v.clone()).map_err(err)?),
        CarrierConfig::Schedule { on } => Box::new(ScheduleCarrier::new(
            on.iter().map(|[a, b]| (*a, *b)).collect(),
        )),
        CarrierConfig::Always {} => Box::new(FlagCarrier::fixed(true)),
        CarrierConfig::None {} => Box::new(FlagCarrier::fixed(false)),
        CarrierConfig::Gpio(s) => Box::new(gpio::GpioCarrier::open(s).map_err(err)?),
        CarrierConfig::Gpiochip(s) => Box::new(gpio::GpioCarrier::open_chip(s).map_err(err)?),
        CarrierConfig::Serial(s) => Box::new(serial::SerialCarrier::open(s).map_err(err)?),
        CarrierConfig::Cm108(s) => {
            let mut s = s.clone();
            if s.card.is_none() {
                s.card = card_of(r);
            }
            Box::new(cm108::Cm108Carrier::open(&s).map_err(err)?)
        }
        CarrierConfig::Rigctld(s) => Box::new(rigctld::RigctldCarrier::open(s).map_err(err)?),
    })
}

/// Forces one radio's PTT line off without keeping it open.
fn force_off(r: &RadioConfig) -> Result<String, RadioError> {
    Ok(match &r.ptt {
        PttConfig::Sim {} => "sim".into(),
        PttConfig::None {} => "none".into(),
        PttConfig::Gpio(s) => {
            gpio::force_off(s)?;
            format!("gpio {}", s.pin)
        }
        PttConfig::Gpiochip(s) => {
            gpio::force_off_chip(s)?;
            format!("gpiochip {} line {}", s.chip.display(), s.line)
        }
        PttConfig::Serial(s) => {
            serial::force_off(s)?;
            format!("serial {}", s.device.display())
        }
        PttConfig::Cm108(s) => {
            let mut s = s.clone();
            if s.card.is_none() {
                s.card = card_of(r);
            }
            cm108::force_off(&s)?;
            format!("cm108 {} gpio {}", s.device, s.gpio)
        }
        PttConfig::Rigctld(s) => {
            rigctld::force_off(s)?;
            format!("rigctld {}", s.address)
        }
    })
}

/// Forces every configured PTT line off (`zello-gateway ptt-off`, systemd's ExecStopPost):
/// one result per radio.
pub fn ptt_off(config: &Config) -> Vec<(String, Result<String, String>)> {
    config
        .radios
        .iter()
        .map(|r| (r.name.clone(), force_off(r).map_err(|e| e.to_string())))
        .collect()
}

/// Builds every radio of a configuration.
pub fn build(config: &Config) -> Result<Vec<RadioParts>, PartsError> {
    config
        .radios
        .iter()
        .enumerate()
        .map(|(index, r)| build_one(config, index, r))
        .collect()
}

/// Builds every radio of a configuration for `run`: a radio whose devices (sound device,
/// PTT line, carrier detect) do not open yet is handed back to wait for them (a USB card
/// that enumerates late, a rigctld that starts after the gateway). Only what can never fix
/// itself, an error in the radio's settings, is an error here.
pub fn build_or_wait(config: &Config) -> Result<(Vec<RadioParts>, Vec<WaitingRadio>), PartsError> {
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for (index, r) in config.radios.iter().enumerate() {
        settings_problem(index, r)?;
        match build_one(config, index, r) {
            Ok(parts) => ready.push(parts),
            Err(e) => {
                let (config, r) = (config.clone(), r.clone());
                waiting.push(WaitingRadio {
                    name: r.name.clone(),
                    channel: r.channel.clone(),
                    error: e.to_string(),
                    open: Box::new(move || {
                        build_one(&config, index, &r).map_err(|e| e.to_string())
                    }),
                });
            }
        }
    }
    Ok((ready, waiting))
}

/// The radio settings that no device can fix (the codec header, the VOX thresholds).
fn settings_problem(index: usize, r: &RadioConfig) -> Result<(), PartsError> {
    r.codec
        .header()
        .map_err(|e| radio_err(index, r, "codec", e))?;
    if let CarrierConfig::Vox(v) = &r.carrier {
        Vox::new(v.clone()).map_err(|e| radio_err(index, r, "carrier", e))?;
    }
    Ok(())
}

fn build_one(config: &Config, index: usize, r: &RadioConfig) -> Result<RadioParts, PartsError> {
    let err = |key: &str, message: String| PartsError {
        index,
        name: r.name.clone(),
        key: key.to_string(),
        message,
    };
    let header = r.codec.header().map_err(|e| err("codec", e))?;
    let (input, output): (Box<dyn AudioInput>, Box<dyn AudioOutput>) = match &r.audio {
        AudioConfig::File { input, output } => {
            let input = match input {
                Some(p) => Box::new(
                    FileInput::open(&config.resolve(p), CODEC_RATE)
                        .map_err(|e| err("audio.input", e.to_string()))?,
                ) as Box<dyn AudioInput>,
                None => silence(),
            };
            let output = match output {
                Some(p) => Box::new(
                    FileOutput::create(&config.resolve(p), CODEC_RATE)
                        .map_err(|e| err("audio.output", e.to_string()))?,
                ) as Box<dyn AudioOutput>,
                None => Box::new(NullOutput),
            };
            (input, output)
        }
        AudioConfig::Cpal(settings) => {
            let input = CpalInput::open(settings).map_err(|e| err("audio", e.to_string()))?;
            let output = CpalOutput::open(settings).map_err(|e| err("audio", e.to_string()))?;
            (Box::new(input), Box::new(output))
        }
    };
    let ptt = build_ptt(index, r)?;
    let carrier = build_carrier(index, r)?;
    let (courtesy_tone, identification) = r.tones(output.sample_rate());
    Ok(RadioParts {
        name: r.name.clone(),
        channel: r.channel.clone(),
        recipient: r.recipient.clone(),
        header,
        encoder: encoder_settings(r),
        timers: r.timers(),
        rx_audio: r.rx_audio,
        tx_audio: r.tx_audio,
        playout: r.playout,
        courtesy_tone,
        identification,
        input,
        output,
        carrier,
        ptt,
    })
}

/// What `zello-gateway check` found when it opened one radio's devices.
#[derive(Debug)]
pub struct Probe {
    /// The radio's name.
    pub name: String,
    /// One line: the channel and each device as opened (`channel "Dispatch"; audio ...`).
    pub summary: String,
    /// Every device that could not be opened, each naming its key.
    pub problems: Vec<PartsError>,
}

/// Opens every radio's devices as the gateway would, without transmitting, and closes them
/// again (`zello-gateway check`): the sound card both ways, the PTT line (set unkeyed, as
/// every interface does when it opens) and the carrier detect, all held open together, since
/// PTT and carrier may share one device. For the `file` backend it only checks that the
/// input is a readable WAV file and that the output's folder exists: nothing is written.
pub fn probe(config: &Config) -> Vec<Probe> {
    config
        .radios
        .iter()
        .enumerate()
        .map(|(index, r)| probe_one(config, index, r))
        .collect()
}

fn probe_one(config: &Config, index: usize, r: &RadioConfig) -> Probe {
    let mut problems = Vec::new();
    // Devices stay open until every one of this radio's has been tried.
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let audio = match &r.audio {
        AudioConfig::File { input, output } => {
            let input = match input {
                Some(p) => {
                    let path = config.resolve(p);
                    if let Err(e) = hound::WavReader::open(&path) {
                        problems.push(radio_err(
                            index,
                            r,
                            "audio.input",
                            format!("cannot read {} as a WAV file: {e}", path.display()),
                        ));
                    }
                    path.display().to_string()
                }
                None => "silence".into(),
            };
            let output = match output {
                Some(p) => {
                    let path = config.resolve(p);
                    let folder = match path.parent() {
                        Some(f) if !f.as_os_str().is_empty() => f.to_path_buf(),
                        _ => std::path::PathBuf::from("."),
                    };
                    if !folder.is_dir() {
                        problems.push(radio_err(
                            index,
                            r,
                            "audio.output",
                            format!(
                                "{}: the folder {} does not exist",
                                path.display(),
                                folder.display()
                            ),
                        ));
                    }
                    path.display().to_string()
                }
                None => "discarded".into(),
            };
            format!("file {input} -> {output}")
        }
        AudioConfig::Cpal(settings) => {
            match CpalInput::open(settings) {
                Ok(input) => held.push(Box::new(input)),
                Err(e) => problems.push(radio_err(index, r, "audio.input", e)),
            }
            match CpalOutput::open(settings) {
                Ok(output) => held.push(Box::new(output)),
                Err(e) => problems.push(radio_err(index, r, "audio.output", e)),
            }
            format!(
                "sound card {} -> {} at {} Hz",
                settings.input, settings.output, settings.sample_rate
            )
        }
    };
    let ptt = match build_ptt(index, r) {
        Ok(ptt) => {
            let line = ptt.describe();
            held.push(Box::new(ptt));
            line
        }
        Err(e) => {
            problems.push(e);
            "not opened".into()
        }
    };
    let carrier = match build_carrier(index, r) {
        Ok(carrier) => {
            let line = match &r.carrier {
                CarrierConfig::Always {} => "always".into(),
                CarrierConfig::None {} => "none".into(),
                _ => carrier.describe(),
            };
            held.push(Box::new(carrier));
            line
        }
        Err(e) => {
            problems.push(e);
            "not opened".into()
        }
    };
    // Everything closes here; the PTT line was only ever set unkeyed.
    drop(held);
    Probe {
        name: r.name.clone(),
        summary: format!(
            "channel {:?}; audio {audio}; ptt {ptt}; carrier {carrier}",
            r.channel
        ),
        problems,
    }
}
