//! The counters and flags one side of the sound card shares between the reader or writer,
//! the device thread and (for the rings) the callbacks: atomics only.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use super::SoundStats;
use crate::audio::alsa_pcm::IoFailure;

/// Counters and flags shared with the sound card's callbacks: atomics only.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Device path: reads or writes that moved samples. Rings: callbacks.
    pub(super) callbacks: AtomicU64,
    /// Device path: reads or writes tried (a device that is asked and moves nothing for long
    /// has stalled).
    pub(super) attempts: AtomicU64,
    pub(super) overruns: AtomicU64,
    pub(super) overrun_frames: AtomicU64,
    pub(super) underruns: AtomicU64,
    pub(super) dropped_samples: AtomicU64,
    pub(super) skipped_frames: AtomicU64,
    pub(super) xruns: AtomicU64,
    pub(super) losses: AtomicU64,
    pub(super) reopens: AtomicU64,
    /// Stream errors other than xruns.
    pub(super) errors: AtomicU64,
    /// Set by the stream's error callback when the device is gone for sure.
    pub(super) fatal: AtomicBool,
    /// The last error (see [`failure_code`]).
    pub(super) failure: AtomicU8,
    /// Capture: the reader has started, so samples are kept (before, they are not counted as
    /// overruns).
    pub(super) armed: AtomicBool,
    /// Playback: [`IDLE`], [`PLAYING`], [`DRAINING`] or [`STARVED`].
    pub(super) play_state: AtomicU8,
}

impl Counters {
    pub(super) fn snapshot(&self) -> SoundStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SoundStats {
            callbacks: get(&self.callbacks),
            overruns: get(&self.overruns),
            overrun_frames: get(&self.overrun_frames),
            underruns: get(&self.underruns),
            dropped_samples: get(&self.dropped_samples),
            skipped_frames: get(&self.skipped_frames),
            xruns: get(&self.xruns),
            stream_errors: get(&self.errors),
            losses: get(&self.losses),
            reopens: get(&self.reopens),
        }
    }
}

/// No message is playing: an empty ring is not an underrun.
pub(super) const IDLE: u8 = 0;
/// A message is playing: an empty ring is an underrun.
pub(super) const PLAYING: u8 = 1;
/// The message has ended; when the ring runs dry it is over.
pub(super) const DRAINING: u8 = 2;
/// The ring ran dry while a message was playing (counted once); the next write queues a lead
/// of silence again.
pub(super) const STARVED: u8 = 3;

const FAILURE_NONE: u8 = 0;
const FAILURE_GONE: u8 = 1;
const FAILURE_IO: u8 = 2;

/// Sorts a read or write failure: `None` for failures the stream survives, else the
/// failure code.
fn failure_code(f: &IoFailure) -> Option<u8> {
    match f {
        IoFailure::Xrun => None,
        IoFailure::Gone(_) => Some(FAILURE_GONE),
        IoFailure::Other(_) => Some(FAILURE_IO),
    }
}

pub(super) fn failure_text(code: u8) -> &'static str {
    match code {
        FAILURE_GONE => "the device disappeared (unplugged?)",
        FAILURE_IO => "the driver reported an I/O error",
        _ => "the stream failed",
    }
}

/// Forgets the failure of a stream that is gone, before the next one opens.
pub(super) fn clear_failure(counters: &Counters) {
    counters.failure.store(FAILURE_NONE, Ordering::Relaxed);
    counters.fatal.store(false, Ordering::Release);
}

/// Counts a failed read or write (atomics only).
///
/// A device that is gone is lost at once. Other errors (an I/O error from a driver or
/// plugin) are only counted: the device thread declares the device lost if they go on while
/// the device moves no samples (see [`watch`]), since some drivers report a transient error
/// and carry on.
pub(super) fn on_io_failure(counters: &Counters, f: &IoFailure) {
    if *f == IoFailure::Xrun {
        counters.xruns.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(code) = failure_code(f) {
        counters.failure.store(code, Ordering::Relaxed);
        counters.errors.fetch_add(1, Ordering::Release);
        if code == FAILURE_GONE {
            counters.fatal.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_errors_sorted_into_survivable_and_fatal() {
        let c = Counters::default();
        on_io_failure(&c, &IoFailure::Xrun);
        assert_eq!(c.errors.load(Ordering::Relaxed), 0);
        assert_eq!(c.xruns.load(Ordering::Relaxed), 1);
        on_io_failure(&c, &IoFailure::Other("Input/output error".into()));
        assert!(!c.fatal.load(Ordering::Relaxed), "an I/O error may pass");
        assert_eq!(c.errors.load(Ordering::Relaxed), 1);
        assert_eq!(c.failure.load(Ordering::Relaxed), FAILURE_IO);
        on_io_failure(&c, &IoFailure::Gone("No such device".into()));
        assert!(c.fatal.load(Ordering::Relaxed));
        assert_eq!(
            failure_code(&IoFailure::Gone(String::new())),
            Some(FAILURE_GONE)
        );
        assert!(failure_text(FAILURE_GONE).contains("unplugged"));
    }
}
