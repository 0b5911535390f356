//! The queues between a radio's bridge and its codec engine: one ordered queue each way, in
//! which only audio is lossy.
//!
//! Audio packets (a packet to play, a packet encoded from the receiver) are many and
//! replaceable: when the other side falls behind, the queue's bound drops them and counts
//! them. Control (transmitting on/off, play begin/end/abort, carrier changes, device
//! failures, playback started/drained) is a few messages per transmission and none can be
//! replaced: a lost `Transmitting(false)` leaves the carrier ignored, a lost device error
//! leaves the state machine believing in a dead sound card. Control therefore never counts
//! against the bound and is never refused while the other side exists.
//!
//! Control travels in the same queue as the audio, not beside it, so neither overtakes the
//! other: a message's packets stay between its `PlayBegin` and `PlayEnd`, and a carrier
//! change stays ahead of the first packet encoded under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;
pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// What travels in a link: audio is lossy, everything else is control.
pub trait Lossy {
    /// Whether this message is audio, which the queue's bound may drop.
    fn is_audio(&self) -> bool;
}

struct Counters {
    /// Audio messages sent and not yet received.
    queued_audio: AtomicUsize,
    /// Audio messages dropped because `queued_audio` was at the bound.
    dropped: AtomicU64,
    max_audio: usize,
}

/// A link holding at most `max_audio` audio messages; control is not bounded.
pub fn channel<T: Lossy>(max_audio: usize) -> (LinkSender<T>, LinkReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters {
        queued_audio: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        max_audio,
    });
    (
        LinkSender {
            tx,
            counters: counters.clone(),
        },
        LinkReceiver { rx, counters },
    )
}

/// The sending side of a [`channel`]. Never blocks: usable from the codec thread and from
/// async code alike.
pub struct LinkSender<T> {
    tx: mpsc::UnboundedSender<T>,
    counters: Arc<Counters>,
}

impl<T> Clone for LinkSender<T> {
    fn clone(&self) -> Self {
        LinkSender {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<T: Lossy> LinkSender<T> {
    /// Queues `item`. Audio beyond the bound is dropped, counted, and returned as
    /// [`TrySendError::Full`]; control is refused only when the receiver is gone
    /// ([`TrySendError::Closed`]).
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let audio = item.is_audio();
        if audio {
            let c = &self.counters;
            let taken = c
                .queued_audio
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < c.max_audio).then_some(n + 1)
                });
            if taken.is_err() {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(TrySendError::Full(item));
            }
        }
        self.tx.send(item).map_err(|e| {
            if audio {
                self.counters.queued_audio.fetch_sub(1, Ordering::AcqRel);
            }
            TrySendError::Closed(e.0)
        })
    }

    /// [`try_send`](Self::try_send), for async callers that used a bounded channel's `send`.
    pub async fn send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.try_send(item)
    }

    /// Audio messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Whether the receiving side is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving side of a [`channel`].
pub struct LinkReceiver<T> {
    rx: mpsc::UnboundedReceiver<T>,
    counters: Arc<Counters>,
}

impl<T: Lossy> LinkReceiver<T> {
    fn took(&self, item: &T) {
        if item.is_audio() {
            self.counters.queued_audio.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The next message, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let item = self.rx.try_recv()?;
        self.took(&item);
        Ok(item)
    }

    /// The next message; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let item = self.rx.recv().await?;
        self.took(&item);
        Some(item)
    }

    /// Audio messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Msg {
        Audio(u32),
        Control(u32),
    }

    impl Lossy for Msg {
        fn is_audio(&self) -> bool {
            matches!(self, Msg::Audio(_))
        }
    }

    #[test]
    fn a_full_queue_drops_audio_only_and_keeps_the_order() {
        let (tx, mut rx) = channel::<Msg>(2);
        tx.try_send(Msg::Audio(1)).unwrap();
        tx.try_send(Msg::Control(1)).unwrap();
        tx.try_send(Msg::Audio(2)).unwrap();
        assert!(matches!(
            tx.try_send(Msg::Audio(3)),
            Err(TrySendError::Full(Msg::Audio(3)))
        ));
        for i in 2..100 {
            tx.try_send(Msg::Control(i)).unwrap();
        }
        assert_eq!(tx.dropped(), 1);
        assert_eq!(rx.try_recv().unwrap(), Msg::Audio(1));
        // Room for one more audio message once one was taken.
        tx.try_send(Msg::Audio(4)).unwrap();
        assert!(tx.try_send(Msg::Audio(5)).is_err());
        assert_eq!(rx.dropped(), 2);
        let rest: Vec<Msg> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let mut want = vec![Msg::Control(1), Msg::Audio(2)];
        want.extend((2..100).map(Msg::Control));
        want.push(Msg::Audio(4));
        assert_eq!(rest, want);
    }

    #[test]
    fn only_a_gone_receiver_refuses_control() {
        let (tx, rx) = channel::<Msg>(0);
        assert!(matches!(
            tx.try_send(Msg::Audio(1)),
            Err(TrySendError::Full(_))
        ));
        tx.try_send(Msg::Control(1)).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(Msg::Control(2)),
            Err(TrySendError::Closed(_))
        ));
    }
}
