//! Channel membership and the status each member is told.

use super::{ConnId, Hub, deliver, text_msg};
use crate::zello::protocol::{ChannelState, ChannelStatus, ErrorCode, Event};
use crate::zello::sim::log::SimEvent;
use std::collections::BTreeSet;

impl Hub<'_> {
    /// Puts a logged-on session into its channels and sends the channel status: offline with a
    /// configuration error for the channels its account may not join.
    /// Returns `false` (doing nothing) while channel status is held back.
    pub(crate) fn join(&mut self, conn: ConnId, allowed: &[String], denied: &[String]) -> bool {
        if *self.sh.hold_status.borrow() {
            return false;
        }
        let st = &mut *self.st;
        let Some(s) = st.sessions.get_mut(&conn) else {
            return true;
        };
        let user = s.user.clone();
        for channel in allowed {
            s.joined.insert(channel.clone());
        }
        for channel in denied {
            let event = Event::ChannelStatus(ChannelStatus {
                channel: channel.clone(),
                status: ChannelState::Offline,
                users_online: 0,
                images_supported: false,
                texting_supported: false,
                locations_supported: false,
                error: Some(ErrorCode::NotAuthorized.as_str().to_string()),
                error_type: Some("configuration".into()),
            });
            deliver(&mut st.sessions, conn, text_msg(&event));
            tracing::info!(%user, %channel, "channel refused: the account may not join it");
            self.sh.log.push(SimEvent::StatusSent {
                user: user.clone(),
                channel: channel.clone(),
                online: false,
                users_online: 0,
            });
        }
        for channel in allowed {
            self.refresh_status(channel);
        }
        true
    }

    /// How many users `channel` has, the echo user included.
    pub(super) fn users_online(&self, channel: &str) -> u32 {
        let n = self
            .st
            .sessions
            .values()
            .filter(|s| s.joined.contains(channel))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX) + u32::from(self.echo_on())
    }

    /// Sends `on_channel_status` to every member of `channel` whose last one is out of date.
    pub(crate) fn refresh_status(&mut self, channel: &str) {
        if *self.sh.hold_status.borrow() {
            return;
        }
        let users_online = self.users_online(channel);
        let st = &mut *self.st;
        let mut targets: Vec<ConnId> = st
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.joined.contains(channel)
                    && !s.frozen
                    && s.last_status.get(channel) != Some(&users_online)
            })
            .map(|(id, _)| *id)
            .collect();
        targets.sort_unstable();
        let event = Event::ChannelStatus(ChannelStatus::online(channel, users_online));
        let msg = text_msg(&event);
        for id in targets {
            let Some(s) = st.sessions.get_mut(&id) else {
                continue;
            };
            s.last_status.insert(channel.to_string(), users_online);
            let user = s.user.clone();
            deliver(&mut st.sessions, id, msg.clone());
            self.sh.log.push(SimEvent::StatusSent {
                user,
                channel: channel.to_string(),
                online: true,
                users_online,
            });
        }
    }

    /// Brings every channel's status up to date (after a hold is released).
    pub(crate) fn refresh_all_statuses(&mut self) {
        let channels: BTreeSet<String> = self
            .st
            .sessions
            .values()
            .flat_map(|s| s.joined.iter().cloned())
            .collect();
        for channel in channels {
            self.refresh_status(&channel);
        }
    }
}
