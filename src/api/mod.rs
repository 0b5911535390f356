//! The local status and event API: what the gateway tells dashboards, monitors and scripts,
//! built from the gateway's one state.

pub mod metrics;
pub mod protocol;
