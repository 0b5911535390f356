//! One connection's protocol decisions, free of I/O: which reply answers which command (by
//! seq), the outgoing messages (start_stream, its stream id, stop_stream), the incoming
//! ones, images, and when the connection is over. Fed with what arrived and the instant it
//! arrived; answers with [`Action`]s that the connection task carries out in order.

use super::images::Images;
use super::{IncomingEnd, OutgoingEnd, SessionError, SessionEvent, SessionStats};
use crate::state::DisconnectReason;
use crate::zello::protocol::{
    ChannelState, ChannelStatus, CodecHeader, Command, ErrorCode, Event, HEADER_LEN, ImageKind,
    Logon, Packet, Reply, ServerMessage, StartStream, StopStream,
};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Close code the server uses when the same account logged on elsewhere.
pub const CLOSE_KICKED: u16 = 3003;

/// How one connection ended.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    Shutdown,
    ConnectFailed(String),
    Auth(String),
    LogonRefused {
        code: ErrorCode,
        with_refresh: bool,
    },
    Kicked,
    Dead(Duration),
    /// The server closed the connection (why, in words).
    Closed(String),
    /// The connection broke: a socket or TLS error.
    Broken(String),
    /// No answer to the logon in time.
    NoLogonReply(Duration),
    /// Asked to go offline ([`super::SessionHandle::set_online`]).
    HeldOffline,
}

impl ConnEnd {
    /// The server's close frame: its code and reason, if it had one.
    pub(crate) fn closed_by_server(frame: Option<(u16, &str)>) -> ConnEnd {
        match frame {
            Some((CLOSE_KICKED, _)) => ConnEnd::Kicked,
            Some((code, reason)) => {
                ConnEnd::Closed(format!("closed by the server: {code} {reason}"))
            }
            None => ConnEnd::Closed("closed by the server".into()),
        }
    }

    /// Why the connection ended, as the gateway's state tells it, and how, in words.
    pub(crate) fn disconnect_reason(&self) -> (DisconnectReason, String) {
        match self {
            ConnEnd::Kicked => (
                DisconnectReason::Kicked,
                "the same account logged on elsewhere".into(),
            ),
            ConnEnd::Closed(why) => (DisconnectReason::ServerClosed, why.clone()),
            ConnEnd::Broken(why) => (DisconnectReason::Network, why.clone()),
            ConnEnd::Dead(silent) => (
                DisconnectReason::Timeout,
                format!("no frame from the server for {} s", silent.as_secs()),
            ),
            ConnEnd::NoLogonReply(after) => (
                DisconnectReason::Timeout,
                format!("no logon reply within {} s", after.as_secs()),
            ),
            ConnEnd::LogonRefused { code, .. } => {
                (DisconnectReason::Refused, format!("logon refused: {code}"))
            }
            ConnEnd::HeldOffline => (
                DisconnectReason::HeldOffline,
                "left Zello on purpose".into(),
            ),
            ConnEnd::Shutdown | ConnEnd::ConnectFailed(_) | ConnEnd::Auth(_) => {
                (DisconnectReason::Other, format!("{self:?}"))
            }
        }
    }
}

pub(crate) type Flow = Result<(), ConnEnd>;

/// The answer to a command sent for the session's user.
pub(crate) type ReplyTo = oneshot::Sender<Result<Reply, SessionError>>;

/// What the connection task is to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send a command (a text frame).
    Send(Command),
    /// Send a binary frame that must not be dropped (an image part).
    SendBinary(Vec<u8>),
    /// Tell the session's user.
    Emit(SessionEvent),
    /// Tell the session's user a packet of incoming audio, or drop it (and count it) if
    /// the user is behind.
    Audio(SessionEvent),
    /// Answer a command sent for the session's user.
    Answer(ReplyTo, Result<Reply, SessionError>),
    /// An outgoing message got its stream id: its audio goes out from now on.
    Open { local_id: u64, stream_id: u32 },
    /// An outgoing message ended: report it with the packets it sent.
    Ended {
        local_id: u64,
        stream_id: Option<u32>,
        reason: OutgoingEnd,
    },
    /// The server gave a refresh token: keep it for the next logon.
    RefreshToken(String),
}

/// What a connection needs to know.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    /// The account, for the log.
    pub user: String,
    pub request_timeout: Duration,
    pub incoming_idle: Duration,
    /// A connection with no frame for this long is dead.
    pub dead_after: Duration,
}

enum Pending {
    Logon,
    Start {
        id: u64,
    },
    Stop,
    Send {
        reply: ReplyTo,
        image_parts: Option<(Bytes, Bytes)>,
    },
}

/// An outgoing message.
struct Out {
    channel: String,
    stream_id: Option<u32>,
    /// Ended by its sender before the stream id came: stopped as soon as it does.
    finished: bool,
}

struct Incoming {
    last: Instant,
    packets: u64,
    valid: bool,
}

/// The state of one connection.
pub(crate) struct Link {
    config: LinkConfig,
    stats: Arc<SessionStats>,
    seq: u64,
    pending: HashMap<u64, (Pending, Instant)>,
    /// Seqs of start_stream requests we gave up on: a late success is stopped at once.
    abandoned_starts: HashSet<u64>,
    logged_on: bool,
    with_refresh: bool,
    /// The last status of each channel.
    online: HashMap<String, ChannelStatus>,
    out: HashMap<u64, Out>,
    incoming: HashMap<u32, Incoming>,
    images: Images,
    last_rx: Instant,
    /// Whether the connection logged on and had its channel online or carried audio.
    worked: bool,
}

impl Link {
    /// A new connection at `now`: the first thing it does is log on.
    pub(crate) fn new(
        config: LinkConfig,
        stats: Arc<SessionStats>,
        now: Instant,
        logon: Logon,
        with_refresh: bool,
        acts: &mut Vec<Action>,
    ) -> Link {
        let mut link = Link {
            config,
            stats,
            seq: 0,
            pending: HashMap::new(),
            abandoned_starts: HashSet::new(),
            logged_on: false,
            with_refresh,
            online: HashMap::new(),
            out: HashMap::new(),
            incoming: HashMap::new(),
            images: Images::default(),
            last_rx: now,
            worked: false,
        };
        link.command(now, Command::Logon(logon), Pending::Logon, acts);
        link
    }

    /// Whether the connection logged on and had its channel online, or carried audio.
    pub(crate) fn worked(&self) -> bool {
        self.worked
    }

    /// Sends a command that expects a reply, numbered with the next seq.
    fn command(
        &mut self,
        now: Instant,
        mut cmd: Command,
        pending: Pending,
        acts: &mut Vec<Action>,
    ) {
        self.seq += 1;
        cmd.set_seq(self.seq);
        self.pending
            .insert(self.seq, (pending, now + self.config.request_timeout));
        acts.push(Action::Send(cmd));
    }

    fn stop_stream(
        &mut self,
        now: Instant,
        stream_id: u32,
        channel: Option<String>,
        acts: &mut Vec<Action>,
    ) {
        let cmd = Command::StopStream(StopStream {
            seq: None,
            stream_id,
            channel,
        });
        self.command(now, cmd, Pending::Stop, acts);
    }

    fn ready(&self, channel: &str) -> bool {
        self.logged_on
            && self
                .online
                .get(channel)
                .is_some_and(|s| s.status == ChannelState::Online)
    }

    /// When [`Link::on_timers`] is due next.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut next = self.last_rx + self.config.dead_after;
        for (_, at) in self.pending.values() {
            next = next.min(*at);
        }
        for inc in self.incoming.values() {
            next = next.min(inc.last + self.config.incoming_idle);
        }
        next
    }

    /// A frame (or an error reading one) arrived: the connection is alive.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// Timeouts: a silent connection, commands unanswered, incoming messages gone idle.
    pub(crate) fn on_timers(&mut self, now: Instant, acts: &mut Vec<Action>) -> Flow {
        let silent = now.saturating_duration_since(self.last_rx);
        if silent >= self.config.dead_after {
            return Err(ConnEnd::Dead(silent));
        }
        let mut expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(seq, _)| *seq)
            .collect();
        expired.sort_unstable();
        for seq in expired {
            if let Some((pending, _)) = self.pending.remove(&seq) {
                self.expire(seq, pending, acts)?;
            }
        }
        let mut idle: Vec<u32> = self
            .incoming
            .iter()
            .filter(|(_, inc)| inc.last + self.config.incoming_idle <= now)
            .map(|(id, _)| *id)
            .collect();
        idle.sort_unstable();
        for stream_id in idle {
            if let Some(inc) = self.incoming.remove(&stream_id)
                && inc.valid
            {
                debug!(stream_id, "incoming message idle, ended");
                acts.push(Action::Emit(SessionEvent::IncomingEnd {
                    stream_id,
                    reason: IncomingEnd::Idle,
                    packets: inc.packets,
                }));
            }
        }
        self.images.forget_stale(now);
        Ok(())
    }

    /// A command got no reply in time.
    fn expire(&mut self, seq: u64, pending: Pending, acts: &mut Vec<Action>) -> Flow {
        let timeout = self.config.request_timeout;
        match pending {
            Pending::Logon => {
                return Err(ConnEnd::NoLogonReply(timeout));
            }
            Pending::Start { id } => {
                self.abandoned_starts.insert(seq);
                if let Some(out) = self.out.remove(&id) {
                    warn!(channel = %out.channel, "no reply to start_stream in time; message dropped");
                    acts.push(Action::Ended {
                        local_id: id,
                        stream_id: None,
                        reason: OutgoingEnd::Timeout,
                    });
                }
            }
            Pending::Stop => {}
            Pending::Send { reply, .. } => {
                acts.push(Action::Answer(reply, Err(SessionError::Timeout(timeout))));
            }
        }
        Ok(())
    }

    /// A text frame.
    pub(crate) fn on_text(&mut self, now: Instant, text: &str, acts: &mut Vec<Action>) -> Flow {
        match ServerMessage::decode(text) {
            Err(e) => {
                self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "ignored a message the gateway could not decode");
                Ok(())
            }
            Ok(ServerMessage::Reply(reply)) => self.on_reply(now, reply, acts),
            Ok(ServerMessage::Event(event)) => {
                self.on_event(now, event, acts);
                Ok(())
            }
        }
    }

    fn on_reply(&mut self, now: Instant, reply: Reply, acts: &mut Vec<Action>) -> Flow {
        let Some((pending, _)) = self.pending.remove(&reply.seq) else {
            if self.abandoned_starts.remove(&reply.seq)
                && let Some(stream_id) = reply.stream_id
            {
                // A start_stream we gave up on succeeded late: end it at once.
                self.stop_stream(now, stream_id, None, acts);
            } else {
                debug!(seq = reply.seq, "reply to no pending request");
            }
            return Ok(());
        };
        match pending {
            Pending::Logon => self.on_logon_reply(reply, acts),
            Pending::Start { id } => {
                self.on_start_reply(now, id, reply, acts);
                Ok(())
            }
            Pending::Stop => {
                if let Some(code) = reply.failure() {
                    debug!(error = %code, "stop_stream answered with an error (harmless)");
                }
                Ok(())
            }
            Pending::Send {
                reply: to,
                image_parts,
            } => {
                match reply.failure() {
                    None => {
                        if let (Some(parts), Some(image_id)) = (image_parts, reply.image_id) {
                            send_image_parts(image_id, parts, acts);
                        }
                        acts.push(Action::Answer(to, Ok(reply)));
                    }
                    Some(code) => {
                        acts.push(Action::Answer(to, Err(SessionError::Refused { code })))
                    }
                }
                Ok(())
            }
        }
    }

    fn on_logon_reply(&mut self, mut reply: Reply, acts: &mut Vec<Action>) -> Flow {
        if let Some(code) = reply.failure() {
            return Err(ConnEnd::LogonRefused {
                code,
                with_refresh: self.with_refresh,
            });
        }
        self.logged_on = true;
        self.stats.logons.fetch_add(1, Ordering::Relaxed);
        if let Some(token) = reply.refresh_token.take() {
            acts.push(Action::RefreshToken(token));
        }
        info!(event = "logged_on", user = %self.config.user, with_refresh_token = self.with_refresh, "logged on");
        acts.push(Action::Emit(SessionEvent::LoggedOn {
            with_refresh_token: self.with_refresh,
        }));
        // A status that came before the logon reply: the channel is ready now.
        let mut early: Vec<ChannelStatus> = self
            .online
            .values()
            .filter(|s| s.status == ChannelState::Online)
            .cloned()
            .collect();
        early.sort_by(|a, b| a.channel.cmp(&b.channel));
        self.worked |= !early.is_empty();
        for status in early {
            acts.push(Action::Emit(SessionEvent::Channel {
                status,
                ready: true,
            }));
        }
        Ok(())
    }

    fn on_start_reply(&mut self, now: Instant, id: u64, reply: Reply, acts: &mut Vec<Action>) {
        let Some(out) = self.out.get_mut(&id) else {
            return;
        };
        match (reply.failure(), reply.stream_id) {
            (None, Some(stream_id)) => {
                debug!(stream_id, channel = %out.channel, "start_stream accepted");
                out.stream_id = Some(stream_id);
                let finished = out.finished;
                acts.push(Action::Open {
                    local_id: id,
                    stream_id,
                });
                acts.push(Action::Emit(SessionEvent::OutgoingStarted {
                    local_id: id,
                    stream_id,
                }));
                if finished {
                    self.stop_outgoing(now, id, acts);
                }
            }
            (failure, _) => {
                let code =
                    failure.unwrap_or_else(|| ErrorCode::Other("no stream_id in reply".into()));
                self.out.remove(&id);
                warn!(error = %code, hint = code.hint(), "start_stream refused; message dropped");
                acts.push(Action::Ended {
                    local_id: id,
                    stream_id: None,
                    reason: OutgoingEnd::Rejected(code),
                });
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: Event, acts: &mut Vec<Action>) {
        match event {
            Event::ChannelStatus(status) => self.on_channel_status(status, acts),
            Event::StreamStart(s) => self.on_stream_start(now, s, acts),
            Event::StreamStop(s) => self.on_stream_stop(s.stream_id, acts),
            Event::Error(e) => {
                warn!(error = %e.error, hint = e.error.hint(), "server error");
                acts.push(Action::Emit(SessionEvent::ServerError(e.error)));
            }
            Event::TextMessage(t) => {
                info!(channel = %t.channel, from = %t.from, "text message");
                acts.push(Action::Emit(SessionEvent::Text(t)));
            }
            Event::Location(l) => {
                info!(channel = %l.channel, from = %l.from, "location");
                acts.push(Action::Emit(SessionEvent::Location(l)));
            }
            Event::Image(meta) => {
                if let Some(image) = self.images.meta(now, meta) {
                    acts.push(Action::Emit(image));
                }
            }
            Event::Unknown { command, .. } => {
                debug!(command = %command, "unknown event ignored");
            }
        }
    }

    fn on_channel_status(&mut self, status: ChannelStatus, acts: &mut Vec<Action>) {
        let online = status.status == ChannelState::Online;
        self.online.insert(status.channel.clone(), status.clone());
        let ready = online && self.logged_on;
        self.worked |= ready;
        if online {
            info!(event = "channel_online", channel = %status.channel, users_online = status.users_online, "channel online");
        } else {
            warn!(event = "channel_offline", channel = %status.channel, error = status.error.as_deref().unwrap_or(""),
                error_type = status.error_type.as_deref().unwrap_or(""), "channel offline");
        }
        acts.push(Action::Emit(SessionEvent::Channel { status, ready }));
    }

    fn on_stream_start(
        &mut self,
        now: Instant,
        s: crate::zello::protocol::StreamStart,
        acts: &mut Vec<Action>,
    ) {
        let header = CodecHeader::from_base64(&s.codec_header);
        let valid = match &header {
            Ok(_) if s.codec.eq_ignore_ascii_case("opus") => true,
            Ok(_) => {
                warn!(stream_id = s.stream_id, codec = %s.codec, "incoming message in an unsupported codec ignored");
                false
            }
            Err(e) => {
                warn!(stream_id = s.stream_id, from = %s.from, error = %e, "incoming message with a bad codec_header ignored");
                false
            }
        };
        self.incoming.insert(
            s.stream_id,
            Incoming {
                last: now,
                packets: 0,
                valid,
            },
        );
        if let (true, Ok(header)) = (valid, header) {
            debug!(stream_id = s.stream_id, channel = %s.channel, from = %s.from, "incoming message");
            acts.push(Action::Emit(SessionEvent::IncomingStart {
                stream_id: s.stream_id,
                channel: s.channel,
                from: s.from,
                recipient: s.recipient,
                header,
                packet_duration: s.packet_duration,
            }));
        }
    }

    fn on_stream_stop(&mut self, stream_id: u32, acts: &mut Vec<Action>) {
        let ours = self
            .out
            .iter()
            .find(|(_, o)| o.stream_id == Some(stream_id))
            .map(|(id, _)| *id);
        if let Some(id) = ours {
            self.out.remove(&id);
            warn!(stream_id, "the server stopped our message");
            acts.push(Action::Ended {
                local_id: id,
                stream_id: Some(stream_id),
                reason: OutgoingEnd::StoppedByServer,
            });
        } else if let Some(inc) = self.incoming.remove(&stream_id)
            && inc.valid
        {
            acts.push(Action::Emit(SessionEvent::IncomingEnd {
                stream_id,
                reason: IncomingEnd::Stopped,
                packets: inc.packets,
            }));
        }
    }

    /// A binary frame: incoming audio or an image part.
    pub(crate) fn on_binary(&mut self, now: Instant, data: Bytes, acts: &mut Vec<Action>) {
        match Packet::parse(&data) {
            Err(e) => {
                self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "bad binary frame ignored");
            }
            Ok(Packet::Audio {
                stream_id,
                packet_id,
                ..
            }) => match self.incoming.get_mut(&stream_id) {
                Some(inc) if inc.valid => {
                    inc.last = now;
                    inc.packets += 1;
                    self.worked = true;
                    self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
                    acts.push(Action::Audio(SessionEvent::IncomingAudio {
                        stream_id,
                        packet_id,
                        data: data.slice(HEADER_LEN..),
                    }));
                }
                Some(inc) => inc.last = now,
                None => {
                    self.stats
                        .unknown_stream_packets
                        .fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Packet::Image { image_id, kind, .. }) => {
                let part = data.slice(HEADER_LEN..);
                if let Some(image) = self.images.part(now, image_id, kind, part) {
                    acts.push(Action::Emit(image));
                }
            }
        }
    }

    /// The session's user starts an outgoing message: start_stream, if its channel is ready.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        id: u64,
        channel: String,
        header: CodecHeader,
        recipient: Option<String>,
        acts: &mut Vec<Action>,
    ) {
        if !self.ready(&channel) {
            acts.push(Action::Ended {
                local_id: id,
                stream_id: None,
                reason: OutgoingEnd::NotReady,
            });
            return;
        }
        let cmd = Command::StartStream(StartStream::audio(&channel, header, recipient));
        self.command(now, cmd, Pending::Start { id }, acts);
        self.out.insert(
            id,
            Out {
                channel,
                stream_id: None,
                finished: false,
            },
        );
    }

    /// The session's user ends an outgoing message.
    pub(crate) fn finish(&mut self, now: Instant, id: u64, acts: &mut Vec<Action>) {
        let Some(out) = self.out.get_mut(&id) else {
            return;
        };
        if out.stream_id.is_some() {
            self.stop_outgoing(now, id, acts);
        } else {
            // Stopped once the stream id arrives; ends cleanly if it never does.
            out.finished = true;
        }
    }

    fn stop_outgoing(&mut self, now: Instant, id: u64, acts: &mut Vec<Action>) {
        let Some(out) = self.out.remove(&id) else {
            return;
        };
        let Some(stream_id) = out.stream_id else {
            return;
        };
        debug!(stream_id, channel = %out.channel, "stop_stream sent");
        self.stop_stream(now, stream_id, Some(out.channel), acts);
        acts.push(Action::Ended {
            local_id: id,
            stream_id: Some(stream_id),
            reason: OutgoingEnd::Completed,
        });
    }

    /// A command for the session's user (a text, a location, an image).
    pub(crate) fn request(
        &mut self,
        now: Instant,
        command: Command,
        image_parts: Option<(Bytes, Bytes)>,
        reply: ReplyTo,
        acts: &mut Vec<Action>,
    ) {
        let channel = match &command {
            Command::SendTextMessage(c) => Some(&c.channel),
            Command::SendLocation(c) => Some(&c.channel),
            Command::SendImage(c) => Some(&c.channel),
            _ => None,
        };
        if !self.logged_on {
            acts.push(Action::Answer(reply, Err(SessionError::NotConnected)));
            return;
        }
        if let Some(ch) = channel
            && !self.ready(ch)
        {
            let error = SessionError::ChannelNotReady(ch.clone());
            acts.push(Action::Answer(reply, Err(error)));
            return;
        }
        self.command(now, command, Pending::Send { reply, image_parts }, acts);
    }

    /// On shutdown or when leaving on purpose: end our messages properly (the connection
    /// task then closes the WebSocket).
    pub(crate) fn close_gracefully(&mut self, now: Instant, acts: &mut Vec<Action>) {
        let mut open: Vec<(u64, u32, String)> = self
            .out
            .iter()
            .filter_map(|(id, o)| Some((*id, o.stream_id?, o.channel.clone())))
            .collect();
        open.sort_unstable();
        for (_, stream_id, channel) in open {
            self.stop_stream(now, stream_id, Some(channel), acts);
        }
    }

    /// The connection is over: end everything that lived on it.
    pub(crate) fn teardown(self, end: &ConnEnd, acts: &mut Vec<Action>) {
        let shutdown = matches!(end, ConnEnd::Shutdown);
        let mut outs: Vec<(u64, Out)> = self.out.into_iter().collect();
        outs.sort_by_key(|(id, _)| *id);
        for (id, out) in outs {
            let reason = if shutdown && out.stream_id.is_some() {
                OutgoingEnd::Completed
            } else {
                OutgoingEnd::Disconnected
            };
            acts.push(Action::Ended {
                local_id: id,
                stream_id: out.stream_id,
                reason,
            });
        }
        let mut incoming: Vec<(u32, Incoming)> = self.incoming.into_iter().collect();
        incoming.sort_by_key(|(id, _)| *id);
        for (stream_id, inc) in incoming.into_iter().filter(|(_, i)| i.valid) {
            acts.push(Action::Emit(SessionEvent::IncomingEnd {
                stream_id,
                reason: IncomingEnd::Disconnected,
                packets: inc.packets,
            }));
        }
        for (pending, _) in self.pending.into_values() {
            if let Pending::Send { reply, .. } = pending {
                acts.push(Action::Answer(reply, Err(SessionError::NotConnected)));
            }
        }
        if self.logged_on {
            let mut was_ready: Vec<String> = self
                .online
                .into_values()
                .filter(|s| s.status == ChannelState::Online)
                .map(|s| s.channel)
                .collect();
            was_ready.sort();
            for channel in was_ready {
                acts.push(Action::Emit(offline(channel)));
            }
        }
        if !shutdown {
            let (reason, detail) = end.disconnect_reason();
            acts.push(Action::Emit(SessionEvent::Disconnected { reason, detail }));
        }
    }
}

/// A channel gone with the connection.
fn offline(channel: String) -> SessionEvent {
    SessionEvent::Channel {
        status: ChannelStatus {
            channel,
            status: ChannelState::Offline,
            users_online: 0,
            images_supported: false,
            texting_supported: false,
            locations_supported: false,
            error: Some("disconnected".into()),
            error_type: None,
        },
        ready: false,
    }
}

/// The two parts of an image the server accepted, tagged with its image id.
fn send_image_parts(image_id: u32, (thumb, full): (Bytes, Bytes), acts: &mut Vec<Action>) {
    for (kind, data) in [(ImageKind::Thumbnail, &thumb), (ImageKind::Full, &full)] {
        let part = Packet::Image {
            image_id,
            kind,
            data,
        };
        acts.push(Action::SendBinary(part.to_vec()));
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
