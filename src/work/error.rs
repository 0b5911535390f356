//! What can go wrong talking to a Zello Work network: the API's own error codes, each with
//! its meaning and what to do, and the transport's failures.

use std::fmt;

/// An error code of the Zello Work API (the "code" field of a response that is not "200").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiCode {
    /// 301: no session, or the session has ended.
    Unauthenticated,
    /// 302: the login worked but the user is not an administrator.
    NotAdmin,
    /// 303: wrong username, password or API key.
    BadCredentials,
    /// 305: the login came without the token of `user/gettoken`.
    MissingToken,
    /// 400: a method the server does not know.
    BadRequest,
    /// 404: the user or channel does not exist.
    NotFound,
    /// 405: the user or channel exists already.
    AlreadyExists,
    /// 407: the license or service plan allows no more users or gateways.
    LimitReached,
    /// 501: the server's database failed.
    Database,
    /// 504: the server could not reach the Zello login server.
    LoginServerUnreachable,
    /// 519: the Zello login server answered with an error.
    LoginServerError,
    /// 520: the server could not change the user's password.
    PasswordNotUpdated,
    /// 605: a required parameter is missing.
    MissingParameters,
    /// A code the API reference does not list.
    Other(u16),
}

impl ApiCode {
    /// Every code of the API reference's table, in its order.
    pub const ALL: [ApiCode; 13] = [
        ApiCode::Unauthenticated,
        ApiCode::NotAdmin,
        ApiCode::BadCredentials,
        ApiCode::MissingToken,
        ApiCode::BadRequest,
        ApiCode::NotFound,
        ApiCode::AlreadyExists,
        ApiCode::LimitReached,
        ApiCode::Database,
        ApiCode::LoginServerUnreachable,
        ApiCode::LoginServerError,
        ApiCode::PasswordNotUpdated,
        ApiCode::MissingParameters,
    ];

    /// The code for a number.
    pub fn from_number(code: u16) -> ApiCode {
        ApiCode::ALL
            .into_iter()
            .find(|c| c.number() == code)
            .unwrap_or(ApiCode::Other(code))
    }

    /// The number on the wire.
    pub fn number(self) -> u16 {
        match self {
            ApiCode::Unauthenticated => 301,
            ApiCode::NotAdmin => 302,
            ApiCode::BadCredentials => 303,
            ApiCode::MissingToken => 305,
            ApiCode::BadRequest => 400,
            ApiCode::NotFound => 404,
            ApiCode::AlreadyExists => 405,
            ApiCode::LimitReached => 407,
            ApiCode::Database => 501,
            ApiCode::LoginServerUnreachable => 504,
            ApiCode::LoginServerError => 519,
            ApiCode::PasswordNotUpdated => 520,
            ApiCode::MissingParameters => 605,
            ApiCode::Other(n) => n,
        }
    }

    /// What the code means, as the API reference says.
    pub fn meaning(self) -> &'static str {
        match self {
            ApiCode::Unauthenticated => "not logged in (no session, or it has ended)",
            ApiCode::NotAdmin => "the login is right but the user has no admin rights",
            ApiCode::BadCredentials => "invalid username, password or API key",
            ApiCode::MissingToken => "the login came without its token",
            ApiCode::BadRequest => "bad request (the server does not know this method)",
            ApiCode::NotFound => "the user or channel does not exist",
            ApiCode::AlreadyExists => "the user or channel already exists",
            ApiCode::LimitReached => "limits reached: the license or service plan allows no more",
            ApiCode::Database => "the server's database failed",
            ApiCode::LoginServerUnreachable => "the server cannot reach the Zello login server",
            ApiCode::LoginServerError => "the Zello login server returned an error",
            ApiCode::PasswordNotUpdated => "the server failed to update the user's password",
            ApiCode::MissingParameters => "a required parameter is missing",
            ApiCode::Other(_) => "an error the API reference does not list",
        }
    }

    /// What to do about it.
    pub fn advice(self) -> &'static str {
        match self {
            ApiCode::Unauthenticated => "log in again",
            ApiCode::NotAdmin => {
                "use an administrator's account, or give this user admin rights in the web console"
            }
            ApiCode::BadCredentials => {
                "check the admin username and password, and the API key (web console: Settings > API)"
            }
            ApiCode::MissingToken => "log in again from the start (user/gettoken first)",
            ApiCode::BadRequest => {
                "the server may run an older API version; check the network's URL"
            }
            ApiCode::NotFound => "check the name (names are case-sensitive)",
            ApiCode::AlreadyExists => "pick another name, or update the existing one",
            ApiCode::LimitReached => {
                "delete unused users or gateways, or raise the plan's limits in the web console"
            }
            ApiCode::Database
            | ApiCode::LoginServerUnreachable
            | ApiCode::LoginServerError
            | ApiCode::PasswordNotUpdated => "a server-side failure; try again later",
            ApiCode::MissingParameters => {
                "this program sent an incomplete request; please report it"
            }
            ApiCode::Other(_) => "see the status text",
        }
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// Whether a failed request may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The connection could not be made: nothing was sent.
    NotSent,
    /// The request may have been received and acted on.
    MaybeSent,
}

/// A failure of a Zello Work API call. Messages never hold the session id, a password or
/// the API key.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The server answered with an error code.
    #[error("{method}: {} (code {code}, \"{status}\"): {}", code.meaning(), code.advice())]
    Api {
        /// The API method, like `user/login`.
        method: &'static str,
        /// The code.
        code: ApiCode,
        /// The server's status text.
        status: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("{method}: {message}{}", match (delivery, write) {
        (Delivery::MaybeSent, true) => "; the change may or may not have been made (it is not retried): check before trying again",
        _ => "",
    })]
    Network {
        /// The API method.
        method: &'static str,
        /// What happened (without the URL, which holds the session id).
        message: String,
        /// Whether the request may have reached the server.
        delivery: Delivery,
        /// Whether the method changes something.
        write: bool,
    },
    /// The server answered with an HTTP error and no API code.
    #[error("{method}: the server answered HTTP {status}; check the network's URL")]
    Http {
        /// The API method.
        method: &'static str,
        /// The HTTP status.
        status: u16,
    },
    /// The answer was not what the API reference describes.
    #[error("{method}: unexpected answer from the server: {message}")]
    BadResponse {
        /// The API method.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A call that needs a session was made before logging in.
    #[error("{method}: not logged in; log in first")]
    NotLoggedIn {
        /// The API method.
        method: &'static str,
    },
    /// The URL cannot be used.
    #[error("URL {url:?}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
    /// The media did not become ready in time.
    #[error("history/getmedia: media {key} was not ready after {waited_s} s; try again later")]
    MediaTimeout {
        /// The media key.
        key: String,
        /// How long it was waited for.
        waited_s: u64,
    },
    /// A downloaded file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl WorkError {
    /// The API code, when the server gave one.
    pub fn code(&self) -> Option<ApiCode> {
        match self {
            WorkError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_says_something() {
        for c in ApiCode::ALL {
            assert_eq!(ApiCode::from_number(c.number()), c);
            assert!(!c.meaning().is_empty() && !c.advice().is_empty());
        }
        assert_eq!(ApiCode::from_number(999), ApiCode::Other(999));
        let e = WorkError::Api {
            method: "user/login",
            code: ApiCode::BadCredentials,
            status: "Invalid username or password".into(),
        };
        let text = e.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("user/login: invalid username, password or API key (code 303"));
        assert!(text.contains("API key"), "{text}");
    }

    #[test]
    fn only_writes_that_may_have_happened_say_so() {
        let e = |delivery, write| {
            WorkError::Network {
                method: "user/save",
                message: "connection reset".into(),
                delivery,
                write,
            }
            .to_string()
        };
        assert!(e(Delivery::MaybeSent, true).contains("may or may not have been made"));
        assert!(!e(Delivery::NotSent, true).contains("may or may not"));
        assert!(!e(Delivery::MaybeSent, false).contains("may or may not"));
    }
}
