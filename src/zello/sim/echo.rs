//! The built-in `echo` user's voice replays.

use super::server::Shared;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// A message the echo user heard, to be played back.
pub(crate) struct Recording {
    pub(crate) channel: String,
    pub(crate) sender: String,
    /// Sent `for` the echo user: replay it to the sender only.
    pub(crate) private: bool,
    pub(crate) codec_header: String,
    pub(crate) packet_duration: u32,
    pub(crate) packets: Vec<Bytes>,
}

/// Plays a recording back into its channel as a new stream from the echo user, one packet
/// every `packet_duration`, on tokio's clock (so paused-clock tests run it instantly).
pub(crate) async fn replay(sh: Arc<Shared>, rec: Recording) {
    let (stream_id, receivers) = sh.hub().echo_stream_start(&rec);
    let period = Duration::from_millis(u64::from(rec.packet_duration.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for (packet_id, data) in (0u32..).zip(rec.packets.iter()) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sh.cancel.cancelled() => return,
        }
        sh.hub().echo_packet(stream_id, packet_id, &receivers, data);
    }
    sh.hub().echo_stream_stop(stream_id, &receivers);
}
