//! Error strings of the Channel API, documented and seen in the field, and what to do about
//! each one.

use std::fmt;

/// What a client should do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: retry (or reconnect) right away.
    RetryNow,
    /// Transient but caused by load or by us: wait before trying again.
    BackOff,
    /// The configuration (credentials, channel, account) is wrong: retrying will not help
    /// until an operator changes something; retry only slowly.
    FatalConfig,
}

/// An error code from a reply's `error` field, an `on_error` event or a channel status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownCommand,
    InternalServerError,
    InvalidJson,
    InvalidRequest,
    NotAuthorized,
    NotLoggedIn,
    NotEnoughParams,
    ServerClosedConnection,
    ChannelIsNotReady,
    ListenOnlyConnection,
    FailedToStartStream,
    FailedToStopStream,
    FailedToSendData,
    InvalidAudioPacket,
    ChannelsLimitExceeded,
    // Seen in the field, not in the spec.
    WoodpeckerProhibited,
    Kicked,
    EmptyMessage,
    UnableToVerify,
    InvalidStreamId,
    NoPhone,
    /// Anything else, kept verbatim.
    Other(String),
}

const TABLE: &[(&str, ErrorCode)] = &[
    ("unknown command", ErrorCode::UnknownCommand),
    ("internal server error", ErrorCode::InternalServerError),
    ("invalid json", ErrorCode::InvalidJson),
    ("invalid request", ErrorCode::InvalidRequest),
    ("not authorized", ErrorCode::NotAuthorized),
    ("not logged in", ErrorCode::NotLoggedIn),
    ("not enough params", ErrorCode::NotEnoughParams),
    (
        "server closed connection",
        ErrorCode::ServerClosedConnection,
    ),
    ("channel is not ready", ErrorCode::ChannelIsNotReady),
    ("listen only connection", ErrorCode::ListenOnlyConnection),
    ("failed to start stream", ErrorCode::FailedToStartStream),
    ("failed to stop stream", ErrorCode::FailedToStopStream),
    ("failed to send data", ErrorCode::FailedToSendData),
    ("invalid audio packet", ErrorCode::InvalidAudioPacket),
    ("channels limit exceeded", ErrorCode::ChannelsLimitExceeded),
    ("woodpecker prohibited", ErrorCode::WoodpeckerProhibited),
    ("kicked", ErrorCode::Kicked),
    ("empty message", ErrorCode::EmptyMessage),
    ("unable to verify", ErrorCode::UnableToVerify),
    ("invalid stream id", ErrorCode::InvalidStreamId),
    ("no phone", ErrorCode::NoPhone),
];

impl ErrorCode {
    /// Every named code (not `Other`), for tests and documentation.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        TABLE.iter().map(|(_, c)| c.clone())
    }

    /// Parses the wire string (case and surrounding space are ignored).
    pub fn parse(text: &str) -> ErrorCode {
        let norm = text.trim().to_ascii_lowercase();
        TABLE
            .iter()
            .find(|(s, _)| *s == norm)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| ErrorCode::Other(text.to_string()))
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            code => TABLE
                .iter()
                .find(|(_, c)| c == code)
                .map(|(s, _)| *s)
                .unwrap_or("unknown error"),
        }
    }

    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        use ErrorCode::*;
        match self {
            InternalServerError
            | ServerClosedConnection
            | NotLoggedIn
            | FailedToStopStream
            | FailedToSendData
            | InvalidAudioPacket
            | InvalidStreamId => RetryNow,
            UnknownCommand | InvalidJson | InvalidRequest | ChannelIsNotReady
            | FailedToStartStream | WoodpeckerProhibited | Kicked | EmptyMessage | Other(_) => {
                BackOff
            }
            NotAuthorized
            | NotEnoughParams
            | ListenOnlyConnection
            | ChannelsLimitExceeded
            | UnableToVerify
            | NoPhone => FatalConfig,
        }
    }

    /// One line telling an operator what it means for them.
    pub fn hint(&self) -> &'static str {
        use ErrorCode::*;
        match self {
            UnknownCommand | InvalidRequest | InvalidJson => {
                "the server did not understand a request; check for a gateway update"
            }
            InternalServerError => "server-side failure; retrying",
            NotAuthorized => {
                "username, password or token refused: check [zello] credentials and the auth token"
            }
            NotLoggedIn => "a request went out before logon completed; reconnecting",
            NotEnoughParams => {
                "a required field is missing: check that username, password (and token for consumer Zello) are set"
            }
            ServerClosedConnection => "the server closed the connection; reconnecting",
            ChannelIsNotReady => "the channel is not online yet; waiting for its status",
            ListenOnlyConnection => {
                "the account is listen-only on this channel: give it talk rights or remove listen_only"
            }
            FailedToStartStream => "the server could not start the message; will try again",
            FailedToStopStream => "harmless: the server had already ended the message",
            FailedToSendData => "an audio packet was not delivered",
            InvalidAudioPacket => "the server refused an audio packet",
            ChannelsLimitExceeded => {
                "too many channels for this account (100 on Zello Work, 1 on consumer Zello)"
            }
            WoodpeckerProhibited => {
                "too many short messages in a row (chattering squelch?): raise the carrier hang or kerchunk filter"
            }
            Kicked => "the same account logged on elsewhere: give each gateway its own account",
            EmptyMessage => "an empty message was refused",
            UnableToVerify => {
                "the server could not verify the auth token: check issuer, key and clock"
            }
            InvalidStreamId => "the stream id was not known to the server",
            NoPhone => "the channel requires a verified phone number on the gateway's account",
            Other(_) => "unrecognised error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_class_and_hint() {
        let mut n = 0;
        for code in ErrorCode::all() {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            assert!(!code.hint().is_empty());
            let _ = code.class();
            n += 1;
        }
        assert_eq!(n, 21);
    }

    #[test]
    fn classification() {
        assert_eq!(ErrorCode::NotAuthorized.class(), ErrorClass::FatalConfig);
        assert_eq!(
            ErrorCode::ServerClosedConnection.class(),
            ErrorClass::RetryNow
        );
        assert_eq!(ErrorCode::WoodpeckerProhibited.class(), ErrorClass::BackOff);
        assert_eq!(ErrorCode::Kicked.class(), ErrorClass::BackOff);
        assert_eq!(ErrorCode::NoPhone.class(), ErrorClass::FatalConfig);
        assert_eq!(ErrorCode::parse("brand new").class(), ErrorClass::BackOff);
    }

    #[test]
    fn unknown_strings_are_kept() {
        let c = ErrorCode::parse("something new");
        assert_eq!(c, ErrorCode::Other("something new".into()));
        assert_eq!(c.to_string(), "something new");
        assert_eq!(
            ErrorCode::parse(" Not Authorized "),
            ErrorCode::NotAuthorized
        );
    }

    #[test]
    fn serde_as_plain_string() {
        let c: ErrorCode = serde_json::from_str("\"kicked\"").unwrap();
        assert_eq!(c, ErrorCode::Kicked);
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"kicked\"");
    }
}
