//! systemd's watchdog fed by the gateway's real parts: the Zello session task beats while it
//! is idle, offline or connecting, and a codec thread stuck in a tick stops the pings. The
//! watchdog runs under tokio's paused clock; codec threads run in real time, and the tests
//! wait for their ticks before each check instead of timing them.

mod common;

use common::{NotifySocket, config, server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zello_gateway::audio::NullOutput;
use zello_gateway::audio::opus::EncoderSettings;
use zello_gateway::audio::{AudioError, AudioInput, CODEC_RATE};
use zello_gateway::gateway::engine::{self, Engine};
use zello_gateway::radio::sim::FlagCarrier;
use zello_gateway::service::{Health, Heartbeat, Liveness, Watchdog};
use zello_gateway::zello::session::{self, SessionConfig, SessionEvent};
use zello_gateway::zello::sim::SimConfig;

/// systemd's `WatchdogSec=30`: the watchdog checks and pings every 15 s.
const INTERVAL: Duration = Duration::from_secs(30);

/// A watchdog on `liveness` pinging `systemd`, started now; returns its check period.
fn start_watchdog(
    systemd: &NotifySocket,
    liveness: &Liveness,
    shutdown: &CancellationToken,
) -> Duration {
    let watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
    let period = watchdog.period();
    tokio::spawn(watchdog.run(shutdown.clone()));
    period
}

/// Runs `checks` watchdog checks, starting half a period after the watchdog was started (so
/// no wake-up falls on a check instant), and returns the messages systemd got. Reads them
/// after each check: a datagram socket queues only a few.
async fn over_checks(systemd: &NotifySocket, period: Duration, checks: u32) -> Vec<String> {
    tokio::time::sleep(period / 2).await;
    let mut got = systemd.received();
    for _ in 0..checks {
        tokio::time::sleep(period).await;
        got.extend(systemd.received());
    }
    got
}

fn session_config(server: String) -> SessionConfig {
    SessionConfig {
        server,
        username: "gateway1".into(),
        password: zello_gateway::secret::Secret::new("pw"),
        channels: vec![common::CHANNEL.into()],
        ..SessionConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_logged_on_session_on_a_silent_connection_keeps_the_watchdog_fed() {
    // No pings from the server and none expected: nothing arrives for minutes.
    let sim = server(SimConfig {
        ping_interval: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let cfg = SessionConfig {
        ping_interval: Duration::from_secs(3600),
        ..config(&sim, "gateway1")
    };
    let liveness = Liveness::new();
    let stop = CancellationToken::new();
    let (_handle, mut events, task) =
        session::spawn_watched(cfg, stop.clone(), Some(liveness.register("zello session")))
            .unwrap();
    loop {
        if let SessionEvent::Channel { ready: true, .. } = events.recv().await.unwrap() {
            break;
        }
    }
    let systemd = NotifySocket::new();
    let period = start_watchdog(&systemd, &liveness, &stop);
    assert_eq!(period, Duration::from_secs(15));
    // Two minutes of silence: every check finds the session alive.
    assert_eq!(
        over_checks(&systemd, period, 8).await,
        ["WATCHDOG=1"; 8],
        "the idle session must beat at least once per check"
    );
    stop.cancel();
    task.await.unwrap();
    assert!(
        liveness.names().is_empty(),
        "a session that stopped normally is no longer watched: {:?}",
        liveness.names()
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_waiting_to_reconnect_keeps_the_watchdog_fed() {
    // A port nobody listens on, and five minutes between attempts.
    let port = common::free_port();
    let cfg = SessionConfig {
        backoff_min: Duration::from_secs(300),
        backoff_max: Duration::from_secs(300),
        ..session_config(format!("ws://127.0.0.1:{port}/ws"))
    };
    let watched = WatchedSession::start(cfg);
    assert_eq!(watched.over_checks(20).await, ["WATCHDOG=1"; 20]);
    watched.stop().await;
}

/// A session watched by a fresh [`Liveness`], the watchdog started on it.
struct WatchedSession {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    systemd: NotifySocket,
    period: Duration,
}

impl WatchedSession {
    fn start(cfg: SessionConfig) -> WatchedSession {
        let liveness = Liveness::new();
        let stop = CancellationToken::new();
        let heartbeat = liveness.register("zello session");
        let (_handle, _events, task) =
            session::spawn_watched(cfg, stop.clone(), Some(heartbeat)).unwrap();
        let systemd = NotifySocket::new();
        let period = start_watchdog(&systemd, &liveness, &stop);
        WatchedSession {
            stop,
            task,
            systemd,
            period,
        }
    }

    /// What systemd receives over `checks` watchdog periods.
    async fn over_checks(&self, checks: u32) -> Vec<String> {
        over_checks(&self.systemd, self.period, checks).await
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_stuck_in_a_slow_handshake_keeps_the_watchdog_fed() {
    // A server that accepts the connection and never answers the WebSocket handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            keep.lock().unwrap().push(tcp);
        }
    });
    let cfg = SessionConfig {
        connect_timeout: Duration::from_secs(600),
        ..session_config(url)
    };
    let watched = WatchedSession::start(cfg);
    // Two minutes inside one connection attempt.
    assert_eq!(watched.over_checks(8).await, ["WATCHDOG=1"; 8]);
    assert_eq!(held.lock().unwrap().len(), 1, "one attempt, still waiting");
    watched.stop().await;
}

/// An audio input that delivers silence until it is closed, then blocks inside `read_frame`
/// (as a wedged sound driver would) until it is opened again.
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<(Mutex<bool>, Condvar)>,
    blocked: Arc<AtomicBool>,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        let (lock, cv) = &*self.closed;
        *lock.lock().unwrap() = closed;
        cv.notify_all();
    }

    /// Waits in real time until the codec thread is blocked in the input.
    fn wait_blocked(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.blocked.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the codec thread never reached the input"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl AudioInput for Gate {
    fn sample_rate(&self) -> u32 {
        CODEC_RATE
    }

    fn read_frame(&mut self, frame: &mut [i16]) -> Result<bool, AudioError> {
        let (lock, cv) = &*self.closed;
        let mut closed = lock.lock().unwrap();
        while *closed {
            self.blocked.store(true, Ordering::SeqCst);
            closed = cv.wait(closed).unwrap();
        }
        self.blocked.store(false, Ordering::SeqCst);
        frame.fill(0);
        Ok(true)
    }
}

/// Waits in real time until `beat` has advanced past where it is now (the codec thread ran
/// at least one more tick).
fn wait_for_a_tick(beat: &Heartbeat) {
    let before = beat.ticks();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while beat.ticks() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the codec thread did not tick"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(start_paused = true)]
async fn a_codec_thread_stuck_in_a_tick_stops_the_pings_until_it_ticks_again() {
    let gate = Gate::default();
    let (_cmd_tx, cmd_rx) = mpsc::channel(16);
    let (ev_tx, _ev_rx) = mpsc::channel(1024);
    let engine = Engine::new(
        Box::new(gate.clone()),
        Box::new(NullOutput),
        Box::new(FlagCarrier::fixed(false)),
        &EncoderSettings::default(),
        cmd_rx,
        ev_tx,
    )
    .unwrap();
    let liveness = Liveness::new();
    let beat = liveness.register("codec radio1");
    let stop_codec = CancellationToken::new();
    let thread = engine::spawn(engine, "radio1", stop_codec.clone(), Some(beat.clone())).unwrap();

    let systemd = NotifySocket::new();
    let shutdown = CancellationToken::new();
    let watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
    let period = watchdog.period();
    tokio::spawn(watchdog.run(shutdown.clone()));
    // Half a period, so that each sleep below spans exactly one check.
    tokio::time::sleep(period / 2).await;

    // Ticking: every check follows at least one tick.
    for _ in 0..3 {
        wait_for_a_tick(&beat);
        tokio::time::sleep(period).await;
    }
    assert_eq!(systemd.received(), ["WATCHDOG=1"; 3]);

    // The input wedges: the thread stops inside its tick.
    gate.set_closed(true);
    gate.wait_blocked();
    // The next check may still see the ticks before the wedge; the ones after see none.
    tokio::time::sleep(period).await;
    let _ = systemd.received();
    let ticks = beat.ticks();
    tokio::time::sleep(period * 4).await;
    assert!(
        systemd.received().is_empty(),
        "no ping while the codec thread is stuck"
    );
    assert_eq!(beat.ticks(), ticks);
    let mut probe = Watchdog::new(systemd.notifier(), liveness.clone(), INTERVAL);
    assert_eq!(
        probe.check(),
        Health::Stuck(vec!["codec radio1".into()]),
        "the stuck part is named"
    );

    // It comes unstuck: the pings resume.
    gate.set_closed(false);
    wait_for_a_tick(&beat);
    tokio::time::sleep(period).await;
    assert_eq!(systemd.received(), ["WATCHDOG=1"]);

    // A codec thread that stops normally is no longer watched.
    stop_codec.cancel();
    thread.join().unwrap();
    assert!(liveness.names().is_empty(), "{:?}", liveness.names());
    shutdown.cancel();
}
