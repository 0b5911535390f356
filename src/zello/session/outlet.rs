//! Where an outgoing message's audio goes: into its start-of-message buffer until the server
//! gives the message a stream id, then straight into the writer's queue.
//!
//! The buffer ([`MessageHead`]) is the only one a message has: the bridge fills it while it
//! waits for the channel, hands it to [`super::SessionHandle::start_message_with`], and the
//! session sends it out when the stream id arrives. It has one cap and one count of the
//! packets left out when it is full.

use super::SessionStats;
use super::writer::Outbox;
use crate::zello::protocol::audio_packet;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Audio kept at the start of a message while it waits for the channel or its stream id:
/// 12 s, 200 packets of 60 ms.
pub const MAX_HEAD_MS: u32 = 12_000;

/// What became of one packet given to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the writer.
    Queued,
    /// Kept in the start-of-message buffer until the stream id is known.
    Held,
    /// Left out: the start-of-message buffer is full. `first` is true for the first packet
    /// left out of this message (the one to warn about).
    LeftOut { first: bool },
    /// Dropped: the writer's queue is full (counted in `SessionStats::packets_dropped`).
    Dropped,
    /// The message has ended; the packet goes nowhere.
    Ended,
}

/// The start of a message, kept until it can be sent.
#[derive(Debug, Default)]
pub struct MessageHead {
    packets: Vec<Bytes>,
    /// Shared with the part of the buffer handed on to the session, so the count covers
    /// the whole wait.
    left_out: Arc<AtomicU64>,
}

impl MessageHead {
    /// Keeps a packet of `packet_ms`, unless the buffer already holds [`MAX_HEAD_MS`].
    pub fn push(&mut self, packet: Bytes, packet_ms: u32) -> Sent {
        if self.packets.len() < Self::cap(packet_ms) {
            self.packets.push(packet);
            Sent::Held
        } else {
            let before = self.left_out.fetch_add(1, Ordering::Relaxed);
            Sent::LeftOut { first: before == 0 }
        }
    }

    /// Packets of `packet_ms` the buffer holds.
    pub fn cap(packet_ms: u32) -> usize {
        (MAX_HEAD_MS / packet_ms.max(1)) as usize
    }

    /// Packets kept.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Packets left out so far because the buffer was full.
    pub fn left_out(&self) -> u64 {
        self.left_out.load(Ordering::Relaxed)
    }

    /// Takes the packets kept so far, to go on waiting elsewhere; `self` keeps counting
    /// with the part taken (the count is shared).
    pub fn hand_over(&mut self) -> MessageHead {
        MessageHead {
            packets: std::mem::take(&mut self.packets),
            left_out: self.left_out.clone(),
        }
    }
}

struct State {
    head: MessageHead,
    packet_ms: u32,
    /// The stream id and the writer's queue, once the server gave the stream id.
    open: Option<(u32, Outbox)>,
    ended: bool,
    sent: u64,
}

/// One outgoing message's way to the writer, shared by the [`super::OutgoingMessage`] that
/// sends and the session that opens and ends it.
#[derive(Clone)]
pub(crate) struct Outlet {
    state: Arc<Mutex<State>>,
    stats: Arc<SessionStats>,
}

impl Outlet {
    pub(crate) fn new(head: MessageHead, packet_ms: u32, stats: Arc<SessionStats>) -> Self {
        Outlet {
            state: Arc::new(Mutex::new(State {
                head,
                packet_ms,
                open: None,
                ended: false,
                sent: 0,
            })),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain counters: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One packet of the message.
    pub(crate) fn send(&self, packet: Bytes) -> Sent {
        let mut s = self.lock();
        if s.ended {
            return Sent::Ended;
        }
        match &s.open {
            Some((stream_id, outbox)) => {
                let queued = outbox.push_audio(audio_packet(*stream_id, &packet));
                drop(s);
                self.count(queued)
            }
            None => {
                let packet_ms = s.packet_ms;
                s.head.push(packet, packet_ms)
            }
        }
    }

    fn count(&self, queued: bool) -> Sent {
        if queued {
            self.lock().sent += 1;
            self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
            Sent::Queued
        } else {
            self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
            Sent::Dropped
        }
    }

    /// The server gave the stream id: the kept packets go out first, then every packet
    /// straight to the writer.
    pub(crate) fn open(&self, stream_id: u32, outbox: &Outbox) {
        let mut s = self.lock();
        if s.ended {
            return;
        }
        let head = std::mem::take(&mut s.head.packets);
        let mut sent = 0;
        for packet in head {
            if outbox.push_audio(audio_packet(stream_id, &packet)) {
                sent += 1;
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.packets_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        s.sent += sent;
        s.open = Some((stream_id, outbox.clone()));
    }

    /// The message has ended: later packets go nowhere. Returns the packets sent.
    pub(crate) fn end(&self) -> u64 {
        let mut s = self.lock();
        s.ended = true;
        s.open = None;
        s.head.packets.clear();
        s.sent
    }

    /// Packets left out of the message because its start-of-message buffer was full.
    pub(crate) fn left_out(&self) -> u64 {
        self.lock().head.left_out()
    }
}

#[cfg(test)]
mod tests {
    use super::super::writer::queue;
    use super::*;
    use crate::zello::protocol::Packet;
    use tokio_tungstenite::tungstenite::Message;

    fn stream_of(m: &Message) -> (u32, Vec<u8>) {
        let Message::Binary(b) = m else {
            panic!("not audio: {m:?}")
        };
        match Packet::parse(b) {
            Ok(Packet::Audio {
                stream_id, data, ..
            }) => (stream_id, data.to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_head_keeps_twelve_seconds_and_counts_what_it_leaves_out() {
        let mut head = MessageHead::default();
        assert_eq!(MessageHead::cap(60), 200);
        for i in 0..200u32 {
            assert_eq!(
                head.push(Bytes::from(i.to_be_bytes().to_vec()), 60),
                Sent::Held
            );
        }
        assert_eq!(
            head.push(Bytes::from_static(b"x"), 60),
            Sent::LeftOut { first: true }
        );
        assert_eq!(
            head.push(Bytes::from_static(b"x"), 60),
            Sent::LeftOut { first: false }
        );
        assert_eq!((head.len(), head.left_out()), (200, 2));
        // Handed on, the count stays one: the packets move, the count is shared.
        let mut taken = head.hand_over();
        assert!(head.is_empty());
        assert_eq!(
            taken.push(Bytes::from_static(b"x"), 60),
            Sent::LeftOut { first: false }
        );
        assert_eq!(head.left_out(), 3);
    }

    #[tokio::test]
    async fn audio_before_the_stream_id_goes_out_first_then_straight_to_the_writer() {
        let stats = Arc::new(SessionStats::default());
        let outlet = Outlet::new(MessageHead::default(), 60, stats.clone());
        assert_eq!(outlet.send(Bytes::from_static(&[1])), Sent::Held);
        assert_eq!(outlet.send(Bytes::from_static(&[2])), Sent::Held);
        let (outbox, mut inbox) = queue(8);
        outlet.open(7, &outbox);
        assert_eq!(outlet.send(Bytes::from_static(&[3])), Sent::Queued);
        for want in [1u8, 2, 3] {
            assert_eq!(stream_of(&inbox.next().await.unwrap()), (7, vec![want]));
        }
        assert_eq!(outlet.end(), 3);
        assert_eq!(outlet.send(Bytes::from_static(&[4])), Sent::Ended);
        assert_eq!(SessionStats::get(&stats.packets_sent), 3);
    }

    #[tokio::test]
    async fn a_full_writer_queue_drops_audio_counted_and_stop_stream_still_goes() {
        let stats = Arc::new(SessionStats::default());
        let outlet = Outlet::new(MessageHead::default(), 60, stats.clone());
        let (outbox, mut inbox) = queue(2);
        outlet.open(9, &outbox);
        let sent: Vec<Sent> = (0..4u8)
            .map(|i| outlet.send(Bytes::from(vec![i])))
            .collect();
        assert_eq!(
            sent,
            [Sent::Queued, Sent::Queued, Sent::Dropped, Sent::Dropped]
        );
        assert_eq!(SessionStats::get(&stats.packets_dropped), 2);
        outbox.push_control(Message::text("stop_stream"));
        assert_eq!(stream_of(&inbox.next().await.unwrap()).1, vec![0]);
        assert_eq!(stream_of(&inbox.next().await.unwrap()).1, vec![1]);
        assert_eq!(
            inbox.next().await.unwrap(),
            Message::text("stop_stream"),
            "control is never dropped"
        );
        assert_eq!(outlet.end(), 2);
    }
}
