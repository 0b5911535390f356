//! One radio's bridge: radio -> channel when the carrier is up, channel -> radio (PTT, play,
//! unkey) otherwise. Half duplex: never keys while the carrier is up, and the engine ignores
//! the carrier while we transmit.

use super::{GatewayEvent, PttGuard, Timing};
use crate::audio::engine::{EngineCommand, EngineEvent, RxSummary};
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{OutgoingEnd, OutgoingMessage, SessionEvent, SessionHandle};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Packets kept for a message waiting its turn (about a minute at 60 ms).
const MAX_QUEUED_PACKETS: usize = 1000;

/// The transmitter's state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tx {
    Idle,
    /// PTT keyed, waiting `tx_delay` before audio starts.
    Keying {
        stream_id: u32,
        until: Instant,
        tot_at: Instant,
    },
    /// Playing a message.
    Playing {
        stream_id: u32,
        tot_at: Instant,
    },
    /// Holding PTT after the audio ended.
    Tail {
        until: Instant,
    },
}

struct Queued {
    stream_id: u32,
    header: CodecHeader,
    from: String,
    packets: VecDeque<Bytes>,
    ended: bool,
    since: Instant,
}

/// A radio's bridge task.
pub(crate) struct Bridge {
    pub name: String,
    pub channel: String,
    pub recipient: Option<String>,
    pub header: CodecHeader,
    pub timing: Timing,
    pub session: SessionHandle,
    pub ptt: PttGuard,
    pub engine_tx: mpsc::Sender<EngineCommand>,
    pub engine_rx: mpsc::Receiver<EngineEvent>,
    pub events: mpsc::Receiver<SessionEvent>,
    pub observer: broadcast::Sender<GatewayEvent>,
}

struct State {
    ready: bool,
    rx_active: bool,
    outgoing: Option<OutgoingMessage>,
    /// RxEnd summaries waiting for their message's final outcome, by local id.
    summaries: HashMap<u64, RxSummary>,
    queue: VecDeque<Queued>,
    /// Messages cut by the time-out timer: the rest of them is dropped.
    cut: HashSet<u32>,
    tx: Tx,
}

impl Bridge {
    fn observe(&self, event: GatewayEvent) {
        let _ = self.observer.send(event);
    }

    fn engine(&self, cmd: EngineCommand) {
        if self.engine_tx.try_send(cmd).is_err() {
            warn!(radio = %self.name, "codec engine queue full; a command was dropped");
        }
    }

    /// Runs until shutdown; PTT is released on every way out (the guard unkeys on drop).
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut s = State {
            ready: false,
            rx_active: false,
            outgoing: None,
            summaries: HashMap::new(),
            queue: VecDeque::new(),
            cut: HashSet::new(),
            tx: Tx::Idle,
        };
        loop {
            let deadline = match s.tx {
                Tx::Idle => None,
                Tx::Keying { until, tot_at, .. } => Some(until.min(tot_at)),
                Tx::Playing { tot_at, .. } => Some(tot_at),
                Tx::Tail { until } => Some(until),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = self.engine_rx.recv() => match ev {
                    Some(ev) => self.on_engine(&mut s, ev).await,
                    None => {
                        error!(radio = %self.name, "codec engine stopped");
                        break;
                    }
                },
                ev = self.events.recv() => match ev {
                    Some(ev) => self.on_session(&mut s, ev).await,
                    None => break,
                },
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.on_timer(&mut s);
                }
            }
        }
        // Shutting down: stop transmitting, end the message being sent.
        if let Tx::Keying { stream_id, .. } | Tx::Playing { stream_id, .. } = s.tx {
            self.engine(EngineCommand::PlayAbort { stream_id });
        }
        self.unkey(&mut s);
        if let Some(out) = s.outgoing.take() {
            out.finish().await;
        }
    }

    async fn on_engine(&mut self, s: &mut State, ev: EngineEvent) {
        match ev {
            EngineEvent::RxStart => {
                s.rx_active = true;
                self.observe(GatewayEvent::CarrierUp {
                    radio: self.name.clone(),
                });
                if s.tx != Tx::Idle {
                    // Keyed at the same moment: the engine ends this receive on its own.
                    return;
                }
                if !s.ready {
                    warn!(radio = %self.name, channel = %self.channel,
                        "carrier up but the channel is not online; this message is not sent");
                    return;
                }
                match self
                    .session
                    .start_message(&self.channel, self.header, self.recipient.clone())
                    .await
                {
                    Ok(out) => s.outgoing = Some(out),
                    Err(e) => warn!(radio = %self.name, error = %e, "cannot start a message"),
                }
            }
            EngineEvent::RxPacket(data) => {
                if let Some(out) = &s.outgoing {
                    out.send(data);
                }
            }
            EngineEvent::RxEnd(summary) => {
                s.rx_active = false;
                self.observe(GatewayEvent::CarrierDown {
                    radio: self.name.clone(),
                });
                if let Some(out) = s.outgoing.take() {
                    s.summaries.insert(out.id(), summary);
                    out.finish().await;
                }
                self.try_start_tx(s);
            }
            EngineEvent::PlaybackStarted { stream_id } => {
                self.observe(GatewayEvent::Playing {
                    radio: self.name.clone(),
                    stream_id,
                });
            }
            EngineEvent::PlaybackDrained {
                stream_id,
                packets,
                concealed,
            } => {
                let from = s
                    .queue
                    .front()
                    .filter(|q| q.stream_id == stream_id)
                    .map(|q| q.from.clone())
                    .unwrap_or_default();
                let duration_ms = packets * self.header.packet_ms() as u64;
                info!(radio = %self.name, channel = %self.channel, from = %from, stream_id,
                    packets, concealed, "zello -> radio: message played");
                self.observe(GatewayEvent::Played {
                    radio: self.name.clone(),
                    stream_id,
                    from,
                    packets,
                    concealed,
                    duration_ms,
                });
                if s.queue.front().is_some_and(|q| q.stream_id == stream_id) {
                    s.queue.pop_front();
                }
                s.tx = Tx::Tail {
                    until: Instant::now() + self.timing.tx_tail,
                };
            }
            EngineEvent::DeviceError(e) => {
                error!(radio = %self.name, error = %e, "audio device error");
                if s.tx != Tx::Idle {
                    // Never transmit without audio: unkey and drop the message.
                    if let Tx::Keying { stream_id, .. } | Tx::Playing { stream_id, .. } = s.tx {
                        self.engine(EngineCommand::PlayAbort { stream_id });
                        s.cut.insert(stream_id);
                        s.queue.retain(|q| q.stream_id != stream_id);
                    }
                    self.unkey(s);
                }
            }
        }
    }

    async fn on_session(&mut self, s: &mut State, ev: SessionEvent) {
        match ev {
            SessionEvent::Channel { status, ready } if status.channel == self.channel => {
                s.ready = ready;
            }
            SessionEvent::OutgoingStarted {
                local_id,
                stream_id,
            } => {
                let ours = s.outgoing.as_ref().is_some_and(|o| o.id() == local_id)
                    || s.summaries.contains_key(&local_id);
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
                let summary = s.summaries.remove(&local_id);
                if !current && summary.is_none() {
                    return;
                }
                if current {
                    // The message ended under us (refused, stopped by the server, connection
                    // lost): the rest of this carrier is not sent.
                    s.outgoing = None;
                }
                let sum = summary.unwrap_or(RxSummary {
                    packets: 0,
                    duration_ms: 0,
                    peak_dbfs: -96.0,
                    rms_dbfs: -96.0,
                    clips: 0,
                });
                if reason == OutgoingEnd::Completed {
                    info!(radio = %self.name, channel = %self.channel, stream_id = stream_id.unwrap_or(0),
                        duration_ms = sum.duration_ms, packets = packets_sent,
                        peak_dbfs = format_args!("{:.1}", sum.peak_dbfs), rms_dbfs = format_args!("{:.1}", sum.rms_dbfs),
                        clips = sum.clips, "radio -> zello: message sent");
                } else {
                    warn!(radio = %self.name, channel = %self.channel, reason = ?reason,
                        packets = packets_sent, "radio -> zello: message not sent completely");
                }
                self.observe(GatewayEvent::Sent {
                    radio: self.name.clone(),
                    stream_id,
                    packets: packets_sent,
                    duration_ms: sum.duration_ms,
                    peak_dbfs: sum.peak_dbfs,
                    rms_dbfs: sum.rms_dbfs,
                    outcome: reason,
                });
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
                });
                if s.rx_active {
                    info!(radio = %self.name, from = %from, "frequency busy: message queued until the carrier drops");
                }
                s.queue.push_back(Queued {
                    stream_id,
                    header,
                    from,
                    packets: VecDeque::new(),
                    ended: false,
                    since: Instant::now(),
                });
                self.try_start_tx(s);
            }
            SessionEvent::IncomingAudio {
                stream_id, data, ..
            } => {
                if s.cut.contains(&stream_id) {
                    return;
                }
                if matches!(s.tx, Tx::Playing { stream_id: id, .. } if id == stream_id) {
                    self.engine(EngineCommand::PlayPacket { stream_id, data });
                } else if let Some(q) = s.queue.iter_mut().find(|q| q.stream_id == stream_id)
                    && q.packets.len() < MAX_QUEUED_PACKETS
                {
                    q.packets.push_back(data);
                }
            }
            SessionEvent::IncomingEnd { stream_id, .. } => {
                s.cut.remove(&stream_id);
                if matches!(s.tx, Tx::Playing { stream_id: id, .. } if id == stream_id) {
                    self.engine(EngineCommand::PlayEnd { stream_id });
                } else if let Some(pos) = s.queue.iter().position(|q| q.stream_id == stream_id) {
                    let playing_soon =
                        matches!(s.tx, Tx::Keying { stream_id: id, .. } if id == stream_id);
                    if s.queue[pos].packets.is_empty() && !playing_soon {
                        s.queue.remove(pos);
                    } else {
                        s.queue[pos].ended = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn try_start_tx(&mut self, s: &mut State) {
        if s.tx != Tx::Idle || s.rx_active {
            return;
        }
        let now = Instant::now();
        let max_age = self.timing.queue_max_age;
        s.queue.retain(|q| {
            let fresh = now.duration_since(q.since) <= max_age;
            if !fresh {
                warn!(stream_id = q.stream_id, from = %q.from, "queued message too old; dropped");
            }
            fresh
        });
        let Some(front) = s.queue.front() else {
            return;
        };
        let stream_id = front.stream_id;
        if let Err(e) = self.ptt.key() {
            error!(radio = %self.name, error = %e, "cannot key the transmitter; message dropped");
            s.queue.pop_front();
            return;
        }
        self.engine(EngineCommand::Transmitting(true));
        self.observe(GatewayEvent::PttOn {
            radio: self.name.clone(),
        });
        s.tx = Tx::Keying {
            stream_id,
            until: now + self.timing.tx_delay,
            tot_at: now + self.timing.tot,
        };
    }

    fn on_timer(&mut self, s: &mut State) {
        let now = Instant::now();
        match s.tx {
            Tx::Keying { tot_at, .. } | Tx::Playing { tot_at, .. } if now >= tot_at => {
                let stream_id = match s.tx {
                    Tx::Keying { stream_id, .. } | Tx::Playing { stream_id, .. } => stream_id,
                    _ => 0,
                };
                warn!(radio = %self.name, tot_s = self.timing.tot.as_secs(), stream_id,
                    "time-out timer: transmitter unkeyed, rest of the message dropped");
                self.engine(EngineCommand::PlayAbort { stream_id });
                s.cut.insert(stream_id);
                s.queue.retain(|q| q.stream_id != stream_id);
                self.observe(GatewayEvent::TimeOut {
                    radio: self.name.clone(),
                    stream_id,
                });
                self.unkey(s);
                self.try_start_tx(s);
            }
            Tx::Keying {
                stream_id,
                until,
                tot_at,
            } if now >= until => {
                let Some(q) = s.queue.front_mut().filter(|q| q.stream_id == stream_id) else {
                    self.unkey(s);
                    return;
                };
                let header = q.header;
                let packets: Vec<Bytes> = q.packets.drain(..).collect();
                let ended = q.ended;
                self.engine(EngineCommand::PlayBegin { stream_id, header });
                for data in packets {
                    self.engine(EngineCommand::PlayPacket { stream_id, data });
                }
                if ended {
                    self.engine(EngineCommand::PlayEnd { stream_id });
                }
                s.tx = Tx::Playing { stream_id, tot_at };
            }
            Tx::Tail { until } if now >= until => {
                self.unkey(s);
                self.try_start_tx(s);
            }
            _ => {}
        }
    }

    fn unkey(&mut self, s: &mut State) {
        let was_keyed = self.ptt.is_keyed();
        if let Err(e) = self.ptt.unkey() {
            error!(radio = %self.name, error = %e, "cannot unkey the transmitter");
        }
        self.engine(EngineCommand::Transmitting(false));
        s.tx = Tx::Idle;
        if was_keyed {
            self.observe(GatewayEvent::PttOff {
                radio: self.name.clone(),
            });
        }
    }
}
