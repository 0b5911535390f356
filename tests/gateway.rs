//! The whole gateway (session, router, bridge, codec engine thread) with simulated radios
//! against the emulator over loopback. These run in real time: the codec engine ticks on its
//! own thread like it does on a Pi, and the rest on one thread, as in the daemon's runtime
//! ([`zello_gateway::service::runtime_builder`]), so a call that blocks it would show.

mod common;

use common::emulator::{Gateway, channel_online, gateway_config, speaking_radio, talk_pcm};
use common::{CHANNEL, Client, config, server, wait_for};
use std::path::Path;
use std::time::Duration;
use zello_gateway::audio::file::{FileInput, MemoryOutput};
use zello_gateway::audio::{CODEC_RATE, speech, wav};
use zello_gateway::gateway::{self, GatewayEvent, RadioParts};
use zello_gateway::radio::sim::{FlagCarrier, SimPtt};
use zello_gateway::zello::session::SessionEvent;
use zello_gateway::zello::sim::{SimConfig, SimHandle};

const S: Duration = Duration::from_secs(1);

/// Sends `packets` 60 ms packets of speech as one message, in real time.
async fn talk(client: &Client, packets: usize) {
    let pcm = speech::speech_like(CODEC_RATE, packets as f32 * 0.06, 5);
    talk_pcm(client, &pcm[..(packets * 960).min(pcm.len())]).await;
}

/// A gateway with radio `name` (its input `seconds` of speech) online, whose carrier it
/// returns has come up: a dispatcher, returned too, hears the message start.
async fn carrier_up(
    sim: &SimHandle,
    name: &str,
    seconds: f32,
    observer: zello_gateway::state::StateHub,
    watch: &mut tokio::sync::broadcast::Receiver<GatewayEvent>,
) -> (Gateway, FlagCarrier, Client) {
    let carrier = FlagCarrier::new();
    let (parts, _) = speaking_radio(name, seconds, 4, &carrier, &SimPtt::new());
    let gw = Gateway::start(config(sim, "gateway1"), vec![parts], observer);
    let mut app = Client::ready(config(sim, "dispatcher")).await;
    channel_online(watch).await;
    carrier.set(true);
    app.expect(5 * S, |e| matches!(e, SessionEvent::IncomingStart { .. }))
        .await;
    (gw, carrier, app)
}

#[tokio::test(flavor = "current_thread")]
async fn the_demo_runs_end_to_end() {
    let out = common::cli::temp_dir("demo");
    zello_gateway::demo::run(zello_gateway::demo::DemoArgs {
        out: out.clone(),
        clip: None,
        linger: false,
    })
    .await
    .expect("demo completes");
    let secs = |name: &str| {
        wav::read_wav_mono(&out.join(name), CODEC_RATE)
            .unwrap()
            .len() as f64
            / 16000.0
    };
    assert!((secs("radio-received.wav") - 3.0).abs() < 0.01);
    // What the dispatcher heard: the clip plus VOX hang, in whole packets.
    let heard = secs("dispatcher-received.wav");
    assert!((3.0..4.2).contains(&heard), "{heard}");
    let transmitted = secs("radio-transmitted.wav");
    assert!((1.9..2.3).contains(&transmitted), "{transmitted}");
    std::fs::remove_dir_all(&out).ok();
}

#[tokio::test(flavor = "current_thread")]
async fn half_duplex_never_keys_over_the_carrier_and_releases_ptt_on_shutdown() {
    let sim = server(SimConfig::default()).await;
    let carrier = FlagCarrier::new();
    let ptt = SimPtt::new();
    let (parts, played) = speaking_radio("vhf1", 30.0, 9, &carrier, &ptt);
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let gw = Gateway::start(config(&sim, "gateway1"), vec![parts], observer);
    let mut app = Client::ready(config(&sim, "dispatcher")).await;
    channel_online(&mut watch).await;

    // The radio receives: the message reaches the app.
    carrier.set(true);
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::StreamStarted { .. })
    })
    .await;
    app.expect(5 * S, |e| matches!(e, SessionEvent::IncomingStart { .. }))
        .await;
    // The dispatcher talks meanwhile: queued, PTT stays off while the carrier is up.
    talk(&app, 10).await;
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::Incoming { .. })
    })
    .await;
    tokio::time::sleep(S).await;
    assert!(!ptt.is_keyed(), "keyed over an incoming carrier");
    assert_eq!(ptt.key_count(), 0);
    // The frequency clears: the queued message is played.
    carrier.set(false);
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::PttOn { .. })
    })
    .await;
    assert!(ptt.is_keyed());
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::PttOff { .. })
    })
    .await;
    assert!(!ptt.is_keyed());
    {
        let played = played.lock().unwrap();
        assert_eq!(played.len(), 1);
        assert_eq!(played[0].len(), 10 * 960);
    }
    // Never forwards what it transmits: the app got exactly one message (the radio's).
    let seen = app.collect(S).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, SessionEvent::IncomingStart { .. })),
        "{seen:?}"
    );

    // A long message starts playing; shutdown in the middle releases PTT.
    let long = tokio::spawn(async move {
        talk(&app, 100).await;
        app
    });
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::Playing { .. })
    })
    .await;
    assert!(ptt.is_keyed());
    gw.stop_within(5 * S).await;
    assert!(!ptt.is_keyed(), "PTT released on shutdown");
    long.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_configured_radio_hears_itself_through_the_echo_user() {
    // The installer's check: key the radio, talk, and hear it come back.
    let sim = common::emulator::echo_server().await;
    let dir = common::cli::temp_dir("echo");
    let clip = speech::speech_like(CODEC_RATE, 2.0, 3);
    wav::write_wav_mono(
        &dir.join("rx.wav"),
        48000,
        &wav::resample_linear(&clip, 16000, 48000),
    )
    .unwrap();
    let radio = format!(
        r#"[[radio]]
name = "radio1"
channel = "{CHANNEL}"
audio = {{ backend = "file", input = "rx.wav", output = "tx.wav" }}
ptt = {{ type = "sim" }}
carrier = {{ type = "schedule", on = [[0.5, 1.7]] }}
"#
    );
    let cfg = gateway_config(&sim, &dir, &radio);
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let gw = Gateway::from_config(&cfg, observer);
    let sent = wait_for(&mut watch, 10 * S, |e| {
        matches!(e, GatewayEvent::Sent { .. })
    })
    .await;
    let GatewayEvent::Sent { packets, .. } = sent else {
        unreachable!()
    };
    // 1.2 s of carrier plus the 400 ms hang of silence, in 60 ms packets.
    assert_eq!(packets, 20 + 7);
    // The duration reported is that of the audio sent, hang included.
    let GatewayEvent::Sent { duration_ms, .. } = sent else {
        unreachable!()
    };
    assert_eq!(duration_ms, 27 * 60);
    let GatewayEvent::Incoming { from, .. } = wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::Incoming { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(from, "echo");
    let GatewayEvent::Played {
        packets,
        peak_dbfs,
        rms_dbfs,
        ..
    } = wait_for(&mut watch, 10 * S, |e| {
        matches!(e, GatewayEvent::Played { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(packets, 27);
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::PttOff { .. })
    })
    .await;
    gw.stop().await;
    let tx = wav::read_wav_mono(&dir.join("tx.wav"), CODEC_RATE).unwrap();
    assert_eq!(tx.len(), 27 * 960);
    // The played message's levels are those of what the transmitter got.
    let played = zello_gateway::audio::meter::Levels::measure(&tx);
    let (peak_dbfs, rms_dbfs) = (peak_dbfs.unwrap(), rms_dbfs.unwrap());
    assert!((peak_dbfs - played.peak_dbfs()).abs() < 0.01, "{peak_dbfs}");
    assert!((rms_dbfs - played.rms_dbfs()).abs() < 0.01, "{rms_dbfs}");
    assert!(
        peak_dbfs > -30.0 && rms_dbfs < peak_dbfs,
        "{peak_dbfs} {rms_dbfs}"
    );
    // The echoed audio resembles what the radio heard (same level within a few dB).
    let heard = zello_gateway::audio::level::rms_dbfs(&clip[8000..8000 + 19200]);
    let back = zello_gateway::audio::level::rms_dbfs(&tx[..19200]);
    assert!(
        zello_gateway::audio::level::peak_dbfs(&tx[20 * 960..]) < -60.0,
        "the hang is silence"
    );
    assert!((heard - back).abs() < 4.0, "{heard} vs {back}");
    std::fs::remove_dir_all(Path::new(&dir)).ok();
}

#[tokio::test(flavor = "current_thread")]
async fn an_unplugged_ptt_interface_takes_the_gateway_off_zello_until_it_is_back() {
    // The whole chain in real time: the bridge's periodic PTT check notices, the alarms
    // wait their grace period, the session leaves; plugged back, it returns.
    let sim = server(SimConfig::default()).await;
    let ptt = SimPtt::new();
    let parts = RadioParts::new(
        "vhf1",
        CHANNEL,
        Box::new(FileInput::from_samples(vec![0; 16000], CODEC_RATE)),
        Box::new(MemoryOutput::new(CODEC_RATE)),
        Box::new(FlagCarrier::new()),
        Box::new(ptt.clone()),
    );
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let (_settings, alarms) = tokio::sync::watch::channel(zello_gateway::alarms::AlarmsConfig {
        hardware_grace_s: 1,
        ..Default::default()
    });
    let gw = Gateway::start_with(
        config(&sim, "gateway1"),
        vec![parts],
        observer,
        gateway::RunOptions {
            on_session: Some(zello_gateway::alarms::on_session(alarms)),
            ..Default::default()
        },
    );
    channel_online(&mut watch).await;
    ptt.set_failing(true);
    wait_for(&mut watch, 10 * S, |e| {
        matches!(e, GatewayEvent::PttFault { error: Some(_), .. })
    })
    .await;
    let left = wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::HeldOffline { .. })
    })
    .await;
    assert!(
        matches!(&left, GatewayEvent::HeldOffline { reason: Some(r) } if r.starts_with("radio vhf1: PTT interface failing for 1 s")),
        "{left:?}"
    );
    wait_for(&mut watch, 5 * S, |e| {
        matches!(e, GatewayEvent::Disconnected { .. })
    })
    .await;
    ptt.set_failing(false);
    wait_for(&mut watch, 10 * S, |e| {
        matches!(e, GatewayEvent::HeldOffline { reason: None })
    })
    .await;
    channel_online(&mut watch).await;
    assert!(sim.online_users(CHANNEL).contains(&"gateway1".to_string()));
    gw.stop_within(5 * S).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_carrier_up_across_a_dropped_link_sends_the_rest_as_a_second_message() {
    let sim = server(SimConfig::default()).await;
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(1024);
    let (gw, carrier, mut app) = carrier_up(&sim, "vhf1", 30.0, observer, &mut watch).await;
    tokio::time::sleep(S).await;
    // The link drops in the middle of the transmission and comes back within a second or so.
    assert!(sim.faults().drop_connection("gateway1"));
    channel_online(&mut watch).await;
    // The carrier is still up: the rest goes out as a new message...
    expect_event!(
        app,
        5 * S,
        SessionEvent::IncomingStart {
            from,
            stream_id: second,
            ..
        }
    );
    assert_eq!(from, "gateway1");
    tokio::time::sleep(S).await;
    carrier.set(false);
    let sent = wait_for(&mut watch, 5 * S, |e| {
        matches!(
            e,
            GatewayEvent::Sent {
                outcome: zello_gateway::state::MessageOutcome::Completed,
                ..
            }
        )
    })
    .await;
    // ...with the audio of the outage first: more than the second of carrier after it.
    let GatewayEvent::Sent { packets, .. } = sent else {
        unreachable!()
    };
    assert!(packets > 1000 / 60 + 7, "{packets} packets");
    let SessionEvent::IncomingEnd { packets, .. } = app
        .expect(
            5 * S,
            |e| matches!(e, SessionEvent::IncomingEnd { stream_id, .. } if *stream_id == second),
        )
        .await
    else {
        unreachable!()
    };
    assert!(packets > 1000 / 60 + 7, "{packets} packets heard");
    gw.stop().await;
}

/// A link away longer than the start-of-message buffer holds (12 s of 60 ms packets) while
/// the carrier stays up: the kept audio goes out first when the channel is back, and what
/// could not be kept is said, not left out silently.
#[tokio::test(flavor = "current_thread")]
async fn a_wait_longer_than_the_buffer_is_reported_as_a_gap() {
    let logs = common::Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .with_env_filter("warn")
        .try_init()
        .expect("the only test of this binary that sets a global subscriber");
    let sim = server(SimConfig::default()).await;
    let (observer, mut watch) = zello_gateway::state::StateHub::channel(4096);
    let (gw, carrier, mut app) = carrier_up(&sim, "vhf-gap", 40.0, observer, &mut watch).await;
    // The link drops; the gateway logs on again at once but its channel stays away 14 s.
    sim.faults().hold_channel_status();
    assert!(sim.faults().drop_connection("gateway1"));
    tokio::time::sleep(14 * S).await;
    let gap = |l: &String| l.contains("radio=vhf-gap") && l.contains("message_to_channel_gap");
    assert!(
        logs.lines().iter().any(gap),
        "the gap is said while it happens:\n{}",
        logs.text()
    );
    sim.faults().release_channel_status();
    app.expect(10 * S, |e| matches!(e, SessionEvent::IncomingStart { .. }))
        .await;
    tokio::time::sleep(S).await;
    carrier.set(false);
    wait_for(&mut watch, 10 * S, |e| {
        matches!(
            e,
            GatewayEvent::Sent {
                outcome: zello_gateway::state::MessageOutcome::Completed,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(S / 2).await;
    let summary: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("radio=vhf-gap") && l.contains("message sent with a gap"))
        .collect();
    assert_eq!(summary.len(), 1, "{}", logs.text());
    let left_out: u64 = summary[0]
        .split("left_out_ms=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("left_out_ms");
    // About 2 s beyond the 12 s kept, whatever the scheduling.
    assert!(left_out >= 500, "{}", summary[0]);
    // One warning while waiting, however long the wait.
    assert_eq!(logs.lines().iter().filter(|l| gap(l)).count(), 1);
    gw.stop().await;
}
