//! Ways to make the emulator misbehave on purpose while a test runs.

use super::server::Shared;
use crate::zello::protocol::ErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// How often a refusal applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Times {
    Once,
    Always,
}

/// The settings the connection tasks consult.
#[derive(Debug, Default)]
pub(crate) struct FaultSettings {
    start_stream_delay: Duration,
    reject_start_stream: Option<(ErrorCode, Times)>,
    refuse_logon: Option<(ErrorCode, Times)>,
    refuse_refresh_tokens: bool,
}

fn take(slot: &mut Option<(ErrorCode, Times)>) -> Option<ErrorCode> {
    match slot.take() {
        Some((code, Times::Always)) => {
            *slot = Some((code.clone(), Times::Always));
            Some(code)
        }
        Some((code, Times::Once)) => Some(code),
        None => None,
    }
}

impl FaultSettings {
    pub(crate) fn start_stream_delay(&self) -> Duration {
        self.start_stream_delay
    }

    /// The error to refuse this start_stream with, using up a one-time refusal.
    pub(crate) fn take_start_stream_rejection(&mut self) -> Option<ErrorCode> {
        take(&mut self.reject_start_stream)
    }

    /// The error to refuse this logon with, using up a one-time refusal.
    pub(crate) fn take_logon_refusal(&mut self) -> Option<ErrorCode> {
        take(&mut self.refuse_logon)
    }

    pub(crate) fn refuse_refresh_tokens(&self) -> bool {
        self.refuse_refresh_tokens
    }
}

/// Fault knobs of a running emulator (from [`SimHandle::faults`](super::SimHandle::faults)).
///
/// Settings apply to what happens after the call; the actions on a user act at once and return
/// whether that user was connected.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("settings", &*self.shared.faults())
            .field("status_held", &*self.shared.hold_status.borrow())
            .finish()
    }
}

impl Faults {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Faults { shared }
    }

    /// Delays every `start_stream` reply by `delay` (`Duration::ZERO` for none). The stream
    /// itself starts at once; only the answer to its sender is late.
    pub fn delay_start_stream(&self, delay: Duration) {
        self.shared.faults().start_stream_delay = delay;
    }

    /// Refuses the next `start_stream` with `code`.
    pub fn reject_start_stream_once(&self, code: ErrorCode) {
        self.shared.faults().reject_start_stream = Some((code, Times::Once));
    }

    /// Refuses every `start_stream` with `code` until [`Faults::accept_start_stream`].
    pub fn reject_start_stream_always(&self, code: ErrorCode) {
        self.shared.faults().reject_start_stream = Some((code, Times::Always));
    }

    /// Stops refusing `start_stream`.
    pub fn accept_start_stream(&self) {
        self.shared.faults().reject_start_stream = None;
    }

    /// Refuses the next logon with `code`.
    pub fn refuse_logon_once(&self, code: ErrorCode) {
        self.shared.faults().refuse_logon = Some((code, Times::Once));
    }

    /// Refuses every logon with `code` until [`Faults::accept_logon`].
    pub fn refuse_logon_always(&self, code: ErrorCode) {
        self.shared.faults().refuse_logon = Some((code, Times::Always));
    }

    /// Stops refusing logons.
    pub fn accept_logon(&self) {
        self.shared.faults().refuse_logon = None;
    }

    /// Makes every refresh token fail with `not authorized` (`true`) or work again (`false`),
    /// so a client has to fall back to its full credentials.
    pub fn refuse_refresh_tokens(&self, refuse: bool) {
        self.shared.faults().refuse_refresh_tokens = refuse;
    }

    /// Closes `user`'s TCP connection abruptly, without a WebSocket close frame.
    pub fn drop_connection(&self, user: &str) -> bool {
        self.shared.hub().drop_user(user)
    }

    /// Kicks `user` the way a newer logon does: close code 3003, reason `kicked`.
    pub fn kick(&self, user: &str) -> bool {
        self.shared.hub().kick_user(user)
    }

    /// Stops `user`'s outgoing streams: the sender gets `on_stream_stop` with its own
    /// stream_id, the receivers get `on_stream_stop`, and further packets of those streams are
    /// dropped. Returns the stopped stream ids.
    pub fn stop_stream(&self, user: &str) -> Vec<u32> {
        self.shared.hub().server_stop_streams(user)
    }

    /// Freezes `user`'s connection: nothing is read or written any more, pings included, and
    /// the socket stays open, as with a peer that died without closing.
    pub fn freeze(&self, user: &str) -> bool {
        self.shared.hub().set_frozen(user, true)
    }

    /// Undoes [`Faults::freeze`].
    pub fn thaw(&self, user: &str) -> bool {
        self.shared.hub().set_frozen(user, false)
    }

    /// Holds back every `on_channel_status` until [`Faults::release_channel_status`]. Users
    /// join their channels only when their status is sent.
    pub fn hold_channel_status(&self) {
        self.shared.hold_status.send_replace(true);
    }

    /// Sends the channel status held back since [`Faults::hold_channel_status`].
    pub fn release_channel_status(&self) {
        self.shared.hold_status.send_replace(false);
        self.shared.hub().refresh_all_statuses();
    }

    /// Turns every setting back to normal and releases held channel status (frozen
    /// connections stay frozen).
    pub fn clear(&self) {
        *self.shared.faults() = FaultSettings::default();
        self.release_channel_status();
    }
}
