//! A file-backed radio keyed through Hamlib's real rigctld (dummy rig): PTT reads back 1 while
//! a Zello message plays and 0 after; the carrier comes from rigctld's DCD. On one thread, as
//! in the daemon's runtime: the rigctld calls go to blocking threads.

mod common;

use bytes::Bytes;
use common::emulator::{Gateway, gateway_config, talk_pcm, until_online};
use common::{
    CHANNEL, Client, config, free_port, server, start_rigctld, start_rigctld_on, wait_for,
};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use zello_gateway::audio::CODEC_RATE;
use zello_gateway::audio::opus::{EncoderSettings, OpusEncoder};
use zello_gateway::gateway::{self, GatewayEvent};
use zello_gateway::parts;
use zello_gateway::radio::rigctld::read_ptt;
use zello_gateway::zello::sim::SimConfig;

#[tokio::test(flavor = "current_thread")]
async fn rigctld_ptt_follows_a_message_from_the_channel() {
    let (_rig, address) = start_rigctld();
    let sim = server(SimConfig::default()).await;
    let dir = common::cli::temp_dir("rigctld");
    let cfg = gateway_config(&sim, &dir, &hf1_on(&address));
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let gw = Gateway::from_config(&cfg, observer);
    let app = Client::ready(config(&sim, "dispatcher")).await;
    // Wait until the gateway is online too.
    until_online(&sim, 2).await;
    assert!(!read_ptt(&address).unwrap());

    assert!(
        dispatcher_talks(&app, &address).await,
        "rigctld reported PTT 1 while the message played"
    );
    ptt_released(&mut watch).await;
    assert_eq!(
        ptt_reads(&address).await,
        Some(false),
        "rigctld reports PTT 0 after the message"
    );
    gw.stop().await;
    assert_eq!(ptt_reads(&address).await, Some(false));
    std::fs::remove_dir_all(&dir).ok();
}

/// Radio `hf1` keyed through rigctld at `address`, its carrier from rigctld's DCD.
fn hf1_on(address: &str) -> String {
    format!(
        r#"[[radio]]
name = "hf1"
channel = "{CHANNEL}"
audio = {{ backend = "file", output = "tx.wav" }}
ptt = {{ type = "rigctld", address = "{address}" }}
carrier = {{ type = "rigctld", address = "{address}", poll_ms = 50 }}
timing = {{ tx_delay_ms = 100, tx_tail_ms = 100 }}
"#
    )
}

/// Waits (up to 10 s) for the gateway to release PTT.
async fn ptt_released(watch: &mut broadcast::Receiver<GatewayEvent>) {
    wait_for(watch, Duration::from_secs(10), |e| {
        matches!(e, GatewayEvent::PttOff { .. })
    })
    .await;
}

/// Log lines of this test binary, captured (warnings and worse) from the first call on.
struct Logs(common::Captured);

impl Logs {
    fn get() -> Logs {
        static LOGS: std::sync::OnceLock<common::Captured> = std::sync::OnceLock::new();
        Logs(
            LOGS.get_or_init(|| {
                let logs = common::Captured::default();
                let writer = logs.clone();
                tracing_subscriber::fmt()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .with_env_filter("warn")
                    .init();
                logs
            })
            .clone(),
        )
    }

    /// The lines about radio `radio`.
    fn of(&self, radio: &str) -> String {
        let about = format!("radio={radio}");
        let lines = self.0.lines();
        let of: Vec<String> = lines.into_iter().filter(|l| l.contains(&about)).collect();
        of.join("\n")
    }
}

async fn ptt_reads(address: &str) -> Option<bool> {
    let addr = address.to_string();
    tokio::task::spawn_blocking(move || read_ptt(&addr).ok())
        .await
        .unwrap()
}

/// A gateway with radio `radio` keyed through rigctld at `address`, online on the
/// emulator, and a dispatcher on its channel talking for `seconds` in real time once the
/// gateway is online.
struct Keyed {
    gw: Gateway,
    watch: broadcast::Receiver<GatewayEvent>,
    talking: tokio::task::JoinHandle<Client>,
    dir: std::path::PathBuf,
}

async fn keyed_through(radio: &str, address: &str, seconds: f32) -> Keyed {
    let sim = server(SimConfig::default()).await;
    let dir = common::cli::temp_dir(&format!("rigctld-{radio}"));
    let cfg = gateway_config(
        &sim,
        &dir,
        &format!(
            r#"[[radio]]
name = "{radio}"
channel = "{CHANNEL}"
audio = {{ backend = "file", output = "tx.wav" }}
ptt = {{ type = "rigctld", address = "{address}" }}
carrier = {{ type = "none" }}
timing = {{ tx_delay_ms = 100, tx_tail_ms = 100 }}
"#
        ),
    );
    let (observer, watch) = zello_gateway::state::StateHub::channel(1024);
    let gw = Gateway::from_config(&cfg, observer);
    let app = Client::ready(config(&sim, "dispatcher")).await;
    until_online(&sim, 2).await;
    let talking = tokio::spawn(async move {
        let _sim = sim;
        let pcm = zello_gateway::audio::speech::speech_like(CODEC_RATE, seconds, 4);
        talk_pcm(&app, &pcm).await;
        app
    });
    Keyed {
        gw,
        watch,
        talking,
        dir,
    }
}

impl Keyed {
    async fn stop(self) {
        let _app = self.talking.await.unwrap();
        self.gw.stop().await;
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_rigctld_restarted_during_a_message_is_noticed_and_the_transmitter_keyed_again() {
    let logs = Logs::get();
    let (rig, address) = start_rigctld();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    // The dispatcher talks for 6 s.
    let mut k = keyed_through("restarted", &address, 6.0).await;
    wait_for(&mut k.watch, Duration::from_secs(10), |e| {
        matches!(e, GatewayEvent::PttOn { .. })
    })
    .await;
    assert_eq!(ptt_reads(&address).await, Some(true), "keyed");

    // 1.5 s into the message rigctld dies, and is back 1 s later on the same port, with
    // the rig unkeyed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(rig);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_rig, again) = tokio::task::spawn_blocking(move || start_rigctld_on(port))
        .await
        .unwrap();
    assert_eq!(again, address);
    // The gateway notices and keys it again while the message goes on: rigctld reads `t`
    // 1 again before the message has played. (The limit only keeps a broken gateway from
    // hanging the test.)
    let mut keyed_again = false;
    let mut played = None;
    let limit = Instant::now() + Duration::from_secs(30);
    while played.is_none() && Instant::now() < limit {
        if ptt_reads(&address).await == Some(true) {
            keyed_again = true;
            break;
        }
        if let Ok(e @ GatewayEvent::Played { .. }) = k.watch.try_recv() {
            played = Some(e);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(played.is_none(), "re-keyed while the message still played");
    assert!(keyed_again, "rigctld reads `t` 1 again after its restart");

    // The summary says what was lost, and so does the log.
    let played = wait_for(&mut k.watch, Duration::from_secs(10), |e| {
        matches!(e, GatewayEvent::Played { .. })
    })
    .await;
    let GatewayEvent::Played { unkeyed_ms, .. } = played else {
        unreachable!()
    };
    assert!(unkeyed_ms > 0, "the gap is reported: {unkeyed_ms} ms");
    let log = logs.of("restarted");
    assert!(log.contains("ptt_lost"), "{log}");
    assert!(log.contains("ptt_restored"), "{log}");
    assert!(log.contains("outcome=\"interrupted\""), "{log}");
    assert!(log.contains(&format!("unkeyed_ms={unkeyed_ms}")), "{log}");
    assert!(!log.contains("ptt_failed"), "{log}");

    wait_for(&mut k.watch, Duration::from_secs(10), |e| {
        matches!(e, GatewayEvent::PttOff { .. })
    })
    .await;
    assert_eq!(ptt_reads(&address).await, Some(false), "unkeyed after");
    k.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_rigctld_that_stays_down_during_a_message_is_a_ptt_failure() {
    let logs = Logs::get();
    let (rig, address) = start_rigctld();
    let mut k = keyed_through("stays-down", &address, 8.0).await;
    wait_for(&mut k.watch, Duration::from_secs(10), |e| {
        matches!(e, GatewayEvent::PttOn { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(rig);
    // Unreadable for 3 s: the transmission stops as a failed PTT line, long before the
    // 8 s message would have ended.
    let fault = wait_for(&mut k.watch, Duration::from_secs(6), |e| {
        matches!(e, GatewayEvent::PttFault { error: Some(_), .. })
    })
    .await;
    let GatewayEvent::PttFault { error: Some(e), .. } = fault else {
        unreachable!()
    };
    assert!(e.contains("rigctld"), "{e}");
    wait_for(&mut k.watch, Duration::from_secs(2), |e| {
        matches!(e, GatewayEvent::PttOff { .. })
    })
    .await;
    let log = logs.of("stays-down");
    assert!(log.contains("event=\"ptt_failed\""), "{log}");
    assert!(
        log.contains("reason=PttFailed"),
        "not played completely: {log}"
    );
    assert!(!log.contains("ptt_restored"), "{log}");
    k.stop().await;
}

/// The dispatcher talks for 1.2 s; whether rigctld at `address` reported PTT 1 meanwhile.
async fn dispatcher_talks(app: &Client, address: &str) -> bool {
    let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
    let pcm = zello_gateway::audio::speech::speech_like(CODEC_RATE, 1.2, 4);
    let msg = app.start_message().await;
    let mut buf = Vec::new();
    let mut keyed_seen = false;
    for chunk in pcm.chunks_exact(960) {
        enc.encode_packet(chunk, &mut buf).unwrap();
        msg.send(Bytes::copy_from_slice(&buf));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let addr = address.to_string();
        if tokio::task::spawn_blocking(move || read_ptt(&addr).unwrap())
            .await
            .unwrap()
        {
            keyed_seen = true;
        }
    }
    msg.finish().await;
    keyed_seen
}

/// At boot rigctld may start after the gateway: the radio waits for it, then keys.
#[tokio::test(flavor = "current_thread")]
async fn a_radio_whose_rigctld_starts_later_waits_then_keys() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let sim = server(SimConfig::default()).await;
    let dir = common::cli::temp_dir("rigctld-late");
    let cfg = gateway_config(&sim, &dir, &hf1_on(&address));
    let (radios, waiting) = parts::build_or_wait(&cfg).unwrap();
    assert!(radios.is_empty());
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].error.contains(&address), "{}", waiting[0].error);
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let gw = Gateway::start_with(
        cfg.session_config().unwrap(),
        radios,
        observer,
        gateway::RunOptions {
            waiting,
            ..Default::default()
        },
    );
    let waits = |e: &GatewayEvent| matches!(e, GatewayEvent::HardwareWaiting { .. });
    // The radio says it waits.
    let GatewayEvent::HardwareWaiting { radio, error } =
        wait_for(&mut watch, Duration::from_secs(5), waits).await
    else {
        unreachable!()
    };
    assert_eq!(radio, "hf1");
    assert!(error.is_some());
    // Zello goes on meanwhile.
    let app = Client::ready(config(&sim, "dispatcher")).await;
    until_online(&sim, 2).await;

    let (_rig, address) = start_rigctld_on(port);
    // The radio starts once rigctld is up.
    let GatewayEvent::HardwareWaiting { error, .. } =
        wait_for(&mut watch, Duration::from_secs(40), waits).await
    else {
        unreachable!()
    };
    assert_eq!(error, None);
    assert!(!read_ptt(&address).unwrap());

    assert!(
        dispatcher_talks(&app, &address).await,
        "rigctld reported PTT 1 while the message played"
    );
    ptt_released(&mut watch).await;
    gw.stop().await;
    assert_eq!(
        ptt_reads(&address).await,
        Some(false),
        "PTT released at the stop"
    );
    std::fs::remove_dir_all(&dir).ok();
}
