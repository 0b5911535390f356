//! The `levels:{RADIO}` rooms: each radio's live audio levels, read from its meter at most
//! every [`Timings::level_every`](super::ws::Timings) while a socket subscribes, latest value
//! only (a `LEVEL` is never queued: a socket that falls behind gets the next one).
//!
//! The meters belong to the codec engines; this module reads them through [`LevelSource`],
//! and asks them to measure while someone watches ([`LevelTap::want`]): the receive level is
//! then measured with the squelch closed too, so an installer sees the noise floor.

use super::protocol::event::{Direction, Level};
use super::protocol::{ApiEvent, Room};
use crate::state::unix_ms;
use bytes::Bytes;
use std::sync::Arc;
use std::time::SystemTime;

/// One direction's latest reading of a radio's meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// `ToChannel`: what the receiver hears; `FromChannel`: what the transmitter plays.
    pub direction: Direction,
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
    /// The squelch open (receive) or the transmitter keyed (transmit).
    pub open: bool,
    /// Samples at full scale so far.
    pub clips: u64,
}

/// A radio's level meter, as the API reads it.
pub trait LevelSource: Send + Sync {
    /// The latest readings, one per direction measured so far.
    fn readings(&self) -> Vec<Reading>;
    /// Asks the meter to measure the receive level even with the squelch closed, until the
    /// returned value is dropped.
    fn want(&self) -> Box<dyn Send + Sync>;
}

/// Every radio's meter, by name.
#[derive(Clone, Default)]
pub struct LevelTap {
    radios: Arc<Vec<(String, Arc<dyn LevelSource>)>>,
}

impl std::fmt::Debug for LevelTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.radios.iter().map(|(name, _)| name))
            .finish()
    }
}

/// Keeps the meters measuring while held.
pub struct Wanted {
    _guards: Vec<Box<dyn Send + Sync>>,
}

/// A codec engine's live meter, as the API reads it.
struct Live(Arc<crate::audio::meter::LiveMeter>);

impl LevelSource for Live {
    fn readings(&self) -> Vec<Reading> {
        use crate::audio::meter::MeterDirection;
        [MeterDirection::Receive, MeterDirection::Transmit]
            .into_iter()
            .filter_map(|d| {
                let r = self.0.read(d);
                // A direction not measured yet has nothing to show.
                (r.frames > 0).then_some(Reading {
                    direction: d.into(),
                    rms_dbfs: r.rms_dbfs,
                    peak_dbfs: r.peak_dbfs,
                    open: r.open,
                    clips: r.clips,
                })
            })
            .collect()
    }

    fn want(&self) -> Box<dyn Send + Sync> {
        Box::new(self.0.want())
    }
}

impl LevelTap {
    /// The live meters of `radios` in the gateway's registry (made now when missing, so a
    /// radio that starts later writes into the one read here).
    pub fn from_meters<S: AsRef<str>>(
        meters: &crate::gateway::Meters,
        radios: impl IntoIterator<Item = S>,
    ) -> Self {
        LevelTap::new(
            radios
                .into_iter()
                .map(|name| {
                    let name = name.as_ref().to_string();
                    let meter = meters.meter(&name);
                    (name, Arc::new(Live(meter)) as Arc<dyn LevelSource>)
                })
                .collect(),
        )
    }

    /// The meters of these radios.
    pub fn new(radios: Vec<(String, Arc<dyn LevelSource>)>) -> Self {
        LevelTap {
            radios: Arc::new(radios),
        }
    }

    /// Every meter measures (squelch closed included) while the result is held.
    pub fn want(&self) -> Wanted {
        Wanted {
            _guards: self.radios.iter().map(|(_, m)| m.want()).collect(),
        }
    }

    /// The `LEVEL` events of the radios whose rooms `wanted` accepts, serialized, with the
    /// state's sequence number `seq`.
    pub fn read(&self, wanted: impl Fn(&Room) -> bool, seq: u64) -> Vec<Bytes> {
        let at_ms = unix_ms(SystemTime::now());
        let mut out = Vec::new();
        for (name, meter) in self.radios.iter() {
            let room = Room::Levels(name.clone());
            if !wanted(&room) {
                continue;
            }
            for r in meter.readings() {
                let level = Level {
                    radio: name.clone(),
                    direction: r.direction,
                    rms_dbfs: r.rms_dbfs,
                    peak_dbfs: r.peak_dbfs,
                    open: r.open,
                    clips: r.clips,
                };
                if let Ok(encoded) = ApiEvent::level(level, seq, at_ms).encode() {
                    out.extend(encoded.into_iter().map(|e| e.json));
                }
            }
        }
        out
    }
}
