//! The local status and event API: what the gateway tells dashboards, monitors and scripts.

pub mod protocol;
