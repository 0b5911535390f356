//! The Zello Work API's requests and answers as types. Answers are read leniently: numbers
//! may come as strings ("count":"0") and booleans as 0/1, as the API reference shows.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};

/// Lenient readers for fields the server sends in more than one shape.
pub(crate) mod lenient {
    use super::*;
    use serde_json::Value;

    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// A u64 from a number or a numeric string; null or absent is 0.
    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        Ok(opt_u64(d)?.unwrap_or(0))
    }

    /// An optional u64 from a number or a numeric string.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            _ => number(&v)
                .filter(|n| *n >= 0.0)
                .map(|n| Some(n as u64))
                .ok_or_else(|| serde::de::Error::custom(format!("not a count: {v}"))),
        }
    }

    /// An optional f64 from a number or a numeric string.
    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Null => Ok(None),
            _ => number(&v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not a number: {v}"))),
        }
    }

    /// A bool from true/false, 0/1, "true"/"false" or "0"/"1"; null or absent is false.
    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(opt_bool(d)?.unwrap_or(false))
    }

    /// An optional bool, read like [`bool`].
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") || s == "yes" => Ok(Some(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") || s == "no" => Ok(Some(false)),
            _ => number(&v)
                .map(|n| Some(n != 0.0))
                .ok_or_else(|| serde::de::Error::custom(format!("not a boolean: {v}"))),
        }
    }

    /// A string, null being empty.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::Null => String::new(),
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

/// A user as `user/get` lists it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct User {
    /// The username.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// E-mail address.
    #[serde(default, deserialize_with = "lenient::string")]
    pub email: String,
    /// Whether the user may use the web console and the API.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub admin: bool,
    /// Whether the user may not start one-on-one conversations.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub limited_access: bool,
    /// Position.
    #[serde(default, deserialize_with = "lenient::string")]
    pub job: String,
    /// Display name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub full_name: String,
    /// The channels the user is in.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// The answer of `user/get`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct UserList {
    /// The users of this page.
    #[serde(default)]
    pub users: Vec<User>,
    /// The plan's limits.
    #[serde(default)]
    pub limits: Limits,
    /// Whether more users can be added.
    #[serde(default, rename = "canAddUsers", deserialize_with = "lenient::bool")]
    pub can_add_users: bool,
    /// Whether more gateways can be added.
    #[serde(default, rename = "canAddGateways", deserialize_with = "lenient::bool")]
    pub can_add_gateways: bool,
}

/// The limits of the network's plan or license.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// The most users.
    #[serde(default, rename = "maxUsers", deserialize_with = "lenient::opt_u64")]
    pub max_users: Option<u64>,
    /// The most gateways.
    #[serde(default, rename = "maxGateways", deserialize_with = "lenient::opt_u64")]
    pub max_gateways: Option<u64>,
}

/// Which users `user/get` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// One user by username.
    pub login: Option<String>,
    /// Gateways (`true`) instead of normal users.
    pub gateway: bool,
    /// At most this many.
    pub max: Option<u64>,
    /// From this index.
    pub start: Option<u64>,
}

/// The fields of `user/save`. Unset options are not sent, so the server keeps them.
#[derive(Debug, Clone, Default)]
pub struct UserSave {
    /// The username; the user is created when it does not exist.
    pub name: String,
    /// The new password in clear: it is sent as its md5, as the API wants. Needed for a new
    /// user.
    pub password: Option<Secret>,
    /// E-mail address.
    pub email: Option<String>,
    /// Display name.
    pub full_name: Option<String>,
    /// Position.
    pub job: Option<String>,
    /// Web console and API access.
    pub admin: Option<bool>,
    /// No one-on-one conversations.
    pub limited_access: Option<bool>,
    /// A gateway account.
    pub gateway: Option<bool>,
    /// Tags to assign (replacing the user's tags).
    pub tags: Option<Vec<String>>,
    /// Fail with code 405 instead of updating an existing user.
    pub add: bool,
}

/// A channel as `channel/get` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Channel {
    /// Its name.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// Number of members.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub count: u64,
    /// A group channel (false: a dynamic one).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub is_shared: bool,
    /// Hidden.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub is_invisible: bool,
}

/// Which channels `channel/get` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelQuery {
    /// One channel by name.
    pub name: Option<String>,
    /// At most this many.
    pub max: Option<u64>,
    /// From this index.
    pub start: Option<u64>,
}

/// The fields of `channel/add`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewChannel {
    /// The name.
    pub name: String,
    /// A group channel (`true`) or a dynamic one (`false`, the server's default).
    pub shared: Option<bool>,
    /// Hidden (with `shared`).
    pub invisible: Option<bool>,
    /// Tags to assign.
    pub tags: Vec<String>,
}

/// A channel role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Role {
    /// Its name.
    pub name: String,
    /// What members with this role may do.
    pub settings: RoleSettings,
}

/// The settings of a channel role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoleSettings {
    /// May only listen.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub listen_only: bool,
    /// May not leave the channel.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub no_disconnect: bool,
    /// May send alerts.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub allow_alerts: bool,
    /// The roles members with this role talk to.
    #[serde(default)]
    pub to: Vec<String>,
}

/// A media type for the `type` filter of `history/getmetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaType {
    /// Voice messages.
    Voice,
    /// Images.
    Image,
    /// Call alerts.
    #[value(name = "call_alert")]
    CallAlert,
}

impl MediaType {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Voice => "voice",
            MediaType::Image => "image",
            MediaType::CallAlert => "call_alert",
        }
    }
}

/// The sort direction of `history/getmetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest (or smallest) first.
    Asc,
    /// Newest first (the server's default).
    Desc,
}

/// The filters, paging and sort of `history/getmetadata`; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataQuery {
    /// Sent by this user.
    pub sender: Option<String>,
    /// Received by this user (directly or through a channel).
    pub recipient: Option<String>,
    /// Delivered through this channel.
    pub via_channel: Option<String>,
    /// Only channel messages (`true`) or only direct ones (`false`).
    pub is_channel: Option<bool>,
    /// Only this media type.
    pub media_type: Option<MediaType>,
    /// Text to search for in call alerts.
    pub text: Option<String>,
    /// Only messages with this external id.
    pub eid: Option<String>,
    /// Only messages of this dispatch call.
    pub call_id: Option<u64>,
    /// Sent after this time (Unix seconds).
    pub start_ts: Option<u64>,
    /// Sent before this time (Unix seconds).
    pub end_ts: Option<u64>,
    /// With an id of at least this.
    pub start_id: Option<u64>,
    /// With an id of at most this.
    pub end_id: Option<u64>,
    /// At most this many.
    pub max: Option<u64>,
    /// From this index.
    pub start: Option<u64>,
    /// The field to sort by (`id` by default).
    pub sort: Option<String>,
    /// The direction.
    pub sort_order: Option<SortOrder>,
}

/// A message of the history.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    /// The id, increasing.
    #[serde(deserialize_with = "lenient::u64")]
    pub id: u64,
    /// `voice`, `image`, `call_alert`, `start_call`, `take_call` or `end_call`.
    #[serde(rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    /// When it was sent (Unix seconds).
    #[serde(default, deserialize_with = "lenient::u64")]
    pub ts: u64,
    /// The dispatch call.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_id: Option<u64>,
    /// The dispatch call's short id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_id_short: Option<u64>,
    /// The external id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    /// Who sent it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub sender: String,
    /// The user or channel it went to.
    #[serde(default, deserialize_with = "lenient::string")]
    pub recipient: String,
    /// The receiver of a call message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_call_recipient: Option<String>,
    /// `user`, `channel` or `dispatch_call`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub recipient_type: String,
    /// The key to fetch its media with (not for call alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_key: Option<String>,
    /// Voice length in milliseconds.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<u64>,
    /// Who received it through the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_users: Option<Vec<String>>,
    /// When an image was taken.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_ts: Option<u64>,
    /// `camera` or `library`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_source: Option<String>,
    /// A call alert's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A voice message's transcription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<String>,
    /// "yes" when the transcription is inaccurate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_inaccurate: Option<String>,
}

/// The answer of `history/getmetadata`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Metadata {
    /// How many messages match.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub total: u64,
    /// How many are in this answer.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub returned: u64,
    /// The messages.
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// One answer of `history/getmedia`.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaStatus {
    /// The media can be downloaded.
    Ready(MediaReady),
    /// Queued for conversion; `progress` is the place in the queue.
    Waiting {
        /// Place in the queue (%).
        progress: u64,
    },
    /// Being converted.
    Working {
        /// Conversion progress (%).
        progress: u64,
    },
}

/// Media ready for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaReady {
    /// `voice` or `image`.
    pub kind: String,
    /// Where to download it (may be https, may redirect).
    pub url: String,
    /// When the cached copy expires (Unix seconds).
    pub expires: Option<u64>,
}

/// The raw answer of `history/getmedia`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MediaAnswer {
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(default, rename = "type", deserialize_with = "lenient::string")]
    pub kind: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub expires: Option<u64>,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub progress: Option<u64>,
}

/// The `filter` of `location/get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationFilter {
    /// Every active user, not only those in the box.
    Active,
    /// Every user, whatever their status and place.
    None,
}

impl LocationFilter {
    /// The value sent.
    pub fn as_str(self) -> &'static str {
        match self {
            LocationFilter::Active => "active",
            LocationFilter::None => "none",
        }
    }
}

/// The query of `location/get`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocationQuery {
    /// The top right corner of the box (latitude, longitude).
    pub northeast: Option<(f64, f64)>,
    /// The bottom left corner of the box (latitude, longitude).
    pub southwest: Option<(f64, f64)>,
    /// Text to match in usernames or display names.
    pub name: Option<String>,
    /// Which users (by default active ones in the box).
    pub filter: Option<LocationFilter>,
    /// From this index.
    pub start: Option<u64>,
    /// At most this many.
    pub max: Option<u64>,
}

/// Speed units of `location/getuser`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeedUnits {
    /// Kilometres per hour (the default).
    Kmh,
    /// Miles per hour.
    Mph,
}

impl SpeedUnits {
    /// The value sent.
    pub fn as_str(self) -> &'static str {
        match self {
            SpeedUnits::Kmh => "kmh",
            SpeedUnits::Mph => "mph",
        }
    }
}

/// The query of `location/getuser`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserLocationQuery {
    /// The history of reports instead of the last one.
    pub history: bool,
    /// History from this time (Unix seconds).
    pub start_ts: Option<u64>,
    /// History until this time (Unix seconds).
    pub end_ts: Option<u64>,
    /// Speed units.
    pub speed_units: Option<SpeedUnits>,
    /// From this index.
    pub start: Option<u64>,
    /// At most this many.
    pub max: Option<u64>,
}

/// A location report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The user (not in `location/getuser` answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The user's display name (not in `location/getuser` answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Latitude.
    #[serde(deserialize_with = "lenient::opt_f64", default)]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(deserialize_with = "lenient::opt_f64", default)]
    pub longitude: Option<f64>,
    /// Speed in the requested units.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub speed: Option<f64>,
    /// Heading in degrees.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub heading: Option<f64>,
    /// Altitude in metres.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub altitude: Option<f64>,
    /// Battery level, 0 to 100.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub battery_level: Option<u64>,
    /// 0 unknown, 1 charging, 2 plugged in.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub charging_status: Option<u64>,
    /// Cellular signal strength.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub signal_strength: Option<f64>,
    /// Accuracy in metres.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub accuracy: Option<f64>,
    /// Within the requested box.
    #[serde(
        default,
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub visible: Option<bool>,
    /// `standby` or `online`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Location reporting is disabled for the user (the API reference spells it both
    /// ways).
    #[serde(
        default,
        alias = "geotrackingDisabled",
        deserialize_with = "lenient::opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub geo_tracking_disabled: Option<bool>,
    /// When it was reported (Unix seconds).
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_report: Option<u64>,
    /// Its age in seconds.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_report_delay: Option<u64>,
    /// The report's id (`location/getuser` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The answer of `location/get` and `location/getuser`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Locations {
    /// How many match.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub total: u64,
    /// How many are in this answer.
    #[serde(default, deserialize_with = "lenient::u64")]
    pub returned: u64,
    /// The reports.
    #[serde(default)]
    pub locations: Vec<Location>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_examples_read() {
        let users: UserList = serde_json::from_str(
            r#"{"status":"OK","code":"200","users":[{"name":"alex","email":"alex@zello.com",
            "admin":false,"limited_access":false,"job":"","full_name":"Алексей","channels":["Test","Shared"]}],
            "limits":{"maxUsers":"10","maxGateways":"2"},"canAddUsers":true,"canAddGateways":true}"#,
        )
        .unwrap();
        assert_eq!(users.users[0].channels, ["Test", "Shared"]);
        assert_eq!(users.limits.max_gateways, Some(2));
        assert!(users.can_add_gateways);
        let ch: Channel =
            serde_json::from_str(r#"{"name":"Test","count":"2","is_shared":1,"is_invisible":0}"#)
                .unwrap();
        assert_eq!((ch.count, ch.is_shared, ch.is_invisible), (2, true, false));
        let loc: Location = serde_json::from_str(
            r#"{"username":"chris","latitude":38.889227,"longitude":-76.991157,"speed":11.08,
            "visible":false,"geotrackingDisabled":false,"status":"standby","lastReport":1502569992}"#,
        )
        .unwrap();
        assert_eq!(loc.geo_tracking_disabled, Some(false));
        assert_eq!(loc.last_report, Some(1502569992));
        let m: Message = serde_json::from_str(
            r#"{"id":5634255,"type":"call_alert","ts":1418834000,"sender":"alex",
            "recipient":"molly","recipient_type":"user","text":"Zello me!"}"#,
        )
        .unwrap();
        assert_eq!(m.kind, "call_alert");
        assert_eq!(m.media_key, None);
        assert!(serde_json::from_str::<Channel>(r#"{"name":"x","count":"many"}"#).is_err());
    }
}
