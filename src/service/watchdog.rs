//! Liveness: systemd's watchdog fed only while every part of the gateway makes progress.
//!
//! Each long-running part (a radio's codec thread, the Zello session task, a bridge task)
//! registers a [`Heartbeat`] in the shared [`Liveness`] registry and calls
//! [`Heartbeat::beat`] from its own loop: one relaxed atomic add, cheap enough for every
//! 20 ms codec frame. The [`Watchdog`] task checks every half watchdog interval that every
//! heartbeat advanced since the previous check and only then sends `WATCHDOG=1`. When one
//! did not, it logs which part is stuck (once) and stays silent, so systemd kills and restarts
//! the gateway after `WatchdogSec` (and `ExecStopPost` forces PTT off).
//!
//! A part must therefore beat at least once per [`Watchdog::period`] (15 s with
//! `WatchdogSec=30`), also when idle: the session task beats from a 10 s timer and each
//! bridge from a 5 s one, not only when messages arrive. A part that ends normally calls [`Heartbeat::retire`]; one that
//! dies without retiring (a panicked thread) stops beating and is reported as stuck.

use super::notify::Notifier;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// A progress counter one part of the gateway bumps from its own loop.
#[derive(Debug)]
pub struct Heartbeat {
    id: u64,
    name: String,
    ticks: AtomicU64,
    retired: AtomicBool,
}

impl Heartbeat {
    /// Records progress. Lock-free and allocation-free.
    pub fn beat(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// The part has ended normally and is no longer watched.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// The name it was registered with (`codec radio1`, `zello session`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times it has beaten.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// The registry of heartbeats the [`Watchdog`] checks. Cheap to clone: clones share it.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    beats: Vec<Arc<Heartbeat>>,
}

impl Liveness {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a part under `name` (shown in the log when it gets stuck). The part gets
    /// one full check period after the next check before it is judged.
    pub fn register(&self, name: impl Into<String>) -> Arc<Heartbeat> {
        let mut registry = lock(&self.inner);
        let id = registry.next_id;
        registry.next_id += 1;
        let beat = Arc::new(Heartbeat {
            id,
            name: name.into(),
            ticks: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        });
        registry.beats.push(beat.clone());
        beat
    }

    /// The names of the parts watched now.
    pub fn names(&self) -> Vec<String> {
        self.snapshot().iter().map(|b| b.name.clone()).collect()
    }

    /// The heartbeats watched now, with retired ones removed from the registry.
    fn snapshot(&self) -> Vec<Arc<Heartbeat>> {
        let mut registry = lock(&self.inner);
        registry
            .beats
            .retain(|b| !b.retired.load(Ordering::Relaxed));
        registry.beats.clone()
    }
}

/// The outcome of one [`Watchdog::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Every heartbeat advanced since the previous check (or is new).
    Alive,
    /// These parts did not advance.
    Stuck(Vec<String>),
}

/// What the watchdog remembers of one heartbeat.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ticks: u64,
    stuck: bool,
}

/// Feeds systemd's watchdog while every registered heartbeat advances.
#[derive(Debug)]
pub struct Watchdog {
    notifier: Notifier,
    liveness: Liveness,
    period: Duration,
    seen: HashMap<u64, Seen>,
    send_failed: bool,
}

impl Watchdog {
    /// A watchdog for systemd's `interval` (`Notifier::watchdog_interval`, `WatchdogSec=`): it
    /// checks and pings every half interval, as systemd recommends.
    pub fn new(notifier: Notifier, liveness: Liveness, interval: Duration) -> Self {
        let period = (interval / 2).max(Duration::from_millis(1));
        let mut watchdog = Watchdog {
            notifier,
            liveness,
            period,
            seen: HashMap::new(),
            send_failed: false,
        };
        // The heartbeats registered so far are measured from now.
        watchdog.check();
        watchdog
    }

    /// How often it checks and pings; each part must beat at least this often.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Compares every heartbeat with the previous check. Logs a part that got stuck (once)
    /// and one that recovered. A heartbeat seen for the first time is recorded, not judged.
    pub fn check(&mut self) -> Health {
        let beats = self.liveness.snapshot();
        let mut stuck = Vec::new();
        let mut next = HashMap::with_capacity(beats.len());
        for beat in &beats {
            let ticks = beat.ticks();
            let now = match self.seen.get(&beat.id) {
                None => Seen {
                    ticks,
                    stuck: false,
                },
                Some(before) if ticks == before.ticks => {
                    if !before.stuck {
                        error!(
                            component = %beat.name,
                            stalled_s = self.period.as_secs_f32(),
                            "{} made no progress for {:.0} s: no longer feeding systemd's watchdog, so systemd restarts the gateway",
                            beat.name,
                            self.period.as_secs_f32()
                        );
                    }
                    stuck.push(beat.name.clone());
                    Seen { ticks, stuck: true }
                }
                Some(before) => {
                    if before.stuck {
                        info!(component = %beat.name, "{} is making progress again", beat.name);
                    }
                    Seen {
                        ticks,
                        stuck: false,
                    }
                }
            };
            next.insert(beat.id, now);
        }
        self.seen = next;
        if stuck.is_empty() {
            Health::Alive
        } else {
            Health::Stuck(stuck)
        }
    }

    /// Checks every [`Watchdog::period`] and sends `WATCHDOG=1` after each check that finds
    /// every part alive, until `shutdown` is cancelled. A failed send is logged once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + self.period;
        let mut ticks = tokio::time::interval_at(start, self.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if self.check() != Health::Alive {
                continue;
            }
            match self.notifier.watchdog() {
                Ok(()) => self.send_failed = false,
                Err(e) if !self.send_failed => {
                    warn!(error = %e, "cannot feed systemd's watchdog");
                    self.send_failed = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::notify::tests::FakeSystemd;

    const INTERVAL: Duration = Duration::from_secs(30);
    const STEP: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn pings_only_while_every_heartbeat_ticks() {
        let systemd = FakeSystemd::new();
        let liveness = Liveness::new();
        let codec = liveness.register("codec radio1");
        let session = liveness.register("zello session");
        let watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
        assert_eq!(watchdog.period(), Duration::from_secs(15));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watchdog.run(shutdown.clone()));

        // Beats fall halfway between the 5 s steps, never on a check instant.
        tokio::time::sleep(STEP / 2).await;
        // Both tick every 5 s (2.5 s to 47.5 s): a ping after the checks at 15, 30 and 45 s.
        for _ in 0..10 {
            codec.beat();
            session.beat();
            tokio::time::sleep(STEP).await;
        }
        assert_eq!(systemd.received(), ["WATCHDOG=1"; 3]);

        // The codec stalls after its beat at 47.5 s: the check at 60 s still sees that beat,
        // the checks at 75 and 90 s see none and stay silent.
        for _ in 0..9 {
            session.beat();
            tokio::time::sleep(STEP).await;
        }
        assert_eq!(systemd.received(), ["WATCHDOG=1"]);

        // It recovers (had systemd not restarted us yet): pings at 105 and 120 s.
        for _ in 0..6 {
            codec.beat();
            session.beat();
            tokio::time::sleep(STEP).await;
        }
        assert_eq!(systemd.received(), ["WATCHDOG=1"; 2]);

        shutdown.cancel();
        task.await.unwrap();
        tokio::time::sleep(INTERVAL).await;
        assert!(systemd.received().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_part_is_named() {
        let systemd = FakeSystemd::new();
        let liveness = Liveness::new();
        let codec = liveness.register("codec radio1");
        let session = liveness.register("zello session");
        let mut watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
        codec.beat();
        session.beat();
        assert_eq!(watchdog.check(), Health::Alive);
        session.beat();
        assert_eq!(watchdog.check(), Health::Stuck(vec!["codec radio1".into()]));
        assert_eq!(
            watchdog.check(),
            Health::Stuck(vec!["codec radio1".into(), "zello session".into()])
        );
        // check() alone never talks to systemd.
        assert!(systemd.received().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn new_parts_get_a_grace_period_and_retired_ones_are_dropped() {
        let systemd = FakeSystemd::new();
        let liveness = Liveness::new();
        let mut watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
        // Nothing registered: alive (the runtime and the watchdog task still work).
        assert_eq!(watchdog.check(), Health::Alive);
        let late = liveness.register("bridge radio2");
        assert_eq!(
            watchdog.check(),
            Health::Alive,
            "first seen: not judged yet"
        );
        assert_eq!(
            watchdog.check(),
            Health::Stuck(vec!["bridge radio2".into()])
        );
        late.retire();
        assert_eq!(watchdog.check(), Health::Alive);
        assert!(liveness.names().is_empty());
        let again = liveness.register("bridge radio2");
        again.beat();
        assert_eq!(liveness.names(), ["bridge radio2"]);
        assert_eq!(watchdog.check(), Health::Alive);
        assert_eq!(again.ticks(), 1);
        assert_eq!(again.name(), "bridge radio2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_that_ends_without_retiring_stops_the_pings() {
        let systemd = FakeSystemd::new();
        let liveness = Liveness::new();
        // A codec thread that beat once and died (a panic unwinds without retiring).
        let beat = liveness.register("codec radio1");
        beat.beat();
        drop(beat);
        let shutdown = CancellationToken::new();
        let watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
        let task = tokio::spawn(watchdog.run(shutdown.clone()));
        tokio::time::sleep(INTERVAL * 3).await;
        assert!(systemd.received().is_empty());
        assert_eq!(liveness.names(), ["codec radio1"]);
        shutdown.cancel();
        task.await.unwrap();
    }
}
