//! Each radio's PTT line on a thread of its own, over real sockets: a rigctld that stops
//! answering holds neither the Zello session (it keeps answering the emulator's pings) nor
//! the other radio (it keeps passing audio both ways), the time-out timer still cuts the
//! stuck radio's transmission while its keying hangs, and PTT is released on every way out.
//! The gateway runs in real time on one thread, as in the daemon; the PTT thread's own ways
//! out run under tokio's paused clock.

mod common;

use common::emulator::{Gateway, speaking_radio};
use common::{CHANNEL, Captured, Client, config, server, wait_for};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use zello_gateway::audio::CODEC_RATE;
use zello_gateway::audio::file::{FileInput, MemoryOutput};
use zello_gateway::gateway::ptt_thread::PttThread;
use zello_gateway::gateway::{self, GatewayEvent, RadioParts};
use zello_gateway::radio::rigctld::{self, RigctldPtt, RigctldPttSettings};
use zello_gateway::radio::sim::{FlagCarrier, SimPtt};
use zello_gateway::radio::{CarrierDetect as _, serial};
use zello_gateway::state::MessageOutcome;
use zello_gateway::zello::protocol::CodecHeader;
use zello_gateway::zello::session::SessionEvent;
use zello_gateway::zello::sim::{SimConfig, SimEvent};

const S: Duration = Duration::from_secs(1);

/// A rigctld stand-in on 127.0.0.1:0: it accepts every connection, answers `RPRT 0` while
/// `answering` is set, and otherwise reads and never answers. Keeps every command it got.
struct StandIn {
    address: String,
    answering: Arc<AtomicBool>,
    commands: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let answering = Arc::new(AtomicBool::new(true));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (a, c) = (answering.clone(), commands.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (answering, commands) = (a.clone(), c.clone());
                std::thread::spawn(move || {
                    let reader = BufReader::new(stream.try_clone().unwrap());
                    for line in reader.lines() {
                        let Ok(line) = line else { return };
                        commands.lock().unwrap().push(line.trim().to_string());
                        if answering.load(Ordering::SeqCst) {
                            let answer = if line.trim() == "t" {
                                "0\n"
                            } else {
                                "RPRT 0\n"
                            };
                            let _ = stream.write_all(answer.as_bytes());
                        }
                    }
                });
            }
        });
        StandIn {
            address,
            answering,
            commands,
        }
    }

    /// The `T` commands it got (keying and unkeying), in order.
    fn keying(&self) -> Vec<String> {
        let commands = self.commands.lock().unwrap();
        commands
            .iter()
            .filter(|c| c.starts_with("T "))
            .cloned()
            .collect()
    }
}

/// Waits up to 5 s for `line` to be unkeyed.
async fn unkeyed_soon(line: &SimPtt) -> bool {
    let until = std::time::Instant::now() + 5 * S;
    while line.is_keyed() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    !line.is_keyed()
}

#[tokio::test(flavor = "current_thread")]
async fn a_stuck_rigctld_holds_neither_the_session_nor_the_other_radio_and_the_tot_still_cuts() {
    let logs = Captured::default();
    let _logging = logs.start();
    // Call sites first met by another test's thread (no subscriber there) may have been
    // judged before this one's subscriber existed.
    tracing::callsite::rebuild_interest_cache();
    // Pings every 200 ms, and a gateway that takes more than 1 s to answer one is dropped.
    let sim = server(SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: S,
        ..SimConfig::default()
    })
    .await;
    let rig = StandIn::start();
    let settings = RigctldPttSettings {
        address: rig.address.clone(),
    };
    let stuck_ptt = tokio::task::spawn_blocking(move || RigctldPtt::open(&settings))
        .await
        .unwrap()
        .unwrap();
    let mut stuck = RadioParts::new(
        "stuck",
        CHANNEL,
        Box::new(FileInput::from_samples(vec![], CODEC_RATE)),
        Box::new(MemoryOutput::new(CODEC_RATE)),
        Box::new(FlagCarrier::new()),
        Box::new(stuck_ptt),
    );
    // Shorter than one rigctld call (300 ms): it runs out while the keying hangs.
    stuck.timers.tot = Duration::from_millis(100);
    let carrier = FlagCarrier::new();
    let vhf_ptt = SimPtt::new();
    let (vhf, played) = speaking_radio("vhf", 60.0, 3, &carrier, &vhf_ptt);
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(4096);
    let mut all = observer.subscribe();
    let gw = Gateway::start(config(&sim, "gateway1"), vec![stuck, vhf], observer);
    let mut app = Client::ready(config(&sim, "dispatcher")).await;
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::ChannelStatus { online: true, .. })
    })
    .await;

    // rigctld hangs from now on.
    rig.answering.store(false, Ordering::SeqCst);
    let pongs_before = sim.log().len();
    let talk = tokio::spawn({
        let app = app.handle.clone();
        async move {
            let msg = app
                .start_message(CHANNEL, CodecHeader::default(), None)
                .await
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(60));
            for i in 0..15u8 {
                tick.tick().await;
                msg.send(bytes::Bytes::from(vec![0xf8, 0xff, 0xfe, i]));
            }
            msg.finish().await;
        }
    });
    // The stuck radio's transmission is cut by its time-out timer while its keying hangs;
    // the other radio plays the message.
    let mut incoming = None;
    let mut timed_out = None;
    let mut played_vhf = false;
    tokio::time::timeout(10 * S, async {
        while timed_out.is_none() || !played_vhf {
            match watch.recv().await {
                Ok(GatewayEvent::Incoming { radio, .. }) if radio == "stuck" => {
                    incoming = Some(Instant::now())
                }
                Ok(GatewayEvent::TimeOut { radio, .. }) if radio == "stuck" => {
                    timed_out = Some(Instant::now())
                }
                Ok(GatewayEvent::Played { radio, packets, .. }) if radio == "vhf" => {
                    assert!(packets > 0);
                    played_vhf = true;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the stuck radio times out and the other one plays");
    talk.await.unwrap();
    let cut_after = timed_out.unwrap() - incoming.expect("the stuck radio heard the message");
    assert!(
        cut_after < rigctld::TIMEOUT,
        "the time-out timer waited for the hanging keying: {cut_after:?}"
    );
    assert!(unkeyed_soon(&vhf_ptt).await, "the other radio unkeyed");
    assert_eq!(vhf_ptt.key_count(), 1);
    assert_eq!(played.lock().unwrap().len(), 1, "the other radio played it");
    assert!(
        logs.lines()
            .iter()
            .any(|l| l.contains("radio=stuck") && l.contains("event=\"time_out\"")),
        "{}",
        logs.text()
    );

    // The other radio receives: its message reaches the dispatcher.
    carrier.set(true);
    app.expect(5 * S, |e| matches!(e, SessionEvent::IncomingStart { .. }))
        .await;
    app.expect(5 * S, |e| matches!(e, SessionEvent::IncomingAudio { .. }))
        .await;
    tokio::time::sleep(S).await;
    carrier.set(false);
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::Sent { radio, outcome: MessageOutcome::Completed, packets, .. }
            if radio == "vhf" && *packets > 10)
    })
    .await;

    // The session answered the pings all along and stayed on.
    let pongs = sim.log()[pongs_before..]
        .iter()
        .filter(|e| matches!(&e.event, SimEvent::PongReceived { user } if user == "gateway1"))
        .count();
    assert!(pongs >= 5, "{pongs} pongs while rigctld hung");
    while let Ok(e) = all.try_recv() {
        assert!(
            !matches!(
                e,
                GatewayEvent::Disconnected { .. } | GatewayEvent::ConnectFailed { .. }
            ),
            "{e:?}"
        );
    }

    // Shutdown: every line is released, the hanging one asked too.
    gw.stop_within(10 * S).await;
    assert!(!vhf_ptt.is_keyed());
    let keying = rig.keying();
    assert!(keying.contains(&"T 1".to_string()), "{keying:?}");
    assert_eq!(keying.last().map(String::as_str), Some("T 0"), "{keying:?}");
    app.shutdown().await;
}

/// A line on a PTT thread, unkeyed.
async fn line_on_a_thread() -> (PttThread, SimPtt) {
    let line = SimPtt::new();
    // No span: the radio span's call site stays the gateway test's alone, whose log
    // lines are captured on its own thread.
    let (ptt, first) =
        PttThread::spawn(Box::new(line.clone()), "vhf", tracing::Span::none()).unwrap();
    first.await.unwrap().unwrap();
    (ptt, line)
}

/// A bridge that panics while the transmitter is keyed: unwinding drops its handle, and the
/// thread unkeys.
#[tokio::test(start_paused = true)]
async fn the_ptt_thread_unkeys_when_its_owner_panics() {
    let (mut ptt, line) = line_on_a_thread().await;
    let owner = tokio::spawn(async move {
        ptt.key().await.unwrap();
        panic!("the bridge fell over");
    });
    assert!(owner.await.unwrap_err().is_panic());
    assert_eq!(line.key_count(), 1);
    assert!(unkeyed_soon(&line).await, "still keyed");
}

/// An owner that goes away keyed (a task dropped mid-transmission), and one that lets the
/// line go: unkeyed both times.
#[tokio::test(start_paused = true)]
async fn the_ptt_thread_unkeys_when_its_owner_goes_away_or_lets_go() {
    let (mut ptt, line) = line_on_a_thread().await;
    ptt.key().await.unwrap();
    assert!(line.is_keyed());
    drop(ptt);
    assert!(
        unkeyed_soon(&line).await,
        "still keyed after the owner went away"
    );

    let (mut ptt, line) = line_on_a_thread().await;
    ptt.key().await.unwrap();
    assert!(ptt.release(5 * S).await, "released in time");
    assert!(!line.is_keyed());
    assert_eq!(line.key_count(), 1);
}

/// A serial adapter whose modem-control ioctls block while `stuck` is set (a USB-serial
/// adapter wedged in its driver), with its RTS level and the calls it got.
#[derive(Clone, Default)]
struct WedgedAdapter {
    stuck: Arc<AtomicBool>,
    rts: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl WedgedAdapter {
    fn ioctl(&self, call: String) {
        while self.stuck.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.calls.lock().unwrap().push(call);
    }
}

impl serial::ModemLines for WedgedAdapter {
    fn set_rts(&mut self, on: bool) -> std::io::Result<()> {
        self.ioctl(format!("rts={}", u8::from(on)));
        self.rts.store(on, Ordering::SeqCst);
        Ok(())
    }
    fn set_dtr(&mut self, on: bool) -> std::io::Result<()> {
        self.ioctl(format!("dtr={}", u8::from(on)));
        Ok(())
    }
    fn cts(&mut self) -> std::io::Result<bool> {
        self.ioctl("cts?".into());
        Ok(false)
    }
    fn dsr(&mut self) -> std::io::Result<bool> {
        self.ioctl("dsr?".into());
        Ok(false)
    }
    fn dcd(&mut self) -> std::io::Result<bool> {
        self.ioctl("dcd?".into());
        Ok(false)
    }
}

/// A serial adapter that blocks in an ioctl, its port shared by the PTT (RTS) and the
/// carrier detect (CTS): the blocked call holds only the PTT thread. The runtime's one
/// thread goes on, the carrier detect answers at once, and once the ioctl returns the
/// keying is answered and the line ends unkeyed when the thread is let go.
#[tokio::test(flavor = "current_thread")]
async fn a_serial_adapter_blocked_in_an_ioctl_holds_only_the_ptt_thread() {
    let adapter = WedgedAdapter::default();
    let opened = adapter.clone();
    let registry = serial::PortRegistry::new(Arc::new(move |_: &std::path::Path| {
        Ok(Box::new(opened.clone()) as Box<dyn serial::ModemLines>)
    }));
    let line = serial::SerialPtt::open_in(
        &registry,
        &serial::SerialPttSettings {
            device: "/dev/ttyUSB0".into(),
            lines: vec!["RTS".into()],
        },
    )
    .unwrap();
    let mut carrier = serial::SerialCarrier::open_in(
        &registry,
        &serial::SerialCarrierSettings {
            device: "/dev/ttyUSB0".into(),
            line: "cts".into(),
            invert: false,
        },
    )
    .unwrap();
    let (mut ptt, first) = PttThread::spawn(Box::new(line), "vhf", tracing::Span::none()).unwrap();
    first.await.unwrap().unwrap();

    adapter.stuck.store(true, Ordering::SeqCst);
    let asked = ptt.request(gateway::ptt_thread::PttOp::Key);
    // The runtime's thread is not held: its timers keep firing, on time.
    let start = std::time::Instant::now();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ticked = start.elapsed();
    assert!(
        ticked < 2 * S,
        "the runtime waited on the ioctl: {ticked:?}"
    );
    // The carrier detect reads on its own thread: asking it never waits on the port.
    let asked_carrier = std::time::Instant::now();
    let _ = carrier.update(-90.0, 20);
    assert!(
        asked_carrier.elapsed() < S,
        "the carrier detect waited on the port"
    );
    assert!(
        !adapter.rts.load(Ordering::SeqCst),
        "keyed while the ioctl blocks"
    );

    adapter.stuck.store(false, Ordering::SeqCst);
    let answer = tokio::time::timeout(5 * S, ptt.answer()).await.unwrap();
    assert_eq!(answer.id, asked);
    assert!(answer.result.is_ok(), "{:?}", answer.result);
    assert!(adapter.rts.load(Ordering::SeqCst), "the keying was lost");
    drop(ptt);
    let unkeyed = tokio::time::timeout(5 * S, async {
        while adapter.rts.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(unkeyed.is_ok(), "still keyed after the thread was let go");
}
