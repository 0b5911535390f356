//! Voice: streams started, relayed to the channel's members (and the echo user), stopped.

use super::{ConnId, Hub, StreamRec, deliver, members, text_msg};
use crate::zello::protocol::{
    CodecHeader, ErrorCode, Event, Packet, StartStream, StreamStart, StreamStop,
};
use crate::zello::sim::ECHO_USER;
use crate::zello::sim::echo::{self, Recording};
use crate::zello::sim::log::{SimEvent, StopReason};
use bytes::Bytes;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// Packets the echo user keeps of one message (six minutes of 60 ms packets).
const MAX_ECHO_PACKETS: usize = 6_000;

/// An audio packet as the server relays it, numbered by the server.
fn audio_frame(stream_id: u32, packet_id: u32, data: &[u8]) -> Bytes {
    Bytes::from(
        Packet::Audio {
            stream_id,
            packet_id,
            data,
        }
        .to_vec(),
    )
}

impl Hub<'_> {
    /// Validates and starts a stream, announcing it to its receivers.
    pub(crate) fn start_stream(
        &mut self,
        conn: ConnId,
        req: &StartStream,
    ) -> Result<u32, ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if req.kind != "audio" || req.codec != "opus" {
            return Err(ErrorCode::InvalidRequest);
        }
        if CodecHeader::from_base64(&req.codec_header).is_err() {
            return Err(ErrorCode::InvalidRequest);
        }
        if req.packet_duration == 0 || req.packet_duration > 120 {
            return Err(ErrorCode::InvalidRequest);
        }
        if let Some(code) = self.sh.faults().take_start_stream_rejection() {
            return Err(code);
        }
        let echo = self.echo_hears(req.recipient.as_deref());
        let st = &mut *self.st;
        let stream_id = st.next_stream_id();
        let receivers = members(&st.sessions, &channel, Some(conn), req.recipient.as_deref());
        let event = Event::StreamStart(StreamStart {
            kind: req.kind.clone(),
            codec: req.codec.clone(),
            codec_header: req.codec_header.clone(),
            packet_duration: req.packet_duration,
            stream_id,
            channel: channel.clone(),
            from: user.clone(),
            recipient: req.recipient.clone(),
        });
        let msg = text_msg(&event);
        for &r in &receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        st.streams.insert(
            stream_id,
            StreamRec {
                owner: conn,
                user: user.clone(),
                channel: channel.clone(),
                recipient: req.recipient.clone(),
                codec_header: req.codec_header.clone(),
                packet_duration: req.packet_duration,
                receivers,
                next_packet_id: 0,
                echo: echo.then(Vec::new),
                stopped: false,
            },
        );
        tracing::info!(%user, stream_id, channel = %channel, recipient = ?req.recipient, "stream start");
        self.log(SimEvent::StreamStart {
            user,
            stream_id,
            channel: channel.clone(),
            recipient: req.recipient.clone(),
        });
        Ok(stream_id)
    }

    /// Relays one audio packet of the sender's stream, numbered by the server.
    pub(crate) fn audio(
        &mut self,
        conn: ConnId,
        stream_id: u32,
        data: &[u8],
    ) -> Result<(), ErrorCode> {
        let st = &mut *self.st;
        let Some(rec) = st.streams.get_mut(&stream_id).filter(|r| r.owner == conn) else {
            return Err(ErrorCode::InvalidAudioPacket);
        };
        if rec.stopped {
            return Ok(());
        }
        let packet_id = rec.next_packet_id;
        rec.next_packet_id = rec.next_packet_id.wrapping_add(1);
        let frame = audio_frame(stream_id, packet_id, data);
        if let Some(echo) = rec.echo.as_mut()
            && echo.len() < MAX_ECHO_PACKETS
        {
            echo.push(Bytes::copy_from_slice(data));
        }
        for &r in &rec.receivers {
            deliver(&mut st.sessions, r, Message::Binary(frame.clone()));
        }
        tracing::debug!(stream_id, packet_id, len = data.len(), "audio packet");
        self.log(SimEvent::Packet {
            stream_id,
            packet_id,
            len: data.len(),
        });
        Ok(())
    }

    /// The sender's `stop_stream`.
    pub(crate) fn stop_stream(&mut self, conn: ConnId, stream_id: u32) -> Result<(), ErrorCode> {
        match self.st.streams.get(&stream_id) {
            Some(rec) if rec.owner == conn => {}
            _ => return Err(ErrorCode::FailedToStopStream),
        }
        let Some(rec) = self.st.streams.remove(&stream_id) else {
            return Err(ErrorCode::FailedToStopStream);
        };
        if rec.stopped {
            // The server had ended it already.
            return Err(ErrorCode::FailedToStopStream);
        }
        self.finish_stream(stream_id, rec, StopReason::Client);
        Ok(())
    }

    /// Ends a stream for its receivers and hands what the echo user heard to a replay.
    pub(super) fn finish_stream(&mut self, stream_id: u32, mut rec: StreamRec, reason: StopReason) {
        let msg = text_msg(&Event::StreamStop(StreamStop { stream_id }));
        let st = &mut *self.st;
        for &r in &rec.receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(user = %rec.user, stream_id, ?reason, "stream stop");
        self.log(SimEvent::StreamStop {
            user: rec.user.clone(),
            stream_id,
            reason,
        });
        if let Some(packets) = rec.echo.take().filter(|p| !p.is_empty()) {
            let recording = Recording {
                channel: rec.channel,
                sender: rec.user,
                private: rec.recipient.is_some(),
                codec_header: rec.codec_header,
                packet_duration: rec.packet_duration,
                packets,
            };
            let sh = Arc::clone(self.sh);
            self.sh.spawn(echo::replay(sh, recording));
        }
    }

    /// The server stops `user`'s outgoing streams (a fault).
    pub(crate) fn server_stop_streams(&mut self, user: &str) -> Vec<u32> {
        let Some(&conn) = self.st.by_user.get(user) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = self
            .st
            .streams
            .iter()
            .filter(|(_, r)| r.owner == conn && !r.stopped)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for &id in &ids {
            let Some(rec) = self.st.streams.get_mut(&id) else {
                continue;
            };
            rec.stopped = true;
            let snapshot = StreamRec {
                owner: rec.owner,
                user: rec.user.clone(),
                channel: rec.channel.clone(),
                recipient: rec.recipient.clone(),
                codec_header: rec.codec_header.clone(),
                packet_duration: rec.packet_duration,
                receivers: rec.receivers.clone(),
                next_packet_id: rec.next_packet_id,
                echo: rec.echo.take(),
                stopped: true,
            };
            let msg = text_msg(&Event::StreamStop(StreamStop { stream_id: id }));
            deliver(&mut self.st.sessions, conn, msg);
            self.finish_stream(id, snapshot, StopReason::Server);
        }
        ids
    }

    /// Starts a stream from the echo user; returns its id and receivers.
    pub(crate) fn echo_stream_start(&mut self, rec: &Recording) -> (u32, Vec<ConnId>) {
        let recipient = rec.private.then(|| rec.sender.clone());
        let st = &mut *self.st;
        let stream_id = st.next_stream_id();
        let receivers = members(&st.sessions, &rec.channel, None, recipient.as_deref());
        let event = Event::StreamStart(StreamStart {
            kind: "audio".into(),
            codec: "opus".into(),
            codec_header: rec.codec_header.clone(),
            packet_duration: rec.packet_duration,
            stream_id,
            channel: rec.channel.clone(),
            from: ECHO_USER.into(),
            recipient: recipient.clone(),
        });
        let msg = text_msg(&event);
        for &r in &receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(stream_id, channel = %rec.channel, "echo replay start");
        self.log(SimEvent::StreamStart {
            user: ECHO_USER.into(),
            stream_id,
            channel: rec.channel.clone(),
            recipient,
        });
        (stream_id, receivers)
    }

    /// Sends one packet of an echo replay.
    pub(crate) fn echo_packet(
        &mut self,
        stream_id: u32,
        packet_id: u32,
        receivers: &[ConnId],
        data: &[u8],
    ) {
        let frame = audio_frame(stream_id, packet_id, data);
        for &r in receivers {
            deliver(&mut self.st.sessions, r, Message::Binary(frame.clone()));
        }
        self.log(SimEvent::Packet {
            stream_id,
            packet_id,
            len: data.len(),
        });
    }

    /// Ends an echo replay.
    pub(crate) fn echo_stream_stop(&mut self, stream_id: u32, receivers: &[ConnId]) {
        let msg = text_msg(&Event::StreamStop(StreamStop { stream_id }));
        for &r in receivers {
            deliver(&mut self.st.sessions, r, msg.clone());
        }
        tracing::info!(stream_id, "echo replay stop");
        self.log(SimEvent::StreamStop {
            user: ECHO_USER.into(),
            stream_id,
            reason: StopReason::EchoDone,
        });
    }
}
