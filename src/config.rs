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

use crate::radio::vox::VoxSettings;
use crate::secret::Secret;
use crate::zello::auth::TokenSource;
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{DEFAULT_PLATFORM_NAME, SessionConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub zello: ZelloConfig,
    #[serde(rename = "radio", default)]
    pub radios: Vec<RadioConfig>,
    /// Where relative paths in the file are resolved from (the file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it came from, for messages.
    #[serde(skip)]
    pub source: String,
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
    #[serde(default = "default_platform_name")]
    pub platform_name: String,
    /// Allow plain ws:// to a host other than loopback.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Extra PEM certificates to trust (a private CA).
    pub ca_file: Option<PathBuf>,
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
}

/// `ptt = { type = ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum PttConfig {
    /// An in-process line (the simulated radio).
    Sim {},
    /// No PTT line: the radio keys on its own VOX.
    None {},
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
}

impl Default for CodecConfig {
    fn default() -> Self {
        CodecConfig {
            frame_ms: 60,
            frames_per_packet: 1,
            bitrate: None,
            complexity: 10,
        }
    }
}

impl CodecConfig {
    /// The codec header this radio's messages carry.
    pub fn header(&self) -> Result<CodecHeader, String> {
        CodecHeader::new(
            crate::audio::CODEC_RATE,
            self.frames_per_packet,
            self.frame_ms,
        )
        .map_err(|e| e.to_string())
    }
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses and validates text; `source` names it in messages, `base_dir` resolves relative
    /// paths.
    pub fn parse(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.to_string(),
            message: e.to_string(),
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.source = source.to_string();
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: source.to_string(),
                problems,
            })
        }
    }

    /// Every problem found, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let z = &self.zello;
        if !z.platform_name.to_ascii_lowercase().contains("gateway") {
            p.push(format!(
                "zello.platform_name = {:?}: must contain \"Gateway\" so Zello Alarms tracks the gateway",
                z.platform_name
            ));
        }
        if let Err(e) =
            crate::zello::session::SessionConfig::check_server(&z.server, z.allow_insecure)
        {
            p.push(format!("zello.server: {e}"));
        }
        if z.password.is_some() && z.password_file.is_some() {
            p.push("zello: set password or password_file, not both".into());
        }
        if z.auth_token.is_some() && z.auth_token_file.is_some() {
            p.push("zello: set auth_token or auth_token_file, not both".into());
        }
        if !z.username.is_empty() && z.password.is_none() && z.password_file.is_none() {
            p.push("zello.password: a username needs a password (or password_file)".into());
        }
        if self.radios.is_empty() {
            p.push("radio: at least one [[radio]] is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.radios.iter().enumerate() {
            let key = format!("radio[{i}]");
            if r.name.trim().is_empty() {
                p.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(r.name.clone()) {
                p.push(format!("{key}.name = {:?}: used by two radios", r.name));
            }
            if r.channel.trim().is_empty() {
                p.push(format!("{key}.channel: must not be empty"));
            }
            if let Err(e) = r.codec.header() {
                p.push(format!("{key}.codec: {e}"));
            } else if r.codec.frame_ms < 20 {
                p.push(format!(
                    "{key}.codec.frame_ms = {}: use 20, 40 or 60",
                    r.codec.frame_ms
                ));
            }
            if r.codec.complexity > 10 {
                p.push(format!(
                    "{key}.codec.complexity = {}: use 0 to 10",
                    r.codec.complexity
                ));
            }
            if let CarrierConfig::Vox(v) = &r.carrier
                && let Err(e) = v.validate()
            {
                p.push(format!("{key}.carrier: {e}"));
            }
            if let CarrierConfig::Schedule { on } = &r.carrier {
                for (j, [a, b]) in on.iter().enumerate() {
                    if !(a.is_finite() && b.is_finite() && *a >= 0.0 && a < b) {
                        p.push(format!(
                            "{key}.carrier.on[{j}] = [{a}, {b}]: needs 0 <= start < end (seconds)"
                        ));
                    }
                }
            }
        }
        p
    }

    /// Resolves a path from the file relative to the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The password, read from its file if configured that way.
    pub fn password(&self) -> Result<Secret, ConfigError> {
        if let Some(p) = &self.zello.password {
            return Ok(p.clone());
        }
        if let Some(f) = &self.zello.password_file {
            let path = self.resolve(f);
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            return Ok(Secret::new(text.trim_end_matches(['\n', '\r'])));
        }
        Ok(Secret::default())
    }

    /// The session settings for this configuration.
    pub fn session_config(&self) -> Result<SessionConfig, ConfigError> {
        let z = &self.zello;
        let mut channels: Vec<String> = Vec::new();
        for r in &self.radios {
            if !channels.contains(&r.channel) {
                channels.push(r.channel.clone());
            }
        }
        let auth_token = match (&z.auth_token, &z.auth_token_file) {
            (Some(t), _) => TokenSource::Static(t.clone()),
            (None, Some(f)) => TokenSource::File(self.resolve(f)),
            (None, None) => TokenSource::None,
        };
        Ok(SessionConfig {
            server: z.server.clone(),
            username: z.username.clone(),
            password: self.password()?,
            auth_token,
            channels,
            platform_name: z.platform_name.clone(),
            allow_insecure: z.allow_insecure,
            ca_file: z.ca_file.as_ref().map(|f| self.resolve(f)),
            ..SessionConfig::default()
        })
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
        let e = parse(&EXAMPLE.replace("platform_name", "platfrom_name")).unwrap_err();
        assert!(e.to_string().contains("platfrom_name"), "{e}");
        let e = parse(&EXAMPLE.replace("type = \"sim\"", "type = \"sim\", pin = 4")).unwrap_err();
        assert!(e.to_string().contains("pin"), "{e}");
        let e = parse(&EXAMPLE.replace("type = \"sim\"", "type = \"laser\"")).unwrap_err();
        assert!(e.to_string().contains("laser"), "{e}");
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
        let e = parse(&text).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
        let all = e.to_string();
        for needle in [
            "zello.platform_name",
            "zello.server",
            "radio[0].channel",
            "radio[0].carrier",
            "radio[0].codec",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
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
}
