//! The emulator's data and the API methods over it, free of I/O: a request (method path,
//! query and form) goes in, a JSON answer or an error code comes out.

use crate::work::types::{Channel, Limits, Location, Message, Role, RoleSettings, User};
use crate::work::wire::{ParsedForm, md5_hex};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

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

    fn counts(&self) -> (u64, u64) {
        let gateways = self.data.users.values().filter(|u| u.gateway).count() as u64;
        (self.data.users.len() as u64 - gateways, gateways)
    }

    fn can_add(&self, gateway: bool) -> bool {
        let (users, gateways) = self.counts();
        if gateway {
            self.data.limits.max_gateways.is_none_or(|m| gateways < m)
        } else {
            self.data.limits.max_users.is_none_or(|m| users < m)
        }
    }

    fn user_json(&self, u: &SimUser) -> Value {
        serde_json::to_value(User {
            name: u.name.clone(),
            email: u.email.clone(),
            admin: u.admin,
            limited_access: u.limited_access,
            job: u.job.clone(),
            full_name: u.full_name.clone(),
            channels: u.channels.iter().cloned().collect(),
        })
        .unwrap_or(Value::Null)
    }

    fn user_get(&self, req: &Request) -> Answer {
        let p = req.path_params();
        let gateway = truthy(p.get("gateway").map(String::as_str)).unwrap_or(false);
        let mut users: Vec<&SimUser> = self
            .data
            .users
            .values()
            .filter(|u| u.gateway == gateway)
            .collect();
        if let Some(login) = p.get("login") {
            users.retain(|u| &u.name == login);
            if users.is_empty() {
                return Err(NOT_FOUND);
            }
        }
        let users = page(
            users,
            number(p.get("start").map(String::as_str))?,
            number(p.get("max").map(String::as_str))?,
        );
        let limits = &self.data.limits;
        let limit = |m: Option<u64>| m.map(|m| m.to_string()).unwrap_or_default();
        ok(json!({
            "users": users.iter().map(|u| self.user_json(u)).collect::<Vec<_>>(),
            "limits": { "maxUsers": limit(limits.max_users), "maxGateways": limit(limits.max_gateways) },
            "canAddUsers": self.can_add(false),
            "canAddGateways": self.can_add(true),
        }))
    }

    fn user_save(&mut self, req: &Request) -> Answer {
        let b = &req.body;
        let name = b.get("name").unwrap_or_default().trim().to_string();
        if name.is_empty() {
            return Err(MISSING);
        }
        let exists = self.data.users.contains_key(&name);
        let gateway = truthy(b.get("gateway"));
        if exists {
            if truthy(b.get("add")) == Some(true) {
                return Err(ApiFailure(405));
            }
            let was_gateway = self.data.users[&name].gateway;
            if let Some(g) = gateway
                && g != was_gateway
                && !self.can_add(g)
            {
                return Err(ApiFailure(407));
            }
        } else {
            if b.get("password").is_none_or(str::is_empty) {
                return Err(MISSING);
            }
            if !self.can_add(gateway.unwrap_or(false)) {
                return Err(ApiFailure(407));
            }
        }
        let user = self
            .data
            .users
            .entry(name.clone())
            .or_insert_with(|| SimUser {
                name,
                ..SimUser::default()
            });
        if let Some(p) = b.get("password").filter(|p| !p.is_empty()) {
            user.password_md5 = p.to_ascii_lowercase();
        }
        for (field, value) in [
            ("email", &mut user.email),
            ("full_name", &mut user.full_name),
            ("job", &mut user.job),
        ] {
            if let Some(v) = b.get(field) {
                *value = v.to_string();
            }
        }
        for (field, value) in [
            ("admin", &mut user.admin),
            ("limited_access", &mut user.limited_access),
            ("gateway", &mut user.gateway),
        ] {
            if let Some(v) = truthy(b.get(field)) {
                *value = v;
            }
        }
        if let Some(t) = b.get("tags") {
            user.tags = tags(t);
        }
        ok(json!({}))
    }

    fn known_users(&self, names: &[String]) -> Result<(), ApiFailure> {
        if names.is_empty() {
            return Err(MISSING);
        }
        if names.iter().all(|n| self.data.users.contains_key(n)) {
            Ok(())
        } else {
            Err(NOT_FOUND)
        }
    }

    fn user_delete(&mut self, req: &Request) -> Answer {
        let names = req.body.all("login");
        self.known_users(&names)?;
        for n in &names {
            self.data.users.remove(n);
            for c in self.data.channels.values_mut() {
                c.assignments.remove(n);
            }
            for u in self.data.users.values_mut() {
                u.contacts.remove(n);
            }
        }
        ok(json!({}))
    }

    fn membership(&mut self, users: &[String], channels: &[String], add: bool) -> Answer {
        self.known_users(users)?;
        if channels.is_empty() {
            return Err(MISSING);
        }
        if !channels.iter().all(|c| self.data.channels.contains_key(c)) {
            return Err(NOT_FOUND);
        }
        for name in users {
            for c in channels {
                if add {
                    self.data
                        .users
                        .get_mut(name)
                        .map(|u| u.channels.insert(c.clone()));
                } else {
                    self.data.users.get_mut(name).map(|u| u.channels.remove(c));
                    self.data
                        .channels
                        .get_mut(c)
                        .map(|ch| ch.assignments.remove(name));
                }
            }
        }
        ok(json!({}))
    }

    fn contacts(&mut self, req: &Request, add: bool) -> Answer {
        let owner = req.rest().first().ok_or(MISSING)?.clone();
        let contacts = req.body.all("login");
        self.known_users(&contacts)?;
        let user = self.data.users.get_mut(&owner).ok_or(NOT_FOUND)?;
        for c in contacts {
            if add {
                user.contacts.insert(c);
            } else {
                user.contacts.remove(&c);
            }
        }
        ok(json!({}))
    }

    fn assign_template(&mut self, req: &Request) -> Answer {
        let template = req.path_params().remove("name").unwrap_or_default();
        let users = req.body.all("users");
        self.known_users(&users)?;
        if !template.is_empty() && !self.data.templates.contains(&template) {
            return Err(NOT_FOUND);
        }
        for u in users {
            if let Some(user) = self.data.users.get_mut(&u) {
                user.template = (!template.is_empty()).then(|| template.clone());
            }
        }
        ok(json!({}))
    }

    fn channel_get(&self, req: &Request) -> Answer {
        let p = req.path_params();
        let mut channels: Vec<&SimChannel> = self.data.channels.values().collect();
        if let Some(name) = p.get("name") {
            channels.retain(|c| &c.name == name);
            if channels.is_empty() {
                return Err(NOT_FOUND);
            }
        }
        let channels = page(
            channels,
            number(p.get("start").map(String::as_str))?,
            number(p.get("max").map(String::as_str))?,
        );
        let list: Vec<Value> = channels
            .iter()
            .map(|c| {
                let count = self
                    .data
                    .users
                    .values()
                    .filter(|u| u.channels.contains(&c.name))
                    .count();
                // As the API reference shows it: the count a string, the flags 0 or 1.
                json!({
                    "name": c.name,
                    "count": count.to_string(),
                    "is_shared": u8::from(c.shared),
                    "is_invisible": u8::from(c.invisible),
                })
            })
            .collect();
        debug_assert!(
            list.iter()
                .all(|v| serde_json::from_value::<Channel>(v.clone()).is_ok())
        );
        ok(json!({ "channels": list }))
    }

    fn channel_add(&mut self, req: &Request) -> Answer {
        let p = req.path_params();
        let name = p.get("name").map(|n| n.trim()).unwrap_or_default();
        if name.is_empty() {
            return Err(MISSING);
        }
        if self.data.channels.contains_key(name) {
            return Err(ApiFailure(405));
        }
        let channel = SimChannel {
            name: name.to_string(),
            shared: truthy(p.get("shared").map(String::as_str)).unwrap_or(false),
            invisible: truthy(p.get("invisible").map(String::as_str)).unwrap_or(false),
            tags: p.get("tags").map(|t| tags(t)).unwrap_or_default(),
            ..SimChannel::default()
        };
        self.data.channels.insert(channel.name.clone(), channel);
        ok(json!({}))
    }

    fn channel_delete(&mut self, req: &Request) -> Answer {
        let names = req.body.all("name");
        if names.is_empty() {
            return Err(MISSING);
        }
        if !names.iter().all(|n| self.data.channels.contains_key(n)) {
            return Err(NOT_FOUND);
        }
        for n in &names {
            self.data.channels.remove(n);
            for u in self.data.users.values_mut() {
                u.channels.remove(n);
            }
        }
        ok(json!({}))
    }

    fn channel_named(&mut self, req: &Request, key: &str) -> Result<&mut SimChannel, ApiFailure> {
        let name = req.path_params().remove(key).ok_or(MISSING)?;
        self.data.channels.get_mut(&name).ok_or(NOT_FOUND)
    }

    fn roles_list(&mut self, req: &Request) -> Answer {
        let c = self.channel_named(req, "name")?;
        let roles: Vec<Role> = c
            .roles
            .iter()
            .map(|(name, settings)| Role {
                name: name.clone(),
                settings: settings.clone(),
            })
            .collect();
        ok(json!({ "roles": roles }))
    }

    fn save_role(&mut self, req: &Request) -> Answer {
        let role = req.path_params().remove("name").unwrap_or_default();
        if role.is_empty() {
            return Err(MISSING);
        }
        let settings = req.body.get("settings").ok_or(MISSING)?;
        let settings: RoleSettings = serde_json::from_str(settings).map_err(|_| ApiFailure(400))?;
        let c = self.channel_named(req, "channel")?;
        c.roles.insert(role, settings);
        ok(json!({}))
    }

    fn add_to_role(&mut self, req: &Request) -> Answer {
        let role = req.path_params().remove("name").unwrap_or_default();
        let users = req.body.all("login");
        self.known_users(&users)?;
        let c = self.channel_named(req, "channel")?;
        if !role.is_empty() && !c.roles.contains_key(&role) {
            return Err(NOT_FOUND);
        }
        for u in users {
            if role.is_empty() {
                c.assignments.remove(&u);
            } else {
                c.assignments.insert(u, role.clone());
            }
        }
        ok(json!({}))
    }

    fn delete_role(&mut self, req: &Request) -> Answer {
        let roles = req.body.all("roles");
        if roles.is_empty() {
            return Err(MISSING);
        }
        let c = self.channel_named(req, "channel")?;
        if !roles.iter().all(|r| c.roles.contains_key(r)) {
            return Err(NOT_FOUND);
        }
        for r in &roles {
            c.roles.remove(r);
        }
        c.assignments.retain(|_, r| !roles.contains(r));
        ok(json!({}))
    }

    fn metadata(&self, req: &Request) -> Answer {
        let b = &req.body;
        let via_channel = b.get("via_channel").filter(|c| !c.is_empty());
        let is_channel = if via_channel.is_some() {
            Some(true)
        } else {
            truthy(b.get("is_channel"))
        };
        let (start_ts, end_ts) = (number(b.get("start_ts"))?, number(b.get("end_ts"))?);
        let (start_id, end_id) = (number(b.get("start_id"))?, number(b.get("end_id"))?);
        let call_id = number(b.get("call_id"))?;
        let text = b.get("text").map(str::to_lowercase);
        let mut found: Vec<&Message> = self
            .data
            .messages
            .iter()
            .filter(|m| b.get("sender").is_none_or(|s| m.sender == s))
            .filter(|m| {
                b.get("recipient").is_none_or(|r| {
                    m.recipient == r
                        || m.channel_users
                            .as_ref()
                            .is_some_and(|u| u.iter().any(|u| u == r))
                })
            })
            .filter(|m| via_channel.is_none_or(|c| m.recipient == c))
            .filter(|m| is_channel.is_none_or(|c| (m.recipient_type == "channel") == c))
            .filter(|m| b.get("type").is_none_or(|t| m.kind == t))
            .filter(|m| {
                text.as_ref().is_none_or(|t| {
                    m.text
                        .as_ref()
                        .is_some_and(|x| x.to_lowercase().contains(t))
                })
            })
            .filter(|m| b.get("eid").is_none_or(|e| m.eid.as_deref() == Some(e)))
            .filter(|m| call_id.is_none_or(|c| m.call_id == Some(c)))
            .filter(|m| start_ts.is_none_or(|t| m.ts >= t))
            .filter(|m| end_ts.is_none_or(|t| m.ts <= t))
            .filter(|m| start_id.is_none_or(|i| m.id >= i))
            .filter(|m| end_id.is_none_or(|i| m.id <= i))
            .collect();
        let sort = b.get("sort").unwrap_or("id");
        let key = |m: &Message| -> Value {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.get(sort).cloned())
                .unwrap_or(Value::Null)
        };
        found.sort_by(|x, y| {
            let (a, b) = (key(x), key(y));
            let by_value = match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => a.total_cmp(&b),
                _ => a.to_string().cmp(&b.to_string()),
            };
            by_value.then(x.id.cmp(&y.id))
        });
        if b.get("sort_order") != Some("asc") {
            found.reverse();
        }
        let total = found.len();
        let messages = page(
            found,
            number(b.get("start"))?,
            Some(number(b.get("max"))?.unwrap_or(100)),
        );
        ok(json!({ "total": total, "returned": messages.len(), "messages": messages }))
    }

    fn media(&mut self, req: &Request) -> Result<(Map<String, Value>, Conversion), ApiFailure> {
        let key = req.path_params().remove("key").ok_or(MISSING)?;
        let media = self.data.media.get(&key).ok_or(NOT_FOUND)?;
        let polls = self.conversions.entry(key.clone()).or_insert(0);
        *polls += 1;
        let steps = self.media_steps;
        let conversion = if *polls > steps {
            Conversion::Ready
        } else if *polls == 1 && steps > 1 {
            Conversion::Waiting(0)
        } else {
            Conversion::Working(u64::from(*polls) * 100 / u64::from(steps + 1))
        };
        let answer = match conversion {
            Conversion::Ready => json!({
                "type": media.kind,
                "url": format!("{}/media/{key}.{}", self.media_base, media.ext),
                "expires": 0,
            }),
            Conversion::Waiting(p) => {
                json!({ "status": "Waiting", "type": media.kind, "progress": p })
            }
            Conversion::Working(p) => {
                json!({ "status": "Working", "type": media.kind, "progress": p })
            }
        };
        Ok((ok(answer)?, conversion))
    }

    /// The file of a media key, once its conversion is done.
    pub fn media_file(&self, file: &str) -> Option<(&SimMedia, &'static str)> {
        let (key, ext) = file.rsplit_once('.')?;
        let media = self.data.media.get(key).filter(|m| m.ext == ext)?;
        let ready = self
            .conversions
            .get(key)
            .is_some_and(|polls| *polls > self.media_steps);
        let content_type = match ext {
            "wav" => "audio/wav",
            "png" => "image/png",
            "jpg" => "image/jpeg",
            "mp3" => "audio/mpeg",
            _ => "application/octet-stream",
        };
        ready.then_some((media, content_type))
    }

    fn latest_reports(&self) -> Vec<&SimReport> {
        let mut latest: BTreeMap<&str, &SimReport> = BTreeMap::new();
        for r in &self.data.reports {
            if latest.get(r.user.as_str()).is_none_or(|l| l.ts <= r.ts) {
                latest.insert(&r.user, r);
            }
        }
        latest.into_values().collect()
    }

    fn locations(&self, req: &Request, now: u64) -> Answer {
        let q = &req.query;
        let corner = |name: &str| -> Result<Option<(f64, f64)>, ApiFailure> {
            match q.all(name).as_slice() {
                [] => Ok(None),
                [lat, lon] => Ok(Some((
                    float(Some(lat))?.ok_or(ApiFailure(400))?,
                    float(Some(lon))?.ok_or(ApiFailure(400))?,
                ))),
                _ => Err(ApiFailure(400)),
            }
        };
        let (ne, sw) = (corner("northeast")?, corner("southwest")?);
        let inside = |r: &SimReport| match (ne, sw) {
            (Some((n, e)), Some((s, w))) => {
                (s..=n).contains(&r.latitude) && (w..=e).contains(&r.longitude)
            }
            _ => true,
        };
        let active = |r: &SimReport| now.saturating_sub(r.ts) <= 20 * 60;
        let name = q.get("name").map(str::to_lowercase);
        let filter = q.get("filter").unwrap_or_default();
        let found: Vec<Value> = self
            .latest_reports()
            .into_iter()
            .filter(|r| match filter {
                "none" => true,
                "active" => active(r),
                _ => active(r) && inside(r),
            })
            .filter_map(|r| {
                let user = self.data.users.get(&r.user);
                let display = user.map(|u| u.full_name.clone()).unwrap_or_default();
                if let Some(n) = &name
                    && !r.user.to_lowercase().contains(n)
                    && !display.to_lowercase().contains(n)
                {
                    return None;
                }
                let l = Location {
                    username: Some(r.user.clone()),
                    display_name: Some(display),
                    visible: Some(inside(r)),
                    status: Some(if active(r) { "online" } else { "standby" }.into()),
                    geo_tracking_disabled: Some(false),
                    last_report_delay: Some(now.saturating_sub(r.ts)),
                    signal_strength: Some(0.5),
                    charging_status: Some(0),
                    id: None,
                    ..report_location(r, 1.0)
                };
                serde_json::to_value(l).ok()
            })
            .collect();
        let total = found.len();
        let list = page(found, number(q.get("start"))?, number(q.get("max"))?);
        ok(json!({ "total": total, "returned": list.len(), "locations": list }))
    }

    fn user_locations(&self, req: &Request) -> Answer {
        let rest = req.rest();
        let user = rest.first().ok_or(MISSING)?;
        if !self.data.users.contains_key(user) {
            return Err(NOT_FOUND);
        }
        let history = rest.get(1).is_some_and(|s| s == "history");
        let q = &req.query;
        let factor = match q.get("speedUnits") {
            Some("mph") => 0.621_371,
            None | Some("kmh") => 1.0,
            Some(_) => return Err(ApiFailure(400)),
        };
        let reports: Vec<&SimReport> = if history {
            let (from, to) = (number(q.get("start_ts"))?, number(q.get("end_ts"))?);
            self.data
                .reports
                .iter()
                .filter(|r| &r.user == user)
                .filter(|r| from.is_none_or(|t| r.ts >= t) && to.is_none_or(|t| r.ts <= t))
                .collect()
        } else {
            self.latest_reports()
                .into_iter()
                .filter(|r| &r.user == user)
                .collect()
        };
        let total = reports.len();
        let reports = page(reports, number(q.get("start"))?, number(q.get("max"))?);
        let returned = reports.len();
        let locations = if history && q.get("format") == Some("geojson") {
            let features: Vec<Value> = reports
                .iter()
                .map(|r| {
                    json!({
                        "type": "Feature",
                        "geometry": { "type": "Point", "coordinates": [r.longitude, r.latitude, r.altitude] },
                        "properties": serde_json::to_value(report_location(r, factor)).unwrap_or(Value::Null),
                    })
                })
                .collect();
            json!({ "type": "FeatureCollection", "features": features })
        } else {
            serde_json::to_value(
                reports
                    .iter()
                    .map(|r| report_location(r, factor))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(Value::Null)
        };
        ok(json!({ "total": total, "returned": returned, "locations": locations }))
    }
}

/// The fields of a report `location/getuser` gives, speed multiplied by `factor`.
fn report_location(r: &SimReport, factor: f64) -> Location {
    Location {
        latitude: Some(r.latitude),
        longitude: Some(r.longitude),
        speed: Some(r.speed_kmh * factor),
        heading: Some(r.heading),
        altitude: Some(r.altitude),
        battery_level: Some(r.battery),
        accuracy: Some(r.accuracy),
        last_report: Some(r.ts),
        id: Some(r.id.clone()),
        ..Location::default()
    }
}
