//! The gateway's one authoritative state.
//!
//! The gateway tells what happens as [`GatewayEvent`]s through a [`StateHub`]: each event
//! gets a sequence number, is applied to the [`GatewayState`] ([`apply`], pure) and then
//! goes to the event streams. Readers that need to be right (systemd's status, the Zello
//! Alarms decisions) read the state, whose latest value a slow reader never loses; event
//! streams are for timelines, and a reader that falls behind reads the state again.
//!
//! Everything serializes (snake_case) for a local API: radios and channels by name,
//! times as unix milliseconds.
//!
//! This module depends on nothing else in the crate.

mod event;
mod hub;
mod model;

pub use event::{ChannelFeatures, DisconnectReason, GatewayEvent, MessageCodec, MessageOutcome};
pub use hub::{EVENT_CAPACITY, Stamped, StateHub, unix_ms};
pub use model::{
    Activity, ChannelState, Counters, Direction, Gateway, GatewayState, HISTORY_LEN, Health,
    Inhibit, Link, Message, PartHealth, RadioState, apply,
};

#[cfg(test)]
mod tests;
