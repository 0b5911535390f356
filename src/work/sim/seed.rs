//! What the emulated network starts with: a TOML seed file, or the built-in demo network.
//!
//! ```toml
//! api_key = "sim-api-key"
//! max_users = 20              # optional limits (code 407 beyond them)
//! max_gateways = 3
//! templates = ["drivers"]     # user templates that exist
//!
//! [[user]]
//! name = "admin"
//! password = "admin"
//! admin = true                # may use the API (others get code 302)
//! channels = ["Dispatch"]     # also: gateway, full_name, email, job, tags
//!
//! [[channel]]
//! name = "Dispatch"           # also: shared (default true), invisible
//! role = [{ name = "drivers", to = ["dispatchers"], members = ["driver1"] }]
//!
//! [[message]]
//! type = "voice"              # voice, image or call_alert
//! sender = "driver1"
//! channel = "Dispatch"        # or to = "USER" for a direct message
//! ago_s = 600                 # sent this long before the emulator started
//! duration_ms = 3000          # voice: a generated clip this long, unless media_file
//! # media_file = "clip.wav"   # the file served for it (relative to the seed file)
//! # text = "..."              # a call alert's text
//!
//! [[location]]
//! user = "driver1"
//! latitude = 32.80
//! longitude = -96.79
//! ago_s = 60                  # also: speed_kmh, heading, altitude, accuracy, battery
//! ```

use super::state::{SimChannel, SimMedia, SimReport, SimUser, WorkData};
use crate::work::types::{Limits, Message, RoleSettings};
use crate::work::wire::{md5_hex, password_hash};
use bytes::Bytes;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The seed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkSeed {
    /// The API key logins must be hashed with.
    #[serde(default = "default_api_key")]
    pub api_key: String,
    /// The most users (gateways not counted).
    pub max_users: Option<u64>,
    /// The most gateways.
    pub max_gateways: Option<u64>,
    /// User templates that exist.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Users and gateways.
    #[serde(default, rename = "user")]
    pub users: Vec<SeedUser>,
    /// Channels.
    #[serde(default, rename = "channel")]
    pub channels: Vec<SeedChannel>,
    /// The history.
    #[serde(default, rename = "message")]
    pub messages: Vec<SeedMessage>,
    /// Location reports.
    #[serde(default, rename = "location")]
    pub locations: Vec<SeedLocation>,
}

fn default_api_key() -> String {
    "sim-api-key".into()
}

fn yes() -> bool {
    true
}

/// A `[[user]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Username.
    pub name: String,
    /// Password in clear.
    pub password: String,
    /// May use the API.
    #[serde(default)]
    pub admin: bool,
    /// A gateway account.
    #[serde(default)]
    pub gateway: bool,
    /// Display name.
    #[serde(default)]
    pub full_name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: String,
    /// Position.
    #[serde(default)]
    pub job: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Channels the user is in.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// A `[[channel]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedChannel {
    /// Name.
    pub name: String,
    /// A group channel.
    #[serde(default = "yes")]
    pub shared: bool,
    /// Hidden.
    #[serde(default)]
    pub invisible: bool,
    /// Its roles.
    #[serde(default, rename = "role")]
    pub roles: Vec<SeedRole>,
}

/// A channel's `role`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRole {
    /// Name.
    pub name: String,
    /// Listen only.
    #[serde(default)]
    pub listen_only: bool,
    /// May not leave.
    #[serde(default)]
    pub no_disconnect: bool,
    /// May send alerts.
    #[serde(default)]
    pub allow_alerts: bool,
    /// Roles it talks to.
    #[serde(default)]
    pub to: Vec<String>,
    /// Users with this role.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A `[[message]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMessage {
    /// `voice`, `image` or `call_alert`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who sent it.
    pub sender: String,
    /// The channel it went to.
    pub channel: Option<String>,
    /// The user it went to.
    pub to: Option<String>,
    /// Seconds before the emulator started.
    #[serde(default)]
    pub ago_s: u64,
    /// Voice length.
    #[serde(default = "default_duration")]
    pub duration_ms: u64,
    /// A call alert's text.
    pub text: Option<String>,
    /// A voice message's transcription.
    pub transcription: Option<String>,
    /// The file to serve as its media.
    pub media_file: Option<PathBuf>,
}

fn default_duration() -> u64 {
    3000
}

/// A `[[location]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLocation {
    /// The user.
    pub user: String,
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Seconds before the emulator started.
    #[serde(default)]
    pub ago_s: u64,
    /// km/h.
    #[serde(default)]
    pub speed_kmh: f64,
    /// Degrees.
    #[serde(default)]
    pub heading: f64,
    /// Metres.
    #[serde(default)]
    pub altitude: f64,
    /// Metres.
    #[serde(default = "default_accuracy")]
    pub accuracy: f64,
    /// 0 to 100.
    #[serde(default = "default_battery")]
    pub battery: u64,
}

fn default_accuracy() -> f64 {
    10.0
}
fn default_battery() -> u64 {
    80
}

/// The demo network `sim --work-listen` serves without a seed file.
pub const DEMO_SEED: &str = r#"
api_key = "sim-api-key"
max_users = 20
max_gateways = 3
templates = ["drivers"]

[[user]]
name = "admin"
password = "admin"
admin = true
full_name = "Network Admin"

[[user]]
name = "viewer"
password = "viewer"
full_name = "Not an admin"

[[user]]
name = "dispatcher1"
password = "dispatch"
full_name = "Dispatch Desk"
channels = ["Dispatch", "Yard"]

[[user]]
name = "driver1"
password = "drive"
full_name = "Truck 1"
channels = ["Dispatch"]

[[user]]
name = "driver2"
password = "drive"
full_name = "Truck 2"
channels = ["Dispatch", "Yard"]

[[channel]]
name = "Dispatch"
role = [
  { name = "dispatchers", no_disconnect = true, allow_alerts = true, to = ["dispatchers", "drivers"], members = ["dispatcher1"] },
  { name = "drivers", no_disconnect = true, to = ["dispatchers"], members = ["driver1", "driver2"] },
]

[[channel]]
name = "Yard"

[[message]]
type = "voice"
sender = "dispatcher1"
channel = "Dispatch"
ago_s = 3600
duration_ms = 2500

[[message]]
type = "voice"
sender = "driver1"
channel = "Dispatch"
ago_s = 3000
duration_ms = 4000
transcription = "Truck one at the north gate"

[[message]]
type = "image"
sender = "driver2"
channel = "Dispatch"
ago_s = 2400

[[message]]
type = "call_alert"
sender = "dispatcher1"
to = "driver2"
ago_s = 1800
text = "Call the desk"

[[message]]
type = "voice"
sender = "driver2"
channel = "Yard"
ago_s = 900
duration_ms = 3000

[[message]]
type = "voice"
sender = "dispatcher1"
to = "driver1"
ago_s = 600
duration_ms = 1500

[[location]]
user = "driver1"
latitude = 32.7767
longitude = -96.7970
ago_s = 1800
speed_kmh = 40

[[location]]
user = "driver1"
latitude = 32.7900
longitude = -96.8000
ago_s = 900
speed_kmh = 55
heading = 350

[[location]]
user = "driver1"
latitude = 32.8050
longitude = -96.8010
ago_s = 60
speed_kmh = 20
heading = 10

[[location]]
user = "driver2"
latitude = 32.7500
longitude = -96.8300
ago_s = 7200
"#;

/// A 1×1 PNG, served for images without a file.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// A generated speech-like clip of `ms` as a 16 kHz mono WAV file.
fn voice_wav(ms: u64, seed: u64) -> Bytes {
    const RATE: u32 = 16_000;
    let samples = crate::audio::speech::speech_like(RATE, ms as f32 / 1000.0, seed);
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
        for s in samples {
            let _ = w.write_sample(s);
        }
        let _ = w.finalize();
    }
    Bytes::from(out.into_inner())
}

/// Why a seed file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not a seed (bad TOML, an unknown key).
    #[error("{}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Parse {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        #[source]
        source: toml::de::Error,
    },
    /// The network it describes does not hold together: every problem, each naming its key.
    #[error("{}", problems.join("; "))]
    Inconsistent { problems: Vec<String> },
}

impl WorkSeed {
    /// Reads a seed file.
    pub fn load(path: &Path) -> Result<(WorkSeed, PathBuf), SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let seed = WorkSeed::parse(&text).map_err(|e| match e {
            SeedError::Parse { source, .. } => SeedError::Parse {
                path: Some(path.to_path_buf()),
                source,
            },
            other => other,
        })?;
        Ok((seed, path.parent().unwrap_or(Path::new(".")).to_path_buf()))
    }

    /// Parses seed text.
    pub fn parse(text: &str) -> Result<WorkSeed, SeedError> {
        toml::from_str(text).map_err(|source| SeedError::Parse { path: None, source })
    }

    /// The built-in demo network.
    pub fn demo() -> WorkSeed {
        WorkSeed::parse(DEMO_SEED).expect("the demo seed parses")
    }

    /// The network this seed describes at time `now` (Unix seconds); media files are read
    /// relative to `base_dir`. Every inconsistency is listed.
    pub fn build(&self, now: u64, base_dir: &Path) -> Result<WorkData, SeedError> {
        let mut problems = Vec::new();
        let mut data = WorkData {
            api_key: self.api_key.clone(),
            limits: Limits {
                max_users: self.max_users,
                max_gateways: self.max_gateways,
            },
            templates: self.templates.iter().cloned().collect(),
            ..WorkData::default()
        };
        for c in &self.channels {
            let mut channel = SimChannel {
                name: c.name.clone(),
                shared: c.shared,
                invisible: c.invisible,
                ..SimChannel::default()
            };
            for r in &c.roles {
                channel.roles.insert(
                    r.name.clone(),
                    RoleSettings {
                        listen_only: r.listen_only,
                        no_disconnect: r.no_disconnect,
                        allow_alerts: r.allow_alerts,
                        to: r.to.clone(),
                    },
                );
                for m in &r.members {
                    channel.assignments.insert(m.clone(), r.name.clone());
                }
            }
            data.channels.insert(c.name.clone(), channel);
        }
        for u in &self.users {
            for c in &u.channels {
                if !data.channels.contains_key(c) {
                    problems.push(format!("user {:?}: no channel {c:?}", u.name));
                }
            }
            data.users.insert(
                u.name.clone(),
                SimUser {
                    name: u.name.clone(),
                    password_md5: password_hash(&u.password),
                    email: u.email.clone(),
                    full_name: u.full_name.clone(),
                    job: u.job.clone(),
                    admin: u.admin,
                    gateway: u.gateway,
                    tags: u.tags.clone(),
                    channels: u.channels.iter().cloned().collect(),
                    ..SimUser::default()
                },
            );
        }
        for c in data.channels.values() {
            for m in c.assignments.keys() {
                if !data.users.contains_key(m) {
                    problems.push(format!("channel {:?}: no user {m:?} for a role", c.name));
                }
            }
        }
        for (i, m) in self.messages.iter().enumerate() {
            let id = i as u64 + 1;
            let key = format!("message[{i}]");
            if !data.users.contains_key(&m.sender) {
                problems.push(format!("{key}.sender: no user {:?}", m.sender));
            }
            let (recipient, recipient_type, channel_users) = match (&m.channel, &m.to) {
                (Some(c), None) => {
                    if !data.channels.contains_key(c) {
                        problems.push(format!("{key}.channel: no channel {c:?}"));
                    }
                    let users: Vec<String> = data
                        .users
                        .values()
                        .filter(|u| u.channels.contains(c) && u.name != m.sender)
                        .map(|u| u.name.clone())
                        .collect();
                    (c.clone(), "channel", Some(users))
                }
                (None, Some(u)) => {
                    if !data.users.contains_key(u) {
                        problems.push(format!("{key}.to: no user {u:?}"));
                    }
                    (u.clone(), "user", None)
                }
                _ => {
                    problems.push(format!("{key}: give channel or to, one of them"));
                    continue;
                }
            };
            let media_key = md5_hex(format!("media-{id}-{}", m.ago_s).as_bytes());
            let media = match (m.kind.as_str(), &m.media_file) {
                ("call_alert", _) => None,
                ("voice" | "image", Some(file)) => {
                    let path = base_dir.join(file);
                    match std::fs::read(&path) {
                        Ok(bytes) => Some(SimMedia {
                            kind: m.kind.clone(),
                            ext: path
                                .extension()
                                .map(|e| e.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "bin".into()),
                            bytes: Bytes::from(bytes),
                        }),
                        Err(e) => {
                            problems.push(format!(
                                "{key}.media_file: cannot read {}: {e}",
                                path.display()
                            ));
                            None
                        }
                    }
                }
                ("voice", None) => Some(SimMedia {
                    kind: "voice".into(),
                    ext: "wav".into(),
                    bytes: voice_wav(m.duration_ms, id),
                }),
                ("image", None) => Some(SimMedia {
                    kind: "image".into(),
                    ext: "png".into(),
                    bytes: Bytes::from_static(TINY_PNG),
                }),
                (other, _) => {
                    problems.push(format!(
                        "{key}.type = {other:?}: use voice, image or call_alert"
                    ));
                    None
                }
            };
            let ts = now.saturating_sub(m.ago_s);
            let voice = m.kind == "voice";
            data.messages.push(Message {
                id,
                kind: m.kind.clone(),
                ts,
                sender: m.sender.clone(),
                recipient,
                recipient_type: recipient_type.into(),
                media_key: media.as_ref().map(|_| media_key.clone()),
                duration: voice.then_some(m.duration_ms),
                channel_users,
                image_ts: (m.kind == "image").then_some(ts),
                image_source: (m.kind == "image").then(|| "camera".into()),
                text: (m.kind == "call_alert").then(|| m.text.clone().unwrap_or_default()),
                transcription: voice.then(|| m.transcription.clone().unwrap_or_default()),
                transcription_inaccurate: voice.then(|| "no".into()),
                ..Message::default()
            });
            if let Some(media) = media {
                data.media.insert(media_key, media);
            }
        }
        // Ids in the order of sending, as on the server.
        data.messages.sort_by_key(|m| (m.ts, m.id));
        for (i, m) in data.messages.iter_mut().enumerate() {
            m.id = i as u64 + 1;
        }
        for (i, l) in self.locations.iter().enumerate() {
            if !data.users.contains_key(&l.user) {
                problems.push(format!("location[{i}].user: no user {:?}", l.user));
            }
            data.reports.push(SimReport {
                id: md5_hex(format!("report-{i}").as_bytes()),
                user: l.user.clone(),
                ts: now.saturating_sub(l.ago_s),
                latitude: l.latitude,
                longitude: l.longitude,
                speed_kmh: l.speed_kmh,
                heading: l.heading,
                altitude: l.altitude,
                accuracy: l.accuracy,
                battery: l.battery,
            });
        }
        data.reports.sort_by_key(|r| r.ts);
        if problems.is_empty() {
            Ok(data)
        } else {
            Err(SeedError::Inconsistent { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_network_builds() {
        let data = WorkSeed::demo()
            .build(1_700_000_000, Path::new("."))
            .unwrap();
        assert!(data.users["admin"].admin);
        assert!(!data.users["viewer"].admin);
        assert_eq!(data.channels["Dispatch"].roles.len(), 2);
        assert_eq!(data.messages.len(), 6);
        assert!(
            data.messages
                .windows(2)
                .all(|w| w[0].ts <= w[1].ts && w[0].id < w[1].id)
        );
        // Voice and image media, none for the call alert.
        assert_eq!(data.media.len(), 5);
        let voice = &data.media[data.messages[0].media_key.as_ref().unwrap()];
        assert_eq!(&voice.bytes[..4], b"RIFF");
        assert_eq!(data.reports.len(), 4);
    }

    #[test]
    fn inconsistencies_are_listed() {
        let seed = WorkSeed::parse(
            "[[user]]\nname = \"a\"\npassword = \"p\"\nchannels = [\"Nope\"]\n\
             [[message]]\ntype = \"fax\"\nsender = \"b\"\nto = \"a\"\n",
        )
        .unwrap();
        let e = seed.build(0, Path::new(".")).unwrap_err().to_string();
        for needle in [
            "no channel \"Nope\"",
            "message[0].sender",
            "message[0].type",
        ] {
            assert!(e.contains(needle), "{needle} missing in {e}");
        }
        assert!(WorkSeed::parse("[[user]]\nname = \"a\"\npasword = \"p\"\n").is_err());
    }
}
