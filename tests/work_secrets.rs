//! The session id, the password and the API key never reach the log or an error message,
//! whatever the log level. (Its own test binary: it installs the global log subscriber.)

mod common;

use common::Captured;
use common::work::{self, API_KEY};
use std::time::Duration;
use zello_gateway::secret::Secret;
use zello_gateway::work::WorkClient;
use zello_gateway::work::sim::WorkFault;
use zello_gateway::work::types::{ChannelQuery, NewChannel, UserSave};
use zello_gateway::work::wire::{login_hash, password_hash};

#[tokio::test]
async fn no_secret_in_logs_errors_or_debug_output() {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .try_init()
        .expect("the only subscriber of this test binary");

    let sim = work::sim(1).await;
    let password = Secret::new("admin");
    let key = Secret::new(API_KEY);
    let mut c = WorkClient::new(&sim.url(), work::options()).unwrap();
    let token = c.get_token().await.unwrap();
    c.login_with_token(&token, "admin", &password, &key)
        .await
        .unwrap();
    let mut texts = vec![format!("{c:?}"), format!("{token:?}")];
    // Reads retried after broken answers, a write that fails the same way, API errors.
    sim.fail("channel/get", WorkFault::Break, 2);
    c.channels(&ChannelQuery::default()).await.unwrap();
    sim.fail("channel/add", WorkFault::Break, 1);
    let new = NewChannel {
        name: "X".into(),
        ..NewChannel::default()
    };
    texts.push(c.add_channel(&new).await.unwrap_err().to_string());
    texts.push(c.add_channel(&new).await.unwrap_err().to_string());
    sim.fail("channel/get", WorkFault::Break, 10);
    texts.push(
        c.channels(&ChannelQuery::default())
            .await
            .unwrap_err()
            .to_string(),
    );
    let save = UserSave {
        name: "gw".into(),
        password: Some(Secret::new("gateway-password")),
        gateway: Some(true),
        ..UserSave::default()
    };
    texts.push(format!("{save:?}"));
    c.save_user(&save).await.unwrap();
    // The media long-poll and its download.
    let m = c
        .metadata(&Default::default())
        .await
        .unwrap()
        .messages
        .into_iter()
        .find_map(|m| m.media_key)
        .unwrap();
    let ready = c.media(&m, |_| {}).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.download(&ready.url, &dir.path().join("m.wav"), |_, _| {})
        .await
        .unwrap();
    c.logout().await.unwrap();
    // A bad login.
    let mut bad = WorkClient::new(&sim.url(), work::options()).unwrap();
    texts.push(
        bad.login("admin", &Secret::new("wrong-password"), &key)
            .await
            .unwrap_err()
            .to_string(),
    );
    sim.shutdown(Duration::from_secs(2)).await;

    let log = captured.text();
    assert!(log.contains("retrying"), "the retries were logged: {log}");
    let sid = token.sid.expose().to_string();
    let secrets = [
        sid.as_str(),
        token.token.expose(),
        API_KEY,
        "gateway-password",
        "wrong-password",
        &password_hash("admin"),
        &password_hash("gateway-password"),
        &login_hash("admin", token.token.expose(), API_KEY),
    ];
    for s in secrets {
        assert!(!log.contains(s), "{s} in the log:\n{log}");
        for t in &texts {
            assert!(!t.contains(s), "{s} in {t}");
        }
    }
}
