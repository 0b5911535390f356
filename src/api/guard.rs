//! Who may use the status API, decided for each request from its method, path and headers
//! alone (no I/O):
//!
//! - the `Host` rule against DNS rebinding: a hostile page that points its own name at
//!   127.0.0.1 still sends that name as `Host`, and is refused (403);
//! - the `Origin` rule: a page from another site is refused (403); a request without
//!   `Origin` (curl, Prometheus, the terminal monitor) is fine;
//! - tokens: with `[api] token_file` every request but `/livez` and `/readyz` carries
//!   `Authorization: Bearer TOKEN`; the control endpoints take the control token only, which
//!   also grants every read; without `control_token_file` they answer 403 "control disabled";
//! - the WebSocket alternatives for browsers, which cannot set `Authorization` there: a
//!   first message `{"op":"AUTH","token":"..."}` within [`AUTH_TIMEOUT`], or `?token=`.
//!
//! Tokens are compared in constant time (their SHA-256 digests, so their lengths do not
//! show either) and never appear in a message or in `Debug` output.

use crate::config::{ApiConfig, ApiConfigError, ApiTokens, Origin};
use crate::secret::Secret;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use subtle::ConstantTimeEq as _;

/// How long a WebSocket client that gave no token at the handshake has to send its AUTH
/// message.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "zello-gateway";

/// What a request may do, as granted by its credentials. Ordered: each grants what the ones
/// before it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing was needed (`/livez`, `/readyz`, the dashboard page).
    Open,
    /// The read token, or no token configured: state, events, metrics.
    Read,
    /// The control token: everything, TX inhibit and unkey included.
    Control,
}

/// What kind of endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /livez`, `GET /readyz`: open to all.
    Health,
    /// `GET /`: the dashboard page, open to all (browsers rules still hold). It is the same
    /// text for everyone and holds no state; a browser cannot send a token when it opens it,
    /// so the page reads the token from its address's fragment and sends it with each call.
    Page,
    /// Every other `GET` or `HEAD`: the read token.
    Read,
    /// `POST /api/v1/radios/{name}/tx-inhibit`, `POST /api/v1/radios/{name}/unkey`: the
    /// control token. Every method other than `GET` and `HEAD` counts as control, whatever
    /// its path, so that no route that changes something can be reached with the read token.
    Control,
}

impl Endpoint {
    /// The kind of the endpoint at `path` (the URI's path, without its query).
    pub fn of(method: &Method, path: &str) -> Endpoint {
        if method != Method::GET && method != Method::HEAD {
            return Endpoint::Control;
        }
        if path == "/livez" || path == "/readyz" {
            return Endpoint::Health;
        }
        if path == "/" {
            return Endpoint::Page;
        }
        // `.../radios/{name}/tx-inhibit` or `.../radios/{name}/unkey`, however many slashes.
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [.., "radios", _, "tx-inhibit" | "unkey"] => Endpoint::Control,
            _ => Endpoint::Read,
        }
    }
}

/// Which token a refused request was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The read token (`[api] token_file`).
    Read,
    /// The control token (`[api] control_token_file`).
    Control,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::Read => "token_file",
            TokenKind::Control => "control_token_file",
        })
    }
}

/// Why a request is refused; [`Refusal::status`] and [`Refusal::code`] give its HTTP answer.
/// No refusal holds a token or a header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Host` header (or an absolute request URI) is missing, malformed, or names
    /// another host: a DNS rebinding attempt, or a name to add to `allowed_origins`.
    #[error(
        "the Host header is missing or names neither this gateway's listen address, nor localhost, 127.0.0.1 or [::1] with port {port}, nor a host of [api] allowed_origins: open the API at one of those addresses, or add the name you use to allowed_origins"
    )]
    ForeignHost {
        /// The port the API listens on.
        port: u16,
    },
    /// The request comes from a page of another site.
    #[error(
        "the request comes from a page of another site (its Origin is neither the API's own address nor one of [api] allowed_origins): open the dashboard from the gateway's address, or add the page's origin to allowed_origins"
    )]
    ForeignOrigin,
    /// No token was presented where one is needed.
    #[error(
        "a token is needed: send `Authorization: Bearer TOKEN` with the token held in [api] {needed}"
    )]
    MissingToken {
        /// The token the endpoint takes.
        needed: TokenKind,
    },
    /// An `Authorization` header that is not one `Bearer TOKEN`.
    #[error(
        "the Authorization header is not `Bearer TOKEN`: send the token held in [api] token_file (or control_token_file) as `Authorization: Bearer TOKEN`"
    )]
    BadAuthorization,
    /// A token that is neither the read nor the control token.
    #[error(
        "the token is neither the API's read token nor its control token: send the one held in [api] token_file (or control_token_file)"
    )]
    WrongToken,
    /// A control endpoint, and no control token is configured.
    #[error(
        "control disabled: set [api] control_token_file to allow TX inhibit and unkey through the API"
    )]
    ControlDisabled,
    /// A control endpoint reached with the read token.
    #[error(
        "this endpoint changes the radios and takes the control token (held in [api] control_token_file), not the read token"
    )]
    NeedsControlToken,
}

impl Refusal {
    /// The HTTP status: 401 for a missing, malformed or wrong token, 403 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::MissingToken { .. } | Refusal::BadAuthorization | Refusal::WrongToken => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::ForeignHost { .. }
            | Refusal::ForeignOrigin
            | Refusal::ControlDisabled
            | Refusal::NeedsControlToken => StatusCode::FORBIDDEN,
        }
    }

    /// The `error` code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::ForeignHost { .. } => "forbidden_host",
            Refusal::ForeignOrigin => "forbidden_origin",
            Refusal::MissingToken { .. } | Refusal::BadAuthorization | Refusal::WrongToken => {
                "unauthorized"
            }
            Refusal::ControlDisabled => "control_disabled",
            Refusal::NeedsControlToken => "forbidden",
        }
    }

    /// The `WWW-Authenticate` challenge to send with the answer (RFC 6750), if any.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        let value = match self {
            Refusal::MissingToken { .. } => "Bearer realm=\"zello-gateway\"",
            Refusal::BadAuthorization => {
                "Bearer realm=\"zello-gateway\", error=\"invalid_request\""
            }
            Refusal::WrongToken => "Bearer realm=\"zello-gateway\", error=\"invalid_token\"",
            Refusal::NeedsControlToken => {
                "Bearer realm=\"zello-gateway\", error=\"insufficient_scope\""
            }
            _ => return None,
        };
        Some(HeaderValue::from_static(value))
    }
}

/// How a WebSocket handshake that passed the guard goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsAuth {
    /// Authenticated already (by header or `?token=`, or no token is configured).
    Granted(Access),
    /// A token is needed and none was given: the first message must be AUTH, within
    /// [`AUTH_TIMEOUT`] (see [`Guard::authenticate`]).
    AwaitAuth,
}

/// Why a WebSocket's AUTH step failed: sent as an `ERROR` with [`WsAuthError::code`], then
/// the socket is closed. No error holds the token or the message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsAuthError {
    /// The first message is not JSON.
    #[error(
        "bad JSON at line {line}, column {column}: send {{\"op\":\"AUTH\",\"token\":\"TOKEN\"}} as the first message"
    )]
    BadJson {
        /// Where the JSON breaks (1-based).
        line: usize,
        /// Where the JSON breaks (1-based).
        column: usize,
    },
    /// The first message is JSON but not AUTH.
    #[error(
        "not authenticated: the first message must be {{\"op\":\"AUTH\",\"token\":\"TOKEN\"}}, or connect with `Authorization: Bearer TOKEN`"
    )]
    NotAuth,
    /// An AUTH message without a token.
    #[error(
        "not authenticated: the AUTH message has no \"token\": send {{\"op\":\"AUTH\",\"token\":\"TOKEN\"}} with the token held in [api] token_file"
    )]
    NoToken,
    /// An AUTH message with a token that is neither the read nor the control token.
    #[error(
        "not authenticated: the token is neither the API's read token nor its control token: send the one held in [api] token_file"
    )]
    WrongToken,
    /// No AUTH message came within [`AUTH_TIMEOUT`].
    #[error(
        "not authenticated: no AUTH message within 5 s: send {{\"op\":\"AUTH\",\"token\":\"TOKEN\"}} as soon as the socket opens"
    )]
    TimedOut,
}

impl WsAuthError {
    /// The `code` of the `ERROR` message: `bad_json` or `not_authenticated`.
    pub fn code(&self) -> &'static str {
        match self {
            WsAuthError::BadJson { .. } => "bad_json",
            _ => "not_authenticated",
        }
    }
}

/// A token's SHA-256 digest: compared in constant time whatever the lengths.
#[derive(Clone)]
struct Digest([u8; 32]);

impl Digest {
    fn of(token: &[u8]) -> Digest {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token).as_ref());
        Digest(out)
    }

    fn matches(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// The API's access rules for one listener: its address, the allowed origins and the
/// tokens. Build it once when the listener is bound; each request is then decided with
/// [`Guard::check`] (REST) or [`Guard::check_websocket`] and [`Guard::authenticate`].
#[derive(Clone)]
pub struct Guard {
    listen: SocketAddr,
    origins: Vec<Origin>,
    read: Option<Digest>,
    control: Option<Digest>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |d: &Option<Digest>| if d.is_some() { "<redacted>" } else { "none" };
        f.debug_struct("Guard")
            .field("listen", &self.listen)
            .field("origins", &self.origins)
            .field("read", &set(&self.read))
            .field("control", &set(&self.control))
            .finish()
    }
}

impl Guard {
    /// The rules of `config` for a listener bound to `bound` (the configured `listen`, with
    /// the port the system chose when it was 0), with `tokens` as read by
    /// [`Config::api_tokens`](crate::config::Config::api_tokens). An `allowed_origins` entry
    /// that is not an origin is the error (a validated configuration has none).
    pub fn new(
        bound: SocketAddr,
        config: &ApiConfig,
        tokens: &ApiTokens,
    ) -> Result<Guard, ApiConfigError> {
        let digest = |t: &Option<Secret>| t.as_ref().map(|s| Digest::of(s.expose().as_bytes()));
        Ok(Guard {
            listen: bound,
            origins: config.origins()?,
            read: digest(&tokens.read),
            control: digest(&tokens.control),
        })
    }

    /// Whether requests other than `/livez` and `/readyz` need a token.
    pub fn needs_token(&self) -> bool {
        self.read.is_some()
    }

    /// Whether the control endpoints are enabled (a control token is configured).
    pub fn control_enabled(&self) -> bool {
        self.control.is_some()
    }

    /// What `token` grants: the control token [`Access::Control`], the read token
    /// [`Access::Read`], anything else nothing. Constant time.
    pub fn token_access(&self, token: &str) -> Option<Access> {
        let presented = Digest::of(token.as_bytes());
        // Both compared every time: which one matched does not show in the timing.
        let control = self.control.as_ref().is_some_and(|d| d.matches(&presented));
        let read = self.read.as_ref().is_some_and(|d| d.matches(&presented));
        if control {
            Some(Access::Control)
        } else if read {
            Some(Access::Read)
        } else {
            None
        }
    }

    /// Decides a REST request: the `Host` and `Origin` rules, then the token its endpoint
    /// needs (from `Authorization: Bearer`). The access granted, or why it is refused.
    pub fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Access, Refusal> {
        self.check_browser_rules(uri, headers)?;
        let presented = bearer(headers);
        match Endpoint::of(method, uri.path()) {
            Endpoint::Health | Endpoint::Page => Ok(Access::Open),
            Endpoint::Read => {
                let granted = presented.ok().flatten().and_then(|t| self.token_access(t));
                if self.read.is_none() {
                    return Ok(granted.unwrap_or(Access::Read));
                }
                match presented? {
                    None => Err(Refusal::MissingToken {
                        needed: TokenKind::Read,
                    }),
                    Some(_) => granted.ok_or(Refusal::WrongToken),
                }
            }
            Endpoint::Control => {
                if self.control.is_none() {
                    return Err(Refusal::ControlDisabled);
                }
                match presented? {
                    None => Err(Refusal::MissingToken {
                        needed: TokenKind::Control,
                    }),
                    Some(t) => match self.token_access(t) {
                        Some(Access::Control) => Ok(Access::Control),
                        Some(_) => Err(Refusal::NeedsControlToken),
                        None => Err(Refusal::WrongToken),
                    },
                }
            }
        }
    }

    /// Decides a WebSocket handshake (`GET /api/v1/ws`): the `Host` and `Origin` rules, then
    /// the token from `Authorization: Bearer` or else from `?token=`. A wrong token is
    /// refused at the handshake; none at all, where one is needed, leaves the AUTH message
    /// to come ([`WsAuth::AwaitAuth`]).
    pub fn check_websocket(&self, uri: &Uri, headers: &HeaderMap) -> Result<WsAuth, Refusal> {
        self.check_browser_rules(uri, headers)?;
        let presented = match bearer(headers)? {
            Some(t) => Some(Secret::new(t)),
            None => query_token(uri),
        };
        match (presented, self.read.is_some()) {
            (Some(t), true) => self
                .token_access(t.expose())
                .map(WsAuth::Granted)
                .ok_or(Refusal::WrongToken),
            (Some(t), false) => Ok(WsAuth::Granted(
                self.token_access(t.expose()).unwrap_or(Access::Read),
            )),
            (None, true) => Ok(WsAuth::AwaitAuth),
            (None, false) => Ok(WsAuth::Granted(Access::Read)),
        }
    }

    /// Decides a WebSocket's first message after [`WsAuth::AwaitAuth`]:
    /// `{"op":"AUTH","token":"..."}` (other fields, such as `id`, are ignored).
    pub fn authenticate(&self, first_message: &str) -> Result<Access, WsAuthError> {
        #[derive(Deserialize)]
        struct AuthMessage {
            op: String,
            token: Option<Secret>,
        }
        let value: serde_json::Value =
            serde_json::from_str(first_message).map_err(|e| WsAuthError::BadJson {
                line: e.line(),
                column: e.column(),
            })?;
        if !value.is_object() {
            return Err(WsAuthError::NotAuth);
        }
        let message = AuthMessage::deserialize(value).map_err(|_| WsAuthError::NotAuth)?;
        if message.op != "AUTH" {
            return Err(WsAuthError::NotAuth);
        }
        let token = message.token.ok_or(WsAuthError::NoToken)?;
        match self.token_access(token.expose()) {
            Some(access) => Ok(access),
            None if self.read.is_none() => Ok(Access::Read),
            None => Err(WsAuthError::WrongToken),
        }
    }

    /// The `Host` rule, then the `Origin` rule.
    fn check_browser_rules(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let foreign_host = Refusal::ForeignHost {
            port: self.listen.port(),
        };
        let host_text = single(headers, header::HOST).ok_or(foreign_host)?;
        let host = parse_host(host_text).ok_or(foreign_host)?;
        if !self.host_allowed(&host) {
            return Err(foreign_host);
        }
        // An absolute request URI (`GET http://name/ HTTP/1.1`) names a host too.
        if let Some(authority) = uri.authority() {
            let named = parse_host(authority.as_str()).ok_or(foreign_host)?;
            if !self.host_allowed(&named) {
                return Err(foreign_host);
            }
        }
        if headers.contains_key(header::ORIGIN) {
            let origin = single(headers, header::ORIGIN)
                .and_then(|o| Origin::parse(o).ok())
                .ok_or(Refusal::ForeignOrigin)?;
            if !self.origin_allowed(&origin, &host) {
                return Err(Refusal::ForeignOrigin);
            }
        }
        Ok(())
    }

    /// Whether a `Host` names this API: the listen address, localhost, 127.0.0.1 or [::1]
    /// with the listen port (when listening on every address, any IP address with it: an
    /// address cannot be rebound), or a host of `allowed_origins` with its port.
    fn host_allowed(&self, (host, port): &(url::Host<String>, Option<u16>)) -> bool {
        // We serve plain HTTP: a Host without a port means 80.
        let on_listen_port = port.unwrap_or(80) == self.listen.port();
        let ip = self.listen.ip();
        let ours = match host {
            url::Host::Domain(name) => name == "localhost",
            url::Host::Ipv4(a) => {
                *a == std::net::Ipv4Addr::LOCALHOST
                    || ip.is_unspecified()
                    || std::net::IpAddr::V4(*a) == ip
            }
            url::Host::Ipv6(a) => {
                *a == std::net::Ipv6Addr::LOCALHOST
                    || ip.is_unspecified()
                    || std::net::IpAddr::V6(*a) == ip
            }
        };
        (on_listen_port && ours)
            || self
                .origins
                .iter()
                .any(|o| o.host() == host && port.unwrap_or_else(|| o.default_port()) == o.port())
    }

    /// Whether a page of `origin` may use the API reached as `host`: its own address (the
    /// same host and port), or one of `allowed_origins`.
    fn origin_allowed(
        &self,
        origin: &Origin,
        (host, port): &(url::Host<String>, Option<u16>),
    ) -> bool {
        let same =
            origin.host() == host && port.unwrap_or_else(|| origin.default_port()) == origin.port();
        same || self.origins.contains(origin)
    }
}

/// The one value of header `name` as text: `None` when absent, repeated, or not visible
/// ASCII.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The bearer token of the `Authorization` header: `Ok(None)` without one, an error when it
/// is repeated or not `Bearer TOKEN` (the scheme in any case, one token without spaces).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let value = single(headers, header::AUTHORIZATION).ok_or(Refusal::BadAuthorization)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Refusal::BadAuthorization)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Refusal::BadAuthorization);
    }
    Ok(Some(token))
}

/// The `token` query parameter (percent-decoded), the first one when repeated; an empty
/// one is none.
fn query_token(uri: &Uri) -> Option<Secret> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .filter(|(_, v)| !v.is_empty())
        .map(|(_, v)| Secret::new(v))
}

/// A `Host` header or URI authority as its host and port; `None` when malformed (a user
/// name, an unbracketed IPv6 address, a port that is not a number, an empty host).
fn parse_host(text: &str) -> Option<(url::Host<String>, Option<u16>)> {
    let (name, port) = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => (&text[..i], Some(&text[i + 1..])),
        _ => (text, None),
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    if name.is_empty() || name.contains('@') {
        return None;
    }
    Some((url::Host::parse(name).ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    const READ: &str = "Rd-S3cret-0123456789abcdef";
    const CONTROL: &str = "Ct-S3cret-0123456789abcdef";

    fn guard_with(listen: &str, read: bool, control: bool, origins: &[&str]) -> Guard {
        let config = ApiConfig {
            listen: listen.to_string(),
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..ApiConfig::default()
        };
        let tokens = ApiTokens {
            read: read.then(|| Secret::new(READ)),
            control: control.then(|| Secret::new(CONTROL)),
        };
        Guard::new(listen.parse().unwrap(), &config, &tokens).unwrap()
    }

    /// Both tokens, on the default address.
    fn guard() -> Guard {
        guard_with("127.0.0.1:8780", true, true, &[])
    }

    /// A request; `Host: 127.0.0.1:8780` unless `headers` give one (an empty value leaves
    /// it out).
    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
        let mut b = Request::builder().method(method).uri(uri);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            b = b.header("host", "127.0.0.1:8780");
        }
        for (name, value) in headers {
            if !value.is_empty() {
                b = b.header(*name, *value);
            }
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        (parts.method, parts.uri, parts.headers)
    }

    fn check(
        g: &Guard,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<Access, Refusal> {
        let (m, u, h) = request(method, uri, headers);
        g.check(&m, &u, &h)
    }

    fn bearer_of(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn endpoints_are_told_apart_by_method_and_path() {
        let of = |m: &str, p: &str| Endpoint::of(&m.parse().unwrap(), p);
        for p in ["/livez", "/readyz"] {
            assert_eq!(of("GET", p), Endpoint::Health);
            assert_eq!(of("HEAD", p), Endpoint::Health);
        }
        assert_eq!(of("GET", "/"), Endpoint::Page);
        assert_eq!(of("HEAD", "/"), Endpoint::Page);
        for p in [
            "//",
            "/index.html",
            "/livez/",
            "/metrics",
            "/api/v1/status",
            "/api/v1/radios",
            "/api/v1/radios/vhf1",
            "/api/v1/radios/unkey",
            "/api/v1/bindings",
            "/api/v1/sockets/3",
            "/api/v1/history",
            "/api/v1/ws",
            "/api/ws",
        ] {
            assert_eq!(of("GET", p), Endpoint::Read, "{p}");
        }
        for (m, p) in [
            ("POST", "/api/v1/radios/vhf1/tx-inhibit"),
            ("POST", "/api/v1/radios/vhf1/unkey"),
            ("GET", "/api/v1/radios/vhf1/unkey"),
            ("GET", "//api/v1/radios/vhf1/tx-inhibit/"),
            ("POST", "/api/v1/status"),
            ("PUT", "/livez"),
            ("DELETE", "/api/v1/sockets/3"),
            ("OPTIONS", "/api/v1/status"),
            ("PATCH", "/"),
        ] {
            assert_eq!(of(m, p), Endpoint::Control, "{m} {p}");
        }
    }

    #[test]
    fn read_endpoints_take_either_token() {
        let g = guard();
        assert!(g.needs_token() && g.control_enabled());
        for path in ["/api/v1/status", "/metrics", "/api/v1/radios/vhf1"] {
            assert_eq!(
                check(&g, "GET", path, &[]),
                Err(Refusal::MissingToken {
                    needed: TokenKind::Read
                }),
                "{path}"
            );
            let ok = |t: &str| check(&g, "GET", path, &[("authorization", &bearer_of(t))]);
            assert_eq!(ok(READ), Ok(Access::Read));
            assert_eq!(
                ok(CONTROL),
                Ok(Access::Control),
                "the control token reads too"
            );
            assert_eq!(ok("Rd-S3cret-0123456789abcdeX"), Err(Refusal::WrongToken));
            assert_eq!(ok(&READ[..READ.len() - 1]), Err(Refusal::WrongToken));
            assert_eq!(ok(&format!("{READ}0")), Err(Refusal::WrongToken));
        }
        // The scheme in any case, spaces around the token.
        for auth in [
            format!("bearer {READ}"),
            format!("BEARER  {READ}"),
            format!("Bearer {READ} "),
        ] {
            assert_eq!(
                check(&g, "GET", "/metrics", &[("authorization", &auth)]),
                Ok(Access::Read),
                "{auth}"
            );
        }
        // Anything but one `Bearer TOKEN`.
        for auth in [
            format!("Basic {READ}"),
            format!("Bearer{READ}"),
            "Bearer".to_string(),
            "Bearer ".to_string(),
            format!("Bearer {READ} extra"),
            READ.to_string(),
        ] {
            assert_eq!(
                check(&g, "GET", "/metrics", &[("authorization", &auth)]),
                Err(Refusal::BadAuthorization),
                "{auth}"
            );
        }
        let twice = [
            ("authorization", bearer_of(READ)),
            ("authorization", bearer_of(READ)),
        ];
        let twice: Vec<(&str, &str)> = twice.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            check(&g, "GET", "/metrics", &twice),
            Err(Refusal::BadAuthorization)
        );
    }

    #[test]
    fn health_is_open_whatever_is_presented() {
        let g = guard();
        for auth in ["", "Bearer wrong-token", "Basic x"] {
            for path in ["/livez", "/readyz", "/readyz?verbose"] {
                assert_eq!(
                    check(&g, "GET", path, &[("authorization", auth)]),
                    Ok(Access::Open),
                    "{path} {auth}"
                );
            }
        }
        // A write to them is not health.
        assert_eq!(
            check(&g, "POST", "/livez", &[]),
            Err(Refusal::MissingToken {
                needed: TokenKind::Control
            })
        );
    }

    #[test]
    fn the_dashboard_page_is_open_but_keeps_the_browser_rules() {
        let g = guard();
        for auth in ["", "Bearer wrong-token"] {
            assert_eq!(
                check(&g, "GET", "/", &[("authorization", auth)]),
                Ok(Access::Open),
                "{auth:?}"
            );
        }
        // Opened from the gateway's own origin (a reload), fine; from elsewhere, or under a
        // rebound name, refused as any other request.
        assert_eq!(
            check(&g, "GET", "/", &[("origin", "http://127.0.0.1:8780")]),
            Ok(Access::Open)
        );
        assert_eq!(
            check(&g, "GET", "/", &[("origin", "http://evil.example")]),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            check(&g, "GET", "/", &[("host", "evil.example:8780")]),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        // The page only: what it reads still takes the token.
        assert_eq!(
            check(&g, "GET", "/?x=1", &[]),
            Ok(Access::Open),
            "a query changes nothing"
        );
        assert_eq!(
            check(&g, "GET", "/api/v1/status", &[]),
            Err(Refusal::MissingToken {
                needed: TokenKind::Read
            })
        );
    }

    #[test]
    fn control_endpoints_take_the_control_token_only() {
        let g = guard();
        for path in [
            "/api/v1/radios/vhf1/tx-inhibit",
            "/api/v1/radios/vhf1/unkey",
        ] {
            let with = |t: &str| check(&g, "POST", path, &[("authorization", &bearer_of(t))]);
            assert_eq!(with(CONTROL), Ok(Access::Control));
            assert_eq!(with(READ), Err(Refusal::NeedsControlToken));
            assert_eq!(with("Ct-S3cret-wrong"), Err(Refusal::WrongToken));
            assert_eq!(
                check(&g, "POST", path, &[]),
                Err(Refusal::MissingToken {
                    needed: TokenKind::Control
                })
            );
            assert_eq!(
                check(&g, "POST", path, &[("authorization", "Basic x")]),
                Err(Refusal::BadAuthorization)
            );
        }
        // Without a control token: 403 "control disabled", whatever is presented.
        for g in [
            guard_with("127.0.0.1:8780", true, false, &[]),
            guard_with("127.0.0.1:8780", false, false, &[]),
        ] {
            assert!(!g.control_enabled());
            for auth in [String::new(), bearer_of(READ), bearer_of(CONTROL)] {
                let r = check(
                    &g,
                    "POST",
                    "/api/v1/radios/vhf1/tx-inhibit",
                    &[("authorization", &auth)],
                );
                assert_eq!(r, Err(Refusal::ControlDisabled), "{auth}");
            }
        }
        let e = Refusal::ControlDisabled;
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.code(), "control_disabled");
        assert!(e.to_string().starts_with("control disabled: "), "{e}");
    }

    #[test]
    fn without_a_read_token_reads_are_open() {
        let g = guard_with("127.0.0.1:8780", false, false, &[]);
        assert!(!g.needs_token());
        assert_eq!(check(&g, "GET", "/api/v1/status", &[]), Ok(Access::Read));
        // A token Prometheus sends anyway, or a malformed header, changes nothing.
        for auth in ["Bearer anything-at-all", "Basic x"] {
            assert_eq!(
                check(&g, "GET", "/metrics", &[("authorization", auth)]),
                Ok(Access::Read)
            );
        }
        // With a control token only: reads are open, the control token still controls.
        let g = guard_with("127.0.0.1:8780", false, true, &[]);
        assert_eq!(check(&g, "GET", "/api/v1/status", &[]), Ok(Access::Read));
        assert_eq!(
            check(
                &g,
                "GET",
                "/api/v1/status",
                &[("authorization", &bearer_of(CONTROL))]
            ),
            Ok(Access::Control)
        );
        let unkey = "/api/v1/radios/vhf1/unkey";
        assert_eq!(
            check(&g, "POST", unkey, &[]),
            Err(Refusal::MissingToken {
                needed: TokenKind::Control
            })
        );
        assert_eq!(
            check(&g, "POST", unkey, &[("authorization", &bearer_of(CONTROL))]),
            Ok(Access::Control)
        );
    }

    #[test]
    fn token_access_tells_the_tokens_apart() {
        let g = guard();
        assert_eq!(g.token_access(READ), Some(Access::Read));
        assert_eq!(g.token_access(CONTROL), Some(Access::Control));
        for t in ["", "x", &READ[..8], &format!("{CONTROL}{CONTROL}")] {
            assert_eq!(g.token_access(t), None, "{t}");
        }
        assert!(Access::Open < Access::Read && Access::Read < Access::Control);
    }

    /// `Host` values that must be refused with the guard of `listen` (default port 8780).
    fn refused_hosts(g: &Guard, hosts: &[&str]) {
        for host in hosts {
            let r = check(
                g,
                "GET",
                "/api/v1/status",
                &[("host", host), ("authorization", &bearer_of(READ))],
            );
            assert_eq!(
                r,
                Err(Refusal::ForeignHost {
                    port: g.listen.port()
                }),
                "{host:?}"
            );
        }
    }

    fn allowed_hosts(g: &Guard, hosts: &[&str]) {
        for host in hosts {
            let r = check(
                g,
                "GET",
                "/api/v1/status",
                &[("host", host), ("authorization", &bearer_of(READ))],
            );
            assert_eq!(r, Ok(Access::Read), "{host:?}");
        }
    }

    #[test]
    fn the_host_must_name_this_api() {
        let g = guard();
        allowed_hosts(
            &g,
            &[
                "127.0.0.1:8780",
                "localhost:8780",
                "LocalHost:8780",
                "[::1]:8780",
                "[0:0:0:0:0:0:0:1]:8780",
            ],
        );
        refused_hosts(
            &g,
            &[
                // DNS rebinding: a hostile name pointed at 127.0.0.1.
                "evil.example:8780",
                "evil.example",
                "localhost.evil.example:8780",
                "127.0.0.1.nip.io:8780",
                // Ours, on another port or none (80).
                "127.0.0.1:8781",
                "localhost:80",
                "localhost",
                "127.0.0.1",
                "[::1]",
                // Other loopback spellings are not the listen address.
                "127.0.0.2:8780",
                "0.0.0.0:8780",
                "localhost.:8780",
                // Malformed.
                "",
                "::1:8780",
                "[::1:8780",
                "[::1]8780",
                "[::1]:",
                "127.0.0.1:",
                "127.0.0.1:99999",
                "127.0.0.1:+8780",
                "127.0.0.1:8780:8780",
                "user@127.0.0.1:8780",
                "evil.example@127.0.0.1:8780",
                "127.0.0.1:8780/x",
                "local host:8780",
            ],
        );
        // Missing altogether (an empty value leaves the header out), or twice.
        let (m, u, mut h) = request("GET", "/livez", &[("host", "")]);
        assert!(h.get("host").is_none());
        assert_eq!(
            g.check(&m, &u, &h),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        h.append("host", HeaderValue::from_static("127.0.0.1:8780"));
        h.append("host", HeaderValue::from_static("127.0.0.1:8780"));
        assert_eq!(
            g.check(&m, &u, &h),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        // Health endpoints are not reached from a rebound name either.
        assert_eq!(
            check(&g, "GET", "/livez", &[("host", "evil.example:8780")]),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        // An absolute request URI must name this API too.
        assert_eq!(
            check(&g, "GET", "http://evil.example:8780/livez", &[]),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        assert_eq!(
            check(&g, "GET", "http://localhost:8780/livez", &[]),
            Ok(Access::Open)
        );
        let e = Refusal::ForeignHost { port: 8780 };
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.code(), "forbidden_host");
        assert!(e.to_string().contains("port 8780"), "{e}");
        assert!(e.to_string().contains("allowed_origins"), "{e}");
    }

    #[test]
    fn the_hosts_of_allowed_origins_are_accepted_with_their_ports() {
        let g = guard_with(
            "127.0.0.1:8780",
            true,
            true,
            &[
                "http://gateway.local:8780",
                "https://gw.example",
                "http://[fd00::5]:9000",
            ],
        );
        allowed_hosts(
            &g,
            &[
                "gateway.local:8780",
                "GATEWAY.LOCAL:8780",
                "gw.example",
                "gw.example:443",
                "[fd00::5]:9000",
                "localhost:8780",
            ],
        );
        refused_hosts(
            &g,
            &[
                "gateway.local:8781",
                "gateway.local",
                "gw.example:80",
                "gw.example:8780",
                "[fd00::5]:8780",
                "[fd00::5]",
                "other.local:8780",
            ],
        );
        // An origin that is not one: the guard cannot be built.
        let config = ApiConfig {
            allowed_origins: vec!["gateway.local".into()],
            ..ApiConfig::default()
        };
        let e = Guard::new(
            "127.0.0.1:8780".parse().unwrap(),
            &config,
            &ApiTokens::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("api.allowed_origins[0]"), "{e}");
    }

    #[test]
    fn ipv6_and_other_listen_addresses() {
        let g = guard_with("[::1]:8780", true, false, &[]);
        allowed_hosts(&g, &["[::1]:8780", "localhost:8780", "127.0.0.1:8780"]);
        refused_hosts(
            &g,
            &[
                "[::1]",
                "[::1]:8781",
                "[::2]:8780",
                "::1",
                "evil.example:8780",
            ],
        );
        // A LAN address: itself, and the loopback names (only this machine uses them).
        let g = guard_with("192.168.1.5:8780", true, false, &[]);
        allowed_hosts(&g, &["192.168.1.5:8780", "localhost:8780"]);
        refused_hosts(
            &g,
            &["192.168.1.6:8780", "192.168.1.5:80", "gateway.lan:8780"],
        );
        let g = guard_with("[2001:db8::1]:8780", true, false, &[]);
        allowed_hosts(&g, &["[2001:db8::1]:8780", "[2001:DB8:0::1]:8780"]);
        refused_hosts(&g, &["[2001:db8::2]:8780", "2001:db8::1:8780"]);
        // Every address: any address literal on the listen port (an address cannot be
        // rebound), never a name that is not allowed.
        for listen in ["0.0.0.0:8780", "[::]:8780"] {
            let g = guard_with(listen, true, false, &[]);
            allowed_hosts(
                &g,
                &[
                    "192.168.1.5:8780",
                    "10.0.0.1:8780",
                    "[fe80::1]:8780",
                    "localhost:8780",
                ],
            );
            refused_hosts(&g, &["gateway.lan:8780", "192.168.1.5:8781", "192.168.1.5"]);
        }
        // Port 80: a Host without a port means it.
        let g = guard_with("127.0.0.1:80", true, false, &[]);
        allowed_hosts(&g, &["localhost", "127.0.0.1", "[::1]", "localhost:80"]);
        refused_hosts(&g, &["localhost:8780", "evil.example"]);
    }

    fn with_origin(g: &Guard, host: &str, origin: &str) -> Result<Access, Refusal> {
        check(
            g,
            "GET",
            "/api/v1/status",
            &[
                ("host", host),
                ("origin", origin),
                ("authorization", &bearer_of(READ)),
            ],
        )
    }

    #[test]
    fn pages_of_other_sites_are_refused() {
        let g = guard_with("127.0.0.1:8780", true, true, &["http://gateway.local:8780"]);
        // No Origin (curl, Prometheus, the monitor): fine.
        assert_eq!(
            check(
                &g,
                "GET",
                "/metrics",
                &[("authorization", &bearer_of(READ))]
            ),
            Ok(Access::Read)
        );
        for (host, origin) in [
            // The page the API serves itself.
            ("127.0.0.1:8780", "http://127.0.0.1:8780"),
            ("localhost:8780", "http://localhost:8780"),
            ("LOCALHOST:8780", "http://LocalHost:8780"),
            ("[::1]:8780", "http://[::1]:8780"),
            // An allowed origin, whatever Host the request reached.
            ("127.0.0.1:8780", "http://gateway.local:8780"),
            ("gateway.local:8780", "http://gateway.local:8780"),
        ] {
            assert_eq!(
                with_origin(&g, host, origin),
                Ok(Access::Read),
                "{host} {origin}"
            );
        }
        for (host, origin) in [
            ("127.0.0.1:8780", "http://evil.example"),
            ("127.0.0.1:8780", "https://evil.example:8780"),
            ("127.0.0.1:8780", "http://127.0.0.1.evil.example:8780"),
            ("127.0.0.1:8780", "http://127.0.0.1:8781"),
            ("127.0.0.1:8780", "http://127.0.0.1"),
            ("127.0.0.1:8780", "http://localhost:8780"),
            ("localhost:8780", "http://127.0.0.1:8780"),
            ("127.0.0.1:8780", "http://gateway.local:8781"),
            ("127.0.0.1:8780", "null"),
            ("127.0.0.1:8780", ""),
            ("127.0.0.1:8780", "file://"),
            ("127.0.0.1:8780", "chrome-extension://abcdef"),
            ("127.0.0.1:8780", "http://127.0.0.1:8780/page"),
        ] {
            let auth = bearer_of(CONTROL);
            let (m, u, mut h) = request(
                "GET",
                "/api/v1/status",
                &[("host", host), ("authorization", &auth)],
            );
            // An empty value is a header all the same here.
            h.insert("origin", HeaderValue::from_str(origin).unwrap());
            assert_eq!(
                g.check(&m, &u, &h),
                Err(Refusal::ForeignOrigin),
                "{host} {origin:?}"
            );
        }
        // Twice, even the same: refused. Before any token is looked at, health included.
        let (m, u, mut h) = request("GET", "/livez", &[]);
        h.append("origin", HeaderValue::from_static("http://127.0.0.1:8780"));
        h.append("origin", HeaderValue::from_static("http://127.0.0.1:8780"));
        assert_eq!(g.check(&m, &u, &h), Err(Refusal::ForeignOrigin));
        assert_eq!(
            check(&g, "GET", "/livez", &[("origin", "http://evil.example")]),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            check(
                &g,
                "POST",
                "/api/v1/radios/vhf1/unkey",
                &[
                    ("origin", "http://evil.example"),
                    ("authorization", &bearer_of(CONTROL))
                ]
            ),
            Err(Refusal::ForeignOrigin)
        );
        let e = Refusal::ForeignOrigin;
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::FORBIDDEN, "forbidden_origin")
        );
    }

    fn ws(g: &Guard, uri: &str, headers: &[(&str, &str)]) -> Result<WsAuth, Refusal> {
        let (_, u, h) = request("GET", uri, headers);
        g.check_websocket(&u, &h)
    }

    #[test]
    fn websocket_handshakes_take_a_header_a_query_token_or_wait_for_auth() {
        let g = guard();
        assert_eq!(ws(&g, "/api/v1/ws", &[]), Ok(WsAuth::AwaitAuth));
        assert_eq!(
            ws(&g, "/api/v1/ws", &[("authorization", &bearer_of(READ))]),
            Ok(WsAuth::Granted(Access::Read))
        );
        assert_eq!(
            ws(&g, &format!("/api/ws?token={READ}"), &[]),
            Ok(WsAuth::Granted(Access::Read))
        );
        assert_eq!(
            ws(&g, &format!("/api/v1/ws?x=1&token={CONTROL}"), &[]),
            Ok(WsAuth::Granted(Access::Control))
        );
        // Percent-encoded, as a browser's URLSearchParams writes it.
        let g2 = {
            let tokens = ApiTokens {
                read: Some(Secret::new("Rd+S3cret/0123456789=")),
                control: None,
            };
            Guard::new(
                "127.0.0.1:8780".parse().unwrap(),
                &ApiConfig::default(),
                &tokens,
            )
            .unwrap()
        };
        assert_eq!(
            ws(&g2, "/api/v1/ws?token=Rd%2BS3cret%2F0123456789%3D", &[]),
            Ok(WsAuth::Granted(Access::Read))
        );
        // A wrong token is refused at the handshake, by header or query; the header wins.
        for (uri, auth) in [
            ("/api/v1/ws?token=Rd-S3cret-wrong", String::new()),
            ("/api/v1/ws", bearer_of("Rd-S3cret-wrong")),
            (
                &*format!("/api/v1/ws?token={READ}"),
                bearer_of("Rd-S3cret-wrong"),
            ),
        ] {
            assert_eq!(
                ws(&g, uri, &[("authorization", &auth)]),
                Err(Refusal::WrongToken),
                "{uri} {auth}"
            );
        }
        assert_eq!(
            ws(&g, "/api/v1/ws", &[("authorization", "Basic x")]),
            Err(Refusal::BadAuthorization)
        );
        // An empty ?token= is none: the AUTH message is awaited.
        assert_eq!(ws(&g, "/api/v1/ws?token=", &[]), Ok(WsAuth::AwaitAuth));
        // The browser rules hold at the handshake (RFC 6455 10.2), before any token.
        assert_eq!(
            ws(
                &g,
                &format!("/api/v1/ws?token={READ}"),
                &[("origin", "http://evil.example")]
            ),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            ws(&g, "/api/v1/ws", &[("host", "evil.example:8780")]),
            Err(Refusal::ForeignHost { port: 8780 })
        );
        assert_eq!(
            ws(&g, "/api/v1/ws", &[("origin", "http://127.0.0.1:8780")]),
            Ok(WsAuth::AwaitAuth)
        );
        // No token configured: granted at once, whatever is presented.
        let open = guard_with("127.0.0.1:8780", false, false, &[]);
        for uri in ["/api/v1/ws", "/api/v1/ws?token=whatever"] {
            assert_eq!(ws(&open, uri, &[]), Ok(WsAuth::Granted(Access::Read)));
        }
    }

    #[test]
    fn the_first_message_auth() {
        let g = guard();
        let auth = |t: &str| format!(r#"{{"op":"AUTH","token":"{t}"}}"#);
        assert_eq!(g.authenticate(&auth(READ)), Ok(Access::Read));
        assert_eq!(g.authenticate(&auth(CONTROL)), Ok(Access::Control));
        assert_eq!(
            g.authenticate(&format!(
                r#" {{ "id": 1, "token": "{READ}", "op": "AUTH" }} "#
            )),
            Ok(Access::Read)
        );
        for (message, expected) in [
            (auth("Rd-S3cret-wrong"), WsAuthError::WrongToken),
            (auth(""), WsAuthError::WrongToken),
            (r#"{"op":"AUTH"}"#.into(), WsAuthError::NoToken),
            (r#"{"op":"AUTH","token":null}"#.into(), WsAuthError::NoToken),
            (r#"{"op":"AUTH","token":7}"#.into(), WsAuthError::NotAuth),
            (
                r#"{"op":"SUBSCRIBE","room":"radio:vhf1","id":1}"#.into(),
                WsAuthError::NotAuth,
            ),
            (
                format!(r#"{{"op":"auth","token":"{READ}"}}"#),
                WsAuthError::NotAuth,
            ),
            (format!(r#"{{"token":"{READ}"}}"#), WsAuthError::NotAuth),
            (format!(r#"["AUTH","{READ}"]"#), WsAuthError::NotAuth),
            (format!(r#""{READ}""#), WsAuthError::NotAuth),
            ("{".into(), WsAuthError::BadJson { line: 1, column: 1 }),
            (
                format!("{{\"op\":\"AUTH\",\n\"token\":\"{READ}"),
                WsAuthError::BadJson {
                    line: 2,
                    column: 35,
                },
            ),
            (
                format!("{} trailing", auth(READ)),
                WsAuthError::BadJson {
                    line: 1,
                    column: 52,
                },
            ),
            (String::new(), WsAuthError::BadJson { line: 1, column: 0 }),
        ] {
            assert_eq!(g.authenticate(&message), Err(expected), "{message}");
        }
        assert_eq!(
            WsAuthError::BadJson { line: 1, column: 1 }.code(),
            "bad_json"
        );
        for e in [
            WsAuthError::NotAuth,
            WsAuthError::NoToken,
            WsAuthError::WrongToken,
            WsAuthError::TimedOut,
        ] {
            assert_eq!(e.code(), "not_authenticated");
            assert!(e.to_string().starts_with("not authenticated: "), "{e}");
        }
        assert!(WsAuthError::TimedOut.to_string().contains("5 s"));
        assert_eq!(AUTH_TIMEOUT, Duration::from_secs(5));
    }

    #[test]
    fn refusals_answer_with_their_status_code_and_challenge() {
        for (e, status, code, challenge) in [
            (
                Refusal::MissingToken {
                    needed: TokenKind::Read,
                },
                401,
                "unauthorized",
                Some("Bearer realm=\"zello-gateway\""),
            ),
            (
                Refusal::BadAuthorization,
                401,
                "unauthorized",
                Some("Bearer realm=\"zello-gateway\", error=\"invalid_request\""),
            ),
            (
                Refusal::WrongToken,
                401,
                "unauthorized",
                Some("Bearer realm=\"zello-gateway\", error=\"invalid_token\""),
            ),
            (
                Refusal::NeedsControlToken,
                403,
                "forbidden",
                Some("Bearer realm=\"zello-gateway\", error=\"insufficient_scope\""),
            ),
            (Refusal::ControlDisabled, 403, "control_disabled", None),
            (Refusal::ForeignOrigin, 403, "forbidden_origin", None),
            (
                Refusal::ForeignHost { port: 1 },
                403,
                "forbidden_host",
                None,
            ),
        ] {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(
                e.www_authenticate().as_ref().map(|v| v.to_str().unwrap()),
                challenge,
                "{e:?}"
            );
            if let Some(c) = challenge {
                assert!(c.contains(REALM));
            }
        }
        let missing = |needed| Refusal::MissingToken { needed }.to_string();
        assert!(missing(TokenKind::Read).ends_with("[api] token_file"));
        assert!(missing(TokenKind::Control).ends_with("[api] control_token_file"));
    }

    #[test]
    fn no_token_shows_in_any_refusal_error_or_debug_output() {
        let g = guard();
        let mut shown = vec![format!("{g:?}")];
        assert!(shown[0].contains("<redacted>"), "{}", shown[0]);
        let wrong = "Zz-S3cret-0123456789abcdef";
        for (method, path, auth) in [
            ("GET", "/metrics", bearer_of(wrong)),
            ("GET", "/metrics", format!("Basic {READ}")),
            ("GET", "/metrics", format!("Bearer {READ} {CONTROL}")),
            ("POST", "/api/v1/radios/vhf1/unkey", bearer_of(READ)),
            ("POST", "/api/v1/radios/vhf1/unkey", bearer_of(wrong)),
        ] {
            let e = check(&g, method, path, &[("authorization", &auth)]).unwrap_err();
            shown.push(format!("{e} {e:?} {:?}", e.www_authenticate()));
        }
        for uri in [
            format!("/api/v1/ws?token={wrong}"),
            format!("/api/v1/ws?token={READ}&token={wrong}"),
        ] {
            let r = ws(&g, &uri, &[("origin", "http://evil.example")]);
            shown.push(format!("{r:?}"));
            let e = ws(&g, &uri, &[]);
            shown.push(format!("{e:?}"));
        }
        for message in [
            format!(r#"{{"op":"AUTH","token":"{wrong}"}}"#),
            format!(r#"{{"op":"AUTH","token":"{READ}"#),
            format!(r#"{{"op":"SUBSCRIBE","token":"{READ}"}}"#),
            format!(r#"{{"op":"AUTH","token":["{READ}"]}}"#),
        ] {
            let e = g.authenticate(&message).unwrap_err();
            shown.push(format!("{e} {e:?}"));
        }
        for s in &shown {
            assert!(!s.contains("S3cret"), "{s}");
        }
    }
}
