//! A local Zello Channel API server: the emulator used by the tests, the demo, and installers
//! with no internet access.
//!
//! It speaks the same WebSocket protocol as the real service (see
//! `/work/shared/specs/zello-channel-api.txt` and the field notes), using the
//! [`protocol`](crate::zello::protocol) types for everything on the wire:
//!
//! - logon with open accounts (any username with a password, any auth token, or a refresh
//!   token it issued) or with an [`Accounts`] file; one session per account, the newer logon
//!   kicks the older one with close code 3003 `kicked`;
//! - channel status on join and whenever the number of users online changes;
//! - voice relay with the server's own packet numbering, text messages, locations and images,
//!   with `for` honoured everywhere;
//! - WebSocket pings every [`SimConfig::ping_interval`], dropping clients that do not answer;
//! - an optional built-in `echo` user that replays every message back into its channel;
//! - [`Faults`] to make it misbehave on purpose while a test runs;
//! - a bounded log of what happened ([`SimHandle::log`]) for test assertions.
//!
//! Start it with [`SimServer::start`] (tests, demo) or [`run`] (the command line).

#![warn(missing_docs)]

mod accounts;
mod conn;
mod echo;
mod faults;
mod hub;
mod log;
mod server;
mod tls;

#[cfg(test)]
mod tests;

pub use accounts::{Account, Accounts};
pub use faults::Faults;
pub use log::{DisconnectReason, SimEvent, SimLogEntry, StopReason};
pub use server::{ConnStats, SimHandle, SimServer};
pub use tls::load_tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The name of the built-in user that replays messages when [`SimConfig::echo`] is on.
pub const ECHO_USER: &str = "echo";

/// The most channels one logon may name, as on Zello Work.
pub const MAX_CHANNELS: usize = 100;

/// How the emulator behaves. `SimConfig::default()` matches the real service.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How often each connection gets a WebSocket Ping (30 s on the real service).
    /// `Duration::ZERO` sends no pings at all.
    pub ping_interval: Duration,
    /// How long a client may take to answer a Ping with a Pong before it is dropped (30 s).
    pub pong_timeout: Duration,
    /// The accounts to enforce; `None` lets anyone with any password on.
    pub accounts: Option<Accounts>,
    /// Whether the built-in [`ECHO_USER`] is online in every channel and replays messages.
    pub echo: bool,
    /// Serve `wss://` with this TLS configuration (see [`load_tls`]); `None` serves `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The largest WebSocket message or frame a client may send; bigger ones close the
    /// connection.
    pub max_message_size: usize,
    /// How long after a successful logon the channel status is sent.
    pub status_delay: Duration,
    /// Frames a client may have waiting to be written; a client whose queue fills up (it
    /// reads too slowly) is disconnected so it cannot hold up the others.
    pub client_queue: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(30),
            accounts: None,
            echo: false,
            tls: None,
            max_message_size: 256 * 1024,
            status_delay: Duration::ZERO,
            client_queue: 1024,
        }
    }
}

/// Why the emulator could not start, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error(
        "cannot listen on {addr}: {source}; pick another --listen address or stop the program using that port"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate or key file could not be read.
    #[error("cannot read TLS file {}: {source}; check the path and its permissions", path.display())]
    TlsUnreadable {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A TLS certificate or key file was read but is not usable.
    #[error("TLS file {}: {message}", path.display())]
    TlsInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to give instead.
        message: String,
    },
    /// Only one of the certificate and the key was given.
    #[error("give both --tls-cert and --tls-key to serve wss://, or neither to serve ws://")]
    TlsIncomplete,
    /// The accounts file could not be read.
    #[error("cannot read accounts file {}: {source}; check the path and its permissions", path.display())]
    AccountsUnreadable {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The accounts file is not valid.
    #[error("accounts file {source_name}: {message}")]
    AccountsInvalid {
        /// The file's path, or `<text>` for [`Accounts::parse`].
        source_name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}
