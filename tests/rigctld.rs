//! A file-backed radio keyed through Hamlib's real rigctld (dummy rig): PTT reads back 1 while
//! a Zello message plays and 0 after; the carrier comes from rigctld's DCD.

mod common;

use bytes::Bytes;
use common::{CHANNEL, Client, config, server};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use zello_gateway::audio::CODEC_RATE;
use zello_gateway::audio::opus::{EncoderSettings, OpusEncoder};
use zello_gateway::config::Config;
use zello_gateway::gateway::{self, GatewayEvent};
use zello_gateway::radio::rigctld::read_ptt;
use zello_gateway::zello::protocol::CodecHeader;
use zello_gateway::zello::sim::SimConfig;

struct Rigctld(Child);

impl Drop for Rigctld {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_rigctld() -> (Rigctld, String) {
    start_rigctld_on(free_port())
}

fn start_rigctld_on(port: u16) -> (Rigctld, String) {
    let child = Command::new("rigctld")
        .args([
            "-m",
            "1",
            "-P",
            "RIG",
            "-T",
            "127.0.0.1",
            "-t",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start rigctld ({e}): run scripts/deps.sh (it installs libhamlib-utils)")
        });
    let rig = Rigctld(child);
    let address = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while read_ptt(&address).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rigctld did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (rig, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rigctld_ptt_follows_a_message_from_the_channel() {
    let (_rig, address) = start_rigctld();
    let sim = server(SimConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("zg-rigctld-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[zello]
server = "{}"
username = "gateway1"
password = "pw"

[[radio]]
name = "hf1"
channel = "{CHANNEL}"
audio = {{ backend = "file", output = "tx.wav" }}
ptt = {{ type = "rigctld", address = "{address}" }}
carrier = {{ type = "rigctld", address = "{address}", poll_ms = 50 }}
timing = {{ tx_delay_ms = 100, tx_tail_ms = 100 }}
"#,
        sim.url()
    );
    std::fs::write(dir.join("gateway.toml"), text).unwrap();
    let cfg = Config::load(&dir.join("gateway.toml")).unwrap();
    let radios = gateway::parts::build(&cfg).unwrap();
    let shutdown = CancellationToken::new();
    let (observer, mut watch) = broadcast::channel(1024);
    let gw = tokio::spawn(gateway::run(
        cfg.session_config().unwrap(),
        radios,
        shutdown.clone(),
        observer,
    ));
    let app = Client::ready(config(&sim, "dispatcher")).await;
    // Wait until the gateway is online too.
    tokio::time::timeout(Duration::from_secs(10), async {
        while sim.online_users(CHANNEL).len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(!read_ptt(&address).unwrap());

    // The dispatcher talks for 1.2 s.
    let keyed_seen = dispatcher_talks(&app, &address).await;
    assert!(
        keyed_seen,
        "rigctld reported PTT 1 while the message played"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(GatewayEvent::PttOff { .. }) = watch.recv().await {
                return;
            }
        }
    })
    .await
    .expect("PTT released after the message");
    let addr = address.clone();
    assert!(
        !tokio::task::spawn_blocking(move || read_ptt(&addr).unwrap())
            .await
            .unwrap(),
        "rigctld reports PTT 0 after the message"
    );
    shutdown.cancel();
    gw.await.unwrap().unwrap();
    let addr = address.clone();
    assert!(
        !tokio::task::spawn_blocking(move || read_ptt(&addr).unwrap())
            .await
            .unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The dispatcher talks for 1.2 s; whether rigctld at `address` reported PTT 1 meanwhile.
async fn dispatcher_talks(app: &Client, address: &str) -> bool {
    let mut enc = OpusEncoder::new(&EncoderSettings::default()).unwrap();
    let pcm = zello_gateway::audio::speech::speech_like(CODEC_RATE, 1.2, 4);
    let msg = app
        .handle
        .start_message(CHANNEL, CodecHeader::default(), None)
        .await
        .unwrap();
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radio_whose_rigctld_starts_later_waits_then_keys() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let sim = server(SimConfig::default()).await;
    let dir = std::env::temp_dir().join(format!("zg-rigctld-late-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        r#"
[zello]
server = "{}"
username = "gateway1"
password = "pw"

[[radio]]
name = "hf1"
channel = "{CHANNEL}"
audio = {{ backend = "file", output = "tx.wav" }}
ptt = {{ type = "rigctld", address = "{address}" }}
carrier = {{ type = "rigctld", address = "{address}", poll_ms = 50 }}
timing = {{ tx_delay_ms = 100, tx_tail_ms = 100 }}
"#,
        sim.url()
    );
    std::fs::write(dir.join("gateway.toml"), text).unwrap();
    let cfg = Config::load(&dir.join("gateway.toml")).unwrap();
    let (radios, waiting) = gateway::parts::build_or_wait(&cfg).unwrap();
    assert!(radios.is_empty());
    assert_eq!(waiting.len(), 1);
    assert!(waiting[0].error.contains(&address), "{}", waiting[0].error);
    let shutdown = CancellationToken::new();
    let (observer, mut watch) = broadcast::channel(1024);
    let gw = tokio::spawn(gateway::run_with(
        cfg.session_config().unwrap(),
        radios,
        shutdown.clone(),
        observer,
        gateway::RunOptions {
            waiting,
            ..Default::default()
        },
    ));
    let (radio, error) = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(GatewayEvent::HardwareWaiting { radio, error }) = watch.recv().await {
                return (radio, error);
            }
        }
    })
    .await
    .expect("the radio says it waits");
    assert_eq!(radio, "hf1");
    assert!(error.is_some());
    // Zello goes on meanwhile.
    let app = Client::ready(config(&sim, "dispatcher")).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while sim.online_users(CHANNEL).len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();

    let (_rig, address) = start_rigctld_on(port);
    let error = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            if let Ok(GatewayEvent::HardwareWaiting { error, .. }) = watch.recv().await {
                return error;
            }
        }
    })
    .await
    .expect("the radio starts once rigctld is up");
    assert_eq!(error, None);
    assert!(!read_ptt(&address).unwrap());

    assert!(
        dispatcher_talks(&app, &address).await,
        "rigctld reported PTT 1 while the message played"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(GatewayEvent::PttOff { .. }) = watch.recv().await {
                return;
            }
        }
    })
    .await
    .expect("PTT released after the message");
    shutdown.cancel();
    gw.await.unwrap().unwrap();
    let addr = address.clone();
    assert!(
        !tokio::task::spawn_blocking(move || read_ptt(&addr).unwrap())
            .await
            .unwrap(),
        "PTT released at the stop"
    );
    std::fs::remove_dir_all(&dir).ok();
}
