//! The queue between the session and the task that writes the WebSocket: audio frames on a
//! bounded path (dropped and counted when the writer falls behind), control frames (logon,
//! start/stop_stream, image parts, close) on their own path, never dropped.
//!
//! Every frame takes a ticket when queued and the writer sends them in ticket order, so a
//! stop_stream never overtakes the audio of its message queued before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Audio frames allowed in the writer's queue before new ones are dropped (about 4 s of
/// 60 ms packets).
pub(crate) const AUDIO_CAPACITY: usize = 64;

type Ticketed = (u64, Message);

/// The session's side of the queue. Cheap to clone: each outgoing message holds one while
/// its stream is open, and queues its audio straight into it.
#[derive(Clone)]
pub(crate) struct Outbox {
    audio: mpsc::Sender<Ticketed>,
    control: mpsc::UnboundedSender<Ticketed>,
    ticket: Arc<AtomicU64>,
}

/// The writer task's side of the queue.
pub(crate) struct Inbox {
    audio: mpsc::Receiver<Ticketed>,
    control: mpsc::UnboundedReceiver<Ticketed>,
    next_audio: Option<Ticketed>,
    next_control: Option<Ticketed>,
}

/// A queue whose audio path holds `audio_capacity` frames.
pub(crate) fn queue(audio_capacity: usize) -> (Outbox, Inbox) {
    let (atx, arx) = mpsc::channel(audio_capacity.max(1));
    let (ctx, crx) = mpsc::unbounded_channel();
    (
        Outbox {
            audio: atx,
            control: ctx,
            ticket: Arc::new(AtomicU64::new(0)),
        },
        Inbox {
            audio: arx,
            control: crx,
            next_audio: None,
            next_control: None,
        },
    )
}

impl Outbox {
    fn ticket(&self) -> u64 {
        self.ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues an audio frame; false when the queue is full (or the writer gone) and the
    /// frame is dropped.
    pub(crate) fn push_audio(&self, frame: Vec<u8>) -> bool {
        self.audio
            .try_send((self.ticket(), Message::binary(frame)))
            .is_ok()
    }

    /// Queues a control frame: never dropped while the writer runs.
    pub(crate) fn push_control(&self, msg: Message) {
        let _ = self.control.send((self.ticket(), msg));
    }
}

impl Inbox {
    /// The next frame to write, in the order they were queued; `None` once every sender is
    /// gone and the queue is empty.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        loop {
            if self.next_audio.is_none() {
                self.next_audio = self.audio.try_recv().ok();
            }
            if self.next_control.is_none() {
                self.next_control = self.control.try_recv().ok();
            }
            let audio_first = match (&self.next_audio, &self.next_control) {
                (Some((a, _)), Some((c, _))) => a < c,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => {
                    tokio::select! {
                        Some(a) = self.audio.recv() => self.next_audio = Some(a),
                        Some(c) = self.control.recv() => self.next_control = Some(c),
                        else => return None,
                    }
                    continue;
                }
            };
            let next = if audio_first {
                self.next_audio.take()
            } else {
                self.next_control.take()
            };
            return next.map(|(_, msg)| msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Message) -> String {
        match m {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => format!("bin{}", b[0]),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn audio_is_dropped_when_full_and_control_still_goes_in_order() {
        let (out, mut inbox) = queue(2);
        assert!(out.push_audio(vec![1]));
        assert!(out.push_audio(vec![2]));
        assert!(!out.push_audio(vec![3]), "a full queue drops audio");
        out.push_control(Message::text("stop_stream"));
        let got: Vec<String> = [
            inbox.next().await.unwrap(),
            inbox.next().await.unwrap(),
            inbox.next().await.unwrap(),
        ]
        .iter()
        .map(text)
        .collect();
        assert_eq!(got, ["bin1", "bin2", "stop_stream"]);
        assert!(
            out.push_audio(vec![4]),
            "room again once the writer took frames"
        );
        drop(out);
        assert_eq!(text(&inbox.next().await.unwrap()), "bin4");
        assert!(inbox.next().await.is_none());
    }

    #[tokio::test]
    async fn control_queued_first_goes_first() {
        let (out, mut inbox) = queue(4);
        out.push_control(Message::text("start_stream"));
        assert!(out.push_audio(vec![1]));
        assert_eq!(text(&inbox.next().await.unwrap()), "start_stream");
        assert_eq!(text(&inbox.next().await.unwrap()), "bin1");
    }
}
