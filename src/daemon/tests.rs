//! The service around the gateway: what systemd is told, on a test socket standing in for
//! `$NOTIFY_SOCKET`, with timers under tokio's paused clock.

use super::*;
use crate::service::notify::tests::FakeSystemd;
use crate::state::GatewayEvent;

const CONFIG: &str = reload::one_radio_file!();

struct Rig {
    systemd: FakeSystemd,
    events: StateHub,
    reloads: mpsc::Sender<()>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A supervisor for CONFIG (one radio, vhf1 on Dispatch), telling a fake systemd.
fn rig(under_systemd: bool) -> Rig {
    let (dir, path, config, reloader) = reload::write_and_load(CONFIG);
    let systemd = FakeSystemd::new();
    let notifier = under_systemd.then(|| systemd.notifier());
    let supervisor = Supervisor::new(notifier, StatusBoard::for_config(&config), reloader);
    let events = StateHub::default();
    let (reloads, reload_rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(supervisor.run(events.watch(), reload_rx, shutdown.clone()));
    Rig {
        systemd,
        events,
        reloads,
        shutdown,
        task,
        path,
        _dir: dir,
    }
}

/// Lets the supervisor take in what was sent (a millisecond of paused time).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// What systemd is told when `event` comes a status gap after the last status.
async fn told_after_a_gap(r: &Rig, event: GatewayEvent) -> Vec<String> {
    tokio::time::sleep(STATUS_GAP).await;
    r.events.publish(event);
    settle().await;
    r.systemd.received()
}

fn online(users: u32) -> GatewayEvent {
    GatewayEvent::ChannelStatus {
        channel: "Dispatch".into(),
        online: true,
        users_online: users,
        features: Default::default(),
    }
}

fn radio(name: &str) -> String {
    name.to_string()
}

#[tokio::test(start_paused = true)]
async fn ready_once_started_not_waiting_for_zello_then_status_on_changes() {
    let r = rig(true);
    settle().await;
    assert_eq!(
        r.systemd.received(),
        ["STATUS=connecting to Zello; Dispatch: offline; radio vhf1 idle"]
    );
    // Running, not connected yet: ready (a Pi booting offline finishes booting).
    r.events.publish(GatewayEvent::Started);
    settle().await;
    assert_eq!(r.systemd.received(), ["READY=1"]);
    r.events.publish(GatewayEvent::LoggedOn);
    settle().await;
    // Within a second of the last status: held back.
    assert!(r.systemd.received().is_empty());
    r.events.publish(online(3));
    tokio::time::sleep(STATUS_GAP).await;
    assert_eq!(
        r.systemd.received(),
        ["STATUS=Dispatch: online, 3 users; radio vhf1 idle"],
        "the status once the second is over, no second READY=1"
    );

    // Later changes: a status each, never READY=1 again.
    assert_eq!(
        told_after_a_gap(
            &r,
            GatewayEvent::PttOn {
                radio: radio("vhf1"),
            }
        )
        .await,
        ["STATUS=Dispatch: online, 3 users; radio vhf1 transmitting"]
    );
    // Events that change nothing shown send nothing.
    let got = told_after_a_gap(
        &r,
        GatewayEvent::Incoming {
            radio: radio("vhf1"),
            stream_id: 7,
            from: "alice".into(),
            codec: Default::default(),
        },
    )
    .await;
    assert!(got.is_empty(), "{got:?}");

    // Losing the connection and getting it back is a status, not a new READY=1.
    r.events.publish(GatewayEvent::Disconnected {
        reason: crate::state::DisconnectReason::ServerClosed,
        detail: "closed by the server".into(),
    });
    settle().await;
    r.events.publish(GatewayEvent::LoggedOn);
    r.events.publish(online(2));
    r.events.publish(GatewayEvent::PttOff {
        radio: radio("vhf1"),
    });
    tokio::time::sleep(STATUS_GAP * 2).await;
    // The first change after a quiet second goes out at once; the rest a second later, as
    // they stand by then.
    assert_eq!(
        r.systemd.received(),
        [
            "STATUS=disconnected (closed by the server), reconnecting; Dispatch: offline; radio vhf1 transmitting",
            "STATUS=Dispatch: online, 2 users; radio vhf1 idle"
        ]
    );

    r.shutdown.cancel();
    r.task.await.unwrap();
    assert_eq!(r.systemd.received(), ["STOPPING=1\nSTATUS=stopping"]);
}

#[tokio::test(start_paused = true)]
async fn missing_hardware_and_an_unreachable_server_do_not_hold_readiness_back() {
    let r = rig(true);
    r.events.publish(GatewayEvent::HardwareWaiting {
        radio: radio("vhf1"),
        error: Some("radio[0] (vhf1).ptt: rigctld 127.0.0.1:4532: refused".into()),
    });
    r.events.publish(GatewayEvent::ConnectFailed {
        error: "Connection refused".into(),
        retry_in: Duration::from_millis(7600),
    });
    r.events.publish(GatewayEvent::Started);
    tokio::time::sleep(STATUS_GAP * 2).await;
    let got = r.systemd.received();
    assert!(got.iter().any(|m| m == "READY=1"), "{got:?}");
    assert_eq!(
        got.last().unwrap(),
        "STATUS=cannot connect to ws://127.0.0.1:8800/ws (Connection refused), next try in 8 s; Dispatch: offline; radio vhf1 waiting for its hardware"
    );
    // A sound card lost later shows too; readiness stays.
    r.events.publish(GatewayEvent::HardwareWaiting {
        radio: radio("vhf1"),
        error: None,
    });
    r.events.publish(GatewayEvent::DeviceLost {
        radio: radio("vhf1"),
        error: "device gone".into(),
    });
    r.events.publish(GatewayEvent::LoggedOn);
    r.events.publish(online(1));
    tokio::time::sleep(STATUS_GAP * 2).await;
    let got = r.systemd.received();
    assert_eq!(
        got.last().unwrap(),
        "STATUS=Dispatch: online, 1 user; radio vhf1 audio device lost",
        "{got:?}"
    );
    assert!(!got.iter().any(|m| m == "READY=1"), "{got:?}");
    assert_eq!(
        told_after_a_gap(
            &r,
            GatewayEvent::DeviceBack {
                radio: radio("vhf1"),
            }
        )
        .await,
        ["STATUS=Dispatch: online, 1 user; radio vhf1 idle"]
    );
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_chattering_squelch_does_not_flood_systemd() {
    let r = rig(true);
    r.events.publish(GatewayEvent::LoggedOn);
    r.events.publish(online(3));
    settle().await;
    let _ = r.systemd.received();
    // 200 carrier changes in two seconds. Everything systemd is told is kept: the state
    // shown last may already have gone out during the chatter.
    let mut got = Vec::new();
    for i in 0..200 {
        let event = if i % 2 == 0 {
            GatewayEvent::CarrierUp {
                radio: radio("vhf1"),
            }
        } else {
            GatewayEvent::CarrierDown {
                radio: radio("vhf1"),
            }
        };
        r.events.publish(event);
        tokio::time::sleep(Duration::from_millis(10)).await;
        if i == 100 {
            got.extend(r.systemd.received());
            assert!(got.len() <= 2, "at most one a second: {got:?}");
        }
    }
    r.events.publish(GatewayEvent::CarrierUp {
        radio: radio("vhf1"),
    });
    tokio::time::sleep(STATUS_GAP * 2).await;
    got.extend(r.systemd.received());
    // About three seconds have passed: one update a second at most.
    assert!(got.len() <= 4, "at most one a second: {got:?}");
    // The last state is the one shown.
    assert_eq!(
        got.last().unwrap(),
        "STATUS=Dispatch: online, 3 users; radio vhf1 receiving"
    );
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn reload_is_announced_only_once_ready_and_keeps_running() {
    let r = rig(true);
    settle().await;
    let _ = r.systemd.received();
    // Before READY=1, a reload must not announce readiness.
    r.reloads.send(()).await.unwrap();
    settle().await;
    assert!(r.systemd.received().is_empty());

    r.events.publish(GatewayEvent::Started);
    r.events.publish(GatewayEvent::LoggedOn);
    r.events.publish(online(3));
    tokio::time::sleep(STATUS_GAP).await;
    let _ = r.systemd.received();

    // A broken file: RELOADING=1, READY=1, and the supervisor carries on.
    std::fs::write(&r.path, "[zello\n").unwrap();
    r.reloads.send(()).await.unwrap();
    settle().await;
    let got = r.systemd.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{got:?}"
    );
    assert_eq!(got[1], "READY=1");
    assert!(!r.task.is_finished());

    // A good file with a change: the same.
    std::fs::write(&r.path, CONFIG.replace("Dispatch", "Ops")).unwrap();
    r.reloads.send(()).await.unwrap();
    settle().await;
    let got = r.systemd.received();
    assert!(got[0].starts_with("RELOADING=1"), "{got:?}");
    assert_eq!(got[1..], ["READY=1"]);

    // Status keeps following the gateway.
    assert_eq!(
        told_after_a_gap(&r, online(4)).await,
        ["STATUS=Dispatch: online, 4 users; radio vhf1 idle"]
    );
    r.shutdown.cancel();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn outside_systemd_nothing_is_sent() {
    let r = rig(false);
    r.events.publish(GatewayEvent::LoggedOn);
    r.events.publish(online(3));
    r.reloads.send(()).await.unwrap();
    tokio::time::sleep(STATUS_GAP * 2).await;
    r.shutdown.cancel();
    r.task.await.unwrap();
    assert!(r.systemd.received().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stopping_is_bounded() {
    // A gateway that never finishes stopping.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        stop.cancel();
    });
    let start = Instant::now();
    let hung = std::future::pending::<Result<(), GatewayError>>();
    let e = stop_bounded(hung, &shutdown, STOP_LIMIT).await.unwrap_err();
    assert!(matches!(e, DaemonError::StopTimedOut(_)), "{e}");
    assert!(e.to_string().contains("ptt-off"), "{e}");
    assert_eq!(start.elapsed(), Duration::from_secs(60) + STOP_LIMIT);

    // One that stops in time.
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let gateway = async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    };
    shutdown.cancel();
    stop_bounded(gateway, &shutdown, STOP_LIMIT).await.unwrap();

    // One that fails while starting ends at once, without a shutdown.
    let failing = async {
        Err(GatewayError::Radio {
            radio: "vhf1".into(),
            message: "no sound card".into(),
        })
    };
    let e = stop_bounded(failing, &CancellationToken::new(), STOP_LIMIT)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no sound card"), "{e}");
}

/// Far more events at once than an event stream holds (its reader falls behind and misses
/// most of them): systemd's status and the Zello Alarms decisions follow the state, so both
/// end up where the gateway stands. A fault raised and cleared inside the burst never takes
/// the gateway off Zello; one still there at its end does, after the grace.
#[tokio::test(start_paused = true)]
async fn a_burst_beyond_the_event_stream_leaves_the_status_and_the_alarms_right() {
    const BURST: usize = 100_000;
    let r = rig(true);
    // A reader that never reads: the stream overflows.
    let mut behind = r.events.subscribe();
    // The alarms, on a session whose server is not there (it only has to be wanted online
    // or not).
    let stop = CancellationToken::new();
    let session = crate::zello::session::SessionConfig {
        server: "ws://127.0.0.1:9/ws".into(),
        ..Default::default()
    };
    let (handle, mut session_events, _session) =
        crate::zello::session::spawn(session, stop.clone()).unwrap();
    tokio::spawn(async move { while session_events.recv().await.is_some() {} });
    let (_settings, settings) = watch::channel(crate::alarms::AlarmsConfig::default());
    let alarms = tokio::spawn(crate::alarms::run(
        settings,
        handle.clone(),
        r.events.clone(),
        stop.clone(),
    ));
    settle().await;
    let _ = r.systemd.received();

    let vhf1 = || radio("vhf1");
    let burst = |fault_left: bool| {
        r.events.publish(GatewayEvent::Started);
        r.events.publish(GatewayEvent::LoggedOn);
        r.events.publish(online(3));
        r.events.publish(GatewayEvent::PttFault {
            radio: vhf1(),
            error: Some("rigctld unreachable".into()),
        });
        for i in 0..BURST / 2 {
            r.events.publish(if i % 2 == 0 {
                GatewayEvent::PttOn { radio: vhf1() }
            } else {
                GatewayEvent::PttOff { radio: vhf1() }
            });
            r.events.publish(if i % 2 == 0 {
                GatewayEvent::CarrierUp { radio: vhf1() }
            } else {
                GatewayEvent::CarrierDown { radio: vhf1() }
            });
        }
        if !fault_left {
            r.events.publish(GatewayEvent::PttFault {
                radio: vhf1(),
                error: None,
            });
        }
    };

    // Raised and cleared within the burst.
    burst(false);
    assert!(
        matches!(
            behind.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) if n > 90_000
        ),
        "the stream's reader fell behind"
    );
    tokio::time::sleep(STATUS_GAP * 2).await;
    let got = r.systemd.received();
    assert_eq!(
        got.last().map(String::as_str),
        Some("STATUS=Dispatch: online, 3 users; radio vhf1 idle"),
        "PTT off, carrier down, no fault: {got:?}"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        handle.wants_online(),
        "the cleared fault took the gateway off"
    );
    assert_eq!(r.events.snapshot().gateway.held_offline, None);
    let got = r.systemd.received();
    assert!(got.is_empty(), "{got:?}");

    // Raised within the burst and still there: the alarms act on it after the grace.
    burst(true);
    tokio::time::sleep(STATUS_GAP * 2).await;
    assert_eq!(
        r.systemd.received().last().map(String::as_str),
        Some("STATUS=Dispatch: online, 3 users; radio vhf1 idle, PTT interface failing")
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(!handle.wants_online(), "the lasting fault left Zello");
    let held = r.events.snapshot().gateway.held_offline;
    assert!(
        held.as_deref()
            .is_some_and(|h| h.starts_with("radio vhf1: PTT interface failing for 6")),
        "{held:?}"
    );
    stop.cancel();
    alarms.await.unwrap();
    r.shutdown.cancel();
}
