//! The dashboard (`GET /`) in a real headless Chromium, driven over WebDriver, in front of a
//! whole gateway on the Zello emulator: a radio going from idle to receiving and back, the
//! channel and its users, the token taken from the fragment, the fallback to polling while
//! the WebSocket is refused and the return to live, and a wrong or missing token told in
//! words. Screenshots are kept under `target/test-artifacts/dashboard-*.png`.

mod common;

use common::CHANNEL;
use common::api::{CONTROL_TOKEN, RADIO, READ_TOKEN, Rig, get_with, quick, tokens, try_ws};
use common::webdriver::{Driver, browser_or_skip};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zello_gateway::api::levels::{LevelSource, LevelTap, Reading};
use zello_gateway::api::metrics::Metrics;
use zello_gateway::api::protocol::Catalogue;
use zello_gateway::api::protocol::event::Direction;
use zello_gateway::api::sockets::MAX_SOCKETS;
use zello_gateway::api::{Setup, start};
use zello_gateway::config::ApiConfig;
use zello_gateway::state::{ChannelFeatures, GatewayEvent, GatewayState, StateHub};

const S: Duration = Duration::from_secs(1);

/// The radio card's `data-state`.
const CARD_STATE: &str = r#"
    const card = document.querySelector('.card[data-radio="' + arguments[0] + '"]');
    return card ? card.dataset.state : null;"#;

/// The connection indicator's mode: live, polling, offline (connecting at first).
const MODE: &str = "return document.querySelector('#conn').dataset.mode;";

/// The error banner's text while shown.
const ERROR: &str = r#"
    const e = document.querySelector('#error');
    return e.hidden ? null : e.textContent;"#;

/// Waits until the card of [`RADIO`] shows `state`.
async fn card_shows(driver: &Driver, state: &str, within: Duration) {
    let script = format!(
        "const card = document.querySelector('.card[data-radio=\"{RADIO}\"]');\
         return !!card && card.dataset.state === '{state}';"
    );
    driver
        .wait_for(&format!("radio {RADIO} {state}"), &script, within)
        .await;
}

/// Waits until the indicator shows `mode`.
async fn mode_is(driver: &Driver, mode: &str, within: Duration) {
    let script = format!("return document.querySelector('#conn').dataset.mode === '{mode}';");
    driver
        .wait_for(&format!("the connection {mode}"), &script, within)
        .await;
}

/// One text of the card of [`RADIO`], by selector.
async fn card_text(driver: &Driver, selector: &str) -> String {
    let script = r#"
        const card = document.querySelector('.card[data-radio="' + arguments[0] + '"]');
        const el = card && card.querySelector(arguments[1]);
        return el ? el.textContent : null;"#;
    driver
        .execute(script, json!([RADIO, selector]))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_radio_go_from_idle_to_receiving_and_back() {
    let Some(browser) = browser_or_skip("the dashboard test") else {
        return;
    };
    let rig = Rig::start(&tokens(true, false), quick(), 30.0).await;
    let driver = Driver::start(&browser).await;
    let origin = format!("http://{}", rig.api);
    driver.goto(&format!("{origin}/#token={READ_TOKEN}")).await;

    // The token left the address bar for the tab's sessionStorage.
    let href = driver.execute("return location.href;", json!([])).await;
    assert_eq!(href, json!(format!("{origin}/")));
    let kept = driver
        .execute(
            "return sessionStorage.getItem('zello-gateway.token');",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!(READ_TOKEN));

    mode_is(&driver, "live", 10 * S).await;
    card_shows(&driver, "idle", 10 * S).await;
    assert_eq!(
        driver.execute(ERROR, json!([])).await,
        Value::Null,
        "no error shown"
    );
    // The channel online with the users the gateway reports; the Zello link and Alarms.
    let users = get_with(rig.api, &format!("/api/v1/channels/{CHANNEL}"), READ_TOKEN)
        .await
        .data()["users_online"]
        .as_u64()
        .unwrap();
    assert!(users >= 1, "the emulator lists the channel's users");
    let online = format!(
        "const row = document.querySelector('.channel[data-channel=\"{CHANNEL}\"]');\
         return row && row.dataset.online === 'true'\
             ? row.querySelector('.users').dataset.users : null;"
    );
    let channel = driver.wait_for("the channel online", &online, 10 * S).await;
    assert_eq!(channel, json!(users.to_string()));
    let header = driver
        .execute(
            "return document.querySelector('header.top').innerText;",
            json!([]),
        )
        .await;
    let header = header.as_str().unwrap();
    assert!(header.contains("Zello: logged on"), "{header}");
    assert!(header.contains("Alarms: online"), "{header}");
    // Without the control token, no TX-inhibit switch.
    assert_eq!(
        driver
            .execute(
                "return document.querySelector('.card .inhibit').hidden;",
                json!([])
            )
            .await,
        json!(true)
    );
    assert_eq!(card_text(&driver, ".talker").await, "Nobody is talking");
    driver.screenshot("idle").await;

    // The radio hears a carrier: receiving, who talks and for how long, the carrier lamp.
    rig.carrier.set(true);
    card_shows(&driver, "receiving", 10 * S).await;
    let talker = card_text(&driver, ".talker").await;
    assert_eq!(talker, format!("On the radio → {CHANNEL}"));
    let lamp = driver
        .execute(
            r#"return document.querySelector('.card [data-lamp="carrier"]').dataset.on;"#,
            json!([]),
        )
        .await;
    assert_eq!(lamp, json!("true"));
    // The timer ticks.
    driver
        .wait_for(
            "the talk timer past 0:00",
            r#"const t = document.querySelector('.card .timer').textContent;
               return /^\d+:\d\d$/.test(t) && t !== '0:00' ? t : null;"#,
            10 * S,
        )
        .await;
    driver.screenshot("receiving").await;

    // The carrier drops: idle again, and the message in the last-heard list.
    rig.carrier.set(false);
    card_shows(&driver, "idle", 10 * S).await;
    assert_eq!(card_text(&driver, ".timer").await, "");
    let heard = driver
        .wait_for(
            "the message in the last-heard list",
            r#"const li = document.querySelector('.card ol.heard li:not(.empty)');
               return li ? li.innerText : null;"#,
            10 * S,
        )
        .await;
    let heard = heard.as_str().unwrap();
    assert!(heard.contains(&format!("radio → {CHANNEL}")), "{heard}");
    assert!(heard.contains(" s"), "its duration: {heard}");
    driver.screenshot("idle-after").await;

    drop(driver);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_polls_while_its_socket_is_refused_and_goes_live_again() {
    let Some(browser) = browser_or_skip("the dashboard test") else {
        return;
    };
    let rig = Rig::start(&tokens(true, true), quick(), 30.0).await;
    // Every socket the API allows taken (and kept answering pings): the page's is refused.
    let bearer = format!("Bearer {READ_TOKEN}");
    let mut holders = Vec::new();
    for _ in 0..MAX_SOCKETS {
        let mut sock = try_ws(rig.api, "/api/v1/ws", &[("Authorization", &bearer)])
            .await
            .expect("a socket");
        holders.push(tokio::spawn(async move {
            while sock.ws.next().await.is_some() {}
        }));
    }
    let driver = Driver::start(&browser).await;
    let origin = format!("http://{}", rig.api);
    driver
        .goto(&format!(
            "{origin}/#token={READ_TOKEN}&control={CONTROL_TOKEN}"
        ))
        .await;
    assert_eq!(
        driver.execute("return location.hash;", json!([])).await,
        json!("")
    );

    mode_is(&driver, "polling", 15 * S).await;
    card_shows(&driver, "idle", 10 * S).await;
    // The state still follows, from GET /api/v1/status.
    rig.carrier.set(true);
    card_shows(&driver, "receiving", 10 * S).await;
    assert_eq!(driver.execute(MODE, json!([])).await, json!("polling"));
    // The control token shows the TX-inhibit switch.
    assert_eq!(
        driver
            .execute(
                "return document.querySelector('.card .inhibit').hidden;",
                json!([])
            )
            .await,
        json!(false)
    );
    driver.screenshot("polling").await;

    // The sockets free again: the page comes back live (after its backoff) and follows
    // the events.
    for h in &holders {
        h.abort();
    }
    mode_is(&driver, "live", 45 * S).await;
    rig.carrier.set(false);
    card_shows(&driver, "idle", 10 * S).await;
    assert_eq!(driver.execute(MODE, json!([])).await, json!("live"));

    // The gateway's API goes away: offline, told in words.
    rig.shutdown.cancel();
    mode_is(&driver, "offline", 15 * S).await;
    let error = driver.wait_for("an error", ERROR, 10 * S).await;
    assert!(
        error.as_str().unwrap().contains("does not answer"),
        "{error}"
    );
    driver.screenshot("offline").await;

    drop(driver);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_token_is_told_in_words() {
    let Some(browser) = browser_or_skip("the dashboard test") else {
        return;
    };
    let rig = Rig::start(&tokens(true, false), quick(), 3.0).await;
    let driver = Driver::start(&browser).await;
    let origin = format!("http://{}", rig.api);

    driver
        .goto(&format!("{origin}/#token=not-the-token-0123456789"))
        .await;
    let error = driver
        .wait_for("the wrong token refused", ERROR, 10 * S)
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("refused the token") && error.contains("#token="),
        "{error}"
    );
    assert!(!error.contains("not-the-token"), "the token is never shown");
    // Nothing of the gateway is shown.
    assert_eq!(
        driver.execute(CARD_STATE, json!([RADIO])).await,
        Value::Null
    );
    assert_ne!(driver.execute(MODE, json!([])).await, json!("live"));
    driver.screenshot("wrong-token").await;

    // No token at all.
    driver
        .execute("sessionStorage.clear(); return null;", json!([]))
        .await;
    driver.goto(&format!("{origin}/")).await;
    let error = driver
        .wait_for("the missing token told", ERROR, 10 * S)
        .await;
    let error = error.as_str().unwrap();
    assert!(
        error.contains("needs a token") && error.contains(&format!("{origin}/#token=TOKEN")),
        "{error}"
    );
    assert_eq!(
        driver.execute(CARD_STATE, json!([RADIO])).await,
        Value::Null
    );
    driver.screenshot("missing-token").await;

    drop(driver);
    rig.stop().await;
}

/// A radio's meter as the test sets it: the readings it gives, none at first.
#[derive(Default)]
struct TestMeter {
    readings: std::sync::Mutex<Vec<Reading>>,
}

impl LevelSource for TestMeter {
    fn readings(&self) -> Vec<Reading> {
        self.readings.lock().unwrap().clone()
    }

    fn want(&self) -> Box<dyn Send + Sync> {
        Box::new(())
    }
}

/// The API alone over a state the test changes with the gateway's own events, and a level
/// meter the test sets: every card state, escaping, the meter, Alarms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_card_state_and_the_level_meter_follow_the_events() {
    let Some(browser) = browser_or_skip("the dashboard test") else {
        return;
    };
    let hub = StateHub::new(GatewayState::new([(
        RADIO.to_string(),
        CHANNEL.to_string(),
    )]));
    let meter = Arc::new(TestMeter::default());
    let shutdown = CancellationToken::new();
    let setup = Setup {
        metrics: Arc::new(Metrics::new([(RADIO, CHANNEL)], 1_700_000_000_000)),
        catalogue: Catalogue::new(&hub.snapshot()),
        levels: LevelTap::new(vec![(
            RADIO.to_string(),
            meter.clone() as Arc<dyn LevelSource>,
        )]),
        control: None,
        timings: quick(),
    };
    let config = ApiConfig {
        listen: "127.0.0.1:0".into(),
        ..ApiConfig::default()
    };
    let api = start(
        &config,
        &tokens(false, false),
        hub.clone(),
        setup,
        shutdown.clone(),
    )
    .await
    .expect("the API starts")
    .addr;
    let radio = || RADIO.to_string();
    hub.publish(GatewayEvent::Started);
    hub.publish(GatewayEvent::LoggedOn);
    hub.publish(GatewayEvent::ChannelStatus {
        channel: CHANNEL.to_string(),
        online: true,
        users_online: 3,
        features: ChannelFeatures {
            images: false,
            texting: true,
            locations: false,
        },
    });

    let driver = Driver::start(&browser).await;
    driver.goto(&format!("http://{api}/")).await;
    mode_is(&driver, "live", 10 * S).await;
    card_shows(&driver, "idle", 10 * S).await;
    let users = format!(
        "const row = document.querySelector('.channel[data-channel=\"{CHANNEL}\"]');\
         return row && row.dataset.online === 'true' ? row.innerText : null;"
    );
    let row = driver.wait_for("the channel online", &users, 10 * S).await;
    assert!(row.as_str().unwrap().contains("3 users online"), "{row}");
    // No reading yet: the meters stay empty.
    assert_eq!(card_text(&driver, ".meter .db").await, "—");

    // A message from the channel, from a name that looks like markup: shown as text.
    let from = "Alice <b>&amp;";
    hub.publish(GatewayEvent::Incoming {
        radio: radio(),
        stream_id: 7,
        from: from.into(),
        codec: zello_gateway::state::MessageCodec {
            sample_rate_hz: 16000,
            frame_ms: 20,
            frames_per_packet: 3,
        },
    });
    hub.publish(GatewayEvent::PttOn { radio: radio() });
    card_shows(&driver, "transmitting", 10 * S).await;
    assert_eq!(
        card_text(&driver, ".talker").await,
        format!("{from} → on the air")
    );
    let ptt = driver
        .execute(
            r#"return document.querySelector('.card [data-lamp="ptt"]').dataset.on;"#,
            json!([]),
        )
        .await;
    assert_eq!(ptt, json!("true"));
    assert_eq!(
        driver
            .execute(
                "return document.querySelectorAll('.card b').length;",
                json!([])
            )
            .await,
        json!(0),
        "no markup from a name"
    );
    // The transmit level, then the receive level with the squelch closed.
    *meter.readings.lock().unwrap() = vec![
        Reading {
            direction: Direction::FromChannel,
            rms_dbfs: -20.0,
            peak_dbfs: -6.0,
            open: true,
            clips: 0,
        },
        Reading {
            direction: Direction::ToChannel,
            rms_dbfs: -54.0,
            peak_dbfs: -50.0,
            open: false,
            clips: 2,
        },
    ];
    let tx = driver
        .wait_for(
            "the transmit level",
            r#"const m = document.querySelector('.card .meter[data-direction="from_channel"]');
               return m.dataset.open === 'true'
                   ? [m.querySelector('.db').textContent, m.querySelector('.fill').style.width] : null;"#,
            10 * S,
        )
        .await;
    assert_eq!(tx[0], "-20 dBFS");
    let width: f64 = tx[1]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!((width - 100.0 * 40.0 / 60.0).abs() < 0.5, "{tx}");
    let rx = driver
        .execute(
            r#"const m = document.querySelector('.card .meter[data-direction="to_channel"]');
               return [m.dataset.open, m.querySelector('.db').textContent];"#,
            json!([]),
        )
        .await;
    assert_eq!(rx, json!(["false", "-54 dBFS · 2 clips"]));
    driver.screenshot("transmitting").await;
    // The readings stop: the meters empty again.
    meter.readings.lock().unwrap().clear();
    driver
        .wait_for(
            "the transmit meter empty",
            r#"const m = document.querySelector('.card .meter[data-direction="from_channel"]');
               return m.querySelector('.db').textContent === '—';"#,
            10 * S,
        )
        .await;

    hub.publish(GatewayEvent::Played {
        radio: radio(),
        stream_id: 7,
        from: from.into(),
        packets: 50,
        concealed: 5,
        dropped: 0,
        duration_ms: 2500,
        unkeyed_ms: 0,
        outcome: zello_gateway::state::MessageOutcome::Completed,
        peak_dbfs: Some(-6.0),
        rms_dbfs: Some(-20.0),
    });
    hub.publish(GatewayEvent::PttOff { radio: radio() });
    card_shows(&driver, "idle", 10 * S).await;
    let heard = driver
        .wait_for(
            "the message in the last-heard list",
            r#"const li = document.querySelector('.card ol.heard li:not(.empty)');
               return li ? li.innerText : null;"#,
            10 * S,
        )
        .await;
    let heard = heard.as_str().unwrap();
    assert!(heard.contains(&format!("{from} → radio")), "{heard}");
    assert!(
        heard.contains("2.5 s") && heard.contains("10% lost"),
        "{heard}"
    );

    // A fault, told with its reason, and Zello Alarms holding the gateway offline.
    hub.publish(GatewayEvent::DeviceLost {
        radio: radio(),
        error: "the sound card is gone".into(),
    });
    hub.publish(GatewayEvent::HeldOffline {
        reason: Some("radio hardware failed".into()),
    });
    card_shows(&driver, "fault", 10 * S).await;
    assert_eq!(
        card_text(&driver, ".fault-text").await,
        "Sound device failed: the sound card is gone"
    );
    let alarms = driver
        .wait_for(
            "Alarms holding the gateway offline",
            "const t = document.querySelector('#alarms').innerText;\
             return t.includes('held offline') ? t : null;",
            10 * S,
        )
        .await;
    assert_eq!(
        alarms,
        json!("Alarms: held offline (radio hardware failed)")
    );
    driver.screenshot("fault").await;
    hub.publish(GatewayEvent::DeviceBack { radio: radio() });
    card_shows(&driver, "idle", 10 * S).await;

    drop(driver);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_inhibit_is_toggled_from_the_page_and_the_radio_never_keys_meanwhile() {
    let Some(browser) = browser_or_skip("the dashboard test") else {
        return;
    };
    let rig = Rig::start(&tokens(true, true), quick(), 3.0).await;
    let driver = Driver::start(&browser).await;
    let origin = format!("http://{}", rig.api);
    driver
        .goto(&format!(
            "{origin}/#token={READ_TOKEN}&control={CONTROL_TOKEN}"
        ))
        .await;
    mode_is(&driver, "live", 10 * S).await;
    card_shows(&driver, "idle", 10 * S).await;
    // The switch shows with the control token; a reason typed, then switched on.
    let switch_on = r#"
        const card = document.querySelector('.card[data-radio="' + arguments[0] + '"]');
        const box = card.querySelector('.inhibit');
        if (box.hidden) return false;
        card.querySelector('.inhibit-reason').value = 'antenna work';
        card.querySelector('.inhibit-switch').click();
        return true;"#;
    assert_eq!(driver.execute(switch_on, json!([RADIO])).await, json!(true));
    card_shows(&driver, "inhibited", 10 * S).await;
    // The gateway holds it: the state says so, with the reason given on the page.
    let radio = get_with(rig.api, &format!("/api/v1/radios/{RADIO}"), READ_TOKEN)
        .await
        .data();
    assert_eq!(radio["tx_inhibited"]["reason"], "antenna work");
    let status = card_text(&driver, ".inhibit-status").await;
    assert!(status.contains("antenna work"), "{status}");
    driver.screenshot("tx-inhibited").await;
    // A message from the channel is not transmitted.
    let pcm = zello_gateway::audio::speech::speech_like(zello_gateway::audio::CODEC_RATE, 0.3, 5);
    common::emulator::talk_pcm(&rig.app, &pcm[..5 * 960]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.ptt.key_count(), 0, "keyed while inhibited");
    let heard = driver
        .wait_for(
            "the dropped message in the last-heard list",
            r#"const li = document.querySelector('.card ol.heard li:not(.empty)');
               return li && li.innerText.includes('inhibited') ? li.innerText : null;"#,
            10 * S,
        )
        .await;
    assert!(heard.as_str().unwrap().contains("dispatcher"), "{heard}");
    // Switched off again from the page: allowed, and the next message keys.
    let switch_off = r#"
        document.querySelector('.card[data-radio="' + arguments[0] + '"] .inhibit-switch').click();
        return true;"#;
    driver.execute(switch_off, json!([RADIO])).await;
    card_shows(&driver, "idle", 10 * S).await;
    let radio = get_with(rig.api, &format!("/api/v1/radios/{RADIO}"), READ_TOKEN)
        .await
        .data();
    assert_eq!(radio["tx_inhibited"], Value::Null);
    common::emulator::talk_pcm(&rig.app, &pcm[..5 * 960]).await;
    card_shows(&driver, "transmitting", 10 * S).await;
    driver.screenshot("tx-allowed-transmitting").await;
    card_shows(&driver, "idle", 10 * S).await;
    assert_eq!(rig.ptt.key_count(), 1);
    drop(driver);
    rig.stop().await;
}
