//! Texts, locations and images, relayed to the channel's members.

use super::{ConnId, Hub, PendingImage, deliver, members, text_msg};
use crate::zello::protocol::{
    ErrorCode, Event, Image, ImageKind, Location, Packet, SendImage, SendLocation, SendTextMessage,
    TextMessage,
};
use crate::zello::sim::ECHO_USER;
use crate::zello::sim::log::SimEvent;
use bytes::Bytes;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// Texts longer than this are refused (the spec's 30 Kb).
const MAX_TEXT_BYTES: usize = 30 * 1024;
/// Images one connection may have announced but not finished sending.
const MAX_PENDING_IMAGES: usize = 16;

impl Hub<'_> {
    /// Delivers a text message to its receivers and lets the echo user answer.
    pub(crate) fn text(&mut self, conn: ConnId, req: &SendTextMessage) -> Result<(), ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if req.text.trim().is_empty() {
            return Err(ErrorCode::EmptyMessage);
        }
        if req.text.len() > MAX_TEXT_BYTES {
            return Err(ErrorCode::InvalidRequest);
        }
        self.deliver_text(
            Some(conn),
            &user,
            &channel,
            req.recipient.clone(),
            &req.text,
        );
        if self.echo_hears(req.recipient.as_deref()) {
            let private = req.recipient.is_some();
            let sh = Arc::clone(self.sh);
            let (channel, text) = (channel.clone(), req.text.clone());
            self.sh.spawn(async move {
                let recipient = private.then_some(user);
                sh.hub()
                    .deliver_text(None, ECHO_USER, &channel, recipient, &text);
            });
        }
        Ok(())
    }

    pub(crate) fn deliver_text(
        &mut self,
        from_conn: Option<ConnId>,
        from: &str,
        channel: &str,
        recipient: Option<String>,
        text: &str,
    ) {
        let st = &mut *self.st;
        let message_id = st.next_message_id();
        let event = Event::TextMessage(TextMessage {
            channel: channel.to_string(),
            from: from.to_string(),
            recipient: recipient.clone(),
            message_id,
            text: text.to_string(),
        });
        let msg = text_msg(&event);
        for r in members(&st.sessions, channel, from_conn, recipient.as_deref()) {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(user = %from, %channel, message_id, "text message");
        self.log(SimEvent::Text {
            user: from.to_string(),
            channel: channel.to_string(),
            message_id,
        });
    }

    /// Delivers a location to its receivers and lets the echo user answer.
    pub(crate) fn location(&mut self, conn: ConnId, req: &SendLocation) -> Result<(), ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        if !req.latitude.is_finite() || !req.longitude.is_finite() {
            return Err(ErrorCode::InvalidRequest);
        }
        let mut loc = Location {
            channel: channel.clone(),
            from: user.clone(),
            recipient: req.recipient.clone(),
            message_id: 0,
            latitude: req.latitude,
            longitude: req.longitude,
            formatted_address: req.formatted_address.clone(),
            accuracy: req.accuracy,
        };
        self.deliver_location(Some(conn), loc.clone());
        if self.echo_hears(req.recipient.as_deref()) {
            loc.recipient = req.recipient.is_some().then_some(user);
            loc.from = ECHO_USER.into();
            let sh = Arc::clone(self.sh);
            self.sh.spawn(async move {
                sh.hub().deliver_location(None, loc);
            });
        }
        Ok(())
    }

    pub(crate) fn deliver_location(&mut self, from_conn: Option<ConnId>, mut loc: Location) {
        let st = &mut *self.st;
        loc.message_id = st.next_message_id();
        let (user, channel, message_id) = (loc.from.clone(), loc.channel.clone(), loc.message_id);
        let receivers = members(&st.sessions, &channel, from_conn, loc.recipient.as_deref());
        let msg = text_msg(&Event::Location(loc));
        for r in receivers {
            deliver(&mut st.sessions, r, msg.clone());
        }
        tracing::info!(%user, %channel, message_id, "location");
        self.log(SimEvent::Location {
            user,
            channel,
            message_id,
        });
    }

    /// Accepts a `send_image`; its two packets follow.
    pub(crate) fn send_image(&mut self, conn: ConnId, req: &SendImage) -> Result<u32, ErrorCode> {
        let (user, channel) = self.sender(conn, &req.channel)?;
        let st = &mut *self.st;
        if st.images.values().filter(|i| i.owner == conn).count() >= MAX_PENDING_IMAGES {
            return Err(ErrorCode::InvalidRequest);
        }
        let image_id = st.next_message_id();
        st.images.insert(
            image_id,
            PendingImage {
                owner: conn,
                user: user.clone(),
                channel: channel.clone(),
                recipient: req.recipient.clone(),
                kind: req.kind.clone(),
                width: req.width,
                height: req.height,
                source: req.source.clone(),
                thumbnail: None,
                full: None,
            },
        );
        tracing::info!(%user, channel = %channel, image_id, "image announced");
        self.log(SimEvent::ImageStart {
            user,
            channel: channel.clone(),
            image_id,
        });
        Ok(image_id)
    }

    /// Takes one part of an announced image; once both parts are in, delivers `on_image`
    /// followed by the thumbnail and the full image.
    pub(crate) fn image_packet(
        &mut self,
        conn: ConnId,
        image_id: u32,
        kind: ImageKind,
        data: &[u8],
    ) -> Result<(), ErrorCode> {
        let st = &mut *self.st;
        let Some(img) = st.images.get_mut(&image_id).filter(|i| i.owner == conn) else {
            return Err(ErrorCode::InvalidAudioPacket);
        };
        let frame = Bytes::from(
            Packet::Image {
                image_id,
                kind,
                data,
            }
            .to_vec(),
        );
        match kind {
            ImageKind::Thumbnail => img.thumbnail = Some(frame),
            ImageKind::Full => img.full = Some(frame),
        }
        if img.thumbnail.is_none() || img.full.is_none() {
            return Ok(());
        }
        let Some(img) = st.images.remove(&image_id) else {
            return Ok(());
        };
        let receivers = members(
            &st.sessions,
            &img.channel,
            Some(conn),
            img.recipient.as_deref(),
        );
        let event = Event::Image(Image {
            channel: img.channel.clone(),
            from: img.user.clone(),
            recipient: img.recipient.clone(),
            message_id: image_id,
            kind: img.kind.clone(),
            height: img.height,
            width: img.width,
            source: img.source.clone(),
        });
        let msg = text_msg(&event);
        let parts = [img.thumbnail, img.full];
        for r in receivers {
            deliver(&mut st.sessions, r, msg.clone());
            for part in parts.iter().flatten() {
                deliver(&mut st.sessions, r, Message::Binary(part.clone()));
            }
        }
        tracing::info!(user = %img.user, channel = %img.channel, image_id, "image");
        self.log(SimEvent::Image {
            user: img.user,
            channel: img.channel,
            image_id,
        });
        Ok(())
    }
}
