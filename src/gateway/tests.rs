//! The bridge under tokio's paused clock: a real session against the emulator over loopback,
//! with the test playing the codec engine (commands in, events out). Every timer rule is
//! checked in virtual time.

use super::bridge::Bridge;
use super::control::{Controls, Inhibited};
use super::machine::Timers;
use super::ptt_thread::PttThread;
use crate::gateway::engine::{EngineCommand, EngineEvent, PacketLevels};
use crate::gateway::link::{self, LinkReceiver, LinkSender};
use crate::radio::sim::SimPtt;
use crate::secret::Secret;
use crate::service::notify::tests::FakeSystemd;
use crate::service::{Liveness, Watchdog};
use crate::state::GatewayEvent;
use crate::zello::protocol::CodecHeader;
use crate::zello::session::{self, SessionConfig, SessionEvent, SessionHandle};
use crate::zello::sim::{SimConfig, SimEvent, SimHandle, SimServer};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tracing::Span;

/// A carrier change whose audio waited for nothing.
fn carrier(up: bool) -> EngineEvent {
    EngineEvent::Carrier {
        up,
        age: Duration::ZERO,
    }
}

const CH: &str = "Dispatch";
const MS: Duration = Duration::from_millis(1);
/// Half of full scale: -6.02 dBFS.
const HALF_SCALE: i16 = 16_384;

struct Rig {
    sim: SimHandle,
    ptt: SimPtt,
    /// What the bridge told the engine.
    cmds: LinkReceiver<EngineCommand>,
    /// What the engine tells the bridge.
    engine: LinkSender<EngineEvent>,
    app: SessionHandle,
    app_events: mpsc::Receiver<SessionEvent>,
    observer: broadcast::Receiver<GatewayEvent>,
    /// The state the bridge publishes into.
    state: crate::state::StateHub,
    /// The operator's controls over the radio.
    controls: Controls,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn cfg(sim: &SimHandle, user: &str) -> SessionConfig {
    SessionConfig {
        server: sim.url(),
        username: user.into(),
        password: Secret::new("pw"),
        channels: vec![CH.into()],
        ..SessionConfig::default()
    }
}

async fn ready(events: &mut mpsc::Receiver<SessionEvent>) {
    loop {
        if let SessionEvent::Channel { ready: true, .. } = events.recv().await.unwrap() {
            return;
        }
    }
}

/// The emulator on a free loopback port.
async fn sim() -> SimHandle {
    SimServer::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap()
}

/// The first of `next`'s items that `pick` takes, failing unless one comes within `within`.
async fn first<T, U>(
    within: Duration,
    what: &str,
    mut next: impl AsyncFnMut() -> T,
    pick: impl Fn(T) -> Option<U>,
) -> U {
    tokio::time::timeout(within, async {
        loop {
            if let Some(u) = pick(next().await) {
                return u;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} in time"))
}

async fn rig(timers: Timers) -> Rig {
    rig_watched(timers, None, None, 4096, Duration::ZERO).await
}

/// A line that takes `delay` to key (a rigctld near its time limit).
struct DelayedPtt {
    line: SimPtt,
    delay: Duration,
}

impl crate::radio::Ptt for DelayedPtt {
    fn set(&mut self, keyed: bool) -> Result<(), crate::radio::RadioError> {
        if keyed {
            std::thread::sleep(self.delay);
        }
        self.line.set(keyed)
    }

    fn describe(&self) -> String {
        "delayed".into()
    }
}

/// A future that is no longer polled once `frozen` is set: to the watchdog, a task stuck in
/// an await that never returns.
struct Freezable<F> {
    inner: std::pin::Pin<Box<F>>,
    frozen: Arc<AtomicBool>,
}

impl<F: std::future::Future> std::future::Future for Freezable<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if self.frozen.load(Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

/// [`rig`], with the bridge's heartbeat in `liveness`, its task frozen on `frozen`, room
/// for `audio` packets each way between the bridge and the engine, and a line that takes
/// `key_delay` to key.
async fn rig_watched(
    timers: Timers,
    liveness: Option<Liveness>,
    frozen: Option<Arc<AtomicBool>>,
    audio: usize,
    key_delay: Duration,
) -> Rig {
    let controls = Controls::new(["vhf1"]);
    rig_controlled(timers, liveness, frozen, audio, key_delay, controls).await
}

/// [`rig_watched`], the radio steered by `controls`.
async fn rig_controlled(
    timers: Timers,
    liveness: Option<Liveness>,
    frozen: Option<Arc<AtomicBool>>,
    audio: usize,
    key_delay: Duration,
    controls: Controls,
) -> Rig {
    let sim = sim().await;
    let stop = CancellationToken::new();
    let (gw, mut gw_events, _) = session::spawn(cfg(&sim, "gateway1"), stop.clone()).unwrap();
    let (app, mut app_events, _) = session::spawn(cfg(&sim, "alice"), stop.clone()).unwrap();
    ready(&mut app_events).await;
    // Forward the gateway's session events to the bridge, noting readiness.
    let (route_tx, route_rx) = mpsc::channel(4096);
    loop {
        let ev = gw_events.recv().await.unwrap();
        let is_ready = matches!(ev, SessionEvent::Channel { ready: true, .. });
        route_tx.send(ev).await.unwrap();
        if is_ready {
            break;
        }
    }
    tokio::spawn(async move {
        while let Some(ev) = gw_events.recv().await {
            if route_tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    let ptt = SimPtt::new();
    let (cmd_tx, cmds) = link::channel(audio);
    let (engine, engine_rx) = link::channel(audio);
    let (obs_tx, observer) = crate::state::StateHub::channel(1024);
    let bridge = Bridge {
        name: "vhf1".into(),
        channel: CH.into(),
        recipient: None,
        header: CodecHeader::default(),
        timers,
        courtesy_tone: Some(vec![0; 1600]),
        identification: None,
        session: gw,
        ptt: {
            let line: Box<dyn crate::radio::Ptt> = if key_delay.is_zero() {
                Box::new(ptt.clone())
            } else {
                Box::new(DelayedPtt {
                    line: ptt.clone(),
                    delay: key_delay,
                })
            };
            let (thread, first) = PttThread::spawn(line, "vhf1", Span::none()).unwrap();
            first.await.unwrap().unwrap();
            thread
        },
        engine_tx: cmd_tx,
        engine_rx,
        events: route_rx,
        observer: obs_tx.clone(),
        controls: controls.subscribe("vhf1").expect("vhf1 is steered"),
        heartbeat: liveness.map(|l| l.register("bridge vhf1")),
    };
    let task = tokio::spawn(Freezable {
        inner: Box::pin(bridge.run(stop.clone())),
        frozen: frozen.unwrap_or_default(),
    });
    Rig {
        sim,
        ptt,
        cmds,
        engine,
        app,
        app_events,
        observer,
        state: obs_tx,
        controls,
        stop,
        task,
    }
}

impl Rig {
    /// The app user talks: `packets` packets of 60 ms, in real (virtual) time.
    fn talk(&self, packets: u32) -> tokio::task::JoinHandle<()> {
        let app = self.app.clone();
        tokio::spawn(async move {
            let msg = app
                .start_message(CH, CodecHeader::default(), None)
                .await
                .unwrap();
            for i in 0..packets {
                msg.send(Bytes::from(vec![0xf8, i as u8]));
                sleep(60 * MS).await;
            }
            msg.finish().await;
        })
    }

    /// The radio receives for `ms`: carrier up, one packet per 60 ms, carrier down.
    async fn receive(&self, ms: u64) {
        self.engine.send(carrier(true)).await.unwrap();
        let level = PacketLevels {
            peak: 10000,
            sum_squares: 10.0,
            samples: 960,
            clips: 0,
        };
        for _ in 0..ms / 60 {
            self.engine
                .send(EngineEvent::RxPacket {
                    data: Bytes::from_static(&[0xf8, 1, 2]),
                    levels: level,
                })
                .await
                .unwrap();
            sleep(60 * MS).await;
        }
        self.engine.send(carrier(false)).await.unwrap();
    }

    /// Plays the engine during a hang: silence packets every 60 ms while encoding is on.
    async fn hang_packets(&mut self, until: Duration) {
        let end = Instant::now() + until;
        while Instant::now() < end {
            self.engine
                .send(EngineEvent::RxPacket {
                    data: Bytes::from_static(&[0xf8, 0]),
                    levels: PacketLevels::default(),
                })
                .await
                .unwrap();
            sleep(60 * MS).await;
        }
    }

    /// Waits for a command matching `pred`, returning it and when it came.
    async fn cmd(
        &mut self,
        within: Duration,
        pred: impl Fn(&EngineCommand) -> bool,
    ) -> (EngineCommand, Instant) {
        let next = async || self.cmds.recv().await.unwrap();
        let c = first(within, "command", next, |c| pred(&c).then_some(c)).await;
        (c, Instant::now())
    }

    /// Waits for a state event matching `pred`, returning when it came.
    async fn observed(
        &mut self,
        within: Duration,
        pred: impl Fn(&GatewayEvent) -> bool,
    ) -> Instant {
        let next = async || self.observer.recv().await.ok();
        first(within, "event", next, |e| e.filter(&pred)).await;
        Instant::now()
    }

    /// Waits for an event of the app user's session that `pick` takes, returning what it
    /// takes from it.
    async fn app_event<U>(
        &mut self,
        within: Duration,
        pick: impl Fn(SessionEvent) -> Option<U>,
    ) -> U {
        let next = async || self.app_events.recv().await.unwrap();
        first(within, "app event", next, pick).await
    }

    /// The app user talks `packets` packets, and the message starts playing, keyed.
    async fn talk_until_playing(&mut self, packets: u32) {
        self.talk(packets);
        self.cmd(5 * MS * 1000, |c| {
            matches!(c, EngineCommand::PlayBegin { .. })
        })
        .await;
        assert!(self.ptt.is_keyed());
    }

    /// A carrier comes up, and 300 ms later the app user talks `packets` packets.
    async fn talk_over_a_carrier(&self, packets: u32) {
        self.engine.send(carrier(true)).await.unwrap();
        sleep(Duration::from_millis(300)).await;
        self.talk(packets);
    }

    /// Plays the engine for a message being played: reports it drained once it has ended,
    /// at a level of -6 dBFS peak and RMS ([`HALF_SCALE`]).
    async fn drain_playback(&mut self) -> u64 {
        let mut packets = 0;
        loop {
            match self.cmds.recv().await.unwrap() {
                EngineCommand::PlayPacket { .. } => packets += 1,
                EngineCommand::PlayEnd { stream_id } => {
                    self.engine
                        .send(EngineEvent::PlaybackDrained {
                            stream_id,
                            packets,
                            concealed: 0,
                            dropped: 0,
                            levels: PacketLevels::measure(&[HALF_SCALE; 960]),
                        })
                        .await
                        .unwrap();
                    return packets;
                }
                _ => {}
            }
        }
    }

    /// Two seconds on, stops the rig, asserting the gateway has sent the channel no message
    /// (`why` it should not have).
    async fn stop_sent_nothing(self, why: &str) {
        sleep(Duration::from_secs(2)).await;
        assert!(gateway_streams(&self.sim).starts.is_empty(), "{why}");
        self.stop().await;
    }

    async fn stop(self) -> SimPtt {
        self.stop.cancel();
        let _ = self.task.await;
        self.sim.shutdown();
        self.ptt
    }
}

/// When the emulator saw `gateway1`'s messages start and stop, oldest first.
struct GatewayStreams {
    starts: Vec<Instant>,
    stops: Vec<Instant>,
}

fn gateway_streams(sim: &SimHandle) -> GatewayStreams {
    let mut streams = GatewayStreams {
        starts: Vec::new(),
        stops: Vec::new(),
    };
    for e in sim.log() {
        match &e.event {
            SimEvent::StreamStart { user, .. } if user == "gateway1" => streams.starts.push(e.at),
            SimEvent::StreamStop { user, .. } if user == "gateway1" => streams.stops.push(e.at),
            _ => {}
        }
    }
    streams
}

#[tokio::test(start_paused = true)]
async fn a_message_from_the_channel_keys_waits_plays_tails_and_unkeys() {
    let mut r = rig(Timers {
        courtesy_tone: true,
        ..Timers::default()
    })
    .await;
    r.talk(10);
    let keyed = r
        .observed(5 * MS * 1000, |e| matches!(e, GatewayEvent::PttOn { .. }))
        .await;
    assert!(r.ptt.is_keyed());
    let (_, begin) = r
        .cmd(MS * 1000, |c| matches!(c, EngineCommand::PlayBegin { .. }))
        .await;
    assert_eq!(begin - keyed, 200 * MS, "tx_delay_ms");
    assert_eq!(r.drain_playback().await, 10);
    // The courtesy tone is configured in this rig: it plays, then the tail.
    r.cmd(MS * 1000, |c| matches!(c, EngineCommand::PlayPcm(_)))
        .await;
    let tone_done = Instant::now();
    r.engine.send(EngineEvent::PcmDrained).await.unwrap();
    let off = r
        .observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    assert!(!r.ptt.is_keyed());
    assert_eq!(off - tone_done, 100 * MS, "tx_tail_ms");
    // The state tells the same: one key-up, one message played in full, unkeyed.
    let state = r.state.snapshot();
    let radio = state.radio("vhf1").expect("vhf1 in the state");
    assert!(!radio.ptt && radio.transmitting.is_none());
    assert_eq!(radio.counters.key_ups, 1);
    assert_eq!(radio.counters.packets_played, 10);
    let played = radio.last_played.as_ref().expect("a message played");
    assert_eq!(played.peer.as_deref(), Some("alice"));
    assert_eq!(
        played.outcome,
        Some(crate::state::MessageOutcome::Completed)
    );
    // The engine's levels of the message reach the state (and so MESSAGE_STOP).
    let half = 20.0 * (f32::from(HALF_SCALE) / 32768.0).log10();
    for level in [played.peak_dbfs, played.rms_dbfs] {
        assert!(level.is_some_and(|l| (l - half).abs() < 0.01), "{played:?}");
    }
    assert_eq!(r.stop().await.key_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_time_out_timer_cuts_a_long_message() {
    let timers = Timers {
        tot: Duration::from_secs(5),
        ..Timers::default()
    };
    let mut r = rig(timers).await;
    r.talk(200); // 12 s
    let keyed = r
        .observed(5 * MS * 1000, |e| matches!(e, GatewayEvent::PttOn { .. }))
        .await;
    let (_, abort) = r
        .cmd(20 * MS * 1000, |c| {
            matches!(c, EngineCommand::PlayAbort { .. })
        })
        .await;
    assert_eq!(abort - keyed, Duration::from_secs(5));
    let off = r
        .observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    assert_eq!(off, abort);
    assert!(!r.ptt.is_keyed());
    let state = r.state.snapshot();
    let counters = &state.radio("vhf1").expect("vhf1").counters;
    assert_eq!((counters.time_outs, counters.key_ups), (1, 1));
    // The rest of that message is not played and does not key again.
    sleep(Duration::from_secs(10)).await;
    while let Ok(c) = r.cmds.try_recv() {
        assert!(
            !matches!(
                c,
                EngineCommand::PlayPacket { .. } | EngineCommand::PlayBegin { .. }
            ),
            "{c:?}"
        );
    }
    assert_eq!(r.stop().await.key_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn radio_audio_waits_rx_min_then_goes_out_with_its_head_and_hang() {
    let mut r = rig(Timers::default()).await;
    let start = Instant::now();
    r.receive(1200).await; // 20 packets
    // The hang: the engine keeps encoding silence until told to stop.
    r.hang_packets(Duration::from_millis(400)).await;
    let from = r
        .app_event(5 * MS * 1000, |e| match e {
            SessionEvent::IncomingStart { from, .. } => Some(from),
            _ => None,
        })
        .await;
    assert_eq!(from, "gateway1");
    let packets = r
        .app_event(5 * MS * 1000, |e| match e {
            SessionEvent::IncomingEnd { packets, .. } => Some(packets),
            _ => None,
        })
        .await;
    // Every packet since the carrier rose (the 250 ms head included) plus the hang.
    assert!((20 + 6..=20 + 7).contains(&packets), "{packets}");
    r.cmd(MS * 1000, |c| {
        matches!(c, EngineCommand::KeepEncoding(false))
    })
    .await;
    let stopped = *gateway_streams(&r.sim)
        .stops
        .first()
        .expect("stream stopped");
    assert_eq!(
        stopped - start,
        1200 * MS + 400 * MS,
        "rx_hang_ms after the carrier"
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_kerchunk_sends_nothing_and_stops_the_encoder() {
    let mut r = rig(Timers::default()).await;
    r.receive(180).await;
    r.cmd(MS * 1000, |c| {
        matches!(c, EngineCommand::KeepEncoding(false))
    })
    .await;
    r.stop_sent_nothing("no message for a kerchunk").await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_frequency_queues_the_message_until_the_carrier_and_hang_end() {
    let mut r = rig(Timers::default()).await;
    r.talk_over_a_carrier(5).await;
    sleep(Duration::from_secs(2)).await;
    assert!(!r.ptt.is_keyed(), "never keys over an incoming carrier");
    let dropped = Instant::now();
    r.engine.send(carrier(false)).await.unwrap();
    let keyed = r
        .observed(5 * MS * 1000, |e| matches!(e, GatewayEvent::PttOn { .. }))
        .await;
    assert_eq!(keyed - dropped, 400 * MS, "after the hang");
    assert_eq!(r.drain_playback().await, 5);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn anti_ping_pong_ignores_the_squelch_tail() {
    let mut r = rig(Timers::default()).await;
    r.talk(3);
    r.observed(5 * MS * 1000, |e| matches!(e, GatewayEvent::PttOn { .. }))
        .await;
    r.drain_playback().await;
    r.observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    // The squelch tail: 200 ms of carrier right after unkeying.
    r.receive(200).await;
    r.stop_sent_nothing("the squelch tail is not sent").await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_audio_device_releases_ptt_at_once() {
    let mut r = rig(Timers::default()).await;
    r.talk_until_playing(50).await;
    r.engine
        .send(EngineEvent::DeviceError("USB sound card gone".into()))
        .await
        .unwrap();
    let (_, abort) = r
        .cmd(MS * 1000, |c| matches!(c, EngineCommand::PlayAbort { .. }))
        .await;
    // Released with the abort, on a blocking thread: no time passes in between.
    let off = r
        .observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    assert_eq!(off, abort);
    assert!(!r.ptt.is_keyed());
    // No keying while the device is down.
    r.talk(3);
    sleep(Duration::from_secs(5)).await;
    assert!(!r.ptt.is_keyed());
    assert_eq!(r.ptt.key_count(), 1);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_message_releases_ptt() {
    let mut r = rig(Timers::default()).await;
    r.talk_until_playing(100).await;
    let ptt = r.stop().await;
    assert!(!ptt.is_keyed());
}

#[tokio::test(start_paused = true)]
async fn a_stuck_carrier_ends_the_message_after_rx_max() {
    let mut r = rig(Timers {
        rx_max: Duration::from_secs(5),
        ..Timers::default()
    })
    .await;
    let start = Instant::now();
    r.receive(10_000).await;
    let stopped = *gateway_streams(&r.sim)
        .stops
        .first()
        .expect("the message was ended");
    // rx_min (250 ms) plus rx_max (5 s).
    assert_eq!(stopped - start, Duration::from_millis(5250));
    assert_eq!(
        gateway_streams(&r.sim).starts.len(),
        1,
        "ignored until it drops"
    );
    r.app_event(MS * 1000, |e| {
        matches!(e, SessionEvent::IncomingEnd { .. }).then_some(())
    })
    .await;
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_chattering_squelch_is_limited_per_window() {
    let r = rig(Timers {
        flap_max_starts: 2,
        flap_window: Duration::from_secs(20),
        rx_hang: Duration::ZERO,
        ..Timers::default()
    })
    .await;
    for _ in 0..4 {
        r.receive(420).await;
        sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(
        gateway_streams(&r.sim).starts.len(),
        2,
        "the rest suppressed"
    );
    // After the window, messages go out again.
    sleep(Duration::from_secs(20)).await;
    r.receive(420).await;
    sleep(Duration::from_millis(100)).await;
    assert_eq!(gateway_streams(&r.sim).starts.len(), 3);
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_queued_message_too_old_is_dropped_not_played() {
    let mut r = rig(Timers::default()).await;
    r.talk_over_a_carrier(5).await;
    sleep(Duration::from_secs(31)).await;
    r.engine.send(carrier(false)).await.unwrap();
    sleep(Duration::from_secs(5)).await;
    assert_eq!(r.ptt.key_count(), 0, "queue_max_age_s passed: not played");
    while let Ok(c) = r.cmds.try_recv() {
        assert!(!matches!(c, EngineCommand::PlayBegin { .. }), "{c:?}");
    }
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_ptt_interface_is_noticed_while_idle_and_when_keying() {
    let mut r = rig(Timers::default()).await;
    // Unplugged while idle: the periodic check notices within PTT_CHECK_EVERY.
    let unplugged = Instant::now();
    r.ptt.set_failing(true);
    let noticed = r
        .observed(super::bridge::PTT_CHECK_EVERY + MS * 100, |e| {
            matches!(e, GatewayEvent::PttFault { error: Some(_), .. })
        })
        .await;
    assert!(noticed - unplugged <= super::bridge::PTT_CHECK_EVERY);
    // One event per change, not one per check.
    sleep(super::bridge::PTT_CHECK_EVERY * 4).await;
    while let Ok(e) = r.observer.try_recv() {
        assert!(!matches!(e, GatewayEvent::PttFault { .. }), "{e:?}");
    }
    // A message from the channel cannot key it: not played, nothing keyed.
    r.talk(3);
    sleep(Duration::from_secs(3)).await;
    assert_eq!(r.ptt.key_count(), 0);
    // Plugged back: the next check says so, and the next message keys.
    r.ptt.set_failing(false);
    r.observed(super::bridge::PTT_CHECK_EVERY + MS * 100, |e| {
        matches!(e, GatewayEvent::PttFault { error: None, .. })
    })
    .await;
    r.talk_until_playing(3).await;
    // While keyed the check leaves the line alone (the playback is never reported drained
    // here, so the message keeps it keyed through several check periods).
    sleep(super::bridge::PTT_CHECK_EVERY * 2).await;
    assert!(r.ptt.is_keyed());
    r.stop().await;
}

/// A radio whose hardware is missing at start is tried again with backoff (1 s doubling,
/// capped at 30 s: no busy loop), reported once, and started when it opens, while the
/// Zello session runs meanwhile.
#[tokio::test(start_paused = true)]
async fn a_radio_waiting_for_its_hardware_is_tried_with_capped_backoff_then_started() {
    use super::HARDWARE_RETRY_MAX;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let sim = sim().await;
    let tries = Arc::new(AtomicUsize::new(0));
    let ptt = SimPtt::new();
    let errors = |n: usize| match n {
        0 => "no such device".to_string(),
        n => format!("try {n}: no such device"),
    };
    let radio = late_radio(tries.clone(), 8, errors, crate::audio::CODEC_RATE, &ptt);
    let (task, stop, mut watch) = run_waiting(&sim, radio);
    // Waiting is announced before the gateway says it has started.
    let mut seen = Vec::new();
    while !seen.contains(&GatewayEvent::Started) {
        seen.push(watch.recv().await.unwrap());
    }
    assert_eq!(
        seen[0],
        GatewayEvent::HardwareWaiting {
            radio: "vhf1".into(),
            error: Some("no such device".into()),
        }
    );
    // Tries at 1, 3, 7, 15 and 31 s, then every 30 s.
    sleep(Duration::from_secs(60)).await;
    assert_eq!(tries.load(Ordering::SeqCst), 5);
    sleep(HARDWARE_RETRY_MAX).await;
    assert_eq!(tries.load(Ordering::SeqCst), 6);
    // The eighth try, at 121 s, opens it.
    let back = tokio::time::timeout(Duration::from_secs(70), async {
        loop {
            if let GatewayEvent::HardwareWaiting { radio, error } = watch.recv().await.unwrap() {
                return (radio, error);
            }
        }
    })
    .await
    .expect("the radio starts once its hardware opens");
    assert_eq!(back, ("vhf1".to_string(), None));
    assert_eq!(tries.load(Ordering::SeqCst), 8);
    assert!(!ptt.is_keyed());
    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(!ptt.is_keyed());
}

/// A radio that opens on the `opens_at`-th try, counted in `tries`; before that each try
/// fails with `errors(n)`. The parts it opens have an input at `input_rate` and `ptt`.
fn late_radio(
    tries: Arc<std::sync::atomic::AtomicUsize>,
    opens_at: usize,
    errors: fn(usize) -> String,
    input_rate: u32,
    ptt: &SimPtt,
) -> super::WaitingRadio {
    let ptt = ptt.clone();
    use super::RadioParts;
    use crate::audio::NullOutput;
    use crate::audio::file::FileInput;
    use crate::radio::sim::FlagCarrier;
    use std::sync::atomic::Ordering;
    super::WaitingRadio {
        name: "vhf1".into(),
        channel: CH.into(),
        error: errors(0),
        open: Box::new(move || {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n < opens_at {
                return Err(errors(n).into());
            }
            Ok(RadioParts::new(
                "vhf1",
                CH,
                Box::new(FileInput::from_samples(Vec::new(), input_rate)),
                Box::new(NullOutput),
                Box::new(FlagCarrier::fixed(false)),
                Box::new(ptt.clone()),
            ))
        }),
    }
}

/// The gateway as `gateway1` on `sim` with no radio but `waiting`: its task, the token that
/// stops it, and what it reports.
fn run_waiting(
    sim: &SimHandle,
    waiting: super::WaitingRadio,
) -> (
    tokio::task::JoinHandle<Result<(), super::GatewayError>>,
    CancellationToken,
    broadcast::Receiver<GatewayEvent>,
) {
    run_waiting_with(sim, waiting, None)
}

/// [`run_waiting`], steered by `controls`.
fn run_waiting_with(
    sim: &SimHandle,
    waiting: super::WaitingRadio,
    controls: Option<Controls>,
) -> (
    tokio::task::JoinHandle<Result<(), super::GatewayError>>,
    CancellationToken,
    broadcast::Receiver<GatewayEvent>,
) {
    let (observer, watch) = crate::state::StateHub::channel(1024);
    let stop = CancellationToken::new();
    let task = tokio::spawn(super::run_with(
        cfg(sim, "gateway1"),
        Vec::new(),
        stop.clone(),
        observer,
        super::RunOptions {
            waiting: vec![waiting],
            controls,
            ..Default::default()
        },
    ));
    (task, stop, watch)
}

#[tokio::test(start_paused = true)]
async fn a_radio_waiting_for_its_hardware_shows_each_inhibit_change_once() {
    use std::sync::atomic::AtomicUsize;
    let sim = sim().await;
    let ptt = SimPtt::new();
    let errors = |_| "no such device".to_string();
    let radio = late_radio(
        Arc::new(AtomicUsize::new(0)),
        3,
        errors,
        crate::audio::CODEC_RATE,
        &ptt,
    );
    let controls = Controls::new(["vhf1"]);
    let (task, stop, mut watch) = run_waiting_with(&sim, radio, Some(controls.clone()));
    let mut next = async || watch.recv().await.unwrap();
    first(MS * 1000, "started", &mut next, |e| {
        (e == GatewayEvent::Started).then_some(())
    })
    .await;
    controls
        .tx_inhibit("vhf1", true, Some("antenna work".into()))
        .unwrap();
    let reason = first(
        MS * 100,
        "the inhibit shown while waiting",
        &mut next,
        |e| match e {
            GatewayEvent::TxInhibited { reason, .. } => Some(reason),
            _ => None,
        },
    )
    .await;
    assert_eq!(reason.as_deref(), Some("antenna work"));
    // The third try (at 7 s) opens it: its bridge applies the inhibit without a second event.
    let events = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        loop {
            let e = next().await;
            let done = matches!(e, GatewayEvent::HardwareWaiting { error: None, .. });
            seen.push(e);
            if done {
                return seen;
            }
        }
    })
    .await
    .expect("the radio starts");
    assert!(
        !events.iter().any(|e| matches!(
            e,
            GatewayEvent::TxInhibited { .. } | GatewayEvent::TxAllowed { .. }
        )),
        "{events:?}"
    );
    sleep(Duration::from_secs(1)).await;
    while let Ok(e) = watch.try_recv() {
        assert!(!matches!(e, GatewayEvent::TxInhibited { .. }), "{e:?}");
    }
    controls.tx_inhibit("vhf1", false, None).unwrap();
    let mut next = async || watch.recv().await.unwrap();
    first(MS * 1000, "allowed", &mut next, |e| {
        matches!(e, GatewayEvent::TxAllowed { .. }).then_some(())
    })
    .await;
    assert_eq!(ptt.key_count(), 0);
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// While a radio waits, a new error (the device appeared but fails otherwise) is logged at
/// warn once, the same error again only at debug, and each line gives the wait that follows.
#[tokio::test(start_paused = true)]
#[serial_test::serial(log_capture)] // one log capture at a time, whatever its callsites
async fn a_waiting_radio_warns_once_per_new_error_and_logs_the_wait_that_follows() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (logs, _guard) = crate::testing::capture_logs(tracing::Level::DEBUG);
    let sim = sim().await;
    let tries = Arc::new(AtomicUsize::new(0));
    // Missing for three tries, then there but refusing for two, then open (the sixth try).
    let errors = |n: usize| match n {
        0..=3 => "no such device".to_string(),
        _ => "permission denied".to_string(),
    };
    let radio = late_radio(
        tries.clone(),
        6,
        errors,
        crate::audio::CODEC_RATE,
        &SimPtt::new(),
    );
    let (task, stop, _watch) = run_waiting(&sim, radio);
    // Tries at 1, 3, 7, 15, 31 and 61 s.
    sleep(Duration::from_secs(70)).await;
    assert_eq!(tries.load(Ordering::SeqCst), 6);
    stop.cancel();
    task.await.unwrap().unwrap();
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("radio=vhf1")).collect();
    let warned = |what: &str| {
        lines
            .iter()
            .filter(|l| l.contains(" WARN ") && l.contains(what))
            .count()
    };
    assert_eq!(warned("no such device"), 1, "{text}");
    assert_eq!(warned("permission denied"), 1, "{text}");
    let waits: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.split("retry_in_s=").nth(1))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(waits, [2, 4, 8, 16, 30], "{text}");
}

/// Settings that no device can fix (here the engine's: an input at another rate than the
/// codec's) stop the gateway with an error once the radio's devices open, rather than being
/// tried again forever.
#[tokio::test(start_paused = true)]
async fn a_waiting_radio_with_a_settings_error_stops_the_gateway() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sim = sim().await;
    let tries = Arc::new(AtomicUsize::new(0));
    let errors = |_: usize| "no such device".to_string();
    let (task, stop, _watch) = run_waiting(
        &sim,
        late_radio(tries.clone(), 2, errors, 8000, &SimPtt::new()),
    );
    let e = tokio::time::timeout(Duration::from_secs(300), task)
        .await
        .expect("the gateway stops")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, super::GatewayError::Settings { radio, .. } if radio == "vhf1"),
        "{e:?}"
    );
    assert!(e.to_string().contains("8000 Hz"), "{e}");
    assert_eq!(tries.load(Ordering::SeqCst), 2, "not tried again");
    assert!(!stop.is_cancelled(), "the caller's token is the caller's");
}

/// A carrier the codec thread reports late (its audio waited behind other audio) is timed by
/// its audio: rx_min counts from when the sound reached the card.
#[tokio::test(start_paused = true)]
async fn rx_min_counts_from_when_the_carrier_reached_the_card() {
    for age in [Duration::ZERO, 200 * MS] {
        let mut r = rig(Timers::default()).await;
        let up = Instant::now();
        r.engine
            .send(EngineEvent::Carrier { up: true, age })
            .await
            .unwrap();
        let engine = r.engine.clone();
        let packets = tokio::spawn(async move {
            for _ in 0..20 {
                let _ = engine
                    .send(EngineEvent::RxPacket {
                        data: Bytes::from_static(&[0xf8, 1, 2]),
                        levels: PacketLevels::default(),
                    })
                    .await;
                sleep(60 * MS).await;
            }
        });
        r.app_event(5 * MS * 1000, |e| {
            matches!(e, SessionEvent::IncomingStart { .. }).then_some(())
        })
        .await;
        let started = Instant::now() - up;
        let due = Timers::default().rx_min - age;
        assert!(
            started >= due && started < due + 50 * MS,
            "age {age:?}: the message started {started:?} after the carrier event, due {due:?}"
        );
        packets.abort();
        r.engine.send(carrier(false)).await.unwrap();
        r.stop().await;
    }
}

/// The bridge beats while it waits for nothing (idle for minutes), so the watchdog keeps
/// feeding systemd; a bridge stuck in an await that never returns stops the pings.
#[tokio::test(start_paused = true)]
async fn a_stuck_bridge_stops_the_watchdog_and_an_idle_one_does_not() {
    let liveness = Liveness::new();
    let frozen = Arc::new(AtomicBool::new(false));
    let r = rig_watched(
        Timers::default(),
        Some(liveness.clone()),
        Some(frozen.clone()),
        4096,
        Duration::ZERO,
    )
    .await;
    assert_eq!(liveness.names(), ["bridge vhf1"]);
    let systemd = FakeSystemd::new();
    let watchdog = Watchdog::new(systemd.notifier(), liveness.clone(), 30 * MS * 1000);
    let period = watchdog.period();
    let stop = CancellationToken::new();
    tokio::spawn(watchdog.run(stop.clone()));
    // Two minutes with nothing to do: a ping after every check.
    sleep(period / 2).await;
    for _ in 0..8 {
        sleep(period).await;
    }
    assert_eq!(systemd.received(), ["WATCHDOG=1"; 8]);
    // It turns on a carrier, then gets stuck.
    r.engine.send(carrier(true)).await.unwrap();
    sleep(period).await;
    assert_eq!(systemd.received(), ["WATCHDOG=1"]);
    frozen.store(true, Ordering::SeqCst);
    // The check after the freeze may still see the last beats; none after that.
    sleep(period).await;
    let _ = systemd.received();
    for _ in 0..4 {
        sleep(period).await;
    }
    assert!(
        systemd.received().is_empty(),
        "pings while the bridge is stuck"
    );
    stop.cancel();
    r.stop.cancel();
}

/// With the audio queues full both ways (the engine behind on the packets to play, the
/// bridge not yet at the packets encoded for it), control still gets through: the time-out
/// timer's abort and the end of the transmission reach the engine, a device failure reaches
/// the bridge.
#[tokio::test(start_paused = true)]
async fn control_gets_through_full_audio_queues_both_ways() {
    let timers = Timers {
        tot: Duration::from_secs(5),
        ..Timers::default()
    };
    let mut r = rig_watched(timers, None, None, 8, Duration::ZERO).await;
    r.talk(200); // 12 s
    r.observed(5 * MS * 1000, |e| matches!(e, GatewayEvent::PttOn { .. }))
        .await;
    // The engine takes nothing until the time-out timer has ended the transmission.
    r.observed(6 * MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    let cmds: Vec<EngineCommand> = std::iter::from_fn(|| r.cmds.try_recv().ok()).collect();
    let packets = cmds
        .iter()
        .filter(|c| matches!(c, EngineCommand::PlayPacket { .. }))
        .count();
    assert_eq!(packets, 8, "the queue's bound");
    assert!(r.cmds.dropped() > 50, "{} dropped", r.cmds.dropped());
    let position = |pred: &dyn Fn(&EngineCommand) -> bool| cmds.iter().position(pred);
    let on = position(&|c| matches!(c, EngineCommand::Transmitting(true))).expect("keyed");
    let abort = position(&|c| matches!(c, EngineCommand::PlayAbort { .. })).expect("aborted");
    let off = position(&|c| matches!(c, EngineCommand::Transmitting(false))).expect("unkeyed");
    assert!(on < abort && abort < off, "{cmds:?}");

    // The bridge's queue fills with encoded packets, then the sound card fails.
    for _ in 0..100 {
        let _ = r.engine.try_send(EngineEvent::RxPacket {
            data: Bytes::from_static(&[0xf8, 1, 2]),
            levels: PacketLevels::default(),
        });
    }
    assert_eq!(r.engine.dropped(), 92);
    r.engine
        .try_send(EngineEvent::DeviceError("USB sound card gone".into()))
        .unwrap();
    r.observed(MS * 1000, |e| matches!(e, GatewayEvent::DeviceLost { .. }))
        .await;
    r.stop().await;
}

/// A keying slower than tx_delay (in real time: the line's delay is real): the message
/// starts playing once the transmitter is keyed, and its packets reach the engine after
/// its start, none lost to the wait.
#[tokio::test(flavor = "current_thread")]
async fn playback_waits_for_a_slow_keying_and_keeps_its_packets() {
    let mut r = rig_watched(
        Timers::default(),
        None,
        None,
        4096,
        Duration::from_millis(400),
    )
    .await;
    r.talk(10);
    let mut cmds = Vec::new();
    let mut begin = None;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let c = r.cmds.recv().await.unwrap();
            let end = matches!(c, EngineCommand::PlayEnd { .. });
            if let EngineCommand::PlayBegin { stream_id, .. } = c {
                assert!(r.ptt.is_keyed(), "playing before the transmitter is keyed");
                begin = Some((cmds.len(), stream_id));
            }
            cmds.push(c);
            if end {
                return;
            }
        }
    })
    .await
    .expect("the message plays");
    let (begin, stream_id) = begin.expect("played");
    let packets: Vec<usize> = cmds
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, EngineCommand::PlayPacket { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(packets.len(), 10, "{cmds:?}");
    assert!(packets[0] > begin, "{cmds:?}");
    r.engine
        .send(EngineEvent::PlaybackDrained {
            stream_id,
            packets: 10,
            concealed: 0,
            dropped: 0,
            levels: PacketLevels::default(),
        })
        .await
        .unwrap();
    r.stop().await;
}

/// Waits for the `Played` of a message from the channel, returning its outcome.
async fn played_outcome(r: &mut Rig, within: Duration) -> crate::state::MessageOutcome {
    let next = async || r.observer.recv().await.ok();
    first(within, "Played", next, |e| match e {
        Some(GatewayEvent::Played { outcome, .. }) => Some(outcome),
        _ => None,
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn an_inhibit_cuts_the_message_on_the_air_and_nothing_keys_until_allowed() {
    use crate::state::MessageOutcome;
    let mut r = rig(Timers::default()).await;
    // A message from the channel keys the radio.
    r.talk_until_playing(100).await;
    assert_eq!(r.ptt.key_count(), 1);
    r.controls
        .tx_inhibit("vhf1", true, Some("interference".into()))
        .unwrap();
    r.observed(MS * 1000, |e| {
        matches!(e, GatewayEvent::TxInhibited { reason: Some(why), .. } if why == "interference")
    })
    .await;
    r.cmd(MS * 1000, |c| matches!(c, EngineCommand::PlayAbort { .. }))
        .await;
    assert_eq!(
        played_outcome(&mut r, MS * 1000).await,
        MessageOutcome::Inhibited
    );
    r.observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    assert!(!r.ptt.is_keyed());
    // The rest of the message is not played; a new one never keys.
    sleep(Duration::from_secs(7)).await;
    r.talk(5);
    assert_eq!(
        played_outcome(&mut r, 5 * MS * 1000).await,
        MessageOutcome::Inhibited
    );
    sleep(Duration::from_secs(3)).await;
    while let Ok(c) = r.cmds.try_recv() {
        assert!(
            !matches!(
                c,
                EngineCommand::PlayBegin { .. } | EngineCommand::PlayPacket { .. }
            ),
            "{c:?}"
        );
    }
    assert_eq!(r.ptt.key_count(), 1, "never keyed while inhibited");
    let state = r.state.snapshot();
    let radio = state.radio("vhf1").unwrap();
    assert_eq!(
        radio
            .tx_inhibited
            .as_ref()
            .and_then(|i| i.reason.as_deref()),
        Some("interference")
    );
    assert_eq!(radio.counters.messages_inhibited, 2);
    // The first one was cut on the air, the second never played.
    assert_eq!(radio.counters.messages_not_played, 1);
    assert_eq!(radio.counters.messages_played, 1);
    let outcomes: Vec<_> = radio.history().iter().map(|m| m.outcome).collect();
    assert_eq!(outcomes, [Some(MessageOutcome::Inhibited); 2]);
    // Allowed again: the next message keys and plays.
    r.controls.tx_inhibit("vhf1", false, None).unwrap();
    r.observed(MS * 1000, |e| matches!(e, GatewayEvent::TxAllowed { .. }))
        .await;
    r.talk_until_playing(5).await;
    assert_eq!(r.ptt.key_count(), 2);
    assert_eq!(r.drain_playback().await, 5);
    assert_eq!(
        played_outcome(&mut r, MS * 1000).await,
        MessageOutcome::Completed
    );
    assert!(
        r.state
            .snapshot()
            .radio("vhf1")
            .unwrap()
            .tx_inhibited
            .is_none()
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_radio_inhibited_at_start_never_keys() {
    use crate::state::MessageOutcome;
    let mut initial = std::collections::BTreeMap::new();
    initial.insert(
        "vhf1".to_string(),
        Inhibited {
            reason: Some("kept from before".into()),
            since_ms: 1,
        },
    );
    let controls = Controls::with(["vhf1"], None, initial);
    let mut r = rig_controlled(
        Timers::default(),
        None,
        None,
        4096,
        Duration::ZERO,
        controls,
    )
    .await;
    r.talk(5);
    assert_eq!(
        played_outcome(&mut r, 5 * MS * 1000).await,
        MessageOutcome::Inhibited
    );
    sleep(Duration::from_secs(3)).await;
    assert_eq!(r.ptt.key_count(), 0, "the line never saw a key-up");
    let radio = r.state.snapshot().radios["vhf1"].clone();
    assert!(radio.tx_inhibited.is_some() && !radio.ptt);
    // Receiving goes on: the radio's audio still reaches the channel.
    r.receive(1200).await;
    r.hang_packets(Duration::from_millis(500)).await;
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gateway_streams(&r.sim).starts.len(),
        1,
        "sent while inhibited"
    );
    r.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unkey_ends_the_transmission_under_way() {
    use crate::state::MessageOutcome;
    let mut r = rig(Timers::default()).await;
    assert!(matches!(
        r.controls.unkey("uhf9"),
        Err(crate::gateway::ControlError::UnknownRadio(_))
    ));
    r.talk_until_playing(100).await;
    r.controls.unkey("vhf1").unwrap();
    r.cmd(MS * 1000, |c| matches!(c, EngineCommand::PlayAbort { .. }))
        .await;
    assert_eq!(
        played_outcome(&mut r, MS * 1000).await,
        MessageOutcome::Interrupted
    );
    r.observed(MS * 1000, |e| matches!(e, GatewayEvent::PttOff { .. }))
        .await;
    assert!(!r.ptt.is_keyed());
    sleep(Duration::from_secs(8)).await;
    assert_eq!(
        r.ptt.key_count(),
        1,
        "the rest of that message does not key again"
    );
    // Not inhibited: the next message keys as usual.
    r.talk_until_playing(5).await;
    assert_eq!(r.ptt.key_count(), 2);
    r.stop().await;
}

/// Each radio's codec engine writes its live levels to the registry the caller gave, under
/// the radio's name: a reader that asked before the radio started watches the same meter.
#[tokio::test]
async fn each_radio_writes_its_levels_to_the_callers_meters() {
    use crate::audio::NullOutput;
    use crate::audio::file::FileInput;
    use crate::audio::meter::MeterDirection;
    use crate::radio::sim::FlagCarrier;
    let sim = sim().await;
    let meters = super::Meters::new();
    // An installer watches before the radio is there; the squelch stays closed.
    let watching = meters.meter("vhf1").want();
    let radio = super::RadioParts::new(
        "vhf1",
        CH,
        Box::new(FileInput::from_samples(
            crate::audio::speech::tone(crate::audio::CODEC_RATE, 1000.0, 1.0, -20.0),
            crate::audio::CODEC_RATE,
        )),
        Box::new(NullOutput),
        Box::new(FlagCarrier::fixed(false)),
        Box::new(SimPtt::new()),
    );
    let (observer, _watch) = crate::state::StateHub::channel(64);
    let stop = CancellationToken::new();
    let (to, from) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(super::run_with(
        cfg(&sim, "gateway1"),
        vec![radio],
        stop.clone(),
        observer,
        super::RunOptions {
            drive: super::EngineDrive::Caller(to),
            meters: meters.clone(),
            ..Default::default()
        },
    ));
    let mut driven = tokio::time::timeout(Duration::from_secs(10), from)
        .await
        .expect("the radio starts")
        .expect("engines handed over");
    let engine = &mut driven.engines[0];
    assert!(Arc::ptr_eq(&engine.meter(), watching.meter()));
    // Squelch closed: one frame in every 200 ms (three of 60 ms) is measured.
    for _ in 0..4 {
        engine.tick();
    }
    let reading = meters.get("vhf1").unwrap().read(MeterDirection::Receive);
    assert_eq!(reading.frames, 2);
    assert!(!reading.open);
    assert!((reading.peak_dbfs + 20.0).abs() < 0.1, "{reading:?}");
    assert_eq!(meters.names(), ["vhf1"]);
    stop.cancel();
    // The caller ticks until the gateway has stopped.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !task.is_finished() {
            engine.tick();
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the gateway stops");
    task.await.unwrap().unwrap();
}
