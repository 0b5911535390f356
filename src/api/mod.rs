//! The local status and event API (REST, WebSocket, metrics, dashboard) the gateway serves,
//! built from the gateway's one state.
//!
//! - [`server`]: the listener, each connection, the WebSocket handshake;
//! - [`http`]: the REST endpoints and their JSON answers;
//! - [`control`]: the control endpoints (TX inhibit, unkey);
//! - [`ws`]: one WebSocket session;
//! - [`feed`]: the gateway's events serialized once, kept for resumes, handed to sessions;
//! - [`sockets`]: the open sessions, as `GET /api/v1/sockets` lists them;
//! - [`levels`]: live audio levels for the `levels:{RADIO}` rooms;
//! - [`guard`]: who may do what (tokens, `Host` and `Origin` rules);
//! - [`metrics`]: the Prometheus metrics;
//! - [`protocol`]: the WebSocket protocol and event catalogue as pure types;
//! - [`service`]: the API as the daemon starts it.

pub mod control;
pub mod feed;
pub mod guard;
pub mod http;
pub mod levels;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod service;
pub mod sockets;
pub mod ws;

pub use server::{ApiError, Running, Setup, start};
