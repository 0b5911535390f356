//! What the session does after a connection ends: how long it waits, whether the refresh
//! token goes, what it tells its user. Free of I/O: the randomness comes in as numbers.

use super::core::ConnEnd;
use super::{SessionConfig, SessionEvent};
use crate::net::Backoff;
use crate::zello::protocol::{ErrorClass, ErrorCode};
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// The least a session must have lasted, besides logging on and getting its channel online
/// (or carrying audio), to count as working: a server that accepts the logon and drops the
/// connection at once is still backed off.
pub(crate) const WORKED_AFTER: Duration = Duration::from_secs(5);

/// A duration in seconds to one decimal, for log fields an operator reads.
pub(crate) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// How long to wait after a logon was refused for a reason that more attempts will not
/// change (bad credentials, ...); `None` for the others, which are backed off.
pub(crate) fn refused_delay(code: &ErrorCode, config_retry: Duration) -> Option<Duration> {
    match code.class() {
        ErrorClass::FatalConfig => Some(config_retry),
        _ => None,
    }
}

/// What to do after a connection ended.
#[derive(Debug)]
pub(crate) struct Next {
    /// Wait this long before connecting again.
    pub delay: Duration,
    /// The refresh token was refused: forget it and log on with full credentials.
    pub forget_refresh_token: bool,
    /// Tell the session's user.
    pub event: Option<SessionEvent>,
}

/// What the policy takes from the session's configuration (not its credentials).
struct Policy {
    server: String,
    username: String,
    backoff_max: Duration,
    stable_after: Duration,
    config_retry: Duration,
    kicked_retry: Duration,
}

/// The reconnect policy: a jittered exponential backoff that a working session resets.
pub(crate) struct Retry {
    backoff: Backoff,
    config: Policy,
}

impl Retry {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        Retry {
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            config: Policy {
                server: config.server.clone(),
                username: config.username.clone(),
                backoff_max: config.backoff_max,
                stable_after: config.stable_after,
                config_retry: config.config_retry,
                kicked_retry: config.kicked_retry,
            },
        }
    }

    /// Starts again from the shortest wait (the session was held offline on purpose).
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
    }

    /// Decides after a connection that lasted `lasted`; `worked` says whether it logged on
    /// and had its channel online or carried audio. `jitter` gives numbers in `[0, 1)`.
    /// `None`: the session stops (it was shut down).
    pub(crate) fn after(
        &mut self,
        end: ConnEnd,
        lasted: Duration,
        worked: bool,
        jitter: &mut dyn FnMut() -> f64,
    ) -> Option<Next> {
        self.note_lasted(lasted, worked);
        let wait = |delay| Next {
            delay,
            forget_refresh_token: false,
            event: None,
        };
        Some(match end {
            ConnEnd::Shutdown => return None,
            ConnEnd::HeldOffline => wait(Duration::ZERO),
            ConnEnd::ConnectFailed(e) => {
                let d = self.backoff.next_delay(jitter());
                warn!(event = "connect_failed", server = %self.config.server, error = %e, retry_in_s = secs(d), "cannot connect to the server");
                Next {
                    event: Some(SessionEvent::ConnectFailed {
                        error: e,
                        retry_in: d,
                    }),
                    ..wait(d)
                }
            }
            ConnEnd::Auth(e) => {
                let d = self.config.backoff_max;
                error!(error = %e, retry_in_s = secs(d), "cannot read the auth token");
                wait(d)
            }
            ConnEnd::LogonRefused { code, with_refresh } => {
                self.refused(code, with_refresh, jitter)
            }
            ConnEnd::Kicked => {
                let d = self
                    .config
                    .kicked_retry
                    .max(self.backoff.next_delay(jitter()));
                warn!(event = "kicked", user = %self.config.username, retry_in_s = secs(d),
                    "kicked: the same account logged on elsewhere; give each gateway its own account");
                wait(d)
            }
            ConnEnd::Dead(silent) => {
                let d = self.backoff.next_delay(jitter());
                warn!(
                    event = "connection_dead",
                    silent_s = secs(silent),
                    retry_in_s = secs(d),
                    "no frame from the server, connection presumed dead; reconnecting"
                );
                wait(d)
            }
            ConnEnd::Closed(_) | ConnEnd::Broken(_) | ConnEnd::NoLogonReply(_) => {
                let d = self.backoff.next_delay(jitter());
                let (_, reason) = end.disconnect_reason();
                info!(event = "disconnected", reason = %reason, retry_in_s = secs(d), "connection closed; reconnecting");
                wait(d)
            }
        })
    }

    /// A session that logged on and carried the channel says the server and the link are
    /// fine: a drop after it is a blip, retried from the shortest wait (radio messages wait
    /// meanwhile). A server that refuses, or drops before the logon, keeps being backed off.
    fn note_lasted(&mut self, lasted: Duration, worked: bool) {
        if (worked && lasted >= WORKED_AFTER) || lasted >= self.config.stable_after {
            if self.backoff.attempts() > 0 {
                debug!(
                    lasted_s = secs(lasted),
                    "the last session worked: reconnecting from the shortest wait"
                );
            }
            self.backoff.reset();
        }
    }

    /// A refused logon: a refused refresh token goes and full credentials are tried at once;
    /// a configuration problem waits long; anything else is backed off.
    fn refused(
        &mut self,
        code: ErrorCode,
        with_refresh: bool,
        jitter: &mut dyn FnMut() -> f64,
    ) -> Next {
        if with_refresh && code.class() != ErrorClass::RetryNow {
            info!(error = %code, "refresh token refused; logging on with full credentials");
            return Next {
                delay: Duration::ZERO,
                forget_refresh_token: true,
                event: None,
            };
        }
        let delay = if let Some(d) = refused_delay(&code, self.config.config_retry) {
            let d = d.mul_f64(1.0 + 0.2 * jitter());
            error!(event = "logon_refused", error = %code, hint = code.hint(), retry_in_s = secs(d),
                "logon refused: this is a configuration problem");
            d
        } else {
            let d = self.backoff.next_delay(jitter());
            warn!(event = "logon_refused", error = %code, hint = code.hint(), retry_in_s = secs(d), "logon refused");
            d
        };
        Next {
            delay,
            forget_refresh_token: false,
            event: Some(SessionEvent::LogonRefused { code }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn retry() -> Retry {
        Retry::new(&SessionConfig::default())
    }

    fn delay(r: &mut Retry, end: ConnEnd, lasted: Duration, worked: bool) -> Duration {
        r.after(end, lasted, worked, &mut || 0.0).unwrap().delay
    }

    #[test]
    fn refused_delays() {
        let c = SessionConfig::default();
        assert_eq!(
            refused_delay(&ErrorCode::NotAuthorized, c.config_retry),
            Some(c.config_retry)
        );
        assert_eq!(
            refused_delay(&ErrorCode::InternalServerError, c.config_retry),
            None
        );
    }

    #[test]
    fn drops_before_working_back_off_and_a_working_session_resets() {
        let mut r = retry();
        let closed = || ConnEnd::Closed("x".into());
        let waits: Vec<u64> = (0..4)
            .map(|_| delay(&mut r, closed(), S, false).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        // Logged on and carried the channel, but only for a moment: still backed off.
        assert_eq!(delay(&mut r, closed(), S, true), 16 * S);
        // Worked for longer than WORKED_AFTER: a blip, retried at once.
        assert_eq!(delay(&mut r, closed(), WORKED_AFTER, true), S);
        // Lasted past stable_after even without carrying the channel: reset too.
        delay(&mut r, closed(), S, false);
        assert_eq!(delay(&mut r, closed(), 60 * S, false), S);
    }

    #[test]
    fn shutdown_stops_and_holding_offline_reconnects_at_once() {
        let mut r = retry();
        assert!(r.after(ConnEnd::Shutdown, S, true, &mut || 0.0).is_none());
        assert_eq!(
            delay(&mut r, ConnEnd::HeldOffline, S, false),
            Duration::ZERO
        );
    }

    #[test]
    fn a_refused_refresh_token_goes_and_full_credentials_are_tried_at_once() {
        let mut r = retry();
        let next = r
            .after(
                ConnEnd::LogonRefused {
                    code: ErrorCode::NotAuthorized,
                    with_refresh: true,
                },
                S,
                false,
                &mut || 0.0,
            )
            .unwrap();
        assert_eq!(next.delay, Duration::ZERO);
        assert!(next.forget_refresh_token);
        assert!(
            next.event.is_none(),
            "nothing to report: logging on again at once"
        );
    }

    #[test]
    fn a_configuration_refusal_waits_long_and_says_so() {
        let mut r = retry();
        let c = SessionConfig::default();
        let next = r
            .after(
                ConnEnd::LogonRefused {
                    code: ErrorCode::NotAuthorized,
                    with_refresh: false,
                },
                S,
                false,
                &mut || 0.5,
            )
            .unwrap();
        assert_eq!(next.delay, c.config_retry.mul_f64(1.1));
        assert!(!next.forget_refresh_token);
        assert!(matches!(
            next.event,
            Some(SessionEvent::LogonRefused {
                code: ErrorCode::NotAuthorized
            })
        ));
        // A server error is not final: backed off like a drop.
        let next = r
            .after(
                ConnEnd::LogonRefused {
                    code: ErrorCode::InternalServerError,
                    with_refresh: false,
                },
                S,
                false,
                &mut || 0.0,
            )
            .unwrap();
        assert_eq!(next.delay, S);
    }

    #[test]
    fn kicked_waits_at_least_kicked_retry_and_failures_are_reported() {
        let mut r = retry();
        assert_eq!(
            delay(&mut r, ConnEnd::Kicked, S, true),
            SessionConfig::default().kicked_retry
        );
        let next = r
            .after(
                ConnEnd::ConnectFailed("refused".into()),
                S,
                false,
                &mut || 0.0,
            )
            .unwrap();
        assert!(matches!(
            next.event,
            Some(SessionEvent::ConnectFailed { retry_in, .. }) if retry_in == next.delay
        ));
        assert_eq!(
            delay(&mut r, ConnEnd::Auth("no file".into()), S, false),
            SessionConfig::default().backoff_max
        );
    }
}
