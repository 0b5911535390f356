//! The playout (jitter) buffer for messages from the channel: packets come in with the
//! server's `packet_id` (counting up from 0 per stream, wrapping at `u32::MAX`) at whatever
//! times the network delivers them; the player takes one packet per packet slot, in order,
//! at its own steady pace.
//!
//! [`PlayoutBuffer::push`] puts packets in order, drops duplicates and packets that come
//! after their turn was played or concealed (late), and holds at most
//! [`PlayoutSettings::max_packets`] packets (a flood pushes the oldest out). The player calls
//! [`PlayoutBuffer::pop`] once per packet slot and gets:
//! - [`Pop::Filling`] at the start of a message, until it is due: play nothing (or silence);
//! - [`Pop::Packet`]: decode and play it;
//! - [`Pop::Missing`]: the packet is not there: conceal it (Opus `decode(None, ..)`);
//! - [`Pop::Drained`]: [`PlayoutBuffer::end`] was called and everything was played.
//!
//! ## When a message starts
//!
//! A message is due to start ([`PlayoutBuffer::start_due`]) when its first packet has waited
//! the target depth: from then on the player takes one packet per slot, so every packet that
//! keeps to the stream's timing waits the depth, no more. The instant is worked out from the
//! packets' arrival times, not from when the player happens to look: a player that runs on
//! a coarse tick starts the message in the middle of its tick, as
//! [`Engine`](super::engine::Engine) does with silence ahead of the first packet, and passes
//! to [`PlayoutBuffer::pop`] the instant the slot's audio will be heard. A message starts
//! earlier when more than the target depth is already held (a burst), and at once after
//! [`PlayoutBuffer::end`].
//!
//! ## Depth, jitter and when the target changes
//!
//! The jitter estimate is RFC 3550's interarrival jitter: for each packet, the difference
//! between the time since the previous arrival and the audio time between the two packets
//! (`packet_id` difference × packet duration), smoothed with gain 1/16. The wanted depth is
//! 3 × jitter (for a uniformly spread delay, the mean difference is a third of the spread;
//! for a Gaussian delay, 3 × jitter is 3.4 σ), clamped to the settings' minimum and maximum.
//! The target follows a higher wanted depth at once and a lower one slowly (1/128 of the
//! difference per packet, about 8 s at 60 ms packets), and is rounded to whole packets.
//!
//! The target is applied between talk spurts: each message (each Zello stream is one talk
//! spurt) starts by filling to the target as it stands then. Within a message the depth only
//! changes one packet at a time:
//! - it stretches by one packet for every slot the buffer runs dry: the player gets
//!   [`Pop::Missing`] but the expected packet keeps its turn, so a packet held up by the
//!   network (over a WebSocket, packets are late rather than lost) still plays when it comes;
//! - it shrinks only when the buffer is full: each packet pushed beyond
//!   [`PlayoutSettings::max_packets`] pushes the oldest one out (counted as overflow).
//!
//! So a message's audio is never thrown away to save latency, only to bound memory: the
//! senders' apps burst the audio they captured while their stream was being set up, and a
//! radio listener would rather hear all of a message a little late than lose its start.
//! [`PlayoutBuffer::restart`] begins the next message and keeps what was learnt about the
//! network's jitter.
//!
//! Memory is one ring of slots allocated by [`PlayoutBuffer::new`]; `push` and `pop` never
//! allocate.

#![warn(missing_docs)]

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use super::opus::MAX_PACKET_MS;

/// Largest [`PlayoutSettings::max_packets`].
pub const MAX_PACKETS_LIMIT: usize = 4096;
/// Smallest [`PlayoutSettings::max_packets`].
pub const MIN_PACKETS_LIMIT: usize = 2;
/// Largest [`PlayoutSettings::max_depth_ms`].
pub const MAX_DEPTH_LIMIT_MS: u32 = 10_000;

/// Wanted depth per unit of (RFC 3550) jitter.
const JITTER_MULTIPLIER: f64 = 3.0;
/// RFC 3550's smoothing gain for the jitter estimate.
const JITTER_GAIN: f64 = 1.0 / 16.0;
/// How fast the target falls towards a lower wanted depth, per packet.
const TARGET_FALL: f64 = 1.0 / 128.0;

/// Settings of the playout buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayoutSettings {
    /// Smallest target depth in ms (default 60).
    pub min_depth_ms: u32,
    /// Largest target depth in ms, up to 10000 (default 600).
    pub max_depth_ms: u32,
    /// Target depth before any jitter has been measured, between the two (default 120).
    pub initial_depth_ms: u32,
    /// Most packets held, 2 to 4096 (default 512: about 30 s of 60 ms packets).
    pub max_packets: usize,
}

impl Default for PlayoutSettings {
    fn default() -> Self {
        PlayoutSettings {
            min_depth_ms: 60,
            max_depth_ms: 600,
            initial_depth_ms: 120,
            max_packets: 512,
        }
    }
}

/// A playout setting out of range: the message names the setting and what it accepts (fix
/// the configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayoutSettingsError {
    /// `max_packets` outside its range.
    #[error("max_packets = {0}: use {min} to {max}", min = MIN_PACKETS_LIMIT, max = MAX_PACKETS_LIMIT)]
    MaxPackets(usize),
    /// `max_depth_ms` above its limit.
    #[error("max_depth_ms = {0}: use up to {max} ms", max = MAX_DEPTH_LIMIT_MS)]
    MaxDepth(u32),
    /// `min_depth_ms` above `max_depth_ms`.
    #[error("min_depth_ms = {min}: use 0 to max_depth_ms ({max} ms)")]
    MinDepth {
        /// `min_depth_ms`.
        min: u32,
        /// `max_depth_ms`.
        max: u32,
    },
    /// `initial_depth_ms` outside `min_depth_ms` to `max_depth_ms`.
    #[error("initial_depth_ms = {initial}: use min_depth_ms to max_depth_ms ({min} to {max} ms)")]
    InitialDepth {
        /// `initial_depth_ms`.
        initial: u32,
        /// `min_depth_ms`.
        min: u32,
        /// `max_depth_ms`.
        max: u32,
    },
}

impl PlayoutSettings {
    /// Checks every value; the error names the first bad field and what it accepts.
    pub fn validate(&self) -> Result<(), PlayoutSettingsError> {
        if !(MIN_PACKETS_LIMIT..=MAX_PACKETS_LIMIT).contains(&self.max_packets) {
            return Err(PlayoutSettingsError::MaxPackets(self.max_packets));
        }
        if self.max_depth_ms > MAX_DEPTH_LIMIT_MS {
            return Err(PlayoutSettingsError::MaxDepth(self.max_depth_ms));
        }
        if self.min_depth_ms > self.max_depth_ms {
            return Err(PlayoutSettingsError::MinDepth {
                min: self.min_depth_ms,
                max: self.max_depth_ms,
            });
        }
        if !(self.min_depth_ms..=self.max_depth_ms).contains(&self.initial_depth_ms) {
            return Err(PlayoutSettingsError::InitialDepth {
                initial: self.initial_depth_ms,
                min: self.min_depth_ms,
                max: self.max_depth_ms,
            });
        }
        Ok(())
    }

    /// The nearest valid settings (what [`PlayoutBuffer::new`] uses).
    fn sanitised(&self) -> Self {
        let max_depth_ms = self.max_depth_ms.min(MAX_DEPTH_LIMIT_MS);
        let min_depth_ms = self.min_depth_ms.min(max_depth_ms);
        PlayoutSettings {
            min_depth_ms,
            max_depth_ms,
            initial_depth_ms: self.initial_depth_ms.clamp(min_depth_ms, max_depth_ms),
            max_packets: self.max_packets.clamp(MIN_PACKETS_LIMIT, MAX_PACKETS_LIMIT),
        }
    }
}

/// What the player does in this packet slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pop {
    /// The message has not buffered its target depth yet: play nothing (or silence).
    Filling,
    /// Decode and play this packet.
    Packet(Bytes),
    /// The packet for this slot is not there (lost, or the buffer ran dry): conceal it with
    /// Opus loss concealment.
    Missing,
    /// [`PlayoutBuffer::end`] was called and everything has been played: the message is over.
    Drained,
}

/// Counters and levels of the current message.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlayoutStats {
    /// Packets pushed (all of them, dropped ones included).
    pub received: u64,
    /// Packets handed to the player.
    pub played: u64,
    /// Slots the player had to conceal ([`Pop::Missing`]).
    pub concealed: u64,
    /// Packets dropped because their turn had passed.
    pub late: u64,
    /// Packets dropped because they were already there or already played.
    pub duplicates: u64,
    /// Packets dropped because the buffer was full.
    pub overflow: u64,
    /// Audio buffered now, from the next packet to play to the newest (holes included).
    pub depth_ms: u32,
    /// The depth the buffer fills to before a message starts playing.
    pub target_ms: u32,
    /// The smoothed interarrival jitter (RFC 3550).
    pub jitter_ms: f32,
}

/// One place in the ring.
#[derive(Debug, Clone, Default)]
struct Slot {
    id: u32,
    data: Option<Bytes>,
    /// The packet `id` was handed to the player (a later copy is a duplicate).
    played: bool,
}

/// The playout buffer of one incoming message (see the module documentation).
#[derive(Debug)]
pub struct PlayoutBuffer {
    settings: PlayoutSettings,
    packet_ms: u32,
    /// Ring indexed by `packet_id & mask`; its length is a power of two at least
    /// `max_packets`, so consecutive ids stay in consecutive slots across the wrap.
    slots: Box<[Slot]>,
    mask: u32,
    /// Packets held at most: ids from `next` to `next + capacity - 1`.
    capacity: u32,

    /// A packet has been seen in this message (`next` and `highest` are meaningful).
    anchored: bool,
    started: bool,
    ended: bool,
    drained: bool,
    /// The packet the next slot plays.
    next: u32,
    /// The newest packet held (meaningful while `count > 0`).
    highest: u32,
    /// Packets held.
    count: usize,
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,

    /// The previous arrival, for the jitter estimate.
    previous: Option<(u32, Instant)>,
    jitter_ms: f64,
    target_ms: f64,

    received: u64,
    played: u64,
    concealed: u64,
    late: u64,
    duplicates: u64,
    overflow: u64,
}

impl PlayoutBuffer {
    /// A buffer for packets of `packet_ms` (the codec header's frames per packet × frame
    /// duration). Settings out of range are brought to the nearest valid value (check them
    /// with [`PlayoutSettings::validate`] when reading the configuration); `packet_ms` is
    /// kept within 1 to 120 ms.
    pub fn new(settings: PlayoutSettings, packet_ms: u32) -> PlayoutBuffer {
        let settings = settings.sanitised();
        let ring = settings.max_packets.next_power_of_two();
        PlayoutBuffer {
            settings,
            packet_ms: packet_ms.clamp(1, MAX_PACKET_MS),
            slots: vec![Slot::default(); ring].into_boxed_slice(),
            mask: (ring - 1) as u32,
            capacity: settings.max_packets as u32,
            anchored: false,
            started: false,
            ended: false,
            drained: false,
            next: 0,
            highest: 0,
            count: 0,
            first_arrival: None,
            last_arrival: None,
            previous: None,
            jitter_ms: 0.0,
            target_ms: f64::from(settings.initial_depth_ms),
            received: 0,
            played: 0,
            concealed: 0,
            late: 0,
            duplicates: 0,
            overflow: 0,
        }
    }

    /// The settings in use (after bringing them into range).
    pub fn settings(&self) -> &PlayoutSettings {
        &self.settings
    }

    /// Duration of one packet in ms.
    pub fn packet_ms(&self) -> u32 {
        self.packet_ms
    }

    /// Packets held now.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no packet is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether [`end`](Self::end) was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether [`pop`](Self::pop) has reported [`Pop::Drained`].
    pub fn is_drained(&self) -> bool {
        self.drained
    }

    /// When the last packet of this message arrived (for an idle time-out when the stream's
    /// stop never comes).
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// Counters and levels of the current message.
    pub fn stats(&self) -> PlayoutStats {
        PlayoutStats {
            received: self.received,
            played: self.played,
            concealed: self.concealed,
            late: self.late,
            duplicates: self.duplicates,
            overflow: self.overflow,
            depth_ms: self.span().saturating_mul(self.packet_ms),
            target_ms: self.target_packets() * self.packet_ms,
            jitter_ms: self.jitter_ms as f32,
        }
    }

    /// Packets from the next one to play to the newest held, holes included.
    fn span(&self) -> u32 {
        if self.count == 0 {
            0
        } else {
            self.highest.wrapping_sub(self.next).wrapping_add(1)
        }
    }

    /// The target depth in whole packets.
    fn target_packets(&self) -> u32 {
        let p = f64::from(self.packet_ms);
        let min = (f64::from(self.settings.min_depth_ms) / p).ceil() as u32;
        let max = ((f64::from(self.settings.max_depth_ms) / p).floor() as u32).max(min);
        ((self.target_ms / p).round() as u32)
            .clamp(min, max)
            .min(self.capacity - 1)
    }

    fn slot(&self, id: u32) -> usize {
        (id & self.mask) as usize
    }

    /// Adds a packet that arrived at `arrival`.
    pub fn push(&mut self, packet_id: u32, data: Bytes, arrival: Instant) {
        self.received += 1;
        if self.drained {
            self.late += 1;
            return;
        }
        let index = self.slot(packet_id);
        {
            let slot = &self.slots[index];
            if slot.id == packet_id && (slot.data.is_some() || slot.played) {
                self.duplicates += 1;
                return;
            }
        }
        self.update_jitter(packet_id, arrival);
        self.last_arrival = Some(arrival);
        if !self.anchored {
            self.anchored = true;
            self.next = packet_id;
            self.highest = packet_id;
            self.first_arrival = Some(arrival);
        }
        let ahead = packet_id.wrapping_sub(self.next) as i32;
        if ahead < 0 {
            // Before the message starts, an earlier packet moves the start back if the
            // window still holds everything; once playing, its turn has passed.
            let newest = if self.count == 0 {
                packet_id
            } else {
                self.highest
            };
            let span = u64::from(newest.wrapping_sub(packet_id)) + 1;
            if self.started || span > u64::from(self.capacity) {
                self.late += 1;
                return;
            }
            self.next = packet_id;
        } else if ahead as u32 >= self.capacity {
            // Full: the oldest packets make room.
            self.skip_to(packet_id.wrapping_sub(self.capacity - 1));
        }
        let newest = self.count == 0
            || packet_id.wrapping_sub(self.next) > self.highest.wrapping_sub(self.next);
        self.slots[index] = Slot {
            id: packet_id,
            data: Some(data),
            played: false,
        };
        self.count += 1;
        if newest {
            self.highest = packet_id;
        }
    }

    /// Drops every packet before `id` (counted as overflow) and makes `id` the next to play.
    fn skip_to(&mut self, id: u32) {
        let distance = id.wrapping_sub(self.next);
        if distance as usize >= self.slots.len() {
            for slot in self.slots.iter_mut() {
                if slot.data.take().is_some() {
                    self.overflow += 1;
                }
                slot.played = false;
            }
            self.count = 0;
        } else {
            for k in 0..distance {
                let index = self.slot(self.next.wrapping_add(k));
                if self.slots[index].data.take().is_some() {
                    self.overflow += 1;
                    self.count -= 1;
                }
            }
        }
        self.next = id;
    }

    fn update_jitter(&mut self, packet_id: u32, arrival: Instant) {
        if let Some((previous_id, previous_arrival)) = self.previous {
            let between = if arrival >= previous_arrival {
                (arrival - previous_arrival).as_secs_f64()
            } else {
                -(previous_arrival - arrival).as_secs_f64()
            } * 1000.0;
            let sent =
                f64::from(packet_id.wrapping_sub(previous_id) as i32) * f64::from(self.packet_ms);
            let difference = (between - sent)
                .abs()
                .min(f64::from(self.settings.max_depth_ms));
            self.jitter_ms += (difference - self.jitter_ms) * JITTER_GAIN;
            let wanted = (JITTER_MULTIPLIER * self.jitter_ms).clamp(
                f64::from(self.settings.min_depth_ms),
                f64::from(self.settings.max_depth_ms),
            );
            if wanted > self.target_ms {
                self.target_ms = wanted;
            } else {
                self.target_ms += (wanted - self.target_ms) * TARGET_FALL;
            }
        }
        self.previous = Some((packet_id, arrival));
    }

    /// When the message is due to start playing: its first packet's arrival plus the
    /// target depth, so a packet that keeps to the stream's timing waits the depth and no
    /// more. Earlier when the depth is already held: the arrival of the newest packet once
    /// more than the target depth is buffered (a sender's app that bursts what it captured
    /// before its stream was set up), or the first arrival once [`end`](Self::end) was
    /// called. `None` while no packet is held, and once the message has started.
    pub fn start_due(&self) -> Option<Instant> {
        if self.started || self.count == 0 {
            return None;
        }
        let first = self.first_arrival?;
        if self.ended {
            return Some(first);
        }
        let target = self.target_packets();
        let due = first + Duration::from_millis(u64::from(target) * u64::from(self.packet_ms));
        match self.last_arrival {
            Some(last) if self.span() > target => Some(due.min(last)),
            _ => Some(due),
        }
    }

    /// Whether the message has started playing.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// What to play in this packet slot; `at` is when the slot's audio starts to play.
    /// Before the message starts that decides it: it starts once `at` reaches
    /// [`start_due`](Self::start_due).
    pub fn pop(&mut self, at: Instant) -> Pop {
        if self.drained {
            return Pop::Drained;
        }
        if !self.started {
            if self.count == 0 {
                if self.ended {
                    self.drained = true;
                    return Pop::Drained;
                }
                return Pop::Filling;
            }
            if self.start_due().is_some_and(|due| at < due) {
                return Pop::Filling;
            }
            self.started = true;
        }
        if self.count == 0 {
            if self.ended {
                self.drained = true;
                return Pop::Drained;
            }
            // Dry: conceal, and keep the expected packet's turn (the depth stretches).
            self.concealed += 1;
            return Pop::Missing;
        }
        let index = self.slot(self.next);
        let slot = &mut self.slots[index];
        let taken = if slot.id == self.next {
            slot.data.take()
        } else {
            None
        };
        self.next = self.next.wrapping_add(1);
        match taken {
            Some(data) => {
                slot.played = true;
                self.count -= 1;
                self.played += 1;
                Pop::Packet(data)
            }
            None => {
                self.concealed += 1;
                Pop::Missing
            }
        }
    }

    /// No more packets will come (the stream stopped): play what is held without waiting for
    /// the target depth, then report [`Pop::Drained`].
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Begins the next message: drops the packets and counters of this one, keeps the jitter
    /// estimate and the target depth learnt so far.
    pub fn restart(&mut self) {
        for slot in self.slots.iter_mut() {
            *slot = Slot::default();
        }
        self.anchored = false;
        self.started = false;
        self.ended = false;
        self.drained = false;
        self.next = 0;
        self.highest = 0;
        self.count = 0;
        self.first_arrival = None;
        self.last_arrival = None;
        self.previous = None;
        self.received = 0;
        self.played = 0;
        self.concealed = 0;
        self.late = 0;
        self.duplicates = 0;
        self.overflow = 0;
    }

    /// Forgets everything, the jitter estimate included.
    pub fn reset(&mut self) {
        self.restart();
        self.jitter_ms = 0.0;
        self.target_ms = f64::from(self.settings.initial_depth_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packet duration of the Zello apps.
    const P: u64 = 60;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Filling,
        Packet(u32),
        Missing,
        Drained,
    }

    fn packet(id: u32) -> Bytes {
        Bytes::copy_from_slice(&id.to_le_bytes())
    }

    fn id_of(data: &Bytes) -> u32 {
        u32::from_le_bytes([data[0], data[1], data[2], data[3]])
    }

    fn out(pop: Pop) -> Out {
        match pop {
            Pop::Filling => Out::Filling,
            Pop::Packet(data) => Out::Packet(id_of(&data)),
            Pop::Missing => Out::Missing,
            Pop::Drained => Out::Drained,
        }
    }

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// Plays `arrivals` (arrival time in ms, packet id) through `buf`: at each slot (every
    /// `P` ms from 0) the packets that have arrived are pushed, then one pop. `end()` comes
    /// with the last packet when `end` is set. Stops at `Drained` or after `slots` slots.
    fn play(
        buf: &mut PlayoutBuffer,
        base: Instant,
        arrivals: &[(u64, u32)],
        end: bool,
        slots: usize,
    ) -> Vec<Out> {
        let mut arrivals = arrivals.to_vec();
        arrivals.sort_by_key(|&(time, _)| time);
        let mut next = 0;
        let mut result = Vec::new();
        for slot in 0..slots as u64 {
            let now = slot * P;
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (time, id) = arrivals[next];
                buf.push(id, packet(id), ms(base, time));
                next += 1;
            }
            if end && next == arrivals.len() {
                buf.end();
            }
            let o = out(buf.pop(ms(base, now)));
            result.push(o);
            if o == Out::Drained {
                break;
            }
        }
        result
    }

    /// What was played after the start (no `Filling` may come after it).
    fn after_start(outs: &[Out]) -> &[Out] {
        let start = outs
            .iter()
            .position(|&o| o != Out::Filling)
            .unwrap_or(outs.len());
        assert!(!outs[start..].contains(&Out::Filling), "{outs:?}");
        &outs[start..]
    }

    /// Compares two play-outs, showing where they part.
    #[track_caller]
    fn assert_outs(actual: &[Out], expected: &[Out]) {
        if actual != expected {
            let at = actual
                .iter()
                .zip(expected)
                .position(|(a, e)| a != e)
                .unwrap_or(actual.len().min(expected.len()));
            let from = at.saturating_sub(3);
            panic!(
                "play-outs part at {at} (lengths {} and {}): {:?} vs {:?}",
                actual.len(),
                expected.len(),
                &actual[from..(at + 4).min(actual.len())],
                &expected[from..(at + 4).min(expected.len())]
            );
        }
    }

    fn steady(ids: impl Iterator<Item = u32>) -> Vec<(u64, u32)> {
        ids.enumerate().map(|(k, id)| (k as u64 * P, id)).collect()
    }

    fn buffer() -> PlayoutBuffer {
        PlayoutBuffer::new(PlayoutSettings::default(), P as u32)
    }

    #[test]
    fn in_order_stream_plays_every_packet_once() {
        let base = Instant::now();
        let mut buf = buffer();
        let outs = play(&mut buf, base, &steady(0..100), true, 1000);
        // 120 ms (two packets) of filling, then every packet, then the end.
        assert_eq!(&outs[..2], [Out::Filling, Out::Filling]);
        let mut expected: Vec<Out> = (0..100).map(Out::Packet).collect();
        expected.push(Out::Drained);
        assert_outs(&outs[2..], &expected);
        let stats = buf.stats();
        assert_eq!(
            (stats.received, stats.played, stats.concealed),
            (100, 100, 0)
        );
        assert_eq!((stats.late, stats.duplicates, stats.overflow), (0, 0, 0));
        assert_eq!(stats.jitter_ms, 0.0);
        assert!(buf.is_drained() && buf.is_empty());
        // Drained stays drained.
        assert_eq!(buf.pop(ms(base, 100_000)), Pop::Drained);
    }

    #[test]
    fn a_message_is_due_when_its_first_packet_has_waited_the_depth() {
        // Packets 13 ms after a player's tick, as from a sender whose ticks run just after.
        let base = Instant::now();
        let mut buf = buffer();
        assert_eq!(buf.start_due(), None, "nothing held");
        buf.push(0, packet(0), ms(base, 13));
        assert_eq!(buf.start_due(), Some(ms(base, 133)), "arrival + 120 ms");
        buf.push(1, packet(1), ms(base, 73));
        assert_eq!(buf.start_due(), Some(ms(base, 133)));
        // Asked for a slot heard before the due instant: still filling, even 1 ms before.
        assert_eq!(out(buf.pop(ms(base, 120))), Out::Filling);
        assert_eq!(out(buf.pop(ms(base, 132))), Out::Filling);
        // Heard at the due instant: the message starts, and then keeps the stream's pace.
        assert_eq!(out(buf.pop(ms(base, 133))), Out::Packet(0));
        assert!(buf.is_started());
        assert_eq!(buf.start_due(), None, "started");
        buf.push(2, packet(2), ms(base, 133));
        assert_eq!(out(buf.pop(ms(base, 193))), Out::Packet(1));
        assert_eq!(out(buf.pop(ms(base, 253))), Out::Packet(2));
        // Every packet waited exactly the depth: packet k arrived at 13 + 60 k and is heard
        // at 133 + 60 k.
    }

    #[test]
    fn holding_more_than_the_depth_or_the_end_makes_a_message_due_at_once() {
        let base = Instant::now();
        // A burst of five packets at 40 ms: due at the burst, not 120 ms after it.
        let mut buf = buffer();
        for id in 0..5 {
            buf.push(id, packet(id), ms(base, 40));
        }
        assert_eq!(buf.start_due(), Some(ms(base, 40)));
        assert_eq!(out(buf.pop(ms(base, 40))), Out::Packet(0));
        // Exactly the depth held is not more than it: the first packet's wait decides.
        let mut buf = buffer();
        buf.push(0, packet(0), ms(base, 0));
        buf.push(1, packet(1), ms(base, 1));
        assert_eq!(buf.start_due(), Some(ms(base, 120)));
        // A third packet before then: due when it came.
        buf.push(2, packet(2), ms(base, 50));
        assert_eq!(buf.start_due(), Some(ms(base, 50)));
        // A short message whose stream stopped: due since its first packet came.
        let mut buf = buffer();
        buf.push(0, packet(0), ms(base, 10));
        buf.end();
        assert_eq!(buf.start_due(), Some(ms(base, 10)));
        assert_eq!(out(buf.pop(ms(base, 10))), Out::Packet(0));
        assert_eq!(out(buf.pop(ms(base, 70))), Out::Drained);
    }

    #[test]
    fn a_deeper_target_makes_the_next_message_due_later() {
        let base = Instant::now();
        let mut buf = buffer();
        // Jittery arrivals raise the target (see `jittery_arrivals_raise_the_target`).
        let mut rng = fastrand::Rng::with_seed(5);
        let arrivals: Vec<(u64, u32)> = (0..200u32)
            .map(|id| (u64::from(id) * P + rng.u64(0..200), id))
            .collect();
        play(&mut buf, base, &arrivals, true, 400);
        let target = buf.stats().target_ms;
        assert!(target > 120, "{target}");
        buf.restart();
        let first = ms(base, 100_000);
        buf.push(0, packet(0), first);
        assert_eq!(
            buf.start_due(),
            Some(first + Duration::from_millis(u64::from(target)))
        );
    }

    #[test]
    fn depth_holds_the_target_while_playing() {
        let base = Instant::now();
        let mut buf = buffer();
        for k in 0..50u64 {
            buf.push(k as u32, packet(k as u32), ms(base, k * P));
            let o = buf.pop(ms(base, k * P));
            if k >= 2 {
                assert_eq!(out(o), Out::Packet(k as u32 - 2));
                assert_eq!(buf.stats().depth_ms, 120);
            }
        }
        assert_eq!(buf.len(), 2);
        assert_eq!(buf.last_arrival(), Some(ms(base, 49 * P)));
    }

    #[test]
    fn reordering_within_the_depth_is_repaired() {
        let base = Instant::now();
        for seed in 0..20 {
            let mut rng = fastrand::Rng::with_seed(seed);
            // Each packet is up to 119 ms late: up to two places out of order, all within
            // the 120 ms depth.
            let arrivals: Vec<(u64, u32)> = (0..300u32)
                .map(|id| (u64::from(id) * P + rng.u64(0..120), id))
                .collect();
            let mut sorted = arrivals.clone();
            sorted.sort_by_key(|a| a.0);
            let out_of_order = sorted.windows(2).filter(|w| w[1].1 < w[0].1).count();
            assert!(out_of_order > 20, "{seed}: only {out_of_order} reordered");
            let mut buf = buffer();
            let outs = play(&mut buf, base, &arrivals, true, 1000);
            let mut expected: Vec<Out> = (0..300).map(Out::Packet).collect();
            expected.push(Out::Drained);
            assert_outs(after_start(&outs), &expected);
            let stats = buf.stats();
            assert_eq!((stats.played, stats.concealed, stats.late), (300, 0, 0));
        }
    }

    #[test]
    fn random_loss_gives_missing_exactly_for_the_lost_packets() {
        let base = Instant::now();
        let mut rng = fastrand::Rng::with_seed(2024);
        let n = 2000u32;
        // 5 % loss; the first and last packets arrive (a lost first packet is never known to
        // exist, nor is a lost last one).
        let lost: Vec<bool> = (0..n)
            .map(|id| id != 0 && id != n - 1 && rng.f32() < 0.05)
            .collect();
        let lost_count = lost.iter().filter(|&&l| l).count();
        assert!((70..=130).contains(&lost_count), "{lost_count}");
        let arrivals: Vec<(u64, u32)> = (0..n)
            .filter(|&id| !lost[id as usize])
            .map(|id| (u64::from(id) * P, id))
            .collect();
        let mut buf = buffer();
        let outs = play(&mut buf, base, &arrivals, true, 5000);
        let mut expected: Vec<Out> = (0..n)
            .map(|id| {
                if lost[id as usize] {
                    Out::Missing
                } else {
                    Out::Packet(id)
                }
            })
            .collect();
        expected.push(Out::Drained);
        assert_outs(after_start(&outs), &expected);
        let stats = buf.stats();
        assert_eq!(stats.concealed, lost_count as u64);
        assert_eq!(stats.played, u64::from(n) - lost_count as u64);
        assert_eq!(stats.late, 0);
    }

    #[test]
    fn loss_and_reordering_together() {
        let base = Instant::now();
        for seed in 0..10 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = 1000u32;
            let lost: Vec<bool> = (0..n)
                .map(|id| id != 0 && id != n - 1 && rng.f32() < 0.05)
                .collect();
            let lost_count = lost.iter().filter(|&&l| l).count() as u64;
            let arrivals: Vec<(u64, u32)> = (0..n)
                .filter(|&id| !lost[id as usize])
                .map(|id| (u64::from(id) * P + rng.u64(0..100), id))
                .collect();
            let mut buf = buffer();
            let outs = play(&mut buf, base, &arrivals, true, 5000);
            let outs = after_start(&outs);
            // Every packet that came plays, in order, none late.
            let packets: Vec<Out> = outs
                .iter()
                .copied()
                .filter(|&o| o != Out::Missing)
                .collect();
            let expected: Vec<Out> = (0..n)
                .filter(|&id| !lost[id as usize])
                .map(Out::Packet)
                .chain([Out::Drained])
                .collect();
            assert_outs(&packets, &expected);
            // Every lost packet is concealed. A loss that finds the buffer dry (two lost in
            // a row, the next one late) also costs one stretch: the player cannot know yet
            // whether the packet is lost or late.
            let stats = buf.stats();
            assert_eq!(stats.late, 0);
            assert!(stats.concealed >= lost_count, "{seed}: {stats:?}");
            assert!(stats.concealed <= lost_count + 3, "{seed}: {stats:?}");
        }
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped_and_counted() {
        let base = Instant::now();
        let now = ms(base, 0);
        let mut buf = buffer();
        for id in [0, 1, 2, 3, 4, 5, 7, 8] {
            buf.push(id, packet(id), now);
        }
        // A copy of a packet still held.
        buf.push(3, packet(3), now);
        assert_eq!(buf.stats().duplicates, 1);
        assert_eq!(buf.len(), 8);
        let played: Vec<Out> = (0..4).map(|_| out(buf.pop(now))).collect();
        assert_eq!(played, (0..4).map(Out::Packet).collect::<Vec<_>>());
        // A copy of a packet already played.
        buf.push(1, packet(1), now);
        assert_eq!(buf.stats().duplicates, 2);
        assert_eq!(out(buf.pop(now)), Out::Packet(4));
        assert_eq!(out(buf.pop(now)), Out::Packet(5));
        assert_eq!(out(buf.pop(now)), Out::Missing); // 6
        // 6 comes after its slot was concealed: late.
        buf.push(6, packet(6), now);
        assert_eq!(buf.stats().late, 1);
        assert_eq!(out(buf.pop(now)), Out::Packet(7));
        // An old packet that was never seen (before 0, across the wrap): late too.
        buf.push(u32::MAX - 3, packet(u32::MAX - 3), now);
        // Another copy of a played packet, and two of the newest.
        buf.push(2, packet(2), now);
        buf.push(8, packet(8), now);
        buf.push(8, packet(8), now);
        let stats = buf.stats();
        assert_eq!((stats.late, stats.duplicates), (2, 5), "{stats:?}");
        assert_eq!(stats.received, 15);
        assert_eq!((stats.played, stats.concealed), (7, 1));
        assert_eq!(out(buf.pop(now)), Out::Packet(8));
        buf.end();
        assert_eq!(out(buf.pop(now)), Out::Drained);
    }

    #[test]
    fn an_earlier_packet_before_the_start_moves_the_start_back() {
        let base = Instant::now();
        let mut buf = buffer();
        buf.push(2, packet(2), ms(base, 0));
        buf.push(3, packet(3), ms(base, 10));
        assert_eq!(out(buf.pop(ms(base, 20))), Out::Filling);
        buf.push(0, packet(0), ms(base, 30));
        buf.push(1, packet(1), ms(base, 40));
        let outs: Vec<Out> = (0..4).map(|_| out(buf.pop(ms(base, 130)))).collect();
        assert_eq!(outs, (0..4).map(Out::Packet).collect::<Vec<_>>());
    }

    #[test]
    fn a_flood_is_bounded_and_keeps_the_newest_audio() {
        let base = Instant::now();
        let settings = PlayoutSettings {
            max_packets: 64,
            ..PlayoutSettings::default()
        };
        let mut buf = PlayoutBuffer::new(settings, P as u32);
        // 10 s of packets (167) at one instant.
        let burst = (10_000 / P) as u32 + 1;
        for id in 0..burst {
            buf.push(id, packet(id), base);
            assert!(buf.len() <= 64);
        }
        let stats = buf.stats();
        assert_eq!(buf.len(), 64);
        assert_eq!(stats.overflow, u64::from(burst) - 64);
        assert_eq!(stats.depth_ms, 64 * 60);
        // What is left plays in order, then the live stream follows without a hole. The
        // first live packet still finds the buffer full and pushes one more out.
        let mut played = Vec::new();
        for k in 0..200u32 {
            let now = ms(base, u64::from(k) * P);
            buf.push(burst + k, packet(burst + k), now);
            assert!(buf.len() <= 64);
            played.push(out(buf.pop(now)));
        }
        let expected: Vec<Out> = (burst - 63..burst - 63 + 200).map(Out::Packet).collect();
        assert_outs(&played, &expected);
        let stats = buf.stats();
        assert_eq!(
            (stats.concealed, stats.overflow),
            (0, u64::from(burst) - 63)
        );
    }

    #[test]
    fn a_flood_at_the_default_settings_stays_within_max_packets() {
        let base = Instant::now();
        for packet_ms in [10u32, 20, 60] {
            let mut buf = PlayoutBuffer::new(PlayoutSettings::default(), packet_ms);
            let burst = 10_000 / packet_ms;
            for id in 0..burst {
                buf.push(id, packet(id), base);
            }
            assert_eq!(buf.len(), (burst as usize).min(512), "{packet_ms}");
            assert_eq!(
                buf.stats().overflow,
                u64::from(burst.saturating_sub(512)),
                "{packet_ms}"
            );
            assert_eq!(buf.slots.len(), 512);
        }
    }

    #[test]
    fn packet_ids_wrap_around() {
        let base = Instant::now();
        let first = u32::MAX - 40;
        let n = 100u32;
        let ids: Vec<u32> = (0..n).map(|k| first.wrapping_add(k)).collect();
        let mut rng = fastrand::Rng::with_seed(8);
        let lost: Vec<bool> = (0..n).map(|k| k % 17 == 5).collect();
        let arrivals: Vec<(u64, u32)> = (0..n)
            .filter(|&k| !lost[k as usize])
            .map(|k| (u64::from(k) * P + rng.u64(0..110), ids[k as usize]))
            .collect();
        // Some arrive around the wrap out of order.
        let mut buf = buffer();
        let outs = play(&mut buf, base, &arrivals, true, 500);
        let expected: Vec<Out> = (0..n)
            .map(|k| {
                if lost[k as usize] {
                    Out::Missing
                } else {
                    Out::Packet(ids[k as usize])
                }
            })
            .chain([Out::Drained])
            .collect();
        assert_outs(after_start(&outs), &expected);
        let stats = buf.stats();
        assert_eq!((stats.late, stats.duplicates, stats.overflow), (0, 0, 0));

        // Late and duplicate detection across the wrap.
        let mut buf = buffer();
        for id in [u32::MAX - 1, u32::MAX, 0, 1, 2] {
            buf.push(id, packet(id), base);
        }
        assert_eq!(out(buf.pop(base)), Out::Packet(u32::MAX - 1));
        assert_eq!(out(buf.pop(base)), Out::Packet(u32::MAX));
        assert_eq!(out(buf.pop(base)), Out::Packet(0));
        buf.push(u32::MAX, packet(u32::MAX), base);
        buf.push(u32::MAX - 5, packet(u32::MAX - 5), base);
        buf.push(2, packet(2), base);
        let stats = buf.stats();
        assert_eq!((stats.duplicates, stats.late), (2, 1), "{stats:?}");
        assert_eq!(stats.depth_ms, 120);
    }

    #[test]
    fn steady_arrivals_keep_the_target_at_the_minimum() {
        let base = Instant::now();
        // Starting at the minimum, it never leaves it.
        let settings = PlayoutSettings {
            initial_depth_ms: 60,
            ..PlayoutSettings::default()
        };
        let mut buf = PlayoutBuffer::new(settings, P as u32);
        for k in 0..2000u64 {
            buf.push(k as u32, packet(k as u32), ms(base, k * P));
            buf.pop(ms(base, k * P));
            let stats = buf.stats();
            assert_eq!(stats.target_ms, 60);
            assert_eq!(stats.jitter_ms, 0.0);
        }
        // Starting at the initial 120 ms, it comes down to the minimum.
        let mut buf = buffer();
        assert_eq!(buf.stats().target_ms, 120);
        for k in 0..1000u64 {
            buf.push(k as u32, packet(k as u32), ms(base, k * P));
            buf.pop(ms(base, k * P));
        }
        assert_eq!(buf.stats().target_ms, 60);
    }

    #[test]
    fn jittery_arrivals_raise_the_target() {
        let base = Instant::now();
        let mut rng = fastrand::Rng::with_seed(4);
        let mut buf = buffer();
        // Delays spread evenly over 0 to 200 ms.
        for k in 0..500u64 {
            buf.push(
                k as u32,
                packet(k as u32),
                ms(base, k * P + rng.u64(0..200)),
            );
        }
        let stats = buf.stats();
        assert!((50.0..85.0).contains(&stats.jitter_ms), "{stats:?}");
        assert!((180..=300).contains(&stats.target_ms), "{stats:?}");
        assert_eq!(stats.target_ms % 60, 0);
        println!("delays 0-200 ms: {stats:?}");

        // Wild delays: the target stops at the maximum.
        let mut buf = buffer();
        for k in 0..500u64 {
            buf.push(
                k as u32,
                packet(k as u32),
                ms(base, k * P + rng.u64(0..3000)),
            );
        }
        assert_eq!(buf.stats().target_ms, 600);

        // Then the network calms down: the target falls back, slowly.
        let start = 500 * P + 3000;
        let mut targets = Vec::new();
        for k in 500..3000u64 {
            buf.push(k as u32, packet(k as u32), ms(base, start + k * P));
            targets.push(buf.stats().target_ms);
        }
        assert!(targets[16] >= 540, "{}", targets[16]);
        assert!(targets.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(*targets.last().unwrap(), 60);
    }

    #[test]
    fn the_target_applies_from_the_next_message() {
        let base = Instant::now();
        let mut rng = fastrand::Rng::with_seed(6);
        let mut buf = buffer();
        // A message that starts steady, so it fills to the initial 120 ms...
        let mut arrivals = steady(0..20);
        // ... and then turns jittery.
        arrivals.extend((20..300u32).map(|id| (u64::from(id) * P + rng.u64(0..250), id)));
        let outs = play(&mut buf, base, &arrivals, true, 1000);
        assert_eq!(&outs[..3], [Out::Filling, Out::Filling, Out::Packet(0)]);
        let target = buf.stats().target_ms;
        assert!(target >= 240, "{target}");
        // Within the message the depth did not jump to the new target: packets later than
        // the depth missed their turn (and the buffer stretched when it ran dry).
        let stats = buf.stats();
        assert!(stats.late > 0, "{stats:?}");
        assert_eq!(stats.played + stats.late, 300);
        println!("jittery message: {stats:?}");

        // The next message fills to the learnt target.
        buf.restart();
        assert_eq!(buf.stats().target_ms, target);
        assert_eq!(buf.stats().received, 0);
        let base = ms(base, 100_000);
        let outs = play(&mut buf, base, &steady(0..100), true, 1000);
        let fillings = outs.iter().filter(|&&o| o == Out::Filling).count() as u32;
        assert!(
            (target / 60 - 1..=target / 60).contains(&fillings),
            "{fillings} slots for a target of {target} ms"
        );
        assert_eq!(after_start(&outs).len(), 101);
        // `reset` forgets what was learnt.
        buf.reset();
        assert_eq!(buf.stats().target_ms, 120);
        assert_eq!(buf.stats().jitter_ms, 0.0);
    }

    #[test]
    fn drains_after_end() {
        let base = Instant::now();
        // Fewer packets than the target: end() starts playback at once.
        let mut buf = buffer();
        buf.push(0, packet(0), base);
        assert_eq!(out(buf.pop(base)), Out::Filling);
        assert!(!buf.is_ended());
        buf.end();
        assert!(buf.is_ended());
        assert_eq!(out(buf.pop(base)), Out::Packet(0));
        assert_eq!(out(buf.pop(base)), Out::Drained);
        assert!(buf.is_drained());
        // A packet after the end of the message is late.
        buf.push(1, packet(1), base);
        assert_eq!(out(buf.pop(base)), Out::Drained);
        assert_eq!(buf.stats().late, 1);

        // Nothing at all: drained at once.
        let mut buf = buffer();
        assert_eq!(out(buf.pop(base)), Out::Filling);
        buf.end();
        assert_eq!(out(buf.pop(base)), Out::Drained);

        // Holes are concealed on the way out.
        let mut buf = buffer();
        for id in [0, 2, 5] {
            buf.push(id, packet(id), base);
        }
        buf.end();
        let outs: Vec<Out> = (0..8).map(|_| out(buf.pop(base))).collect();
        use Out::*;
        assert_eq!(
            outs,
            [
                Packet(0),
                Missing,
                Packet(2),
                Missing,
                Missing,
                Packet(5),
                Drained,
                Drained
            ]
        );

        // Stopped mid-message while playing: the rest plays without waiting.
        let mut buf = buffer();
        let outs = play(&mut buf, base, &steady(0..10), true, 100);
        assert_eq!(outs.len(), 2 + 10 + 1);
    }

    #[test]
    fn running_dry_stretches_and_the_held_up_packets_still_play() {
        let base = Instant::now();
        let mut buf = buffer();
        // 0..20 steady, then nothing for 300 ms, then 20..25 at once, then steady again.
        let mut arrivals = steady(0..20);
        let resume = 20 * P + 300;
        arrivals.extend((20..25).map(|id| (resume, id)));
        arrivals.extend((25..60u32).map(|id| (u64::from(id) * P + 300, id)));
        let outs = play(&mut buf, base, &arrivals, true, 1000);
        let played: Vec<Out> = after_start(&outs).to_vec();
        let missing = played.iter().filter(|&&o| o == Out::Missing).count();
        // Dry for 300 ms less the 120 ms buffered: 3 slots concealed.
        assert_eq!(missing, 3, "{played:?}");
        let packets: Vec<Out> = played
            .iter()
            .copied()
            .filter(|&o| o != Out::Missing)
            .collect();
        let expected: Vec<Out> = (0..60).map(Out::Packet).chain([Out::Drained]).collect();
        assert_eq!(packets, expected);
        let stats = buf.stats();
        assert_eq!((stats.late, stats.concealed, stats.played), (0, 3, 60));
    }

    #[test]
    fn a_stream_that_never_ends_keeps_bounded_memory() {
        let base = Instant::now();
        let settings = PlayoutSettings {
            max_packets: 128,
            ..PlayoutSettings::default()
        };
        // A sender whose clock runs 2 % fast, with jitter and loss, for a day of 60 ms
        // packets played at the receiver's pace.
        let mut buf = PlayoutBuffer::new(settings, P as u32);
        let slots_before = buf.slots.len();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut id = 0u32;
        let mut most = 0;
        let day = 24 * 3600 * 1000 / P;
        for slot in 0..day {
            let now = slot * P;
            // Packets due by now at 1.02x real time.
            while u64::from(id) * P * 100 / 102 <= now {
                if rng.u8(..100) >= 3 {
                    let arrival = now + rng.u64(0..40);
                    buf.push(id, packet(id), ms(base, arrival));
                }
                id = id.wrapping_add(1);
            }
            buf.pop(ms(base, now));
            most = most.max(buf.len());
        }
        let stats = buf.stats();
        assert!(most <= 128, "{most}");
        assert_eq!(buf.slots.len(), slots_before);
        assert!(stats.overflow > 0, "{stats:?}");
        assert!(stats.played > day * 9 / 10, "{stats:?}");
        assert!(stats.depth_ms <= 128 * 60);
    }

    #[test]
    fn random_input_never_panics_and_keeps_the_invariants() {
        let base = Instant::now();
        for seed in 0..30 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let settings = PlayoutSettings {
                min_depth_ms: rng.u32(0..200),
                max_depth_ms: rng.u32(0..2000),
                initial_depth_ms: rng.u32(0..3000),
                max_packets: rng.usize(0..300),
            };
            let mut buf = PlayoutBuffer::new(settings, rng.u32(0..200));
            let max = buf.settings().max_packets;
            let mut id = rng.u32(..);
            let mut time = 0u64;
            for _ in 0..5000 {
                time += rng.u64(0..100);
                match rng.u8(0..100) {
                    0..=49 => {
                        id = id.wrapping_add(rng.u32(0..4)).wrapping_sub(rng.u32(0..3));
                        buf.push(id, packet(id), ms(base, time));
                    }
                    50..=51 => buf.push(rng.u32(..), Bytes::new(), ms(base, time)),
                    52..=95 => {
                        // The player's clock may even go backwards from the arrivals'.
                        let _ = buf.pop(ms(base, time.saturating_sub(rng.u64(0..500))));
                    }
                    96 => buf.end(),
                    97 => buf.restart(),
                    98 => buf.reset(),
                    _ => {
                        let _ = buf.stats();
                    }
                }
                assert!(buf.len() <= max);
                let stats = buf.stats();
                assert!(stats.played + buf.len() as u64 <= stats.received);
                // The target is whole packets within the settings (the minimum rounded up).
                let p = buf.packet_ms();
                assert!(stats.target_ms <= buf.settings().max_depth_ms.div_ceil(p).max(1) * p);
                assert_eq!(stats.target_ms % p, 0);
                assert!(stats.jitter_ms.is_finite() && stats.jitter_ms >= 0.0);
            }
        }
    }

    #[test]
    fn settings_are_checked_and_brought_into_range() {
        let d = PlayoutSettings::default();
        assert_eq!(
            (
                d.min_depth_ms,
                d.max_depth_ms,
                d.initial_depth_ms,
                d.max_packets
            ),
            (60, 600, 120, 512)
        );
        assert!(d.validate().is_ok());
        let bad = [
            (
                PlayoutSettings {
                    max_packets: 1,
                    ..d
                },
                "max_packets = 1: use 2 to 4096",
            ),
            (
                PlayoutSettings {
                    max_packets: 5000,
                    ..d
                },
                "max_packets",
            ),
            (
                PlayoutSettings {
                    max_depth_ms: 20_000,
                    ..d
                },
                "max_depth_ms = 20000",
            ),
            (
                PlayoutSettings {
                    min_depth_ms: 700,
                    ..d
                },
                "min_depth_ms = 700",
            ),
            (
                PlayoutSettings {
                    initial_depth_ms: 30,
                    ..d
                },
                "initial_depth_ms = 30",
            ),
            (
                PlayoutSettings {
                    initial_depth_ms: 601,
                    ..d
                },
                "60 to 600 ms",
            ),
        ];
        for (settings, message) in bad {
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
            // Still usable: brought into range.
            let buf = PlayoutBuffer::new(settings, 60);
            assert!(buf.settings().validate().is_ok(), "{:?}", buf.settings());
        }
        assert_eq!(PlayoutBuffer::new(d, 0).packet_ms(), 1);
        assert_eq!(PlayoutBuffer::new(d, 1000).packet_ms(), 120);

        let parsed: PlayoutSettings = toml::from_str("max_depth_ms = 1000").unwrap();
        assert_eq!(
            parsed,
            PlayoutSettings {
                max_depth_ms: 1000,
                ..d
            }
        );
        let err = toml::from_str::<PlayoutSettings>("depth = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("depth"), "{err}");
    }

    #[test]
    fn small_packets_and_a_zero_minimum() {
        let base = Instant::now();
        // 20 ms packets: the 120 ms initial target is 6 packets.
        let mut buf = PlayoutBuffer::new(PlayoutSettings::default(), 20);
        for id in 0..6 {
            buf.push(id, packet(id), ms(base, u64::from(id) * 20));
            assert_eq!(out(buf.pop(ms(base, u64::from(id) * 20))), Out::Filling);
        }
        buf.push(6, packet(6), ms(base, 120));
        assert_eq!(out(buf.pop(ms(base, 120))), Out::Packet(0));
        // No minimum depth: plays at once.
        let settings = PlayoutSettings {
            min_depth_ms: 0,
            initial_depth_ms: 0,
            ..PlayoutSettings::default()
        };
        let mut buf = PlayoutBuffer::new(settings, 60);
        buf.push(0, packet(0), base);
        assert_eq!(out(buf.pop(base)), Out::Packet(0));
    }

    #[test]
    fn decodes_through_opus_with_loss_and_reordering() {
        use crate::audio::level::rms_dbfs;
        use crate::audio::opus::{EncoderSettings, OpusDecoder, OpusEncoder, max_packet_samples};
        use crate::audio::speech::speech_like;

        let settings = EncoderSettings::default(); // 16 kHz, one 60 ms frame per packet
        let frame = settings.samples_per_packet();
        let mut encoder = OpusEncoder::new(&settings).unwrap();
        let speech = speech_like(16000, 20.0, 77);
        let packets: Vec<Bytes> = speech
            .chunks_exact(frame)
            .map(|pcm| {
                let mut out = Vec::new();
                encoder.encode_packet(pcm, &mut out).unwrap();
                Bytes::from(out)
            })
            .collect();
        let n = packets.len() as u32;

        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut pcm = vec![0i16; max_packet_samples(16000)];
        let mut reference = Vec::new();
        for p in &packets {
            let k = decoder.decode(Some(p), &mut pcm).unwrap();
            reference.extend_from_slice(&pcm[..k]);
        }

        // 5 % loss (never the first or last packet), and a fifth of the packets up to 110 ms
        // late, out of order within the 120 ms depth.
        let mut rng = fastrand::Rng::with_seed(31);
        let lost: Vec<bool> = (0..n)
            .map(|id| id != 0 && id != n - 1 && rng.f32() < 0.05)
            .collect();
        let lost_count = lost.iter().filter(|&&l| l).count();
        let mut arrivals: Vec<(u64, u32)> = (0..n)
            .filter(|&id| !lost[id as usize])
            .map(|id| {
                let late = if rng.f32() < 0.2 { rng.u64(1..110) } else { 0 };
                (u64::from(id) * P + late, id)
            })
            .collect();
        arrivals.sort_by_key(|a| a.0);
        let reordered = arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count();

        let base = Instant::now();
        let mut buf = buffer();
        let mut decoder = OpusDecoder::new(16000).unwrap();
        let mut output = Vec::new();
        let mut next = 0;
        let mut slot = 0u64;
        let mut concealed_frames = Vec::new();
        loop {
            let now = slot * P;
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (time, id) = arrivals[next];
                buf.push(id, packets[id as usize].clone(), ms(base, time));
                next += 1;
            }
            if next == arrivals.len() {
                buf.end();
            }
            match buf.pop(ms(base, now)) {
                Pop::Filling => {}
                Pop::Packet(data) => {
                    let k = decoder.decode(Some(&data), &mut pcm).unwrap();
                    output.extend_from_slice(&pcm[..k]);
                }
                Pop::Missing => {
                    concealed_frames.push(output.len() / frame);
                    let k = decoder.decode(None, &mut pcm).unwrap();
                    output.extend_from_slice(&pcm[..k]);
                }
                Pop::Drained => break,
            }
            slot += 1;
            assert!(slot < 10_000);
        }

        // Timing is kept: one frame per packet, lost ones included, at the same places.
        assert_eq!(output.len(), reference.len());
        let lost_at: Vec<usize> = (0..n as usize).filter(|&k| lost[k]).collect();
        assert_eq!(concealed_frames, lost_at);
        let stats = buf.stats();
        assert_eq!(stats.concealed, lost_count as u64);
        assert_eq!(stats.played, u64::from(n) - lost_count as u64);
        assert_eq!((stats.late, stats.overflow), (0, 0));

        // No gap of silence: in 5 ms blocks, the output is never silent (below -60 dBFS)
        // where the lossless decode has sound (above -40 dBFS) for longer than one frame.
        let block = 80;
        let mut run = 0;
        let mut longest_gap = 0;
        for (o, r) in output.chunks(block).zip(reference.chunks(block)) {
            if rms_dbfs(o) < -60.0 && rms_dbfs(r) > -40.0 {
                run += 1;
                longest_gap = longest_gap.max(run);
            } else {
                run = 0;
            }
        }
        let longest_gap_ms = longest_gap * 5;
        assert!(longest_gap_ms <= 60, "a {longest_gap_ms} ms gap");

        // No clicks: no sample-to-sample step bigger than the largest step of the lossless
        // decode (concealment continues the signal rather than jumping).
        let steepest = |s: &[i16]| {
            s.windows(2)
                .map(|w| (i32::from(w[1]) - i32::from(w[0])).unsigned_abs())
                .max()
                .unwrap_or(0)
        };
        let (step_out, step_ref) = (steepest(&output), steepest(&reference));
        assert!(step_out <= step_ref, "step {step_out} vs {step_ref}");
        // And where concealment begins and ends (the frame edges around each lost packet),
        // no step is bigger than the lossless decode's steepest within a frame either side.
        let mut edge_steps = Vec::new();
        for &k in &lost_at {
            let local =
                steepest(&reference[(k - 1) * frame..((k + 2) * frame).min(reference.len())]);
            for edge in [k * frame, (k + 1) * frame] {
                if edge < output.len() {
                    let step =
                        (i32::from(output[edge]) - i32::from(output[edge - 1])).unsigned_abs();
                    assert!(
                        step <= local,
                        "frame {k}: step {step} at {edge}, lossless {local}"
                    );
                    edge_steps.push((step, local));
                }
            }
        }

        // The concealed frames carry sound, and the frames after them come back to the
        // lossless decode.
        let mut concealed_levels = Vec::new();
        for &k in &lost_at {
            let range = k * frame..(k + 1) * frame;
            concealed_levels.push((
                rms_dbfs(&output[range.clone()]),
                rms_dbfs(&reference[range]),
            ));
        }
        let recovered = (0..n as usize)
            .filter(|&k| k >= 2 && !lost[k] && !lost[k - 1] && !lost[k - 2])
            .all(|k| {
                let range = k * frame..(k + 1) * frame;
                let diff: f64 = output[range.clone()]
                    .iter()
                    .zip(&reference[range.clone()])
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                let energy: f64 = reference[range].iter().map(|&b| f64::from(b).powi(2)).sum();
                diff <= energy * 0.1 + 1e3
            });
        assert!(
            recovered,
            "frames two after a loss differ from the lossless decode"
        );
        println!(
            "{n} packets, {lost_count} lost, {reordered} out of order; longest silent gap \
             {longest_gap_ms} ms; steepest step {step_out} (lossless {step_ref}); steps at \
             the edges of concealed frames (output, lossless nearby): {edge_steps:?}; \
             concealed frames (output dBFS, lossless dBFS): {concealed_levels:?}"
        );
    }
}
