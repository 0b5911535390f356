//! The Zello Channel API: [`protocol`] (pure types and codecs, no I/O), [`session`] (the
//! gateway's WebSocket client), [`sim`] (a local server emulator), [`auth`] (logon tokens)
//! and [`backoff`] (reconnect pacing).

pub mod auth;
pub mod protocol;
pub mod session;
pub mod sim;
