//! The topics the gateway publishes under its prefix, one per room and kind of message.
//!
//! | topic | what | retained |
//! |---|---|---|
//! | `PREFIX/status` | `online`, or `offline` (also the last will) | yes |
//! | `PREFIX/gateway/state`, `PREFIX/radio/NAME/state`, `PREFIX/channel/NAME/state` | the room's `SNAPSHOT` | yes |
//! | `PREFIX/gateway/event`, `PREFIX/radio/NAME/event`, `PREFIX/channel/NAME/event` | each event, as the WebSocket sends it | no |
//!
//! A radio's or channel's name is one topic level: `/`, `+`, `#` and `%` in it are written
//! `%2F`, `%2B`, `%23` and `%25`, so no name can reach into another's topics or read as a
//! wildcard.

use crate::api::protocol::{Room, RoomKind};
use std::fmt::Write as _;

/// `online` on the status topic while the gateway is connected.
pub const ONLINE: &str = "online";

/// `offline` on the status topic: published on a clean stop, and the broker's last will for
/// this client when the connection is lost without one.
pub const OFFLINE: &str = "offline";

/// The topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (`zello-gateway/pi4`), as configured and checked.
    pub fn new(prefix: impl Into<String>) -> Self {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// `PREFIX/status`.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// `PREFIX/gateway/event`, `PREFIX/radio/NAME/event`, ...; none for a levels room, which
    /// is not published.
    pub fn event(&self, room: &Room) -> Option<String> {
        self.of(room, "event")
    }

    /// `PREFIX/gateway/state`, `PREFIX/radio/NAME/state`, ...; none for a levels room.
    pub fn state(&self, room: &Room) -> Option<String> {
        self.of(room, "state")
    }

    fn of(&self, room: &Room, what: &str) -> Option<String> {
        if room.kind() == RoomKind::Levels {
            return None;
        }
        let kind = room.kind().as_str();
        Some(match room.name() {
            Some(name) => format!("{}/{kind}/{}/{what}", self.prefix, level(name)),
            None => format!("{}/{kind}/{what}", self.prefix),
        })
    }
}

/// `name` as one topic level (see the module's documentation): the level separator, the
/// wildcards, the escape itself and control characters (NUL is forbidden in topics) are
/// percent-encoded; every other character stays as it is.
pub fn level(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '/' | '+' | '#' | '%') || c.is_control() {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_room_has_its_topics() {
        let t = Topics::new("zello-gateway/pi4");
        assert_eq!(t.status(), "zello-gateway/pi4/status");
        assert_eq!(
            t.event(&Room::Gateway).as_deref(),
            Some("zello-gateway/pi4/gateway/event")
        );
        assert_eq!(
            t.state(&Room::Gateway).as_deref(),
            Some("zello-gateway/pi4/gateway/state")
        );
        assert_eq!(
            t.event(&Room::Radio("vhf1".into())).as_deref(),
            Some("zello-gateway/pi4/radio/vhf1/event")
        );
        assert_eq!(
            t.state(&Room::Channel("Dispatch".into())).as_deref(),
            Some("zello-gateway/pi4/channel/Dispatch/state")
        );
        assert_eq!(t.event(&Room::Levels("vhf1".into())), None);
        assert_eq!(t.state(&Room::Levels("vhf1".into())), None);
    }

    #[test]
    fn a_name_stays_one_level_and_never_a_wildcard() {
        let t = Topics::new("fleet/gw1");
        assert_eq!(
            t.state(&Room::Channel("North/South #2 + 100%".into()))
                .as_deref(),
            Some("fleet/gw1/channel/North%2FSouth %232 %2B 100%25/state")
        );
        assert_eq!(level("a\0b\nc"), "a%00b%0Ac");
        // Letters of any script stay readable.
        assert_eq!(level("Служба ÉÀ"), "Служба ÉÀ");
    }
}
