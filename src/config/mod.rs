//! The gateway's TOML configuration: schema, defaults, and validation that lists every problem.
//!
//! ```toml
//! [zello]
//! server = "ws://127.0.0.1:8800/ws"
//! username = "gateway1"
//! password = "secret"                 # or password_file
//! platform_name = "Zello Radio Gateway"
//!
//! [[radio]]
//! name = "radio1"
//! channel = "Dispatch"
//! audio = { backend = "file", input = "rx.wav", output = "tx.wav" }
//! ptt = { type = "sim" }
//! carrier = { type = "vox" }
//! ```

use crate::gateway::machine::{BusyPolicy, Timers};
use crate::radio::cm108::{Cm108CarrierSettings, Cm108PttSettings};
use crate::radio::gpio::{
    GpioCarrierSettings, GpioChipCarrierSettings, GpioChipPttSettings, GpioPttSettings,
};
use crate::radio::rigctld::{RigctldCarrierSettings, RigctldPttSettings};
use crate::radio::serial::{SerialCarrierSettings, SerialPttSettings};
use crate::radio::vox::VoxSettings;
use crate::secret::Secret;
use crate::zello::auth::{AuthError, PrivateKey, TokenSigner, TokenSource};
use crate::zello::protocol::{CodecHeader, CodecHeaderError};
use crate::zello::session::{DEFAULT_PLATFORM_NAME, SessionConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod api;
mod load;
mod mqtt;
mod toml_text;

pub use api::{
    ApiConfig, ApiConfigError, ApiTokens, DEFAULT_LISTEN, MIN_TOKEN_LEN, Origin, OriginError,
};

pub use mqtt::{Broker, MqttConfig, MqttSettings, MqttUrlError, hostname};
pub use toml_text::is_secret_key;
pub(crate) use toml_text::{deserialize_lenient, line_and_column, syntax_problem};

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is part of the message (not a `source`), so it is printed once.
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
    /// `[zello.token]` names a key that cannot be used.
    #[error("config file {path}: {source}")]
    Token { path: String, source: AuthError },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub zello: ZelloConfig,
    #[serde(rename = "radio", default)]
    pub radios: Vec<RadioConfig>,
    /// `[alarms]`: leaving Zello on purpose while radio hardware has failed.
    #[serde(default)]
    pub alarms: crate::alarms::AlarmsConfig,
    /// `[log]`: the log level.
    #[serde(default)]
    pub log: LogConfig,
    /// `[api]`: the local status and event API.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[mqtt]`: events and state on an MQTT broker; absent: off.
    pub mqtt: Option<MqttConfig>,
    /// Where relative paths in the file are resolved from (the file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it came from, for messages.
    #[serde(skip)]
    pub source: String,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (the default), `debug`, `trace` or `off`, optionally with
    /// `module=level` directives (`warn,zello_gateway::zello=debug`). `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// `[zello]`: the account and server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZelloConfig {
    /// `wss://zello.io/ws`, `wss://zellowork.io/ws/NETWORK`, `wss://DOMAIN/ws/mesh`.
    #[serde(default = "default_server")]
    pub server: String,
    #[serde(default)]
    pub username: String,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub auth_token: Option<Secret>,
    pub auth_token_file: Option<PathBuf>,
    /// `[zello.token]`: sign auth tokens here with the issuer's private key instead of
    /// giving one (`auth_token` / `auth_token_file`).
    pub token: Option<TokenConfig>,
    #[serde(default = "default_platform_name")]
    pub platform_name: String,
    /// Allow plain ws:// to a host other than loopback.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Extra PEM certificates to trust (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// `[zello.token]`: the gateway signs its own auth tokens (RS256 JWTs with `iss` and `exp`,
/// valid 120 s) with the issuer's private key from the Zello developer console.
///
/// ```toml
/// [zello.token]
/// issuer = "YOUR_ISSUER_ID"
/// private_key_file = "/etc/zello-gateway/zello-key.pem"   # keep it 0600
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The issuer shown with the key in the Zello developer console.
    pub issuer: String,
    /// The PEM private key (PKCS#8 or PKCS#1 RSA); relative to the config file's folder.
    pub private_key_file: PathBuf,
}

fn default_server() -> String {
    "wss://zello.io/ws".into()
}

fn default_platform_name() -> String {
    DEFAULT_PLATFORM_NAME.into()
}

/// `[[radio]]`: one radio bridged to one channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadioConfig {
    pub name: String,
    pub channel: String,
    /// Send this radio's messages to one user only (Zello's `for`).
    #[serde(rename = "for")]
    pub recipient: Option<String>,
    pub audio: AudioConfig,
    #[serde(default)]
    pub ptt: PttConfig,
    #[serde(default)]
    pub carrier: CarrierConfig,
    #[serde(default)]
    pub codec: CodecConfig,
    #[serde(default)]
    pub timing: TimingConfig,
    /// Processing of the received audio before it is encoded.
    #[serde(default)]
    pub rx_audio: crate::audio::dsp::RxSettings,
    /// Processing of the audio played into the transmitter.
    #[serde(default)]
    pub tx_audio: crate::audio::dsp::TxSettings,
    /// The playout (jitter) buffer for messages from the channel.
    #[serde(default)]
    pub playout: crate::audio::playout::PlayoutSettings,
    /// A short tone after each message from the channel.
    pub courtesy_tone: Option<CourtesyToneConfig>,
    /// CW station identification (amateur radio).
    pub cw_id: Option<CwIdConfig>,
}

/// `timing = { ... }`: the transmit-safety timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingConfig {
    /// PTT lead before the audio starts.
    pub tx_delay_ms: u32,
    /// PTT hold after the last audio.
    pub tx_tail_ms: u32,
    /// Time-out timer: unkey after this long no matter what (1 to 3600).
    pub tot_s: u32,
    /// After the carrier drops, keep the message open this long (silence is sent).
    pub rx_hang_ms: u32,
    /// Ignore carriers shorter than this (kerchunks).
    pub rx_min_ms: u32,
    /// Ignore the carrier this long after our own PTT drops (squelch tail, anti ping-pong).
    pub rx_start_delay_ms: u32,
    /// A carrier up longer than this is stuck: the message ends and the carrier is ignored
    /// until it drops.
    pub rx_max_s: u32,
    /// At most this many message starts within `flap_window_s` (0: no limit).
    pub flap_max_starts: u32,
    pub flap_window_s: u32,
    /// A message from the channel while the radio receives: "queue", "drop" or "override".
    pub busy_policy: BusyPolicy,
    /// A queued message older than this is dropped.
    pub queue_max_age_s: u32,
}

impl Default for TimingConfig {
    fn default() -> Self {
        let t = Timers::default();
        TimingConfig {
            tx_delay_ms: t.tx_delay.as_millis() as u32,
            tx_tail_ms: t.tx_tail.as_millis() as u32,
            tot_s: t.tot.as_secs() as u32,
            rx_hang_ms: t.rx_hang.as_millis() as u32,
            rx_min_ms: t.rx_min.as_millis() as u32,
            rx_start_delay_ms: t.rx_start_delay.as_millis() as u32,
            rx_max_s: t.rx_max.as_secs() as u32,
            flap_max_starts: t.flap_max_starts as u32,
            flap_window_s: t.flap_window.as_secs() as u32,
            busy_policy: t.busy_policy,
            queue_max_age_s: t.queue_max_age.as_secs() as u32,
        }
    }
}

/// `courtesy_tone = { ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CourtesyToneConfig {
    pub hz: f32,
    pub ms: u32,
    pub level_dbfs: f32,
}

impl Default for CourtesyToneConfig {
    fn default() -> Self {
        CourtesyToneConfig {
            hz: 1000.0,
            ms: 150,
            level_dbfs: -20.0,
        }
    }
}

/// `cw_id = { ... }`: station identification in Morse code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CwIdConfig {
    /// The call sign (letters, digits, "/").
    pub call: String,
    /// Identify at most this often, and only after transmitting (minutes).
    #[serde(default = "default_id_interval")]
    pub interval_min: u32,
    #[serde(default = "default_wpm")]
    pub wpm: u32,
    #[serde(default = "default_pitch")]
    pub pitch_hz: f32,
    #[serde(default = "default_id_level")]
    pub level_dbfs: f32,
}

fn default_id_interval() -> u32 {
    10
}
fn default_wpm() -> u32 {
    20
}
fn default_pitch() -> f32 {
    800.0
}
fn default_id_level() -> f32 {
    -20.0
}

impl RadioConfig {
    /// The state machine's timers for this radio.
    pub fn timers(&self) -> Timers {
        let t = &self.timing;
        let ms = |v: u32| Duration::from_millis(v as u64);
        let s = |v: u32| Duration::from_secs(v as u64);
        Timers {
            tx_delay: ms(t.tx_delay_ms),
            tx_tail: ms(t.tx_tail_ms),
            tot: s(t.tot_s),
            rx_hang: ms(t.rx_hang_ms),
            rx_min: ms(t.rx_min_ms),
            rx_start_delay: ms(t.rx_start_delay_ms),
            rx_max: s(t.rx_max_s),
            flap_max_starts: t.flap_max_starts as usize,
            flap_window: s(t.flap_window_s),
            busy_policy: t.busy_policy,
            queue_max_age: s(t.queue_max_age_s),
            id_interval: self.cw_id.as_ref().map(|c| s(c.interval_min * 60)),
            courtesy_tone: self.courtesy_tone.is_some(),
        }
    }

    /// The courtesy tone and identification at `rate`.
    pub fn tones(&self, rate: u32) -> (Option<Vec<i16>>, Option<Vec<i16>>) {
        use crate::audio::tones;
        (
            self.courtesy_tone
                .as_ref()
                .map(|c| tones::beep(rate, c.hz, c.ms, c.level_dbfs)),
            self.cw_id
                .as_ref()
                .map(|c| tones::cw(rate, &c.call, c.wpm, c.pitch_hz, c.level_dbfs)),
        )
    }

    fn timing_problems(&self, key: &str, p: &mut Vec<String>) {
        let t = &self.timing;
        if !(1..=3600).contains(&t.tot_s) {
            p.push(format!(
                "{key}.timing.tot_s = {}: the time-out timer must be 1 to 3600 seconds",
                t.tot_s
            ));
        }
        for (name, v, max) in [
            ("tx_delay_ms", t.tx_delay_ms, 5000),
            ("tx_tail_ms", t.tx_tail_ms, 5000),
            ("rx_hang_ms", t.rx_hang_ms, 10_000),
            ("rx_min_ms", t.rx_min_ms, 10_000),
            ("rx_start_delay_ms", t.rx_start_delay_ms, 10_000),
        ] {
            if v > max {
                p.push(format!("{key}.timing.{name} = {v}: use 0 to {max}"));
            }
        }
        if t.rx_max_s == 0 {
            p.push(format!("{key}.timing.rx_max_s = 0: use at least 1 second"));
        }
        if t.flap_max_starts > 0 && t.flap_window_s == 0 {
            p.push(format!(
                "{key}.timing.flap_window_s = 0: use at least 1 second"
            ));
        }
        if let Some(c) = &self.courtesy_tone {
            if !(100.0..=4000.0).contains(&c.hz) || c.ms == 0 || c.ms > 2000 {
                p.push(format!(
                    "{key}.courtesy_tone: hz must be 100 to 4000 and ms 1 to 2000 (got {} Hz, {} ms)",
                    c.hz, c.ms
                ));
            }
            if !(-60.0..=0.0).contains(&c.level_dbfs) {
                p.push(format!(
                    "{key}.courtesy_tone.level_dbfs = {}: use -60 to 0",
                    c.level_dbfs
                ));
            }
        }
        if let Some(c) = &self.cw_id {
            if c.call.trim().is_empty() {
                p.push(format!("{key}.cw_id.call: must not be empty"));
            } else if let Err(ch) = crate::audio::tones::cw_supported(&c.call) {
                p.push(format!(
                    "{key}.cw_id.call = {:?}: {ch:?} has no Morse code",
                    c.call
                ));
            }
            if c.interval_min == 0 {
                p.push(format!("{key}.cw_id.interval_min = 0: use at least 1"));
            }
            if !(5..=60).contains(&c.wpm) {
                p.push(format!("{key}.cw_id.wpm = {}: use 5 to 60", c.wpm));
            }
            if !(300.0..=3000.0).contains(&c.pitch_hz) {
                p.push(format!(
                    "{key}.cw_id.pitch_hz = {}: use 300 to 3000",
                    c.pitch_hz
                ));
            }
            if !(-60.0..=0.0).contains(&c.level_dbfs) {
                p.push(format!(
                    "{key}.cw_id.level_dbfs = {}: use -60 to 0",
                    c.level_dbfs
                ));
            }
        }
    }
}

/// `audio = { backend = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum AudioConfig {
    /// Received audio from a WAV file (played once, paced in real time, then silence);
    /// transmitted audio appended to a WAV file.
    File {
        input: Option<PathBuf>,
        output: Option<PathBuf>,
    },
    /// A sound card through ALSA, by device name (`zello-gateway devices`); `backend =
    /// "cpal"` or `"alsa"`.
    #[serde(alias = "alsa")]
    Cpal(crate::audio::sound::SoundSettings),
}

/// `ptt = { type = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PttConfig {
    /// An in-process line (the simulated radio).
    Sim {},
    /// No PTT line: the radio keys on its own VOX.
    None {},
    /// A Raspberry Pi GPIO pin (BCM numbering).
    Gpio(GpioPttSettings),
    /// A line of a Linux GPIO character device (/dev/gpiochipN; Pi 5 and other boards).
    Gpiochip(GpioChipPttSettings),
    /// RTS and/or DTR of a serial device.
    Serial(SerialPttSettings),
    /// A CM108/CM119-family USB sound card's GPIO through /dev/hidrawN.
    Cm108(Cm108PttSettings),
    /// Hamlib's rigctld.
    Rigctld(RigctldPttSettings),
}

/// `carrier = { type = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CarrierConfig {
    /// Carrier follows the received audio level.
    Vox(VoxSettings),
    /// Carrier up during the given `[start_s, end_s]` spans of the input.
    Schedule { on: Vec<[f64; 2]> },
    /// Always up.
    Always {},
    /// Never up (receive-only from Zello).
    None {},
    /// A Raspberry Pi GPIO input (COS/COR line).
    Gpio(GpioCarrierSettings),
    /// A line of a Linux GPIO character device.
    Gpiochip(GpioChipCarrierSettings),
    /// CTS, DSR or DCD of a serial device.
    Serial(SerialCarrierSettings),
    /// A CM108/CM119-family USB sound card's HID input bit.
    Cm108(Cm108CarrierSettings),
    /// Hamlib's rigctld (`get_dcd`, polled).
    Rigctld(RigctldCarrierSettings),
}

impl Default for PttConfig {
    fn default() -> Self {
        PttConfig::Sim {}
    }
}

impl Default for CarrierConfig {
    fn default() -> Self {
        CarrierConfig::Vox(VoxSettings::default())
    }
}

/// `codec = { ... }`: how this radio's audio is encoded for Zello.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodecConfig {
    /// 20, 40 or 60 ms (60 is what the Zello apps send).
    pub frame_ms: u8,
    /// 1 or 2 frames in each packet.
    pub frames_per_packet: u8,
    /// Bits per second; unset lets Opus choose.
    pub bitrate: Option<i32>,
    /// 0 (cheapest) to 10 (best).
    pub complexity: u8,
    /// In-band forward error correction (helps on lossy networks).
    pub fec: bool,
    /// Variable bitrate.
    pub vbr: bool,
}

/// The encoder's own defaults, so the configuration and the codec cannot drift apart.
impl Default for CodecConfig {
    fn default() -> Self {
        let e = crate::audio::opus::EncoderSettings::default();
        CodecConfig {
            frame_ms: e.frame_ms,
            frames_per_packet: e.frames_per_packet,
            bitrate: e.bitrate,
            complexity: e.complexity,
            fec: e.fec,
            vbr: e.vbr,
        }
    }
}

impl CodecConfig {
    /// The codec header this radio's messages carry.
    pub fn header(&self) -> Result<CodecHeader, CodecHeaderError> {
        CodecHeader::new(
            crate::audio::CODEC_RATE,
            self.frames_per_packet,
            self.frame_ms,
        )
    }
}

/// For the tests of files whose problems are all listed at once (the gateway's configuration
/// and the Work admin file): `problems` holds `count` of them and the error's `text` names
/// each of `needles`.
#[cfg(test)]
pub(crate) fn assert_lists_problems(
    problems: &[String],
    text: &str,
    count: usize,
    needles: &[&str],
) {
    assert_eq!(problems.len(), count, "{problems:#?}");
    for needle in needles {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[zello]
server = "ws://127.0.0.1:8800/ws"
username = "gateway1"
password = "secret"
auth_token_file = "/etc/zello-gateway/token.jwt"
platform_name = "Zello Radio Gateway"

[[radio]]
name = "radio1"
channel = "Dispatch"
audio = { backend = "file", input = "rx.wav", output = "tx.wav" }
ptt = { type = "sim" }
carrier = { type = "vox" }
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", Path::new("/cfg"))
    }

    /// The error of EXAMPLE with `from` replaced by `to`, which must not parse.
    fn error_with(from: &str, to: &str) -> String {
        parse(&EXAMPLE.replace(from, to)).unwrap_err().to_string()
    }

    /// EXAMPLE with `from` replaced by `to` must not parse, and its error names `needle`.
    fn assert_refused(from: &str, to: &str, needle: &str) {
        let e = error_with(from, to);
        assert!(e.contains(needle), "{from} -> {to}: {e}");
    }

    /// Parses `text`, which must fail listing `count` problems that name each of `needles`.
    fn assert_invalid(text: &str, count: usize, needles: &[&str]) {
        let e = parse(text).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &e else {
            panic!("{e}")
        };
        assert_lists_problems(problems, &e.to_string(), count, needles);
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.radios.len(), 1);
        let r = &c.radios[0];
        assert_eq!(r.channel, "Dispatch");
        assert!(matches!(r.ptt, PttConfig::Sim {}));
        assert!(matches!(r.carrier, CarrierConfig::Vox(_)));
        assert_eq!(r.codec.header().unwrap(), CodecHeader::default());
        let s = c.session_config().unwrap();
        assert_eq!(s.channels, ["Dispatch"]);
        assert_eq!(s.password.expose(), "secret");
        assert!(
            matches!(s.auth_token, TokenSource::File(ref p) if p == Path::new("/etc/zello-gateway/token.jwt"))
        );
        assert_eq!(c.resolve(Path::new("rx.wav")), PathBuf::from("/cfg/rx.wav"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert_refused("platform_name", "platfrom_name", "platfrom_name");
        assert_refused("type = \"sim\"", "type = \"sim\", pin = 4", "pin");
        assert_refused("type = \"sim\"", "type = \"laser\"", "laser");
    }

    #[test]
    fn a_syntax_error_names_line_and_key_but_never_the_secret() {
        for (line, broken) in [
            ("password = \"Pw-S3cret-7f3a9c", 5),
            ("password = \"\"\"Pw-S3cret-7f3a9c", 5),
            ("password = 'Pw-S3cret-7f3a9c", 5),
        ] {
            let text = EXAMPLE.replace("password = \"secret\"", line);
            let e = parse(&text).unwrap_err().to_string();
            assert!(!e.contains("S3cret"), "{e}");
            assert!(e.contains(&format!("line {broken}")), "{e}");
            assert!(e.contains("zello.password"), "{e}");
            assert!(e.starts_with("config file test.toml: "), "{e}");
        }
        // A value of the wrong kind for a secret key: named, its value not shown.
        let e = error_with("\"secret\"", "73519");
        assert!(e.contains("zello.password"), "{e}");
        assert!(!e.contains("73519"), "{e}");
        // A string in the wrong place may be a secret too (a token given as `token`).
        let e = error_with(
            "password = \"secret\"",
            "password = \"secret\"\ntoken = \"eyJ-S3cret\"",
        );
        assert!(e.contains("zello.token: invalid type: string"), "{e}");
        assert!(!e.contains("S3cret"), "{e}");
        // Other keys' wrong values are shown: they help and hide nothing.
        assert_refused(
            "\"gateway1\"",
            "12345",
            "zello.username: invalid type: integer `12345`",
        );
    }

    #[test]
    fn secret_keys_are_told_apart() {
        for key in [
            "password",
            "auth_token",
            "refresh_token",
            "private_key",
            "api_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "password_file",
            "private_key_file",
            "username",
            "server",
            "pin",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn every_unknown_key_is_listed_at_once_with_its_path() {
        let text = EXAMPLE
            .replace("username", "usernme")
            .replace("type = \"sim\"", "type = \"gpio\", pinn = 4")
            .replace("platform_name", "platfrom_name");
        assert_invalid(
            &text,
            4,
            &[
                "zello.usernme: unknown field `usernme`: did you mean `username`?",
                "zello.platfrom_name: unknown field `platfrom_name`: did you mean `platform_name`?",
                "radio[0] (radio1).ptt.pinn: unknown field `pinn`: did you mean `pin`?",
                // Taking `pinn` out leaves the gpio PTT without its pin.
                "radio[0] (radio1).ptt: missing field `pin`",
            ],
        );
        // Far from every known key: the known keys are listed instead.
        assert_refused(
            "platform_name",
            "colour",
            "zello.colour: unknown field `colour`, expected one of",
        );
    }

    #[test]
    fn radios_sharing_a_sound_card_or_a_ptt_line_are_warned_about() {
        let radio = |name: &str, audio: &str, ptt: &str| {
            format!(
                "\n[[radio]]\nname = \"{name}\"\nchannel = \"C\"\naudio = {audio}\nptt = {ptt}\n"
            )
        };
        let card =
            |dev: &str| format!("{{ backend = \"cpal\", input = \"{dev}\", output = \"{dev}\" }}");
        let file = "{ backend = \"file\" }";
        let head = &EXAMPLE[..EXAMPLE.find("[[radio]]").unwrap()];
        for (a, b, shared) in [
            (
                radio(
                    "vhf1",
                    &card("plughw:CARD=Device,DEV=0"),
                    "{ type = \"none\" }",
                ),
                radio(
                    "uhf1",
                    &card("plughw:CARD=Device,DEV=0"),
                    "{ type = \"none\" }",
                ),
                "the sound device \"plughw:CARD=Device,DEV=0\"",
            ),
            (
                radio(
                    "vhf1",
                    file,
                    "{ type = \"serial\", device = \"/dev/ttyUSB0\", lines = [\"RTS\"] }",
                ),
                radio(
                    "uhf1",
                    file,
                    "{ type = \"serial\", device = \"/dev/ttyUSB0\", lines = [\"!RTS\", \"DTR\"] }",
                ),
                "the PTT line /dev/ttyUSB0 RTS",
            ),
            (
                radio("vhf1", file, "{ type = \"gpio\", pin = 17 }"),
                radio("uhf1", file, "{ type = \"gpio\", pin = 17 }"),
                "the PTT line gpio 17",
            ),
            (
                radio(
                    "vhf1",
                    file,
                    "{ type = \"gpiochip\", chip = \"/dev/gpiochip0\", line = 4 }",
                ),
                radio(
                    "uhf1",
                    file,
                    "{ type = \"gpiochip\", chip = \"/dev/gpiochip0\", line = 4 }",
                ),
                "the PTT line /dev/gpiochip0 line 4",
            ),
            (
                radio(
                    "vhf1",
                    file,
                    "{ type = \"cm108\", device = \"/dev/hidraw0\", gpio = 3 }",
                ),
                radio(
                    "uhf1",
                    file,
                    "{ type = \"cm108\", device = \"/dev/hidraw0\", gpio = 3 }",
                ),
                "the hidraw node /dev/hidraw0 gpio 3",
            ),
            (
                radio(
                    "vhf1",
                    file,
                    "{ type = \"rigctld\", address = \"127.0.0.1:4532\" }",
                ),
                radio(
                    "uhf1",
                    file,
                    "{ type = \"rigctld\", address = \"127.0.0.1:4532\" }",
                ),
                "the rigctld at 127.0.0.1:4532",
            ),
        ] {
            let c = parse(&format!("{head}{a}{b}")).unwrap();
            let w = c.shared_device_warnings();
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].starts_with("radio[0] (vhf1) and radio[1] (uhf1) share "),
                "{w:?}"
            );
            assert!(w[0].contains(shared), "{shared} missing in {w:?}");
        }
        // Different lines of one device, different pins: nothing to say.
        let c = parse(&format!(
            "{head}{}{}",
            radio(
                "vhf1",
                file,
                "{ type = \"serial\", device = \"/dev/ttyUSB0\", lines = [\"RTS\"] }"
            ),
            radio(
                "uhf1",
                file,
                "{ type = \"serial\", device = \"/dev/ttyUSB0\", lines = [\"DTR\"] }"
            ),
        ))
        .unwrap();
        assert!(c.shared_device_warnings().is_empty());
        assert!(parse(EXAMPLE).unwrap().shared_device_warnings().is_empty());
    }

    #[test]
    fn every_problem_is_listed() {
        let text = EXAMPLE
            .replace("Zello Radio Gateway", "Radio Bridge")
            .replace("channel = \"Dispatch\"", "channel = \"\"")
            .replace("ws://127.0.0.1:8800/ws", "ws://192.0.2.1/ws")
            .replace(
                "carrier = { type = \"vox\" }",
                "carrier = { type = \"vox\", open_dbfs = -50, close_dbfs = -40 }\ncodec = { frame_ms = 30 }",
            );
        assert_invalid(
            &text,
            5,
            &[
                "zello.platform_name",
                "zello.server",
                "radio[0].channel",
                "radio[0].carrier",
                "radio[0].codec",
            ],
        );
    }

    #[test]
    fn a_sound_card_period_out_of_range_is_named_and_alsa_is_a_backend_name() {
        let card = |extra: &str| {
            EXAMPLE.replace(
                "audio = { backend = \"file\", input = \"rx.wav\", output = \"tx.wav\" }",
                &format!("audio = {{ backend = \"alsa\", input = \"a\", output = \"b\"{extra} }}"),
            )
        };
        let c = parse(&card("")).unwrap();
        let AudioConfig::Cpal(a) = &c.radios[0].audio else {
            panic!("{:?}", c.radios[0].audio)
        };
        assert_eq!(a.period_ms, 20, "the default period");
        let e = parse(&card(", period_ms = 500")).unwrap_err().to_string();
        assert!(
            e.contains("radio[0].audio.period_ms = 500: use 2 to 100"),
            "{e}"
        );
        let e = parse(&card(", period = 20")).unwrap_err().to_string();
        assert!(e.contains("period"), "{e}");
    }

    #[test]
    fn secrets_and_duplicates() {
        let text = EXAMPLE.replace(
            "password = \"secret\"",
            "password = \"secret\"\npassword_file = \"pw\"",
        );
        assert!(parse(&text).unwrap_err().to_string().contains("not both"));
        let text = EXAMPLE.replace("password = \"secret\"\n", "");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("zello.password")
        );
        let twice = format!(
            "{EXAMPLE}\n[[radio]]\nname = \"radio1\"\nchannel = \"B\"\naudio = {{ backend = \"file\" }}\n"
        );
        assert!(
            parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("radio[1].name")
        );
        let c = parse(EXAMPLE).unwrap();
        assert!(!format!("{c:?}").contains("secret\""));
    }

    #[test]
    fn password_file_is_read() {
        let dir = std::env::temp_dir().join(format!("zg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let text = EXAMPLE.replace("password = \"secret\"", "password_file = \"pw\"");
        let c = Config::parse(&text, "t", &dir).unwrap();
        assert_eq!(c.password().unwrap().expose(), "from-file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn schedule_carrier_and_defaults() {
        let text = EXAMPLE.replace(
            "carrier = { type = \"vox\" }",
            "carrier = { type = \"schedule\", on = [[0.5, 3.0], [4, 2]] }",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("radio[0].carrier.on[1]"), "{e}");
        let minimal = "[zello]\nserver = \"ws://127.0.0.1:1/ws\"\n[[radio]]\nname = \"r\"\nchannel = \"c\"\naudio = { backend = \"file\" }\n";
        let c = parse(minimal).unwrap();
        assert_eq!(c.zello.platform_name, DEFAULT_PLATFORM_NAME);
        assert!(matches!(c.radios[0].carrier, CarrierConfig::Vox(_)));
    }

    #[test]
    fn every_interface_of_the_issue_example_parses() {
        let ptts = [
            r#"ptt = { type = "gpio", pin = 17, active_low = false }"#,
            r#"ptt = { type = "gpiochip", chip = "/dev/gpiochip0", line = 17, active_low = false }"#,
            r#"ptt = { type = "serial", device = "/dev/ttyUSB0", lines = ["DTR", "!RTS"] }"#,
            r#"ptt = { type = "cm108", device = "auto", gpio = 3, invert = false }"#,
            r#"ptt = { type = "rigctld", address = "127.0.0.1:4532" }"#,
            r#"ptt = { type = "none" }"#,
        ];
        let carriers = [
            r#"carrier = { type = "gpio", pin = 27, active_low = true, pull = "up", debounce_ms = 20 }"#,
            r#"carrier = { type = "serial", device = "/dev/ttyUSB0", line = "DCD", invert = false }"#,
            r#"carrier = { type = "cm108", device = "auto", bit = "VOL_DN", invert = false }"#,
            r#"carrier = { type = "rigctld", address = "127.0.0.1:4532", poll_ms = 100 }"#,
            r#"carrier = { type = "vox", open_dbfs = -35, close_dbfs = -40, attack_ms = 20, hang_ms = 300 }"#,
            r#"carrier = { type = "always" }"#,
        ];
        let timing = r#"timing = { tx_delay_ms = 200, tx_tail_ms = 100, tot_s = 180, rx_hang_ms = 400, rx_min_ms = 250, rx_start_delay_ms = 300, busy_policy = "queue", queue_max_age_s = 30 }"#;
        for ptt in ptts {
            for carrier in carriers {
                let text = EXAMPLE.replace("ptt = { type = \"sim\" }", ptt).replace(
                    "carrier = { type = \"vox\" }",
                    &format!("{carrier}\n{timing}"),
                );
                parse(&text).unwrap_or_else(|e| panic!("{ptt} / {carrier}: {e}"));
            }
        }
        // Unknown keys inside an interface's table are refused too (the first case), and so
        // are timings and CW ids that cannot be used.
        let vox = "carrier = { type = \"vox\" }";
        for (from, to, needle) in [
            (
                "ptt = { type = \"sim\" }",
                r#"ptt = { type = "gpio", pin = 17, polarity = "low" }"#,
                "polarity",
            ),
            (
                vox,
                "carrier = { type = \"vox\" }\ntiming = { tot_s = 0, busy_policy = \"queue\" }",
                "radio[0].timing.tot_s",
            ),
            (
                vox,
                "carrier = { type = \"vox\" }\ntiming = { busy_policy = \"maybe\" }",
                "maybe",
            ),
            (
                vox,
                "carrier = { type = \"vox\" }\ncw_id = { call = \"N0CALL!\" }",
                "radio[0].cw_id.call",
            ),
        ] {
            assert_refused(from, to, needle);
        }
    }

    /// EXAMPLE with `[zello.token]` instead of the token file.
    fn with_token(issuer: &str, key_file: &str) -> String {
        EXAMPLE
            .replace("auth_token_file = \"/etc/zello-gateway/token.jwt\"\n", "")
            .replace(
                "\n[[radio]]",
                &format!(
                    "\n[zello.token]\nissuer = \"{issuer}\"\nprivate_key_file = \"{key_file}\"\n\n[[radio]]"
                ),
            )
    }

    #[test]
    fn signed_tokens_from_the_token_table() {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let dir = tempfile::tempdir().unwrap();
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        std::fs::write(
            dir.path().join("zello-key.pem"),
            key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        let text = with_token("my-issuer", "zello-key.pem");
        let c = Config::parse(&text, "t.toml", dir.path()).unwrap();
        let t = c.zello.token.as_ref().unwrap();
        assert_eq!(t.issuer, "my-issuer");
        let s = c.session_config().unwrap();
        let TokenSource::Signed(signer) = &s.auth_token else {
            panic!("{:?}", s.auth_token)
        };
        assert_eq!(signer.issuer(), "my-issuer");
        let token = s.auth_token.token().unwrap().unwrap();
        assert_eq!(token.expose().split('.').count(), 3);
        assert_eq!(
            c.secret_files(),
            [(
                "zello.token.private_key_file",
                dir.path().join("zello-key.pem")
            )]
        );
    }

    #[test]
    fn token_table_problems_are_listed_with_the_others() {
        // Together with a token file, an empty issuer and another problem: all three listed.
        let text = with_token("", "key.pem")
            .replace(
                "password = \"secret\"",
                "password = \"secret\"\nauth_token = \"eyJ\"",
            )
            .replace("Zello Radio Gateway", "Radio Bridge");
        assert_invalid(
            &text,
            3,
            &[
                "zello.token: set [zello.token]",
                "not both",
                "zello.token.issuer: must not be empty",
                "zello.platform_name",
            ],
        );
        let text = with_token("iss", "key.pem").replace(
            "private_key_file = \"key.pem\"",
            "private_key_file = \"key.pem\"\naudience = \"x\"",
        );
        assert!(parse(&text).unwrap_err().to_string().contains("audience"));
        let text = with_token("iss", "key.pem").replace("private_key_file = \"key.pem\"\n", "");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("private_key_file")
        );
    }

    #[test]
    fn an_unusable_key_fails_the_session_config_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::parse(&with_token("iss", "absent.pem"), "gw.toml", dir.path()).unwrap();
        let e = c.session_config().unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("config file gw.toml: "), "{text}");
        assert!(text.contains("zello.token.private_key_file"), "{text}");
        assert!(
            text.contains(&dir.path().join("absent.pem").display().to_string()),
            "{text}"
        );
        std::fs::write(dir.path().join("absent.pem"), "junk").unwrap();
        let text = c.session_config().unwrap_err().to_string();
        assert!(text.contains("not a usable RSA private key"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn readable_secret_files_are_warned_about_by_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        for (name, mode) in [("pw", 0o644), ("token.jwt", 0o600)] {
            let f = dir.path().join(name);
            std::fs::write(&f, "x").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let text = EXAMPLE
            .replace("password = \"secret\"", "password_file = \"pw\"")
            .replace("/etc/zello-gateway/token.jwt", "token.jwt");
        let c = Config::parse(&text, "t", dir.path()).unwrap();
        assert_eq!(c.secret_files().len(), 2);
        let warnings = c.secret_file_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("zello.password_file: "),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
    }
}
