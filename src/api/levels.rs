//! The `levels:{RADIO}` rooms: each radio's live audio levels, read from its meter at most
//! every [`Timings::level_every`](super::ws::Timings) while a socket subscribes, latest value
//! only (a `LEVEL` is never queued: a socket that falls behind gets the next one).
//!
//! The meters belong to the codec engines; this module reads them through [`LevelSource`],
//! and asks them to measure while someone watches ([`LevelTap::want`]): the receive level is
//! then measured with the squelch closed too, so an installer sees the noise floor.
//!
//! One task ([`LevelFeed::run`]) reads the meters for every socket, on a
//! [`SlackTimer`](crate::service::slack::SlackTimer) (the readings ride on wake-ups the
//! gateway's thread makes anyway), and hands the sockets a [`LevelFrame`]: each radio's
//! `LEVEL`s are serialized once, by the first socket that sends them, whatever the number of
//! sockets.

use super::protocol::event::{Direction, Level};
use super::protocol::{ApiEvent, Room};
use crate::service::slack::SlackTimer;
use crate::state::{StateHub, unix_ms};
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
}

/// One reading of every radio's meter, shared by the sockets.
#[derive(Debug, Default)]
pub struct LevelFrame {
    radios: Vec<RadioLevels>,
}

/// One radio's readings in a frame, serialized when first asked for.
#[derive(Debug)]
struct RadioLevels {
    room: Room,
    levels: Vec<Level>,
    seq: u64,
    at_ms: u64,
    encoded: OnceLock<Vec<Bytes>>,
}

impl RadioLevels {
    fn encoded(&self) -> &[Bytes] {
        self.encoded.get_or_init(|| {
            self.levels
                .iter()
                .filter_map(|l| {
                    ApiEvent::level(l.clone(), self.seq, self.at_ms)
                        .encode()
                        .ok()
                })
                .flat_map(|encoded| encoded.into_iter().map(|e| e.json))
                .collect()
        })
    }
}

impl LevelFrame {
    /// The serialized `LEVEL`s of the rooms `wanted` accepts.
    pub fn messages<'a>(
        &'a self,
        wanted: impl Fn(&Room) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.radios
            .iter()
            .filter(move |r| wanted(&r.room))
            .flat_map(|r| r.encoded().iter())
    }
}

/// The meters read for every socket that wants levels, by one task.
pub struct LevelFeed {
    tap: LevelTap,
    hub: StateHub,
    frames: watch::Sender<Arc<LevelFrame>>,
    /// Told when a socket starts watching, so an idle reader wakes.
    watched: Notify,
    every: Duration,
    slack: Duration,
}

impl LevelFeed {
    /// A feed reading `tap` every `every` to `every + slack`, the sequence numbers from
    /// `hub`; it reads only while [`LevelFeed::watch`]ers exist, once [`LevelFeed::run`].
    pub fn new(tap: LevelTap, hub: StateHub, every: Duration, slack: Duration) -> Arc<Self> {
        let (frames, _) = watch::channel(Arc::new(LevelFrame::default()));
        Arc::new(LevelFeed {
            tap,
            hub,
            frames,
            watched: Notify::new(),
            every,
            slack,
        })
    }

    /// Starts watching: the receiver sees each new frame (latest only) until dropped, and the
    /// meters measure meanwhile.
    pub fn watch(&self) -> watch::Receiver<Arc<LevelFrame>> {
        let rx = self.frames.subscribe();
        self.watched.notify_one();
        rx
    }

    /// Reads the meters while anyone watches, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            // Idle until a socket watches.
            while self.frames.receiver_count() == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.watched.notified() => {}
                }
            }
            // The engines measure (the closed squelch too) while this is held.
            let _wanted = self.tap.want();
            let now = Instant::now();
            let mut timer = SlackTimer::new(now, now);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    // The last watcher left: stop measuring now.
                    _ = self.frames.closed() => break,
                    _ = &mut timer => {}
                }
                self.frames.send_replace(Arc::new(self.read()));
                let next = Instant::now() + self.every;
                timer.reset(next, next + self.slack);
            }
        }
    }

    fn read(&self) -> LevelFrame {
        let seq = self.hub.seq();
        let at_ms = unix_ms(SystemTime::now());
        LevelFrame {
            radios: self
                .tap
                .radios
                .iter()
                .map(|(name, meter)| RadioLevels {
                    room: Room::Levels(name.clone()),
                    levels: meter
                        .readings()
                        .into_iter()
                        .map(|r| Level {
                            radio: name.clone(),
                            direction: r.direction,
                            rms_dbfs: r.rms_dbfs,
                            peak_dbfs: r.peak_dbfs,
                            open: r.open,
                            clips: r.clips,
                        })
                        .collect(),
                    seq,
                    at_ms,
                    encoded: OnceLock::new(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::GatewayState;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A meter that gives one receive reading and counts who wants it measured.
    #[derive(Default)]
    struct FakeMeter {
        wanted: Arc<AtomicUsize>,
        rms: Mutex<f32>,
    }

    struct Want(Arc<AtomicUsize>);

    impl Drop for Want {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl LevelSource for FakeMeter {
        fn readings(&self) -> Vec<Reading> {
            vec![Reading {
                direction: Direction::ToChannel,
                rms_dbfs: *self.rms.lock().unwrap(),
                peak_dbfs: -3.0,
                open: false,
                clips: 0,
            }]
        }

        fn want(&self) -> Box<dyn Send + Sync> {
            self.wanted.fetch_add(1, Ordering::SeqCst);
            Box::new(Want(self.wanted.clone()))
        }
    }

    fn feed(meters: &[(&str, Arc<FakeMeter>)]) -> Arc<LevelFeed> {
        let tap = LevelTap::new(
            meters
                .iter()
                .map(|(n, m)| (n.to_string(), m.clone() as Arc<dyn LevelSource>))
                .collect(),
        );
        let hub = StateHub::new(GatewayState::new(
            meters
                .iter()
                .map(|(n, _)| (n.to_string(), "Dispatch".to_string())),
        ));
        LevelFeed::new(
            tap,
            hub,
            Duration::from_millis(200),
            Duration::from_millis(100),
        )
    }

    fn texts<'a>(frame: &'a LevelFrame, room: &'a Room) -> Vec<&'a Bytes> {
        frame.messages(move |r| r == room).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_reader_serializes_each_radio_once_for_every_socket() {
        let vhf = Arc::new(FakeMeter::default());
        let uhf = Arc::new(FakeMeter::default());
        let levels = feed(&[("vhf1", vhf.clone()), ("uhf1", uhf.clone())]);
        let shutdown = CancellationToken::new();
        tokio::spawn(levels.clone().run(shutdown.clone()));
        let mut a = levels.watch();
        let mut b = levels.watch();
        a.changed().await.unwrap();
        b.changed().await.unwrap();
        let (fa, fb) = (a.borrow_and_update().clone(), b.borrow_and_update().clone());
        assert!(Arc::ptr_eq(&fa, &fb), "one frame for both sockets");
        let vhf_room = Room::Levels("vhf1".into());
        let from_a = texts(&fa, &vhf_room);
        let from_b = texts(&fb, &vhf_room);
        assert_eq!(from_a.len(), 1);
        // The same bytes, not an equal copy: serialized once.
        assert_eq!(from_a[0].as_ptr(), from_b[0].as_ptr());
        let json: serde_json::Value = serde_json::from_slice(from_a[0]).unwrap();
        assert_eq!(json["type"], "LEVEL");
        assert_eq!(json["room"], "levels:vhf1");
        assert_eq!(json["data"]["radio"], "vhf1");
        assert_eq!(json["data"]["direction"], "to_channel");
        // A socket on one radio's room gets that radio's only.
        let every: Vec<_> = fa.messages(|_| true).collect();
        assert_eq!(every.len(), 2);
        shutdown.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn frames_come_at_most_every_period_and_only_while_watched() {
        let vhf = Arc::new(FakeMeter::default());
        let levels = feed(&[("vhf1", vhf.clone())]);
        let shutdown = CancellationToken::new();
        tokio::spawn(levels.clone().run(shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(vhf.wanted.load(Ordering::SeqCst), 0, "nobody watches yet");
        let mut rx = levels.watch();
        let mut at = Vec::new();
        for rms in [-40.0, -30.0, -20.0, -10.0] {
            *vhf.rms.lock().unwrap() = rms;
            rx.changed().await.unwrap();
            at.push(Instant::now());
            assert_eq!(
                vhf.wanted.load(Ordering::SeqCst),
                1,
                "measured while watched"
            );
            let frame = rx.borrow_and_update().clone();
            let text = texts(&frame, &Room::Levels("vhf1".into()))[0].clone();
            let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(json["data"]["rms_dbfs"], rms, "the latest reading");
        }
        for pair in at.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(200) && gap <= Duration::from_millis(300),
                "{gap:?}"
            );
        }
        // The last watcher leaves: the meter stops measuring at once, not at the next period.
        drop(rx);
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(vhf.wanted.load(Ordering::SeqCst), 0);
        // And starts again for a new one.
        let mut again = levels.watch();
        again.changed().await.unwrap();
        assert_eq!(vhf.wanted.load(Ordering::SeqCst), 1);
        shutdown.cancel();
    }
}
