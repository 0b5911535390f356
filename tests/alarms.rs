//! Zello Alarms presence against the emulator over loopback, under tokio's paused clock: the
//! gateway's session leaves Zello once a radio part has failed for the grace period, texts a
//! dispatcher, and comes back when the part works again.

mod common;

use common::{CHANNEL, Captured, Client, config, server};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use zello_gateway::alarms::{self, AlarmsConfig};
use zello_gateway::gateway::GatewayEvent;
use zello_gateway::state::StateHub;
use zello_gateway::zello::session::SessionEvent;
use zello_gateway::zello::sim::{SimConfig, SimHandle};

const S: Duration = Duration::from_secs(1);

fn gateway_online(sim: &SimHandle) -> bool {
    sim.online_users(CHANNEL).contains(&"gateway1".to_string())
}

/// Waits until the emulator shows the gateway `online` (it handles a closed connection on
/// its own task).
async fn until_shown(sim: &SimHandle, online: bool) {
    tokio::time::timeout(5 * S, async {
        while gateway_online(sim) != online {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the emulator never showed the gateway online = {online}"));
}

/// The next text the dispatcher receives.
async fn text(dispatcher: &mut Client) -> String {
    let t = dispatcher.expect_text(30 * S).await;
    assert_eq!(t.from, "gateway1");
    t.text
}

struct Rig {
    sim: SimHandle,
    gateway: Client,
    dispatcher: Client,
    faults: StateHub,
    watch: broadcast::Receiver<GatewayEvent>,
    settings: tokio::sync::watch::Sender<AlarmsConfig>,
    stop: CancellationToken,
}

async fn rig(config_alarms: AlarmsConfig) -> Rig {
    let sim = server(SimConfig::default()).await;
    let gateway = Client::ready(config(&sim, "gateway1")).await;
    let dispatcher = Client::ready(config(&sim, "dispatcher")).await;
    let (faults, _) = StateHub::channel(64);
    let watch = faults.subscribe();
    let stop = CancellationToken::new();
    let (settings, settings_rx) = tokio::sync::watch::channel(config_alarms);
    tokio::spawn(alarms::run(
        settings_rx,
        gateway.handle.clone(),
        faults.clone(),
        stop.clone(),
    ));
    Rig {
        sim,
        gateway,
        dispatcher,
        faults,
        watch,
        settings,
        stop,
    }
}

impl Rig {
    /// Radio vhf1's USB sound card is unplugged.
    fn sound_card_gone(&self) {
        let lost = GatewayEvent::DeviceLost {
            radio: "vhf1".into(),
            error: "USB sound card gone".into(),
        };
        self.faults.publish(lost);
    }

    async fn held_offline(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, async {
            loop {
                if let Ok(GatewayEvent::HeldOffline { reason }) = self.watch.recv().await {
                    return reason;
                }
            }
        })
        .await
        .expect("HeldOffline in time")
    }
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn a_lasting_ptt_fault_takes_the_gateway_offline_until_it_is_fixed() {
    let mut r = rig(AlarmsConfig {
        text_channel: Some(CHANNEL.into()),
        text_user: Some("dispatcher".into()),
        ..AlarmsConfig::default()
    })
    .await;
    let fault = || GatewayEvent::PttFault {
        radio: "vhf1".into(),
        error: Some("serial /dev/ttyUSB0: No such device".into()),
    };
    r.faults.publish(fault());
    // Within the grace period (60 s): online, nothing said.
    sleep(59 * S).await;
    assert!(gateway_online(&r.sim));
    assert!(r.dispatcher.events.try_recv().is_err());

    // At 60 s: the dispatcher is told, then the gateway leaves Zello.
    let reason = r.held_offline(2 * S).await.expect("a reason");
    assert_eq!(
        reason,
        "radio vhf1: PTT interface failing for 60 s (serial /dev/ttyUSB0: No such device)"
    );
    assert_eq!(
        text(&mut r.dispatcher).await,
        format!("zello-gateway: {reason}; leaving Zello until it works again")
    );
    r.gateway
        .expect(5 * S, |e| matches!(e, SessionEvent::Disconnected { .. }))
        .await;
    until_shown(&r.sim, false).await;
    // Away for as long as the fault lasts, however long (no reconnect).
    sleep(30 * 60 * S).await;
    assert!(!gateway_online(&r.sim), "{:#?}", r.sim.events());

    // Fixed: back online at once, and the dispatcher is told.
    r.faults.publish(GatewayEvent::PttFault {
        radio: "vhf1".into(),
        error: None,
    });
    assert_eq!(r.held_offline(2 * S).await, None);
    r.gateway
        .expect(5 * S, |e| {
            matches!(e, SessionEvent::Channel { ready: true, .. })
        })
        .await;
    until_shown(&r.sim, true).await;
    // The recovery text goes out once logged on again.
    assert_eq!(
        text(&mut r.dispatcher).await,
        "zello-gateway: the radio hardware works again; the gateway is back"
    );
    r.stop.cancel();
    r.gateway.shutdown().await;
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn a_blip_within_the_grace_period_is_never_seen_on_zello() {
    let mut r = rig(AlarmsConfig {
        hardware_grace_s: 30,
        text_channel: Some(CHANNEL.into()),
        ..AlarmsConfig::default()
    })
    .await;
    r.sound_card_gone();
    sleep(20 * S).await;
    r.faults.publish(GatewayEvent::DeviceBack {
        radio: "vhf1".into(),
    });
    sleep(10 * 60 * S).await;
    assert!(gateway_online(&r.sim));
    let seen = r.dispatcher.collect(S).await;
    assert!(
        !seen.iter().any(|e| matches!(e, SessionEvent::Text(_))),
        "{seen:?}"
    );
    assert!(
        r.watch.try_recv().is_ok(),
        "the faults themselves were seen"
    );
    while let Ok(e) = r.watch.try_recv() {
        assert!(!matches!(e, GatewayEvent::HeldOffline { .. }), "{e:?}");
    }
    r.stop.cancel();
    r.gateway.shutdown().await;
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn staying_online_when_asked_to() {
    let log = Captured::default();
    let _log = log.start();
    let mut r = rig(AlarmsConfig {
        offline_on_hardware_fault: false,
        hardware_grace_s: 10,
        text_channel: Some(CHANNEL.into()),
        text_user: None,
    })
    .await;
    r.faults.publish(GatewayEvent::CarrierFault {
        radio: "uhf1".into(),
        error: Some("rigctld 127.0.0.1:4532 unreachable".into()),
    });
    assert_eq!(
        text(&mut r.dispatcher).await,
        "zello-gateway: radio uhf1: carrier detect failing for 10 s (rigctld 127.0.0.1:4532 unreachable); still online"
    );
    // The line follows the server's answer to the text, which travels over a real socket:
    // wait for it in real time (a blocking task holds the paused clock back meanwhile).
    let mut line = None;
    for _ in 0..1000 {
        let text = log.text();
        line = text
            .lines()
            .find(|l| l.contains("alarm text sent"))
            .map(str::to_string);
        if line.is_some() {
            break;
        }
        tokio::task::spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(5)))
            .await
            .unwrap();
    }
    let line = line.unwrap_or_else(|| panic!("no 'alarm text sent' line in:\n{}", log.text()));
    // Sent to the channel, not to a user: no empty user field in the log line.
    assert!(!line.contains("user="), "{line}");
    sleep(60 * S).await;
    assert!(gateway_online(&r.sim));
    r.stop.cancel();
    r.gateway.shutdown().await;
}

#[tokio::test(start_paused = true)]
#[serial_test::serial] // log captures: no test of this file runs beside another
async fn reloaded_settings_apply_to_a_fault_already_timed() {
    let mut r = rig(AlarmsConfig::default()).await;
    r.sound_card_gone();
    sleep(10 * S).await;
    // systemctl reload with a 20 s grace: the fault, 10 s old, leaves 10 s later.
    r.settings.send_replace(AlarmsConfig {
        hardware_grace_s: 20,
        ..AlarmsConfig::default()
    });
    let reason = r.held_offline(11 * S).await.expect("a reason");
    assert!(reason.contains("for 20 s"), "{reason}");
    until_shown(&r.sim, false).await;
    // Reloaded again with leaving switched off: back online although the fault lasts.
    r.settings.send_replace(AlarmsConfig {
        offline_on_hardware_fault: false,
        ..AlarmsConfig::default()
    });
    assert_eq!(r.held_offline(2 * S).await, None);
    until_shown(&r.sim, true).await;
    r.stop.cancel();
    r.gateway.shutdown().await;
}
