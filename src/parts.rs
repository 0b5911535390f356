//! Builds each radio's parts (audio, PTT, carrier detect) from the configuration.

use crate::audio::CODEC_RATE;
use crate::audio::file::{FileInput, FileOutput};
use crate::audio::opus::EncoderSettings;
use crate::audio::sound::{CpalInput, CpalOutput};
use crate::audio::{AudioError, AudioInput, AudioOutput, NullOutput};
use crate::config::{AudioConfig, CarrierConfig, Config, PttConfig, RadioConfig};
use crate::gateway::{RadioParts, WaitingRadio};
use crate::radio::sim::{FlagCarrier, ScheduleCarrier, SimPtt};
use crate::radio::vox::Vox;
use crate::radio::{CarrierDetect, Ptt, RadioError, Remedy, cm108, gpio, rigctld, serial};
use crate::zello::protocol::CodecHeaderError;
use std::path::PathBuf;

/// A radio that could not be set up: the radio, the key of the part and why.
#[derive(Debug, thiserror::Error)]
#[error("radio[{index}] ({name}).{key}: {source}")]
pub struct PartsError {
    pub index: usize,
    pub name: String,
    pub key: String,
    /// Boxed: the radio errors it can hold are large, and it travels through every
    /// `Result` of the start.
    #[source]
    pub source: Box<PartFault>,
}

/// Why one part of a radio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PartFault {
    /// The PTT line or the carrier detect.
    #[error(transparent)]
    Radio(#[from] RadioError),
    /// The sound card or a sound file.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The codec settings.
    #[error(transparent)]
    Codec(#[from] CodecHeaderError),
    /// An input file of the `file` backend that is not a WAV file.
    #[error("cannot read {} as a WAV file: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    /// An output file of the `file` backend whose folder is missing.
    #[error("{}: the folder {} does not exist", path.display(), folder.display())]
    NoFolder { path: PathBuf, folder: PathBuf },
}

impl PartsError {
    /// What to do about it: a device that may yet open (a USB card enumerating late, a
    /// rigctld starting after the gateway) is waited for; a wrong setting is not.
    pub fn remedy(&self) -> Remedy {
        match &*self.source {
            PartFault::Radio(e) => e.remedy(),
            // A sound card that is not there (yet) is waited for, whatever the reason.
            PartFault::Audio(_) => Remedy::Retry,
            PartFault::Codec(_) | PartFault::Wav { .. } | PartFault::NoFolder { .. } => {
                Remedy::FixSettings
            }
        }
    }
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

fn radio_err(index: usize, r: &RadioConfig, key: &str, e: impl Into<PartFault>) -> PartsError {
    PartsError {
        index,
        name: r.name.clone(),
        key: key.to_string(),
        source: Box::new(e.into()),
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

/// Forces a PTT line off; `card` is the radio's sound card (for CM108 `device = "auto"`).
fn force_off_line(ptt: &PttConfig, card: Option<String>) -> Result<String, RadioError> {
    Ok(match ptt {
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
                s.card = card;
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

/// One radio's PTT line as `ptt-off` reads it: enough to force it off.
#[derive(Debug, Clone)]
pub struct PttLine {
    /// The radio's name (`radio[2]` when it has none).
    pub radio: String,
    pub ptt: PttConfig,
    /// The radio's sound card, for CM108 `device = "auto"`.
    pub card: Option<String>,
}

/// The PTT lines `ptt-off` found, and the radios whose PTT it could not read.
#[derive(Debug, Default)]
pub struct PttLines {
    pub lines: Vec<PttLine>,
    /// Each naming the radio's key (`radio[1] (uhf1).ptt: ...`).
    pub problems: Vec<String>,
    /// Set when the lines come from the settings kept at the last start
    /// ([`save_ptt_lines`]), saying why.
    pub from_saved: Option<String>,
}

/// The file in the state directory (`$STATE_DIRECTORY`, systemd's `StateDirectory=`) where
/// `run` keeps the PTT settings it started with, for `ptt-off` when the configuration file
/// cannot be read.
pub fn saved_ptt_lines_file() -> Option<std::path::PathBuf> {
    crate::service::state_file("ptt-lines.toml")
}

/// Every radio's PTT line in a configuration file's table, each read on its own: whatever
/// else is wrong in the file (an unknown key, a bad value elsewhere), the PTT lines that can
/// be read are. A radio whose `ptt` cannot be read is a problem.
pub fn ptt_lines_of(table: &toml::Table) -> PttLines {
    let mut out = PttLines::default();
    let radios = match table.get("radio") {
        Some(toml::Value::Array(radios)) => radios.as_slice(),
        Some(_) => {
            out.problems
                .push("radio: not [[radio]] sections; no PTT line found".into());
            return out;
        }
        None => &[],
    };
    for (i, radio) in radios.iter().enumerate() {
        let Some(radio) = radio.as_table() else {
            out.problems
                .push(format!("radio[{i}]: not a [[radio]] section"));
            continue;
        };
        let name = radio.get("name").and_then(toml::Value::as_str);
        let key = match name {
            Some(n) => format!("radio[{i}] ({n})"),
            None => format!("radio[{i}]"),
        };
        let ptt = match radio.get("ptt") {
            None => Ok(PttConfig::default()),
            Some(v) => <PttConfig as serde::Deserialize>::deserialize(v.clone())
                .map_err(|e| e.message().to_string()),
        };
        let card = radio
            .get("audio")
            .and_then(toml::Value::as_table)
            .filter(|a| a.get("backend").and_then(toml::Value::as_str) != Some("file"))
            .and_then(|a| a.get("input"))
            .and_then(toml::Value::as_str)
            .map(str::to_string);
        match ptt {
            Ok(ptt) => out.lines.push(PttLine {
                radio: name.map_or_else(|| format!("radio[{i}]"), str::to_string),
                ptt,
                card,
            }),
            Err(e) => out.problems.push(format!("{key}.ptt: {e}")),
        }
    }
    out
}

/// The PTT lines of the configuration file at `path`, and those kept in `saved` at the last
/// start: the gateway that crashed may have keyed a line the file no longer names (edited
/// since), so both are forced off, each once. When the file cannot be read, is not TOML at
/// all or has no PTT line that can be read, the kept ones stand in for it.
pub fn read_ptt_lines(path: &std::path::Path, saved: Option<&std::path::Path>) -> PttLines {
    let (mut found, unusable) = match std::fs::read_to_string(path) {
        Err(e) => (
            PttLines::default(),
            Some(format!("cannot read {}: {e}", path.display())),
        ),
        Ok(text) => match text.parse::<toml::Table>() {
            Ok(table) => {
                let found = ptt_lines_of(&table);
                let why = found.lines.is_empty().then(|| {
                    let mut why = format!("no PTT line can be read from {}", path.display());
                    for p in &found.problems {
                        why.push_str(&format!(" ({p})"));
                    }
                    why
                });
                (found, why)
            }
            Err(e) => {
                let (line, column) = e.span().map_or((0, 0), |span| {
                    crate::config::line_and_column(&text, span.start)
                });
                (
                    PttLines::default(),
                    Some(format!(
                        "{} is not valid TOML (line {line}, column {column}: {})",
                        path.display(),
                        e.message().trim()
                    )),
                )
            }
        },
    };
    let Some(saved) = saved.filter(|s| s.exists()) else {
        if let Some(why) = unusable {
            let kept = if saved.is_some() {
                "no PTT settings were kept at a start yet"
            } else {
                "no PTT settings were kept (STATE_DIRECTORY is not set)"
            };
            found.problems = vec![format!("{why}, and {kept}")];
        }
        return found;
    };
    let table = std::fs::read_to_string(saved)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            t.parse::<toml::Table>()
                .map_err(|e| e.message().to_string())
        });
    let kept = match table {
        Ok(table) => ptt_lines_of(&table),
        Err(e) => {
            let unreadable = format!(
                "the PTT settings kept at the last start cannot be read ({}: {e})",
                saved.display()
            );
            match unusable {
                Some(why) => found.problems = vec![format!("{why}, and {unreadable}")],
                None => found.problems.push(unreadable),
            }
            return found;
        }
    };
    let same = |a: &PttLine, b: &PttLine| {
        format!("{:?}{:?}", a.ptt, a.card) == format!("{:?}{:?}", b.ptt, b.card)
    };
    let before = found.lines.len();
    for line in kept.lines {
        if !found.lines.iter().any(|l| same(l, &line)) {
            found.lines.push(line);
        }
    }
    let added = found.lines.len() - before;
    match unusable {
        Some(why) => {
            found.problems = kept.problems;
            found.from_saved = Some(format!(
                "{why}; using the PTT settings kept in {} at the last start",
                saved.display()
            ));
        }
        None if added > 0 => {
            found.from_saved = Some(format!(
                "{added} PTT line(s) of the configuration the gateway last started with ({}) \
                 are not in {} as it is now: forcing them off too",
                saved.display(),
                path.display()
            ));
        }
        None => {}
    }
    found
}

/// Keeps the `name`, `ptt` and `audio` of each radio of a configuration's `table` at `path`
/// (written to a temporary file readable by its owner only, then renamed over the old one),
/// for `ptt-off` when the configuration file cannot be read. Nothing secret is kept.
pub fn save_ptt_lines(table: &toml::Table, path: &std::path::Path) -> std::io::Result<()> {
    let radios: Vec<toml::Value> = table
        .get("radio")
        .and_then(toml::Value::as_array)
        .map(|radios| {
            radios
                .iter()
                .filter_map(toml::Value::as_table)
                .map(|r| {
                    let kept: toml::Table = r
                        .iter()
                        .filter(|(k, _)| ["name", "ptt", "audio"].contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    toml::Value::Table(kept)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut kept = toml::Table::new();
    kept.insert("radio".into(), toml::Value::Array(radios));
    let text = format!(
        "# The PTT lines of the configuration the gateway last started with, for\n\
         # `zello-gateway ptt-off` when the configuration file cannot be read. Written by\n\
         # `zello-gateway run`.\n{}",
        toml::to_string(&kept).map_err(std::io::Error::other)?
    );
    crate::service::write_private_file(path, text.as_bytes())
}

#[cfg(test)]
mod ptt_off_tests {
    use super::*;

    /// A configuration with one radio whose PTT is `ptt`.
    fn one_radio(ptt: &str) -> Config {
        let text = format!(
            "[zello]\nserver = \"ws://127.0.0.1:8800/ws\"\nusername = \"gw\"\npassword = \"pw\"\n\
             [[radio]]\nname = \"vhf1\"\nchannel = \"Dispatch\"\naudio = {{ backend = \"file\" }}\n\
             carrier = {{ type = \"none\" }}\nptt = {ptt}\n"
        );
        Config::parse(&text, "test.toml", std::path::Path::new(".")).unwrap()
    }

    #[test]
    fn a_wrong_setting_stops_the_start_a_device_not_there_yet_is_waited_for() {
        // rigctld not listening (yet): passing, so the radio waits for it.
        let late = one_radio("{ type = \"rigctld\", address = \"127.0.0.1:1\" }");
        let e = build(&late).err().expect("nothing listens on port 1");
        assert!(e.remedy() == Remedy::Retry, "{e}");
        let (ready, waiting) = build_or_wait(&late).unwrap();
        assert!(ready.is_empty());
        assert_eq!(waiting.len(), 1);
        assert!(
            waiting[0].error.contains("cannot connect to rigctld"),
            "{}",
            waiting[0].error
        );
        // A line listed twice: no device can fix that.
        let wrong =
            one_radio("{ type = \"serial\", device = \"/dev/null\", lines = [\"RTS\", \"!rts\"] }");
        let e = build_or_wait(&wrong).err().expect("refused at once");
        assert_eq!(e.remedy(), Remedy::FixSettings);
        assert_eq!(e.key, "ptt");
        assert!(
            e.to_string()
                .starts_with("radio[0] (vhf1).ptt: PTT serial: ptt.lines: RTS is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn each_radio_s_ptt_is_read_on_its_own() {
        let table: toml::Table = "[zello]\npasword = 1\n\
             [[radio]]\nname = \"vhf1\"\nptt = { type = \"gpio\", pin = 17 }\nchannel = 5\n\
             [[radio]]\nname = \"uhf1\"\nptt = { type = \"gpio\", pinn = 17 }\n\
             [[radio]]\nname = \"hf1\"\naudio = { backend = \"cpal\", input = \"plughw:CARD=Device,DEV=0\" }\n"
            .parse()
            .unwrap();
        let found = ptt_lines_of(&table);
        let names: Vec<&str> = found.lines.iter().map(|l| l.radio.as_str()).collect();
        assert_eq!(names, ["vhf1", "hf1"]);
        assert!(matches!(found.lines[0].ptt, PttConfig::Gpio(ref s) if s.pin == 17));
        assert!(matches!(found.lines[1].ptt, PttConfig::Sim {}));
        assert_eq!(
            found.lines[1].card.as_deref(),
            Some("plughw:CARD=Device,DEV=0")
        );
        assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
        assert!(found.problems[0].starts_with("radio[1] (uhf1).ptt: "));
        assert!(found.problems[0].contains("pinn"));
    }

    #[test]
    fn the_kept_settings_stand_in_for_a_file_without_a_readable_ptt() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("ptt-lines.toml");
        let good: toml::Table =
            "[zello]\npassword = \"pw\"\n[[radio]]\nname = \"vhf1\"\nptt = { type = \"gpio\", pin = 17 }\n"
                .parse()
                .unwrap();
        save_ptt_lines(&good, &saved).unwrap();
        assert!(!std::fs::read_to_string(&saved).unwrap().contains("pw\""));
        let path = dir.path().join("gateway.toml");
        for (text, why) in [
            ("[zello\n", "is not valid TOML (line 1"),
            ("[[radios]]\nname = \"vhf1\"\n", "no PTT line can be read"),
        ] {
            std::fs::write(&path, text).unwrap();
            let found = read_ptt_lines(&path, Some(&saved));
            assert!(
                found.from_saved.as_deref().unwrap().contains(why),
                "{found:?}"
            );
            assert_eq!(found.lines.len(), 1, "{found:?}");
            assert!(found.problems.is_empty(), "{found:?}");
        }
        // Nothing kept: the file's own answer.
        let found = read_ptt_lines(&path, Some(&dir.path().join("absent")));
        assert!(
            found.lines.is_empty() && found.from_saved.is_none(),
            "{found:?}"
        );
    }

    /// The file was edited after the start (another pin) and the gateway then crashed: the
    /// line it had keyed is the kept one, so both are forced off; a line in both, once.
    #[test]
    fn the_kept_lines_are_forced_off_beside_the_files_own() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("ptt-lines.toml");
        let started: toml::Table = "[[radio]]\nname = \"vhf1\"\nptt = { type = \"gpio\", pin = 17 }\n\
             [[radio]]\nname = \"uhf1\"\nptt = { type = \"rigctld\", address = \"127.0.0.1:4532\" }\n"
            .parse()
            .unwrap();
        save_ptt_lines(&started, &saved).unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[[radio]]\nname = \"vhf1\"\nptt = { type = \"gpio\", pin = 27 }\n\
             [[radio]]\nname = \"uhf1\"\nptt = { type = \"rigctld\", address = \"127.0.0.1:4532\" }\n",
        )
        .unwrap();
        let found = read_ptt_lines(&path, Some(&saved));
        let lines: Vec<String> = found
            .lines
            .iter()
            .map(|l| format!("{} {:?}", l.radio, l.ptt))
            .collect();
        assert_eq!(found.lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].contains("pin: 27") && lines[2].contains("pin: 17"),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with("uhf1 Rigctld"), "{lines:#?}");
        let why = found.from_saved.expect("says it forces the kept line too");
        assert!(why.starts_with("1 PTT line(s)"), "{why}");
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        // Unchanged since the start: the file's lines alone, and nothing to say.
        std::fs::write(&path, toml::to_string(&started).unwrap()).unwrap();
        let found = read_ptt_lines(&path, Some(&saved));
        assert_eq!(found.lines.len(), 2);
        assert!(found.from_saved.is_none());
    }
}

/// Forces each line off: one result per radio.
pub fn force_off_lines(lines: &[PttLine]) -> Vec<(String, Result<String, RadioError>)> {
    lines
        .iter()
        .map(|l| (l.radio.clone(), force_off_line(&l.ptt, l.card.clone())))
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
            // No device can fix a wrong setting (a pin out of range, a PTT line listed twice).
            Err(e) if e.remedy() == Remedy::FixSettings => return Err(e),
            Err(e) => {
                let (config, r) = (config.clone(), r.clone());
                waiting.push(WaitingRadio {
                    name: r.name.clone(),
                    channel: r.channel.clone(),
                    error: e.to_string(),
                    open: Box::new(move || build_one(&config, index, &r).map_err(Into::into)),
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
    let err = |key: &str, e: AudioError| radio_err(index, r, key, e);
    let header = r
        .codec
        .header()
        .map_err(|e| radio_err(index, r, "codec", e))?;
    let (input, output): (Box<dyn AudioInput>, Box<dyn AudioOutput>) = match &r.audio {
        AudioConfig::File { input, output } => {
            let input = match input {
                Some(p) => Box::new(
                    FileInput::open(&config.resolve(p), CODEC_RATE)
                        .map_err(|e| err("audio.input", e))?,
                ) as Box<dyn AudioInput>,
                None => silence(),
            };
            let output = match output {
                Some(p) => Box::new(
                    FileOutput::create(&config.resolve(p), CODEC_RATE)
                        .map_err(|e| err("audio.output", e))?,
                ) as Box<dyn AudioOutput>,
                None => Box::new(NullOutput),
            };
            (input, output)
        }
        AudioConfig::Cpal(settings) => {
            let input = CpalInput::open(settings).map_err(|e| err("audio", e))?;
            let output = CpalOutput::open(settings).map_err(|e| err("audio", e))?;
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
                            PartFault::Wav {
                                path: path.clone(),
                                source: e,
                            },
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
                            PartFault::NoFolder {
                                path: path.clone(),
                                folder,
                            },
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
    let carrier = match build_carrier(index, r).and_then(|mut carrier| {
        // A line the gateway would only keep retrying is a problem here.
        carrier
            .verify()
            .map_err(|e| radio_err(index, r, "carrier", e))?;
        Ok(carrier)
    }) {
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
