//! One radio's bridge: carries out what the state machine ([`super::machine`]) decides, with
//! the session, the codec engine and the PTT line. All timing lives in the machine; this
//! task only feeds it inputs, sleeps until its next deadline, and acts.

use super::chatter::{ChangeLog, Say};
use super::control::{Inhibited, RadioReceiver};
use super::machine::{Action, DropReason, Input, Machine, Note, Timers};
use super::message_span;
use super::ptt_thread::{PttAnswer, PttOp, PttThread};
use super::ptt_watch::{self, Judged, Outcome, PttWatch, Ticket};
use crate::gateway::engine::{EngineCommand, EngineEvent, PacketLevels};
use crate::gateway::link::{LinkReceiver, LinkSender, TrySendError};
use crate::radio::RadioError;
use crate::service::Heartbeat;
use crate::state::{GatewayEvent, MessageCodec, MessageOutcome, StateHub};
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{
    MAX_HEAD_MS, MessageHead, OutgoingEnd, OutgoingMessage, Sent, SessionEvent, SessionHandle,
};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod ptt;

/// Packets kept for a message waiting its turn (about a minute at 60 ms).
const MAX_QUEUED_PACKETS: usize = 1000;
/// How often the PTT interface is checked while the gateway is not transmitting, so a
/// lost adapter or rigctld is noticed before a message needs it.
pub(crate) const PTT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Carrier changes logged one by one within [`CARRIER_LOG_WINDOW`]; a chattering squelch
/// gets one summary line per window instead.
const CARRIER_LOG_MAX: usize = 10;
const CARRIER_LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest a bridge goes without beating its heartbeat while nothing happens: well
/// within the watchdog's check period ([`crate::service::Watchdog::period`], 15 s with
/// `WatchdogSec=30`).
pub(crate) const BEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a stopping bridge waits for the PTT thread to unkey and let go of the line.
const RELEASE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// A radio's bridge task.
pub(crate) struct Bridge {
    pub name: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub header: CodecHeader,
    pub timers: Timers,
    /// The courtesy tone and the station identification, at the output rate.
    pub courtesy_tone: Option<Vec<i16>>,
    pub identification: Option<Vec<i16>>,
    pub session: SessionHandle,
    /// The PTT line, on a thread of its own: the bridge runs on the thread that carries
    /// every radio's packets, and asks without waiting (answers come back to its loop).
    pub ptt: PttThread,
    /// Audio is dropped when the engine falls behind; control never is.
    pub engine_tx: LinkSender<EngineCommand>,
    pub engine_rx: LinkReceiver<EngineEvent>,
    pub events: mpsc::Receiver<SessionEvent>,
    pub observer: StateHub,
    /// The operator's inhibit and unkey requests for this radio.
    pub controls: RadioReceiver,
    /// Beaten on every turn of the loop and at least every [`BEAT_EVERY`], for systemd's
    /// watchdog (`bridge NAME`); retired when the bridge ends.
    pub heartbeat: Option<Arc<Heartbeat>>,
}

struct Incoming {
    from: String,
    header: CodecHeader,
    /// Packet id, payload and arrival time of the packets kept until the message plays.
    packets: VecDeque<(u32, Bytes, std::time::Instant)>,
    /// Packets dropped because the queue above was full (a flood while the transmitter
    /// keys up).
    dropped: u64,
    ended: bool,
    /// The transmission's unkeyed time found before this message began to play.
    unkeyed_before: std::time::Duration,
    /// Packets handed to the engine to play.
    forwarded: u64,
    /// When the engine began to play it.
    playing_since: Option<Instant>,
}

impl Incoming {
    fn new(from: String, header: CodecHeader) -> Self {
        Incoming {
            from,
            header,
            packets: VecDeque::new(),
            dropped: 0,
            ended: false,
            unkeyed_before: std::time::Duration::ZERO,
            forwarded: 0,
            playing_since: None,
        }
    }
}

/// The message being sent to the channel.
#[derive(Default)]
struct Sending {
    /// The start of the message while it waits for the channel, handed to the session when
    /// it starts; it counts the packets left out when full (a wait for the channel longer
    /// than it holds): the message sent has a gap of that many packets.
    head: MessageHead,
    levels: PacketLevels,
    packets: u64,
}

/// A reading of the PTT state, with the transmission it was taken for.
type Reading = (Ticket, Result<bool, RadioError>);

/// A keying asked for by the watch ([`ptt_watch::Judged::Rekey`]): the request, when the
/// reading was taken, whether this is the first try since the loss, and how long the
/// transmitter had been unkeyed.
type Rekey = (u64, Instant, bool, std::time::Duration);

/// A carrier change is timed back by its audio's age at most this much (the capture keeps
/// about a frame and a period waiting; more is a burst being trimmed).
const MAX_CARRIER_AGE: std::time::Duration = std::time::Duration::from_millis(500);

struct State {
    m: Machine,
    /// Whether the engine is encoding (it starts by itself when the carrier comes up).
    encoding: bool,
    sending: Sending,
    outgoing: Option<OutgoingMessage>,
    /// Finished messages waiting for the session's last word, for their log line.
    finished: HashMap<u64, Sending>,
    incoming: HashMap<u32, Incoming>,
    /// The PTT interface's failure, while it lasts.
    ptt_fault: Option<String>,
    next_ptt_check: Instant,
    /// Which carrier changes get a log line.
    carrier_log: ChangeLog,
    /// Confirms during transmissions that the transmitter stays keyed.
    watch: PttWatch,
    /// The transmitter is keyed, or asked to be, as far as the bridge is concerned.
    ptt_keyed: bool,
    /// The keying under way (its request), while its answer has not come.
    key_req: Option<u64>,
    /// What waits for the keying under way: playback starts only on a keyed transmitter.
    deferred: Vec<Action>,
    /// The reading of the PTT state under way.
    reading: Option<(u64, Ticket)>,
    /// The keying the watch asked for, under way.
    rekey: Option<Rekey>,
    /// The interface check under way.
    check_req: Option<u64>,
    /// Unkeyings asked for and not yet answered.
    unkeys: u32,
    /// The operator's inhibit, as last applied.
    inhibit: Option<Inhibited>,
}

/// Whether the engine plays `stream_id` (its packets go straight there), rather than the
/// message waiting for its turn or for the keying to be confirmed (its packets wait in the
/// bridge).
fn playing_in_engine(s: &State, stream_id: u32) -> bool {
    s.m.playing() == Some(stream_id)
        && !s
            .deferred
            .iter()
            .any(|a| matches!(a, Action::PlayBegin { stream_id: id } if *id == stream_id))
}

impl Bridge {
    fn observe(&self, event: GatewayEvent) {
        self.observer.publish(event);
    }

    fn engine(&self, cmd: EngineCommand) {
        match self.engine_tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                warn!(
                    dropped = self.engine_tx.dropped(),
                    "codec engine queue full; a packet to play was dropped"
                )
            }
            // The engine is gone: the loop hears of it from the engine's side.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Runs until shutdown; PTT is released on every way out (the PTT thread unkeys when
    /// the bridge lets it go, drops it, or unwinds through it).
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut s = State {
            m: Machine::new(self.timers),
            encoding: false,
            sending: Sending::default(),
            outgoing: None,
            finished: HashMap::new(),
            incoming: HashMap::new(),
            ptt_fault: None,
            next_ptt_check: Instant::now() + PTT_CHECK_EVERY,
            carrier_log: ChangeLog::new(CARRIER_LOG_MAX, CARRIER_LOG_WINDOW),
            watch: PttWatch::new(ptt_watch::READ_EVERY, ptt_watch::GIVE_UP_AFTER),
            ptt_keyed: false,
            key_req: None,
            deferred: Vec::new(),
            reading: None,
            rekey: None,
            check_req: None,
            unkeys: 0,
            inhibit: None,
        };
        // An inhibit in force at the start is applied before anything can key.
        let initial = self.controls.inhibit.borrow_and_update().clone();
        self.set_inhibit(&mut s, initial).await;
        let (mut inhibit_open, mut unkey_open) = (true, true);
        let mut idle_beat = tokio::time::interval(BEAT_EVERY);
        idle_beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(h) = &self.heartbeat {
                h.beat();
            }
            let deadline = s.m.next_deadline();
            let next_read = s
                .watch
                .next_read()
                .filter(|_| self.ptt.can_read_back() && s.reading.is_none());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = self.engine_rx.recv() => match ev {
                    Some(ev) => self.on_engine(&mut s, ev).await,
                    None => {
                        error!("codec engine stopped");
                        break;
                    }
                },
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_session(&mut s, ev).await,
                    None => break,
                },
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let actions = s.m.on_timer(Instant::now());
                    self.apply(&mut s, actions).await;
                }
                _ = sleep_until(next_read.unwrap_or_else(Instant::now)), if next_read.is_some() => {
                    self.read_back(&mut s);
                }
                answer = self.ptt.answer() => self.on_ptt(&mut s, answer).await,
                changed = self.controls.inhibit.changed(), if inhibit_open => match changed {
                    Ok(()) => {
                        let inhibit = self.controls.inhibit.borrow_and_update().clone();
                        self.set_inhibit(&mut s, inhibit).await;
                    }
                    Err(_) => inhibit_open = false,
                },
                changed = self.controls.unkey.changed(), if unkey_open => match changed {
                    Ok(()) => {
                        self.controls.unkey.borrow_and_update();
                        self.end_transmission(&mut s).await;
                    }
                    Err(_) => unkey_open = false,
                },
                _ = sleep_until(s.next_ptt_check) => {
                    s.next_ptt_check = Instant::now() + PTT_CHECK_EVERY;
                    if !s.ptt_keyed && s.check_req.is_none() {
                        s.check_req = Some(self.ptt.request(PttOp::Check));
                    }
                }
                _ = idle_beat.tick() => {}
            }
        }
        // Shutting down: stop transmitting, end the message being sent.
        if let Some(stream_id) = s.m.playing() {
            let from = s
                .incoming
                .get(&stream_id)
                .map(|i| i.from.clone())
                .unwrap_or_default();
            message_span(stream_id).in_scope(|| {
                warn!(event = "transmission_cut", from = %from,
                    "shutting down: transmission cut, the rest of the message from the channel is not played")
            });
            self.engine(EngineCommand::PlayAbort { stream_id });
        } else if s.ptt_keyed {
            warn!(
                event = "transmission_cut",
                "shutting down while transmitting (key-up, tone or tail): transmitter released"
            );
        }
        if s.ptt_keyed || s.key_req.is_some() {
            s.watch.unkeyed();
            self.unkey(&mut s);
        }
        // Every message from the channel announced ends, here cut by the stop.
        let mut left: Vec<(u32, Incoming)> = s.incoming.drain().collect();
        left.sort_by_key(|(id, _)| *id);
        for (stream_id, inc) in left {
            self.end_unplayed(stream_id, inc, MessageOutcome::Interrupted);
        }
        // The unkeying asked for (now or just before) is seen through, within a bound: a
        // line that hangs is released by the PTT thread once its call returns.
        let until = Instant::now() + RELEASE_WITHIN;
        while s.unkeys > 0 {
            tokio::select! {
                answer = self.ptt.answer() => {
                    if answer.op == PttOp::Unkey {
                        self.on_unkeyed(&mut s, answer.result);
                    }
                }
                _ = sleep_until(until) => {
                    warn!(ptt = %self.ptt.describe(), "the PTT line did not answer the unkey in time: it is released as soon as it answers");
                    break;
                }
            }
        }
        if let Some(out) = s.outgoing.take() {
            info!(event = "message_to_channel_cut", channel = %self.channel, packets = s.sending.packets,
                "shutting down: the message from the radio to the channel ends here");
            out.finish().await;
        }
        if !self.ptt.release(RELEASE_WITHIN).await {
            warn!(ptt = %self.ptt.describe(), "the PTT thread is still busy with the line: it unkeys it once the call returns");
        }
        if let Some(h) = &self.heartbeat {
            h.retire();
        }
    }

    async fn feed(&mut self, s: &mut State, input: Input) {
        self.feed_at(s, input, Instant::now()).await;
    }

    /// Feeds the machine an input that happened at `at` (a carrier change, timed by its
    /// audio; the machine takes instants a little out of order).
    async fn feed_at(&mut self, s: &mut State, input: Input, at: Instant) {
        let actions = s.m.handle(at, input);
        self.apply(s, actions).await;
    }

    /// Carries out actions in order; a failed key feeds the machine again.
    async fn apply(&mut self, s: &mut State, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(action) = work.pop_front() {
            // Nothing plays before the transmitter is keyed.
            if s.key_req.is_some()
                && matches!(
                    action,
                    Action::PlayBegin { .. }
                        | Action::PlayIdentification
                        | Action::PlayCourtesyTone
                )
            {
                s.deferred.push(action);
                continue;
            }
            match action {
                Action::RxBuffer => s.sending = Sending::default(),
                Action::RxStart => self.start_sending(s).await,
                Action::RxDiscard => s.sending = Sending::default(),
                Action::RxFinish => {
                    if let Some(out) = s.outgoing.take() {
                        let id = out.id();
                        out.finish().await;
                        s.finished.insert(id, std::mem::take(&mut s.sending));
                    }
                }
                // Asked of the PTT thread; the answer comes back to the loop (`on_keyed`),
                // while the machine's timers (the time-out timer among them) keep running.
                Action::Key => {
                    s.ptt_keyed = true;
                    s.key_req = Some(self.ptt.request(PttOp::Key));
                }
                Action::Unkey => {
                    s.watch.unkeyed();
                    self.unkey(s);
                }
                Action::PlayBegin { stream_id } => {
                    let unkeyed_before = s.watch.unkeyed_so_far(Instant::now());
                    let Some(inc) = s.incoming.get_mut(&stream_id) else {
                        // Nothing known of it: let the machine move on.
                        work.extend(
                            s.m.handle(Instant::now(), Input::PlaybackDrained { stream_id }),
                        );
                        continue;
                    };
                    inc.unkeyed_before = unkeyed_before;
                    self.engine(EngineCommand::PlayBegin {
                        stream_id,
                        header: inc.header,
                    });
                    let packets: Vec<_> = inc.packets.drain(..).collect();
                    inc.forwarded += packets.len() as u64;
                    let ended = inc.ended;
                    for (packet_id, data, arrival) in packets {
                        self.engine(EngineCommand::PlayPacket {
                            stream_id,
                            packet_id,
                            data,
                            arrival,
                        });
                    }
                    if ended {
                        self.engine(EngineCommand::PlayEnd { stream_id });
                    }
                }
                Action::PlayAbort { stream_id } => {
                    self.engine(EngineCommand::PlayAbort { stream_id });
                }
                Action::DropIncoming { stream_id, reason } => {
                    let inc = s.incoming.remove(&stream_id);
                    let from = inc.as_ref().map(|i| i.from.as_str()).unwrap_or_default();
                    message_span(stream_id).in_scope(|| {
                        warn!(event = "message_not_played", from = %from, reason = ?reason,
                            "zello -> radio: message not played (completely)")
                    });
                    if reason == DropReason::TimeOut {
                        self.observe(GatewayEvent::TimeOut {
                            radio: self.name.clone(),
                            stream_id,
                        });
                    }
                    if let Some(inc) = inc {
                        self.end_unplayed(stream_id, inc, drop_outcome(reason));
                    }
                }
                Action::PlayCourtesyTone => match &self.courtesy_tone {
                    Some(t) => self.engine(EngineCommand::PlayPcm(t.clone())),
                    None => work.extend(s.m.handle(Instant::now(), Input::PcmDrained)),
                },
                Action::PlayIdentification => match &self.identification {
                    Some(t) => {
                        info!("station identification");
                        self.engine(EngineCommand::PlayPcm(t.clone()));
                    }
                    None => work.extend(s.m.handle(Instant::now(), Input::PcmDrained)),
                },
                Action::Note(note) => self.note(note),
            }
        }
        // The engine encodes exactly while the machine wants received audio.
        let want = s.m.capturing();
        if want != s.encoding {
            s.encoding = want;
            self.engine(EngineCommand::KeepEncoding(want));
        }
    }

    fn note(&self, note: Note) {
        match note {
            Note::Kerchunk => {
                debug!("carrier shorter than rx_min_ms ignored");
                self.observe(GatewayEvent::Kerchunk {
                    radio: self.name.clone(),
                });
            }
            Note::CarrierStuck => {
                warn!(
                    event = "carrier_stuck",
                    "carrier stuck up longer than rx_max_s: message ended, carrier ignored until it drops"
                );
                self.observe(GatewayEvent::CarrierStuck {
                    radio: self.name.clone(),
                });
            }
            Note::CarrierCleared => info!("carrier dropped; receiving again"),
            Note::Flapping => {
                warn!(
                    event = "carrier_flapping",
                    "carrier flapping (too many short messages): new messages suppressed for a while"
                );
                self.observe(GatewayEvent::CarrierFlapping {
                    radio: self.name.clone(),
                });
            }
            Note::Queued => {
                info!("frequency busy: message from the channel queued")
            }
            Note::TimeOut => {
                warn!(
                    event = "time_out",
                    tot_s = self.timers.tot.as_secs(),
                    "time-out timer: transmitter unkeyed, rest of the message dropped"
                )
            }
            Note::NotReady => warn!(channel = %self.channel,
                "carrier up but the channel is not online; not sent"),
            Note::NotResumed => warn!(channel = %self.channel,
                "carrier dropped before the connection was back: the rest of the message cut by the drop was not sent"),
        }
    }

    /// One line per carrier change, or a summary for a chattering squelch.
    fn log_carrier(&self, s: &mut State, up: bool) {
        match s.carrier_log.record(Instant::now()) {
            Say::Change if up => info!(event = "carrier_up", "carrier up"),
            Say::Change => info!(event = "carrier_down", "carrier down"),
            Say::Flapping { changes, window } => warn!(
                event = "carrier_chatter",
                changes,
                window_s = window.as_secs(),
                carrier = if up { "up" } else { "down" },
                "carrier flapping: {changes} changes in the last {}s; further changes not logged for {}s (check the squelch or carrier detect)",
                window.as_secs(),
                window.as_secs()
            ),
            Say::Quiet => {}
        }
    }

    /// Asks the PTT thread to unkey; [`Self::on_unkeyed`] follows with its answer. What was
    /// waiting for a keying is dropped with it.
    fn unkey(&mut self, s: &mut State) {
        s.ptt_keyed = false;
        s.key_req = None;
        s.rekey = None;
        s.deferred.clear();
        s.unkeys += 1;
        self.ptt.request(PttOp::Unkey);
    }

    /// The transmitter was unkeyed (or could not be): the engine listens to the carrier
    /// again.
    fn on_unkeyed(&mut self, s: &mut State, result: Result<bool, RadioError>) {
        s.unkeys = s.unkeys.saturating_sub(1);
        match result {
            Ok(_) => info!(event = "ptt_off", "PTT off"),
            Err(e) => error!(error = %e, "cannot unkey the transmitter"),
        }
        self.engine(EngineCommand::Transmitting(false));
        self.observe(GatewayEvent::PttOff {
            radio: self.name.clone(),
        });
    }

    async fn start_sending(&mut self, s: &mut State) {
        let head = s.sending.head.hand_over();
        let recipient = self.recipient.clone();
        match self
            .session
            .start_message_with(&self.channel, self.header, recipient, head)
            .await
        {
            Ok(out) => s.outgoing = Some(out),
            Err(e) => warn!(radio = %self.name, error = %e, "cannot start a message"),
        }
    }

    async fn on_engine(&mut self, s: &mut State, ev: EngineEvent) {
        match ev {
            EngineEvent::Carrier { up, age } => {
                self.log_carrier(s, up);
                self.observe(if up {
                    GatewayEvent::CarrierUp {
                        radio: self.name.clone(),
                    }
                } else {
                    GatewayEvent::CarrierDown {
                        radio: self.name.clone(),
                    }
                });
                // The change happened when its audio reached the card, not when the codec
                // thread got to it: rx_min and the hang count from there.
                let age = age.min(MAX_CARRIER_AGE);
                let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                if up {
                    s.encoding = true; // The engine started encoding by itself.
                    self.feed_at(s, Input::CarrierUp, at).await;
                } else {
                    self.feed_at(s, Input::CarrierDown, at).await;
                }
            }
            EngineEvent::RxPacket { data, levels } => {
                let sent = if s.m.pending() {
                    s.sending.head.push(data, self.header.packet_ms())
                } else if s.m.sending() {
                    match &s.outgoing {
                        Some(out) => out.send(data),
                        None => Sent::Ended,
                    }
                } else {
                    return;
                };
                if let Sent::LeftOut { first } = sent {
                    if first {
                        warn!(event = "message_to_channel_gap", radio = %self.name, channel = %self.channel,
                            kept_ms = MAX_HEAD_MS,
                            "still waiting for the channel: the audio kept so far goes out first, what follows until the channel is back is left out");
                    }
                    return;
                }
                s.sending.levels.merge(&levels);
                s.sending.packets += 1;
            }
            EngineEvent::PlaybackStarted { stream_id } => {
                if let Some(inc) = s.incoming.get_mut(&stream_id) {
                    inc.playing_since = Some(Instant::now());
                }
                self.observe(GatewayEvent::Playing {
                    radio: self.name.clone(),
                    stream_id,
                });
            }
            EngineEvent::PlaybackDrained {
                stream_id,
                packets,
                concealed,
                dropped,
                levels,
            } => {
                // A message already ended (cut while its last samples were on the way)
                // has had its `Played`.
                if let Some(inc) = s.incoming.remove(&stream_id) {
                    self.played(s, stream_id, inc, (packets, concealed, dropped), &levels);
                }
                self.feed(s, Input::PlaybackDrained { stream_id }).await;
            }
            EngineEvent::PcmDrained => self.feed(s, Input::PcmDrained).await,
            EngineEvent::CarrierFault(fault) => {
                match &fault {
                    Some(e) => {
                        warn!(event = "carrier_detect_failed", error = %e,
                        "carrier detect failed: treated as no carrier until it works again")
                    }
                    None => {
                        info!(event = "carrier_detect_back", "carrier detect works again")
                    }
                }
                self.observe(GatewayEvent::CarrierFault {
                    radio: self.name.clone(),
                    error: fault,
                });
            }
            EngineEvent::DeviceError(e) => {
                error!(event = "device_lost", error = %e, "audio device failed: transmitter released");
                self.observe(GatewayEvent::DeviceLost {
                    radio: self.name.clone(),
                    error: e,
                });
                self.feed(s, Input::Device { ok: false }).await;
            }
            EngineEvent::DeviceRecovered => {
                info!(event = "device_back", "audio device back");
                self.observe(GatewayEvent::DeviceBack {
                    radio: self.name.clone(),
                });
                self.feed(s, Input::Device { ok: true }).await;
            }
        }
    }

    async fn on_session(&mut self, s: &mut State, ev: SessionEvent) {
        match ev {
            SessionEvent::Channel { status, ready } if status.channel == self.channel => {
                self.feed(s, Input::ChannelReady(ready)).await;
            }
            SessionEvent::OutgoingStarted {
                local_id,
                stream_id,
            } => {
                let ours = s.outgoing.as_ref().is_some_and(|o| o.id() == local_id)
                    || s.finished.contains_key(&local_id);
                if ours {
                    self.observe(GatewayEvent::StreamStarted {
                        radio: self.name.clone(),
                        stream_id,
                    });
                }
            }
            SessionEvent::OutgoingEnded {
                local_id,
                stream_id,
                reason,
                packets_sent,
            } => {
                let current = s.outgoing.as_ref().is_some_and(|o| o.id() == local_id);
                let sent = if current {
                    s.outgoing = None;
                    let sent = std::mem::take(&mut s.sending);
                    let lost = if reason == OutgoingEnd::Disconnected {
                        Input::LinkLost
                    } else {
                        Input::OutgoingLost
                    };
                    self.feed(s, lost).await;
                    sent
                } else if let Some(sent) = s.finished.remove(&local_id) {
                    sent
                } else {
                    return;
                };
                self.log_sent(stream_id, reason, packets_sent, &sent);
            }
            SessionEvent::IncomingStart {
                stream_id,
                channel,
                from,
                header,
                ..
            } if channel == self.channel => {
                self.observe(GatewayEvent::Incoming {
                    radio: self.name.clone(),
                    stream_id,
                    from: from.clone(),
                    codec: MessageCodec {
                        sample_rate_hz: header.sample_rate,
                        frame_ms: header.frame_ms,
                        frames_per_packet: header.frames_per_packet,
                    },
                });
                s.incoming.insert(stream_id, Incoming::new(from, header));
                self.feed(s, Input::IncomingStart { stream_id }).await;
            }
            SessionEvent::IncomingAudio {
                stream_id,
                packet_id,
                data,
            } => {
                let arrival = std::time::Instant::now();
                if playing_in_engine(s, stream_id) {
                    if let Some(inc) = s.incoming.get_mut(&stream_id) {
                        inc.forwarded += 1;
                    }
                    self.engine(EngineCommand::PlayPacket {
                        stream_id,
                        packet_id,
                        data,
                        arrival,
                    });
                } else if let Some(inc) = s.incoming.get_mut(&stream_id) {
                    if inc.packets.len() < MAX_QUEUED_PACKETS {
                        inc.packets.push_back((packet_id, data, arrival));
                    } else {
                        inc.dropped += 1;
                    }
                }
            }
            SessionEvent::IncomingEnd { stream_id, .. } => {
                if playing_in_engine(s, stream_id) {
                    self.engine(EngineCommand::PlayEnd { stream_id });
                } else if let Some(inc) = s.incoming.get_mut(&stream_id) {
                    inc.ended = true;
                }
                self.feed(s, Input::IncomingEnd { stream_id }).await;
            }
            _ => {}
        }
    }

    /// A message from the channel played out: its line and its `Played`, with the engine's
    /// figures (packets played, concealed, dropped).
    fn played(
        &self,
        s: &State,
        stream_id: u32,
        inc: Incoming,
        figures: (u64, u64, u64),
        levels: &crate::audio::meter::Levels,
    ) {
        let (packets, concealed, dropped) = figures;
        let (peak, rms) = (levels.peak_dbfs(), levels.rms_dbfs());
        // Late, duplicate and flooded packets, in the playout buffer or before it.
        let dropped = dropped + inc.dropped;
        let packet_ms = u64::from(inc.header.packet_ms());
        let unkeyed_ms = s
            .watch
            .unkeyed_so_far(Instant::now())
            .saturating_sub(inc.unkeyed_before)
            .as_millis() as u64;
        let from = inc.from;
        message_span(stream_id).in_scope(|| if unkeyed_ms == 0 {
            info!(event = "message_from_channel", channel = %self.channel, from = %from,
                duration_ms = packets * packet_ms, packets, concealed, dropped,
                peak_dbfs = format_args!("{peak:.1}"), rms_dbfs = format_args!("{rms:.1}"), clips = levels.clips,
                "zello -> radio: message played");
        } else {
            warn!(event = "message_from_channel", outcome = "interrupted", channel = %self.channel,
                from = %from, duration_ms = packets * packet_ms, packets, concealed, dropped, unkeyed_ms,
                peak_dbfs = format_args!("{peak:.1}"), rms_dbfs = format_args!("{rms:.1}"), clips = levels.clips,
                "zello -> radio: message played, but the transmitter was unkeyed for up to {unkeyed_ms} ms of it");
        });
        self.observe(GatewayEvent::Played {
            radio: self.name.clone(),
            stream_id,
            from,
            outcome: if unkeyed_ms > 0 {
                MessageOutcome::Interrupted
            } else {
                MessageOutcome::Completed
            },
            packets,
            concealed,
            dropped,
            duration_ms: packets * packet_ms,
            unkeyed_ms,
            peak_dbfs: Some(peak),
            rms_dbfs: Some(rms),
        });
    }

    /// A message from the channel that ends without playing out (dropped, or cut on the
    /// air): its `Played` with `outcome`, the packets handed to the engine, and the time it
    /// played.
    fn end_unplayed(&self, stream_id: u32, inc: Incoming, outcome: MessageOutcome) {
        let duration_ms = inc
            .playing_since
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        self.observe(GatewayEvent::Played {
            radio: self.name.clone(),
            stream_id,
            from: inc.from,
            outcome,
            packets: inc.forwarded,
            concealed: 0,
            dropped: inc.dropped,
            duration_ms,
            unkeyed_ms: 0,
            peak_dbfs: None,
            rms_dbfs: None,
        });
    }

    /// Applies the operator's inhibit (`Some`) or allows transmitting again (`None`): the
    /// event first (unless the state already shows it, as for an inhibit in force at the
    /// start), then the machine (which cuts what is on the air).
    async fn set_inhibit(&mut self, s: &mut State, inhibit: Option<Inhibited>) {
        if s.inhibit == inhibit {
            return;
        }
        s.inhibit = inhibit.clone();
        super::show_inhibit(&self.observer, &self.name, inhibit.as_ref());
        match inhibit {
            Some(i) => {
                warn!(
                    event = "tx_inhibited",
                    reason = i.reason.as_deref().unwrap_or(""),
                    "transmitting inhibited by the operator: the radio does not key, messages from the channel are dropped"
                );
                self.feed(s, Input::Inhibit(true)).await;
            }
            None => {
                info!(
                    event = "tx_allowed",
                    "transmitting allowed again by the operator"
                );
                self.feed(s, Input::Inhibit(false)).await;
            }
        }
    }

    /// The operator ends the transmission under way.
    async fn end_transmission(&mut self, s: &mut State) {
        if s.ptt_keyed || s.m.keyed() {
            warn!(
                event = "unkey_requested",
                "transmission ended by the operator"
            );
        }
        self.feed(s, Input::EndTransmission).await;
    }

    fn log_sent(&self, stream_id: Option<u32>, reason: OutgoingEnd, packets: u64, sent: &Sending) {
        // The audio actually sent, the hang's silence included (levels cover only the
        // packets heard under the carrier).
        let duration_ms = packets * u64::from(self.header.packet_ms());
        let (peak, rms) = (sent.levels.peak_dbfs(), sent.levels.rms_dbfs());
        let left_out = sent.head.left_out();
        if reason == OutgoingEnd::Completed && left_out > 0 {
            warn!(event = "message_to_channel", channel = %self.channel, stream_id = stream_id.unwrap_or(0),
                duration_ms, packets, left_out_ms = left_out * u64::from(self.header.packet_ms()),
                peak_dbfs = format_args!("{peak:.1}"), rms_dbfs = format_args!("{rms:.1}"), clips = sent.levels.clips,
                "radio -> zello: message sent with a gap (audio captured while the channel was away too long)");
        } else if reason == OutgoingEnd::Completed {
            info!(event = "message_to_channel", channel = %self.channel, stream_id = stream_id.unwrap_or(0),
                duration_ms, packets, peak_dbfs = format_args!("{peak:.1}"),
                rms_dbfs = format_args!("{rms:.1}"), clips = sent.levels.clips,
                "radio -> zello: message sent");
        } else {
            warn!(event = "message_to_channel", channel = %self.channel, reason = ?reason, packets,
                "radio -> zello: message not sent completely");
        }
        self.observe(GatewayEvent::Sent {
            radio: self.name.clone(),
            stream_id,
            packets,
            dropped: left_out,
            duration_ms,
            peak_dbfs: peak,
            rms_dbfs: rms,
            outcome: outcome(reason),
        });
    }
}

/// How a message from the channel that was dropped or cut ended.
fn drop_outcome(reason: DropReason) -> MessageOutcome {
    match reason {
        DropReason::Busy => MessageOutcome::Busy,
        DropReason::TooOld => MessageOutcome::TooOld,
        DropReason::TimeOut => MessageOutcome::TimedOut,
        DropReason::Inhibited => MessageOutcome::Inhibited,
        DropReason::PttFailed | DropReason::DeviceFailed | DropReason::Unkeyed => {
            MessageOutcome::Interrupted
        }
    }
}

/// How a message to the channel ended, as the gateway's state tells it.
fn outcome(end: OutgoingEnd) -> MessageOutcome {
    match end {
        OutgoingEnd::Completed => MessageOutcome::Completed,
        OutgoingEnd::Abandoned => MessageOutcome::Abandoned,
        OutgoingEnd::Rejected(_) => MessageOutcome::Refused,
        OutgoingEnd::Timeout => MessageOutcome::TimedOut,
        OutgoingEnd::StoppedByServer => MessageOutcome::Interrupted,
        OutgoingEnd::Disconnected => MessageOutcome::Dropped,
        OutgoingEnd::NotReady => MessageOutcome::ChannelNotReady,
    }
}
