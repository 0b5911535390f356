//! Incoming images: the server sends an image's description (on_image) and its two parts
//! (binary frames) in any order; the image is told once all three have come.

use super::SessionEvent;
use crate::zello::protocol::{Image, ImageKind};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// Images whose parts are kept waiting for the rest at most.
const MAX_PENDING_IMAGES: usize = 16;
/// An image whose parts have not all come after this long is forgotten.
const IMAGE_PARTS_WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct PendingImage {
    meta: Option<Image>,
    thumbnail: Option<Bytes>,
    full: Option<Bytes>,
    since: Option<Instant>,
}

/// The images being received, by image id.
#[derive(Default)]
pub(crate) struct Images(HashMap<u32, PendingImage>);

impl Images {
    /// An image's description; the image if its parts have all come.
    pub(crate) fn meta(&mut self, now: Instant, meta: Image) -> Option<SessionEvent> {
        let id = meta.message_id;
        let entry = self.0.entry(id).or_default();
        entry.meta = Some(meta);
        entry.since.get_or_insert(now);
        self.complete(id)
    }

    /// One part of an image; the image if its parts have all come.
    pub(crate) fn part(
        &mut self,
        now: Instant,
        image_id: u32,
        kind: ImageKind,
        payload: Bytes,
    ) -> Option<SessionEvent> {
        let entry = self.0.entry(image_id).or_default();
        entry.since.get_or_insert(now);
        match kind {
            ImageKind::Thumbnail => entry.thumbnail = Some(payload),
            ImageKind::Full => entry.full = Some(payload),
        }
        if self.0.len() > MAX_PENDING_IMAGES {
            // Keep memory bounded against a stream of image parts that never complete.
            if let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, i)| i.since)
                .map(|(id, _)| *id)
            {
                self.0.remove(&oldest);
            }
        }
        self.complete(image_id)
    }

    fn complete(&mut self, id: u32) -> Option<SessionEvent> {
        let done = self
            .0
            .get(&id)
            .is_some_and(|i| i.meta.is_some() && i.thumbnail.is_some() && i.full.is_some());
        if !done {
            return None;
        }
        let img = self.0.remove(&id)?;
        let (Some(meta), Some(thumbnail), Some(full)) = (img.meta, img.thumbnail, img.full) else {
            return None;
        };
        info!(channel = %meta.channel, from = %meta.from, bytes = full.len(), "image");
        Some(SessionEvent::Image {
            meta,
            thumbnail,
            full,
        })
    }

    /// Forgets the images whose parts have not all come in time.
    pub(crate) fn forget_stale(&mut self, now: Instant) {
        self.0.retain(|_, img| {
            img.since
                .is_none_or(|t| now.duration_since(t) < IMAGE_PARTS_WAIT)
        });
    }
}
