//! The local status and event API (REST, WebSocket, metrics) the gateway serves.

pub mod guard;
