//! Zello Alarms presence. Zello Alarms watches whether the gateway's account is online (its
//! platform name contains "Gateway"). Network blips are ridden out by the session's fast
//! reconnect; but when the radio side fails (sound card, PTT interface or carrier detect,
//! rigctld included) for longer than `[alarms] hardware_grace_s`, the gateway leaves Zello
//! on purpose so the dispatcher is alerted, and comes back once the hardware works again.
//! Optionally a text message on the fault and on the recovery.
//!
//! The decisions are pure ([`machine`]); [`run`] follows the radios' health in the
//! gateway's state and carries them out with the session.

pub mod machine;

use crate::net::backoff::Backoff;
use crate::state::{GatewayEvent, GatewayState, StateHub};
use crate::zello::session::SessionHandle;
use machine::{Action, Alarms};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How long a text waits for its channel to be online before it is given up.
const TEXT_WAIT: Duration = Duration::from_secs(120);

/// `[alarms]`: what Zello Alarms is shown when radio hardware fails.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Leave Zello while radio hardware has failed, so Zello Alarms raises its alert.
    pub offline_on_hardware_fault: bool,
    /// How long a failure must last before the gateway acts (seconds, 5 to 86400).
    pub hardware_grace_s: u64,
    /// Send a text message to this channel (one of the radios' channels) on a fault and on
    /// the recovery.
    pub text_channel: Option<String>,
    /// Address the text to this user only, reached on `text_channel` (default: the first
    /// radio's channel).
    pub text_user: Option<String>,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            offline_on_hardware_fault: true,
            hardware_grace_s: 60,
            text_channel: None,
            text_user: None,
        }
    }
}

impl AlarmsConfig {
    /// The grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.hardware_grace_s)
    }

    /// With `text_user` but no `text_channel`, the user is reached on `first_channel` (the
    /// first radio's).
    pub fn resolved(mut self, first_channel: &str) -> Self {
        if self.text_user.is_some() && self.text_channel.is_none() {
            self.text_channel = Some(first_channel.to_string());
        }
        self
    }

    /// Every problem, each naming its key; `channels` are the radios' channels.
    pub fn problems(&self, channels: &[&str]) -> Vec<String> {
        let mut p = Vec::new();
        if !(5..=86_400).contains(&self.hardware_grace_s) {
            p.push(format!(
                "alarms.hardware_grace_s = {}: use 5 to 86400 (seconds)",
                self.hardware_grace_s
            ));
        }
        if let Some(c) = &self.text_channel
            && !channels.contains(&c.as_str())
        {
            p.push(format!(
                "alarms.text_channel = {c:?}: must be one of the radios' channels ({}), the only ones the gateway is on",
                channels.join(", ")
            ));
        }
        if let Some(u) = &self.text_user
            && u.trim().is_empty()
        {
            p.push("alarms.text_user: must not be empty".into());
        }
        p
    }
}

/// Zello Alarms as the task [`gateway::run_with`](crate::gateway::run_with) starts with
/// its session ([`RunOptions::on_session`](crate::gateway::RunOptions::on_session)).
pub fn on_session(settings: watch::Receiver<AlarmsConfig>) -> crate::gateway::SessionHook {
    Box::new(move |session, state, stop| tokio::spawn(run(settings, session, state, stop)))
}

/// Follows the radios' health in `state` until `shutdown`, leaving and rejoining Zello
/// through `session` and announcing it in the state ([`GatewayEvent::HeldOffline`]). New
/// settings sent on `settings` (a reload) apply at once.
pub async fn run(
    mut settings: watch::Receiver<AlarmsConfig>,
    session: SessionHandle,
    state: StateHub,
    shutdown: CancellationToken,
) {
    let mut config = settings.borrow_and_update().clone();
    let mut settings_open = true;
    let mut alarms = Alarms::new(&config);
    let mut texts = tokio::task::JoinSet::new();
    let mut watch = state.watch();
    let mut state_open = true;
    let mut actions = {
        let now = watch.borrow_and_update();
        alarms.observe(Instant::now(), &now)
    };
    loop {
        for action in std::mem::take(&mut actions) {
            match action {
                Action::GoOffline { reason } => {
                    error!(event = "alarm_offline", reason = %reason, hardware_grace_s = config.hardware_grace_s,
                        "radio hardware failed: leaving Zello on purpose so Zello Alarms alerts; back once it works again");
                    // A fault text queued just before goes out first.
                    while timeout(Duration::from_secs(5), texts.join_next())
                        .await
                        .ok()
                        .flatten()
                        .is_some()
                    {}
                    session.set_online(false);
                    state.publish(GatewayEvent::HeldOffline {
                        reason: Some(reason),
                    });
                }
                Action::GoOnline => {
                    info!(
                        event = "alarm_online",
                        "radio hardware works again: going back online"
                    );
                    session.set_online(true);
                    state.publish(GatewayEvent::HeldOffline { reason: None });
                }
                Action::Text(text) => {
                    let Some(channel) = config.text_channel.clone() else {
                        continue;
                    };
                    let session = session.clone();
                    let user = config.text_user.clone();
                    texts.spawn(send_text(session, channel, user, text, state.watch()));
                }
            }
        }
        let deadline = alarms.next_deadline();
        actions = tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = watch.changed(), if state_open => {
                if changed.is_err() {
                    state_open = false;
                    continue;
                }
                // The latest state, however many changes came since the last look.
                let now = watch.borrow_and_update();
                alarms.observe(Instant::now(), &now)
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                alarms.on_timer(Instant::now())
            }
            Some(_) = texts.join_next(), if !texts.is_empty() => continue,
            changed = settings.changed(), if settings_open => {
                if changed.is_err() {
                    settings_open = false;
                    continue;
                }
                config = settings.borrow_and_update().clone();
                info!(offline_on_hardware_fault = config.offline_on_hardware_fault,
                    hardware_grace_s = config.hardware_grace_s, "alarms settings applied");
                alarms.set_config(&config)
            }
        };
    }
}

/// Sends one text once `channel` is online (waiting up to [`TEXT_WAIT`]).
async fn send_text(
    session: SessionHandle,
    channel: String,
    user: Option<String>,
    text: String,
    mut state: watch::Receiver<GatewayState>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut delay = backoff.next_delay(0.0);
    let until = Instant::now() + TEXT_WAIT;
    loop {
        match session.send_text(&channel, &text, user.clone()).await {
            Ok(()) => {
                info!(channel = %channel, user = user.as_deref(), "alarm text sent");
                return;
            }
            Err(e) if Instant::now() + delay >= until => {
                warn!(channel = %channel, error = %e, "alarm text not sent");
                return;
            }
            Err(_) => {
                // Not connected (yet): try again when the channel comes online, or soon.
                let online = |s: &GatewayState| s.channel(&channel).is_some_and(|c| c.online);
                let wait = async {
                    let mut was = online(&state.borrow_and_update());
                    loop {
                        if state.changed().await.is_err() {
                            std::future::pending::<()>().await
                        }
                        let is = online(&state.borrow_and_update());
                        if is && !was {
                            return;
                        }
                        was = is;
                    }
                };
                let _ = timeout(delay, wait).await;
                delay = backoff.next_delay(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_their_keys() {
        assert!(AlarmsConfig::default().problems(&["Dispatch"]).is_empty());
        let bad = AlarmsConfig {
            offline_on_hardware_fault: true,
            hardware_grace_s: 2,
            text_channel: Some("Ops".into()),
            text_user: Some(" ".into()),
        };
        assert_eq!(
            bad.problems(&["Dispatch"]),
            [
                "alarms.hardware_grace_s = 2: use 5 to 86400 (seconds)",
                "alarms.text_channel = \"Ops\": must be one of the radios' channels (Dispatch), the only ones the gateway is on",
                "alarms.text_user: must not be empty",
            ]
        );
        // A user alone is reached on the first radio's channel.
        let user_only = AlarmsConfig {
            text_user: Some("supervisor".into()),
            ..AlarmsConfig::default()
        };
        assert!(user_only.problems(&["Dispatch"]).is_empty());
        let resolved = user_only.resolved("Dispatch");
        assert_eq!(resolved.text_channel.as_deref(), Some("Dispatch"));
        assert_eq!(resolved.text_user.as_deref(), Some("supervisor"));
        // Nothing to text: nothing resolved.
        assert_eq!(
            AlarmsConfig::default().resolved("Dispatch").text_channel,
            None
        );
    }
}
