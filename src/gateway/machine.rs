//! The transmit-safety state machine of one radio: pure logic, no I/O, no clock of its own.
//!
//! The bridge feeds it [`Input`]s with the current time and carries out the [`Action`]s it
//! returns; [`Machine::next_deadline`] says when to call [`Machine::on_timer`]. Tests drive it
//! with made-up instants.
//!
//! Receive side (radio -> channel): carrier up starts a message once it has lasted `rx_min`
//! (kerchunk filter; the audio meanwhile is kept and sent first); a message cut by a dropped
//! connection while the carrier stays up keeps the audio and sends the rest as a new
//! message once the channel is back; carrier down holds the
//! message open for `rx_hang` (silence is sent) and ends it; a carrier stuck up longer than
//! `rx_max` ends the message and is ignored until it drops; too many message starts within
//! `flap_window` are suppressed (servers answer a chattering squelch with "woodpecker
//! prohibited"); after our own PTT drops the carrier is ignored for `rx_start_delay`
//! (the squelch tail: anti ping-pong).
//!
//! Transmit side (channel -> radio): a message keys PTT, waits `tx_delay`, plays, plays the
//! courtesy tone if configured, holds `tx_tail` and unkeys. The time-out timer `tot` unkeys
//! no matter what and drops the rest of that message. Messages that arrive while the radio
//! receives are queued (up to `queue_max_age`), dropped or played over it, per the busy
//! policy. Never keys while the audio output is failed, nor while the operator inhibits
//! transmitting ([`Input::Inhibit`]: the message on the air is cut as by the time-out timer,
//! the queued ones and those arriving meanwhile are dropped). Station identification goes
//! out when due.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest pause between two transmissions: the receiver needs a frame or so to report
/// a carrier.
pub const MIN_KEY_GAP: Duration = Duration::from_millis(100);

/// What to do with a message from the channel while the radio is receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusyPolicy {
    /// Play it when the frequency clears (if it is not too old by then).
    #[default]
    Queue,
    /// Drop it.
    Drop,
    /// Key over the incoming carrier (ends the message being received).
    Override,
}

/// The timers of the state machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timers {
    pub tx_delay: Duration,
    pub tx_tail: Duration,
    pub tot: Duration,
    pub rx_hang: Duration,
    pub rx_min: Duration,
    pub rx_start_delay: Duration,
    pub rx_max: Duration,
    pub flap_max_starts: usize,
    pub flap_window: Duration,
    pub busy_policy: BusyPolicy,
    pub queue_max_age: Duration,
    /// Station identification interval (None: no identification).
    pub id_interval: Option<Duration>,
    pub courtesy_tone: bool,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            tx_delay: Duration::from_millis(200),
            tx_tail: Duration::from_millis(100),
            tot: Duration::from_secs(180),
            rx_hang: Duration::from_millis(400),
            rx_min: Duration::from_millis(250),
            rx_start_delay: Duration::from_millis(300),
            rx_max: Duration::from_secs(300),
            flap_max_starts: 5,
            flap_window: Duration::from_secs(20),
            busy_policy: BusyPolicy::Queue,
            queue_max_age: Duration::from_secs(30),
            id_interval: None,
            courtesy_tone: false,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    CarrierUp,
    CarrierDown,
    /// The channel became ready (logged on and online) or not.
    ChannelReady(bool),
    /// Our outgoing message ended before we ended it (refused, stopped by the server).
    OutgoingLost,
    /// Our outgoing message was cut by a dropped connection: while the carrier stays up the
    /// audio is kept and the rest goes out as a new message once the channel is back.
    LinkLost,
    /// A message from the channel started.
    IncomingStart {
        stream_id: u32,
    },
    /// A message from the channel ended (its last packet has arrived).
    IncomingEnd {
        stream_id: u32,
    },
    /// The engine played the last sample of a message.
    PlaybackDrained {
        stream_id: u32,
    },
    /// The engine played the last sample of a tone or identification.
    PcmDrained,
    /// The audio device failed or came back.
    Device {
        ok: bool,
    },
    /// Keying the transmitter failed.
    PttFailed,
    /// The operator inhibits transmitting (`true`) or allows it again. While inhibited the
    /// machine never asks to key: the transmission under way ends at once and messages from
    /// the channel are dropped ([`DropReason::Inhibited`]); receiving goes on.
    Inhibit(bool),
    /// The operator ends the transmission under way now: the message playing is dropped
    /// ([`DropReason::Unkeyed`]) and the transmitter unkeyed. Messages waiting their turn
    /// still play after the usual pause.
    EndTransmission,
}

/// What the bridge must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep the received audio from now on (before the message is started).
    RxBuffer,
    /// Start the outgoing message and send the kept audio.
    RxStart,
    /// Drop the kept audio (a kerchunk, or a carrier we ignore).
    RxDiscard,
    /// End the outgoing message.
    RxFinish,
    Key,
    Unkey,
    /// Start playing a message (its kept packets, and its end if it has ended).
    PlayBegin {
        stream_id: u32,
    },
    /// Stop playing a message at once.
    PlayAbort {
        stream_id: u32,
    },
    /// Forget a message from the channel (its kept packets and anything still to come).
    DropIncoming {
        stream_id: u32,
        reason: DropReason,
    },
    PlayCourtesyTone,
    PlayIdentification,
    /// Something an operator should see (one line per event).
    Note(Note),
}

/// Why a message from the channel was not (fully) played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Busy,
    TooOld,
    TimeOut,
    PttFailed,
    DeviceFailed,
    /// Transmitting is inhibited.
    Inhibited,
    /// The operator ended the transmission.
    Unkeyed,
}

/// Events worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Kerchunk,
    CarrierStuck,
    CarrierCleared,
    Flapping,
    Queued,
    TimeOut,
    NotReady,
    /// The carrier dropped before the channel was back: the rest of a message cut by a
    /// dropped connection was not sent.
    NotResumed,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rx {
    Idle,
    /// Carrier up, shorter than rx_min so far.
    Pending {
        since: Instant,
    },
    /// A message is being sent.
    Active {
        since: Instant,
    },
    /// Carrier dropped; the message stays open until `until`.
    Hang {
        since: Instant,
        until: Instant,
    },
    /// Carrier ignored until it drops (stuck, flapping, lost message, overridden).
    Blocked,
    /// The connection dropped under the message; the audio is kept until the channel is
    /// back. `since` is when the cut message started (for `rx_max`).
    Resume {
        since: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tx {
    Idle,
    Keying {
        stream_id: Option<u32>,
        until: Instant,
    },
    Playing {
        stream_id: u32,
    },
    Tone,
    Tail {
        until: Instant,
    },
}

#[derive(Debug, Clone)]
struct Queued {
    stream_id: u32,
    since: Instant,
}

/// The state machine of one radio.
#[derive(Debug)]
pub struct Machine {
    t: Timers,
    ready: bool,
    device_ok: bool,
    carrier: bool,
    rx: Rx,
    tx: Tx,
    /// When the transmitter was keyed (for the time-out timer).
    keyed_at: Option<Instant>,
    /// Carrier ignored until then (anti ping-pong).
    ignore_until: Option<Instant>,
    /// No keying before then: after unkeying the receiver needs a moment to hear whether
    /// someone else is on the frequency.
    key_after: Option<Instant>,
    starts: VecDeque<Instant>,
    flap_until: Option<Instant>,
    queue: VecDeque<Queued>,
    last_id: Option<Instant>,
    /// Transmitted since the last identification.
    tx_since_id: bool,
    id_pending: bool,
    /// The operator inhibits transmitting.
    inhibited: bool,
}

impl Machine {
    /// A machine with these timers, idle.
    pub fn new(t: Timers) -> Self {
        Machine {
            t,
            ready: false,
            device_ok: true,
            carrier: false,
            rx: Rx::Idle,
            tx: Tx::Idle,
            keyed_at: None,
            ignore_until: None,
            key_after: None,
            starts: VecDeque::new(),
            flap_until: None,
            queue: VecDeque::new(),
            last_id: None,
            tx_since_id: false,
            id_pending: false,
            inhibited: false,
        }
    }

    /// Whether the operator inhibits transmitting.
    pub fn inhibited(&self) -> bool {
        self.inhibited
    }

    /// Whether the transmitter is keyed.
    pub fn keyed(&self) -> bool {
        self.keyed_at.is_some()
    }

    /// When the time-out timer ends the transmission keyed now (`None`: not keyed). It
    /// counts from the machine's own key-up; whatever acts on the transmitter during the
    /// transmission goes by this instant.
    pub fn tot_ends(&self) -> Option<Instant> {
        self.keyed_at.map(|k| k + self.t.tot)
    }

    /// Whether received audio is wanted: a carrier being timed (kerchunk filter) or a message
    /// being sent (including its hang, when silence is sent).
    pub fn capturing(&self) -> bool {
        matches!(
            self.rx,
            Rx::Pending { .. } | Rx::Active { .. } | Rx::Hang { .. } | Rx::Resume { .. }
        )
    }

    /// Whether the received audio is being kept for a message not started yet.
    pub fn pending(&self) -> bool {
        matches!(self.rx, Rx::Pending { .. } | Rx::Resume { .. })
    }

    /// Whether a message to the channel is open (being sent).
    pub fn sending(&self) -> bool {
        matches!(self.rx, Rx::Active { .. } | Rx::Hang { .. })
    }

    /// The message being played, if any.
    pub fn playing(&self) -> Option<u32> {
        match self.tx {
            Tx::Playing { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// The message being keyed for or played.
    fn current_stream(&self) -> Option<u32> {
        match self.tx {
            Tx::Playing { stream_id } => Some(stream_id),
            Tx::Keying { stream_id, .. } => stream_id,
            _ => None,
        }
    }

    /// Whether `stream_id` is waiting its turn.
    pub fn is_queued(&self, stream_id: u32) -> bool {
        self.queue.iter().any(|q| q.stream_id == stream_id)
    }

    /// When [`Machine::on_timer`] must be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut at = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        match self.rx {
            Rx::Pending { since } => at(since + self.t.rx_min),
            Rx::Active { since } | Rx::Resume { since } => at(since + self.t.rx_max),
            Rx::Hang { until, .. } => at(until),
            Rx::Idle | Rx::Blocked => {}
        }
        match self.tx {
            Tx::Keying { until, .. } | Tx::Tail { until } => at(until),
            _ => {}
        }
        if let Some(k) = self.keyed_at {
            at(k + self.t.tot);
        }
        if let Some(i) = self.ignore_until
            && self.carrier
        {
            at(i);
        }
        if let Some(f) = self.flap_until
            && self.carrier
        {
            at(f);
        }
        if let Some(k) = self.key_after
            && (!self.queue.is_empty() || self.id_pending)
        {
            at(k);
        }
        let current = self.current_stream();
        if let Some(q) = self.queue.iter().find(|q| Some(q.stream_id) != current) {
            at(q.since + self.t.queue_max_age);
        }
        if let (Some(interval), Some(last)) = (self.t.id_interval, self.last_id)
            && self.tx_since_id
            && !self.id_pending
        {
            at(last + interval);
        }
        d
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut a = Vec::new();
        match input {
            Input::CarrierUp => {
                self.carrier = true;
                self.carrier_up(now, &mut a);
            }
            Input::CarrierDown => {
                self.carrier = false;
                match self.rx {
                    Rx::Pending { .. } => {
                        a.push(Action::RxDiscard);
                        a.push(Action::Note(Note::Kerchunk));
                        self.rx = Rx::Idle;
                    }
                    Rx::Active { since } => {
                        if self.t.rx_hang.is_zero() {
                            self.end_rx(&mut a);
                        } else {
                            self.rx = Rx::Hang {
                                since,
                                until: now + self.t.rx_hang,
                            };
                        }
                    }
                    Rx::Blocked => {
                        self.rx = Rx::Idle;
                        a.push(Action::Note(Note::CarrierCleared));
                    }
                    Rx::Resume { .. } => {
                        a.push(Action::RxDiscard);
                        a.push(Action::Note(Note::NotResumed));
                        self.rx = Rx::Idle;
                    }
                    Rx::Hang { .. } | Rx::Idle => {}
                }
                self.try_start_tx(now, &mut a);
            }
            Input::ChannelReady(ready) => {
                self.ready = ready;
                if let Rx::Resume { since } = self.rx
                    && ready
                    && self.carrier
                {
                    self.start_rx(now, &mut a);
                    // Still one transmission for the stuck-carrier limit.
                    if let Rx::Active { .. } = self.rx {
                        self.rx = Rx::Active { since };
                    }
                }
            }
            Input::LinkLost => match self.rx {
                Rx::Active { since } | Rx::Hang { since, .. } if self.carrier => {
                    a.push(Action::RxBuffer);
                    self.rx = Rx::Resume { since };
                }
                Rx::Active { .. } | Rx::Hang { .. } => {
                    self.rx = Rx::Idle;
                    self.try_start_tx(now, &mut a);
                }
                _ => {}
            },
            Input::OutgoingLost => {
                if self.sending() {
                    self.rx = if self.carrier { Rx::Blocked } else { Rx::Idle };
                    self.try_start_tx(now, &mut a);
                }
            }
            Input::IncomingStart { stream_id } => {
                if self.inhibited {
                    a.push(Action::DropIncoming {
                        stream_id,
                        reason: DropReason::Inhibited,
                    });
                    return a;
                }
                let busy = self.rx_busy();
                if busy && self.t.busy_policy == BusyPolicy::Drop {
                    a.push(Action::DropIncoming {
                        stream_id,
                        reason: DropReason::Busy,
                    });
                    return a;
                }
                self.queue.push_back(Queued {
                    stream_id,
                    since: now,
                });
                if busy && self.t.busy_policy == BusyPolicy::Override {
                    if self.sending() {
                        self.end_rx(&mut a);
                    } else if self.pending() {
                        a.push(Action::RxDiscard);
                    }
                    self.rx = Rx::Blocked;
                } else if busy {
                    a.push(Action::Note(Note::Queued));
                }
                self.try_start_tx(now, &mut a);
            }
            Input::IncomingEnd { stream_id } => {
                // The bridge keeps the end with the packets; nothing to time here.
                let _ = stream_id;
            }
            Input::PlaybackDrained { stream_id } => {
                if self.playing() == Some(stream_id) {
                    self.queue.retain(|q| q.stream_id != stream_id);
                    if self.t.courtesy_tone {
                        self.tx = Tx::Tone;
                        a.push(Action::PlayCourtesyTone);
                    } else {
                        self.tx = Tx::Tail {
                            until: now + self.t.tx_tail,
                        };
                    }
                }
            }
            Input::PcmDrained => {
                if self.tx == Tx::Tone {
                    self.tx = Tx::Tail {
                        until: now + self.t.tx_tail,
                    };
                }
            }
            Input::Device { ok } => {
                self.device_ok = ok;
                if !ok {
                    self.stop_tx(now, &mut a, DropReason::DeviceFailed);
                    if self.sending() {
                        self.end_rx(&mut a);
                        self.rx = Rx::Blocked;
                    } else if matches!(self.rx, Rx::Resume { .. }) {
                        a.push(Action::RxDiscard);
                        self.rx = Rx::Blocked;
                    }
                } else {
                    self.try_start_tx(now, &mut a);
                }
            }
            Input::PttFailed => {
                self.stop_tx(now, &mut a, DropReason::PttFailed);
            }
            Input::Inhibit(true) => {
                if !self.inhibited {
                    self.inhibited = true;
                    self.stop_tx(now, &mut a, DropReason::Inhibited);
                    for q in self.queue.drain(..) {
                        a.push(Action::DropIncoming {
                            stream_id: q.stream_id,
                            reason: DropReason::Inhibited,
                        });
                    }
                }
            }
            Input::Inhibit(false) => {
                if self.inhibited {
                    self.inhibited = false;
                    self.try_start_tx(now, &mut a);
                }
            }
            Input::EndTransmission => {
                self.stop_tx(now, &mut a, DropReason::Unkeyed);
            }
        }
        a
    }

    /// Call at (or after) [`Machine::next_deadline`].
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut a = Vec::new();
        // The time-out timer first: it holds no matter what.
        if let Some(k) = self.keyed_at
            && now >= k + self.t.tot
        {
            a.push(Action::Note(Note::TimeOut));
            self.stop_tx(now, &mut a, DropReason::TimeOut);
        }
        match self.rx {
            Rx::Pending { since } if now >= since + self.t.rx_min => {
                self.start_rx(now, &mut a);
            }
            Rx::Active { since } if now >= since + self.t.rx_max => {
                self.end_rx(&mut a);
                self.rx = Rx::Blocked;
                a.push(Action::Note(Note::CarrierStuck));
            }
            Rx::Resume { since } if now >= since + self.t.rx_max => {
                a.push(Action::RxDiscard);
                self.rx = Rx::Blocked;
                a.push(Action::Note(Note::CarrierStuck));
            }
            Rx::Hang { until, .. } if now >= until => {
                self.end_rx(&mut a);
            }
            _ => {}
        }
        match self.tx {
            Tx::Keying { stream_id, until } if now >= until => match stream_id {
                Some(stream_id) => {
                    self.tx = Tx::Playing { stream_id };
                    a.push(Action::PlayBegin { stream_id });
                }
                None => {
                    self.tx = Tx::Tone;
                    a.push(Action::PlayIdentification);
                    self.last_id = Some(now);
                    self.tx_since_id = false;
                    self.id_pending = false;
                }
            },
            Tx::Tail { until } if now >= until => {
                self.unkey(now, &mut a);
            }
            _ => {}
        }
        // A carrier held through the anti ping-pong or flap window is a real signal.
        if self.ignore_until.is_some_and(|i| now >= i) {
            self.ignore_until = None;
            if self.carrier && self.rx == Rx::Idle {
                self.carrier_up(now, &mut a);
            }
        }
        if self.flap_until.is_some_and(|f| now >= f) {
            self.flap_until = None;
            if self.carrier && self.rx == Rx::Idle {
                self.carrier_up(now, &mut a);
            }
        }
        if let (Some(interval), Some(last)) = (self.t.id_interval, self.last_id)
            && self.tx_since_id
            && now >= last + interval
        {
            self.id_pending = true;
        }
        if self.key_after.is_some_and(|k| now >= k) {
            self.key_after = None;
        }
        self.try_start_tx(now, &mut a);
        a
    }

    fn rx_busy(&self) -> bool {
        self.carrier || self.rx != Rx::Idle && self.rx != Rx::Blocked
    }

    fn carrier_up(&mut self, now: Instant, a: &mut Vec<Action>) {
        if self.tx != Tx::Idle {
            return; // The engine ignores the carrier while we transmit.
        }
        if self.ignore_until.is_some_and(|i| now < i) {
            return;
        }
        match self.rx {
            Rx::Hang { since, .. } => {
                // Back within the hang time: the same message goes on.
                self.rx = Rx::Active { since };
            }
            Rx::Idle => {
                while self
                    .starts
                    .front()
                    .is_some_and(|s| now.duration_since(*s) >= self.t.flap_window)
                {
                    self.starts.pop_front();
                }
                if self.flap_until.is_some_and(|f| now < f) {
                    return; // Still suppressed; noted once already.
                }
                if self.t.flap_max_starts > 0 && self.starts.len() >= self.t.flap_max_starts {
                    self.flap_until = self.starts.front().map(|s| *s + self.t.flap_window);
                    a.push(Action::Note(Note::Flapping));
                    return;
                }
                a.push(Action::RxBuffer);
                self.rx = Rx::Pending { since: now };
                if self.t.rx_min.is_zero() {
                    self.start_rx(now, a);
                }
            }
            _ => {}
        }
    }

    fn start_rx(&mut self, now: Instant, a: &mut Vec<Action>) {
        if !self.ready {
            a.push(Action::RxDiscard);
            a.push(Action::Note(Note::NotReady));
            self.rx = Rx::Blocked;
            return;
        }
        self.starts.push_back(now);
        self.rx = Rx::Active { since: now };
        a.push(Action::RxStart);
    }

    fn end_rx(&mut self, a: &mut Vec<Action>) {
        a.push(Action::RxFinish);
        self.rx = Rx::Idle;
    }

    fn try_start_tx(&mut self, now: Instant, a: &mut Vec<Action>) {
        // Drop what waited too long (not the message on the air).
        let current = self.current_stream();
        let max_age = self.t.queue_max_age;
        self.queue.retain(|q| {
            let stale = Some(q.stream_id) != current && now.duration_since(q.since) >= max_age;
            if stale {
                a.push(Action::DropIncoming {
                    stream_id: q.stream_id,
                    reason: DropReason::TooOld,
                });
            }
            !stale
        });
        if self.tx != Tx::Idle || !self.device_ok || self.inhibited {
            return;
        }
        if self.key_after.is_some_and(|k| now < k) {
            return;
        }
        let overriding = self.t.busy_policy == BusyPolicy::Override && self.rx == Rx::Blocked;
        if self.rx_busy() && !overriding {
            return;
        }
        let next = if let Some(q) = self.queue.front() {
            Some(q.stream_id)
        } else if self.id_pending {
            None
        } else {
            return;
        };
        a.push(Action::Key);
        self.keyed_at = Some(now);
        self.tx_since_id = true;
        self.tx = Tx::Keying {
            stream_id: next,
            until: now + self.t.tx_delay,
        };
    }

    /// Stops transmitting at once, dropping the message being played.
    fn stop_tx(&mut self, now: Instant, a: &mut Vec<Action>, reason: DropReason) {
        if let Some(stream_id) = self.current_stream() {
            if matches!(self.tx, Tx::Playing { .. }) {
                a.push(Action::PlayAbort { stream_id });
            }
            self.queue.retain(|q| q.stream_id != stream_id);
            a.push(Action::DropIncoming { stream_id, reason });
        }
        if self.tx != Tx::Idle || self.keyed_at.is_some() {
            self.unkey(now, a);
        }
    }

    fn unkey(&mut self, now: Instant, a: &mut Vec<Action>) {
        a.push(Action::Unkey);
        self.keyed_at = None;
        self.tx = Tx::Idle;
        if !self.t.rx_start_delay.is_zero() {
            self.ignore_until = Some(now + self.t.rx_start_delay);
        }
        self.key_after = Some(now + self.t.rx_start_delay.max(MIN_KEY_GAP));
        // Identify after the first transmission, then when the interval has passed.
        if let Some(interval) = self.t.id_interval
            && self.tx_since_id
            && self.last_id.is_none_or(|last| now >= last + interval)
        {
            self.id_pending = true;
        }
    }
}

#[cfg(test)]
mod tests;
