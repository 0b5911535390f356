//! The local status and event API: what it serves, built from the gateway's one state.

pub mod metrics;
