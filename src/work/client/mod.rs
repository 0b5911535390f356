//! A typed async client of the Zello Work API (JSON over HTTPS, rustls with ring).
//!
//! Every call but `user/gettoken` carries the session id in the query string, as the API
//! wants; it is kept in a [`Secret`] and stripped from every error, so it never reaches a log.
//! Reads (the `get` methods, `history/*`, `location/*`, the login itself) are retried with
//! backoff when the network fails; writes only when the connection could not even be made.

use super::error::{ApiCode, Delivery, WorkError};
use super::types::*;
use super::wire::{Form, login_hash, password_hash, path_segment};
use crate::net::Backoff;
use crate::net::tls::{client_config, is_loopback};
use crate::secret::Secret;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

mod admin;
mod archive;

/// How the client waits and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest one request may take.
    pub timeout: Duration,
    /// The longest one `history/getmedia` long-poll is held open before it is repeated
    /// (the API reference asks for at least 30 s).
    pub media_poll_timeout: Duration,
    /// The shortest time between two `history/getmedia` polls.
    pub media_poll_interval: Duration,
    /// How long to wait for a media conversion in all.
    pub media_wait: Duration,
    /// Retries of a read after a network failure.
    pub retries: u32,
    /// The first pause before a retry; it doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// The longest pause before a retry.
    pub backoff_max: Duration,
    /// Extra PEM certificates to trust (a private CA, an Enterprise Server's own).
    pub ca_file: Option<PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            media_poll_timeout: Duration::from_secs(40),
            media_poll_interval: Duration::from_secs(1),
            media_wait: Duration::from_secs(600),
            retries: 4,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            ca_file: None,
        }
    }
}

/// Whether a call changes something on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// One request to make.
struct Call {
    method: &'static str,
    /// The path after the base URL, segments already encoded.
    path: String,
    /// Query fields after `sid`.
    query: Form,
    /// A POST body; GET when `None`.
    body: Option<Form>,
    kind: Kind,
    timeout: Duration,
    /// Whether the session id is sent.
    with_sid: bool,
}

/// What went wrong with one attempt.
enum Attempt {
    Done(WorkError),
    Network {
        message: String,
        delivery: Delivery,
        timeout: bool,
    },
}

/// The first phase of the login.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token to hash the password with.
    pub token: Secret,
    /// The session id it belongs to.
    pub sid: Secret,
}

/// What [`WorkClient::media`] reports while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaProgress {
    /// Queued for conversion (the place in the queue, %).
    Waiting(u64),
    /// Being converted (%).
    Working(u64),
    /// A long-poll ended without an answer and is repeated.
    Repolling,
}

/// A Zello Work API client for one network.
pub struct WorkClient {
    http: reqwest::Client,
    base: url::Url,
    sid: Option<Secret>,
    options: ClientOptions,
}

impl std::fmt::Debug for WorkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkClient")
            .field("base", &self.base.as_str())
            .field("logged_in", &self.sid.is_some())
            .finish()
    }
}

/// `https://` anywhere, `http://` only to loopback; no query or fragment.
pub fn check_base_url(url: &str) -> Result<url::Url, WorkError> {
    let bad = |message: &str| WorkError::BadUrl {
        url: url.to_string(),
        message: message.to_string(),
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| bad("has no host"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not hold credentials"));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(host) => Ok(parsed),
        "http" => Err(bad(
            "plain http:// is only allowed to loopback (the emulator); use https://",
        )),
        other => Err(bad(&format!("scheme {other}:// is not https://"))),
    }
}

/// A reqwest error's text and causes, without its URL (which holds the session id).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

impl WorkClient {
    /// A client for the network at `base` (like `https://acme.zellowork.com`), not logged in.
    pub fn new(base: &str, options: ClientOptions) -> Result<WorkClient, WorkError> {
        let base = check_base_url(base)?;
        let tls =
            client_config(options.ca_file.as_deref()).map_err(|e| WorkError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("zello-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WorkError::Tls(describe(e)))?;
        Ok(WorkClient {
            http,
            base,
            sid: None,
            options,
        })
    }

    /// The network's URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Whether a session id is held.
    pub fn has_session(&self) -> bool {
        self.sid.is_some()
    }

    fn url(&self, call: &Call) -> Result<String, WorkError> {
        let mut url = format!("{}/{}", self.base.as_str().trim_end_matches('/'), call.path);
        let mut query = String::new();
        if call.with_sid {
            let sid = self.sid.as_ref().ok_or(WorkError::NotLoggedIn {
                method: call.method,
            })?;
            query = Form::new().field("sid", sid.expose()).encode_query();
        }
        if !call.query.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&call.query.encode_query());
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        Ok(url)
    }

    async fn attempt(&self, call: &Call) -> Result<serde_json::Value, Attempt> {
        let url = self.url(call).map_err(Attempt::Done)?;
        let request = match &call.body {
            None => self.http.get(&url),
            Some(form) => self
                .http
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.encode()),
        };
        let network = |e: reqwest::Error| Attempt::Network {
            delivery: if e.is_connect() {
                Delivery::NotSent
            } else {
                Delivery::MaybeSent
            },
            timeout: e.is_timeout(),
            message: describe(e),
        };
        let response = request
            .timeout(call.timeout)
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        let body = response.bytes().await.map_err(network)?;
        let method = call.method;
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if matches!(status.as_u16(), 502..=504) => {
                return Err(Attempt::Network {
                    message: format!("the server answered HTTP {status}"),
                    delivery: Delivery::MaybeSent,
                    timeout: false,
                });
            }
            Err(_) if !status.is_success() => {
                return Err(Attempt::Done(WorkError::Http {
                    method,
                    status: status.as_u16(),
                }));
            }
            Err(e) => {
                return Err(Attempt::Done(WorkError::BadResponse {
                    method,
                    message: format!("not JSON ({e})"),
                }));
            }
        };
        let code = match value.get("code") {
            Some(serde_json::Value::String(s)) => s.trim().parse::<u16>().ok(),
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        };
        let status_text = value
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_string();
        match code {
            Some(200..=202) => Ok(value),
            Some(code) => Err(Attempt::Done(WorkError::Api {
                method,
                code: ApiCode::from_number(code),
                status: status_text,
            })),
            None if !status.is_success() => Err(Attempt::Done(WorkError::Http {
                method,
                status: status.as_u16(),
            })),
            None => Err(Attempt::Done(WorkError::BadResponse {
                method,
                message: "no \"code\" field".into(),
            })),
        }
    }

    /// Makes a call, retrying as its kind allows.
    async fn call(&self, call: Call) -> Result<serde_json::Value, WorkError> {
        let mut backoff = Backoff::new(self.options.backoff_min, self.options.backoff_max);
        loop {
            match self.attempt(&call).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Done(e)) => return Err(e),
                Err(Attempt::Network {
                    message, delivery, ..
                }) => {
                    let may_retry = call.kind == Kind::Read || delivery == Delivery::NotSent;
                    if may_retry && backoff.attempts() < self.options.retries {
                        let pause = backoff.next_delay(fastrand::f64());
                        tracing::warn!(
                            method = call.method,
                            "{message}; retrying in {:.1} s",
                            pause.as_secs_f64()
                        );
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    return Err(WorkError::Network {
                        method: call.method,
                        message,
                        delivery,
                        write: call.kind == Kind::Write,
                    });
                }
            }
        }
    }

    fn read(&self, method: &'static str, path: String) -> Call {
        Call {
            method,
            path,
            query: Form::new(),
            body: None,
            kind: Kind::Read,
            timeout: self.options.timeout,
            with_sid: true,
        }
    }

    fn write(&self, method: &'static str, path: String, body: Option<Form>) -> Call {
        Call {
            method,
            path,
            query: Form::new(),
            body,
            kind: Kind::Write,
            timeout: self.options.timeout,
            with_sid: true,
        }
    }

    /// A write whose body is one array (`field[]=a&field[]=b`).
    async fn write_list<S: AsRef<str>>(
        &self,
        method: &'static str,
        path: String,
        field: &str,
        items: &[S],
    ) -> Result<(), WorkError> {
        let body = Form::new().list(field, items);
        self.call(self.write(method, path, Some(body)))
            .await
            .map(drop)
    }

    /// `user/addtochannels` or `user/removefromchannels`.
    async fn users_and_channels<S: AsRef<str>, T: AsRef<str>>(
        &self,
        method: &'static str,
        users: &[S],
        channels: &[T],
    ) -> Result<(), WorkError> {
        let body = Form::new().list("users", users).list("channels", channels);
        self.call(self.write(method, method.into(), Some(body)))
            .await
            .map(drop)
    }

    async fn typed<T: DeserializeOwned>(&self, call: Call) -> Result<T, WorkError> {
        let method = call.method;
        let value = self.call(call).await?;
        serde_json::from_value(value).map_err(|e| WorkError::BadResponse {
            method,
            message: e.to_string(),
        })
    }

    // ---- Authentication ----

    /// `user/gettoken`: starts a session; keeps its id and returns the token to log in with.
    pub async fn get_token(&mut self) -> Result<Token, WorkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            token: String,
            sid: String,
        }
        let mut call = self.read("user/gettoken", "user/gettoken".into());
        call.with_sid = false;
        let a: Answer = self.typed(call).await?;
        let token = Token {
            token: Secret::new(a.token),
            sid: Secret::new(a.sid),
        };
        self.sid = Some(token.sid.clone());
        Ok(token)
    }

    /// `user/login` with a token from [`Self::get_token`]: sends
    /// md5(md5(password) + token + api_key).
    pub async fn login_with_token(
        &mut self,
        token: &Token,
        username: &str,
        password: &Secret,
        api_key: &Secret,
    ) -> Result<(), WorkError> {
        self.sid = Some(token.sid.clone());
        let hash = login_hash(password.expose(), token.token.expose(), api_key.expose());
        let body = Form::new()
            .field("username", username)
            .field("password", hash);
        // Logging in again changes nothing, so it is retried like a read.
        let mut call = self.write("user/login", "user/login".into(), Some(body));
        call.kind = Kind::Read;
        self.call(call).await?;
        tracing::debug!(username, "logged in to the Zello Work API");
        Ok(())
    }

    /// Both phases of the login: `user/gettoken`, then `user/login`.
    pub async fn login(
        &mut self,
        username: &str,
        password: &Secret,
        api_key: &Secret,
    ) -> Result<(), WorkError> {
        let token = self.get_token().await?;
        self.login_with_token(&token, username, password, api_key)
            .await
    }

    /// `user/logout`: ends the session and forgets its id.
    pub async fn logout(&mut self) -> Result<(), WorkError> {
        let result = self
            .call(self.read("user/logout", "user/logout".into()))
            .await;
        self.sid = None;
        result.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        assert!(check_base_url("https://acme.zellowork.com").is_ok());
        assert!(check_base_url("https://zello.example.org/api/").is_ok());
        assert!(check_base_url("http://127.0.0.1:8801").is_ok());
        assert!(check_base_url("http://localhost:8801").is_ok());
        assert!(check_base_url("http://[::1]:8801").is_ok());
        let e = check_base_url("http://acme.zellowork.com").unwrap_err();
        assert!(e.to_string().contains("only allowed to loopback"), "{e}");
        assert!(check_base_url("ftp://acme.zellowork.com").is_err());
        assert!(check_base_url("acme.zellowork.com").is_err());
        assert!(check_base_url("https://acme.zellowork.com/?sid=1").is_err());
        assert!(check_base_url("https://admin:pw@acme.zellowork.com").is_err());
    }

    #[test]
    fn an_unusable_ca_file_is_named() {
        let options = ClientOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..ClientOptions::default()
        };
        let e = WorkClient::new("https://acme.zellowork.com", options).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn debug_shows_no_session() {
        let mut c = WorkClient::new("http://127.0.0.1:9", ClientOptions::default()).unwrap();
        c.sid = Some(Secret::new("0123456789abcdef"));
        let text = format!("{c:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("logged_in: true"), "{text}");
    }

    #[test]
    fn urls_put_the_session_first_and_encode_the_rest() {
        let mut c =
            WorkClient::new("https://acme.zellowork.com/", ClientOptions::default()).unwrap();
        let mut call = c.read("location/get", "location/get".into());
        call.query = Form::new()
            .list("northeast", &["32.8", "-96.7"])
            .field("name", "a b");
        assert!(matches!(c.url(&call), Err(WorkError::NotLoggedIn { .. })));
        c.sid = Some(Secret::new("s1d"));
        assert_eq!(
            c.url(&call).unwrap(),
            "https://acme.zellowork.com/location/get?sid=s1d&northeast%5B%5D=32.8&northeast%5B%5D=-96.7&name=a+b"
        );
    }
}
