//! The emulator's data and the API methods over it, free of I/O: a request (method path,
//! query and form) goes in, a JSON answer or an error code comes out.

use crate::work::types::{Channel, Limits, Location, Message, Role, RoleSettings, User};
use crate::work::wire::{ParsedForm, md5_hex};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

mod admin;
mod archive;

/// A user of the emulated network.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SimUser {
    /// The username.
    pub name: String,
    /// The md5 of the password, in hex (what `user/save` receives).
    pub password_md5: String,
    /// E-mail address.
    pub email: String,
    /// Display name.
    pub full_name: String,
    /// Position.
    pub job: String,
    /// May use the web console and the API.
    pub admin: bool,
    /// No one-on-one conversations.
    pub limited_access: bool,
    /// A gateway account.
    pub gateway: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// The channels the user is in.
    pub channels: BTreeSet<String>,
    /// Direct contacts.
    pub contacts: BTreeSet<String>,
    /// The assigned template.
    pub template: Option<String>,
}

impl fmt::Debug for SimUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUser")
            .field("name", &self.name)
            .field("password_md5", &"<redacted>")
            .field("admin", &self.admin)
            .field("gateway", &self.gateway)
            .field("tags", &self.tags)
            .field("channels", &self.channels)
            .field("contacts", &self.contacts)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// A channel of the emulated network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimChannel {
    /// Its name.
    pub name: String,
    /// A group channel (false: dynamic).
    pub shared: bool,
    /// Hidden.
    pub invisible: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Its roles by name.
    pub roles: BTreeMap<String, RoleSettings>,
    /// The role of each user that has one.
    pub assignments: BTreeMap<String, String>,
}

/// A recording the emulator can convert and serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMedia {
    /// `voice` or `image`.
    pub kind: String,
    /// The file name extension it is served with (`wav`, `png`).
    pub ext: String,
    /// The file.
    pub bytes: Bytes,
}

/// A location report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimReport {
    /// Its id.
    pub id: String,
    /// The user.
    pub user: String,
    /// When (Unix seconds).
    pub ts: u64,
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
    /// Speed in km/h.
    pub speed_kmh: f64,
    /// Heading in degrees.
    pub heading: f64,
    /// Altitude in metres.
    pub altitude: f64,
    /// Accuracy in metres.
    pub accuracy: f64,
    /// Battery level, 0 to 100.
    pub battery: u64,
}

/// Everything the emulated network holds (not the sessions).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkData {
    /// The API key logins are hashed with.
    pub api_key: String,
    /// Users and gateways by name.
    pub users: BTreeMap<String, SimUser>,
    /// Channels by name.
    pub channels: BTreeMap<String, SimChannel>,
    /// User templates that exist.
    pub templates: BTreeSet<String>,
    /// The most users (not counting gateways) and gateways.
    pub limits: Limits,
    /// The history, in id order.
    pub messages: Vec<Message>,
    /// Recordings by media key.
    pub media: BTreeMap<String, SimMedia>,
    /// Location reports, oldest first.
    pub reports: Vec<SimReport>,
}

/// A session of `user/gettoken`, logged in or not.
#[derive(Clone)]
struct Session {
    token: String,
    user: Option<String>,
}

/// One API request, decoded.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The path's segments, decoded; the first two name the method.
    pub segments: Vec<String>,
    /// The query string (with `sid`).
    pub query: ParsedForm,
    /// The form body.
    pub body: ParsedForm,
}

impl Request {
    /// `user/get` and the like.
    pub fn method(&self) -> String {
        self.segments
            .iter()
            .take(2)
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The segments after the method.
    fn rest(&self) -> &[String] {
        self.segments.get(2..).unwrap_or(&[])
    }

    /// `/key/value` pairs after the method.
    fn path_params(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for pair in self.rest().chunks(2) {
            if let [k, v] = pair {
                out.insert(k.clone(), v.clone());
            } else if let [k] = pair
                && !k.is_empty()
            {
                out.insert(k.clone(), String::new());
            }
        }
        out
    }
}

/// An API error: the code and its status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiFailure(pub u16);

impl ApiFailure {
    /// The status text the server sends with the code.
    pub fn status(self) -> &'static str {
        match self.0 {
            301 => "Unauthenticated",
            302 => "Unauthorized",
            303 => "Invalid username or password",
            305 => "Missing auth token",
            400 => "Bad request",
            404 => "Resource not found",
            405 => "Resource already exists",
            407 => "Limits reached",
            501 => "Database error",
            504 => "Error communicating to Zello login server",
            519 => "Zello login server returned an error",
            520 => "Failed to update user's password",
            605 => "Missing required parameters",
            _ => "Error",
        }
    }
}

type Answer = Result<Map<String, Value>, ApiFailure>;

const NOT_FOUND: ApiFailure = ApiFailure(404);
const MISSING: ApiFailure = ApiFailure(605);

/// How far one media key's conversion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Queued (place, %).
    Waiting(u64),
    /// Converting (%).
    Working(u64),
    /// Done.
    Ready,
}

/// The methods that change something.
pub const WRITES: [&str; 14] = [
    "user/save",
    "user/delete",
    "user/addto",
    "user/addtochannels",
    "user/removefrom",
    "user/removefromchannels",
    "user/addcontactsto",
    "user/removecontactsfrom",
    "user/assigntemplate",
    "channel/add",
    "channel/delete",
    "channel/saverole",
    "channel/addtorole",
    "channel/deleterole",
];

/// The emulated network: data, sessions and conversions in progress.
pub struct WorkState {
    /// The data.
    pub data: WorkData,
    sessions: HashMap<String, Session>,
    conversions: HashMap<String, u32>,
    /// Not-ready answers of `history/getmedia` before a media key is ready.
    pub media_steps: u32,
    /// What media URLs start with (the server's own address).
    pub media_base: String,
}

fn random_hex() -> String {
    (0..32)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

fn ok(fields: Value) -> Answer {
    match fields {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

fn truthy(v: Option<&str>) -> Option<bool> {
    v.map(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn number(v: Option<&str>) -> Result<Option<u64>, ApiFailure> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiFailure(400)),
    }
}

fn float(v: Option<&str>) -> Result<Option<f64>, ApiFailure> {
    match v {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiFailure(400)),
    }
}

fn page<T>(items: Vec<T>, start: Option<u64>, max: Option<u64>) -> Vec<T> {
    let start = start.unwrap_or(0) as usize;
    let max = max.map(|m| m as usize).unwrap_or(usize::MAX);
    items.into_iter().skip(start).take(max).collect()
}

fn tags(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

impl WorkState {
    /// A network holding `data`.
    pub fn new(data: WorkData, media_steps: u32) -> WorkState {
        WorkState {
            data,
            sessions: HashMap::new(),
            conversions: HashMap::new(),
            media_steps,
            media_base: String::new(),
        }
    }

    /// Answers one request at time `now` (Unix seconds).
    pub fn handle(&mut self, req: &Request, now: u64) -> Answer {
        let method = req.method();
        match method.as_str() {
            "user/gettoken" => return self.gettoken(),
            "user/login" => return self.login(req),
            _ => {}
        }
        let sid = req.query.get("sid").unwrap_or_default().to_string();
        let logged_in = self.sessions.get(&sid).is_some_and(|s| s.user.is_some());
        if !logged_in {
            return Err(ApiFailure(301));
        }
        match method.as_str() {
            "user/logout" => {
                self.sessions.remove(&sid);
                ok(json!({}))
            }
            "user/get" => self.user_get(req),
            "user/save" => self.user_save(req),
            "user/delete" => self.user_delete(req),
            "user/addto" | "user/removefrom" => {
                let channel = req.rest().first().ok_or(MISSING)?.clone();
                let add = method == "user/addto";
                self.membership(&req.body.all("login"), &[channel], add)
            }
            "user/addtochannels" | "user/removefromchannels" => {
                let add = method == "user/addtochannels";
                self.membership(&req.body.all("users"), &req.body.all("channels"), add)
            }
            "user/addcontactsto" | "user/removecontactsfrom" => {
                let add = method == "user/addcontactsto";
                self.contacts(req, add)
            }
            "user/assigntemplate" => self.assign_template(req),
            "channel/get" => self.channel_get(req),
            "channel/add" => self.channel_add(req),
            "channel/delete" => self.channel_delete(req),
            "channel/roleslist" => self.roles_list(req),
            "channel/saverole" => self.save_role(req),
            "channel/addtorole" => self.add_to_role(req),
            "channel/deleterole" => self.delete_role(req),
            "history/getmetadata" => self.metadata(req),
            "history/getmedia" => self.media(req).map(|(answer, _)| answer),
            "location/get" => self.locations(req, now),
            "location/getuser" => self.user_locations(req),
            _ => Err(ApiFailure(400)),
        }
    }

    fn gettoken(&mut self) -> Answer {
        let sid = random_hex();
        let token = random_hex();
        self.sessions.insert(
            sid.clone(),
            Session {
                token: token.clone(),
                user: None,
            },
        );
        ok(json!({ "token": token, "sid": sid }))
    }

    fn login(&mut self, req: &Request) -> Answer {
        let sid = req.query.get("sid").unwrap_or_default();
        let Some(session) = self.sessions.get(sid).cloned() else {
            return Err(ApiFailure(305));
        };
        let (Some(username), Some(hash)) = (req.body.get("username"), req.body.get("password"))
        else {
            return Err(MISSING);
        };
        let Some(user) = self.data.users.get(username) else {
            return Err(ApiFailure(303));
        };
        let expected = md5_hex(
            format!(
                "{}{}{}",
                user.password_md5, session.token, self.data.api_key
            )
            .as_bytes(),
        );
        if !hash.eq_ignore_ascii_case(&expected) {
            return Err(ApiFailure(303));
        }
        if !user.admin {
            return Err(ApiFailure(302));
        }
        let name = user.name.clone();
        if let Some(s) = self.sessions.get_mut(sid) {
            s.user = Some(name);
        }
        ok(json!({}))
    }
}
