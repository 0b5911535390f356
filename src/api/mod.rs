//! The local status and event API (REST, WebSocket, metrics, dashboard) the gateway serves,
//! built from the gateway's one state.

pub mod guard;
pub mod metrics;
pub mod protocol;
