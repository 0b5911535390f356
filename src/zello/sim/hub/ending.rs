//! Sessions ending: connections closing, kicks, drops and freezes (the faults' levers).

use super::{ConnId, ConnLink, Control, Hub};
use crate::zello::sim::log::{SimEvent, StopReason};

impl Hub<'_> {
    /// Removes a session: its streams stop for their receivers, its half-sent images are
    /// forgotten, and its channels' users_online is updated. Returns the session's link.
    pub(super) fn detach(&mut self, conn: ConnId) -> Option<(String, ConnLink)> {
        let s = self.st.sessions.remove(&conn)?;
        if self.st.by_user.get(&s.user) == Some(&conn) {
            self.st.by_user.remove(&s.user);
        }
        let mut owned: Vec<u32> = self
            .st
            .streams
            .iter()
            .filter(|(_, r)| r.owner == conn)
            .map(|(id, _)| *id)
            .collect();
        owned.sort_unstable();
        for id in owned {
            if let Some(rec) = self.st.streams.remove(&id)
                && !rec.stopped
            {
                self.finish_stream(id, rec, StopReason::SenderGone);
            }
        }
        self.st.images.retain(|_, img| img.owner != conn);
        for channel in &s.joined {
            self.refresh_status(channel);
        }
        Some((s.user, s.link))
    }

    /// The connection's task ended on its own: forget its session if it still has one.
    pub(crate) fn connection_ended(&mut self, conn: ConnId) {
        self.detach(conn);
    }

    pub(super) fn kick_conn(&mut self, conn: ConnId) -> bool {
        let Some((user, link)) = self.detach(conn) else {
            return false;
        };
        self.log(SimEvent::Kicked { user: user.clone() });
        tracing::info!(%user, "kicked");
        let _ = link.ctl.send(Control::Kick);
        true
    }

    pub(crate) fn kick_user(&mut self, user: &str) -> bool {
        match self.st.by_user.get(user) {
            Some(&conn) => self.kick_conn(conn),
            None => false,
        }
    }

    pub(crate) fn drop_user(&mut self, user: &str) -> bool {
        let Some(&conn) = self.st.by_user.get(user) else {
            return false;
        };
        match self.detach(conn) {
            Some((user, link)) => {
                tracing::info!(%user, "dropping the connection without a close frame");
                let _ = link.ctl.send(Control::Drop);
                true
            }
            None => false,
        }
    }

    pub(crate) fn set_frozen(&mut self, user: &str, frozen: bool) -> bool {
        let Some(&conn) = self.st.by_user.get(user) else {
            return false;
        };
        let Some(s) = self.st.sessions.get_mut(&conn) else {
            return false;
        };
        if s.frozen == frozen {
            return true;
        }
        s.frozen = frozen;
        let _ = s.link.ctl.send(if frozen {
            Control::Freeze
        } else {
            Control::Thaw
        });
        let channels: Vec<String> = s.joined.iter().cloned().collect();
        tracing::info!(%user, frozen, "connection frozen or thawed");
        self.log(SimEvent::Frozen {
            user: user.to_string(),
            frozen,
        });
        if !frozen {
            for channel in channels {
                self.refresh_status(&channel);
            }
        }
        true
    }
}
