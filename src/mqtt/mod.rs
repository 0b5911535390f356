//! MQTT for fleets (`[mqtt]`): the gateway's events and state on a broker, where many
//! gateways are watched together (Home Assistant, Node-RED, a fleet dashboard).
//!
//! - [`topics`]: the topics under the prefix (`PREFIX/status`, `PREFIX/radio/NAME/event`,
//!   `PREFIX/radio/NAME/state`, ...), one level per radio or channel name;
//! - [`outbox`]: what to publish and when, pure: each event as the WebSocket sends it, each
//!   room's state retained when it changes (at most 4 a second per topic), what a full queue
//!   refuses dropped (events) or kept due (states);
//! - [`client`]: the tasks around rumqttc: the publisher, which never waits for the broker,
//!   and the connection, reconnected with backoff.
//!
//! A broker outage never delays audio, PTT or the Zello session: the gateway only ever
//! publishes into its [`StateHub`](crate::state::StateHub), which never waits for a reader.

pub mod client;
pub mod outbox;
pub mod topics;

pub use client::{Mqtt, MqttError, MqttStats, start};
pub use outbox::{Message, Outbox, Queue};
pub use topics::{OFFLINE, ONLINE, Topics};

use crate::api::protocol::Codec;
use crate::config::Config;

/// The codec of each radio's messages to the channel, from its configuration: what
/// `MESSAGE_START` tells of a message the radio sends.
pub fn codecs(config: &Config) -> Vec<(String, Codec)> {
    config
        .radios
        .iter()
        .map(|r| (r.name.clone(), Codec::from(&r.codec)))
        .collect()
}
